/*
 * esr_replay.c - trace replay through one byte-bounded cache (edgesim replay).
 *
 * The loops of edgesim/replay.py (_lru, _fifo) in C, with the same semantics
 * (docs/replay.md, "Semantics"): capacity in bytes; a request is a hit when
 * its key is stored, whatever its size (the stored size is kept); a miss
 * evicts from the old end until the object fits and inserts it at the new
 * end; an object larger than the cache is never stored and evicts nothing; a
 * zero-byte object always fits. LRU moves a hit to the new end, FIFO does not.
 *
 * Storage, all of it owned by one call and freed before it returns:
 *
 *   - nodes: the stored objects, a circular doubly linked list through
 *     32-bit indexes, node 0 being the sentinel (its next is the old end,
 *     its prev the new end). Evicted nodes go to a free list (through next).
 *   - table: open addressing with linear probing, key -> node index (0 =
 *     empty slot), at most half full, grown by doubling. Eviction deletes by
 *     backward shift, so there are no tombstones and the table holds only
 *     what is stored.
 *
 * Both grow as needed (a cache of zero-byte objects holds any number of
 * them). Byte counts: a stored total never exceeds the capacity (the test is
 * used > cap - size, with size <= cap), so it cannot overflow; sums over the
 * requests are kept in two 64-bit words (128 bits), which no trace of fewer
 * than 2^65 requests can overflow.
 *
 * ESR_REPLAY_MALLOC / ESR_REPLAY_REALLOC / ESR_REPLAY_FREE exist so that the
 * C tests can compile this file with failing allocators (native/tests/
 * test_replay.c); the library itself uses malloc, realloc and free.
 *
 * No globals; thread-safe (a call touches only its arguments and its own heap).
 */
#include "esr.h"

#include <stdlib.h>
#include <string.h>

#ifndef ESR_REPLAY_MALLOC
#define ESR_REPLAY_MALLOC malloc
#define ESR_REPLAY_REALLOC realloc
#define ESR_REPLAY_FREE free
#endif

typedef struct rp_node {
    uint64_t key;
    uint64_t size;
    uint32_t prev, next;
} rp_node;

typedef struct rp_slot {
    uint64_t key;
    uint32_t node; /* 0: empty */
} rp_slot;

typedef struct rp_cache {
    rp_node *nodes;
    uint32_t n_nodes;   /* nodes handed out so far, the sentinel included */
    uint32_t cap_nodes; /* allocated */
    uint32_t free_head; /* 0: none */
    rp_slot *table;
    size_t mask;        /* slots - 1 (slots a power of two) */
    unsigned shift;     /* 64 - log2(slots) */
    size_t live;        /* occupied slots = stored objects */
} rp_cache;

enum { RP_INIT_NODES = 1024, RP_INIT_BITS = 11 };

/* The table slot of the request RP_AHEAD ahead is fetched early: the keys are known in
 * advance, and most of a request's time is waiting for memory. */
#ifndef RP_AHEAD
#define RP_AHEAD 12
#endif
#if defined(__GNUC__) || defined(__clang__)
#define RP_PREFETCH(p) __builtin_prefetch(p)
#else
#define RP_PREFETCH(p) ((void)(p))
#endif

/* Fibonacci hashing of the key with its high half folded in: dense ids
 * (CSV traces) and hashed ids (oracleGeneral) both spread. */
static inline size_t rp_home(const rp_cache *c, uint64_t key)
{
    uint64_t h = (key ^ (key >> 32)) * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> c->shift);
}

/* The slot holding `key`, or the empty slot where it would go. */
static inline size_t rp_find(const rp_cache *c, uint64_t key)
{
    size_t i = rp_home(c, key);
    for (;;) {
        const rp_slot *s = &c->table[i];
        if (s->node == 0 || s->key == key)
            return i;
        i = (i + 1) & c->mask;
    }
}

static int rp_table_alloc(rp_cache *c, unsigned bits)
{
    if (bits >= 8 * sizeof(size_t) - 1 || bits > 63)
        return ESR_ERANGE;
    size_t slots = (size_t)1 << bits;
    if (slots > SIZE_MAX / sizeof(rp_slot))
        return ESR_ERANGE;
    rp_slot *t = ESR_REPLAY_MALLOC(slots * sizeof(rp_slot));
    if (t == NULL)
        return ESR_ENOMEM;
    memset(t, 0, slots * sizeof(rp_slot));
    c->table = t;
    c->mask = slots - 1;
    c->shift = 64u - bits;
    return ESR_OK;
}

/* Doubles the table; on failure the old one is kept (and freed by the caller). */
static int rp_table_grow(rp_cache *c)
{
    rp_slot *old = c->table;
    size_t old_slots = c->mask + 1;
    unsigned bits = 64u - c->shift + 1u;
    int rc = rp_table_alloc(c, bits);
    if (rc != ESR_OK)
        return rc; /* c unchanged: the old table stays */
    for (size_t i = 0; i < old_slots; i++) {
        if (old[i].node != 0)
            c->table[rp_find(c, old[i].key)] = old[i];
    }
    ESR_REPLAY_FREE(old);
    return ESR_OK;
}

/* Empties slot i, shifting later entries of its probe run back. */
static void rp_erase(rp_cache *c, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & c->mask;
        if (c->table[j].node == 0)
            break;
        size_t home = rp_home(c, c->table[j].key);
        /* the entry may move to i unless its home lies in (i, j] */
        if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
            c->table[i] = c->table[j];
            i = j;
        }
    }
    c->table[i].node = 0;
    c->live--;
}

