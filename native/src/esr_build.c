/*
 * esr_build.c - the builder: `_redirects` text and field records in, one
 * validated rule (or one error) per line/record, then compile into an
 * indexed esr_ruleset.
 *
 * Both input paths fill a `draft` (tokens with their columns) and call
 * add_rule(), which performs every check in the order docs/redirects.md
 * gives: from, the role-assignment error found by the text tokenizer (if
 * any), query pairs, to, status, the forward-rule MISSING_TO, conditions.
 * The first error rejects the rule. Warnings of the rule are collected in
 * b->pend and only published when the rule is accepted, sorted by column.
 *
 * Invariant: add_rule() reserves arena space for the worst case of the rule
 * up front, so raw pointers into the arena stay valid while it runs.
 */
#include "esr_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct esr_tok {
    const char *p;
    size_t n;
    uint32_t col;
} esr_tok;

typedef struct esr_kv {
    esr_tok whole;
    const char *k;
    size_t kn;
    const char *v;
    size_t vn;
    int has_sep;
    uint32_t type; /* conditions: ESR_COND_* once validated */
} esr_kv;

/* Scratch name table of one rule (placeholders, splat, query captures and
 * reported unbound references), so rules with many names stay linear. */
enum { NAME_EMPTY = 0, NAME_PH, NAME_SPLAT, NAME_QCAP, NAME_UNBOUND };
typedef struct esr_name {
    const char *p;
    uint32_t n;
    uint32_t kind;
    uint32_t idx;
    uint32_t dup_reported;
} esr_name;

struct esr_builder {
    size_t max_line, max_rules;
    bool spent, full;
    esr_arena arena;
    esr_rule *rules;
    size_t nrules, caprules;
    esr_diag *diags;
    size_t ndiags, capdiags;
    esr_diag *pend; /* warnings of the rule being validated */
    size_t npend, cappend;
    esr_tok *toks;
    size_t captoks;
    esr_kv *kvs;
    size_t capkvs;
    esr_name *names;
    size_t capnames;
};

typedef struct draft {
    uint32_t source, line;
    bool have_from;
    esr_tok from;
    bool have_to;
    esr_tok to;
    bool have_status;
    esr_tok status;
    bool bang_ok; /* text: "301!" allowed */
    bool record;
    bool force;
    bool headers; /* record has H or G fields */
    esr_kv *q;
    size_t nq;
    esr_kv *c;
    size_t nc;
    int pre_code; /* text role-assignment error, reported after `from` */
    uint32_t pre_col;
    char pre_msg[ESR_MESSAGE_MAX];
} draft;

/* ---- small helpers ------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return ESR_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return ESR_ENOMEM;
        nc *= 2;
    }
    void *np = realloc(*p, nc * elem);
    if (!np)
        return ESR_ENOMEM;
    *p = np;
    *cap = nc;
    return ESR_OK;
}

static int arena_reserve(esr_arena *a, size_t extra)
{
    if (extra > UINT32_MAX || a->len > UINT32_MAX - extra)
        return ESR_ENOMEM;
    if (a->len + extra <= a->cap)
        return ESR_OK;
    size_t nc = a->cap ? a->cap : 4096;
    while (nc < a->len + extra)
        nc *= 2;
    char *np = realloc(a->p, nc);
    if (!np)
        return ESR_ENOMEM;
    a->p = np;
    a->cap = nc;
    return ESR_OK;
}

/* Allocate from reserved space (callers reserved enough). */
static uint32_t arena_take(esr_arena *a, size_t n, size_t align)
{
    size_t off = (a->len + align - 1) & ~(align - 1);
    a->len = off + n;
    return (uint32_t)off;
}

static uint32_t arena_copy(esr_arena *a, const char *s, size_t n)
{
    uint32_t off = arena_take(a, n, 1);
    if (n)
        memcpy(a->p + off, s, n);
    return off;
}

static void vfill(esr_diag *d, int sev, int code, uint32_t src, uint32_t line, uint32_t col,
                  const char *fmt, va_list ap)
{
    d->severity = sev;
    d->code = code;
    d->source = src;
    d->line = line;
    d->column = col;
    vsnprintf(d->message, sizeof d->message, fmt, ap);
}

static int push_diag(esr_builder *b, int sev, int code, uint32_t src, uint32_t line,
                     uint32_t col, const char *fmt, ...)
{
    if (grow((void **)&b->diags, &b->capdiags, b->ndiags + 1, sizeof(esr_diag)))
        return ESR_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    vfill(&b->diags[b->ndiags++], sev, code, src, line, col, fmt, ap);
    va_end(ap);
    return ESR_OK;
}

/* Order of warnings that share a column (docs/redirects.md, "Diagnostics"). */
static int warn_rank(int code)
{
    switch (code) {
    case ESR_D_EMPTY_FROM_PATH: return 0;
    case ESR_D_FROM_NO_SLASH: return 1;
    case ESR_D_PLACEHOLDER_NAME: return 2;
    case ESR_D_DUPLICATE_PLACEHOLDER: return 3;
    case ESR_D_SELF_REDIRECT: return 4;
    case ESR_D_TRAILING_SLASH_ONLY: return 5;
    case ESR_D_UNBOUND_REFERENCE: return 6;
    case ESR_D_OPEN_REDIRECT: return 7;
    case ESR_D_STATUS_NOT_ON_NETLIFY: return 8;
    case ESR_D_NONCANONICAL_KEY: return 9;
    case ESR_D_HEADERS_ON_NON_PROXY: return 10;
    default: return 11;
    }
}

static int push_warn(esr_builder *b, const draft *d, int code, uint32_t col, const char *fmt,
                     ...)
{
    if (grow((void **)&b->pend, &b->cappend, b->npend + 1, sizeof(esr_diag)))
        return ESR_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    vfill(&b->pend[b->npend++], ESR_SEV_WARNING, code, d->source, d->line, col, fmt, ap);
    va_end(ap);
    return ESR_OK;
}

static bool starts(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}
static bool is_hostch(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-';
}

/* Length of a URL scheme at the start of s when followed by "://", else 0. */
static size_t scheme_len(const char *s, size_t n)
{
    if (n == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (i < n && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                     s[i] == '+' || s[i] == '.' || s[i] == '-'))
        i++;
    if (i + 3 <= n && memcmp(s + i, "://", 3) == 0)
        return i;
    return 0;
}

/* ---- name table ---------------------------------------------------------- */

typedef struct names {
    esr_name *t;
    size_t mask;
} names;

static uint64_t name_hash(const char *p, size_t n)
{
    return esr_hash_bytes(0xcbf29ce484222325ULL, p, n);
}

