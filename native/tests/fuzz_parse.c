/*
 * fuzz_parse.c - libFuzzer target: the input is compiled as `_redirects`
 * text and (after its first byte) as a field record, then a few URLs
 * derived from the input are matched (single and batch) and everything is
 * freed.
 *
 * Build with clang -fsanitize=fuzzer,address,undefined, or without
 * libFuzzer with -DESR_FUZZ_STANDALONE: `fuzz_standalone FILE...` runs the
 * files, `fuzz_standalone N` runs N inputs from a fixed-seed generator.
 */
#include "esr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void match_some(const esr_ruleset *rs, const uint8_t *data, size_t size)
{
    static const char *fixed[] = {"/", "/a", "/a/b/", "https://example.com/x?id=1&q=a+b",
                                  "http://Example.com.:80/news/a", "/store?id=%zz&id=2",
                                  "ftp://x", ""};
    char url[600];
    char target[256];
    esr_result res;
    char cc[64];
    size_t cn = size < sizeof cc ? size : sizeof cc;
    memcpy(cc, data, cn);
    for (size_t i = 0; i < cn; i++)
        if (cc[i] == ',')
            cc[i] = '\0';
    esr_context ctx = {cc, cn > 2 ? 2 : cn, cc, cn > 5 ? 5 : cn, cc, cn, cc, cn};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        esr_ruleset_match(rs, fixed[i], strlen(fixed[i]), &ctx, &res, target, sizeof target);
    /* each of the first lines as a path, prefixed with '/' */
    size_t pos = 0;
    for (int k = 0; k < 6 && pos < size; k++) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - data) : size;
        size_t n = end - pos;
        if (n > sizeof url - 1)
            n = sizeof url - 1;
        url[0] = '/';
        memcpy(url + 1, data + pos, n);
        /* the whole token up to the first space */
        size_t t = 1;
        while (t <= n && url[t] != ' ' && url[t] != '\t')
            t++;
        esr_ruleset_match(rs, url, n + 1, &ctx, &res, target, sizeof target);
        esr_ruleset_match(rs, url + 1, t - 1, &ctx, &res, target, 4);
        esr_ruleset_match(rs, url, t, NULL, &res, NULL, 0);
        pos = end + 1;
    }
    /* batch over the raw input */
    int8_t kinds[8];
    int32_t rules[8];
    uint32_t ends[8];
    char out[64];
    esr_ruleset_match_batch(rs, (const char *)data, size, 8, &ctx, kinds, rules, ends, out,
                            sizeof out);
    esr_rule_info ri;
    size_t nr = esr_ruleset_rule_count(rs);
    for (size_t i = 0; i < nr && i < 16; i++)
        esr_ruleset_rule(rs, i, &ri);
    for (size_t i = 0; i < esr_ruleset_diag_count(rs); i++)
        if (!memchr(esr_ruleset_diag(rs, i)->message, '\0', ESR_MESSAGE_MAX))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    esr_builder *b = NULL;
    esr_ruleset *rs = NULL;
    /* small limits so the limit paths are exercised too */
    if (esr_builder_new(size % 3 ? 0 : 64, size % 5 ? 0 : 3, &b) != ESR_OK)
        return 0;
    esr_builder_add_text(b, 0, (const char *)data, size);
    if (size > 0)
        esr_builder_add_fields(b, 1, data[0], (const char *)data + 1, size - 1);
    /* a well-formed record built from the input's lines */
    char rec[512];
    size_t o = 0;
    static const char tags[] = "FTSQCHG!";
    size_t pos = 0;
    for (int k = 0; k < 8 && pos < size; k++) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - data) : size;
        size_t n = end - pos;
        if (n > 60)
            n = 60;
        char tag = tags[(data[pos] + k) % 8];
        if (o + n + 4 > sizeof rec)
            break;
        rec[o++] = tag;
        if (tag != '!') {
            for (size_t i = 0; i < n; i++) {
                char c = (char)data[pos + i];
                rec[o++] = c == '\0' ? ' ' : (c == '|' ? '\x1f' : c);
            }
            if ((tag == 'Q' || tag == 'C' || tag == 'H') && !memchr(rec + o - n, '\x1f', n))
                rec[o++] = '\x1f';
        }
        rec[o++] = '\0';
        pos = end + 1;
    }
    esr_builder_add_fields(b, 2, 7, rec, o);
    for (size_t i = 0; i < esr_builder_diag_count(b); i++)
        (void)esr_builder_diag(b, i);
    if (esr_builder_compile(b, &rs) == ESR_OK) {
        match_some(rs, data, size);
        esr_ruleset_free(rs);
    }
    esr_builder_free(b);
    return 0;
}

#ifdef ESR_FUZZ_STANDALONE
#include <limits.h>
#include <time.h>

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    static const char *dict[] = {
        "/",      "/a",       "/news/*", "/:id",     ":splat",  "*",      " ",     "\t",
        "\n",     "301",      "200!",    "302",      "404",     "999",    "30x",   "Country=us",
        "Role=admin", "Language=en-US", "Cookie=a,b", "Sign=S", "country=", "id=:id", "q=a+b",
        "https://", "http://Ex.com", "//x", "/.netlify/", "%2F", "%zz", "%C3%A9", "\xC3\xA9",
        "\xEF\xBB\xBF", "\x80", "\0", "#", "?", "&", "=", ",", "F/a", "T/b", "\x1f", "!",
        "/a/:x/:x", "/b/:splat", ":xx", "/*", "https://h.com:8080/*"};
    const size_t nd = sizeof dict / sizeof dict[0];
    /* no arguments: generated inputs for ESR_FUZZ_SECONDS (default 20000 inputs) */
    const char *secs = getenv("ESR_FUZZ_SECONDS");
    if (argc == 1 || (argc > 1 && strspn(argv[1], "0123456789") == strlen(argv[1]))) {
        long n = argc > 1 ? atol(argv[1]) : (secs ? LONG_MAX : 20000);
        time_t stop = secs ? time(NULL) + atol(secs) : 0;
        uint64_t s = 0x9E3779B97F4A7C15ULL;
        char *buf = malloc(1 << 16);
        long i;
        for (i = 0; i < n; i++) {
            if (stop && i % 256 == 0 && time(NULL) >= stop)
                break;
            size_t len = 0, want = rng(&s) % 400;
            if (i % 500 == 0)
                want = 20000;
            while (len < want) {
                if (rng(&s) % 4 == 0) {
                    buf[len++] = (char)rng(&s);
                } else {
                    const char *t = dict[rng(&s) % nd];
                    size_t tl = t[0] ? strlen(t) : 1;
                    if (len + tl >= (1 << 16))
                        break;
                    memcpy(buf + len, t, tl);
                    len += tl;
                }
            }
            LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        }
        free(buf);
        printf("ran %ld generated inputs\n", i);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        char *buf = malloc(1 << 22);
        size_t n = fread(buf, 1, 1 << 22, f);
        fclose(f);
        LLVMFuzzerTestOneInput((const uint8_t *)buf, n);
        free(buf);
    }
    printf("ran %d files\n", argc - 1);
    return 0;
}
#endif
