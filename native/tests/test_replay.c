/*
 * test_replay.c - C tests of esr_replay (native/src/esr_replay.c), built and run by
 * `make test` under ASan + UBSan (LeakSanitizer included: every path must free all).
 *
 * The library file is compiled into this program with counting allocators, so that
 * each allocation can be made to fail in turn: every failure must come back as
 * ESR_ENOMEM with nothing leaked. Results are checked against a textbook cache (an
 * array searched linearly, O(n) a request) on generated traces.
 */
#include <stdio.h>
#include <stdlib.h>

static long alloc_budget = -1; /* allocations left before they fail; -1: no limit */
static long alloc_calls;

static void *test_malloc(size_t n)
{
    alloc_calls++;
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(n);
}

static void *test_realloc(void *p, size_t n)
{
    alloc_calls++;
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return realloc(p, n);
}

#define ESR_REPLAY_MALLOC test_malloc
#define ESR_REPLAY_REALLOC test_realloc
#define ESR_REPLAY_FREE free
#include "../src/esr_replay.c"

static int passed, failed;

#define CHECK(cond, what)                                                                  \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: FAILED: %s (%s)\n", __FILE__, __LINE__, what, #cond);  \
        }                                                                                  \
    } while (0)

/* ---- the textbook cache -------------------------------------------------------- */

typedef struct ref_entry {
    uint64_t key, size;
} ref_entry;

/* entries[0] is the eviction end. Counts as esr_replay reports them. */
static void textbook(int policy, const uint64_t *keys, const int64_t *sizes, size_t n, uint64_t cap,
                     esr_replay_counts *out)
{
    ref_entry *q = malloc((n + 1) * sizeof *q);
    size_t len = 0;
    memset(out, 0, sizeof *out);
    out->requests = n;
    for (size_t r = 0; r < n; r++) {
        uint64_t size = (uint64_t)sizes[r];
        rp_add(out->bytes, size);
        size_t at = len;
        for (size_t i = 0; i < len; i++) {
            if (q[i].key == keys[r]) {
                at = i;
                break;
            }
        }
        if (at < len) {
            if (policy == ESR_REPLAY_LRU) {
                ref_entry e = q[at];
                memmove(q + at, q + at + 1, (len - at - 1) * sizeof *q);
                q[len - 1] = e;
            }
            continue;
        }
        out->misses++;
        rp_add(out->miss_bytes, size);
        if (size > cap)
            continue;
        for (;;) { /* evict while the stored bytes plus this object exceed cap */
            uint64_t used = 0;
            for (size_t i = 0; i < len; i++)
                used += q[i].size;
            if (used <= cap - size)
                break;
            memmove(q, q + 1, (len - 1) * sizeof *q);
            len--;
            out->evictions++;
        }
        q[len].key = keys[r];
        q[len].size = size;
        len++;
    }
    out->stored = len;
    for (size_t i = 0; i < len; i++)
        out->used += q[i].size;
    free(q);
}

static int same(const esr_replay_counts *a, const esr_replay_counts *b)
{
    return a->requests == b->requests && a->misses == b->misses && a->evictions == b->evictions &&
           a->stored == b->stored && a->used == b->used && a->miss_bytes[0] == b->miss_bytes[0] &&
           a->miss_bytes[1] == b->miss_bytes[1] && a->bytes[0] == b->bytes[0] &&
           a->bytes[1] == b->bytes[1];
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_textbook_example(void)
{
    /* A B C A D B A, three 1-byte objects fit */
    const uint64_t keys[] = {'A', 'B', 'C', 'A', 'D', 'B', 'A'};
    const int64_t sizes[] = {1, 1, 1, 1, 1, 1, 1};
    esr_replay_counts c;
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, 7, 3, &c) == ESR_OK, "lru runs");
    /* LRU: D evicts B, B evicts C, A hits */
    CHECK(c.misses == 5 && c.evictions == 2 && c.stored == 3 && c.used == 3, "lru counts");
    CHECK(esr_replay(ESR_REPLAY_FIFO, keys, sizes, 7, 3, &c) == ESR_OK, "fifo runs");
    /* FIFO: D evicts A (the oldest insertion, despite its hit), B hits, A misses */
    CHECK(c.misses == 5 && c.evictions == 2, "fifo counts");
}

