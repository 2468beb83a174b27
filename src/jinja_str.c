/* jinja_str.c: Python's str methods and string operations for the chat-template interpreter
 * (jinja.h): startswith endswith split rsplit strip lstrip rstrip replace upper lower title
 * capitalize swapcase find rfind index count format join splitlines isdigit isalpha isalnum
 * isspace isupper islower, printf-style "%" formatting, and the case mappings and helpers the
 * filters share (jinja_builtins.c).
 *
 * Strings are measured, indexed and stripped in code points, as Python does; whitespace is
 * Python's str.isspace set. Case mapping uses utf8proc's simple one-to-one mappings, so
 * Python's multi-character special cases ('ß'.upper() == 'SS') are the known difference.
 * str.format supports {} {0} {name} {a.b} {a[k]} and !r / !s, not format specs; "%" supports
 * %s %r %d %i %f %e %g with an optional .precision and %%, not widths or flags. Both refuse
 * what they do not support with an error rather than print something else.
 */
#include "jinja.h"

#include <math.h>
#include <utf8proc.h>

#define A(r) loam__jinja_arena(r)

/* Method numbers: JINJA_STR_METHOD_BASE and up (jinja_builtins.c numbers the others below). */
enum {
    M_STARTSWITH = JINJA_STR_METHOD_BASE,
    M_ENDSWITH,
    M_SPLIT,
    M_RSPLIT,
    M_STRIP,
    M_LSTRIP,
    M_RSTRIP,
    M_REPLACE,
    M_UPPER,
    M_LOWER,
    M_TITLE,
    M_CAPITALIZE,
    M_SWAPCASE,
    M_FIND,
    M_RFIND,
    M_INDEX,
    M_COUNT,
    M_FORMAT,
    M_JOIN,
    M_SPLITLINES,
    M_ISDIGIT,
    M_ISALPHA,
    M_ISALNUM,
    M_ISSPACE,
    M_ISUPPER,
    M_ISLOWER,
    M_END_
};

static const char *const k_str_methods[] = {
    "startswith", "endswith", "split",   "rsplit",  "strip",      "lstrip",     "rstrip",
    "replace",    "upper",    "lower",   "title",   "capitalize", "swapcase",   "find",
    "rfind",      "index",    "count",   "format",  "join",       "splitlines", "isdigit",
    "isalpha",    "isalnum",  "isspace", "isupper", "islower",
};
_Static_assert(sizeof k_str_methods / sizeof k_str_methods[0] == M_END_ - JINJA_STR_METHOD_BASE,
               "one name per str method");

uint16_t loam__jinja_str_method_id(const char *name, size_t n) {
    for (size_t k = 0; k < sizeof k_str_methods / sizeof k_str_methods[0]; k++)
        if (strlen(k_str_methods[k]) == n && !memcmp(k_str_methods[k], name, n))
            return (uint16_t)(JINJA_STR_METHOD_BASE + k);
    return 0;
}

typedef uint32_t (*cp_map)(uint32_t);
static loam_status py_title(jinja_render *r, jinja_value s, jinja_value *out);
static loam_status py_capitalize(jinja_render *r, jinja_value s, jinja_value *out);
static loam_status jinja_title(jinja_render *r, jinja_value s, jinja_value *out);
static loam_status map_str(jinja_render *r, jinja_value s, cp_map f, jinja_value *out);
static uint32_t cp_upper(uint32_t c) {
    return (uint32_t)utf8proc_toupper((utf8proc_int32_t)c);
}
static uint32_t cp_lower(uint32_t c) {
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
}
static uint32_t cp_title(uint32_t c) {
    return (uint32_t)utf8proc_totitle((utf8proc_int32_t)c);
}
static bool cp_cased(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static loam_status map_str(jinja_render *r, jinja_value s, cp_map f, jinja_value *out) {
    jinja_buf b = {.a = A(r)};
    size_t i = 0;
    while (i < s.u.s.n)
        loam__jinja_utf8_put(&b, f(loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i)));
    return loam__jinja_buf_done(r, &b, out);
}

