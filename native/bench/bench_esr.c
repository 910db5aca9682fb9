/*
 * bench_esr.c - compile and match benchmark for the esr library.
 *
 * usage: bench_esr RULES_FILE URLS_FILE [PASSES]
 * Prints one JSON object: compile_ms, rules, diags, memory_bytes,
 * bytes_per_rule, urls, passes, matches_per_s, ns_per_match, batch_matches_per_s.
 */
#define _POSIX_C_SOURCE 199309L
#include "esr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *np = realloc(p, cap *= 2);
            if (!np) {
                free(p);
                p = NULL;
            } else {
                p = np;
            }
        }
    }
    fclose(f);
    *len = n;
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s RULES_FILE URLS_FILE [PASSES]\n", argv[0]);
        return 2;
    }
    int passes = argc > 3 ? atoi(argv[3]) : 20;
    size_t rlen, ulen;
    char *rules = slurp(argv[1], &rlen);
    char *urls = slurp(argv[2], &ulen);
    if (!rules || !urls) {
        fprintf(stderr, "cannot read input\n");
        return 2;
    }
    /* best of 5 compiles */
    double best = 1e9;
    esr_ruleset *rs = NULL;
    for (int i = 0; i < 5; i++) {
        esr_builder *b;
        esr_ruleset *tmp;
        double t0 = now_s();
        if (esr_builder_new(0, 0, &b) != ESR_OK || esr_builder_add_text(b, 0, rules, rlen) < 0 ||
            esr_builder_compile(b, &tmp) != ESR_OK) {
            fprintf(stderr, "compile failed\n");
            return 1;
        }
        double t = now_s() - t0;
        esr_builder_free(b);
        if (t < best)
            best = t;
        esr_ruleset_free(rs);
        rs = tmp;
    }
    /* split URLs */
    size_t nurl = 0;
    for (size_t i = 0; i < ulen; i++)
        nurl += urls[i] == '\n';
    if (ulen && urls[ulen - 1] != '\n')
        nurl++;
    const char **up = malloc(nurl * sizeof *up);
    size_t *ul = malloc(nurl * sizeof *ul);
    size_t k = 0, s = 0;
    for (size_t i = 0; i <= ulen && k < nurl; i++) {
        if (i == ulen || urls[i] == '\n') {
            up[k] = urls + s;
            ul[k++] = i - s;
            s = i + 1;
        }
    }
    nurl = k;
    esr_context ctx = {"us", 2, "en", 2, NULL, 0, NULL, 0};
    char target[4096];
    esr_result res;
    size_t matched = 0;
    double t0 = now_s();
    for (int p = 0; p < passes; p++)
        for (size_t i = 0; i < nurl; i++) {
            esr_ruleset_match(rs, up[i], ul[i], &ctx, &res, target, sizeof target);
            matched += res.kind == ESR_MATCH;
        }
    double el = now_s() - t0;
    double mps = (double)nurl * passes / el;
    /* batch API */
    size_t blen = ulen && urls[ulen - 1] == '\n' ? ulen - 1 : ulen;
    int8_t *kinds = malloc(nurl);
    int32_t *rl = malloc(nurl * sizeof *rl);
    uint32_t *ends = malloc(nurl * sizeof *ends);
    size_t ocap = 1 << 20;
    char *out = malloc(ocap);
    double t1 = now_s();
    for (int p = 0; p < passes; p++) {
        const char *cur = urls;
        size_t left = nurl, rem = blen;
        while (left) {
            long got = esr_ruleset_match_batch(rs, cur, rem, left, &ctx, kinds, rl, ends, out, ocap);
            if (got <= 0)
                break;
            for (long i = 0; i < got; i++) {
                const char *nl = memchr(cur, '\n', rem);
                size_t adv = nl ? (size_t)(nl - cur) + 1 : rem;
                cur += adv;
                rem -= adv;
            }
            left -= (size_t)got;
        }
    }
    double el2 = now_s() - t1;
    size_t mem = esr_ruleset_memory(rs), nr = esr_ruleset_rule_count(rs);
    printf("{\"compile_ms\": %.3f, \"rules\": %zu, \"diags\": %zu, \"memory_bytes\": %zu, "
           "\"bytes_per_rule\": %.1f, \"urls\": %zu, \"passes\": %d, \"matched_per_pass\": %zu, "
           "\"matches_per_s\": %.0f, \"ns_per_match\": %.1f, \"batch_matches_per_s\": %.0f}\n",
           best * 1e3, nr, esr_ruleset_diag_count(rs), mem, nr ? (double)mem / (double)nr : 0.0,
           nurl, passes, matched / (size_t)(passes ? passes : 1), mps, 1e9 / mps,
           (double)nurl * passes / el2);
    esr_ruleset_free(rs);
    free(rules);
    free(urls);
    free(up);
    free(ul);
    free(kinds);
    free(rl);
    free(ends);
    free(out);
    return 0;
}
