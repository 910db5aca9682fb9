/*
 * esr_match.c - matching a request against a compiled ruleset.
 *
 * Candidate gathering: one exact-path lookup (trimmed request path) and one
 * literal-prefix lookup per '/' boundary of the canonical request path plus
 * the whole path, each both without host and (when the set has host rules)
 * keyed by the request's scheme and host. The prefix hashes are computed
 * incrementally in one pass over the path. The (few) candidate lists are
 * merged in ascending rule index and every candidate is verified in full,
 * so the outcome equals a linear first-match scan (docs/redirects.md,
 * "Selection"). If a hostile path yields more than MAX_LISTS non-empty
 * lists, the matcher falls back to a linear scan, which is still correct.
 *
 * Only the stack and caller storage are used, plus a heap buffer for long
 * URLs and for rules with more than STACK_CAPS placeholders; both are freed
 * before returning.
 */
#include "esr_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LISTS 128
#define STACK_CAPS 64

typedef struct req {
    int scheme;
    const char *host;
    size_t hostn;
    const char *path; /* canonical */
    size_t pn;
    size_t tn; /* path length with one trailing '/' removed (unless "/") */
    const char *q;
    size_t qn;
    const esr_context *ctx;
} req;

typedef struct cap {
    size_t off, len; /* into req.path */
} cap;

typedef struct wr {
    char *d;
    size_t cap, n;
} wr;

static const char HEX[] = "0123456789ABCDEF";

static void put(wr *w, const char *s, size_t n)
{
    if (n && w->n + n <= w->cap)
        memcpy(w->d + w->n, s, n);
    w->n += n;
}

static void put1(wr *w, char c)
{
    if (w->n < w->cap)
        w->d[w->n] = c;
    w->n++;
}

/* ---- URL parsing ---------------------------------------------------------- */

static size_t url_scheme_len(const char *s, size_t n)
{
    if (n == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return 0;
    size_t i = 1;
    while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                     (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '.' || s[i] == '-'))
        i++;
    if (i + 3 <= n && memcmp(s + i, "://", 3) == 0)
        return i;
    return 0;
}

typedef struct rawurl {
    int scheme;
    const char *host, *path, *q;
    size_t hostn, pathn, qn;
} rawurl;

static int parse_url(const char *u, size_t n, rawurl *o)
{
    const char *hash = n ? memchr(u, '#', n) : NULL;
    if (hash)
        n = (size_t)(hash - u);
    memset(o, 0, sizeof *o);
    const char *rest;
    size_t rn;
    if (n && u[0] == '/') {
        rest = u;
        rn = n;
    } else {
        size_t sl = url_scheme_len(u, n);
        if (!sl)
            return ESR_EINVAL;
        if (esr_ieq(u, sl, "http", 4))
            o->scheme = ESR_SCHEME_HTTP;
        else if (esr_ieq(u, sl, "https", 5))
            o->scheme = ESR_SCHEME_HTTPS;
        else
            return ESR_EINVAL;
        size_t hs = sl + 3, he = hs;
        while (he < n && u[he] != '/' && u[he] != '?')
            he++;
        if (he == hs)
            return ESR_EINVAL;
        o->host = u + hs;
        o->hostn = he - hs;
        rest = u + he;
        rn = n - he;
    }
    const char *qm = rn ? memchr(rest, '?', rn) : NULL;
    size_t pl = qm ? (size_t)(qm - rest) : rn;
    if (qm) {
        o->q = qm + 1;
        o->qn = rn - pl - 1;
    }
    if (pl == 0) {
        o->path = "/";
        o->pathn = 1;
    } else {
        o->path = rest;
        o->pathn = pl;
    }
    return ESR_OK;
}