static loam_status py_title(jinja_render *r, jinja_value s, jinja_value *out) {
    jinja_buf b = {.a = A(r)};
    size_t i = 0;
    bool prev_cased = false;
    while (i < s.u.s.n) {
        uint32_t c = loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
        loam__jinja_utf8_put(&b, prev_cased ? cp_lower(c) : cp_title(c));
        prev_cased = cp_cased(c);
    }
    return loam__jinja_buf_done(r, &b, out);
}

static loam_status py_capitalize(jinja_render *r, jinja_value s, jinja_value *out) {
    jinja_buf b = {.a = A(r)};
    size_t i = 0;
    bool first = true;
    while (i < s.u.s.n) {
        uint32_t c = loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
        loam__jinja_utf8_put(&b, first ? cp_title(c) : cp_lower(c));
        first = false;
    }
    return loam__jinja_buf_done(r, &b, out);
}

/* jinja2's title filter: words start after runs of - whitespace ( { [ < ; first char upper,
 * the rest lower. */
static bool title_sep(uint32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || loam__jinja_isspace(c);
}
static loam_status jinja_title(jinja_render *r, jinja_value s, jinja_value *out) {
    jinja_buf b = {.a = A(r)};
    size_t i = 0;
    bool at_start = true;
    while (i < s.u.s.n) {
        uint32_t c = loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
        if (title_sep(c)) {
            loam__jinja_utf8_put(&b, c);
            at_start = true;
            continue;
        }
        loam__jinja_utf8_put(&b, at_start ? cp_upper(c) : cp_lower(c));
        at_start = false;
    }
    return loam__jinja_buf_done(r, &b, out);
}

/* c is whitespace (ws) or one of the characters of chars */
static bool strip_hit(uint32_t c, bool ws, jinja_value chars) {
    if (ws)
        return loam__jinja_isspace(c);
    size_t k = 0;
    while (k < chars.u.s.n)
        if (loam__jinja_utf8_next(chars.u.s.p, chars.u.s.n, &k) == c)
            return true;
    return false;
}

/* Python str.strip family. chars: undefined/None = whitespace. which: 1 left, 2 right, 3 both. */
loam_status loam__jinja_str_strip(jinja_render *r, jinja_value s, jinja_value chars, int which,
                                  jinja_value *out) {
    bool ws = chars.type == JV_UNDEF || chars.type == JV_NONE;
    if (!ws)
        TRY(loam__jinja_need_str(r, chars, "strip arg"));
    size_t b = 0, e = s.u.s.n;
    if (which & 1) {
        while (b < e) {
            size_t j = b;
            uint32_t c = loam__jinja_utf8_next(s.u.s.p, e, &j);
            if (!strip_hit(c, ws, chars))
                break;
            b = j;
        }
    }
    if (which & 2) {
        while (e > b) {
            size_t k0 = e - 1;
            while (k0 > b && ((unsigned char)s.u.s.p[k0] & 0xc0) == 0x80)
                k0--;
            size_t j = k0;
            uint32_t c = loam__jinja_utf8_next(s.u.s.p, e, &j);
            if (!strip_hit(c, ws, chars))
                break;
            e = k0;
        }
    }
    *out = jv_str(s.u.s.p + b, e - b);
    return loam__jinja_steps(r, s.u.s.n / 64);
}

const char *loam__jinja_find_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0)
        return h;
    if (nn > hn)
        return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0] && !memcmp(h + i, nd, nn))
            return h + i;
    return NULL;
}

loam_status loam__jinja_str_replace(jinja_render *r, jinja_value s, jinja_value old, jinja_value nw,
                                    int64_t count, jinja_value *out) {
    TRY(loam__jinja_need_str(r, old, "replace() argument 1"));
    TRY(loam__jinja_need_str(r, nw, "replace() argument 2"));
    jinja_buf b = {.a = A(r)};
    const char *p = s.u.s.p, *end = s.u.s.p + s.u.s.n;
    if (old.u.s.n == 0) { /* inserts `new` before every code point and at the end */
        size_t i = 0;
        int64_t done = 0;
        while (i <= s.u.s.n) {
            if (count < 0 || done < count) {
                loam__jinja_buf_put(&b, nw.u.s.p, nw.u.s.n);
                done++;
            }
            if (i == s.u.s.n)
                break;
            size_t j = i;
            loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &j);
            loam__jinja_buf_put(&b, s.u.s.p + i, j - i);
            i = j;
        }
        return loam__jinja_buf_done(r, &b, out);
    }
    int64_t done = 0;
    while (p < end) {
        const char *hit = (count < 0 || done < count)
                              ? loam__jinja_find_bytes(p, (size_t)(end - p), old.u.s.p, old.u.s.n)
                              : NULL;
        if (!hit)
            break;
        loam__jinja_buf_put(&b, p, (size_t)(hit - p));
        loam__jinja_buf_put(&b, nw.u.s.p, nw.u.s.n);
        p = hit + old.u.s.n;
        done++;
    }
    loam__jinja_buf_put(&b, p, (size_t)(end - p));
    return loam__jinja_buf_done(r, &b, out);
}

