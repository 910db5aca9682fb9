/*
 * esr_digest.c - bulk hashes of the capacity engine's set-up, one call each.
 *
 * esr_catalog_digests: origin/_catalog.py names object i of a deploy by
 * BLAKE2b with an 8-byte digest (unkeyed) of the text "<seed>:<i>:<version>",
 * as hashlib computes it. The engine lists every object's URL when a run
 * starts, and one hashlib call per object cost more than the rest of that
 * listing. This is BLAKE2b as RFC 7693 specifies it, cut down to what these
 * texts need: the message (at most 62 bytes) fits in one block, so the hash is
 * a single compression of the final block.
 *
 * esr_key_hashes: the key hash of spatial sampling (edgesim/engine.py,
 * _key_samples), FNV-1a over each key with a splitmix64 finish.
 *
 * Pure function over const tables; thread-safe.
 */
#include "esr.h"

#include <string.h>

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

/* The message word schedule of the rounds: round r uses row r % 10. */
static const uint8_t SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint64_t rotr64(uint64_t x, unsigned n)
{
    return (x >> n) | (x << (64 - n));
}

#define MIX(a, b, c, d, x, y)                                                  \
    do {                                                                       \
        v[a] = v[a] + v[b] + (x);                                              \
        v[d] = rotr64(v[d] ^ v[a], 32);                                        \
        v[c] = v[c] + v[d];                                                    \
        v[b] = rotr64(v[b] ^ v[c], 24);                                        \
        v[a] = v[a] + v[b] + (y);                                              \
        v[d] = rotr64(v[d] ^ v[a], 16);                                        \
        v[c] = v[c] + v[d];                                                    \
        v[b] = rotr64(v[b] ^ v[c], 63);                                        \
    } while (0)

/* Word i of the message block: bytes 8i..8i+7, little-endian. */
static inline uint64_t load64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
#else
    uint64_t w = 0;
    for (int k = 7; k >= 0; k--)
        w = (w << 8) | p[k];
    return w;
#endif
}

/* One round with the message schedule of row r (a constant: every index folds). */
#define ROUND(r)                                                               \
    do {                                                                       \
        MIX(0, 4, 8, 12, m[SIGMA[r][0]], m[SIGMA[r][1]]);                      \
        MIX(1, 5, 9, 13, m[SIGMA[r][2]], m[SIGMA[r][3]]);                      \
        MIX(2, 6, 10, 14, m[SIGMA[r][4]], m[SIGMA[r][5]]);                     \
        MIX(3, 7, 11, 15, m[SIGMA[r][6]], m[SIGMA[r][7]]);                     \
        MIX(0, 5, 10, 15, m[SIGMA[r][8]], m[SIGMA[r][9]]);                     \
        MIX(1, 6, 11, 12, m[SIGMA[r][10]], m[SIGMA[r][11]]);                   \
        MIX(2, 7, 8, 13, m[SIGMA[r][12]], m[SIGMA[r][13]]);                    \
        MIX(3, 4, 9, 14, m[SIGMA[r][14]], m[SIGMA[r][15]]);                    \
    } while (0)

/* The first 8 bytes (little-endian h[0]) of BLAKE2b-64 of `msg` (len <= 64: the
 * catalog's texts are at most 62 bytes, so words 8-15 of the block are zero, which
 * the unrolled rounds fold away). */
static uint64_t blake2b64_short(const unsigned char *msg, size_t len)
{
    unsigned char block[64];
    memset(block, 0, sizeof block);
    memcpy(block, msg, len);
    uint64_t m[16];
    for (int i = 0; i < 8; i++)
        m[i] = load64(block + 8 * i);
    for (int i = 8; i < 16; i++)
        m[i] = 0;
    uint64_t h0 = IV[0] ^ 0x01010000ULL ^ 8; /* fanout 1, depth 1, no key, 8-byte digest */
    uint64_t v[16];
    v[0] = h0;
    for (int i = 1; i < 8; i++)
        v[i] = IV[i];
    for (int i = 0; i < 8; i++)
        v[i + 8] = IV[i];
    v[12] ^= (uint64_t)len; /* bytes compressed so far: the whole message */
    v[14] = ~v[14];         /* the last block */
    ROUND(0);
    ROUND(1);
    ROUND(2);
    ROUND(3);
    ROUND(4);
    ROUND(5);
    ROUND(6);
    ROUND(7);
    ROUND(8);
    ROUND(9);
    ROUND(0); /* rounds 10 and 11 take rows 0 and 1 again */
    ROUND(1);
    return h0 ^ v[0] ^ v[8];
}

/* Decimal text of x at p (no terminator); returns the bytes written (<= 20). */
static size_t put_u64(char *p, uint64_t x)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (x % 10));
        x /= 10;
    } while (x);
    for (size_t k = 0; k < n; k++)
        p[k] = tmp[n - 1 - k];
    return n;
}

static size_t put_i64(char *p, int64_t x)
{
    if (x >= 0)
        return put_u64(p, (uint64_t)x);
    p[0] = '-';
    /* -(x + 1) + 1 stays in range for INT64_MIN */
    return 1 + put_u64(p + 1, (uint64_t)(-(x + 1)) + 1u);
}

int esr_catalog_digests(int64_t seed, const uint32_t *version, size_t n, char *out)
{
    static const char HEXL[] = "0123456789abcdef";
    if (n == 0)
        return ESR_OK;
    if (version == NULL || out == NULL)
        return ESR_EINVAL;
    char msg[64];
    size_t head = put_i64(msg, seed);
    msg[head++] = ':';
    for (size_t i = 0; i < n; i++) {
        size_t len = head + put_u64(msg + head, (uint64_t)i);
        msg[len++] = ':';
        len += put_u64(msg + len, version[i]);
        uint64_t d = blake2b64_short((const unsigned char *)msg, len);
        char *o = out + 16 * i;
        for (int k = 0; k < 8; k++) { /* the digest's bytes are h[0], little-endian */
            unsigned byte = (unsigned)(d >> (8 * k)) & 0xffu;
            o[2 * k] = HEXL[byte >> 4];
            o[2 * k + 1] = HEXL[byte & 0xfu];
        }
    }
    return ESR_OK;
}

/* The spatial-sampling hash of cache keys (edgesim/engine.py, _key_samples):
 * FNV-1a (64-bit) over each key's bytes from `start`, then the key's length
 * mixed in and the splitmix64 finaliser. */
int esr_key_hashes(uint64_t start, const char *data, const uint32_t *lengths, size_t n, uint64_t *out)
{
    const uint64_t prime = 0x100000001b3ULL;
    if (n == 0)
        return ESR_OK;
    if (lengths == NULL || out == NULL)
        return ESR_EINVAL;
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = start;
        uint32_t len = lengths[i];
        if (len && p == NULL)
            return ESR_EINVAL;
        for (uint32_t k = 0; k < len; k++)
            h = (h ^ p[k]) * prime;
        p += len;
        h ^= (uint64_t)len;
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebULL;
        h ^= h >> 31;
        out[i] = h;
    }
    return ESR_OK;
}
