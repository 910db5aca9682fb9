/*
 * esr_util.c - byte classes, canonical encoding, UTF-8 checks, hashing,
 * error texts. Pure functions over const tables only.
 */
#include "esr_internal.h"

#include <stdio.h>
#include <string.h>

static const char HEX[] = "0123456789ABCDEF";

bool esr_is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

bool esr_is_namech(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Bytes kept as they are in a canonical path besides unreserved ones:
 * sub-delims, ':', '@' and '/'. */
static bool path_keep(unsigned char c)
{
    switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*':
    case '+': case ',': case ';': case '=': case ':': case '@': case '/':
        return true;
    default:
        return esr_is_unreserved(c);
    }
}

int esr_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t esr_canon_path(const char *s, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int h1 = i + 2 < n ? esr_hexval((unsigned char)s[i + 1]) : -1;
            int h2 = i + 2 < n ? esr_hexval((unsigned char)s[i + 2]) : -1;
            if (h1 >= 0 && h2 >= 0) {
                unsigned char v = (unsigned char)(h1 * 16 + h2);
                if (esr_is_unreserved(v)) {
                    out[o++] = (char)v;
                } else {
                    out[o++] = '%';
                    out[o++] = HEX[h1];
                    out[o++] = HEX[h2];
                }
                i += 3;
            } else {
                out[o++] = '%';
                out[o++] = '2';
                out[o++] = '5';
                i++;
            }
        } else if (path_keep(c)) {
            out[o++] = (char)c;
            i++;
        } else {
            out[o++] = '%';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 15];
            i++;
        }
    }
    return o;
}

size_t esr_form_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            out[o++] = ' ';
            i++;
        } else if (c == '%' && i + 2 < n && esr_hexval((unsigned char)s[i + 1]) >= 0 &&
                   esr_hexval((unsigned char)s[i + 2]) >= 0) {
            out[o++] = (char)(esr_hexval((unsigned char)s[i + 1]) * 16 +
                              esr_hexval((unsigned char)s[i + 2]));
            i += 3;
        } else {
            out[o++] = (char)c;
            i++;
        }
    }
    return o;
}

bool esr_form_equal(const char *s, size_t n, const char *lit, size_t litn)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        unsigned char v;
        if (c == '+') {
            v = ' ';
            i++;
        } else if (c == '%' && i + 2 < n && esr_hexval((unsigned char)s[i + 1]) >= 0 &&
                   esr_hexval((unsigned char)s[i + 2]) >= 0) {
            v = (unsigned char)(esr_hexval((unsigned char)s[i + 1]) * 16 +
                                esr_hexval((unsigned char)s[i + 2]));
            i += 3;
        } else {
            v = c;
            i++;
        }
        if (o >= litn || (unsigned char)lit[o] != v)
            return false;
        o++;
    }
    return o == litn;
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
int esr_check_line(const char *s, size_t n, size_t *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c < 0x80) {
            if (c == 0) {
                *bad = i;
                return 2;
            }
            if ((c < 0x20 && c != '\t' && c != '\r' && c != '\v' && c != '\f') || c == 0x7f) {
                *bad = i;
                return 3;
            }
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            *bad = i;
            return 1;
        }
        for (size_t k = 1; k <= need; k++) {
            unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
            if (i + k >= n || u[i + k] < lo_k || u[i + k] > hi_k) {
                *bad = i;
                return 1;
            }
        }
        i += need + 1;
    }
    return 0;
}

size_t esr_count_cp(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

uint64_t esr_hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = esr_hash_byte(h, (unsigned char)s[i]);
    return h;
}

uint64_t esr_hash_init(uint32_t kind, uint32_t scheme, const char *host, size_t hostlen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = esr_hash_byte(h, (unsigned char)kind);
    h = esr_hash_byte(h, (unsigned char)scheme);
    if (scheme != ESR_SCHEME_NONE) {
        h = esr_hash_bytes(h, host, hostlen);
        h = esr_hash_byte(h, 0xff);
    }
    return h;
}

