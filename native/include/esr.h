/*
 * esr.h - edgesim redirect/rewrite rule matcher (the native contract).
 *
 * Theory of operation
 * -------------------
 * Rules come in as `_redirects` text (esr_builder_add_text) or as structured
 * field records produced from netlify.toml by the Python layer
 * (esr_builder_add_fields). Both paths end in the same per-rule validation
 * and normalisation. esr_builder_compile() then freezes the accepted rules
 * into an immutable, indexed esr_ruleset:
 *
 *   - an exact-path hash for rules without placeholders or splats, and
 *   - a "literal prefix" hash for dynamic rules, keyed by the rule's path up
 *     to the segment that holds its first placeholder or splat,
 *
 * each bucket holding rule indexes in ascending order. A request gathers the
 * candidate buckets for its path (one exact lookup plus one lookup per `/`
 * boundary of the path) and evaluates candidates in ascending rule index, so
 * first-match-wins order is identical to a linear scan while the cost grows
 * with the path depth, not with the rule count.
 *
 * Semantics follow docs/redirects.md (the edgesim reading of the rule spec).
 *
 * Rules for this library
 * ----------------------
 *   - No mutable globals, no hidden init, no errno-style state. Only const
 *     tables are static.
 *   - Every allocating function has exactly one matching free; freeing NULL
 *     is a no-op.
 *   - Inputs are pointer + length; nothing relies on NUL termination.
 *
 * Thread safety
 * -------------
 * A compiled esr_ruleset is immutable: any number of threads may call the
 * esr_ruleset_* query and match functions on it concurrently. Matching uses
 * only the stack, caller storage and (for paths longer than
 * ESR_STACK_PATH bytes) a temporary heap buffer that it frees before
 * returning. esr_ruleset_free must not run while another thread still uses
 * the set: the owner (edgesim.redirects.RuleSet) guarantees that.
 * An esr_builder is single-owner and must not be shared between threads.
 */
#ifndef ESR_H
#define ESR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes (negative = failure). */
#define ESR_OK 0
#define ESR_ENOMEM (-1)  /* allocation failed; nothing changed */
#define ESR_EINVAL (-2)  /* bad argument (NULL pointer, unparsable URL) */
#define ESR_ERANGE (-3)  /* caller buffer too small; see the function */
#define ESR_ESTATE (-4)  /* builder already compiled */

/* Diagnostic severities. */
#define ESR_SEV_WARNING 1
#define ESR_SEV_ERROR 2

/* Diagnostic codes. Errors skip the rule; warnings keep it.
 * esr_diag_code_name() gives the stable upper-case name used in output. */
enum esr_diag_code {
    ESR_D_NONE = 0,
    /* errors */
    ESR_D_MISSING_TO = 1,
    ESR_D_BAD_TARGET = 2,
    ESR_D_BAD_STATUS = 3,
    ESR_D_BAD_FROM = 4,
    ESR_D_RESERVED_PATH = 5,
    ESR_D_SPLAT_NOT_AT_END = 6,
    ESR_D_BAD_QUERY_PAIR = 7,
    ESR_D_UNKNOWN_CONDITION = 8,
    ESR_D_BAD_CONDITION = 9,
    ESR_D_BAD_FIELD_TYPE = 10, /* produced by the Python TOML layer */
    ESR_D_TOML_SYNTAX = 11,    /* produced by the Python TOML layer */
    ESR_D_NOT_AN_ARRAY = 12,   /* produced by the Python TOML layer */
    ESR_D_LINE_TOO_LONG = 13,
    ESR_D_TOO_MANY_RULES = 14,
    ESR_D_BAD_ENCODING = 15, /* invalid UTF-8, NUL or control byte */
    /* warnings */
    ESR_D_SELF_REDIRECT = 32,
    ESR_D_TRAILING_SLASH_ONLY = 33,
    ESR_D_STATUS_NOT_ON_NETLIFY = 34,
    ESR_D_NONCANONICAL_KEY = 35,
    ESR_D_PLACEHOLDER_NAME = 36,
    ESR_D_UNBOUND_REFERENCE = 37,
    ESR_D_DUPLICATE_PLACEHOLDER = 38,
    ESR_D_UNREACHABLE = 39,   /* cross-rule lint, Python layer */
    ESR_D_DUPLICATE_RULE = 40, /* cross-rule lint, Python layer */
    ESR_D_BOM = 41,
    ESR_D_HEADERS_ON_NON_PROXY = 42,
    ESR_D_EMPTY_FROM_PATH = 43,
    ESR_D_FROM_NO_SLASH = 44,
    ESR_D_OPEN_REDIRECT = 45
};

