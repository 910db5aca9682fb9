/*
 * test_esr.c - unit tests for the esr library (run under ASan/UBSan by
 * `make test`). Prints "N passed, N failed"; exits non-zero on failure.
 */
#include "esr.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

static esr_ruleset *compile_n(const char *text, size_t len)
{
    esr_builder *b = NULL;
    esr_ruleset *rs = NULL;
    if (esr_builder_new(0, 0, &b) != ESR_OK)
        abort();
    int rc = esr_builder_add_text(b, 0, text, len);
    if (rc < 0)
        abort();
    if (esr_builder_compile(b, &rs) != ESR_OK)
        abort();
    esr_builder_free(b);
    return rs;
}

static esr_ruleset *compile(const char *text)
{
    return compile_n(text, strlen(text));
}

/* ctx: "country|language|cookie1,cookie2|role1,role2" (',' becomes NUL) */
typedef struct ctxbuf {
    char s[4][128];
    esr_context c;
} ctxbuf;

static const esr_context *mkctx(ctxbuf *cb, const char *spec)
{
    if (!spec)
        return NULL;
    const char *p = spec;
    size_t lens[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        while (*p && *p != '|') {
            cb->s[i][n++] = *p == ',' ? '\0' : *p;
            p++;
        }
        lens[i] = n;
        if (*p == '|')
            p++;
    }
    cb->c = (esr_context){cb->s[0], lens[0], cb->s[1], lens[1], cb->s[2], lens[2], cb->s[3], lens[3]};
    return &cb->c;
}

/* Match and compare kind, rule and target (target NULL: not checked). */
static void expect(int line, esr_ruleset *rs, const char *url, const char *ctx, int kind,
                   int rule, const char *target)
{
    ctxbuf cb;
    esr_result res;
    char buf[512];
    int rc = esr_ruleset_match(rs, url, strlen(url), mkctx(&cb, ctx), &res, buf, sizeof buf);
    if (rc != ESR_OK) {
        failed++;
        fprintf(stderr, "line %d: match(%s) rc %d\n", line, url, rc);
        return;
    }
    bool ok = res.kind == kind && res.rule == rule;
    if (ok && target)
        ok = res.target_len == strlen(target) && memcmp(buf, target, res.target_len) == 0;
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "line %d: match(%s): kind %d rule %d target \"%.*s\"; want %d %d \"%s\"\n",
                line, url, res.kind, (int)res.rule, (int)(res.kind == ESR_MATCH ? res.target_len : 0),
                buf, kind, rule, target ? target : "(any)");
    }
}

#define MATCH(rs, url, ctx, rule, target) expect(__LINE__, rs, url, ctx, ESR_MATCH, rule, target)
#define NOMATCH(rs, url, ctx) expect(__LINE__, rs, url, ctx, ESR_NO_MATCH, -1, NULL)
#define DENIED(rs, url, ctx, rule) expect(__LINE__, rs, url, ctx, ESR_DENIED, rule, NULL)

/* One rule text, expect exactly the listed diagnostics (sev, code, line, col). */
typedef struct dx {
    int sev, code;
    unsigned line, col;
} dx;

static void expect_diags(int line, const char *text, size_t len, int nrules, const dx *want,
                         size_t nwant)
{
    esr_ruleset *rs = compile_n(text, len);
    size_t nd = esr_ruleset_diag_count(rs);
    bool ok = nd == nwant && (nrules < 0 || esr_ruleset_rule_count(rs) == (size_t)nrules);
    for (size_t i = 0; ok && i < nd; i++) {
        const esr_diag *d = esr_ruleset_diag(rs, i);
        ok = d->severity == want[i].sev && d->code == want[i].code && d->line == want[i].line &&
             d->column == want[i].col && strlen(d->message) > 0 && !strchr(d->message, '\n');
    }
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "line %d: diags for \"%.60s\": rules %zu\n", line, text,
                esr_ruleset_rule_count(rs));
        for (size_t i = 0; i < nd; i++) {
            const esr_diag *d = esr_ruleset_diag(rs, i);
            fprintf(stderr, "   got %d %s %u:%u %s\n", d->severity,
                    esr_diag_code_name(d->code), d->line, d->column, d->message);
        }
        for (size_t i = 0; i < nwant; i++)
            fprintf(stderr, "  want %d %s %u:%u\n", want[i].sev, esr_diag_code_name(want[i].code),
                    want[i].line, want[i].col);
    }
    esr_ruleset_free(rs);
}

#define E ESR_SEV_ERROR
#define W ESR_SEV_WARNING
#define DIAGS(text, nrules, ...)                                                           \
    do {                                                                                   \
        static const dx want_[] = {__VA_ARGS__};                                           \
        expect_diags(__LINE__, text, strlen(text), nrules, want_,                          \
                     sizeof want_ / sizeof want_[0]);                                      \
    } while (0)
#define NODIAGS(text, nrules) expect_diags(__LINE__, text, strlen(text), nrules, NULL, 0)