/* Python str.split / rsplit. */
static loam_status py_split(jinja_render *r, jinja_value s, jinja_value sep, int64_t maxsplit,
                            bool from_right, jinja_value *out) {
    jinja_list *l = loam__jinja_list_new(A(r), 0);
    if (!l)
        return loam__jinja_oom(r);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (sep.type == JV_NONE || sep.type == JV_UNDEF) {
        /* runs of whitespace; no empty strings */
        size_t i = 0;
        int64_t splits = 0;
        if (!from_right) {
            while (i < n) {
                size_t j = i;
                while (j < n) {
                    size_t k = j;
                    if (!loam__jinja_isspace(loam__jinja_utf8_next(p, n, &k)))
                        break;
                    j = k;
                }
                i = j;
                if (i >= n)
                    break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    size_t e = n;
                    /* Python strips trailing whitespace only when splitting to the end */
                    if (!loam__jinja_list_push(A(r), l, jv_str(p + i, e - i)))
                        return loam__jinja_oom(r);
                    break;
                }
                size_t st = i;
                while (i < n) {
                    size_t k = i;
                    if (loam__jinja_isspace(loam__jinja_utf8_next(p, n, &k)))
                        break;
                    i = k;
                }
                if (!loam__jinja_list_push(A(r), l, jv_str(p + st, i - st)))
                    return loam__jinja_oom(r);
                splits++;
            }
        } else {
            /* collect words from the right, then reverse */
            size_t e = n;
            while (e > 0) {
                while (e > 0) {
                    size_t k0 = e - 1;
                    while (k0 > 0 && ((unsigned char)p[k0] & 0xc0) == 0x80)
                        k0--;
                    size_t k = k0;
                    if (!loam__jinja_isspace(loam__jinja_utf8_next(p, n, &k)))
                        break;
                    e = k0;
                }
                if (e == 0)
                    break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    if (!loam__jinja_list_push(A(r), l, jv_str(p, e)))
                        return loam__jinja_oom(r);
                    break;
                }
                size_t b = e;
                while (b > 0) {
                    size_t k0 = b - 1;
                    while (k0 > 0 && ((unsigned char)p[k0] & 0xc0) == 0x80)
                        k0--;
                    size_t k = k0;
                    if (loam__jinja_isspace(loam__jinja_utf8_next(p, n, &k)))
                        break;
                    b = k0;
                }
                if (!loam__jinja_list_push(A(r), l, jv_str(p + b, e - b)))
                    return loam__jinja_oom(r);
                splits++;
                e = b;
            }
            for (size_t i2 = 0; i2 < l->n / 2; i2++) {
                jinja_value t = l->v[i2];
                l->v[i2] = l->v[l->n - 1 - i2];
                l->v[l->n - 1 - i2] = t;
            }
        }
        *out = jv_list(l);
        return loam__jinja_steps(r, n / 16 + l->n);
    }
    TRY(loam__jinja_need_str(r, sep, "separator"));
    if (sep.u.s.n == 0)
        return loam__jinja_error(r, "empty separator");
    if (!from_right) {
        size_t i = 0;
        int64_t splits = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || splits < maxsplit)
                                  ? loam__jinja_find_bytes(p + i, n - i, sep.u.s.p, sep.u.s.n)
                                  : NULL;
            if (!hit) {
                if (!loam__jinja_list_push(A(r), l, jv_str(p + i, n - i)))
                    return loam__jinja_oom(r);
                break;
            }
            if (!loam__jinja_list_push(A(r), l, jv_str(p + i, (size_t)(hit - (p + i)))))
                return loam__jinja_oom(r);
            i = (size_t)(hit - p) + sep.u.s.n;
            splits++;
        }
    } else {
        size_t e = n;
        int64_t splits = 0;
        for (;;) {
            const char *hit = NULL;
            if ((maxsplit < 0 || splits < maxsplit) && e >= sep.u.s.n)
                for (size_t k = e - sep.u.s.n + 1; k-- > 0;)
                    if (!memcmp(p + k, sep.u.s.p, sep.u.s.n)) {
                        hit = p + k;
                        break;
                    }
            if (!hit) {
                if (!loam__jinja_list_push(A(r), l, jv_str(p, e)))
                    return loam__jinja_oom(r);
                break;
            }
            size_t after = (size_t)(hit - p) + sep.u.s.n;
            if (!loam__jinja_list_push(A(r), l, jv_str(p + after, e - after)))
                return loam__jinja_oom(r);
            e = (size_t)(hit - p);
            splits++;
        }
        for (size_t i2 = 0; i2 < l->n / 2; i2++) {
            jinja_value t = l->v[i2];
            l->v[i2] = l->v[l->n - 1 - i2];
            l->v[l->n - 1 - i2] = t;
        }
    }
    *out = jv_list(l);
    return loam__jinja_steps(r, n / 16 + l->n);
}