static esr_name *name_find(names *nt, const char *p, size_t n, bool insert)
{
    size_t i = (size_t)name_hash(p, n) & nt->mask;
    while (nt->t[i].kind != NAME_EMPTY) {
        if (nt->t[i].n == n && memcmp(nt->t[i].p, p, n) == 0)
            return &nt->t[i];
        i = (i + 1) & nt->mask;
    }
    if (!insert)
        return NULL;
    nt->t[i].p = p;
    nt->t[i].n = (uint32_t)n;
    return &nt->t[i]; /* caller sets kind */
}

/* ---- condition keys ------------------------------------------------------ */

static const struct {
    const char *name;
    uint32_t type;
} COND_KEYS[] = {
    {"Country", ESR_COND_COUNTRY}, {"Language", ESR_COND_LANGUAGE}, {"Role", ESR_COND_ROLE},
    {"Cookie", ESR_COND_COOKIE},   {"Sign", ESR_COND_SIGN},         {"signed", ESR_COND_SIGNED},
};

/* Returns the type (0 = unknown) and whether the spelling is canonical. */
static uint32_t cond_type(const char *k, size_t n, bool *canonical)
{
    for (size_t i = 0; i < sizeof COND_KEYS / sizeof COND_KEYS[0]; i++) {
        const char *c = COND_KEYS[i].name;
        if (esr_ieq(k, n, c, strlen(c))) {
            *canonical = memcmp(k, c, n) == 0;
            return COND_KEYS[i].type;
        }
    }
    return 0;
}

/* ---- rule validation ------------------------------------------------------ */

#define QMAX 60 /* bytes of a token quoted in a message */

static int reject(esr_builder *b, const draft *d, size_t mark, int code, uint32_t col,
                  const char *fmt, ...)
{
    b->arena.len = mark;
    b->npend = 0;
    if (grow((void **)&b->diags, &b->capdiags, b->ndiags + 1, sizeof(esr_diag)))
        return ESR_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    vfill(&b->diags[b->ndiags++], ESR_SEV_ERROR, code, d->source, d->line, col, fmt, ap);
    va_end(ap);
    return 0;
}

static bool is_3xx(int s) { return s >= 300 && s <= 399; }

/* Validates the draft and appends the rule. Returns 1 (accepted),
 * 0 (rejected, one error recorded) or ESR_ENOMEM. */