static void test_parse_diags(void)
{
    NODIAGS("/a /b 301\n\n# comment\n   \n/c /d # trailing\n", 2);
    DIAGS("/m/scge/legal", 0, {E, ESR_D_MISSING_TO, 1, 1});
    DIAGS("  /x   foo bar", 0, {E, ESR_D_BAD_TARGET, 1, 8});
    DIAGS("/path foo /foo.html 200", 0, {E, ESR_D_BAD_QUERY_PAIR, 1, 7});
    DIAGS("/path =x /foo.html 200", 0, {E, ESR_D_BAD_QUERY_PAIR, 1, 7});
    DIAGS("/a https:// 301", 0, {E, ESR_D_BAD_TARGET, 1, 4});
    DIAGS("/a https://?x 301", 0, {E, ESR_D_BAD_TARGET, 1, 4});
    DIAGS("/d /e 999", 0, {E, ESR_D_BAD_STATUS, 1, 7});
    DIAGS("/d /e 30x", 0, {E, ESR_D_BAD_STATUS, 1, 7});
    DIAGS("/d /e 301!!", 0, {E, ESR_D_BAD_STATUS, 1, 7});
    DIAGS("/d /e 0", 0, {E, ESR_D_BAD_STATUS, 1, 7});
    DIAGS("/d /e 99999999999999999999301", 0, {E, ESR_D_BAD_STATUS, 1, 7});
    DIAGS("/from /to not_a_status", 0, {E, ESR_D_BAD_STATUS, 1, 11});
    DIAGS("/store /blog/:id id=:id 301", 0, {E, ESR_D_BAD_STATUS, 1, 18}); /* case 98 */
    DIAGS("/a 404page", 0, {E, ESR_D_BAD_STATUS, 1, 4});
    DIAGS("/a +301", 0, {E, ESR_D_BAD_STATUS, 1, 4});
    DIAGS("/admin/* 301", 0, {E, ESR_D_MISSING_TO, 1, 1}); /* case 87 */
    DIAGS("/admin 200", 0, {E, ESR_D_MISSING_TO, 1, 1});
    DIAGS("ftp://x.com/a /b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    DIAGS("//host/a /b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    DIAGS("http://*/a /b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    DIAGS("http://:x.com/a /b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    DIAGS("http://a.com:/a /b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    DIAGS("http://a.com:8x/a /b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    DIAGS("/.netlify/from /to", 0, {E, ESR_D_RESERVED_PATH, 1, 1}); /* case 101 */
    DIAGS("/%2enetlify /to", 0, {E, ESR_D_RESERVED_PATH, 1, 1});
    DIAGS("https://a.com/.netlify/x /to", 0, {E, ESR_D_RESERVED_PATH, 1, 1});
    DIAGS("/a/*/b /x/:splat 301", 0, {E, ESR_D_SPLAT_NOT_AT_END, 1, 1}); /* case 23 */
    DIAGS("/a/*.html /x 301", 0, {E, ESR_D_SPLAT_NOT_AT_END, 1, 1});    /* case 24 */
    DIAGS("/x /y 302 Foo=bar", 0, {E, ESR_D_UNKNOWN_CONDITION, 1, 11}); /* case 67 */
    DIAGS("/ /anz 302 Country=au, nz", 0, {E, ESR_D_BAD_CONDITION, 1, 12}); /* case 55 */
    DIAGS("/ /anz 302 Country=", 0, {E, ESR_D_BAD_CONDITION, 1, 12});
    DIAGS("/ /anz 302 Country", 0, {E, ESR_D_BAD_CONDITION, 1, 12});
    DIAGS("/ /anz 302 =us", 0, {E, ESR_D_BAD_CONDITION, 1, 12});
    DIAGS("/ /anz 302 Country=,au", 0, {E, ESR_D_BAD_CONDITION, 1, 12});
    DIAGS("/ /anz 302 Country=a,,b", 0, {E, ESR_D_BAD_CONDITION, 1, 12});
    DIAGS("/ /anz 302 Country=a=b", 0, {E, ESR_D_BAD_CONDITION, 1, 12});
    /* leftmost token wins: a bad query pair before a bad status */
    DIAGS("/a x /b 999 Foo=1", 0, {E, ESR_D_BAD_QUERY_PAIR, 1, 4});
    /* from errors win over everything */
    DIAGS("ftp://a/b", 0, {E, ESR_D_BAD_FROM, 1, 1});
    /* columns count code points */
    DIAGS("/caf\xC3\xA9 /b 999", 0, {E, ESR_D_BAD_STATUS, 1, 10});
    DIAGS("\xEF\xBB\xBF/a /b 999", 0, {W, ESR_D_BOM, 1, 1}, {E, ESR_D_BAD_STATUS, 1, 7});
    DIAGS("\xEF\xBB\xBF/a /b 302", 1, {W, ESR_D_BOM, 1, 1}); /* case 97 */
    /* encoding */
    DIAGS("/a /b\xC3 301", 0, {E, ESR_D_BAD_ENCODING, 1, 6});
    DIAGS("/\xC3\xA9 \x80/b", 0, {E, ESR_D_BAD_ENCODING, 1, 4});
    DIAGS("/a /b \x01", 0, {E, ESR_D_BAD_ENCODING, 1, 7});
    DIAGS("/a /b \x7f", 0, {E, ESR_D_BAD_ENCODING, 1, 7});
    DIAGS("/a /\xED\xA0\x80", 0, {E, ESR_D_BAD_ENCODING, 1, 5}); /* surrogate */
    DIAGS("/a /\xC0\xAF", 0, {E, ESR_D_BAD_ENCODING, 1, 5});      /* overlong */
    expect_diags(__LINE__, "/a /b\n/c\0 /d\n/e /f", 18, 2,
                 (const dx[]){{E, ESR_D_BAD_ENCODING, 2, 3}}, 1);
    NODIAGS("/a\t/b\v301\f\r\n", 1);
    /* warnings */
    DIAGS("/a /b 307", 1, {W, ESR_D_STATUS_NOT_ON_NETLIFY, 1, 7}); /* case 84 */
    DIAGS("/a /b 204", 1, {W, ESR_D_STATUS_NOT_ON_NETLIFY, 1, 7});
    NODIAGS("/a /b 200", 1);
    DIAGS("/ /anz 302 country=au", 1, {W, ESR_D_NONCANONICAL_KEY, 1, 12}); /* case 56 */
    DIAGS("/a /a 301", 1, {W, ESR_D_SELF_REDIRECT, 1, 4});
    DIAGS("/a/ /a 301", 1, {W, ESR_D_TRAILING_SLASH_ONLY, 1, 5});
    DIAGS("/articles/:slug /articles/:slug/ 301", 1, {W, ESR_D_TRAILING_SLASH_ONLY, 1, 17}); /* 20 */
    DIAGS("/caf%c3%a9 /caf%C3%A9 302", 1, {W, ESR_D_SELF_REDIRECT, 1, 12});
    NODIAGS("/gated /gated 200! Role=admin", 1); /* case 71 */
    NODIAGS("/a /a?x=1 301", 1);
    DIAGS("/a/:id.json /b/:id 301", 1, {W, ESR_D_PLACEHOLDER_NAME, 1, 1},
          {W, ESR_D_UNBOUND_REFERENCE, 1, 13});
    DIAGS("/a/:x /y/:xx 301", 1, {W, ESR_D_UNBOUND_REFERENCE, 1, 7}); /* case 29 */
    NODIAGS("/a/:x /y/:1x 301\n/b https://e.com:8080/ 301", 2);
    DIAGS("/a/:x/:x /y/:x 301", 1, {W, ESR_D_DUPLICATE_PLACEHOLDER, 1, 1});
    DIAGS("/a /b 301 Sign=SECRET", 1, {W, ESR_D_HEADERS_ON_NON_PROXY, 1, 11});
    NODIAGS("/a https://api.example.com/ 200 Sign=SECRET", 1);
    DIAGS("http://example.com /x", 1, {W, ESR_D_EMPTY_FROM_PATH, 1, 1});
    DIAGS("old-path /x", 1, {W, ESR_D_FROM_NO_SLASH, 1, 1});
    DIAGS("/a //evil.example 302", 1, {W, ESR_D_OPEN_REDIRECT, 1, 4});
    DIAGS("/go/* /:splat 302", 1, {W, ESR_D_OPEN_REDIRECT, 1, 7});
    DIAGS("/r/:h https://:h.example.com/ 302", 1, {W, ESR_D_OPEN_REDIRECT, 1, 7});
    DIAGS("/go/* /:splatx 302", 1, {W, ESR_D_UNBOUND_REFERENCE, 1, 7});
    /* several warnings of one rule come in column order */
    DIAGS("a/:x/:x /y/:zz 307 language=en", 1, {W, ESR_D_FROM_NO_SLASH, 1, 1},
          {W, ESR_D_DUPLICATE_PLACEHOLDER, 1, 1}, {W, ESR_D_UNBOUND_REFERENCE, 1, 9},
          {W, ESR_D_STATUS_NOT_ON_NETLIFY, 1, 16}, {W, ESR_D_NONCANONICAL_KEY, 1, 20});
    /* lines and mixed errors */
    DIAGS("/a /b\n/c\n\n/d /e 1000\n/f /g", 2, {E, ESR_D_MISSING_TO, 2, 1},
          {E, ESR_D_BAD_STATUS, 4, 7});
}

static void test_limits(void)
{
    /* long line: LINE_TOO_LONG, the rest still loads */
    size_t n = 1 << 20;
    char *big = malloc(n + 64);
    memset(big, 'a', n);
    big[0] = '/';
    memcpy(big + n, " /b\n/c /d\n", 10);
    esr_ruleset *rs = compile_n(big, n + 10);
    CHECK(esr_ruleset_rule_count(rs) == 1, "rules %zu", esr_ruleset_rule_count(rs));
    CHECK(esr_ruleset_diag_count(rs) == 1 &&
              esr_ruleset_diag(rs, 0)->code == ESR_D_LINE_TOO_LONG &&
              esr_ruleset_diag(rs, 0)->column == 1,
          "diags");
    esr_ruleset_free(rs);
    /* a raised line limit lets a 1 MB rule in; matching it works */
    esr_builder *b;
    CHECK(esr_builder_new(n + 16, 0, &b) == ESR_OK, "new");
    CHECK(esr_builder_add_text(b, 0, big, n + 10) == 2, "two rules");
    CHECK(esr_builder_compile(b, &rs) == ESR_OK, "compile");
    CHECK(esr_builder_add_text(b, 0, "/x /y", 5) == ESR_ESTATE, "spent");
    esr_ruleset *rs2;
    CHECK(esr_builder_compile(b, &rs2) == ESR_ESTATE, "spent compile");
    esr_builder_free(b);
    esr_result res;
    char t[8];
    CHECK(esr_ruleset_match(rs, big, n, NULL, &res, t, sizeof t) == ESR_OK &&
              res.kind == ESR_MATCH && res.rule == 0,
          "1MB path match");
    esr_ruleset_free(rs);
    free(big);

    /* TOO_MANY_RULES */
    CHECK(esr_builder_new(0, 2, &b) == ESR_OK, "new");
    CHECK(esr_builder_add_text(b, 3, "/a /b\n/c\n/d /e\n/f /g\n/h /i", 26) == 2, "limit");
    CHECK(esr_builder_add_text(b, 4, "/z /y", 5) == 0, "stopped");
    CHECK(esr_builder_compile(b, &rs) == ESR_OK, "compile");
    CHECK(esr_ruleset_rule_count(rs) == 2, "2 rules");
    CHECK(esr_ruleset_diag_count(rs) == 2 && esr_ruleset_diag(rs, 1)->code == ESR_D_TOO_MANY_RULES &&
              esr_ruleset_diag(rs, 1)->line == 4,
          "too many");
    esr_builder_free(b);
    esr_ruleset_free(rs);

    /* many tokens on one line: linear */
    size_t m = 200000;
    char *line = malloc(m * 8 + 32);
    size_t o = (size_t)sprintf(line, "/a /b/:x 301");
    for (size_t i = 0; i < m; i++)
        o += (size_t)sprintf(line + o, " Role=r");
    CHECK(esr_builder_new(o + 1, 0, &b) == ESR_OK, "new");
    CHECK(esr_builder_add_text(b, 0, line, o) == 1, "many conditions");
    esr_builder_free(b);
    free(line);
}

static void test_matching(void)
{
    esr_ruleset *rs;
    rs = compile("/home / 301\n/home2 /\n");
    MATCH(rs, "/home", NULL, 0, "/"); /* 1 */
    MATCH(rs, "/home2", NULL, 1, "/");
    esr_rule_info ri;
    CHECK(esr_ruleset_rule(rs, 1, &ri) == ESR_OK && ri.status == 301 && !ri.force &&
              ri.target_static && !ri.dynamic,
          "default status");
    CHECK(esr_ruleset_rule(rs, 2, &ri) == ESR_EINVAL, "range");
    esr_ruleset_free(rs);

    rs = compile("/a /b 301\n/a /c 302\n");
    MATCH(rs, "/a", NULL, 0, "/b");            /* 3 */
    MATCH(rs, "/a/", NULL, 0, "/b");           /* 4 */
    NOMATCH(rs, "/A", NULL);                   /* 6 */
    NOMATCH(rs, "/a/index.html", NULL);        /* 7 */
    NOMATCH(rs, "//a", NULL);                  /* 8 */
    NOMATCH(rs, "/a//", NULL);
    MATCH(rs, "https://x.com/a?z=1#f", NULL, 0, "/b");
    MATCH(rs, "HTTP://x.com/a", NULL, 0, "/b");
    esr_ruleset_free(rs);

    rs = compile("/a/ /b 301\n");
    MATCH(rs, "/a", NULL, 0, "/b"); /* 5 */
    esr_ruleset_free(rs);

    rs = compile("/news/* /blog/:splat\n");
    MATCH(rs, "/news/2004/01/10/my-story", NULL, 0, "/blog/2004/01/10/my-story"); /* 9 */
    MATCH(rs, "/news", NULL, 0, "/blog/");          /* 10 */
    MATCH(rs, "/news/", NULL, 0, "/blog/");         /* 11 */
    NOMATCH(rs, "/newsroom", NULL);                 /* 12 */
    MATCH(rs, "/news/a/b/", NULL, 0, "/blog/a/b/"); /* 13 */
    NOMATCH(rs, "/", NULL);
    esr_ruleset_free(rs);

    rs = compile("/* /index.html 200\n");
    MATCH(rs, "/", NULL, 0, "/index.html");          /* 14 */
    MATCH(rs, "/deep/link", NULL, 0, "/index.html"); /* 15 */
    MATCH(rs, "https://e.com", NULL, 0, "/index.html");
    MATCH(rs, "https://e.com?x", NULL, 0, "/index.html");
    esr_ruleset_free(rs);

    rs = compile("/news/:year/:month/:date/:slug /blog/:year/:month/:date/:slug\n");
    MATCH(rs, "/news/2004/02/12/my-story", NULL, 0, "/blog/2004/02/12/my-story"); /* 16 */
    NOMATCH(rs, "/news/2004/02/12", NULL);                                        /* 17 */
    NOMATCH(rs, "/news/2004/02/12/my-story/extra", NULL);                         /* 18 */
    NOMATCH(rs, "/news/2004//12/x", NULL);
    esr_ruleset_free(rs);

    rs = compile("/:a/:b /:b/:a 301\n/a/item-:id /b/:id 301\n/a.b /x 301\n");
    MATCH(rs, "/x/y/", NULL, 0, "/y/x"); /* 19 */
    MATCH(rs, "/a/item-:id", NULL, 0, "/item-:id/a");
    NOMATCH(rs, "/a/item-5/x", NULL); /* 21 */
    NOMATCH(rs, "/axb", NULL);        /* 22 */
    esr_ruleset_free(rs);

    rs = compile("/a* /x/:splat 301\n");
    MATCH(rs, "/abc/d", NULL, 0, "/x/bc/d"); /* 25 */
    MATCH(rs, "/a", NULL, 0, "/x/");
    MATCH(rs, "/ab", NULL, 0, "/x/b");
    MATCH(rs, "/a/b", NULL, 0, "/x/b");
    NOMATCH(rs, "/b", NULL);
    esr_ruleset_free(rs);

    rs = compile("/x/:p/ab* /y/:p/:splat 301\n/q/:splat/* /r/:splat 301\n");
    MATCH(rs, "/x/1/abc", NULL, 0, "/y/1/c");
    MATCH(rs, "/x/1/ab/c/", NULL, 0, "/y/1/c/");
    NOMATCH(rs, "/x/1/a", NULL);
    MATCH(rs, "/q/one/two", NULL, 1, "/r/one"); /* named placeholder wins over * */
    esr_ruleset_free(rs);

    rs = compile("/a/:i/:id /y/:id/:i 301\n/b/:x/:y /y/:y/:x 301\n/c/:s/* /y/:splat/:s 301\n"
                 "/d/:x /y/:xx 301\n");
    MATCH(rs, "/a/1/2", NULL, 0, "/y/2/1");     /* 26 */
    MATCH(rs, "/b/:y/Q", NULL, 1, "/y/Q/:y");   /* 27 */
    MATCH(rs, "/c/1/2", NULL, 2, "/y/2/1");     /* 28 */
    MATCH(rs, "/d/1", NULL, 3, "/y/:xx");       /* 29 */
    esr_ruleset_free(rs);

    /* canonical encoding, cases 30-32 */
    rs = compile("/caf%C3%A9 /b 301\n/admin/* /x 301\n/sp%20ace /s 301\n/caf\xC3\xA8 /e 301\n"
                 "/p/:v /got/:v 301\n");
    MATCH(rs, "/caf%C3%A9", NULL, 0, "/b");
    MATCH(rs, "/caf%c3%a9", NULL, 0, "/b");
    MATCH(rs, "/caf\xC3\xA9", NULL, 0, "/b");
    MATCH(rs, "/%61dmin/q", NULL, 1, "/x");
    MATCH(rs, "/sp ace", NULL, 2, "/s");
    MATCH(rs, "/caf%C3%A8", NULL, 3, "/e");
    MATCH(rs, "/p/a%2fb", NULL, 4, "/got/a%2Fb");
    MATCH(rs, "/p/%7e%zz", NULL, 4, "/got/~%25zz");
    NOMATCH(rs, "/admin%2Fq", NULL);
    esr_ruleset_free(rs);

    /* query */
    rs = compile("/store id=:id /blog/:id 301\n");
    MATCH(rs, "/store?id=my-post", NULL, 0, "/blog/my-post"); /* 33 */
    MATCH(rs, "/store?id=my-post&utm=x", NULL, 0, "/blog/my-post");
    NOMATCH(rs, "/store", NULL);
    MATCH(rs, "/store?id=", NULL, 0, "/blog/");
    NOMATCH(rs, "/store?ID=1", NULL);
    NOMATCH(rs, "/store?id", NULL);
    MATCH(rs, "/store?id=1&id=2", NULL, 0, "/blog/2");
    MATCH(rs, "/store?&x=1&&id=3#frag", NULL, 0, "/blog/3");
    esr_ruleset_free(rs);

    rs = compile("/s q=:q /search/:q 301\n");
    MATCH(rs, "/s?q=hello%20world", NULL, 0, "/search/hello+world"); /* 39 */
    MATCH(rs, "/s?q=a%2Fb", NULL, 0, "/search/a%2Fb");              /* 40 */
    MATCH(rs, "/s?q=a;b", NULL, 0, "/search/a%3Bb");
    MATCH(rs, "/s?q=a+b%zz~", NULL, 0, "/search/a+b%25zz~");
    esr_ruleset_free(rs);

    rs = compile("/p a=:a b=:b /r/:a/:b 301\n/p a=:a /r/:a 301\n/p /r 301\n");
    MATCH(rs, "/p?b=2&a=1", NULL, 0, "/r/1/2"); /* 41 */
    MATCH(rs, "/p?a=1", NULL, 1, "/r/1");       /* 42 */
    MATCH(rs, "/p?c=3", NULL, 2, "/r");         /* 43 */
    esr_ruleset_free(rs);

    rs = compile("/s v=on /on 301\n/t q=a%20b /ab 301\n/s/:id q=:id /p/:id 301\n"
                 "/test id=:id /?param=:id 302\n");
    NOMATCH(rs, "/s?v=ON", NULL); /* 44 */
    MATCH(rs, "/s?v=on", NULL, 0, "/on");
    MATCH(rs, "/t?q=a+b", NULL, 1, "/ab");
    MATCH(rs, "/t?q=a%20b", NULL, 1, "/ab");
    MATCH(rs, "/s/path?q=query", NULL, 2, "/p/path"); /* 47 */
    MATCH(rs, "/test?id=1&x=2", NULL, 3, "/?param=1"); /* 49 */
    esr_ruleset_free(rs);

    /* conditions */
    rs = compile("/ /anz 302 Country=au,nz\n/x /y 302 Country=us Country=de\n"
                 "/l /he 302 Language=he\n/z /zh 302 Language=zh-tw\n"
                 "/c /legacy 200 Cookie=is_legacy,my_other_cookie\n/k /k2 302 Country=us#x\n");
    MATCH(rs, "/", "NZ", 0, "/anz");  /* 52 */
    NOMATCH(rs, "/", "US");           /* 53 */
    NOMATCH(rs, "/", NULL);
    NOMATCH(rs, "/x", "US");          /* 63 */
    MATCH(rs, "/l", "US|he-IL", 2, "/he"); /* 57 */
    MATCH(rs, "/l", "US|HE", 2, "/he");
    MATCH(rs, "/z", "|zh-TW", 3, "/zh");   /* 59 */
    NOMATCH(rs, "/z", "|zh");
    MATCH(rs, "/c", "||a,my_other_cookie", 4, "/legacy"); /* 64 */
    NOMATCH(rs, "/c", "||IS_LEGACY");                     /* 66 */
    NOMATCH(rs, "/k", "us");                              /* 96 */
    esr_ruleset_free(rs);

    rs = compile("/ /anz 302 Country=AU\n");
    MATCH(rs, "/", "au", 0, "/anz"); /* 54 */
    esr_ruleset_free(rs);

    /* roles and denial */
    rs = compile("/admin/* /admin/:splat 200! Role=admin\n/admin/* /login 302!\n");
    MATCH(rs, "/admin/a", "|||admin", 0, "/admin/a"); /* 68 */
    expect(__LINE__, rs, "/admin/a", "|||editor", ESR_MATCH, 1, "/login"); /* 70 */
    {
        esr_result res;
        char buf[64];
        ctxbuf cb;
        esr_ruleset_match(rs, "/admin/a", 8, mkctx(&cb, "|||editor"), &res, buf, sizeof buf);
        CHECK(res.denied_by == 0, "denied_by %d", (int)res.denied_by);
        esr_ruleset_match(rs, "/admin/a", 8, mkctx(&cb, "|||admin"), &res, buf, sizeof buf);
        CHECK(res.denied_by == -1, "denied_by %d", (int)res.denied_by);
    }
    esr_ruleset_free(rs);
    rs = compile("/admin/* /admin/:splat 200! Role=admin\n/x /y 200 Role=admin Country=us\n"
                 "/r /s 200 Role=a,b Role=c\n");
    DENIED(rs, "/admin/a", "|||editor", 0); /* 69 */
    DENIED(rs, "/admin/a", NULL, 0);
    NOMATCH(rs, "/x", "DE|||admin");        /* 73 */
    DENIED(rs, "/x", "US", 1);              /* 74 */
    MATCH(rs, "/r", "||x|b,c", 2, "/s");
    DENIED(rs, "/r", "|||b", 2);
    esr_ruleset_free(rs);
    rs = compile("/admin/* 200! Role=admin\n/gated /gated 200! Role=admin\n");
    DENIED(rs, "/admin/x", NULL, 0); /* 72 */
    MATCH(rs, "/admin/panel", "|||admin", 0, "/admin/panel");
    MATCH(rs, "/gated", "|||admin", 1, "/gated"); /* 71 */
    CHECK(esr_ruleset_rule(rs, 0, &ri) == ESR_OK && ri.to_len == 13 &&
              memcmp(ri.to, "/admin/:splat", 13) == 0 && ri.has_role && ri.has_conditions &&
              ri.force && ri.status == 200 && !ri.target_static && ri.dynamic,
          "forward rule info");
    esr_ruleset_free(rs);

    /* host rules */
    rs = compile("http://blog.example.com/* https://www.example.com/blog/:splat 301!\n"
                 "https://site.netlify.app/* https://site.com/:splat 301!\n/a /b 302\n"
                 "https://Old.Example.COM.:443/x /old 302\nhttp://h.com:8080/p /port 302\n");
    MATCH(rs, "http://blog.example.com/2020/post", NULL, 0,
          "https://www.example.com/blog/2020/post"); /* 90 */
    NOMATCH(rs, "https://blog.example.com/2020/post", NULL); /* 91 */
    MATCH(rs, "http://BLOG.example.com/x", NULL, 0, "https://www.example.com/blog/x"); /* 92 */
    MATCH(rs, "http://blog.example.com.:80/x", NULL, 0, "https://www.example.com/blog/x");
    NOMATCH(rs, "/2020/post", NULL);
    MATCH(rs, "https://site.com/a", NULL, 2, "/b"); /* 93 */
    MATCH(rs, "https://old.example.com/x", NULL, 3, "/old");
    MATCH(rs, "http://h.com:8080/p", NULL, 4, "/port");
    NOMATCH(rs, "http://h.com/p", NULL);
    esr_ruleset_free(rs);

    /* target kept as written: fragment, absolute target placeholders */
    rs = compile("/a /b#frag 302\n/api/* https://api.example.com/:splat 200\n");
    MATCH(rs, "/a?x=1", NULL, 0, "/b#frag");
    MATCH(rs, "/api/v1/users?x=1", NULL, 1, "https://api.example.com/v1/users");
    esr_ruleset_free(rs);

    /* bad URLs */
    rs = compile("/a /b\n");
    {
        esr_result res;
        char buf[8];
        CHECK(esr_ruleset_match(rs, "ftp://x/a", 9, NULL, &res, buf, 8) == ESR_EINVAL, "ftp");
        CHECK(esr_ruleset_match(rs, "a", 1, NULL, &res, buf, 8) == ESR_EINVAL, "rel");
        CHECK(esr_ruleset_match(rs, "", 0, NULL, &res, buf, 8) == ESR_EINVAL, "empty");
        CHECK(esr_ruleset_match(rs, "http:///a", 9, NULL, &res, buf, 8) == ESR_EINVAL, "nohost");
        CHECK(esr_ruleset_match(NULL, "/a", 2, NULL, &res, buf, 8) == ESR_EINVAL, "null");
        CHECK(esr_ruleset_match(rs, "/a", 2, NULL, &res, buf, 1) == ESR_ERANGE &&
                  res.target_len == 2 && res.kind == ESR_MATCH,
              "erange");
        CHECK(esr_ruleset_match(rs, "/a", 2, NULL, &res, NULL, 0) == ESR_ERANGE, "null target");
        CHECK(esr_ruleset_match(rs, "/a\0b", 4, NULL, &res, buf, 8) == ESR_OK &&
                  res.kind == ESR_NO_MATCH,
              "nul in url");
    }
    esr_ruleset_free(rs);
}

static void test_fields(void)
{
    esr_builder *b;
    esr_ruleset *rs;
    CHECK(esr_builder_new(0, 0, &b) == ESR_OK, "new");
#define REC(line, lit, want)                                                                  \
    CHECK(esr_builder_add_fields(b, 1, line, lit, sizeof lit - 1) == (want), "record %s", #lit)
    REC(10, "F/search\0Thttps://api.mysearch.com\0S200\0!\0HX-From\x1fNetlify\0GAPI_TOKEN\0", 1);
    REC(11, "F/path\0T/foo.html\0S200\0Qfoo\x1f\0", 1);
    REC(12, "F/store\0T/blog/:id\0Qid\x1f:id\0", 1);
    REC(13, "F/g\0T/geo\0S302\0Ccountry\x1f" "au,nz\0CLanguage\x1f" "en\0", 1);
    REC(14, "F/admin/*\0S200\0!\0CRole\x1f" "admin\0", 1);
    REC(15, "F/x\0T/y\0S301\0HX-A\x1f" "b\0", 1); /* headers on non-proxy */
    REC(16, "F/x\0T/y\0S301!\0", 0);              /* BAD_STATUS */
    REC(17, "T/y\0", 0);                          /* BAD_FROM */
    REC(18, "F/x\0", 0);                          /* MISSING_TO */
    REC(19, "F/x\0Tnope\0", 0);                   /* BAD_TARGET */
    REC(20, "F/x\0T/y\0CFoo\x1f" "1\0", 0);       /* UNKNOWN_CONDITION */
    REC(21, "F/x\0T/y\0CCountry\x1f" "a,,b\0", 0); /* BAD_CONDITION */
    REC(22, "F/x\0T/y\0Q\x1fv\0", 0);             /* BAD_QUERY_PAIR */
    REC(23, "F/x\0Ty\0S999\0", 0);                /* BAD_TARGET before BAD_STATUS */
    CHECK(esr_builder_add_fields(b, 1, 24, "Z/x", 3) == ESR_EINVAL, "unknown tag");
    CHECK(esr_builder_add_fields(b, 1, 24, "F/x\0Qab", 7) == ESR_EINVAL, "no separator");
    CHECK(esr_builder_add_fields(b, 1, 24, "F/x\0\0T/y", 8) == ESR_EINVAL, "empty field");
    CHECK(esr_builder_add_fields(b, 1, 25, "F/x\0T/y", 7) == 1, "no trailing NUL");
    CHECK(esr_builder_add_text(b, 0, "/t /from-text 302\n", 18) == 1, "text");
    CHECK(esr_builder_compile(b, &rs) == ESR_OK, "compile");
    esr_builder_free(b);
    static const dx want[] = {
        {W, ESR_D_NONCANONICAL_KEY, 13, 1}, {W, ESR_D_HEADERS_ON_NON_PROXY, 15, 1},
        {E, ESR_D_BAD_STATUS, 16, 1},       {E, ESR_D_BAD_FROM, 17, 1},
        {E, ESR_D_MISSING_TO, 18, 1},       {E, ESR_D_BAD_TARGET, 19, 1},
        {E, ESR_D_UNKNOWN_CONDITION, 20, 1}, {E, ESR_D_BAD_CONDITION, 21, 1},
        {E, ESR_D_BAD_QUERY_PAIR, 22, 1},   {E, ESR_D_BAD_TARGET, 23, 1},
    };
    /* source 0 (text) sorts first: it has no diags; all these are source 1 */
    size_t nd = esr_ruleset_diag_count(rs);
    CHECK(nd == sizeof want / sizeof want[0], "ndiags %zu", nd);
    for (size_t i = 0; i < nd && i < sizeof want / sizeof want[0]; i++) {
        const esr_diag *d = esr_ruleset_diag(rs, i);
        CHECK(d->code == want[i].code && d->line == want[i].line && d->column == 1 &&
                  d->severity == want[i].sev && d->source == 1,
              "diag %zu: %s %u", i, esr_diag_code_name(d->code), d->line);
    }
    esr_rule_info ri;
    CHECK(esr_ruleset_rule(rs, 0, &ri) == ESR_OK && ri.status == 200 && ri.force &&
              ri.line == 10 && ri.source == 1 && ri.target_static,
          "proxy rule info");
    /* text rule added after the records is last in order */
    CHECK(esr_ruleset_rule_count(rs) == 8, "rules %zu", esr_ruleset_rule_count(rs));
    NOMATCH(rs, "/path?foo", NULL); /* 46 */
    MATCH(rs, "/path?foo=", NULL, 1, "/foo.html");
    NOMATCH(rs, "/path?foo=1", NULL);
    MATCH(rs, "/store?id=7", NULL, 2, "/blog/7");
    MATCH(rs, "/g", "AU|en-GB", 3, "/geo");
    NOMATCH(rs, "/g", "AU");
    DENIED(rs, "/admin/q", NULL, 4);
    MATCH(rs, "/t", NULL, 7, "/from-text");
    esr_ruleset_free(rs);
}

static void test_batch(void)
{
    esr_ruleset *rs = compile("/a /target-a 301\n/b/* /bb/:splat 302\n/r 200! Role=x\n/r/* 200 Role=x\n");
    const char urls[] = "/a\n/nope\nftp://x\n/b/123456\n/r/q";
    int8_t kinds[5];
    int32_t rules[5];
    uint32_t ends[5];
    char out[64];
    long n = esr_ruleset_match_batch(rs, urls, sizeof urls - 1, 5, NULL, kinds, rules, ends, out,
                                     sizeof out);
    CHECK(n == 5, "n %ld", n);
    CHECK(kinds[0] == ESR_MATCH && rules[0] == 0 && ends[0] == 9, "k0");
    CHECK(kinds[1] == ESR_NO_MATCH && rules[1] == -1 && ends[1] == 9, "k1");
    CHECK(kinds[2] == -1 && rules[2] == -1 && ends[2] == 9, "k2");
    CHECK(kinds[3] == ESR_MATCH && rules[3] == 1 && ends[3] == 19, "k3 %u", ends[3]);
    CHECK(kinds[4] == ESR_DENIED && rules[4] == 2 && ends[4] == 19, "k4");
    CHECK(memcmp(out, "/target-a/bb/123456", 19) == 0, "out");
    /* buffer too small for the second target: fewer processed */
    n = esr_ruleset_match_batch(rs, urls, sizeof urls - 1, 5, NULL, kinds, rules, ends, out, 12);
    CHECK(n == 3, "partial %ld", n);
    /* one target alone too large */
    n = esr_ruleset_match_batch(rs, urls, sizeof urls - 1, 5, NULL, kinds, rules, ends, out, 4);
    CHECK(n == ESR_ERANGE, "erange %ld", n);
    n = esr_ruleset_match_batch(rs, urls, sizeof urls - 1, 0, NULL, NULL, NULL, NULL, NULL, 0);
    CHECK(n == 0, "empty batch");
    esr_ruleset_free(rs);
}

static void test_long_and_garbage(void)
{
    /* long request paths (> ESR_STACK_PATH) with placeholders and splats */
    esr_ruleset *rs = compile("/a/:x/* /t/:x/:splat 301\n/s/* /s2/:splat\n");
    size_t n = 3 * ESR_STACK_PATH;
    char *url = malloc(n + 1);
    memcpy(url, "/a/x/", 5);
    for (size_t i = 5; i < n; i++)
        url[i] = (i % 7 == 0) ? '/' : (i % 5 == 0 ? ' ' : 'b');
    esr_result res;
    char *tgt = malloc(4 * n);
    CHECK(esr_ruleset_match(rs, url, n, NULL, &res, tgt, 4 * n) == ESR_OK &&
              res.kind == ESR_MATCH && res.rule == 0 && res.target_len > n,
          "long path");
    CHECK(esr_ruleset_match(rs, url, n, NULL, &res, tgt, 10) == ESR_ERANGE, "long erange");
    /* many slashes: many prefix lookups, still correct */
    for (size_t i = 0; i < n; i++)
        url[i] = '/';
    CHECK(esr_ruleset_match(rs, url, n, NULL, &res, tgt, 4 * n) == ESR_OK &&
              res.kind == ESR_NO_MATCH,
          "slashes");
    free(url);
    free(tgt);
    esr_ruleset_free(rs);

    /* many placeholders (> stack capture array) */
    char rule[4096], req[2048];
    size_t o = 0, q = 0;
    for (int i = 0; i < 100; i++) {
        o += (size_t)sprintf(rule + o, "/:p%d", i);
        q += (size_t)sprintf(req + q, "/%d", i);
    }
    o += (size_t)sprintf(rule + o, " /x/:p99/:p0\n");
    rs = compile_n(rule, o);
    char t[64];
    CHECK(esr_ruleset_match(rs, req, q, NULL, &res, t, sizeof t) == ESR_OK &&
              res.kind == ESR_MATCH && res.target_len == 7 && memcmp(t, "/x/99/0", 7) == 0,
          "100 placeholders");
    esr_ruleset_free(rs);

    /* binary garbage: no crash, diagnostics only */
    unsigned seed = 12345;
    char *g = malloc(1 << 16);
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < (1 << 16); i++) {
            seed = seed * 1103515245u + 12345u;
            g[i] = (char)(seed >> 16);
            if (round % 2 && (seed >> 8) % 13 == 0)
                g[i] = "/ \n:*=!"[(seed >> 4) % 7];
        }
        rs = compile_n(g, 1 << 16);
        CHECK(esr_ruleset_memory(rs) > 0, "garbage compiled");
        esr_ruleset_match(rs, g, 200, NULL, &res, t, sizeof t);
        esr_ruleset_free(rs);
    }
    free(g);
    esr_ruleset_free(NULL);
    esr_builder_free(NULL);
    CHECK(strcmp(esr_diag_code_name(ESR_D_OPEN_REDIRECT), "OPEN_REDIRECT") == 0, "name");
    CHECK(strcmp(esr_diag_code_name(999), "UNKNOWN") == 0, "unknown name");
    CHECK(esr_strerror(ESR_ENOMEM)[0] && esr_strerror(12345)[0], "strerror");
}

