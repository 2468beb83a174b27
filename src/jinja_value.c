/* jinja_value.c: the value model of the chat-template interpreter (see jinja.h): the arena,
 * strings and containers, Python truthiness / equality / ordering, Python str() and repr(),
 * json.dumps and a strict json.loads, and the UTF-8 helpers.
 *
 * Python formatting rules implemented here (CPython 3):
 * - repr(float): the shortest digit string that reads back as the same double; scientific
 *   notation when the decimal exponent is < -4 or >= 16 ("1e-05", "1e+16"), otherwise
 *   positional with at least one fractional digit ("1.0", "0.0001"); "inf", "-inf", "nan".
 * - repr(str): single quotes unless the text holds ' and no "; escapes \\ \n \r \t, \xhh for
 *   other controls and 0x7f-0xa0, \uhhhh / \Uhhhhhhhh for other non-printable code points
 *   (Unicode categories C*, Z* except the space); printable non-ASCII stays as it is.
 * - str(list) "[1, 'a']", str(tuple) "(1,)" / "(1, 2)", str(dict) "{'a': 1}", None, True.
 * - json.dumps: separators ", " and ": " (with indent: "," and ": "); ensure_ascii writes every
 *   non-ASCII code point as a \u00e9-style escape (surrogate pairs above U+FFFF); floats as
 *   repr; NaN / Infinity / -Infinity; control characters as \u001f-style escapes except
 *   \b \f \n \r \t.
 *
 * Why a JSON reader of our own instead of cJSON (the project default): cJSON stores every number
 * as a double, so 1 and 1.0 (and integers past 2^53) become the same value, while Python's
 * json.loads keeps them apart and templates print them differently ("1" vs "1.0"). The reader
 * below is strict RFC 8259 (no comments, no trailing commas, no NaN literals), validates UTF-8,
 * refuses lone surrogates and bounds nesting depth. Integers outside int64 (Python keeps them
 * exact; tokenizer configs hold model_max_length = 1e30) become floats.
 */
#include "jinja.h"

#include <errno.h>
#include <math.h>
#include <utf8proc.h>

// ---- arena ------------------------------------------------------------------------------------

struct jinja_chunk {
    jinja_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

#define JINJA_CHUNK_MIN ((size_t)64 * 1024)

void *loam__jinja_alloc(jinja_arena *a, size_t n) {
    if (n > SIZE_MAX - 64)
        return NULL;
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0)
        n = 16;
    jinja_chunk *c = a->head;
    if (c && c->size - c->used >= n) {
        void *p = c->data + c->used;
        c->used += n;
        memset(p, 0, n);
        return p;
    }
    /* a block bigger than a quarter chunk gets a chunk of its own, linked behind the head so
     * the head keeps serving small allocations */
    bool own = n > JINJA_CHUNK_MIN / 4;
    size_t size = own ? n : JINJA_CHUNK_MIN;
    uint64_t total;
    if (loam__add_u64(a->used, (uint64_t)size + sizeof *c, &total))
        return NULL;
    if (a->limit && total > a->limit) {
        a->over_limit = true;
        return NULL;
    }
    jinja_chunk *nc = loam__malloc(sizeof *nc + size);
    if (!nc)
        return NULL;
    a->used = total;
    nc->size = size;
    nc->used = n;
    if (own && c) {
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        a->head = nc;
    }
    memset(nc->data, 0, n);
    return nc->data;
}