uint32_t esr_hash_final(uint64_t h, size_t len)
{
    h ^= (uint64_t)len * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

char *esr_quote(char *dst, size_t cap, const char *s, size_t n, size_t max)
{
    size_t o = 0;
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)s;
    if (cap == 0)
        return dst;
    if (max + 4 > cap)
        max = cap > 4 ? cap - 4 : 0;
    while (i < n) {
        size_t bad = 0;
        size_t len = 1;
        unsigned char c = u[i];
        if (c >= 0x80) {
            len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (i + len > n || esr_check_line(s + i, len, &bad) != 0)
                len = 0; /* invalid: emit '?' for one byte */
        } else if (c < 0x20 || c == 0x7f) {
            len = 0;
        }
        size_t w = len ? len : 1;
        if (o + w > max) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (len) {
            memcpy(dst + o, s + i, len);
            i += len;
        } else {
            dst[o] = '?';
            i++;
        }
        o += w;
    }
    dst[o] = '\0';
    return dst;
}

bool esr_ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

const char *esr_strerror(int code)
{
    switch (code) {
    case ESR_OK:
        return "success";
    case ESR_ENOMEM:
        return "out of memory";
    case ESR_EINVAL:
        return "invalid argument";
    case ESR_ERANGE:
        return "buffer too small";
    case ESR_ESTATE:
        return "builder already compiled";
    default:
        return "unknown error";
    }
}

const char *esr_diag_code_name(int code)
{
    switch (code) {
    case ESR_D_NONE: return "NONE";
    case ESR_D_MISSING_TO: return "MISSING_TO";
    case ESR_D_BAD_TARGET: return "BAD_TARGET";
    case ESR_D_BAD_STATUS: return "BAD_STATUS";
    case ESR_D_BAD_FROM: return "BAD_FROM";
    case ESR_D_RESERVED_PATH: return "RESERVED_PATH";
    case ESR_D_SPLAT_NOT_AT_END: return "SPLAT_NOT_AT_END";
    case ESR_D_BAD_QUERY_PAIR: return "BAD_QUERY_PAIR";
    case ESR_D_UNKNOWN_CONDITION: return "UNKNOWN_CONDITION";
    case ESR_D_BAD_CONDITION: return "BAD_CONDITION";
    case ESR_D_BAD_FIELD_TYPE: return "BAD_FIELD_TYPE";
    case ESR_D_TOML_SYNTAX: return "TOML_SYNTAX";
    case ESR_D_NOT_AN_ARRAY: return "NOT_AN_ARRAY";
    case ESR_D_LINE_TOO_LONG: return "LINE_TOO_LONG";
    case ESR_D_TOO_MANY_RULES: return "TOO_MANY_RULES";
    case ESR_D_BAD_ENCODING: return "BAD_ENCODING";
    case ESR_D_SELF_REDIRECT: return "SELF_REDIRECT";
    case ESR_D_TRAILING_SLASH_ONLY: return "TRAILING_SLASH_ONLY";
    case ESR_D_STATUS_NOT_ON_NETLIFY: return "STATUS_NOT_ON_NETLIFY";
    case ESR_D_NONCANONICAL_KEY: return "NONCANONICAL_KEY";
    case ESR_D_PLACEHOLDER_NAME: return "PLACEHOLDER_NAME";
    case ESR_D_UNBOUND_REFERENCE: return "UNBOUND_REFERENCE";
    case ESR_D_DUPLICATE_PLACEHOLDER: return "DUPLICATE_PLACEHOLDER";
    case ESR_D_UNREACHABLE: return "UNREACHABLE";
    case ESR_D_DUPLICATE_RULE: return "DUPLICATE_RULE";
    case ESR_D_BOM: return "BOM";
    case ESR_D_HEADERS_ON_NON_PROXY: return "HEADERS_ON_NON_PROXY";
    case ESR_D_EMPTY_FROM_PATH: return "EMPTY_FROM_PATH";
    case ESR_D_FROM_NO_SLASH: return "FROM_NO_SLASH";
    case ESR_D_OPEN_REDIRECT: return "OPEN_REDIRECT";
    default: return "UNKNOWN";
    }
}