static void test_diag_order(void)
{
    esr_builder *b;
    esr_ruleset *rs;
    CHECK(esr_builder_new(0, 0, &b) == ESR_OK, "new");
    esr_builder_add_text(b, 2, "/a /b 999\n", 10);
    esr_builder_add_text(b, 1, "/a\n/b /c 307\n", 13);
    esr_builder_add_fields(b, 1, 2, "F/q\0T/r\0S0", 10);
    CHECK(esr_builder_diag_count(b) == 4, "builder diags");
    CHECK(esr_builder_diag(b, 0)->source == 2, "insertion order");
    CHECK(esr_builder_compile(b, &rs) == ESR_OK, "compile");
    esr_builder_free(b);
    const esr_diag *d0 = esr_ruleset_diag(rs, 0), *d1 = esr_ruleset_diag(rs, 1),
                   *d2 = esr_ruleset_diag(rs, 2), *d3 = esr_ruleset_diag(rs, 3);
    CHECK(d0->source == 1 && d0->line == 1 && d1->source == 1 && d1->line == 2 &&
              d1->column == 1 && d1->code == ESR_D_BAD_STATUS && d2->line == 2 &&
              d2->column == 7 && d3->source == 2,
          "sorted");
    CHECK(esr_ruleset_diag(rs, 4) == NULL, "past end");
    esr_ruleset_free(rs);
}