/* Python str.splitlines(): \n \r \r\n \v \f \x1c \x1d \x1e \x85 \u2028 \u2029. */
loam_status loam__jinja_str_splitlines(jinja_render *r, jinja_value s, bool keepends,
                                       jinja_list **out) {
    jinja_list *l = loam__jinja_list_new(A(r), 0);
    if (!l)
        return loam__jinja_oom(r);
    size_t i = 0, start = 0, n = s.u.s.n;
    const char *p = s.u.s.p;
    while (i < n) {
        size_t j = i;
        uint32_t c = loam__jinja_utf8_next(p, n, &j);
        bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
                   c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
        if (!brk) {
            i = j;
            continue;
        }
        size_t eol = j;
        if (c == '\r' && j < n && p[j] == '\n')
            eol = j + 1;
        if (!loam__jinja_list_push(A(r), l, jv_str(p + start, (keepends ? eol : i) - start)))
            return loam__jinja_oom(r);
        i = start = eol;
    }
    if (start < n && !loam__jinja_list_push(A(r), l, jv_str(p + start, n - start)))
        return loam__jinja_oom(r);
    *out = l;
    return loam__jinja_steps(r, n / 64 + l->n);
}

/* Code-point index range [start, end) of optional start/end arguments, as byte offsets. */
static loam_status sub_range(jinja_render *r, jinja_value s, jinja_value start, jinja_value end,
                             size_t *b, size_t *e, int64_t *cp_base) {
    int64_t len = (int64_t)loam__jinja_utf8_len(s.u.s.p, s.u.s.n), a = 0, z = len;
    if (start.type != JV_UNDEF && start.type != JV_NONE)
        TRY(loam__jinja_need_int(r, start, "start", &a));
    if (end.type != JV_UNDEF && end.type != JV_NONE)
        TRY(loam__jinja_need_int(r, end, "end", &z));
    if (a < 0)
        a = a + len < 0 ? 0 : a + len;
    if (z < 0)
        z = z + len < 0 ? 0 : z + len;
    if (a > len)
        a = len + 1; /* empty, and nothing matches */
    if (z > len)
        z = len;
    *cp_base = a;
    size_t i = 0;
    int64_t k = 0;
    while (k < a && i < s.u.s.n) {
        loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
        k++;
    }
    *b = i;
    while (k < z && i < s.u.s.n) {
        loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
        k++;
    }
    *e = z < a ? *b : i;
    if (a > len)
        *e = *b = s.u.s.n, *cp_base = -1;
    return LOAM_OK;
}

