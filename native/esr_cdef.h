/* cffi cdef for esr.h: keep in step with native/include/esr.h.
 * Constants are declared "..." so that the compiler supplies their values. */
#define ESR_OK ...
#define ESR_ENOMEM ...
#define ESR_EINVAL ...
#define ESR_ERANGE ...
#define ESR_ESTATE ...
#define ESR_SEV_WARNING ...
#define ESR_SEV_ERROR ...
#define ESR_NO_MATCH ...
#define ESR_MATCH ...
#define ESR_DENIED ...
#define ESR_MATCH_AFTER_DENIAL ...
#define ESR_RULE_FORCE ...
#define ESR_RULE_TARGET_STATIC ...
#define ESR_DEFAULT_MAX_LINE ...
#define ESR_DEFAULT_MAX_RULES ...
#define ESR_MESSAGE_MAX ...
#define ESR_REPLAY_LRU ...
#define ESR_REPLAY_FIFO ...

typedef struct esr_diag {
    int severity;
    int code;
    uint32_t source;
    uint32_t line;
    uint32_t column;
    char message[...];
} esr_diag;

typedef struct esr_builder esr_builder;
typedef struct esr_ruleset esr_ruleset;

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

typedef struct esr_result {
    int kind;
    int32_t rule;
    int32_t denied_by;
    size_t target_len;
    int context_used;
} esr_result;

typedef struct esr_rule_info {
    const char *from;
    size_t from_len;
    const char *to;
    size_t to_len;
    int status;
    int force;
    uint32_t source;
    uint32_t line;
    int has_query;
    int has_conditions;
    int has_role;
    int dynamic;
    int target_static;
} esr_rule_info;

const char *esr_strerror(int code);
const char *esr_diag_code_name(int code);
int esr_builder_new(size_t max_line, size_t max_rules, esr_builder **out);
void esr_builder_free(esr_builder *b);
int esr_builder_add_text(esr_builder *b, uint32_t source, const char *text, size_t len);
int esr_builder_add_fields(esr_builder *b, uint32_t source, uint32_t line,
                           const char *record, size_t len);
int esr_builder_compile(esr_builder *b, esr_ruleset **out);
size_t esr_builder_diag_count(const esr_builder *b);
const esr_diag *esr_builder_diag(const esr_builder *b, size_t i);
void esr_ruleset_free(esr_ruleset *rs);
size_t esr_ruleset_rule_count(const esr_ruleset *rs);
size_t esr_ruleset_memory(const esr_ruleset *rs);
int esr_ruleset_rule(const esr_ruleset *rs, size_t i, esr_rule_info *info);
int esr_ruleset_export(const esr_ruleset *rs, int32_t *status, uint8_t *flags,
                       uint32_t *source, uint32_t *line, size_t n);
size_t esr_ruleset_diag_count(const esr_ruleset *rs);
const esr_diag *esr_ruleset_diag(const esr_ruleset *rs, size_t i);
int esr_ruleset_match(const esr_ruleset *rs, const char *url, size_t url_len,
                      const esr_context *ctx, esr_result *res,
                      char *target, size_t target_cap);
long esr_ruleset_match_batch(const esr_ruleset *rs, const char *urls, size_t urls_len,
                             size_t n, const esr_context *ctx, int8_t *kinds,
                             int32_t *rules, uint32_t *ends, char *out, size_t out_cap);
int esr_catalog_digests(int64_t seed, const uint32_t *version, size_t n, char *out);
int esr_key_hashes(uint64_t start, const char *data, const uint32_t *lengths, size_t n, uint64_t *out);

typedef struct esr_replay_counts {
    uint64_t requests;
    uint64_t misses;
    uint64_t evictions;
    uint64_t stored;
    uint64_t used;
    uint64_t miss_bytes[2];
    uint64_t bytes[2];
} esr_replay_counts;

int esr_replay(int policy, const uint64_t *keys, const int64_t *sizes, size_t n, uint64_t capacity,
               esr_replay_counts *out);