/* The catalog digests against hashlib's blake2b(b"%d:%d:%d" % (seed, i, v),
 * digest_size=8).hexdigest(), computed in Python. */
static void test_catalog_digests(void)
{
    const uint32_t versions[3] = {0, 5, 4000000000u};
    char out[49];
    memset(out, '?', sizeof out);
    CHECK(esr_catalog_digests(1, versions, 3, out) == ESR_OK, "digests");
    CHECK(memcmp(out, "eec95998bd415456e478a5f451c15fd8296b00adc9455b46", 48) == 0 && out[48] == '?',
          "seed 1: %.48s", out);
    CHECK(esr_catalog_digests(INT64_MIN, versions, 3, out) == ESR_OK, "digests");
    CHECK(memcmp(out, "c8e73ce7c1ba8283f8ef68d0b49f9eed0a6eb01c70f4a8a6", 48) == 0,
          "seed INT64_MIN: %.48s", out);
    CHECK(esr_catalog_digests(7, NULL, 0, NULL) == ESR_OK, "nothing to do");
    CHECK(esr_catalog_digests(7, NULL, 1, out) == ESR_EINVAL, "NULL versions");
    CHECK(esr_catalog_digests(7, versions, 1, NULL) == ESR_EINVAL, "NULL out");
}

/* The key hashes against the byte-by-byte definition, computed in Python. */
static void test_key_hashes(void)
{
    const char data[] = "/x/assets/y.js"; /* "/x", "", "/assets/y.js" */
    const uint32_t lengths[3] = {2, 0, 12};
    uint64_t out[3] = {0, 0, 0};
    CHECK(esr_key_hashes(0x0123456789abcdefULL, data, lengths, 3, out) == ESR_OK, "hashes");
    CHECK(out[0] == 0x8837a98bf30d92cfULL, "/x: %llx", (unsigned long long)out[0]);
    CHECK(out[1] == 0xb2c058e4ebb5112cULL, "empty: %llx", (unsigned long long)out[1]);
    CHECK(out[2] == 0x4269782bee40a803ULL, "/assets/y.js: %llx", (unsigned long long)out[2]);
    CHECK(esr_key_hashes(1, NULL, lengths + 1, 1, out) == ESR_OK, "no bytes needed");
    CHECK(esr_key_hashes(1, NULL, lengths, 1, out) == ESR_EINVAL, "NULL data");
    CHECK(esr_key_hashes(1, data, lengths, 1, NULL) == ESR_EINVAL, "NULL out");
}