/* startswith/endswith with a str or a tuple of str. */
static loam_status py_affix(jinja_render *r, jinja_value s, jinja_value what, jinja_value start,
                            jinja_value end, bool suffix, bool *res) {
    size_t b, e;
    int64_t base;
    TRY(sub_range(r, s, start, end, &b, &e, &base));
    *res = false;
    if (base < 0)
        return LOAM_OK;
    size_t n_items = 1;
    const jinja_value *items = &what;
    if (what.type == JV_LIST && (what.flags & JF_TUPLE)) {
        n_items = what.u.l->n;
        items = what.u.l->v;
    }
    for (size_t k = 0; k < n_items; k++) {
        jinja_value x = items[k];
        if (x.type != JV_STR)
            return loam__jinja_error(r, "%s first arg must be str or a tuple of str, not %s",
                                     suffix ? "endswith" : "startswith", loam__jinja_type_name(x));
        if (x.u.s.n > e - b)
            continue;
        if (!memcmp(suffix ? s.u.s.p + e - x.u.s.n : s.u.s.p + b, x.u.s.p, x.u.s.n))
            *res = true;
    }
    return LOAM_OK;
}

loam_status loam__jinja_str_case(jinja_render *r, jinja_value s, jinja_case how, jinja_value *out) {
    switch (how) {
    case JCASE_UPPER:
        return map_str(r, s, cp_upper, out);
    case JCASE_LOWER:
        return map_str(r, s, cp_lower, out);
    case JCASE_PY_TITLE:
        return py_title(r, s, out);
    case JCASE_CAPITALIZE:
        return py_capitalize(r, s, out);
    case JCASE_JINJA_TITLE:
        return jinja_title(r, s, out);
    }
    return loam__jinja_error(r, "internal error: unknown case mapping");
}

// ---- Python %-formatting and str.format -------------------------------------------------------

static loam_status fmt_one(jinja_render *r, jinja_buf *b, char conv, int prec, jinja_value v) {
    switch (conv) {
    case 's':
        loam__jinja_str(b, v);
        return LOAM_OK;
    case 'r':
        loam__jinja_repr(b, v);
        return LOAM_OK;
    case 'd':
    case 'i':
        if (v.type == JV_FLOAT) {
            if (!isfinite(v.u.f))
                return loam__jinja_error(r, "cannot convert float to integer");
            loam__jinja_buf_printf(b, "%.0f", trunc(v.u.f));
            return LOAM_OK;
        }
        if (v.type == JV_INT || v.type == JV_BOOL) {
            loam__jinja_buf_printf(b, "%lld", (long long)(v.type == JV_INT ? v.u.i : v.u.b));
            return LOAM_OK;
        }
        break;
    case 'f':
    case 'e':
    case 'g': {
        double f;
        if (v.type == JV_FLOAT)
            f = v.u.f;
        else if (v.type == JV_INT)
            f = (double)v.u.i;
        else if (v.type == JV_BOOL)
            f = v.u.b;
        else
            break;
        char spec[8] = {'%', '.', '*', conv, 0};
        char tmp[400];
        snprintf(tmp, sizeof tmp, spec, prec < 0 ? 6 : prec, f);
        loam__jinja_buf_put(b, tmp, strlen(tmp));
        return LOAM_OK;
    }
    default:
        return loam__jinja_error(r, "unsupported format character '%c'", conv);
    }
    return loam__jinja_error(r, "%%%c format: a number is required, not %s", conv,
                             loam__jinja_type_name(v));
}

/* "fmt" % args: %s %r %d %i %f %e %g (optional .precision) and %%. */
loam_status loam__jinja_str_printf(jinja_render *r, jinja_value fmt, const jinja_value *vals,
                                   size_t n_vals, jinja_value *out) {
    jinja_buf b = {.a = A(r)};
    size_t used = 0;
    const char *p = fmt.u.s.p, *end = p + fmt.u.s.n;
    while (p < end) {
        if (*p != '%') {
            loam__jinja_buf_putc(&b, *p++);
            continue;
        }
        p++;
        if (p < end && *p == '%') {
            loam__jinja_buf_putc(&b, '%');
            p++;
            continue;
        }
        int prec = -1;
        if (p < end && *p == '.') {
            p++;
            prec = 0;
            while (p < end && *p >= '0' && *p <= '9' && prec < 100)
                prec = prec * 10 + (*p++ - '0');
        }
        if (p >= end)
            return loam__jinja_error(r, "incomplete format");
        if (used >= n_vals)
            return loam__jinja_error(r, "not enough arguments for format string");
        TRY(fmt_one(r, &b, *p++, prec, vals[used++]));
    }
    if (used < n_vals)
        return loam__jinja_error(r, "not all arguments converted during string formatting");
    return loam__jinja_buf_done(r, &b, out);
}

