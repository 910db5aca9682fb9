/*
 * esr_internal.h - private declarations shared by the esr_*.c files.
 *
 * Storage model: every byte of rule data (strings, query pairs, conditions,
 * target programs) lives in one growable arena addressed by 32-bit offsets,
 * so the builder can realloc it freely and hand it to the ruleset at
 * compile time. Rules are fixed-size records (esr_rule) in one array.
 */
#ifndef ESR_INTERNAL_H
#define ESR_INTERNAL_H

#include "esr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct esr_span {
    uint32_t off, len;
} esr_span;

enum { ESR_SCHEME_NONE = 0, ESR_SCHEME_HTTP = 1, ESR_SCHEME_HTTPS = 2 };

enum {
    ESR_COND_COUNTRY = 1,
    ESR_COND_LANGUAGE = 2,
    ESR_COND_ROLE = 3,
    ESR_COND_COOKIE = 4,
    ESR_COND_SIGN = 5,   /* Sign= (not a match condition) */
    ESR_COND_SIGNED = 6  /* signed= (not a match condition) */
};

/* Target program operations: the `to` template is compiled to a list of
 * literal runs and bound references, so matching never rescans it. */
enum { ESR_OP_LIT = 0, ESR_OP_PH = 1, ESR_OP_SPLAT = 2, ESR_OP_QCAP = 3 };

typedef struct esr_qpair {
    esr_span key; /* raw key */
    esr_span val; /* form-decoded literal, or the capture name */
    uint32_t capture;
} esr_qpair;

typedef struct esr_cond {
    uint32_t type;
    esr_span val; /* raw comma list (split at match time) */
} esr_cond;

typedef struct esr_op {
    uint32_t kind;
    uint32_t a; /* LIT: arena offset; PH: placeholder ordinal; QCAP: pair index */
    uint32_t b; /* LIT: length */
} esr_op;

#define ESR_F_FORCE 0x01u
#define ESR_F_DYNAMIC 0x02u
#define ESR_F_SPLAT 0x04u
#define ESR_F_QUERY 0x08u
#define ESR_F_COND 0x10u  /* Country/Language/Cookie/Role */
#define ESR_F_ROLE 0x20u
#define ESR_F_STATIC_TARGET 0x40u

typedef struct esr_rule {
    esr_span from;     /* as written */
    esr_span to;       /* as written (forward rules: synthesised) */
    esr_span host;     /* normalised host ("" = any) */
    esr_span path;     /* canonical path, trailing '/' removed per R2.1 */
    uint32_t source, line;
    uint32_t qpairs, nq; /* arena offset of esr_qpair[nq] */
    uint32_t conds, nc;  /* arena offset of esr_cond[nc] */
    uint32_t ops, nops;  /* arena offset of esr_op[nops] */
    uint32_t nph;        /* placeholder segments matched before the splat */
    uint32_t keylen;     /* index key = path[0..keylen) */
    uint32_t splat_j;    /* splat rules: index of the last '/' before '*' */
    uint16_t status;
    uint8_t scheme;
    uint8_t flags;
} esr_rule;

typedef struct esr_arena {
    char *p;
    size_t len, cap;
} esr_arena;

/* One bucket of the rule index. The key is read from rule `rep`. */
typedef struct esr_slot {
    uint32_t hash; /* low bits of the 64-bit key hash; 0 marks empty with cnt 0 */
    uint32_t rep;  /* representative rule (its scheme, host, path[0..keylen)) */
    uint32_t off;  /* first entry in ruleset->pool */
    uint32_t cnt;  /* number of rule indexes (ascending) */
} esr_slot;

struct esr_ruleset {
    esr_arena arena;
    esr_rule *rules;
    size_t nrules;
    esr_diag *diags;
    size_t ndiags;
    esr_slot *slots;
    size_t nslots; /* power of two */
    uint32_t *pool;
    size_t host_rules; /* number of rules with a host */
    size_t max_host;   /* longest rule host */
    size_t memory;
};

/* ---- util (esr_util.c) ---- */
bool esr_is_unreserved(unsigned char c);
bool esr_is_namech(unsigned char c);
int esr_hexval(unsigned char c);
/* Canonical percent-encoding; out must hold 3*n bytes. Returns bytes written. */
size_t esr_canon_path(const char *s, size_t n, char *out);
/* Form-decode (+ is space, %XX decoded, bad escapes literal); out holds n. */
size_t esr_form_decode(const char *s, size_t n, char *out);
/* Does the form-decoding of s equal lit exactly? */
bool esr_form_equal(const char *s, size_t n, const char *lit, size_t litn);
/* Check a line: 0 = fine, else 1 invalid UTF-8, 2 NUL, 3 control byte, and
 * *bad is the byte offset of the first bad byte. */
int esr_check_line(const char *s, size_t n, size_t *bad);
/* Code points in s[0..n) (s is valid UTF-8). */
size_t esr_count_cp(const char *s, size_t n);
uint64_t esr_hash_init(uint32_t kind, uint32_t scheme, const char *host, size_t hostlen);
static inline uint64_t esr_hash_byte(uint64_t h, unsigned char c)
{
    return (h ^ c) * 0x100000001b3ULL;
}
uint64_t esr_hash_bytes(uint64_t h, const char *s, size_t n);
uint32_t esr_hash_final(uint64_t h, size_t len);
/* Copy a token for a message: at most max bytes, cut on a UTF-8 boundary,
 * invalid or control bytes as '?', "..." when cut. Returns dst. */
char *esr_quote(char *dst, size_t cap, const char *s, size_t n, size_t max);
bool esr_ieq(const char *a, size_t an, const char *b, size_t bn);

/* Index key kinds (hash seeds). */
#define ESR_KEY_EXACT 1u
#define ESR_KEY_PREFIX 2u

#endif /* ESR_INTERNAL_H */