void loam__jinja_arena_free(jinja_arena *a) {
    jinja_chunk *c = a->head;
    while (c) {
        jinja_chunk *next = c->next;
        loam__free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

// ---- buffers ----------------------------------------------------------------------------------

static bool buf_reserve(jinja_buf *b, size_t extra) {
    if (b->failed)
        return false;
    size_t need;
    if (__builtin_add_overflow(b->n, extra, &need) || need == SIZE_MAX ||
        (b->max && need > b->max)) {
        b->failed = true;
        return false;
    }
    if (need + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = loam__jinja_alloc(b->a, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    if (b->n)
        memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
    return true;
}

void loam__jinja_buf_put(jinja_buf *b, const char *s, size_t n) {
    if (!n || !buf_reserve(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void loam__jinja_buf_putc(jinja_buf *b, char c) {
    loam__jinja_buf_put(b, &c, 1);
}

void loam__jinja_buf_printf(jinja_buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    loam__jinja_buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

// ---- containers -------------------------------------------------------------------------------

jinja_list *loam__jinja_list_new(jinja_arena *a, size_t cap) {
    jinja_list *l = loam__jinja_alloc(a, sizeof *l);
    if (!l)
        return NULL;
    if (cap) {
        if (cap > SIZE_MAX / sizeof(jinja_value))
            return NULL;
        l->v = loam__jinja_alloc(a, cap * sizeof(jinja_value));
        if (!l->v)
            return NULL;
        l->cap = cap;
    }
    return l;
}

bool loam__jinja_list_push(jinja_arena *a, jinja_list *l, jinja_value v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        if (cap > SIZE_MAX / sizeof(jinja_value))
            return false;
        jinja_value *nv = loam__jinja_alloc(a, cap * sizeof(jinja_value));
        if (!nv)
            return false;
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jinja_value));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return true;
}

jinja_dict *loam__jinja_dict_new(jinja_arena *a) {
    return loam__jinja_alloc(a, sizeof(jinja_dict));
}

/* Python hash equality classes for the key types a template can make: numbers by value (so
 * True, 1 and 1.0 are one key), strings by bytes, None. Other types go in the unhashed path. */
static uint64_t key_hash(jinja_value k, bool *ok) {
    *ok = true;
    uint64_t h = 1469598103934665603ull;
    switch (k.type) {
    case JV_STR:
        for (size_t i = 0; i < k.u.s.n; i++)
            h = (h ^ (unsigned char)k.u.s.p[i]) * 1099511628211ull;
        return h;
    case JV_BOOL:
        return (uint64_t)k.u.b * 0x9e3779b97f4a7c15ull;
    case JV_INT:
        return (uint64_t)k.u.i * 0x9e3779b97f4a7c15ull;
    case JV_FLOAT:
        if (k.u.f == floor(k.u.f) && fabs(k.u.f) < 9.2e18)
            return (uint64_t)(int64_t)k.u.f * 0x9e3779b97f4a7c15ull;
        {
            uint64_t bits;
            memcpy(&bits, &k.u.f, 8);
            return bits * 0x9e3779b97f4a7c15ull;
        }
    case JV_NONE:
        return 7;
    default:
        *ok = false;
        return 0;
    }
}

static bool dict_reindex(jinja_arena *a, jinja_dict *d, size_t cap) {
    uint32_t *idx = loam__jinja_alloc(a, cap * sizeof(uint32_t));
    if (!idx)
        return false;
    for (size_t i = 0; i < d->n; i++) {
        bool ok;
        uint64_t h = key_hash(d->keys[i], &ok);
        if (!ok)
            continue;
        size_t j = (size_t)(h & (cap - 1));
        while (idx[j])
            j = (j + 1) & (cap - 1);
        idx[j] = (uint32_t)(i + 1);
    }
    d->index = idx;
    d->index_cap = cap;
    return true;
}

int64_t loam__jinja_dict_find(const jinja_dict *d, jinja_value k) {
    bool ok = false;
    uint64_t h = d->index ? key_hash(k, &ok) : 0;
    if (ok) {
        size_t j = (size_t)(h & (d->index_cap - 1));
        while (d->index[j]) {
            size_t i = d->index[j] - 1;
            if (loam__jinja_equal(d->keys[i], k))
                return (int64_t)i;
            j = (j + 1) & (d->index_cap - 1);
        }
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (loam__jinja_equal(d->keys[i], k))
            return (int64_t)i;
    return -1;
}

bool loam__jinja_dict_set(jinja_arena *a, jinja_dict *d, jinja_value k, jinja_value v) {
    int64_t at = loam__jinja_dict_find(d, k);
    if (at >= 0) {
        d->vals[at] = v;
        return true;
    }
    if (d->n >= UINT32_MAX - 1)
        return false;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jinja_value *nk = loam__jinja_alloc(a, cap * sizeof(jinja_value));
        jinja_value *nv = loam__jinja_alloc(a, cap * sizeof(jinja_value));
        if (!nk || !nv)
            return false;
        if (d->n) {
            memcpy(nk, d->keys, d->n * sizeof(jinja_value));
            memcpy(nv, d->vals, d->n * sizeof(jinja_value));
        }
        d->keys = nk;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = k;
    d->vals[d->n] = v;
    d->n++;
    if (d->n > 8 && d->n * 2 > d->index_cap) {
        size_t cap = 32;
        while (cap < d->n * 4)
            cap *= 2;
        if (!dict_reindex(a, d, cap))
            return false;
    } else if (d->index) {
        bool ok;
        uint64_t h = key_hash(k, &ok);
        if (ok) {
            size_t j = (size_t)(h & (d->index_cap - 1));
            while (d->index[j])
                j = (j + 1) & (d->index_cap - 1);
            d->index[j] = (uint32_t)d->n;
        }
    }
    return true;
}

jinja_value loam__jinja_dict_get_cstr(const jinja_dict *d, const char *key, bool *found) {
    int64_t at = loam__jinja_dict_find(d, jv_str(key, strlen(key)));
    *found = at >= 0;
    return at >= 0 ? d->vals[at] : jv_undef();
}

// ---- Python semantics -------------------------------------------------------------------------

bool loam__jinja_truthy(jinja_value v) {
    switch ((jinja_type)v.type) {
    case JV_UNDEF:
    case JV_NONE:
        return false;
    case JV_BOOL:
        return v.u.b;
    case JV_INT:
        return v.u.i != 0;
    case JV_FLOAT:
        return v.u.f != 0.0;
    case JV_STR:
        return v.u.s.n != 0;
    case JV_LIST:
        return v.u.l->n != 0;
    case JV_DICT:
        return v.u.d->n != 0;
    default:
        return true;
    }
}

static bool is_num(jinja_value v) {
    return v.type == JV_BOOL || v.type == JV_INT || v.type == JV_FLOAT;
}

/* Exact comparison of an int64 and a double (as Python compares int and float). */
static int cmp_int_float(int64_t i, double f) {
    if (isnan(f))
        return 2; /* unordered */
    if (f >= 9223372036854775808.0)
        return -1;
    if (f < -9223372036854775808.0)
        return 1;
    double fl = floor(f);
    int64_t fi = (int64_t)fl;
    if (i < fi)
        return -1;
    if (i > fi)
        return 1;
    return fl < f ? -1 : 0;
}

static int num_cmp(jinja_value a, jinja_value b) { /* -1, 0, 1, or 2 for NaN */
    if (a.type == JV_FLOAT && b.type == JV_FLOAT) {
        if (isnan(a.u.f) || isnan(b.u.f))
            return 2;
        return a.u.f < b.u.f ? -1 : a.u.f > b.u.f ? 1 : 0;
    }
    if (a.type == JV_FLOAT) {
        int c = cmp_int_float(b.type == JV_BOOL ? b.u.b : b.u.i, a.u.f);
        return c == 2 ? 2 : -c;
    }
    int64_t ai = a.type == JV_BOOL ? a.u.b : a.u.i;
    if (b.type == JV_FLOAT)
        return cmp_int_float(ai, b.u.f);
    int64_t bi = b.type == JV_BOOL ? b.u.b : b.u.i;
    return ai < bi ? -1 : ai > bi ? 1 : 0;
}

static int str_cmp(jinja_value a, jinja_value b) {
    size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
    int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0; /* UTF-8 byte order == code point order */
    if (c)
        return c < 0 ? -1 : 1;
    return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n ? 1 : 0;
}

/* Containers nested deeper than this compare unequal / unordered and print as "...", instead of
 * recursing without bound (Python raises RecursionError near the same depth). Templates can
 * build such values with a namespace in a loop; JSON input is limited to 512 levels. */
#define VALUE_DEPTH_MAX 1000

static bool equal_d(jinja_value a, jinja_value b, int depth);

bool loam__jinja_equal(jinja_value a, jinja_value b) {
    return equal_d(a, b, 0);
}

static bool equal_d(jinja_value a, jinja_value b, int depth) {
    if (is_num(a) && is_num(b))
        return num_cmp(a, b) == 0;
    if (depth > VALUE_DEPTH_MAX)
        return false;
    if (a.type != b.type)
        return false;
    switch ((jinja_type)a.type) {
    case JV_UNDEF:
    case JV_NONE:
        return true;
    case JV_STR:
        return a.u.s.n == b.u.s.n && (a.u.s.n == 0 || !memcmp(a.u.s.p, b.u.s.p, a.u.s.n));
    case JV_LIST:
        if ((a.flags & JF_TUPLE) != (b.flags & JF_TUPLE) || a.u.l->n != b.u.l->n)
            return false;
        if (a.u.l == b.u.l)
            return true; /* Python compares identical objects equal first */
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal_d(a.u.l->v[i], b.u.l->v[i], depth + 1))
                return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        if (a.u.d == b.u.d)
            return true;
        for (size_t i = 0; i < a.u.d->n; i++) {
            int64_t j = loam__jinja_dict_find(b.u.d, a.u.d->keys[i]);
            if (j < 0 || !equal_d(a.u.d->vals[i], b.u.d->vals[j], depth + 1))
                return false;
        }
        return true;
    case JV_NS:
        return a.u.d == b.u.d;
    case JV_MACRO:
        return a.u.m == b.u.m;
    case JV_FUNC:
        return a.u.fn == b.u.fn;
    case JV_LOOP:
        return a.u.loop == b.u.loop;
    default:
        return false;
    }
}

static int less_d(jinja_value a, jinja_value b, bool *lt, int depth);

int loam__jinja_less(jinja_value a, jinja_value b, bool *lt) {
    return less_d(a, b, lt, 0);
}

static int less_d(jinja_value a, jinja_value b, bool *lt, int depth) {
    if (depth > VALUE_DEPTH_MAX)
        return -1;
    if (is_num(a) && is_num(b)) {
        *lt = num_cmp(a, b) == -1;
        return 0;
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        *lt = str_cmp(a, b) < 0;
        return 0;
    }
    if (a.type == JV_LIST && b.type == JV_LIST && (a.flags & JF_TUPLE) == (b.flags & JF_TUPLE)) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (equal_d(a.u.l->v[i], b.u.l->v[i], depth + 1))
                continue;
            return less_d(a.u.l->v[i], b.u.l->v[i], lt, depth + 1);
        }
        *lt = a.u.l->n < b.u.l->n;
        return 0;
    }
    return -1;
}

const char *loam__jinja_type_name(jinja_value v) {
    switch ((jinja_type)v.type) {
    case JV_UNDEF:
        return "Undefined";
    case JV_NONE:
        return "NoneType";
    case JV_BOOL:
        return "bool";
    case JV_INT:
        return "int";
    case JV_FLOAT:
        return "float";
    case JV_STR:
        return "str";
    case JV_LIST:
        return v.flags & JF_TUPLE ? "tuple" : "list";
    case JV_DICT:
        return "dict";
    case JV_NS:
        return "Namespace";
    case JV_MACRO:
        return "Macro";
    case JV_FUNC:
        return "builtin_function_or_method";
    case JV_LOOP:
        return "LoopContext";
    }
    return "object";
}

// ---- UTF-8 ------------------------------------------------------------------------------------

uint32_t loam__jinja_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    uint32_t c = u[k];
    if (c < 0x80 || k + 1 >= n) {
        *i = k + 1;
        return c;
    }
    if (c < 0xe0) {
        *i = k + 2;
        return ((c & 0x1f) << 6) | (u[k + 1] & 0x3f);
    }
    if (c < 0xf0) {
        if (k + 2 >= n) {
            *i = n;
            return 0xfffd;
        }
        *i = k + 3;
        return ((c & 0x0f) << 12) | ((uint32_t)(u[k + 1] & 0x3f) << 6) | (u[k + 2] & 0x3f);
    }
    if (k + 3 >= n) {
        *i = n;
        return 0xfffd;
    }
    *i = k + 4;
    return ((c & 0x07) << 18) | ((uint32_t)(u[k + 1] & 0x3f) << 12) |
           ((uint32_t)(u[k + 2] & 0x3f) << 6) | (u[k + 3] & 0x3f);
}

void loam__jinja_utf8_put(jinja_buf *b, uint32_t cp) {
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xc0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xe0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        t[0] = (char)(0xf0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    loam__jinja_buf_put(b, t, n);
}

size_t loam__jinja_utf8_check(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= need)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += need + 1;
    }
    return len;
}

size_t loam__jinja_utf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

bool loam__jinja_isspace(uint32_t c) {
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Python str.isprintable() for one code point. */
static bool py_printable(uint32_t c) {
    if (c == ' ')
        return true;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

// ---- str() and repr() -------------------------------------------------------------------------

void loam__jinja_float_repr(jinja_buf *b, double f) {
    if (isnan(f)) {
        loam__jinja_buf_put(b, "nan", 3);
        return;
    }
    if (isinf(f)) {
        loam__jinja_buf_put(b, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3);
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX: split into sign, digits and exponent */
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    char digits[20];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (neg)
        loam__jinja_buf_putc(b, '-');
    if (exp10 < -4 || exp10 >= 16) {
        loam__jinja_buf_putc(b, digits[0]);
        if (nd > 1) {
            loam__jinja_buf_putc(b, '.');
            loam__jinja_buf_put(b, digits + 1, nd - 1);
        }
        loam__jinja_buf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        loam__jinja_buf_put(b, "0.", 2);
        for (int k = -1; k > exp10; k--)
            loam__jinja_buf_putc(b, '0');
        loam__jinja_buf_put(b, digits, nd);
    } else {
        size_t int_digits = (size_t)exp10 + 1;
        for (size_t k = 0; k < int_digits; k++)
            loam__jinja_buf_putc(b, k < nd ? digits[k] : '0');
        loam__jinja_buf_putc(b, '.');
        if (nd > int_digits)
            loam__jinja_buf_put(b, digits + int_digits, nd - int_digits);
        else
            loam__jinja_buf_putc(b, '0');
    }
}

static void str_repr(jinja_buf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    loam__jinja_buf_putc(b, q);
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t c = loam__jinja_utf8_next(s, n, &i);
        if (c == (uint32_t)q || c == '\\') {
            loam__jinja_buf_putc(b, '\\');
            loam__jinja_buf_putc(b, (char)c);
        } else if (c == '\n')
            loam__jinja_buf_put(b, "\\n", 2);
        else if (c == '\r')
            loam__jinja_buf_put(b, "\\r", 2);
        else if (c == '\t')
            loam__jinja_buf_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7f)
            loam__jinja_buf_printf(b, "\\x%02x", c);
        else if (c < 0x80 || py_printable(c))
            loam__jinja_buf_put(b, s + start, i - start);
        else if (c <= 0xff)
            loam__jinja_buf_printf(b, "\\x%02x", c);
        else if (c <= 0xffff)
            loam__jinja_buf_printf(b, "\\u%04x", c);
        else
            loam__jinja_buf_printf(b, "\\U%08x", c);
    }
    loam__jinja_buf_putc(b, q);
}

static void str_or_repr(jinja_buf *b, jinja_value v, bool repr, int depth) {
    if (depth > VALUE_DEPTH_MAX && (v.type == JV_LIST || v.type == JV_DICT || v.type == JV_NS)) {
        loam__jinja_buf_put(b, "...", 3);
        return;
    }
    switch ((jinja_type)v.type) {
    case JV_UNDEF:
        if (repr)
            loam__jinja_buf_put(b, "Undefined", 9);
        return;
    case JV_NONE:
        loam__jinja_buf_put(b, "None", 4);
        return;
    case JV_BOOL:
        loam__jinja_buf_put(b, v.u.b ? "True" : "False", v.u.b ? 4 : 5);
        return;
    case JV_INT:
        loam__jinja_buf_printf(b, "%lld", (long long)v.u.i);
        return;
    case JV_FLOAT:
        loam__jinja_float_repr(b, v.u.f);
        return;
    case JV_STR:
        if (repr)
            str_repr(b, v.u.s.p, v.u.s.n);
        else
            loam__jinja_buf_put(b, v.u.s.p, v.u.s.n);
        return;
    case JV_LIST: {
        bool tuple = v.flags & JF_TUPLE;
        loam__jinja_buf_putc(b, tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                loam__jinja_buf_put(b, ", ", 2);
            str_or_repr(b, v.u.l->v[i], true, depth + 1);
        }
        if (tuple && v.u.l->n == 1)
            loam__jinja_buf_putc(b, ',');
        loam__jinja_buf_putc(b, tuple ? ')' : ']');
        return;
    }
    case JV_NS:
    case JV_DICT: {
        if (v.type == JV_NS)
            loam__jinja_buf_put(b, "<Namespace ", 11);
        loam__jinja_buf_putc(b, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                loam__jinja_buf_put(b, ", ", 2);
            str_or_repr(b, v.u.d->keys[i], true, depth + 1);
            loam__jinja_buf_put(b, ": ", 2);
            str_or_repr(b, v.u.d->vals[i], true, depth + 1);
        }
        loam__jinja_buf_putc(b, '}');
        if (v.type == JV_NS)
            loam__jinja_buf_putc(b, '>');
        return;
    }
    case JV_MACRO:
        loam__jinja_buf_put(b, "<Macro>", 7);
        return;
    case JV_FUNC:
        loam__jinja_buf_put(b, "<built-in method>", 17);
        return;
    case JV_LOOP:
        loam__jinja_buf_put(b, "<LoopContext>", 13);
        return;
    }
}

void loam__jinja_str(jinja_buf *b, jinja_value v) {
    str_or_repr(b, v, false, 0);
}
void loam__jinja_repr(jinja_buf *b, jinja_value v) {
    str_or_repr(b, v, true, 0);
}

jinja_value loam__jinja_to_str(jinja_arena *a, jinja_value v, bool *oom) {
    *oom = false;
    if (v.type == JV_STR)
        return v;
    if (v.type == JV_UNDEF)
        return jv_str("", 0);
    jinja_buf b = {.a = a};
    loam__jinja_str(&b, v);
    if (b.failed) {
        *oom = true;
        return jv_str("", 0);
    }
    return jv_str(b.p ? b.p : "", b.n);
}

// ---- json.dumps -------------------------------------------------------------------------------

typedef struct json_out {
    jinja_buf *b;
    bool ensure_ascii, sort_keys;
    const char *indent, *item_sep, *key_sep;
    size_t indent_len, item_sep_len, key_sep_len;
    char *why;
    size_t why_cap;
} json_out;

static void json_str(jinja_buf *b, const char *s, size_t n, bool ensure_ascii) {
    loam__jinja_buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        uint32_t c = loam__jinja_utf8_next(s, n, &i);
        switch (c) {
        case '"':
            loam__jinja_buf_put(b, "\\\"", 2);
            break;
        case '\\':
            loam__jinja_buf_put(b, "\\\\", 2);
            break;
        case '\n':
            loam__jinja_buf_put(b, "\\n", 2);
            break;
        case '\r':
            loam__jinja_buf_put(b, "\\r", 2);
            break;
        case '\t':
            loam__jinja_buf_put(b, "\\t", 2);
            break;
        case '\b':
            loam__jinja_buf_put(b, "\\b", 2);
            break;
        case '\f':
            loam__jinja_buf_put(b, "\\f", 2);
            break;
        default:
            if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
                if (c >= 0x10000) {
                    uint32_t v = c - 0x10000;
                    loam__jinja_buf_printf(b, "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                                           0xdc00 + (v & 0x3ff));
                } else {
                    loam__jinja_buf_printf(b, "\\u%04x", c);
                }
            } else {
                loam__jinja_buf_put(b, s + start, i - start);
            }
        }
    }
    loam__jinja_buf_putc(b, '"');
}

static void json_newline(json_out *o, int level) {
    loam__jinja_buf_putc(o->b, '\n');
    for (int k = 0; k < level; k++)
        loam__jinja_buf_put(o->b, o->indent, o->indent_len);
}

static int json_value(json_out *o, jinja_value v, int level) {
    if (level > 1000) {
        snprintf(o->why, o->why_cap, "tojson: nesting too deep");
        return -1;
    }
    jinja_buf *b = o->b;
    switch ((jinja_type)v.type) {
    case JV_NONE:
        loam__jinja_buf_put(b, "null", 4);
        return 0;
    case JV_BOOL:
        loam__jinja_buf_put(b, v.u.b ? "true" : "false", v.u.b ? 4 : 5);
        return 0;
    case JV_INT:
        loam__jinja_buf_printf(b, "%lld", (long long)v.u.i);
        return 0;
    case JV_FLOAT:
        if (isnan(v.u.f))
            loam__jinja_buf_put(b, "NaN", 3);
        else if (isinf(v.u.f))
            loam__jinja_buf_put(b, v.u.f < 0 ? "-Infinity" : "Infinity", v.u.f < 0 ? 9 : 8);
        else
            loam__jinja_float_repr(b, v.u.f);
        return 0;
    case JV_STR:
        json_str(b, v.u.s.p, v.u.s.n, o->ensure_ascii);
        return 0;
    case JV_LIST: {
        if (v.u.l->n == 0) {
            loam__jinja_buf_put(b, "[]", 2);
            return 0;
        }
        loam__jinja_buf_putc(b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                loam__jinja_buf_put(b, o->item_sep, o->item_sep_len);
            if (o->indent)
                json_newline(o, level + 1);
            if (json_value(o, v.u.l->v[i], level + 1))
                return -1;
        }
        if (o->indent)
            json_newline(o, level);
        loam__jinja_buf_putc(b, ']');
        return 0;
    }
    case JV_DICT: {
        const jinja_dict *d = v.u.d;
        if (d->n == 0) {
            loam__jinja_buf_put(b, "{}", 2);
            return 0;
        }
        /* order of keys: insertion, or sorted (keys must then be strings to compare) */
        size_t *order = loam__jinja_alloc(b->a, d->n * sizeof(size_t));
        if (!order) {
            b->failed = true;
            return 0;
        }
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys) {
            for (size_t i = 0; i < d->n; i++)
                if (d->keys[i].type != JV_STR) {
                    snprintf(o->why, o->why_cap, "tojson: sort_keys needs string keys");
                    return -1;
                }
            /* insertion sort keeps equal keys stable and needs no comparator context */
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0 && str_cmp(d->keys[x], d->keys[order[j - 1]]) < 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        loam__jinja_buf_putc(b, '{');
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k)
                loam__jinja_buf_put(b, o->item_sep, o->item_sep_len);
            if (o->indent)
                json_newline(o, level + 1);
            jinja_value key = d->keys[i];
            switch (key.type) { /* json.dumps turns these key types into strings */
            case JV_STR:
                json_str(b, key.u.s.p, key.u.s.n, o->ensure_ascii);
                break;
            case JV_NONE:
                loam__jinja_buf_put(b, "\"null\"", 6);
                break;
            case JV_BOOL:
                loam__jinja_buf_put(b, key.u.b ? "\"true\"" : "\"false\"", key.u.b ? 6 : 7);
                break;
            case JV_INT:
            case JV_FLOAT:
                loam__jinja_buf_putc(b, '"');
                json_value(o, key, level + 1);
                loam__jinja_buf_putc(b, '"');
                break;
            default:
                snprintf(o->why, o->why_cap,
                         "tojson: keys must be str, int, float, bool or None, not %s",
                         loam__jinja_type_name(key));
                return -1;
            }
            loam__jinja_buf_put(b, o->key_sep, o->key_sep_len);
            if (json_value(o, d->vals[i], level + 1))
                return -1;
        }
        if (o->indent)
            json_newline(o, level);
        loam__jinja_buf_putc(b, '}');
        return 0;
    }
    default:
        snprintf(o->why, o->why_cap, "tojson: Object of type %s is not JSON serializable",
                 loam__jinja_type_name(v));
        return -1;
    }
}