/* str.format: {} {0} {name} {name.attr} {0[key]} with !r / !s; format specs are not supported. */
static loam_status str_format(jinja_render *r, jinja_value fmt, const jinja_args *args,
                              jinja_value *out) {
    jinja_buf b = {.a = A(r)};
    const char *p = fmt.u.s.p, *end = p + fmt.u.s.n;
    size_t auto_idx = 0;
    while (p < end) {
        if (*p == '{' && p + 1 < end && p[1] == '{') {
            loam__jinja_buf_putc(&b, '{');
            p += 2;
            continue;
        }
        if (*p == '}' && p + 1 < end && p[1] == '}') {
            loam__jinja_buf_putc(&b, '}');
            p += 2;
            continue;
        }
        if (*p == '}')
            return loam__jinja_error(r, "single '}' encountered in format string");
        if (*p != '{') {
            loam__jinja_buf_putc(&b, *p++);
            continue;
        }
        const char *close = memchr(p, '}', (size_t)(end - p));
        if (!close)
            return loam__jinja_error(r, "single '{' encountered in format string");
        const char *f = p + 1;
        const char *fe = close;
        char conv = 's';
        const char *bang = memchr(f, '!', (size_t)(fe - f));
        const char *colon = memchr(f, ':', (size_t)(fe - f));
        if (colon && (!bang || colon < bang)) {
            if (colon + 1 != fe)
                return loam__jinja_error(r, "format specs in str.format are not supported");
            fe = colon;
        }
        if (bang) {
            if (bang + 2 != fe || (bang[1] != 'r' && bang[1] != 's'))
                return loam__jinja_error(r, "unsupported conversion in format string");
            conv = bang[1];
            fe = bang;
        }
        /* field name: first part up to . or [ */
        const char *q = f;
        while (q < fe && *q != '.' && *q != '[')
            q++;
        jinja_value v;
        if (q == f) {
            if (auto_idx >= args->n_pos)
                return loam__jinja_error(r, "format: replacement index %zu out of range", auto_idx);
            v = args->pos[auto_idx++];
        } else if (*f >= '0' && *f <= '9') {
            size_t idx = 0;
            for (const char *d = f; d < q; d++) {
                if (*d < '0' || *d > '9' || idx > 1000000)
                    return loam__jinja_error(r, "format: bad field name");
                idx = idx * 10 + (size_t)(*d - '0');
            }
            if (idx >= args->n_pos)
                return loam__jinja_error(r, "format: replacement index %zu out of range", idx);
            v = args->pos[idx];
        } else {
            size_t k;
            for (k = 0; k < args->n_kw; k++)
                if (args->kw_lens[k] == (size_t)(q - f) &&
                    !memcmp(args->kw_names[k], f, args->kw_lens[k]))
                    break;
            if (k == args->n_kw)
                return loam__jinja_error(r, "format: missing key '%.*s'", (int)(q - f), f);
            v = args->kw_vals[k];
        }
        while (q < fe) {
            if (*q == '.') {
                const char *s = ++q;
                while (q < fe && *q != '.' && *q != '[')
                    q++;
                TRY(loam__jinja_getattr(r, v, s, (size_t)(q - s), &v));
            } else { /* [key] */
                const char *s = ++q;
                while (q < fe && *q != ']')
                    q++;
                if (q >= fe)
                    return loam__jinja_error(r, "format: missing ']'");
                bool digits = q > s;
                int64_t idx = 0;
                for (const char *d = s; d < q; d++) {
                    if (*d < '0' || *d > '9' || idx > 1000000000)
                        digits = false;
                    else
                        idx = idx * 10 + (*d - '0');
                }
                jinja_value key = digits ? jv_int(idx) : jv_str(s, (size_t)(q - s));
                if (v.type == JV_LIST && digits)
                    v = idx < (int64_t)v.u.l->n ? v.u.l->v[idx] : jv_undef();
                else if (v.type == JV_DICT) {
                    int64_t at = loam__jinja_dict_find(v.u.d, key);
                    if (at < 0)
                        return loam__jinja_error(r, "format: key not found");
                    v = v.u.d->vals[at];
                } else
                    return loam__jinja_error(r, "format: '%s' object is not subscriptable",
                                             loam__jinja_type_name(v));
                q++;
            }
        }
        if (conv == 'r')
            loam__jinja_repr(&b, v);
        else
            loam__jinja_str(&b, v);
        p = close + 1;
    }
    return loam__jinja_buf_done(r, &b, out);
}