/* Limits (builder defaults; 0 in esr_builder_new means "default"). */
#define ESR_DEFAULT_MAX_LINE 8192     /* bytes per `_redirects` line */
#define ESR_DEFAULT_MAX_RULES 1000000 /* accepted rules per set */
#define ESR_STACK_PATH 4096           /* canonical path bytes kept on stack */
#define ESR_MESSAGE_MAX 160           /* bytes in esr_diag.message incl. NUL */

/* One diagnostic. `source` is the caller's source id (file number);
 * `line` is the 1-based physical line for text input, or the `line`
 * argument given to esr_builder_add_fields; `column` is the 1-based column,
 * counted in UTF-8 code points, of the offending token (1 for records).
 * `message` is NUL-terminated, one line, without location or code. */
typedef struct esr_diag {
    int severity;
    int code;
    uint32_t source;
    uint32_t line;
    uint32_t column;
    char message[ESR_MESSAGE_MAX];
} esr_diag;

typedef struct esr_builder esr_builder;
typedef struct esr_ruleset esr_ruleset;

/* Per-request visitor context. All strings are pointer+length and may be
 * empty (ptr may then be NULL). `cookies` lists the names of cookies that are
 * present with a non-empty value, and `roles` the roles of a verified JWT;
 * both are NUL-separated lists ("a\0b"; a trailing NUL is allowed).
 * `country` is the effective ISO code, `language` the effective tag.
 * The context is only read during the call. */
typedef struct esr_context {
    const char *country;
    size_t country_len;
    const char *language;
    size_t language_len;
    const char *cookies;
    size_t cookies_len;
    const char *roles;
    size_t roles_len;
} esr_context;

/* Match outcome kinds. */
#define ESR_NO_MATCH 0
#define ESR_MATCH 1
#define ESR_DENIED 2 /* a Role= rule denied and no later rule matched */
#define ESR_MATCH_AFTER_DENIAL 3 /* batch kinds only: MATCH with denied_by >= 0 */

typedef struct esr_result {
    int kind;          /* ESR_NO_MATCH, ESR_MATCH or ESR_DENIED */
    int32_t rule;      /* matched rule (MATCH) or first denying rule (DENIED); -1 otherwise */
    int32_t denied_by; /* MATCH only: first rule that denied before it, else -1 */
    size_t target_len; /* MATCH: bytes of the target (written or needed) */
    int context_used;  /* 1 if a rule with Country/Language/Cookie/Role conditions was
                        * reached (its host, path and query matched) before the outcome
                        * was decided: the outcome may differ for another context.
                        * 0: the same URL has this outcome whatever the context. */
} esr_result;

/* Summary of one compiled rule, all pointers into the ruleset: valid only
 * while the ruleset lives, never to be freed by the caller. */
typedef struct esr_rule_info {
    const char *from;   /* `from` as written (path or absolute URL) */
    size_t from_len;
    const char *to;     /* `to` template as written (forward rules: synthesised) */
    size_t to_len;
    int status;
    int force;
    uint32_t source;
    uint32_t line;
    int has_query;      /* has query conditions */
    int has_conditions; /* has Country/Language/Cookie/Role conditions */
    int has_role;       /* has a Role condition */
    int dynamic;        /* has a placeholder or splat */
    int target_static;  /* `to` has no substitutable :name token */
} esr_rule_info;

/* ---- error texts --------------------------------------------------------- */

/* Static text for an ESR_* return code. Never NULL. */
const char *esr_strerror(int code);

/* Static upper-case name of a diagnostic code ("MISSING_TO"); "UNKNOWN"
 * for unknown values. Never NULL. */
const char *esr_diag_code_name(int code);

/* ---- building ------------------------------------------------------------ */

/* Create a builder. max_line / max_rules of 0 select the defaults.
 * Returns ESR_OK and stores the builder in *out, or ESR_ENOMEM / ESR_EINVAL.
 * Free with esr_builder_free (also after a successful compile). */
int esr_builder_new(size_t max_line, size_t max_rules, esr_builder **out);

/* Free a builder. NULL is a no-op. */
void esr_builder_free(esr_builder *b);

/* Parse `_redirects` text (any bytes; invalid lines become diagnostics and
 * are skipped). `source` is recorded in diagnostics and rule infos. A leading
 * UTF-8 BOM is stripped (warning). Returns the number of rules accepted from
 * this text (>= 0), or ESR_ENOMEM / ESR_ESTATE / ESR_EINVAL. */