static int add_rule(esr_builder *b, draft *d)
{
    size_t mark = b->arena.len;
    char q1[QMAX + 8], q2[QMAX + 8];
    b->npend = 0;

    size_t total = d->from.n + d->to.n + d->status.n + 16;
    for (size_t i = 0; i < d->nq; i++)
        total += d->q[i].whole.n + 24;
    for (size_t i = 0; i < d->nc; i++)
        total += d->c[i].whole.n + 16;
    if (total > UINT32_MAX / 64 ||
        arena_reserve(&b->arena, 24 * total + 256) != ESR_OK)
        return ESR_ENOMEM;

    const uint32_t fcol = d->from.col;
    if (!d->have_from)
        return reject(b, d, mark, ESR_D_BAD_FROM, fcol, "record has no from");

    /* -- from -- */
    const char *f = d->from.p;
    size_t fn = d->from.n;
    int scheme = ESR_SCHEME_NONE;
    uint32_t host_off = 0, host_len = 0;
    const char *praw;
    size_t prawn;
    bool prepend = false;
    if (fn == 0)
        return reject(b, d, mark, ESR_D_BAD_FROM, fcol, "from is empty");
    size_t sl = scheme_len(f, fn);
    if (sl) {
        if (esr_ieq(f, sl, "http", 4))
            scheme = ESR_SCHEME_HTTP;
        else if (esr_ieq(f, sl, "https", 5))
            scheme = ESR_SCHEME_HTTPS;
        else
            return reject(b, d, mark, ESR_D_BAD_FROM, fcol,
                          "from \"%s\" has scheme \"%s\"; only http and https are allowed",
                          esr_quote(q1, sizeof q1, f, fn, QMAX),
                          esr_quote(q2, sizeof q2, f, sl, QMAX));
        size_t hs = sl + 3, he = hs;
        while (he < fn && f[he] != '/')
            he++;
        size_t colon = hs;
        while (colon < he && f[colon] != ':')
            colon++;
        bool ok = colon > hs;
        for (size_t i = hs; ok && i < colon; i++)
            ok = is_hostch((unsigned char)f[i]);
        if (ok && colon < he) {
            ok = he - colon >= 2;
            for (size_t i = colon + 1; ok && i < he; i++)
                ok = is_digit((unsigned char)f[i]);
        }
        if (!ok)
            return reject(b, d, mark, ESR_D_BAD_FROM, fcol, "from \"%s\" has an invalid host",
                          esr_quote(q1, sizeof q1, f, fn, QMAX));
        /* normalise: lower case, one trailing '.', default port */
        size_t nameend = colon;
        if (nameend - hs > 1 && f[nameend - 1] == '.')
            nameend--;
        host_off = arena_take(&b->arena, he - hs, 1);
        char *h = b->arena.p + host_off;
        size_t hl = 0;
        for (size_t i = hs; i < nameend; i++) {
            unsigned char c = (unsigned char)f[i];
            h[hl++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        if (colon < he) {
            const char *port = f + colon + 1;
            size_t pn = he - colon - 1;
            bool dflt = (scheme == ESR_SCHEME_HTTP && pn == 2 && memcmp(port, "80", 2) == 0) ||
                        (scheme == ESR_SCHEME_HTTPS && pn == 3 && memcmp(port, "443", 3) == 0);
            if (!dflt) {
                h[hl++] = ':';
                memcpy(h + hl, port, pn);
                hl += pn;
            }
        }
        host_len = (uint32_t)hl;
        b->arena.len = host_off + hl;
        praw = f + he;
        prawn = fn - he;
        if (prawn == 0) {
            praw = "/";
            prawn = 1;
            if (push_warn(b, d, ESR_D_EMPTY_FROM_PATH, fcol,
                          "from \"%s\" has no path; it means \"/\"",
                          esr_quote(q1, sizeof q1, f, fn, QMAX)))
                return ESR_ENOMEM;
        }
    } else if (fn >= 2 && f[0] == '/' && f[1] == '/') {
        return reject(b, d, mark, ESR_D_BAD_FROM, fcol,
                      "from \"%s\" starts with \"//\" (no scheme)",
                      esr_quote(q1, sizeof q1, f, fn, QMAX));
    } else {
        praw = f;
        prawn = fn;
        if (f[0] != '/') {
            prepend = true;
            if (push_warn(b, d, ESR_D_FROM_NO_SLASH, fcol,
                          "from \"%s\" does not start with \"/\"; read as \"/%s\"",
                          esr_quote(q1, sizeof q1, f, fn, QMAX),
                          esr_quote(q2, sizeof q2, f, fn, QMAX)))
                return ESR_ENOMEM;
        }
    }
    uint32_t cp_off = arena_take(&b->arena, 3 * prawn + 1, 1);
    char *cp = b->arena.p + cp_off;
    size_t cpn = 0;
    if (prepend)
        cp[cpn++] = '/';
    cpn += esr_canon_path(praw, prawn, cp + cpn);
    b->arena.len = cp_off + cpn;
    if ((cpn == 9 && memcmp(cp, "/.netlify", 9) == 0) || starts(cp, cpn, "/.netlify/"))
        return reject(b, d, mark, ESR_D_RESERVED_PATH, fcol,
                      "from \"%s\" is under the reserved path \"/.netlify\"",
                      esr_quote(q1, sizeof q1, f, fn, QMAX));
    const char *star = memchr(cp, '*', cpn);
    if (star && star != cp + cpn - 1)
        return reject(b, d, mark, ESR_D_SPLAT_NOT_AT_END, fcol,
                      "\"*\" in from \"%s\" is not its last character",
                      esr_quote(q1, sizeof q1, f, fn, QMAX));

    if (d->pre_code)
        return reject(b, d, mark, d->pre_code, d->pre_col, "%s", d->pre_msg);

    /* -- query pairs -- */
    for (size_t i = 0; i < d->nq; i++) {
        const esr_kv *kv = &d->q[i];
        if (!kv->has_sep)
            return reject(b, d, mark, ESR_D_BAD_QUERY_PAIR, kv->whole.col,
                          "query pair \"%s\" has no \"=\"",
                          esr_quote(q1, sizeof q1, kv->whole.p, kv->whole.n, QMAX));
        if (kv->kn == 0)
            return reject(b, d, mark, ESR_D_BAD_QUERY_PAIR, kv->whole.col,
                          "query pair \"%s\" has an empty key",
                          esr_quote(q1, sizeof q1, kv->whole.p, kv->whole.n, QMAX));
    }

    /* -- to -- */
    const char *t = d->to.p;
    size_t tn = d->to.n;
    bool to_abs = false;
    size_t to_hs = 0, to_he = 0;
    if (d->have_to) {
        size_t ts = starts(t, tn, "http://") ? 7 : starts(t, tn, "https://") ? 8 : 0;
        if (ts) {
            to_abs = true;
            to_hs = to_he = ts;
            while (to_he < tn && t[to_he] != '/' && t[to_he] != '?' && t[to_he] != '#')
                to_he++;
            if (to_he == to_hs)
                return reject(b, d, mark, ESR_D_BAD_TARGET, d->to.col,
                              "target \"%s\" has no host",
                              esr_quote(q1, sizeof q1, t, tn, QMAX));
        } else if (tn == 0 || t[0] != '/') {
            return reject(b, d, mark, ESR_D_BAD_TARGET, d->to.col,
                          "target \"%s\" does not start with \"/\", \"http://\" or \"https://\"",
                          esr_quote(q1, sizeof q1, t, tn, QMAX));
        }
    }

    /* -- status -- */
    int status = 301;
    bool force = d->force;
    if (d->have_status) {
        const char *s = d->status.p;
        size_t sn = d->status.n, nd = 0;
        while (nd < sn && is_digit((unsigned char)s[nd]))
            nd++;
        bool bang = d->bang_ok && nd + 1 == sn && s[nd] == '!';
        if (nd == 0 || (nd != sn && !bang))
            return reject(b, d, mark, ESR_D_BAD_STATUS, d->status.col,
                          d->bang_ok ? "status \"%s\" is not digits with an optional \"!\""
                                     : "status \"%s\" is not digits",
                          esr_quote(q1, sizeof q1, s, sn, QMAX));
        long v = 0;
        for (size_t i = 0; i < nd && v < 100000; i++)
            v = v * 10 + (s[i] - '0');
        if (!((v >= 200 && v <= 299) || v == 301 || v == 302 || v == 303 || v == 307 ||
              v == 308 || (v >= 400 && v <= 599)))
            return reject(b, d, mark, ESR_D_BAD_STATUS, d->status.col,
                          "status %s is outside 200-299, 301-303, 307, 308, 400-599",
                          esr_quote(q1, sizeof q1, s, nd, QMAX));
        status = (int)v;
        if (bang)
            force = true;
    }
    /* forward rules: `from` as written must end in a slash and a star */
    bool fwd_ok = fn >= 2 && f[fn - 2] == '/' && f[fn - 1] == '*';
    if (!d->have_to && !(fwd_ok && status >= 200 && status <= 299))
        return reject(b, d, mark, ESR_D_MISSING_TO, fcol,
                      "\"%s\" has no target (only a from ending in \"/*\" with a 2xx status "
                      "may omit it)",
                      esr_quote(q1, sizeof q1, f, fn, QMAX));

    /* -- conditions -- */
    for (size_t i = 0; i < d->nc; i++) {
        esr_kv *kv = &d->c[i];
        const char *w = esr_quote(q1, sizeof q1, kv->whole.p, kv->whole.n, QMAX);
        if (!kv->has_sep)
            return reject(b, d, mark, ESR_D_BAD_CONDITION, kv->whole.col,
                          "condition \"%s\" has no \"=\"", w);
        if (kv->kn == 0)
            return reject(b, d, mark, ESR_D_BAD_CONDITION, kv->whole.col,
                          "condition \"%s\" has an empty key", w);
        bool canon = true;
        kv->type = cond_type(kv->k, kv->kn, &canon);
        if (!kv->type)
            return reject(b, d, mark, ESR_D_UNKNOWN_CONDITION, kv->whole.col,
                          "unknown condition \"%s\"",
                          esr_quote(q2, sizeof q2, kv->k, kv->kn, QMAX));
        if (kv->vn == 0)
            return reject(b, d, mark, ESR_D_BAD_CONDITION, kv->whole.col,
                          "condition \"%s\" has an empty value", w);
        bool single = kv->type == ESR_COND_SIGN || kv->type == ESR_COND_SIGNED;
        size_t start = 0;
        for (size_t j = 0; j <= kv->vn; j++) {
            if (j < kv->vn && kv->v[j] == '=')
                return reject(b, d, mark, ESR_D_BAD_CONDITION, kv->whole.col,
                              "condition \"%s\" has a second \"=\"", w);
            if (single && j < kv->vn && kv->v[j] == ',')
                return reject(b, d, mark, ESR_D_BAD_CONDITION, kv->whole.col,
                              "condition \"%s\" names one environment variable, not a list", w);
            if (!single && (j == kv->vn || kv->v[j] == ',')) {
                if (j == start)
                    return reject(b, d, mark, ESR_D_BAD_CONDITION, kv->whole.col,
                                  "condition \"%s\" has an empty list item", w);
                start = j + 1;
            }
        }
        if (!canon && push_warn(b, d, ESR_D_NONCANONICAL_KEY, kv->whole.col,
                                "condition key \"%s\" should be written \"%s\"",
                                esr_quote(q2, sizeof q2, kv->k, kv->kn, QMAX),
                                COND_KEYS[kv->type - 1].name))
            return ESR_ENOMEM;
    }

    /* -- the rule is valid: limit -- */
    if (b->nrules >= b->max_rules) {
        b->full = true;
        return reject(b, d, mark, ESR_D_TOO_MANY_RULES, 1,
                      "rule limit of %zu reached; this and later rules are ignored",
                      b->max_rules);
    }

    /* -- build -- */
    esr_rule r;
    memset(&r, 0, sizeof r);
    r.source = d->source;
    r.line = d->line;
    r.scheme = (uint8_t)scheme;
    r.host.off = host_off;
    r.host.len = host_len;
    r.status = (uint16_t)status;
    r.flags = force ? ESR_F_FORCE : 0;
    bool splat = cpn > 0 && cp[cpn - 1] == '*';
    size_t plen = cpn;
    if (!splat && plen > 1 && cp[plen - 1] == '/')
        plen--;
    r.path.off = cp_off;
    r.path.len = (uint32_t)plen;
    size_t headlen = plen;
    if (splat) {
        size_t j = plen - 1;
        while (j > 0 && cp[j - 1] != '/')
            j--;
        /* cp[j-1] is the last '/' before '*' (cp starts with '/') */
        r.splat_j = (uint32_t)(j - 1);
        headlen = j - 1;
        r.flags |= ESR_F_SPLAT | ESR_F_DYNAMIC;
    }

    /* name table sized for every name this rule can hold */
    size_t maxnames = plen / 2 + d->nq + (d->have_to ? tn : fn + 6) / 2 + 4;
    size_t nsz = 16;
    while (nsz < 2 * maxnames)
        nsz *= 2;
    if (grow((void **)&b->names, &b->capnames, nsz, sizeof(esr_name)))
        return ESR_ENOMEM;
    memset(b->names, 0, nsz * sizeof(esr_name));
    names nt = {b->names, nsz - 1};

    size_t first_dyn = SIZE_MAX;
    uint32_t nph = 0;
    for (size_t s = 0; s <= headlen;) {
        size_t e = s;
        while (e < headlen && cp[e] != '/')
            e++;
        if (e - s > 1 && cp[s] == ':') {
            const char *nm = cp + s + 1;
            size_t nn = e - s - 1;
            if (first_dyn == SIZE_MAX)
                first_dyn = s;
            esr_name *en = name_find(&nt, nm, nn, true);
            if (en->kind != NAME_EMPTY) {
                if (!en->dup_reported) {
                    en->dup_reported = 1;
                    if (push_warn(b, d, ESR_D_DUPLICATE_PLACEHOLDER, fcol,
                                  "placeholder \":%s\" appears twice; the first capture wins",
                                  esr_quote(q1, sizeof q1, nm, nn, QMAX)))
                        return ESR_ENOMEM;
                }
            } else {
                en->kind = NAME_PH;
                en->idx = nph;
                bool good = true;
                for (size_t i = 0; i < nn && good; i++)
                    good = esr_is_namech((unsigned char)nm[i]);
                if (!good && push_warn(b, d, ESR_D_PLACEHOLDER_NAME, fcol,
                                       "placeholder \":%s\" is not [A-Za-z0-9_]+ and can "
                                       "never be substituted",
                                       esr_quote(q1, sizeof q1, nm, nn, QMAX)))
                    return ESR_ENOMEM;
            }
            nph++;
        }
        s = e + 1;
    }
    r.nph = nph;
    if (nph)
        r.flags |= ESR_F_DYNAMIC;
    if (first_dyn != SIZE_MAX)
        r.keylen = (uint32_t)(first_dyn - 1);
    else if (splat)
        r.keylen = r.splat_j;
    else
        r.keylen = (uint32_t)plen;
    if (splat) {
        esr_name *en = name_find(&nt, "splat", 5, true);
        if (en->kind == NAME_EMPTY)
            en->kind = NAME_SPLAT;
    }

    /* query pairs */
    r.nq = (uint32_t)d->nq;
    r.qpairs = arena_take(&b->arena, d->nq * sizeof(esr_qpair), 4);
    for (size_t i = 0; i < d->nq; i++) {
        const esr_kv *kv = &d->q[i];
        esr_qpair qp;
        qp.key.off = arena_copy(&b->arena, kv->k, kv->kn);
        qp.key.len = (uint32_t)kv->kn;
        if (kv->vn > 1 && kv->v[0] == ':') {
            qp.capture = 1;
            qp.val.off = arena_copy(&b->arena, kv->v + 1, kv->vn - 1);
            qp.val.len = (uint32_t)(kv->vn - 1);
            esr_name *en = name_find(&nt, kv->v + 1, kv->vn - 1, true);
            if (en->kind == NAME_EMPTY) {
                en->kind = NAME_QCAP;
                en->idx = (uint32_t)i;
            }
        } else {
            qp.capture = 0;
            qp.val.off = arena_take(&b->arena, kv->vn, 1);
            qp.val.len = (uint32_t)esr_form_decode(kv->v, kv->vn, b->arena.p + qp.val.off);
            b->arena.len = qp.val.off + qp.val.len;
        }
        memcpy(b->arena.p + r.qpairs + i * sizeof(esr_qpair), &qp, sizeof qp);
    }
    if (d->nq)
        r.flags |= ESR_F_QUERY;

    /* conditions */
    r.nc = (uint32_t)d->nc;
    r.conds = arena_take(&b->arena, d->nc * sizeof(esr_cond), 4);
    bool has_sign = false;
    for (size_t i = 0; i < d->nc; i++) {
        const esr_kv *kv = &d->c[i];
        esr_cond c;
        c.type = kv->type;
        c.val.off = arena_copy(&b->arena, kv->v, kv->vn);
        c.val.len = (uint32_t)kv->vn;
        memcpy(b->arena.p + r.conds + i * sizeof(esr_cond), &c, sizeof c);
        if (kv->type == ESR_COND_ROLE)
            r.flags |= ESR_F_ROLE | ESR_F_COND;
        else if (kv->type == ESR_COND_SIGN || kv->type == ESR_COND_SIGNED)
            has_sign = true;
        else
            r.flags |= ESR_F_COND;
    }

    /* from as written, to (as written or synthesised) */
    r.from.off = arena_copy(&b->arena, f, fn);
    r.from.len = (uint32_t)fn;
    uint32_t tcol = d->have_to ? d->to.col : fcol;
    if (d->have_to) {
        r.to.off = arena_copy(&b->arena, t, tn);
        r.to.len = (uint32_t)tn;
    } else {
        /* from ends in "/" + "*" here (fwd_ok): replace the '*' with ":splat", and
         * give a from without leading '/' (FROM_NO_SLASH) its '/' */
        size_t lead = prepend ? 1 : 0;
        r.to.off = arena_take(&b->arena, lead + fn + 5, 1);
        char *dst = b->arena.p + r.to.off;
        if (lead)
            dst[0] = '/';
        memcpy(dst + lead, f, fn - 1);
        memcpy(dst + lead + fn - 1, ":splat", 6);
        r.to.len = (uint32_t)(lead + fn + 5);
    }
    t = b->arena.p + r.to.off;
    tn = r.to.len;

    /* target program: one left-to-right pass, longest [A-Za-z0-9_] run */
    r.ops = arena_take(&b->arena, (tn + 1) * sizeof(esr_op), 4);
    esr_op *ops = (esr_op *)(void *)(b->arena.p + r.ops);
    uint32_t nops = 0;
    size_t lit = 0;
    bool any_bound = false, host_bound = false;
    for (size_t i = 0; i < tn;) {
        if (t[i] != ':') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < tn && esr_is_namech((unsigned char)t[j]))
            j++;
        if (j == i + 1) {
            i++;
            continue;
        }
        esr_name *en = name_find(&nt, t + i + 1, j - i - 1, false);
        if (en && (en->kind == NAME_PH || en->kind == NAME_SPLAT || en->kind == NAME_QCAP)) {
            if (i > lit)
                ops[nops++] = (esr_op){ESR_OP_LIT, (uint32_t)(r.to.off + lit), (uint32_t)(i - lit)};
            ops[nops++] = (esr_op){en->kind == NAME_PH      ? ESR_OP_PH
                                   : en->kind == NAME_SPLAT ? ESR_OP_SPLAT
                                                            : ESR_OP_QCAP,
                                   en->idx, 0};
            any_bound = true;
            if (to_abs && i >= to_hs && i < to_he)
                host_bound = true;
            lit = j;
        } else if (!en && (is_alpha((unsigned char)t[i + 1]) || t[i + 1] == '_')) {
            en = name_find(&nt, t + i + 1, j - i - 1, true);
            en->kind = NAME_UNBOUND;
            if (push_warn(b, d, ESR_D_UNBOUND_REFERENCE, tcol,
                          "target uses \":%s\", which from never binds",
                          esr_quote(q1, sizeof q1, t + i + 1, j - i - 1, QMAX)))
                return ESR_ENOMEM;
        }
        i = j;
    }
    if (tn > lit)
        ops[nops++] = (esr_op){ESR_OP_LIT, (uint32_t)(r.to.off + lit), (uint32_t)(tn - lit)};
    r.nops = nops;
    b->arena.len = r.ops + nops * sizeof(esr_op);
    if (!any_bound)
        r.flags |= ESR_F_STATIC_TARGET;

    /* from/to loop warnings */
    if (is_3xx(status) && scheme == ESR_SCHEME_NONE && d->have_to && tn > 0 && t[0] == '/' &&
        !memchr(t, '?', tn) && !memchr(t, '#', tn)) {
        /* scratch (inside the reservation): canonical `to`, then `from` with a
         * final '*' written as ":splat", so a splat rule redirecting to its own :splat is a loop too */
        uint32_t tc_off = arena_take(&b->arena, 3 * tn + cpn + 6, 1);
        char *tc = b->arena.p + tc_off;
        size_t tcn = esr_canon_path(t, tn, tc);
        char *fc = tc + tcn;
        size_t fcn = cpn;
        memcpy(fc, cp, cpn);
        if (fcn && fc[fcn - 1] == '*') {
            memcpy(fc + fcn - 1, ":splat", 6);
            fcn += 5;
        }
        b->arena.len = tc_off; /* scratch only */
        size_t a = fcn, z = tcn;
        if (a > 1 && fc[a - 1] == '/')
            a--;
        if (z > 1 && tc[z - 1] == '/')
            z--;
        if (a == z && memcmp(fc, tc, a) == 0) {
            bool same = fcn == tcn && memcmp(fc, tc, fcn) == 0;
            if (push_warn(b, d, same ? ESR_D_SELF_REDIRECT : ESR_D_TRAILING_SLASH_ONLY, tcol,
                          same ? "target \"%s\" redirects to itself (a loop)"
                               : "target \"%s\" differs from from only by a trailing \"/\" "
                                 "(a loop)",
                          esr_quote(q1, sizeof q1, t, tn, QMAX)))
                return ESR_ENOMEM;
        }
    }
    bool open = starts(t, tn, "//") || host_bound;
    if (!open && splat && starts(t, tn, "/:splat") &&
        (tn == 7 || !esr_is_namech((unsigned char)t[7])))
        open = true;
    if (open && push_warn(b, d, ESR_D_OPEN_REDIRECT, tcol,
                          "target \"%s\" can send visitors to a host chosen by the request",
                          esr_quote(q1, sizeof q1, t, tn, QMAX)))
        return ESR_ENOMEM;

    if (d->have_status && (status == 307 || status == 308 || (status > 200 && status <= 299)) &&
        push_warn(b, d, ESR_D_STATUS_NOT_ON_NETLIFY, d->status.col,
                  "status %d is not supported by Netlify", status))
        return ESR_ENOMEM;

    bool proxy = to_abs && !is_3xx(status);
    if (!proxy) {
        if (d->record) {
            if ((d->headers || has_sign) &&
                push_warn(b, d, ESR_D_HEADERS_ON_NON_PROXY, 1,
                          "headers/signed on a rule that is not a proxy"))
                return ESR_ENOMEM;
        } else {
            /* One warning, at the token whose value is used: the last signed=,
             * else the last Sign=. */
            const esr_kv *win = NULL;
            for (size_t i = 0; i < d->nc; i++) {
                const esr_kv *kv = &d->c[i];
                if (kv->type == ESR_COND_SIGNED ||
                    (kv->type == ESR_COND_SIGN && (!win || win->type == ESR_COND_SIGN)))
                    win = kv;
            }
            if (win && push_warn(b, d, ESR_D_HEADERS_ON_NON_PROXY, win->whole.col,
                                 "\"%s\" on a rule that is not a proxy",
                                 esr_quote(q1, sizeof q1, win->whole.p, win->whole.n, QMAX)))
                return ESR_ENOMEM;
        }
    }

    /* publish */
    if (grow((void **)&b->rules, &b->caprules, b->nrules + 1, sizeof(esr_rule)) ||
        grow((void **)&b->diags, &b->capdiags, b->ndiags + b->npend, sizeof(esr_diag)))
        return ESR_ENOMEM;
    b->rules[b->nrules++] = r;
    /* stable insertion sort of the (few) warnings by (column, warn_rank) */
    for (size_t i = 1; i < b->npend; i++) {
        esr_diag x = b->pend[i];
        size_t j = i;
        while (j > 0 && (b->pend[j - 1].column > x.column ||
                         (b->pend[j - 1].column == x.column &&
                          warn_rank(b->pend[j - 1].code) > warn_rank(x.code)))) {
            b->pend[j] = b->pend[j - 1];
            j--;
        }
        b->pend[j] = x;
    }
    if (b->npend)
        memcpy(b->diags + b->ndiags, b->pend, b->npend * sizeof(esr_diag));
    b->ndiags += b->npend;
    b->npend = 0;
    return 1;
}

/* ---- public builder API -------------------------------------------------- */

int esr_builder_new(size_t max_line, size_t max_rules, esr_builder **out)
{
    if (!out)
        return ESR_EINVAL;
    *out = NULL;
    esr_builder *b = calloc(1, sizeof *b);
    if (!b)
        return ESR_ENOMEM;
    b->max_line = max_line ? max_line : ESR_DEFAULT_MAX_LINE;
    b->max_rules = max_rules ? max_rules : ESR_DEFAULT_MAX_RULES;
    *out = b;
    return ESR_OK;
}

void esr_builder_free(esr_builder *b)
{
    if (!b)
        return;
    free(b->arena.p);
    free(b->rules);
    free(b->diags);
    free(b->pend);
    free(b->toks);
    free(b->kvs);
    free(b->names);
    free(b);
}

typedef struct checkpoint {
    size_t nrules, ndiags, arena_len;
    bool full;
} checkpoint;

static checkpoint save(const esr_builder *b)
{
    return (checkpoint){b->nrules, b->ndiags, b->arena.len, b->full};
}

static int restore(esr_builder *b, checkpoint c)
{
    b->nrules = c.nrules;
    b->ndiags = c.ndiags;
    b->arena.len = c.arena_len;
    b->full = c.full;
    b->npend = 0;
    return ESR_ENOMEM;
}

static void split_kv(esr_kv *kv, esr_tok t, char sep)
{
    kv->whole = t;
    kv->type = 0;
    const char *e = t.n ? memchr(t.p, sep, t.n) : NULL;
    if (e) {
        kv->has_sep = 1;
        kv->k = t.p;
        kv->kn = (size_t)(e - t.p);
        kv->v = e + 1;
        kv->vn = t.n - kv->kn - 1;
    } else {
        kv->has_sep = 0;
        kv->k = t.p;
        kv->kn = t.n;
        kv->v = t.p + t.n;
        kv->vn = 0;
    }
}

/* One physical line. Returns 1/0 (rule accepted or not) or ESR_ENOMEM. */
static int add_line(esr_builder *b, uint32_t source, uint32_t lineno, const char *s, size_t n)
{
    char q1[QMAX + 8];
    if (n > b->max_line)
        return push_diag(b, ESR_SEV_ERROR, ESR_D_LINE_TOO_LONG, source, lineno, 1,
                         "line is %zu bytes, over the limit of %zu", n, b->max_line)
                   ? ESR_ENOMEM
                   : 0;
    size_t bad = 0;
    int why = esr_check_line(s, n, &bad);
    if (why) {
        uint32_t col = (uint32_t)esr_count_cp(s, bad) + 1;
        int rc = why == 1   ? push_diag(b, ESR_SEV_ERROR, ESR_D_BAD_ENCODING, source, lineno,
                                        col, "invalid UTF-8 (byte 0x%02X)",
                                        (unsigned char)s[bad])
                 : why == 2 ? push_diag(b, ESR_SEV_ERROR, ESR_D_BAD_ENCODING, source, lineno,
                                        col, "NUL byte in line")
                            : push_diag(b, ESR_SEV_ERROR, ESR_D_BAD_ENCODING, source, lineno,
                                        col, "control byte 0x%02X in line",
                                        (unsigned char)s[bad]);
        return rc ? ESR_ENOMEM : 0;
    }
    /* tokenize, counting code points for columns as we go */
    size_t ntok = 0, i = 0, cps = 0;
    while (i < n) {
        while (i < n && is_ws((unsigned char)s[i])) {
            i++;
            cps++;
        }
        if (i >= n)
            break;
        if (s[i] == '#')
            break;
        size_t st = i;
        uint32_t col = (uint32_t)cps + 1;
        while (i < n && !is_ws((unsigned char)s[i])) {
            cps += ((unsigned char)s[i] & 0xC0) != 0x80;
            i++;
        }
        if (grow((void **)&b->toks, &b->captoks, ntok + 1, sizeof(esr_tok)))
            return ESR_ENOMEM;
        b->toks[ntok++] = (esr_tok){s + st, i - st, col};
    }
    if (ntok == 0)
        return 0;
    if (grow((void **)&b->kvs, &b->capkvs, ntok, sizeof(esr_kv)))
        return ESR_ENOMEM;
    esr_tok *tk = b->toks;
    draft d;
    memset(&d, 0, sizeof d);
    d.source = source;
    d.line = lineno;
    d.have_from = true;
    d.from = tk[0];
    d.bang_ok = true;
    if (ntok == 1) {
        d.pre_code = ESR_D_MISSING_TO;
        d.pre_col = tk[0].col;
        snprintf(d.pre_msg, sizeof d.pre_msg, "\"%s\" has no target",
                 esr_quote(q1, sizeof q1, tk[0].p, tk[0].n, QMAX));
        return add_rule(b, &d);
    }
    const esr_tok t1 = tk[1];
    bool fwd = is_digit((unsigned char)t1.p[0]) ||
               ((t1.p[0] == '+' || t1.p[0] == '-') && t1.n > 1 &&
                is_digit((unsigned char)t1.p[1]));
    size_t cstart;
    if (fwd) {
        d.have_status = true;
        d.status = t1;
        cstart = 2;
    } else {
        size_t ti = 1;
        while (ti < ntok && !(tk[ti].p[0] == '/' || starts(tk[ti].p, tk[ti].n, "http://") ||
                              starts(tk[ti].p, tk[ti].n, "https://")))
            ti++;
        if (ti == ntok) {
            d.pre_code = ESR_D_BAD_TARGET;
            d.pre_col = t1.col;
            snprintf(d.pre_msg, sizeof d.pre_msg,
                     "no target: \"%s\" does not start with \"/\", \"http://\" or \"https://\"",
                     esr_quote(q1, sizeof q1, t1.p, t1.n, QMAX));
            return add_rule(b, &d);
        }
        d.q = b->kvs;
        d.nq = ti - 1;
        for (size_t k = 1; k < ti; k++)
            split_kv(&b->kvs[k - 1], tk[k], '=');
        d.have_to = true;
        d.to = tk[ti];
        if (ti + 1 < ntok) {
            d.have_status = true;
            d.status = tk[ti + 1];
        }
        cstart = ti + 2;
    }
    d.c = b->kvs + d.nq;
    for (size_t k = cstart; k < ntok; k++)
        split_kv(&d.c[d.nc++], tk[k], '=');
    return add_rule(b, &d);
}

int esr_builder_add_text(esr_builder *b, uint32_t source, const char *text, size_t len)
{
    if (!b || (!text && len))
        return ESR_EINVAL;
    if (b->spent)
        return ESR_ESTATE;
    checkpoint cp = save(b);
    size_t pos = 0;
    uint32_t lineno = 1;
    int accepted = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        if (push_diag(b, ESR_SEV_WARNING, ESR_D_BOM, source, 1, 1, "UTF-8 byte order mark removed"))
            return restore(b, cp);
        pos = 3;
    }
    while (!b->full) {
        const char *nl = pos < len ? memchr(text + pos, '\n', len - pos) : NULL;
        size_t end = nl ? (size_t)(nl - text) : len;
        int rc = add_line(b, source, lineno, text + pos, end - pos);
        if (rc < 0)
            return restore(b, cp);
        if (rc > 0 && accepted < INT32_MAX)
            accepted++;
        if (!nl)
            break;
        pos = end + 1;
        if (lineno < UINT32_MAX)
            lineno++;
    }
    return accepted;
}