int loam__jinja_json_dump(jinja_buf *b, jinja_value v, bool ensure_ascii, const char *indent,
                          size_t indent_len, const char *item_sep, const char *key_sep,
                          bool sort_keys, char *why, size_t why_cap) {
    json_out o = {.b = b,
                  .ensure_ascii = ensure_ascii,
                  .sort_keys = sort_keys,
                  .indent = indent,
                  .indent_len = indent_len,
                  .why = why,
                  .why_cap = why_cap};
    o.item_sep = item_sep ? item_sep : indent ? "," : ", ";
    o.key_sep = key_sep ? key_sep : ": ";
    o.item_sep_len = strlen(o.item_sep);
    o.key_sep_len = strlen(o.key_sep);
    return json_value(&o, v, 0);
}

// ---- json.loads -------------------------------------------------------------------------------

typedef struct json_in {
    jinja_arena *a;
    const char *s;
    size_t n, i;
    char *why;
    size_t why_cap;
    bool oom;
} json_in;

static int json_fail(json_in *p, const char *msg) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n')
            line++, col = 1;
        else
            col++;
    }
    snprintf(p->why, p->why_cap, "%zu:%zu: %s", line, col, msg);
    return -1;
}

static void json_ws(json_in *p) {
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int json_hex4(json_in *p, uint32_t *out) {
    if (p->n - p->i < 4)
        return json_fail(p, "bad \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + (size_t)k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return json_fail(p, "bad \\u escape");
    }
    p->i += 4;
    *out = v;
    return 0;
}

static int json_string(json_in *p, jinja_value *out) {
    p->i++; /* opening quote */
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' &&
           (unsigned char)p->s[p->i] >= 0x20)
        p->i++;
    if (p->i < p->n && p->s[p->i] == '"') { /* no escapes: point into a copy of the run */
        size_t len = p->i - start;
        char *c = loam__jinja_alloc(p->a, len + 1);
        if (!c) {
            p->oom = true;
            return -1;
        }
        memcpy(c, p->s + start, len);
        p->i++;
        *out = jv_str(c, len);
        return 0;
    }
    jinja_buf b = {.a = p->a};
    loam__jinja_buf_put(&b, p->s + start, p->i - start);
    for (;;) {
        if (p->i >= p->n)
            return json_fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20)
            return json_fail(p, "control character in string");
        if (c != '\\') {
            loam__jinja_buf_putc(&b, (char)c);
            p->i++;
            continue;
        }
        p->i++;
        if (p->i >= p->n)
            return json_fail(p, "unterminated string");
        char e = p->s[p->i++];
        switch (e) {
        case '"':
            loam__jinja_buf_putc(&b, '"');
            break;
        case '\\':
            loam__jinja_buf_putc(&b, '\\');
            break;
        case '/':
            loam__jinja_buf_putc(&b, '/');
            break;
        case 'b':
            loam__jinja_buf_putc(&b, '\b');
            break;
        case 'f':
            loam__jinja_buf_putc(&b, '\f');
            break;
        case 'n':
            loam__jinja_buf_putc(&b, '\n');
            break;
        case 'r':
            loam__jinja_buf_putc(&b, '\r');
            break;
        case 't':
            loam__jinja_buf_putc(&b, '\t');
            break;
        case 'u': {
            uint32_t cp;
            if (json_hex4(p, &cp))
                return -1;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return json_fail(p, "lone surrogate in \\u escape");
                p->i += 2;
                if (json_hex4(p, &lo))
                    return -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return json_fail(p, "lone surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return json_fail(p, "lone surrogate in \\u escape");
            }
            loam__jinja_utf8_put(&b, cp);
            break;
        }
        default:
            p->i--;
            return json_fail(p, "bad escape in string");
        }
    }
    if (b.failed) {
        p->oom = true;
        return -1;
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int json_number(json_in *p, jinja_value *out) {
    size_t start = p->i;
    bool is_float = false;
    if (p->s[p->i] == '-')
        p->i++;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
        return json_fail(p, "bad number");
    if (p->s[p->i] == '0')
        p->i++;
    else
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    if (p->i < p->n && p->s[p->i] == '.') {
        is_float = true;
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return json_fail(p, "bad number");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        is_float = true;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return json_fail(p, "bad number");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    char tmp[400];
    size_t len = p->i - start;
    if (len >= sizeof tmp)
        return json_fail(p, "number too long");
    memcpy(tmp, p->s + start, len);
    tmp[len] = '\0';
    if (is_float) {
        *out = jv_float(strtod(tmp, NULL));
        return 0;
    }
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    *out = errno == ERANGE ? jv_float(strtod(tmp, NULL)) : jv_int(v);
    return 0;
}

static int json_parse_value(json_in *p, jinja_value *out, int depth) {
    if (depth > 512)
        return json_fail(p, "nesting too deep");
    json_ws(p);
    if (p->i >= p->n)
        return json_fail(p, "unexpected end of input");
    char c = p->s[p->i];
    if (c == '{') {
        p->i++;
        jinja_dict *d = loam__jinja_dict_new(p->a);
        if (!d) {
            p->oom = true;
            return -1;
        }
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
            *out = jv_dict(d);
            return 0;
        }
        for (;;) {
            json_ws(p);
            if (p->i >= p->n || p->s[p->i] != '"')
                return json_fail(p, "expected a string key");
            jinja_value k, v;
            if (json_string(p, &k))
                return -1;
            json_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':')
                return json_fail(p, "expected ':'");
            p->i++;
            if (json_parse_value(p, &v, depth + 1))
                return -1;
            if (!loam__jinja_dict_set(p->a, d, k, v)) {
                p->oom = true;
                return -1;
            }
            json_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->n && p->s[p->i] == '}') {
                p->i++;
                break;
            }
            return json_fail(p, "expected ',' or '}'");
        }
        *out = jv_dict(d);
        return 0;
    }
    if (c == '[') {
        p->i++;
        jinja_list *l = loam__jinja_list_new(p->a, 0);
        if (!l) {
            p->oom = true;
            return -1;
        }
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == ']') {
            p->i++;
            *out = jv_list(l);
            return 0;
        }
        for (;;) {
            jinja_value v;
            if (json_parse_value(p, &v, depth + 1))
                return -1;
            if (!loam__jinja_list_push(p->a, l, v)) {
                p->oom = true;
                return -1;
            }
            json_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->n && p->s[p->i] == ']') {
                p->i++;
                break;
            }
            return json_fail(p, "expected ',' or ']'");
        }
        *out = jv_list(l);
        return 0;
    }
    if (c == '"')
        return json_string(p, out);
    if (c == '-' || (c >= '0' && c <= '9'))
        return json_number(p, out);
    static const struct {
        const char *word;
        int type;
    } words[] = {{"true", 1}, {"false", 2}, {"null", 3}};
    for (size_t k = 0; k < 3; k++) {
        size_t wl = strlen(words[k].word);
        if (p->n - p->i >= wl && !memcmp(p->s + p->i, words[k].word, wl)) {
            p->i += wl;
            *out = words[k].type == 3 ? jv_none() : jv_bool(words[k].type == 1);
            return 0;
        }
    }
    return json_fail(p, "unexpected character");
}

int loam__jinja_json_parse(jinja_arena *a, const char *text, size_t len, jinja_value *out,
                           char *why, size_t why_cap) {
    json_in p = {.a = a, .s = text, .n = len, .why = why, .why_cap = why_cap};
    size_t bad = loam__jinja_utf8_check(text, len);
    if (bad != len) {
        p.i = bad;
        return json_fail(&p, "invalid UTF-8");
    }
    if (json_parse_value(&p, out, 0)) {
        if (!p.oom)
            return -1;
        snprintf(why, why_cap, "out of memory");
        return -2;
    }
    json_ws(&p);
    if (p.i != p.n)
        return json_fail(&p, "trailing characters after the JSON value");
    return 0;
}