int esr_builder_add_text(esr_builder *b, uint32_t source, const char *text, size_t len);

/* Add one structured rule (the netlify.toml path). The record is a sequence
 * of NUL-terminated fields, each starting with a one-byte tag:
 *   "F<from>"          from (required; a missing F gives BAD_FROM)
 *   "T<to>"            to (optional: forward rules)
 *   "S<digits>"        status (optional, default 301)
 *   "!"                force
 *   "Q<key>\x1f<val>"  a query condition (value literal or ":name")
 *   "C<Key>\x1f<v1,v2>" a condition; values comma-separated
 *   "H<name>\x1f<val>" a proxy request header
 *   "G<var>"           signing secret env var (signed)
 * `line` is stored as the rule's line (the TOML table's line or index).
 * Returns 1 if the rule was accepted, 0 if it was rejected (a diagnostic was
 * recorded), or ESR_ENOMEM / ESR_ESTATE / ESR_EINVAL (malformed record). */
int esr_builder_add_fields(esr_builder *b, uint32_t source, uint32_t line,
                           const char *record, size_t len);

/* Freeze the builder's rules into an immutable indexed ruleset. On ESR_OK
 * *out owns the rules and a copy of every diagnostic; the builder is then
 * spent (further add/compile calls return ESR_ESTATE) but must still be
 * freed. On ESR_ENOMEM nothing is allocated. */
int esr_builder_compile(esr_builder *b, esr_ruleset **out);

/* Number of diagnostics recorded so far by the builder, and the i-th one
 * (pointer valid until the next builder call or esr_builder_free). */
size_t esr_builder_diag_count(const esr_builder *b);
const esr_diag *esr_builder_diag(const esr_builder *b, size_t i);

/* ---- the compiled ruleset ------------------------------------------------ */

/* Free a ruleset. NULL is a no-op. Must not race with other calls on it. */
void esr_ruleset_free(esr_ruleset *rs);

/* Number of compiled rules. */
size_t esr_ruleset_rule_count(const esr_ruleset *rs);

/* Bytes of heap held by the ruleset (rules, strings, indexes). */
size_t esr_ruleset_memory(const esr_ruleset *rs);

/* Fill *info for rule i (0-based). Returns ESR_OK or ESR_EINVAL. */
int esr_ruleset_rule(const esr_ruleset *rs, size_t i, esr_rule_info *info);

/* Rule flags of esr_ruleset_export. */
#define ESR_RULE_FORCE 0x01
#define ESR_RULE_DYNAMIC 0x02         /* placeholder or splat */
#define ESR_RULE_QUERY 0x08           /* has query conditions */
#define ESR_RULE_CONDITIONS 0x10      /* Country/Language/Cookie/Role */
#define ESR_RULE_ROLE 0x20
#define ESR_RULE_TARGET_STATIC 0x40   /* `to` has no bound :name token */

/* Bulk export of per-rule facts into caller arrays of n entries each
 * (n must equal esr_ruleset_rule_count): status, ESR_RULE_* flags, source
 * and line. One call instead of n esr_ruleset_rule calls. Returns ESR_OK or
 * ESR_EINVAL. */
int esr_ruleset_export(const esr_ruleset *rs, int32_t *status, uint8_t *flags,
                       uint32_t *source, uint32_t *line, size_t n);

/* Diagnostics of the compile, ordered by (source, line, column), and the
 * i-th one (pointer valid while the ruleset lives). */
size_t esr_ruleset_diag_count(const esr_ruleset *rs);
const esr_diag *esr_ruleset_diag(const esr_ruleset *rs, size_t i);

/* Match one request. `url` is either absolute ("https://host[:port]/path?q")
 * or origin-form ("/path?q"); a "#fragment" is ignored. `ctx` may be NULL
 * (no country, language, cookies or roles). The target (after placeholder
 * substitution, before any request query is passed through) is written to
 * `target` (not NUL-terminated) when it fits in target_cap bytes.
 * Returns ESR_OK (result in *res), ESR_ERANGE (MATCH, but the target needs
 * res->target_len bytes: call again with a larger buffer), or ESR_EINVAL
 * (NULL arguments, or a URL that is neither absolute http(s) nor starts
 * with '/'). Thread-safe on a shared ruleset.
 * (Clarification: ESR_ENOMEM is also possible, only when a temporary buffer
 * cannot be allocated: a URL whose host + 3 x path exceeds ESR_STACK_PATH
 * bytes, or a matched rule with more than 64 placeholders. `target` may be
 * NULL when target_cap is 0.) */