int esr_builder_add_fields(esr_builder *b, uint32_t source, uint32_t line, const char *record,
                           size_t len)
{
    if (!b || (!record && len))
        return ESR_EINVAL;
    if (b->spent)
        return ESR_ESTATE;
    /* pass 1: shape check and counts */
    size_t nkv = 0;
    for (size_t pos = 0; pos < len;) {
        const char *z = memchr(record + pos, '\0', len - pos);
        size_t end = z ? (size_t)(z - record) : len;
        if (end == pos)
            return ESR_EINVAL;
        char tag = record[pos];
        const char *body = record + pos + 1;
        size_t bn = end - pos - 1;
        switch (tag) {
        case 'F': case 'T': case 'S': case 'G':
            break;
        case '!':
            if (bn)
                return ESR_EINVAL;
            break;
        case 'Q': case 'C': case 'H':
            if (!memchr(body, '\x1f', bn))
                return ESR_EINVAL;
            nkv += tag != 'H';
            break;
        default:
            return ESR_EINVAL;
        }
        pos = end + 1;
    }
    if (b->full)
        return 0;
    if (grow((void **)&b->kvs, &b->capkvs, nkv + 1, sizeof(esr_kv)))
        return ESR_ENOMEM;
    draft d;
    memset(&d, 0, sizeof d);
    d.source = source;
    d.line = line;
    d.record = true;
    d.from.col = d.to.col = d.status.col = 1;
    size_t nq = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t pos = 0; pos < len;) {
            const char *z = memchr(record + pos, '\0', len - pos);
            size_t end = z ? (size_t)(z - record) : len;
            char tag = record[pos];
            esr_tok body = {record + pos + 1, end - pos - 1, 1};
            if (pass == 0) {
                if (tag == 'F') {
                    d.have_from = true;
                    d.from = body;
                } else if (tag == 'T') {
                    d.have_to = true;
                    d.to = body;
                } else if (tag == 'S') {
                    d.have_status = true;
                    d.status = body;
                } else if (tag == '!') {
                    d.force = true;
                } else if (tag == 'H' || tag == 'G') {
                    d.headers = true;
                } else if (tag == 'Q') {
                    split_kv(&b->kvs[nq++], body, '\x1f');
                }
            } else if (tag == 'C') {
                split_kv(&b->kvs[nq + d.nc++], body, '\x1f');
            }
            pos = end + 1;
        }
    }
    d.q = b->kvs;
    d.nq = nq;
    d.c = b->kvs + nq;
    size_t nrules = b->nrules, ndiags = b->ndiags, alen = b->arena.len;
    int rc = add_rule(b, &d);
    if (rc < 0) {
        b->nrules = nrules;
        b->ndiags = ndiags;
        b->arena.len = alen;
        b->npend = 0;
        return ESR_ENOMEM;
    }
    return rc;
}

