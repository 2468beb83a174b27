/* json.c: strict JSON parsing on top of cJSON (see json.h for why).
 *
 * Three passes over the text, each with its own message naming the byte offset:
 *   1. UTF-8 (RFC 3629): lead byte C2..F4, the right number of continuation bytes 80..BF,
 *      no overlong forms (E0 A0.., F0 90..), no surrogates (ED 80..9F), nothing past U+10FFFF
 *      (F4 80..8F).
 *   2. RFC 8259 lexical rules: outside strings only whitespace (20 09 0A 0D), the structural
 *      bytes { } [ ] : , , the words true/false/null and numbers
 *      -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? not followed by another number byte;
 *      inside strings no raw byte below 0x20 and only the escapes \" \\ \/ \b \f \n \r \t and
 *      \uXXXX with four hex digits, XXXX != 0000 (cJSON would cut the string there).
 *   3. cJSON (structure; nesting limit 1000), on a NUL-terminated copy with trailing garbage
 *      refused. Then every object of the tree is checked for duplicate keys.
 * This is validation only: the tree itself always comes from cJSON.
 */
#include "json.h"

#include <math.h>

// ---- UTF-8 ------------------------------------------------------------------------------------

int loam__utf8_valid(const uint8_t *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the first continuation byte */
        if (c >= 0xc2 && c <= 0xdf) need = 1;
        else if (c == 0xe0) need = 2, lo = 0xa0;
        else if (c >= 0xe1 && c <= 0xec) need = 2;
        else if (c == 0xed) need = 2, hi = 0x9f;
        else if (c >= 0xee && c <= 0xef) need = 2;
        else if (c == 0xf0) need = 3, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3) need = 3;
        else if (c == 0xf4) need = 3, hi = 0x8f;
        else {
            if (bad_at) *bad_at = i;
            return 0;
        }
        if (n - i <= need) {
            if (bad_at) *bad_at = i;
            return 0;
        }
        for (size_t k = 1; k <= need; k++) {
            uint8_t b = s[i + k];
            uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
            if (b < l || b > h) {
                if (bad_at) *bad_at = i;
                return 0;
            }
        }
        i += need + 1;
    }
    return 1;
}

// ---- lexical pass -----------------------------------------------------------------------------

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint8_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int is_number_byte(uint8_t c) {
    return is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

/* Returns the length of the number at s[0..n) or 0 when it breaks the grammar. */
static size_t lex_number(const uint8_t *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) return 0;
    if (s[i] == '0') i++;
    else
        while (i < n && is_digit(s[i])) i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) return 0;
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) return 0;
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && is_number_byte(s[i])) return 0; /* "01", "1.2.3", "1e5e5" */
    return i;
}