static void test_semantics(void)
{
    esr_replay_counts c;
    /* an object larger than the cache: a miss, never stored, evicts nothing */
    const uint64_t k1[] = {1, 2, 1, 2};
    const int64_t s1[] = {5, 50, 5, 50};
    CHECK(esr_replay(ESR_REPLAY_LRU, k1, s1, 4, 10, &c) == ESR_OK, "runs");
    CHECK(c.misses == 3 && c.evictions == 0 && c.stored == 1 && c.used == 5, "too large");
    CHECK(c.miss_bytes[0] == 105 && c.bytes[0] == 110 && c.bytes[1] == 0, "bytes");
    /* a size change is a hit and keeps the stored size: 4 + 6 fit in 10 */
    const uint64_t k2[] = {1, 1, 2, 1};
    const int64_t s2[] = {4, 9, 6, 4};
    CHECK(esr_replay(ESR_REPLAY_LRU, k2, s2, 4, 10, &c) == ESR_OK, "runs");
    CHECK(c.misses == 2 && c.used == 10 && c.miss_bytes[0] == 10, "size change");
    /* zero bytes always fit, even in a zero-byte cache; one byte never does */
    const uint64_t k3[] = {1, 1, 2, 2};
    const int64_t s3[] = {0, 0, 1, 1};
    CHECK(esr_replay(ESR_REPLAY_FIFO, k3, s3, 4, 0, &c) == ESR_OK, "runs");
    CHECK(c.misses == 3 && c.stored == 1 && c.used == 0, "zero capacity");
    /* nothing to replay: no pointers needed */
    CHECK(esr_replay(ESR_REPLAY_LRU, NULL, NULL, 0, 10, &c) == ESR_OK, "empty");
    CHECK(c.requests == 0 && c.misses == 0 && c.bytes[0] == 0, "empty counts");
}

static void test_bad_arguments(void)
{
    const uint64_t keys[] = {1, 2};
    const int64_t sizes[] = {1, -1};
    esr_replay_counts c;
    c.misses = 77;
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, 2, 10, &c) == ESR_EINVAL, "negative size");
    CHECK(c.misses == 77, "nothing written on error");
    CHECK(esr_replay(3, keys, sizes, 1, 10, &c) == ESR_EINVAL, "unknown policy");
    CHECK(esr_replay(0, keys, sizes, 1, 10, &c) == ESR_EINVAL, "policy 0");
    CHECK(esr_replay(ESR_REPLAY_LRU, NULL, sizes, 1, 10, &c) == ESR_EINVAL, "NULL keys");
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, NULL, 1, 10, &c) == ESR_EINVAL, "NULL sizes");
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, 1, 10, NULL) == ESR_EINVAL, "NULL out");
}

static void test_huge_sizes(void)
{
    /* sums of sizes near 2^63 need more than 64 bits; a cache of 2^64 - 1 bytes holds
     * two of them (2^64 - 2 bytes) and never overflows its stored count */
    enum { N = 64 };
    uint64_t keys[N];
    int64_t sizes[N];
    for (int i = 0; i < N; i++) {
        keys[i] = (uint64_t)(i % 5);
        sizes[i] = INT64_MAX - (i % 5);
    }
    for (int policy = ESR_REPLAY_LRU; policy <= ESR_REPLAY_FIFO; policy++) {
        const uint64_t caps[] = {0, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX * 2, UINT64_MAX};
        for (int k = 0; k < 4; k++) {
            esr_replay_counts got, want;
            CHECK(esr_replay(policy, keys, sizes, N, caps[k], &got) == ESR_OK, "runs");
            textbook(policy, keys, sizes, N, caps[k], &want);
            CHECK(same(&got, &want), "huge sizes agree with the textbook cache");
            CHECK(got.used <= caps[k], "capacity holds");
        }
    }
    esr_replay_counts c;
    esr_replay(ESR_REPLAY_LRU, keys, sizes, N, UINT64_MAX, &c);
    /* 64 * (2^63 - 1) - (12 * (0+1+2+3+4) + 0+1+2+3) = 2^69 - 190 */
    CHECK(c.bytes[1] == 31 && c.bytes[0] == UINT64_MAX - 189, "128-bit byte sum");
    CHECK(c.bytes[1] > 0, "the sum did pass 2^64");
    CHECK(c.stored == 2 && c.evictions > 0, "two fit in 2^64 - 1 bytes");
}