size_t esr_builder_diag_count(const esr_builder *b)
{
    return b ? b->ndiags : 0;
}

const esr_diag *esr_builder_diag(const esr_builder *b, size_t i)
{
    return b && i < b->ndiags ? &b->diags[i] : NULL;
}

/* ---- compile ------------------------------------------------------------- */

static int diag_cmp(const esr_diag *a, const esr_diag *b)
{
    if (a->source != b->source)
        return a->source < b->source ? -1 : 1;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->column != b->column)
        return a->column < b->column ? -1 : 1;
    return 0;
}

/* Stable bottom-up merge sort; tmp holds n entries. */
static void sort_diags(esr_diag *a, esr_diag *tmp, size_t n)
{
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = diag_cmp(&a[i - 1], &a[i]) <= 0;
    if (sorted)
        return;
    esr_diag *src = a, *dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n;
            size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = diag_cmp(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        esr_diag *x = src;
        src = dst;
        dst = x;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

static uint32_t rule_key_hash(const esr_arena *a, const esr_rule *r)
{
    uint32_t kind = (r->flags & ESR_F_DYNAMIC) ? ESR_KEY_PREFIX : ESR_KEY_EXACT;
    uint64_t h = esr_hash_init(kind, r->scheme, a->p + r->host.off, r->host.len);
    h = esr_hash_bytes(h, a->p + r->path.off, r->keylen);
    return esr_hash_final(h, r->keylen);
}

static bool same_key(const esr_arena *a, const esr_rule *x, const esr_rule *y)
{
    return ((x->flags ^ y->flags) & ESR_F_DYNAMIC) == 0 && x->scheme == y->scheme &&
           x->host.len == y->host.len && x->keylen == y->keylen &&
           memcmp(a->p + x->host.off, a->p + y->host.off, x->host.len) == 0 &&
           memcmp(a->p + x->path.off, a->p + y->path.off, x->keylen) == 0;
}

int esr_builder_compile(esr_builder *b, esr_ruleset **out)
{
    if (!b || !out)
        return ESR_EINVAL;
    if (b->spent)
        return ESR_ESTATE;
    *out = NULL;
    size_t n = b->nrules;
    size_t nslots = 16;
    while (nslots < n + n / 2 + 1)
        nslots *= 2;
    esr_ruleset *rs = calloc(1, sizeof *rs);
    esr_slot *slots = calloc(nslots, sizeof *slots);
    uint32_t *pool = malloc((n ? n : 1) * sizeof *pool);
    uint32_t *which = malloc((n ? n : 1) * sizeof *which);
    esr_diag *diags = b->ndiags ? malloc(b->ndiags * sizeof *diags) : NULL;
    esr_diag *tmp = b->ndiags > 1 ? malloc(b->ndiags * sizeof *tmp) : NULL;
    if (!rs || !slots || !pool || !which || (b->ndiags && !diags) || (b->ndiags > 1 && !tmp)) {
        free(rs);
        free(slots);
        free(pool);
        free(which);
        free(diags);
        free(tmp);
        return ESR_ENOMEM;
    }
    if (b->ndiags) {
        memcpy(diags, b->diags, b->ndiags * sizeof *diags);
        sort_diags(diags, tmp, b->ndiags);
    }
    free(tmp);

    /* index: count per key, prefix sums, fill in rule order (ascending) */
    size_t mask = nslots - 1;
    for (size_t r = 0; r < n; r++) {
        const esr_rule *ru = &b->rules[r];
        uint32_t h = rule_key_hash(&b->arena, ru);
        size_t i = h & mask;
        while (slots[i].cnt && !(slots[i].hash == h && same_key(&b->arena, &b->rules[slots[i].rep], ru)))
            i = (i + 1) & mask;
        if (!slots[i].cnt) {
            slots[i].hash = h;
            slots[i].rep = (uint32_t)r;
        }
        slots[i].cnt++;
        which[r] = (uint32_t)i;
        if (ru->host.len || ru->scheme) {
            rs->host_rules++;
            if (ru->host.len > rs->max_host)
                rs->max_host = ru->host.len;
        }
    }
    uint32_t acc = 0;
    for (size_t i = 0; i < nslots; i++) {
        slots[i].off = acc;
        acc += slots[i].cnt;
        slots[i].cnt = 0;
    }
    for (size_t r = 0; r < n; r++) {
        esr_slot *s = &slots[which[r]];
        pool[s->off + s->cnt++] = (uint32_t)r;
    }
    free(which);

    /* hand over the arena and the rules, shrunk to fit */
    rs->arena = b->arena;
    if (rs->arena.len && rs->arena.len < rs->arena.cap) {
        char *np = realloc(rs->arena.p, rs->arena.len);
        if (np) {
            rs->arena.p = np;
            rs->arena.cap = rs->arena.len;
        }
    }
    rs->rules = b->rules;
    size_t rules_bytes = b->caprules;
    if (n && n < b->caprules) {
        esr_rule *np = realloc(rs->rules, n * sizeof *np);
        if (np) {
            rs->rules = np;
            rules_bytes = n;
        }
    }
    rs->nrules = n;
    rs->diags = diags;
    rs->ndiags = b->ndiags;
    rs->slots = slots;
    rs->nslots = nslots;
    rs->pool = pool;
    rs->memory = sizeof *rs + rs->arena.cap + rules_bytes * sizeof(esr_rule) +
                 rs->ndiags * sizeof(esr_diag) + nslots * sizeof(esr_slot) +
                 (n ? n : 1) * sizeof(uint32_t);
    b->arena = (esr_arena){NULL, 0, 0};
    b->rules = NULL;
    b->nrules = b->caprules = 0;
    b->spent = true;
    *out = rs;
    return ESR_OK;
}

/* ---- ruleset accessors --------------------------------------------------- */

void esr_ruleset_free(esr_ruleset *rs)
{
    if (!rs)
        return;
    free(rs->arena.p);
    free(rs->rules);
    free(rs->diags);
    free(rs->slots);
    free(rs->pool);
    free(rs);
}

size_t esr_ruleset_rule_count(const esr_ruleset *rs)
{
    return rs ? rs->nrules : 0;
}

size_t esr_ruleset_memory(const esr_ruleset *rs)
{
    return rs ? rs->memory : 0;
}

int esr_ruleset_rule(const esr_ruleset *rs, size_t i, esr_rule_info *info)
{
    if (!rs || !info || i >= rs->nrules)
        return ESR_EINVAL;
    const esr_rule *r = &rs->rules[i];
    const char *a = rs->arena.p;
    info->from = a + r->from.off;
    info->from_len = r->from.len;
    info->to = a + r->to.off;
    info->to_len = r->to.len;
    info->status = r->status;
    info->force = (r->flags & ESR_F_FORCE) != 0;
    info->source = r->source;
    info->line = r->line;
    info->has_query = (r->flags & ESR_F_QUERY) != 0;
    info->has_conditions = (r->flags & ESR_F_COND) != 0;
    info->has_role = (r->flags & ESR_F_ROLE) != 0;
    info->dynamic = (r->flags & ESR_F_DYNAMIC) != 0;
    info->target_static = (r->flags & ESR_F_STATIC_TARGET) != 0;
    return ESR_OK;
}

size_t esr_ruleset_diag_count(const esr_ruleset *rs)
{
    return rs ? rs->ndiags : 0;
}

const esr_diag *esr_ruleset_diag(const esr_ruleset *rs, size_t i)
{
    return rs && i < rs->ndiags ? &rs->diags[i] : NULL;
}

/* The public ESR_RULE_* flags are the internal ones: export copies them. */
_Static_assert(ESR_RULE_FORCE == ESR_F_FORCE, "flag mismatch");
_Static_assert(ESR_RULE_DYNAMIC == ESR_F_DYNAMIC, "flag mismatch");
_Static_assert(ESR_RULE_QUERY == ESR_F_QUERY, "flag mismatch");
_Static_assert(ESR_RULE_CONDITIONS == ESR_F_COND, "flag mismatch");
_Static_assert(ESR_RULE_ROLE == ESR_F_ROLE, "flag mismatch");
_Static_assert(ESR_RULE_TARGET_STATIC == ESR_F_STATIC_TARGET, "flag mismatch");

int esr_ruleset_export(const esr_ruleset *rs, int32_t *status, uint8_t *flags, uint32_t *source,
                       uint32_t *line, size_t n)
{
    if (!rs || n != rs->nrules || (n && (!status || !flags || !source || !line)))
        return ESR_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const esr_rule *r = &rs->rules[i];
        status[i] = r->status;
        flags[i] = (uint8_t)(r->flags & (ESR_RULE_FORCE | ESR_RULE_DYNAMIC | ESR_RULE_QUERY |
                                         ESR_RULE_CONDITIONS | ESR_RULE_ROLE | ESR_RULE_TARGET_STATIC));
        source[i] = r->source;
        line[i] = r->line;
    }
    return ESR_OK;
}