static loam_status lex_check(const uint8_t *s, size_t n, const char *what, loam_err *err) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '{' || c == '}' || c == '[' ||
            c == ']' || c == ':' || c == ',') {
            i++;
        } else if (c == '"') {
            size_t start = i++;
            for (;;) {
                if (i >= n)
                    return loam__fail(err, LOAM_E_FORMAT,
                                      "%s: invalid JSON: string at byte %zu is not terminated",
                                      what, start);
                uint8_t d = s[i];
                if (d == '"') {
                    i++;
                    break;
                }
                if (d < 0x20)
                    return loam__fail(err, LOAM_E_FORMAT,
                                      "%s: invalid JSON: raw control byte 0x%02x in a string at "
                                      "byte %zu",
                                      what, d, i);
                if (d != '\\') {
                    i++;
                    continue;
                }
                if (i + 1 >= n)
                    return loam__fail(err, LOAM_E_FORMAT,
                                      "%s: invalid JSON: string at byte %zu is not terminated",
                                      what, start);
                uint8_t e = s[i + 1];
                if (e == 'u') {
                    if (n - i < 6 || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) ||
                        !is_hex(s[i + 5]))
                        return loam__fail(err, LOAM_E_FORMAT,
                                          "%s: invalid JSON: bad \\u escape at byte %zu", what, i);
                    if (s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' && s[i + 5] == '0')
                        return loam__fail(err, LOAM_E_FORMAT,
                                          "%s: escaped NUL (\\u0000) at byte %zu is not accepted "
                                          "in keys or strings",
                                          what, i);
                    i += 6;
                } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                           e == 'r' || e == 't') {
                    i += 2;
                } else {
                    return loam__fail(err, LOAM_E_FORMAT,
                                      "%s: invalid JSON: bad escape '\\%c' at byte %zu", what,
                                      e >= 0x20 && e < 0x7f ? e : '?', i);
                }
            }
        } else if (c == '-' || is_digit(c)) {
            size_t k = lex_number(s + i, n - i);
            if (k == 0)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "%s: invalid JSON: malformed number at byte %zu", what, i);
            i += k;
        } else if (c == 't' && n - i >= 4 && memcmp(s + i, "true", 4) == 0) {
            i += 4;
        } else if (c == 'f' && n - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            i += 5;
        } else if (c == 'n' && n - i >= 4 && memcmp(s + i, "null", 4) == 0) {
            i += 4;
        } else {
            if (c >= 0x20 && c < 0x7f)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "%s: invalid JSON: unexpected '%c' at byte %zu", what, c, i);
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: invalid JSON: unexpected byte 0x%02x at byte %zu", what, c, i);
        }
    }
    return LOAM_OK;
}

// ---- duplicate keys ---------------------------------------------------------------------------

static int cmp_key(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* Depth is bounded by cJSON's nesting limit (1000), so the recursion is too. */
static loam_status check_dups(const cJSON *node, const char *what, loam_err *err) {
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return LOAM_OK;
    size_t n = 0;
    for (const cJSON *c = node->child; c; c = c->next) {
        loam_status s = check_dups(c, what, err);
        if (s != LOAM_OK) return s;
        n++;
    }
    if (!cJSON_IsObject(node) || n < 2) return LOAM_OK;
    const cJSON **keys = loam__malloc(n * sizeof *keys);
    if (!keys) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory checking keys", what);
    size_t k = 0;
    for (const cJSON *c = node->child; c; c = c->next) keys[k++] = c;
    qsort(keys, n, sizeof *keys, cmp_key);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i - 1]->string, keys[i]->string) == 0) {
            loam_status s = loam__fail(err, LOAM_E_FORMAT, "%s: duplicate key \"%.80s\"", what,
                                       keys[i]->string);
            loam__free(keys);
            return s;
        }
    }
    loam__free(keys);
    return LOAM_OK;
}

// ---- entry point ------------------------------------------------------------------------------

loam_status loam__json_parse(const char *text, size_t len, const char *what, cJSON **out,
                             loam_err *err) {
    *out = NULL;
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = 0;
    if (!loam__utf8_valid(s, len, &bad))
        return loam__fail(err, LOAM_E_FORMAT, "%s: invalid UTF-8 at byte %zu", what, bad);
    loam_status st = lex_check(s, len, what, err);
    if (st != LOAM_OK) return st;
    if (len == SIZE_MAX) return loam__fail(err, LOAM_E_NOMEM, "%s: too large", what);
    char *copy = loam__strndup(text, len); /* cJSON wants the NUL right after the text */
    if (!copy) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory (%zu bytes)", what, len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= copy ? (size_t)(end - copy) : 0;
        loam__free(copy);
        size_t ws = 0;
        while (ws < len && (s[ws] == ' ' || s[ws] == '\t' || s[ws] == '\r' || s[ws] == '\n')) ws++;
        if (ws == len)
            return loam__fail(err, LOAM_E_FORMAT, "%s: invalid JSON: empty", what);
        return loam__fail(err, LOAM_E_FORMAT, "%s: invalid JSON near byte %zu", what, at);
    }
    loam__free(copy);
    st = check_dups(root, what, err);
    if (st != LOAM_OK) {
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return LOAM_OK;
}

int loam__json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || signbit(d) || d >= (double)LOAM__JSON_MAX_INT || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}