/* context_used: set when a rule with visitor conditions was reached, else 0. */
static int used(esr_ruleset *rs, const char *url, const char *ctx)
{
    ctxbuf cb;
    esr_result res;
    res.context_used = -1;
    char buf[64];
    if (esr_ruleset_match(rs, url, strlen(url), mkctx(&cb, ctx), &res, buf, sizeof buf) != ESR_OK)
        return -2;
    return res.context_used;
}

static void test_context_used(void)
{
    esr_ruleset *rs = compile("/ /de 302 Country=de\n/a/* /b/:splat 301\n/gated/* /x 200! Role=admin\n"
                              "/q id=:id /r/:id 301\n/q /s 301 Language=fr\n/* /index.html 200\n");
    CHECK(used(rs, "/", "de||") == 1, "conditional rule matched");
    CHECK(used(rs, "/", "us||") == 1, "conditional rule failed, later rule matched");
    CHECK(used(rs, "/", NULL) == 1, "conditional rule failed without a context");
    CHECK(used(rs, "/a/x", "de||") == 0, "plain rule before any conditional one");
    CHECK(used(rs, "/gated/1", NULL) == 1, "role rule denied");
    CHECK(used(rs, "/q?id=3", "fr||") == 0, "query rule matched first");
    CHECK(used(rs, "/q", "fr||") == 1, "query rule skipped, language rule reached");
    CHECK(used(rs, "/zzz", "de|fr|c|r") == 0, "only the catch-all");
    esr_ruleset_free(rs);
    rs = compile("/x /y 301\n");
    CHECK(used(rs, "/nothing", "de||") == 0, "no match at all");
    esr_ruleset_free(rs);
    /* the linear scan taken when a path has too many candidate lists */
    static char text[65536];
    char url[600];
    size_t o = 0, u = 0;
    for (int i = 0; i < 140; i++)
        o += (size_t)sprintf(text + o, "/%.*s* /t 301%s\n", i * 2, "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"
                             "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"
                             "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"
                             "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/"
                             "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/",
                             i == 0 ? " Country=de" : "");
    for (int i = 0; i < 140; i++)
        u += (size_t)sprintf(url + u, "/a");
    rs = compile(text);
    CHECK(used(rs, url, "us||") == 1, "linear scan: conditional rule 0 reached");
    esr_ruleset_free(rs);
}

int main(void)
{
    test_parse_diags();
    test_limits();
    test_matching();
    test_fields();
    test_batch();
    test_long_and_garbage();
    test_diag_order();
    test_catalog_digests();
    test_key_hashes();
    test_context_used();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