bool loam__jinja_str_is(jinja_value s, int kind) {
    if (s.u.s.n == 0)
        return false;
    size_t i = 0;
    bool any_cased = false;
    while (i < s.u.s.n) {
        uint32_t c = loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
        bool alpha = k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL ||
                     k == UTF8PROC_CATEGORY_LT || k == UTF8PROC_CATEGORY_LM ||
                     k == UTF8PROC_CATEGORY_LO;
        bool digit = k == UTF8PROC_CATEGORY_ND;
        switch (kind) {
        case 0:
            if (!digit)
                return false;
            break;
        case 1:
            if (!alpha)
                return false;
            break;
        case 2:
            if (!alpha && !digit && k != UTF8PROC_CATEGORY_NL && k != UTF8PROC_CATEGORY_NO)
                return false;
            break;
        case 3:
            if (!loam__jinja_isspace(c))
                return false;
            break;
        case 4: /* isupper: no lower-case letters, at least one cased */
            if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
                return false;
            if (k == UTF8PROC_CATEGORY_LU)
                any_cased = true;
            break;
        case 5:
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT)
                return false;
            if (k == UTF8PROC_CATEGORY_LL)
                any_cased = true;
            break;
        }
    }
    return kind >= 4 ? any_cased : true;
}

/* str.find/rfind/index/count, returning a code-point index (or count). */
static loam_status str_search(jinja_render *r, jinja_value s, const jinja_args *args, int mode,
                              jinja_value *out) {
    static const char *const fname[] = {"find", "rfind", "index", "count"};
    BIND(fname[mode], "sub", "start", "end");
    if (!have[0])
        return loam__jinja_error(r, "%s() missing required argument 'sub'", fname[mode]);
    TRY(loam__jinja_need_str(r, v[0], "substring"));
    size_t b, e;
    int64_t base;
    TRY(sub_range(r, s, v[1], v[2], &b, &e, &base));
    TRY(loam__jinja_steps(r, s.u.s.n / 64));
    jinja_value sub = v[0];
    if (mode == 3) {
        int64_t count = 0;
        if (base < 0)
            *out = jv_int(0);
        else if (sub.u.s.n == 0)
            *out = jv_int((int64_t)loam__jinja_utf8_len(s.u.s.p + b, e - b) + 1);
        else {
            size_t i = b;
            while (i + sub.u.s.n <= e) {
                if (!memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n)) {
                    count++;
                    i += sub.u.s.n;
                } else
                    i++;
            }
            *out = jv_int(count);
        }
        return LOAM_OK;
    }
    int64_t found = -1;
    if (base >= 0 && sub.u.s.n <= e - b) {
        if (mode == 1) {
            for (size_t k = e - sub.u.s.n + 1; k-- > b;)
                if (!memcmp(s.u.s.p + k, sub.u.s.p, sub.u.s.n)) {
                    found = (int64_t)k;
                    break;
                }
        } else {
            const char *h = loam__jinja_find_bytes(s.u.s.p + b, e - b, sub.u.s.p, sub.u.s.n);
            if (h)
                found = h - s.u.s.p;
        }
    }
    if (found < 0) {
        if (mode == 2)
            return loam__jinja_error(r, "substring not found");
        *out = jv_int(-1);
        return LOAM_OK;
    }
    *out = jv_int((int64_t)loam__jinja_utf8_len(s.u.s.p, (size_t)found));
    return LOAM_OK;
}