/* A node index for a new object (not yet linked), or 0 with *rc set. */
static uint32_t rp_node_new(rp_cache *c, int *rc)
{
    if (c->free_head != 0) {
        uint32_t n = c->free_head;
        c->free_head = c->nodes[n].next;
        return n;
    }
    if (c->n_nodes == c->cap_nodes) {
        if (c->cap_nodes > UINT32_MAX / 2) {
            *rc = ESR_ERANGE;
            return 0;
        }
        uint32_t more = c->cap_nodes * 2u;
#if SIZE_MAX / 24u < UINT32_MAX /* 32-bit size_t: the array's bytes must fit */
        if ((size_t)more > SIZE_MAX / sizeof(rp_node)) {
            *rc = ESR_ERANGE;
            return 0;
        }
#endif
        rp_node *p = ESR_REPLAY_REALLOC(c->nodes, (size_t)more * sizeof(rp_node));
        if (p == NULL) {
            *rc = ESR_ENOMEM;
            return 0;
        }
        c->nodes = p;
        c->cap_nodes = more;
    }
    return c->n_nodes++;
}

static inline void rp_unlink(rp_node *nodes, uint32_t n)
{
    nodes[nodes[n].prev].next = nodes[n].next;
    nodes[nodes[n].next].prev = nodes[n].prev;
}

static inline void rp_push_new_end(rp_node *nodes, uint32_t n)
{
    uint32_t last = nodes[0].prev;
    nodes[n].prev = last;
    nodes[n].next = 0;
    nodes[last].next = n;
    nodes[0].prev = n;
}

static inline void rp_add(uint64_t sum[2], uint64_t x)
{
    sum[0] += x;
    sum[1] += sum[0] < x;
}

/* The loop, specialised by `lru` (a constant at each call site). */
static inline int rp_run(rp_cache *c, int lru, const uint64_t *keys, const int64_t *sizes, size_t n,
                         uint64_t cap, esr_replay_counts *out)
{
    uint64_t misses = 0, evictions = 0, used = 0;
    uint64_t miss_bytes[2] = {0, 0}, bytes[2] = {0, 0};
    rp_node *nodes = c->nodes;
    for (size_t r = 0; r < n; r++) {
        if (r + RP_AHEAD < n)
            RP_PREFETCH(&c->table[rp_home(c, keys[r + RP_AHEAD])]);
        uint64_t key = keys[r];
        int64_t signed_size = sizes[r];
        if (signed_size < 0)
            return ESR_EINVAL;
        uint64_t size = (uint64_t)signed_size;
        rp_add(bytes, size);
        size_t slot = rp_find(c, key);
        uint32_t hit = c->table[slot].node;
        if (hit != 0) {
            if (lru && nodes[0].prev != hit) {
                rp_unlink(nodes, hit);
                rp_push_new_end(nodes, hit);
            }
            continue;
        }
        misses++;
        rp_add(miss_bytes, size);
        if (size > cap)
            continue; /* never stored, evicts nothing */
        int moved = 0;
        while (used > cap - size) { /* used > 0 here, so the list is not empty */
            uint32_t old = nodes[0].next;
            rp_unlink(nodes, old);
            used -= nodes[old].size;
            rp_erase(c, rp_find(c, nodes[old].key));
            nodes[old].next = c->free_head;
            c->free_head = old;
            evictions++;
            moved = 1;
        }
        int rc = ESR_OK;
        uint32_t node = rp_node_new(c, &rc);
        if (node == 0)
            return rc;
        nodes = c->nodes; /* may have moved */
        if ((c->live + 1) * 2 > c->mask + 1) {
            if ((rc = rp_table_grow(c)) != ESR_OK) {
                nodes[node].next = c->free_head; /* back to the free list: freed with the rest */
                c->free_head = node;
                return rc;
            }
            moved = 1;
        }
        if (moved)
            slot = rp_find(c, key);
        c->table[slot].key = key;
        c->table[slot].node = node;
        c->live++;
        nodes[node].key = key;
        nodes[node].size = size;
        rp_push_new_end(nodes, node);
        used += size;
    }
    out->requests = (uint64_t)n;
    out->misses = misses;
    out->evictions = evictions;
    out->stored = (uint64_t)c->live;
    out->used = used;
    memcpy(out->miss_bytes, miss_bytes, sizeof miss_bytes);
    memcpy(out->bytes, bytes, sizeof bytes);
    return ESR_OK;
}

int esr_replay(int policy, const uint64_t *keys, const int64_t *sizes, size_t n, uint64_t capacity,
               esr_replay_counts *out)
{
    if (out == NULL || (n > 0 && (keys == NULL || sizes == NULL)))
        return ESR_EINVAL;
    if (policy != ESR_REPLAY_LRU && policy != ESR_REPLAY_FIFO)
        return ESR_EINVAL;
    rp_cache c;
    memset(&c, 0, sizeof c);
    c.nodes = ESR_REPLAY_MALLOC((size_t)RP_INIT_NODES * sizeof(rp_node));
    if (c.nodes == NULL)
        return ESR_ENOMEM;
    c.cap_nodes = RP_INIT_NODES;
    c.n_nodes = 1; /* the sentinel */
    c.nodes[0].prev = c.nodes[0].next = 0;
    c.nodes[0].key = c.nodes[0].size = 0;
    int rc = rp_table_alloc(&c, RP_INIT_BITS);
    if (rc == ESR_OK) {
        if (policy == ESR_REPLAY_LRU)
            rc = rp_run(&c, 1, keys, sizes, n, capacity, out);
        else
            rc = rp_run(&c, 0, keys, sizes, n, capacity, out);
    }
    ESR_REPLAY_FREE(c.table);
    ESR_REPLAY_FREE(c.nodes);
    return rc;
}