/* Lower case, one trailing '.' of the name removed, default port dropped. */
static size_t norm_host(int scheme, const char *h, size_t n, char *out)
{
    size_t colon = n;
    for (size_t i = n; i > 0; i--) {
        if (h[i - 1] == ':') {
            colon = i - 1;
            break;
        }
        if (h[i - 1] < '0' || h[i - 1] > '9')
            break;
    }
    size_t nameend = colon;
    if (nameend > 1 && h[nameend - 1] == '.')
        nameend--;
    size_t o = 0;
    for (size_t i = 0; i < nameend; i++) {
        unsigned char c = (unsigned char)h[i];
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (colon < n) {
        const char *port = h + colon + 1;
        size_t pn = n - colon - 1;
        bool dflt = pn == 0 ||
                    (scheme == ESR_SCHEME_HTTP && pn == 2 && memcmp(port, "80", 2) == 0) ||
                    (scheme == ESR_SCHEME_HTTPS && pn == 3 && memcmp(port, "443", 3) == 0);
        if (!dflt) {
            out[o++] = ':';
            memcpy(out + o, port, pn);
            o += pn;
        }
    }
    return o;
}

/* ---- path matching -------------------------------------------------------- */

/* Match the segments of R[0..rn) (R is "" or starts with '/') against the
 * start of Q. Returns the offset in Q just past the last matched segment,
 * or -1. Placeholder captures go to caps (if not NULL). */
static long match_head(const char *R, size_t rn, const char *Q, size_t qn, cap *caps)
{
    size_t i = 0, j = 0, k = 0;
    for (;;) {
        const char *re = rn > i ? memchr(R + i, '/', rn - i) : NULL;
        size_t ie = re ? (size_t)(re - R) : rn;
        const char *qe = qn > j ? memchr(Q + j, '/', qn - j) : NULL;
        size_t je = qe ? (size_t)(qe - Q) : qn;
        size_t rl = ie - i, ql = je - j;
        if (rl > 1 && R[i] == ':') {
            if (ql == 0)
                return -1;
            if (caps)
                caps[k] = (cap){j, ql};
            k++;
        } else if (rl != ql || memcmp(R + i, Q + j, rl) != 0) {
            return -1;
        }
        if (ie == rn)
            return (long)je;
        if (je == qn)
            return -1;
        i = ie + 1;
        j = je + 1;
    }
}

static bool path_match(const esr_ruleset *rs, const esr_rule *r, const req *rq, cap *caps,
                       cap *splat)
{
    const char *R = rs->arena.p + r->path.off;
    size_t rn = r->path.len;
    if (!(r->flags & ESR_F_SPLAT)) {
        if (!(r->flags & ESR_F_DYNAMIC))
            return rq->tn == rn && memcmp(R, rq->path, rn) == 0;
        return match_head(R, rn, rq->path, rq->tn, caps) == (long)rq->tn;
    }
    size_t j = r->splat_j;
    long p = match_head(R, j, rq->path, rq->pn, caps);
    if (p < 0)
        return false;
    size_t rest = (size_t)p, restn = rq->pn - rest;
    const char *lit = R + j + 1;
    size_t litn = rn - 1 - (j + 1);
    if (litn == 0) {
        if (splat)
            *splat = restn ? (cap){rest + 1, restn - 1} : (cap){rest, 0};
        return true;
    }
    if (restn < 1 + litn || rq->path[rest] != '/' || memcmp(rq->path + rest + 1, lit, litn) != 0)
        return false;
    if (splat) {
        size_t c = rest + 1 + litn, cn = rq->pn - c;
        if (cn && rq->path[c] == '/') {
            c++;
            cn--;
        }
        *splat = (cap){c, cn};
    }
    return true;
}

/* ---- query and conditions ------------------------------------------------- */

/* Last `key=value` item of the raw query with this key. */
static bool query_value(const req *rq, const char *k, size_t kn, const char **v, size_t *vn)
{
    bool found = false;
    const char *q = rq->q;
    size_t qn = rq->qn, s = 0;
    while (s <= qn && qn) {
        const char *amp = s < qn ? memchr(q + s, '&', qn - s) : NULL;
        size_t e = amp ? (size_t)(amp - q) : qn;
        const char *eq = e > s ? memchr(q + s, '=', e - s) : NULL;
        if (eq && (size_t)(eq - (q + s)) == kn && memcmp(q + s, k, kn) == 0) {
            *v = eq + 1;
            *vn = (size_t)(q + e - (eq + 1));
            found = true;
        }
        if (!amp)
            break;
        s = e + 1;
    }
    return found;
}

static bool query_match(const esr_ruleset *rs, const esr_rule *r, const req *rq)
{
    const char *a = rs->arena.p;
    for (uint32_t i = 0; i < r->nq; i++) {
        esr_qpair qp;
        memcpy(&qp, a + r->qpairs + i * sizeof qp, sizeof qp);
        const char *v;
        size_t vn;
        if (!query_value(rq, a + qp.key.off, qp.key.len, &v, &vn))
            return false;
        if (!qp.capture && !esr_form_equal(v, vn, a + qp.val.off, qp.val.len))
            return false;
    }
    return true;
}

/* Is `item` one of the NUL-separated names in list? */
static bool list_has(const char *list, size_t n, const char *item, size_t in)
{
    size_t s = 0;
    while (s < n) {
        const char *z = memchr(list + s, '\0', n - s);
        size_t e = z ? (size_t)(z - list) : n;
        if (e - s == in && in && memcmp(list + s, item, in) == 0)
            return true;
        s = e + 1;
    }
    return false;
}

static bool item_ok(uint32_t type, const char *it, size_t in, const esr_context *c)
{
    switch (type) {
    case ESR_COND_COUNTRY:
        return c->country_len && esr_ieq(it, in, c->country, c->country_len);
    case ESR_COND_LANGUAGE: {
        if (!c->language_len)
            return false;
        if (esr_ieq(it, in, c->language, c->language_len))
            return true;
        const char *dash = memchr(c->language, '-', c->language_len);
        return dash && esr_ieq(it, in, c->language, (size_t)(dash - c->language));
    }
    case ESR_COND_COOKIE:
        return c->cookies_len && list_has(c->cookies, c->cookies_len, it, in);
    case ESR_COND_ROLE:
        return c->roles_len && list_has(c->roles, c->roles_len, it, in);
    default:
        return true;
    }
}

static bool cond_ok(const esr_cond *cd, const char *a, const esr_context *c)
{
    const char *v = a + cd->val.off;
    size_t n = cd->val.len, s = 0;
    while (s < n) {
        const char *comma = memchr(v + s, ',', n - s);
        size_t e = comma ? (size_t)(comma - v) : n;
        if (item_ok(cd->type, v + s, e - s, c))
            return true;
        s = e + 1;
    }
    return false;
}

enum { EV_NO = 0, EV_MATCH = 1, EV_DENIED = 2 };

static int evaluate(const esr_ruleset *rs, const esr_rule *r, const req *rq, int *context_used)
{
    if (r->scheme != ESR_SCHEME_NONE &&
        (r->scheme != rq->scheme || r->host.len != rq->hostn ||
         memcmp(rs->arena.p + r->host.off, rq->host, rq->hostn) != 0))
        return EV_NO;
    if (!path_match(rs, r, rq, NULL, NULL))
        return EV_NO;
    if (r->nq && !query_match(rs, r, rq))
        return EV_NO;
    if (!(r->flags & ESR_F_COND))
        return EV_MATCH;
    *context_used = 1;
    const char *a = rs->arena.p;
    bool role = true, others = true;
    for (uint32_t i = 0; i < r->nc; i++) {
        esr_cond cd;
        memcpy(&cd, a + r->conds + i * sizeof cd, sizeof cd);
        if (cd.type == ESR_COND_SIGN || cd.type == ESR_COND_SIGNED)
            continue;
        if (cd.type == ESR_COND_ROLE) {
            if (role && !cond_ok(&cd, a, rq->ctx))
                role = false;
        } else if (others && !cond_ok(&cd, a, rq->ctx)) {
            others = false;
        }
    }
    if (!role)
        return EV_DENIED;
    return others ? EV_MATCH : EV_NO;
}

/* ---- candidate lists ------------------------------------------------------- */

typedef struct lists {
    const uint32_t *p[MAX_LISTS];
    uint32_t n[MAX_LISTS];
    uint32_t pos[MAX_LISTS];
    size_t k;
    bool overflow;
} lists;

static void lookup(const esr_ruleset *rs, lists *L, uint32_t kind, const req *rq, bool hosted,
                   uint64_t state, size_t len)
{
    uint32_t h = esr_hash_final(state, len);
    size_t mask = rs->nslots - 1, i = h & mask;
    for (;;) {
        const esr_slot *s = &rs->slots[i];
        if (!s->cnt)
            return;
        if (s->hash == h) {
            const esr_rule *r = &rs->rules[s->rep];
            bool dyn = (r->flags & ESR_F_DYNAMIC) != 0;
            if (dyn == (kind == ESR_KEY_PREFIX) && r->keylen == len &&
                (hosted ? (r->scheme == rq->scheme && r->host.len == rq->hostn &&
                           memcmp(rs->arena.p + r->host.off, rq->host, rq->hostn) == 0)
                        : r->scheme == ESR_SCHEME_NONE) &&
                memcmp(rs->arena.p + r->path.off, rq->path, len) == 0) {
                if (L->k == MAX_LISTS) {
                    L->overflow = true;
                    return;
                }
                L->p[L->k] = rs->pool + s->off;
                L->n[L->k] = s->cnt;
                L->pos[L->k] = 0;
                L->k++;
                return;
            }
        }
        i = (i + 1) & mask;
    }
}

static void gather(const esr_ruleset *rs, const req *rq, lists *L)
{
    L->k = 0;
    L->overflow = false;
    if (!rs->nrules)
        return;
    bool hosted = rq->scheme != ESR_SCHEME_NONE && rs->host_rules && rq->hostn <= rs->max_host;
    uint64_t e0 = esr_hash_init(ESR_KEY_EXACT, ESR_SCHEME_NONE, NULL, 0);
    lookup(rs, L, ESR_KEY_EXACT, rq, false, esr_hash_bytes(e0, rq->path, rq->tn), rq->tn);
    uint64_t p0 = esr_hash_init(ESR_KEY_PREFIX, ESR_SCHEME_NONE, NULL, 0), p1 = 0;
    if (hosted) {
        uint64_t e1 = esr_hash_init(ESR_KEY_EXACT, (uint32_t)rq->scheme, rq->host, rq->hostn);
        lookup(rs, L, ESR_KEY_EXACT, rq, true, esr_hash_bytes(e1, rq->path, rq->tn), rq->tn);
        p1 = esr_hash_init(ESR_KEY_PREFIX, (uint32_t)rq->scheme, rq->host, rq->hostn);
    }
    for (size_t i = 0; i < rq->pn && !L->overflow; i++) {
        unsigned char c = (unsigned char)rq->path[i];
        if (c == '/') {
            lookup(rs, L, ESR_KEY_PREFIX, rq, false, p0, i);
            if (hosted)
                lookup(rs, L, ESR_KEY_PREFIX, rq, true, p1, i);
        }
        p0 = esr_hash_byte(p0, c);
        if (hosted)
            p1 = esr_hash_byte(p1, c);
    }
    lookup(rs, L, ESR_KEY_PREFIX, rq, false, p0, rq->pn);
    if (hosted)
        lookup(rs, L, ESR_KEY_PREFIX, rq, true, p1, rq->pn);
}

/* Next candidate in ascending rule order, or -1. */
static long next_candidate(lists *L)
{
    size_t best = SIZE_MAX;
    uint32_t bv = UINT32_MAX;
    for (size_t i = 0; i < L->k; i++) {
        if (L->pos[i] < L->n[i] && L->p[i][L->pos[i]] < bv) {
            bv = L->p[i][L->pos[i]];
            best = i;
        }
    }
    if (best == SIZE_MAX)
        return -1;
    L->pos[best]++;
    return (long)bv;
}

/* ---- target ----------------------------------------------------------------- */

static void put_query_escaped(wr *w, const char *v, size_t vn)
{
    for (size_t i = 0; i < vn;) {
        unsigned char c = (unsigned char)v[i];
        if (c == '+') {
            c = ' ';
            i++;
        } else if (c == '%' && i + 2 < vn && esr_hexval((unsigned char)v[i + 1]) >= 0 &&
                   esr_hexval((unsigned char)v[i + 2]) >= 0) {
            c = (unsigned char)(esr_hexval((unsigned char)v[i + 1]) * 16 +
                                esr_hexval((unsigned char)v[i + 2]));
            i += 3;
        } else {
            i++;
        }
        if (esr_is_unreserved(c)) {
            put1(w, (char)c);
        } else if (c == ' ') {
            put1(w, '+');
        } else {
            put1(w, '%');
            put1(w, HEX[c >> 4]);
            put1(w, HEX[c & 15]);
        }
    }
}

static int build_target(const esr_ruleset *rs, const esr_rule *r, const req *rq, wr *w)
{
    const char *a = rs->arena.p;
    if (r->flags & ESR_F_STATIC_TARGET) {
        put(w, a + r->to.off, r->to.len);
        return ESR_OK;
    }
    cap stack_caps[STACK_CAPS];
    cap *caps = stack_caps;
    if (r->nph > STACK_CAPS) {
        caps = malloc(r->nph * sizeof *caps);
        if (!caps)
            return ESR_ENOMEM;
    }
    cap splat = {0, 0};
    path_match(rs, r, rq, caps, &splat);
    for (uint32_t i = 0; i < r->nops; i++) {
        esr_op op;
        memcpy(&op, a + r->ops + i * sizeof op, sizeof op);
        switch (op.kind) {
        case ESR_OP_LIT:
            put(w, a + op.a, op.b);
            break;
        case ESR_OP_PH:
            put(w, rq->path + caps[op.a].off, caps[op.a].len);
            break;
        case ESR_OP_SPLAT:
            put(w, rq->path + splat.off, splat.len);
            break;
        default: {
            esr_qpair qp;
            memcpy(&qp, a + r->qpairs + op.a * sizeof qp, sizeof qp);
            const char *v = NULL;
            size_t vn = 0;
            if (query_value(rq, a + qp.key.off, qp.key.len, &v, &vn))
                put_query_escaped(w, v, vn);
            break;
        }
        }
    }
    if (caps != stack_caps)
        free(caps);
    return ESR_OK;
}

/* ---- entry points ----------------------------------------------------------- */

static int match_one(const esr_ruleset *rs, const char *url, size_t url_len,
                     const esr_context *ctx, esr_result *res, char *target, size_t cap)
{
    static const esr_context empty_ctx = {NULL, 0, NULL, 0, NULL, 0, NULL, 0};
    res->kind = ESR_NO_MATCH;
    res->rule = -1;
    res->denied_by = -1;
    res->target_len = 0;
    res->context_used = 0;
    rawurl u;
    if (parse_url(url, url_len, &u) != ESR_OK)
        return ESR_EINVAL;

    char stackbuf[ESR_STACK_PATH];
    char *buf = stackbuf;
    size_t need = u.hostn + 3 * u.pathn;
    if (need > sizeof stackbuf) {
        buf = malloc(need);
        if (!buf)
            return ESR_ENOMEM;
    }
    req rq;
    rq.ctx = ctx ? ctx : &empty_ctx;
    rq.scheme = u.scheme;
    rq.hostn = u.host ? norm_host(u.scheme, u.host, u.hostn, buf) : 0;
    rq.host = buf;
    rq.path = buf + rq.hostn;
    rq.pn = esr_canon_path(u.path, u.pathn, buf + rq.hostn);
    rq.tn = rq.pn > 1 && rq.path[rq.pn - 1] == '/' ? rq.pn - 1 : rq.pn;
    rq.q = u.q;
    rq.qn = u.qn;

    lists L;
    gather(rs, &rq, &L);
    long denied = -1, found = -1;
    if (L.overflow) {
        for (size_t r = 0; r < rs->nrules && found < 0; r++) {
            int ev = evaluate(rs, &rs->rules[r], &rq, &res->context_used);
            if (ev == EV_MATCH)
                found = (long)r;
            else if (ev == EV_DENIED && denied < 0)
                denied = (long)r;
        }
    } else {
        long c;
        while (found < 0 && (c = next_candidate(&L)) >= 0) {
            int ev = evaluate(rs, &rs->rules[c], &rq, &res->context_used);
            if (ev == EV_MATCH)
                found = c;
            else if (ev == EV_DENIED && denied < 0)
                denied = c;
        }
    }
    int rc = ESR_OK;
    if (found >= 0) {
        res->kind = ESR_MATCH;
        res->rule = (int32_t)found;
        res->denied_by = (int32_t)denied;
        wr w = {target, target ? cap : 0, 0};
        rc = build_target(rs, &rs->rules[found], &rq, &w);
        res->target_len = w.n;
        if (rc == ESR_OK && w.n > w.cap)
            rc = ESR_ERANGE;
    } else if (denied >= 0) {
        res->kind = ESR_DENIED;
        res->rule = (int32_t)denied;
    }
    if (buf != stackbuf)
        free(buf);
    return rc;
}

int esr_ruleset_match(const esr_ruleset *rs, const char *url, size_t url_len,
                      const esr_context *ctx, esr_result *res, char *target, size_t target_cap)
{
    if (!rs || !res || (!url && url_len))
        return ESR_EINVAL;
    if (!url)
        url = "";
    return match_one(rs, url, url_len, ctx, res, target, target_cap);
}

long esr_ruleset_match_batch(const esr_ruleset *rs, const char *urls, size_t urls_len, size_t n,
                             const esr_context *ctx, int8_t *kinds, int32_t *rules,
                             uint32_t *ends, char *out, size_t out_cap)
{
    if (!rs || (!urls && urls_len) || (n && (!kinds || !rules || !ends)) || (!out && out_cap))
        return ESR_EINVAL;
    if (out_cap > UINT32_MAX)
        out_cap = UINT32_MAX;
    size_t pos = 0, used = 0;
    for (size_t k = 0; k < n; k++) {
        const char *u = urls ? urls + pos : "";
        size_t rem = pos < urls_len ? urls_len - pos : 0;
        const char *nl = rem ? memchr(u, '\n', rem) : NULL;
        size_t ul = nl ? (size_t)(nl - u) : rem;
        esr_result res;
        int rc = match_one(rs, u, ul, ctx, &res, out ? out + used : NULL, out_cap - used);
        if (rc == ESR_ERANGE)
            return k > 0 ? (long)k : ESR_ERANGE;
        if (rc == ESR_ENOMEM)
            return k > 0 ? (long)k : ESR_ENOMEM;
        if (rc == ESR_EINVAL) {
            kinds[k] = -1;
            rules[k] = -1;
        } else {
            kinds[k] = (int8_t)(res.kind == ESR_MATCH && res.denied_by >= 0 ? ESR_MATCH_AFTER_DENIAL
                                                                          : res.kind);
            rules[k] = res.rule;
            if (res.kind == ESR_MATCH)
                used += res.target_len;
        }
        ends[k] = (uint32_t)used;
        pos += ul + 1;
    }
    return (long)n;
}