loam_status loam__jinja_str_method(jinja_render *r, uint16_t id, jinja_value s,
                                   const jinja_args *args, jinja_value *out) {
    switch (id) {
    case M_STARTSWITH:
    case M_ENDSWITH: {
        BIND(id == M_STARTSWITH ? "startswith" : "endswith", "prefix", "start", "end");
        if (!have[0])
            return loam__jinja_error(r, "startswith/endswith takes at least 1 argument");
        bool res;
        TRY(py_affix(r, s, v[0], v[1], v[2], id == M_ENDSWITH, &res));
        *out = jv_bool(res);
        return LOAM_OK;
    }
    case M_SPLIT:
    case M_RSPLIT: {
        BIND(id == M_SPLIT ? "split" : "rsplit", "sep", "maxsplit");
        int64_t maxsplit = -1;
        if (have[1])
            TRY(loam__jinja_need_int(r, v[1], "maxsplit", &maxsplit));
        return py_split(r, s, v[0], maxsplit, id == M_RSPLIT, out);
    }
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        BIND("strip", "chars");
        return loam__jinja_str_strip(r, s, v[0], id == M_STRIP ? 3 : id == M_LSTRIP ? 1 : 2, out);
    }
    case M_REPLACE: {
        BIND("replace", "old", "new", "count");
        if (!have[0] || !have[1])
            return loam__jinja_error(r, "replace() takes at least 2 arguments");
        int64_t count = -1;
        if (have[2])
            TRY(loam__jinja_need_int(r, v[2], "count", &count));
        return loam__jinja_str_replace(r, s, v[0], v[1], count, out);
    }
    case M_UPPER:
    case M_LOWER:
    case M_TITLE:
    case M_CAPITALIZE:
    case M_SWAPCASE: {
        BIND("str method");
        (void)v;
        (void)have;
        if (id == M_UPPER)
            return map_str(r, s, cp_upper, out);
        if (id == M_LOWER)
            return map_str(r, s, cp_lower, out);
        if (id == M_TITLE)
            return py_title(r, s, out);
        if (id == M_CAPITALIZE)
            return py_capitalize(r, s, out);
        jinja_buf b = {.a = A(r)};
        size_t i = 0;
        while (i < s.u.s.n) {
            uint32_t c = loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
            utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
            loam__jinja_utf8_put(&b, k == UTF8PROC_CATEGORY_LU   ? cp_lower(c)
                                     : k == UTF8PROC_CATEGORY_LL ? cp_upper(c)
                                                                 : c);
        }
        return loam__jinja_buf_done(r, &b, out);
    }
    case M_FIND:
        return str_search(r, s, args, 0, out);
    case M_RFIND:
        return str_search(r, s, args, 1, out);
    case M_INDEX:
        return str_search(r, s, args, 2, out);
    case M_COUNT:
        return str_search(r, s, args, 3, out);
    case M_FORMAT:
        return str_format(r, s, args, out);
    case M_JOIN: {
        BIND("join", "iterable");
        if (!have[0])
            return loam__jinja_error(r, "join() takes exactly one argument");
        jinja_list *items;
        TRY(loam__jinja_iterate(r, v[0], &items));
        jinja_buf b = {.a = A(r)};
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].type != JV_STR)
                return loam__jinja_error(r, "sequence item %zu: expected str instance, %s found", i,
                                         loam__jinja_type_name(items->v[i]));
            if (i)
                loam__jinja_buf_put(&b, s.u.s.p, s.u.s.n);
            loam__jinja_buf_put(&b, items->v[i].u.s.p, items->v[i].u.s.n);
        }
        return loam__jinja_buf_done(r, &b, out);
    }
    case M_SPLITLINES: {
        BIND("splitlines", "keepends");
        jinja_list *l;
        TRY(loam__jinja_str_splitlines(r, s, loam__jinja_truthy_arg(v[0], false), &l));
        *out = jv_list(l);
        return LOAM_OK;
    }
    case M_ISDIGIT:
    case M_ISALPHA:
    case M_ISALNUM:
    case M_ISSPACE:
    case M_ISUPPER:
    case M_ISLOWER: {
        BIND("str method");
        (void)v;
        (void)have;
        *out = jv_bool(loam__jinja_str_is(s, id - M_ISDIGIT));
        return LOAM_OK;
    }
    default:
        return loam__jinja_error(r, "internal error: unknown str method");
    }
}

loam_status loam__jinja_percent(jinja_render *r, jinja_value fmt, jinja_value arg,
                                jinja_value *out) {
    if (arg.type == JV_LIST && (arg.flags & JF_TUPLE))
        return loam__jinja_str_printf(r, fmt, arg.u.l->v, arg.u.l->n, out);
    return loam__jinja_str_printf(r, fmt, &arg, 1, out);
}