int esr_ruleset_match(const esr_ruleset *rs, const char *url, size_t url_len,
                      const esr_context *ctx, esr_result *res,
                      char *target, size_t target_cap);

/* Match a batch of URLs that share one context. `urls` holds `n` URLs
 * separated by single '\n' bytes (no trailing separator needed). For URL k:
 * kinds[k] is the outcome kind (ESR_MATCH_AFTER_DENIAL for a match that came
 * after a Role= denial, -1 for an invalid URL), rules[k] the rule
 * (or -1), and the target bytes are appended to `out`, ends[k] being the
 * offset just past them (targets of non-matches are empty).
 * Stops early when the next target would not fit in out_cap. Returns the
 * number of URLs processed (0..n; the caller continues from there with a
 * fresh `out`), or ESR_EINVAL / ESR_ERANGE (one target alone exceeds
 * out_cap). Thread-safe on a shared ruleset.
 * (Clarification: if fewer than n URLs are present, the missing ones are
 * empty, hence invalid (-1). ESR_ENOMEM as for esr_ruleset_match, returned
 * only when no URL was processed; otherwise the count processed so far.) */
long esr_ruleset_match_batch(const esr_ruleset *rs, const char *urls, size_t urls_len,
                             size_t n, const esr_context *ctx, int8_t *kinds,
                             int32_t *rules, uint32_t *ends, char *out, size_t out_cap);

/* Content digests of a synthetic catalog (origin/_catalog.py): for each
 * i < n, the 16 lowercase hex digits of BLAKE2b with an 8-byte digest
 * (RFC 7693, unkeyed) of the ASCII text "<seed>:<i>:<version[i]>" (decimal
 * integers), written to out + 16 * i (16 * n bytes, no terminator). Returns
 * ESR_OK, or ESR_EINVAL (a NULL pointer with n > 0). Thread-safe. */
int esr_catalog_digests(int64_t seed, const uint32_t *version, size_t n, char *out);

/* Spatial-sampling hashes of n keys whose bytes lie one after another in
 * `data` (lengths[i] bytes each): for each, FNV-1a (64-bit) over its bytes
 * from `start`, then h ^= its length and the splitmix64 finaliser (xor-shift
 * 30, multiply 0xbf58476d1ce4e5b9, xor-shift 27, multiply 0x94d049bb133111eb,
 * xor-shift 31), written to out[i]. Returns ESR_OK, or ESR_EINVAL (a NULL
 * pointer where bytes or results are due). Thread-safe. */
int esr_key_hashes(uint64_t start, const char *data, const uint32_t *lengths, size_t n, uint64_t *out);

/* Trace replay through one cache of `capacity` bytes (edgesim/replay.py,
 * docs/replay.md "Semantics"): request r asks for object keys[r] of
 * sizes[r] bytes. A request is a hit when its key is stored, whatever its
 * size (the stored size is kept). A miss of an object of at most `capacity`
 * bytes evicts from the old end until it fits, then stores it at the new
 * end; a larger object is never stored and evicts nothing; zero-byte objects
 * always fit. ESR_REPLAY_LRU moves a hit to the new end (least recently used
 * evicted first), ESR_REPLAY_FIFO leaves it (oldest insertion evicted first).
 *
 * The counts are written to *out only on ESR_OK. Byte sums are 128-bit, as
 * two words with the low one first: bytes sums sizes over all requests and
 * miss_bytes over misses (hit bytes = bytes - miss_bytes); requests - misses
 * are the hits. evictions counts objects evicted, stored and used the objects
 * and bytes held at the end (used <= capacity).
 *
 * Returns ESR_OK; ESR_EINVAL (unknown policy, a NULL pointer where items are
 * due, or a negative size); ESR_ENOMEM (an allocation failed: everything the
 * call allocated is freed); ESR_ERANGE (2^31 - 1 objects stored at once,
 * and one more to store). The call allocates and frees its own cache: nothing is kept, no
 * globals, thread-safe. */
#define ESR_REPLAY_LRU 1
#define ESR_REPLAY_FIFO 2

typedef struct esr_replay_counts {
    uint64_t requests;
    uint64_t misses;
    uint64_t evictions;
    uint64_t stored;
    uint64_t used;
    uint64_t miss_bytes[2]; /* [0] low word, [1] high word */
    uint64_t bytes[2];
} esr_replay_counts;

int esr_replay(int policy, const uint64_t *keys, const int64_t *sizes, size_t n, uint64_t capacity,
               esr_replay_counts *out);

#ifdef __cplusplus
}
#endif
#endif /* ESR_H */