static void test_random_against_textbook(void)
{
    enum { MAXN = 300 };
    uint64_t keys[MAXN];
    int64_t sizes[MAXN];
    int agree = 1;
    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)(rnd() % MAXN);
        uint64_t nkeys = 1 + rnd() % 40;
        uint64_t maxsize = 1 + rnd() % 100;
        for (size_t i = 0; i < n; i++) {
            keys[i] = rnd() % nkeys;
            if (round % 7 == 0)
                keys[i] *= 0x100000001ULL; /* keys that differ in their high words only */
            /* sizes change between requests of one key; some are 0 */
            sizes[i] = (rnd() % 8 == 0) ? 0 : (int64_t)(rnd() % maxsize);
        }
        uint64_t cap = (round % 10 == 0) ? 0 : rnd() % 400;
        for (int policy = ESR_REPLAY_LRU; policy <= ESR_REPLAY_FIFO; policy++) {
            esr_replay_counts got, want;
            if (esr_replay(policy, keys, sizes, n, cap, &got) != ESR_OK)
                agree = 0;
            textbook(policy, keys, sizes, n, cap, &want);
            if (!same(&got, &want)) {
                agree = 0;
                fprintf(stderr, "round %d policy %d: misses %llu, textbook %llu\n", round, policy,
                        (unsigned long long)got.misses, (unsigned long long)want.misses);
            }
        }
    }
    CHECK(agree, "random traces agree with the textbook cache");
}

static void test_growth(void)
{
    /* 200,000 distinct zero-byte objects all stay: the node array and the table grow
     * many times over; then a larger stream with evictions through the grown table */
    enum { N = 200000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    int64_t *sizes = malloc(N * sizeof *sizes);
    for (size_t i = 0; i < N; i++) {
        keys[i] = i * 0x9e3779b97f4a7c15ULL;
        sizes[i] = 0;
    }
    esr_replay_counts c;
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, N, 0, &c) == ESR_OK, "runs");
    CHECK(c.misses == N && c.stored == N && c.evictions == 0, "all stored");
    for (size_t i = 0; i < N; i++) {
        keys[i] = rnd() % 5000;
        sizes[i] = (int64_t)(keys[i] % 97);
    }
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, N, 20000, &c) == ESR_OK, "runs");
    esr_replay_counts want;
    textbook(ESR_REPLAY_LRU, keys, sizes, 20000, 20000, &want); /* a prefix: O(n^2) */
    esr_replay_counts prefix;
    esr_replay(ESR_REPLAY_LRU, keys, sizes, 20000, 20000, &prefix);
    CHECK(same(&prefix, &want), "a long prefix agrees with the textbook cache");
    CHECK(c.used <= 20000 && c.evictions > 0, "evicts through the grown table");
    free(keys);
    free(sizes);
}

static void test_allocation_failures(void)
{
    /* enough distinct objects for both arrays to grow several times */
    enum { N = 20000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    int64_t *sizes = malloc(N * sizeof *sizes);
    for (size_t i = 0; i < N; i++) {
        keys[i] = i % 9000;
        sizes[i] = (int64_t)(i % 3);
    }
    esr_replay_counts want;
    alloc_calls = 0;
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, N, 1u << 20, &want) == ESR_OK, "runs");
    long total = alloc_calls;
    CHECK(total >= 6, "the arrays grew");
    int all_enomem = 1;
    for (long k = 0; k < total; k++) {
        esr_replay_counts c;
        alloc_budget = k;
        int rc = esr_replay(k % 2 ? ESR_REPLAY_FIFO : ESR_REPLAY_LRU, keys, sizes, N, 1u << 20, &c);
        if (rc != ESR_ENOMEM) {
            all_enomem = 0;
            fprintf(stderr, "allocation %ld of %ld failed: got %d\n", k, total, rc);
        }
    }
    alloc_budget = total;
    esr_replay_counts c;
    CHECK(esr_replay(ESR_REPLAY_LRU, keys, sizes, N, 1u << 20, &c) == ESR_OK, "enough allocations");
    CHECK(same(&c, &want), "same counts");
    alloc_budget = -1;
    CHECK(all_enomem, "each failed allocation is ESR_ENOMEM (and leaks nothing)");
    free(keys);
    free(sizes);
}

int main(void)
{
    test_textbook_example();
    test_semantics();
    test_bad_arguments();
    test_huge_sizes();
    test_random_against_textbook();
    test_growth();
    test_allocation_failures();
    printf("test_replay: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
