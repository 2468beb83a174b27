/* jinja_builtins.c: the filters, tests, methods and global functions of the chat-template
 * interpreter, each with the behaviour of its jinja2 3.x / Python 3 original:
 *
 * filters  abs attr batch capitalize center count d default dictsort e escape first float
 *          format indent int items join last length list lower map max min reject rejectattr
 *          replace reverse round safe select selectattr sort string sum title tojson trim
 *          unique upper wordcount
 * tests    boolean callable defined divisibleby eq equalto escaped even false float ge gt
 *          greaterthan in integer iterable le lessthan lower lt mapping ne none number odd
 *          sameas sequence string true undefined upper == != < <= > >=
 * methods  dict: items keys values get copy;  list: index count copy;  loop: cycle changed
 *          (str methods are in jinja_str.c)
 * globals  range dict namespace raise_exception strftime_now
 *
 * `tojson` is transformers' replacement: json.dumps(x, ensure_ascii=False, indent=None,
 * separators=None, sort_keys=False), no HTML escaping. The immutable sandbox refuses the list and
 * dict methods that mutate (append, pop, update...): loam__jinja_unsafe_method.
 *
 * Adding a builtin: write it, add it to the table of its kind below, and test it in
 * tests/test_chat_template.c against jinja2 (tools/reference/jinja_cases.py).
 */
#define _POSIX_C_SOURCE 200809L
#include "jinja.h"

#include <errno.h>
#include <math.h>
#include <time.h>
#include <utf8proc.h>

#define A(r) loam__jinja_arena(r)

// ---- argument binding -------------------------------------------------------------------------

/* Binds positional and keyword arguments to parameter names (Python rules). Unbound
 * parameters are left as JV_UNDEF with have[i] = false. */
loam_status loam__jinja_bind(jinja_render *r, const char *fname, const jinja_args *a,
                             const char *const *names, size_t n_names, jinja_value *vals,
                             bool *have) {
    for (size_t i = 0; i < n_names; i++) {
        vals[i] = jv_undef();
        have[i] = false;
    }
    if (a->n_pos > n_names)
        return loam__jinja_error(r, "%s() takes at most %zu arguments (%zu given)", fname, n_names,
                                 a->n_pos);
    for (size_t i = 0; i < a->n_pos; i++) {
        vals[i] = a->pos[i];
        have[i] = true;
    }
    for (size_t k = 0; k < a->n_kw; k++) {
        size_t i;
        for (i = 0; i < n_names; i++)
            if (strlen(names[i]) == a->kw_lens[k] &&
                !memcmp(names[i], a->kw_names[k], a->kw_lens[k]))
                break;
        if (i == n_names)
            return loam__jinja_error(r, "%s() got an unexpected keyword argument '%.*s'", fname,
                                     (int)(a->kw_lens[k] > 40 ? 40 : a->kw_lens[k]),
                                     a->kw_names[k]);
        if (have[i])
            return loam__jinja_error(r, "%s() got multiple values for argument '%s'", fname,
                                     names[i]);
        vals[i] = a->kw_vals[k];
        have[i] = true;
    }
    return LOAM_OK;
}

static jinja_args no_args(void) {
    jinja_args a;
    memset(&a, 0, sizeof a);
    return a;
}

// ---- small helpers ----------------------------------------------------------------------------

static jinja_value str_of(jinja_render *r, jinja_value v, loam_status *st) {
    bool oom;
    jinja_value s = loam__jinja_to_str(A(r), v, &oom);
    *st = oom ? loam__jinja_oom(r) : LOAM_OK;
    return s;
}

loam_status loam__jinja_need_str(jinja_render *r, jinja_value v, const char *what) {
    if (v.type == JV_STR)
        return LOAM_OK;
    if (v.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, v);
    return loam__jinja_error(r, "%s must be str, not %s", what, loam__jinja_type_name(v));
}

loam_status loam__jinja_need_int(jinja_render *r, jinja_value v, const char *what, int64_t *out) {
    if (v.type == JV_INT)
        *out = v.u.i;
    else if (v.type == JV_BOOL)
        *out = v.u.b;
    else if (v.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, v);
    else
        return loam__jinja_error(r, "%s must be an integer, not %s", what,
                                 loam__jinja_type_name(v));
    return LOAM_OK;
}

static jinja_value mkstr(jinja_buf *b) {
    return jv_str(b->p ? b->p : "", b->n);
}

loam_status loam__jinja_buf_done(jinja_render *r, jinja_buf *b, jinja_value *out) {
    if (b->failed)
        return loam__jinja_oom(r);
    *out = mkstr(b);
    return loam__jinja_steps(r, b->n / 64);
}

static jinja_value tuple2(jinja_render *r, jinja_value a, jinja_value b) {
    jinja_list *l = loam__jinja_list_new(A(r), 2);
    if (!l)
        return jv_undef();
    l->v[0] = a;
    l->v[1] = b;
    l->n = 2;
    jinja_value t = jv_list(l);
    t.flags = JF_TUPLE;
    return t;
}

// ---- values helpers used by several filters ---------------------------------------------------

/* attribute path "a.b.0" as make_attrgetter resolves it (items first, integer parts). */
static loam_status attr_path(jinja_render *r, jinja_value obj, jinja_value path, jinja_value *out) {
    if (path.type == JV_INT) {
        jinja_value key = path;
        if (obj.type == JV_LIST && key.u.i >= 0 && (size_t)key.u.i < obj.u.l->n)
            *out = obj.u.l->v[key.u.i];
        else if (obj.type == JV_DICT) {
            int64_t at = loam__jinja_dict_find(obj.u.d, key);
            *out = at >= 0 ? obj.u.d->vals[at] : jv_undef();
        } else
            *out = jv_undef();
        return LOAM_OK;
    }
    TRY(loam__jinja_need_str(r, path, "attribute"));
    const char *p = path.u.s.p, *end = p + path.u.s.n;
    jinja_value cur = obj;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot)
            dot = end;
        size_t len = (size_t)(dot - p);
        bool digits = len > 0;
        int64_t idx = 0;
        for (size_t k = 0; k < len; k++) {
            if (p[k] < '0' || p[k] > '9' || idx > (INT64_MAX - 9) / 10) {
                digits = false;
                break;
            }
            idx = idx * 10 + (p[k] - '0');
        }
        if (cur.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, cur);
        if (digits && cur.type == JV_LIST) {
            cur = idx < (int64_t)cur.u.l->n ? cur.u.l->v[idx] : jv_undef();
        } else if (cur.type == JV_DICT && !digits) {
            int64_t at = loam__jinja_dict_find(cur.u.d, jv_str(p, len));
            if (at >= 0)
                cur = cur.u.d->vals[at];
            else
                TRY(loam__jinja_getattr(r, cur, p, len, &cur));
        } else if (digits && cur.type == JV_DICT) {
            int64_t at = loam__jinja_dict_find(cur.u.d, jv_int(idx));
            cur = at >= 0 ? cur.u.d->vals[at] : jv_undef();
        } else {
            TRY(loam__jinja_getattr(r, cur, p, len, &cur));
        }
        if (dot == end)
            break;
        p = dot + 1;
    }
    *out = cur;
    return LOAM_OK;
}

/* Sort key: lower-cased strings unless case_sensitive. */
static loam_status sort_key(jinja_render *r, jinja_value v, bool case_sensitive, jinja_value *out) {
    if (!case_sensitive && v.type == JV_STR)
        return loam__jinja_str_case(r, v, JCASE_LOWER, out);
    *out = v;
    return LOAM_OK;
}

typedef struct keyed {
    jinja_value key, val;
} keyed;

/* Stable merge sort by key with Python's < (errors for unorderable types). */
static loam_status sort_keyed(jinja_render *r, keyed *v, size_t n, bool reverse) {
    if (n < 2)
        return LOAM_OK;
    keyed *tmp = loam__jinja_alloc(A(r), n * sizeof *tmp);
    if (!tmp)
        return loam__jinja_oom(r);
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n,
                   hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                bool lt;
                /* take from the right only when it is strictly smaller (stability); with reverse,
                 * Python keeps equal items in their original order too */
                jinja_value a = v[i].key, b = v[j].key;
                if (loam__jinja_less(reverse ? a : b, reverse ? b : a, &lt))
                    return loam__jinja_error(r,
                                             "'<' not supported between instances of '%s' and '%s'",
                                             loam__jinja_type_name(b), loam__jinja_type_name(a));
                tmp[k++] = lt ? v[j++] : v[i++];
            }
            while (i < mid)
                tmp[k++] = v[i++];
            while (j < hi)
                tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof *v);
        TRY(loam__jinja_steps(r, n));
    }
    return LOAM_OK;
}

bool loam__jinja_truthy_arg(jinja_value v, bool dflt) {
    return v.type == JV_UNDEF ? dflt : loam__jinja_truthy(v);
}

// ---- builtin function ids ---------------------------------------------------------------------

enum {
    F_RANGE = 1,
    F_DICT,
    F_NAMESPACE,
    F_RAISE,
    F_STRFTIME,
    /* dict methods */
    M_ITEMS,
    M_KEYS,
    M_VALUES,
    M_GET,
    M_COPY,
    /* list methods */
    M_LINDEX,
    M_LCOUNT,
    M_LCOPY,
    /* loop methods */
    M_CYCLE,
    M_CHANGED,
};

static const struct {
    const char *name;
    uint16_t id;
    uint8_t on; /* JV_STR, JV_DICT, JV_LIST, JV_LOOP */
} k_methods[] = {
    {"items", M_ITEMS, JV_DICT},     {"keys", M_KEYS, JV_DICT},  {"values", M_VALUES, JV_DICT},
    {"get", M_GET, JV_DICT},         {"copy", M_COPY, JV_DICT},  {"index", M_LINDEX, JV_LIST},
    {"count", M_LCOUNT, JV_LIST},    {"copy", M_LCOPY, JV_LIST}, {"cycle", M_CYCLE, JV_LOOP},
    {"changed", M_CHANGED, JV_LOOP},
};

static jinja_func k_globals[] = {
    {F_RANGE, {0}}, {F_DICT, {0}}, {F_NAMESPACE, {0}}, {F_RAISE, {0}}, {F_STRFTIME, {0}},
};
static const char *const k_global_names[] = {"range", "dict", "namespace", "raise_exception",
                                             "strftime_now"};

bool loam__jinja_global(const char *name, size_t n, jinja_value *out) {
    for (size_t k = 0; k < sizeof k_globals / sizeof k_globals[0]; k++)
        if (strlen(k_global_names[k]) == n && !memcmp(k_global_names[k], name, n)) {
            *out = jv_undef();
            out->type = JV_FUNC;
            out->u.fn = &k_globals[k];
            return true;
        }
    return false;
}

bool loam__jinja_unsafe_method(jinja_value self, const char *name, size_t n) {
    static const char *const list_m[] = {"append", "clear",  "pop",    "reverse", "insert",
                                         "sort",   "extend", "remove", NULL};
    static const char *const dict_m[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
    const char *const *m = self.type == JV_LIST && !(self.flags & JF_TUPLE) ? list_m
                           : self.type == JV_DICT                           ? dict_m
                                                                            : NULL;
    for (; m && *m; m++)
        if (strlen(*m) == n && !memcmp(*m, name, n))
            return true;
    return false;
}

bool loam__jinja_method(jinja_render *r, jinja_value self, const char *name, size_t n,
                        jinja_value *out, loam_status *st) {
    *st = LOAM_OK;
    uint16_t id = self.type == JV_STR ? loam__jinja_str_method_id(name, n) : 0;
    for (size_t k = 0; !id && k < sizeof k_methods / sizeof k_methods[0]; k++) {
        if (k_methods[k].on != self.type || strlen(k_methods[k].name) != n ||
            memcmp(k_methods[k].name, name, n))
            continue;
        if (self.type == JV_LIST && (self.flags & JF_TUPLE) && k_methods[k].id == M_LCOPY)
            continue;
        id = k_methods[k].id;
    }
    if (id) {
        jinja_func *f = loam__jinja_alloc(A(r), sizeof *f);
        if (!f) {
            *st = loam__jinja_oom(r);
            return false;
        }
        f->id = id;
        f->self = self;
        *out = jv_undef();
        out->type = JV_FUNC;
        out->u.fn = f;
        return true;
    }
    return false;
}

// ---- globals and methods: calls ---------------------------------------------------------------

static loam_status call_range(jinja_render *r, const jinja_args *args, jinja_value *out) {
    if (args->n_kw)
        return loam__jinja_error(r, "range() takes no keyword arguments");
    if (args->n_pos < 1 || args->n_pos > 3)
        return loam__jinja_error(r, "range expected 1 to 3 arguments, got %zu", args->n_pos);
    int64_t a = 0, b, st = 1;
    if (args->n_pos == 1)
        TRY(loam__jinja_need_int(r, args->pos[0], "range() argument", &b));
    else {
        TRY(loam__jinja_need_int(r, args->pos[0], "range() argument", &a));
        TRY(loam__jinja_need_int(r, args->pos[1], "range() argument", &b));
        if (args->n_pos == 3)
            TRY(loam__jinja_need_int(r, args->pos[2], "range() argument", &st));
    }
    if (st == 0)
        return loam__jinja_error(r, "range() arg 3 must not be zero");
    double count_f = st > 0 ? ceil(((double)b - (double)a) / (double)st)
                            : ceil(((double)a - (double)b) / (double)-st);
    if (count_f < 0)
        count_f = 0;
    if (count_f > JINJA_MAX_RANGE)
        return loam__jinja_error(
            r, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
            JINJA_MAX_RANGE);
    jinja_list *l = loam__jinja_list_new(A(r), (size_t)count_f);
    if (!l && count_f > 0)
        return loam__jinja_oom(r);
    if (!l)
        l = loam__jinja_list_new(A(r), 0);
    if (!l)
        return loam__jinja_oom(r);
    for (int64_t x = a; st > 0 ? x < b : x > b; x += st) {
        if (l->n >= (size_t)count_f)
            break;
        l->v[l->n++] = jv_int(x);
        if (st > 0 ? x > INT64_MAX - st : x < INT64_MIN - st)
            break;
    }
    *out = jv_list(l);
    return loam__jinja_steps(r, l->n);
}

static loam_status call_kwdict(jinja_render *r, const jinja_args *args, bool ns, jinja_value *out) {
    jinja_dict *d = loam__jinja_dict_new(A(r));
    if (!d)
        return loam__jinja_oom(r);
    if (args->n_pos > 1)
        return loam__jinja_error(r, "%s expected at most 1 positional argument",
                                 ns ? "namespace" : "dict");
    if (args->n_pos == 1) {
        jinja_value src = args->pos[0];
        if (src.type != JV_DICT && src.type != JV_NS)
            return loam__jinja_error(r, "%s() positional argument must be a mapping",
                                     ns ? "namespace" : "dict");
        for (size_t i = 0; i < src.u.d->n; i++)
            if (!loam__jinja_dict_set(A(r), d, src.u.d->keys[i], src.u.d->vals[i]))
                return loam__jinja_oom(r);
    }
    for (size_t k = 0; k < args->n_kw; k++)
        if (!loam__jinja_dict_set(A(r), d, jv_str(args->kw_names[k], args->kw_lens[k]),
                                  args->kw_vals[k]))
            return loam__jinja_oom(r);
    *out = jv_dict(d);
    if (ns)
        out->type = JV_NS;
    return LOAM_OK;
}

static loam_status call_strftime(jinja_render *r, const jinja_args *args, jinja_value *out) {
    BIND("strftime_now", "format");
    if (!have[0])
        return loam__jinja_error(r, "strftime_now() missing required argument 'format'");
    TRY(loam__jinja_need_str(r, v[0], "strftime_now() format"));
    if (v[0].u.s.n > 200)
        return loam__jinja_error(r, "strftime_now() format too long");
    char fmt[208], res[1024];
    memcpy(fmt, v[0].u.s.p, v[0].u.s.n);
    fmt[v[0].u.s.n] = '\0';
    if (memchr(v[0].u.s.p, '\0', v[0].u.s.n))
        return loam__jinja_error(r, "strftime_now() format has a NUL");
    time_t now = (time_t)loam__jinja_now(r);
    struct tm tmv;
    if (!localtime_r(&now, &tmv))
        return loam__jinja_error(r, "strftime_now(): cannot read the clock");
    size_t n = fmt[0] ? strftime(res, sizeof res, fmt, &tmv) : 0;
    char *p = loam__jinja_alloc(A(r), n + 1);
    if (!p)
        return loam__jinja_oom(r);
    memcpy(p, res, n);
    *out = jv_str(p, n);
    return LOAM_OK;
}

static loam_status dict_items(jinja_render *r, const jinja_dict *d, int what, jinja_value *out) {
    jinja_list *l = loam__jinja_list_new(A(r), d->n);
    if (!l)
        return loam__jinja_oom(r);
    for (size_t i = 0; i < d->n; i++) {
        jinja_value x = what == 0   ? tuple2(r, d->keys[i], d->vals[i])
                        : what == 1 ? d->keys[i]
                                    : d->vals[i];
        if (what == 0 && x.type != JV_LIST)
            return loam__jinja_oom(r);
        l->v[l->n++] = x;
    }
    *out = jv_list(l);
    return loam__jinja_steps(r, d->n);
}

loam_status loam__jinja_call_builtin(jinja_render *r, const jinja_func *fn, const jinja_args *args,
                                     jinja_value *out) {
    jinja_value self = fn->self;
    switch (fn->id) {
    case F_RANGE:
        return call_range(r, args, out);
    case F_DICT:
        return call_kwdict(r, args, false, out);
    case F_NAMESPACE:
        return call_kwdict(r, args, true, out);
    case F_RAISE: {
        jinja_value msg = args->n_pos  ? args->pos[0]
                          : args->n_kw ? args->kw_vals[0]
                                       : jv_str("", 0);
        loam_status st;
        jinja_value s = str_of(r, msg, &st);
        TRY(st);
        return loam__jinja_error(r, "%.*s", (int)(s.u.s.n > 200 ? 200 : s.u.s.n), s.u.s.p);
    }
    case F_STRFTIME:
        return call_strftime(r, args, out);
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        if (args->n_pos || args->n_kw)
            return loam__jinja_error(r, "dict method takes no arguments");
        return dict_items(r, self.u.d, fn->id - M_ITEMS, out);
    }
    case M_GET: {
        BIND("get", "key", "default");
        if (!have[0])
            return loam__jinja_error(r, "get expected at least 1 argument");
        if (v[0].type == JV_LIST && !(v[0].flags & JF_TUPLE))
            return loam__jinja_error(r, "unhashable type: 'list'");
        int64_t at = loam__jinja_dict_find(self.u.d, v[0]);
        *out = at >= 0 ? self.u.d->vals[at] : have[1] ? v[1] : jv_none();
        return LOAM_OK;
    }
    case M_COPY: {
        jinja_dict *d = loam__jinja_dict_new(A(r));
        if (!d)
            return loam__jinja_oom(r);
        for (size_t i = 0; i < self.u.d->n; i++)
            if (!loam__jinja_dict_set(A(r), d, self.u.d->keys[i], self.u.d->vals[i]))
                return loam__jinja_oom(r);
        *out = jv_dict(d);
        return loam__jinja_steps(r, d->n);
    }
    case M_LINDEX:
    case M_LCOUNT: {
        BIND(fn->id == M_LINDEX ? "index" : "count", "value");
        if (!have[0])
            return loam__jinja_error(r, "takes exactly one argument");
        int64_t count = 0, first = -1;
        for (size_t i = 0; i < self.u.l->n; i++)
            if (loam__jinja_equal(self.u.l->v[i], v[0])) {
                if (first < 0)
                    first = (int64_t)i;
                count++;
            }
        TRY(loam__jinja_steps(r, self.u.l->n));
        if (fn->id == M_LCOUNT)
            *out = jv_int(count);
        else if (first < 0)
            return loam__jinja_error(r, "value is not in list");
        else
            *out = jv_int(first);
        return LOAM_OK;
    }
    case M_LCOPY: {
        jinja_list *l = loam__jinja_list_new(A(r), self.u.l->n);
        if (!l)
            return loam__jinja_oom(r);
        if (self.u.l->n)
            memcpy(l->v, self.u.l->v, self.u.l->n * sizeof(jinja_value));
        l->n = self.u.l->n;
        *out = jv_list(l);
        return loam__jinja_steps(r, l->n);
    }
    case M_CYCLE: {
        if (args->n_pos == 0)
            return loam__jinja_error(r, "no items for cycling given");
        *out = args->pos[self.u.loop->index0 % args->n_pos];
        return LOAM_OK;
    }
    case M_CHANGED: {
        jinja_list *l = loam__jinja_list_new(A(r), args->n_pos);
        if (!l)
            return loam__jinja_oom(r);
        for (size_t i = 0; i < args->n_pos; i++)
            l->v[l->n++] = args->pos[i];
        jinja_value cur = jv_list(l);
        jinja_loop *L = self.u.loop;
        bool changed = !L->changed_init || !loam__jinja_equal(L->changed_last, cur);
        L->changed_init = true;
        L->changed_last = cur;
        *out = jv_bool(changed);
        return LOAM_OK;
    }
    default:
        if (self.type == JV_STR)
            return loam__jinja_str_method(r, fn->id, self, args, out);
        return loam__jinja_error(r, "internal error: unknown builtin");
    }
}

// ---- tests ------------------------------------------------------------------------------------

static loam_status test_arg(jinja_render *r, const char *name, const jinja_args *args,
                            jinja_value *out) {
    if (args->n_pos + args->n_kw != 1)
        return loam__jinja_error(r, "test '%s' takes one argument", name);
    *out = args->n_pos ? args->pos[0] : args->kw_vals[0];
    return LOAM_OK;
}

static bool is_num_v(jinja_value v) {
    return v.type == JV_BOOL || v.type == JV_INT || v.type == JV_FLOAT;
}

loam_status loam__jinja_test(jinja_render *r, const char *name, size_t n, jinja_value v,
                             const jinja_args *args, bool *res, bool *found) {
    *found = true;
#define IS(s) (n == sizeof(s) - 1 && !memcmp(name, s, n))
    jinja_value arg;
    if (IS("defined"))
        *res = v.type != JV_UNDEF;
    else if (IS("undefined"))
        *res = v.type == JV_UNDEF;
    else if (IS("none"))
        *res = v.type == JV_NONE;
    else if (IS("boolean"))
        *res = v.type == JV_BOOL;
    else if (IS("true"))
        *res = v.type == JV_BOOL && v.u.b;
    else if (IS("false"))
        *res = v.type == JV_BOOL && !v.u.b;
    else if (IS("integer"))
        *res = v.type == JV_INT;
    else if (IS("float"))
        *res = v.type == JV_FLOAT;
    else if (IS("number"))
        *res = is_num_v(v);
    else if (IS("string"))
        *res = v.type == JV_STR;
    else if (IS("mapping"))
        *res = v.type == JV_DICT;
    else if (IS("iterable"))
        *res = v.type == JV_STR || v.type == JV_LIST || v.type == JV_DICT || v.type == JV_UNDEF ||
               v.type == JV_LOOP;
    else if (IS("sequence"))
        *res = v.type == JV_STR || v.type == JV_LIST || v.type == JV_DICT || v.type == JV_UNDEF;
    else if (IS("callable"))
        *res = v.type == JV_MACRO || v.type == JV_FUNC || v.type == JV_LOOP || v.type == JV_UNDEF;
    else if (IS("escaped"))
        *res = false;
    else if (IS("lower") || IS("upper")) {
        loam_status st;
        jinja_value s = str_of(r, v, &st);
        TRY(st);
        *res = loam__jinja_str_is(s, IS("upper") ? 4 : 5);
    } else if (IS("odd") || IS("even") || IS("divisibleby")) {
        jinja_value d = jv_int(2);
        if (IS("divisibleby"))
            TRY(test_arg(r, "divisibleby", args, &d));
        if (!is_num_v(v)) {
            if (v.type == JV_UNDEF)
                return loam__jinja_undefined_error(r, v);
            return loam__jinja_error(r, "unsupported operand type(s) for %%: '%s' and 'int'",
                                     loam__jinja_type_name(v));
        }
        if (!is_num_v(d))
            return loam__jinja_error(r, "divisibleby needs a number");
        if (v.type != JV_FLOAT && d.type != JV_FLOAT) {
            int64_t a = v.type == JV_BOOL ? v.u.b : v.u.i, b = d.type == JV_BOOL ? d.u.b : d.u.i;
            if (b == 0)
                return loam__jinja_error(r, "integer modulo by zero");
            int64_t m = b == -1 ? 0 : a % b;
            *res = IS("odd") ? m != 0 : m == 0;
        } else {
            double a = v.type == JV_FLOAT ? v.u.f : (double)(v.type == JV_BOOL ? v.u.b : v.u.i);
            double b = d.type == JV_FLOAT ? d.u.f : (double)(d.type == JV_BOOL ? d.u.b : d.u.i);
            if (b == 0)
                return loam__jinja_error(r, "float modulo by zero");
            double m = fmod(a, b);
            *res = IS("odd") ? m != 0 : m == 0;
        }
    } else if (IS("eq") || IS("equalto") || IS("==")) {
        TRY(test_arg(r, "eq", args, &arg));
        *res = loam__jinja_equal(v, arg);
    } else if (IS("ne") || IS("!=")) {
        TRY(test_arg(r, "ne", args, &arg));
        *res = !loam__jinja_equal(v, arg);
    } else if (IS("lt") || IS("lessthan") || IS("<") || IS("le") || IS("<=") || IS("gt") ||
               IS("greaterthan") || IS(">") || IS("ge") || IS(">=")) {
        TRY(test_arg(r, "comparison", args, &arg));
        bool gt_side = IS("gt") || IS("greaterthan") || IS(">") || IS("ge") || IS(">=");
        bool or_eq = IS("le") || IS("<=") || IS("ge") || IS(">=");
        if (v.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, v);
        if (arg.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, arg);
        bool lt;
        if (loam__jinja_less(gt_side ? arg : v, gt_side ? v : arg, &lt))
            return loam__jinja_error(r,
                                     "comparison not supported between instances of '%s' and '%s'",
                                     loam__jinja_type_name(v), loam__jinja_type_name(arg));
        *res = lt || (or_eq &&loam__jinja_equal(v, arg));
    } else if (IS("in")) {
        TRY(test_arg(r, "in", args, &arg));
        if (arg.type == JV_STR) {
            TRY(loam__jinja_need_str(r, v, "'in <string>' left operand"));
            *res = loam__jinja_find_bytes(arg.u.s.p, arg.u.s.n, v.u.s.p, v.u.s.n) != NULL;
        } else if (arg.type == JV_DICT)
            *res = loam__jinja_dict_find(arg.u.d, v) >= 0;
        else {
            jinja_list *l;
            TRY(loam__jinja_iterate(r, arg, &l));
            *res = false;
            for (size_t i = 0; i < l->n && !*res; i++)
                *res = loam__jinja_equal(l->v[i], v);
        }
    } else if (IS("sameas")) {
        TRY(test_arg(r, "sameas", args, &arg));
        if (v.type != arg.type)
            *res = false;
        else if (v.type == JV_LIST)
            *res = v.u.l == arg.u.l;
        else if (v.type == JV_DICT || v.type == JV_NS)
            *res = v.u.d == arg.u.d;
        else if (v.type == JV_STR)
            *res = v.u.s.p == arg.u.s.p && v.u.s.n == arg.u.s.n;
        else
            *res = loam__jinja_equal(v, arg);
    } else {
        *found = false;
    }
#undef IS
    return LOAM_OK;
}

// ---- filters ----------------------------------------------------------------------------------

/* select/reject/selectattr/rejectattr and map share this: apply a test (or truthiness) to each
 * item or to item.attr. */
static loam_status select_items(jinja_render *r, jinja_value seq, const jinja_args *args,
                                bool use_attr, bool keep, jinja_value *out) {
    jinja_list *items;
    TRY(loam__jinja_iterate(r, seq, &items));
    size_t first = 0;
    jinja_value attr = jv_undef(), test = jv_undef();
    if (use_attr) {
        if (args->n_pos < 1)
            return loam__jinja_error(r, "selectattr/rejectattr need an attribute name");
        attr = args->pos[first++];
    }
    if (args->n_pos > first)
        test = args->pos[first++];
    if (test.type != JV_UNDEF)
        TRY(loam__jinja_need_str(r, test, "test name"));
    jinja_args targs = no_args();
    targs.pos = args->pos + first;
    targs.n_pos = args->n_pos - first;
    targs.kw_names = args->kw_names;
    targs.kw_lens = args->kw_lens;
    targs.kw_vals = args->kw_vals;
    targs.n_kw = args->n_kw;
    jinja_list *l = loam__jinja_list_new(A(r), 0);
    if (!l)
        return loam__jinja_oom(r);
    for (size_t i = 0; i < items->n; i++) {
        jinja_value x = items->v[i];
        if (use_attr)
            TRY(attr_path(r, x, attr, &x));
        bool ok;
        if (test.type == JV_UNDEF)
            ok = loam__jinja_truthy(x);
        else {
            bool found;
            TRY(loam__jinja_test(r, test.u.s.p, test.u.s.n, x, &targs, &ok, &found));
            if (!found)
                return loam__jinja_error(r, "no test named '%.*s'",
                                         (int)(test.u.s.n > 40 ? 40 : test.u.s.n), test.u.s.p);
        }
        if (ok == keep && !loam__jinja_list_push(A(r), l, items->v[i]))
            return loam__jinja_oom(r);
    }
    *out = jv_list(l);
    return loam__jinja_steps(r, items->n);
}

static loam_status f_map(jinja_render *r, jinja_value seq, const jinja_args *args,
                         jinja_value *out) {
    jinja_list *items;
    TRY(loam__jinja_iterate(r, seq, &items));
    jinja_list *l = loam__jinja_list_new(A(r), items->n);
    if (!l)
        return loam__jinja_oom(r);
    bool by_attr = false;
    jinja_value attr = jv_undef(), dflt = jv_undef();
    for (size_t k = 0; k < args->n_kw; k++) {
        if (args->kw_lens[k] == 9 && !memcmp(args->kw_names[k], "attribute", 9)) {
            by_attr = true;
            attr = args->kw_vals[k];
        } else if (args->kw_lens[k] == 7 && !memcmp(args->kw_names[k], "default", 7)) {
            dflt = args->kw_vals[k];
        }
    }
    if (by_attr) {
        for (size_t i = 0; i < items->n; i++) {
            jinja_value x;
            TRY(attr_path(r, items->v[i], attr, &x));
            if (x.type == JV_UNDEF && dflt.type != JV_UNDEF)
                x = dflt;
            l->v[l->n++] = x;
        }
    } else {
        if (args->n_pos < 1)
            return loam__jinja_error(r, "map() needs a filter name or attribute=");
        TRY(loam__jinja_need_str(r, args->pos[0], "filter name"));
        jinja_args fargs = *args;
        fargs.pos = args->pos + 1;
        fargs.n_pos = args->n_pos - 1;
        for (size_t i = 0; i < items->n; i++) {
            bool found;
            TRY(loam__jinja_filter(r, args->pos[0].u.s.p, args->pos[0].u.s.n, items->v[i], &fargs,
                                   &l->v[l->n], &found));
            if (!found)
                return loam__jinja_error(r, "no filter named '%.*s'",
                                         (int)(args->pos[0].u.s.n > 40 ? 40 : args->pos[0].u.s.n),
                                         args->pos[0].u.s.p);
            l->n++;
        }
    }
    *out = jv_list(l);
    return loam__jinja_steps(r, items->n);
}

static loam_status f_tojson(jinja_render *r, jinja_value v0, const jinja_args *args,
                            jinja_value *out) {
    BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    const char *indent = NULL;
    size_t indent_len = 0;
    char spaces[256];
    if (have[1] && v[1].type != JV_NONE) {
        if (v[1].type == JV_STR) {
            indent = v[1].u.s.p;
            indent_len = v[1].u.s.n;
        } else {
            int64_t k;
            TRY(loam__jinja_need_int(r, v[1], "indent", &k));
            if (k > (int64_t)sizeof spaces)
                return loam__jinja_error(r, "tojson indent too large");
            if (k < 0)
                k = 0;
            memset(spaces, ' ', (size_t)k);
            indent = spaces;
            indent_len = (size_t)k;
        }
    }
    char seps[2][64];
    const char *item_sep = NULL, *key_sep = NULL;
    if (have[2] && v[2].type != JV_NONE) {
        if (v[2].type != JV_LIST || v[2].u.l->n != 2 || v[2].u.l->v[0].type != JV_STR ||
            v[2].u.l->v[1].type != JV_STR)
            return loam__jinja_error(r, "tojson separators must be a pair of strings");
        for (int k = 0; k < 2; k++) {
            jinja_value s = v[2].u.l->v[k];
            if (s.u.s.n >= sizeof seps[k] || memchr(s.u.s.p, '\0', s.u.s.n))
                return loam__jinja_error(r, "tojson separator too long");
            memcpy(seps[k], s.u.s.p, s.u.s.n);
            seps[k][s.u.s.n] = '\0';
        }
        item_sep = seps[0];
        key_sep = seps[1];
    }
    jinja_buf b = {.a = A(r)};
    char why[160];
    if (loam__jinja_json_dump(&b, v0, loam__jinja_truthy_arg(v[0], false), indent, indent_len,
                              item_sep, key_sep, loam__jinja_truthy_arg(v[3], false), why,
                              sizeof why))
        return loam__jinja_error(r, "%s", why);
    return loam__jinja_buf_done(r, &b, out);
}

static loam_status f_indent(jinja_render *r, jinja_value s0, const jinja_args *args,
                            jinja_value *out) {
    BIND("indent", "width", "first", "blank");
    loam_status st;
    jinja_value s = str_of(r, s0, &st);
    TRY(st);
    jinja_value ind;
    if (v[0].type == JV_STR)
        ind = v[0];
    else {
        int64_t w = 4;
        if (have[0])
            TRY(loam__jinja_need_int(r, v[0], "indent width", &w));
        if (w < 0)
            w = 0;
        if (w > 4096)
            return loam__jinja_error(r, "indent width too large");
        char *p = loam__jinja_alloc(A(r), (size_t)w + 1);
        if (!p)
            return loam__jinja_oom(r);
        memset(p, ' ', (size_t)w);
        ind = jv_str(p, (size_t)w);
    }
    bool first = loam__jinja_truthy_arg(v[1], false), blank = loam__jinja_truthy_arg(v[2], false);
    /* s += "\n"; lines = s.splitlines() */
    char *tmp = loam__jinja_alloc(A(r), s.u.s.n + 1);
    if (!tmp)
        return loam__jinja_oom(r);
    memcpy(tmp, s.u.s.p, s.u.s.n);
    tmp[s.u.s.n] = '\n';
    jinja_list *lines;
    TRY(loam__jinja_str_splitlines(r, jv_str(tmp, s.u.s.n + 1), false, &lines));
    jinja_buf b = {.a = A(r)};
    if (first)
        loam__jinja_buf_put(&b, ind.u.s.p, ind.u.s.n);
    for (size_t i = 0; i < lines->n; i++) {
        jinja_value ln = lines->v[i];
        if (i) {
            loam__jinja_buf_putc(&b, '\n');
            if (blank || ln.u.s.n)
                loam__jinja_buf_put(&b, ind.u.s.p, ind.u.s.n);
        }
        loam__jinja_buf_put(&b, ln.u.s.p, ln.u.s.n);
    }
    return loam__jinja_buf_done(r, &b, out);
}

static loam_status f_round(jinja_render *r, jinja_value x, const jinja_args *args,
                           jinja_value *out) {
    BIND("round", "precision", "method");
    int64_t prec = 0;
    if (have[0])
        TRY(loam__jinja_need_int(r, v[0], "precision", &prec));
    int method = 0;
    if (have[1]) {
        TRY(loam__jinja_need_str(r, v[1], "method"));
        if (v[1].u.s.n == 6 && !memcmp(v[1].u.s.p, "common", 6))
            method = 0;
        else if (v[1].u.s.n == 4 && !memcmp(v[1].u.s.p, "ceil", 4))
            method = 1;
        else if (v[1].u.s.n == 5 && !memcmp(v[1].u.s.p, "floor", 5))
            method = 2;
        else
            return loam__jinja_error(r, "method must be common, ceil or floor");
    }
    if (x.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, x);
    if (x.type == JV_INT || x.type == JV_BOOL) {
        int64_t i = x.type == JV_INT ? x.u.i : x.u.b;
        if (method == 0 && prec >= 0) { /* round(int, n) stays an int */
            *out = jv_int(i);
            return LOAM_OK;
        }
        x = jv_float((double)i);
    }
    if (x.type != JV_FLOAT)
        return loam__jinja_error(r, "round() needs a number, not %s", loam__jinja_type_name(x));
    double f = x.u.f;
    if (prec > 300)
        prec = 300;
    if (prec < -300)
        prec = -300;
    if (!isfinite(f)) {
        *out = x;
        return LOAM_OK;
    }
    if (method == 0) {
        /* Python round(): correctly rounded decimal, ties to even, on the exact binary value */
        if (prec >= 0) {
            char tmp[400];
            snprintf(tmp, sizeof tmp, "%.*f", (int)prec, f);
            *out = jv_float(strtod(tmp, NULL));
        } else {
            double p10 = pow(10.0, (double)-prec);
            double y = f / p10, z = nearbyint(y);
            *out = jv_float(z * p10);
        }
        return LOAM_OK;
    }
    double p10 = pow(10.0, (double)prec);
    *out = jv_float((method == 1 ? ceil(f * p10) : floor(f * p10)) / p10);
    return LOAM_OK;
}

/* Python int(str): optional sign, digits with single underscores, surrounding whitespace. */
static bool parse_py_int(jinja_value s, int64_t base, int64_t *out) {
    const char *p = s.u.s.p, *end = p + s.u.s.n;
    while (p < end && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
        p++;
    while (end > p && (end[-1] == ' ' || (end[-1] >= '\t' && end[-1] <= '\r')))
        end--;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p + 1 < end && p[0] == '0' && base == 16 && (p[1] == 'x' || p[1] == 'X'))
        p += 2;
    if (p >= end)
        return false;
    uint64_t v = 0;
    bool prev_digit = false;
    for (; p < end; p++) {
        if (*p == '_' && prev_digit && p + 1 < end && p[1] != '_') {
            prev_digit = false;
            continue;
        }
        int d = (*p >= '0' && *p <= '9')   ? *p - '0'
                : (*p >= 'a' && *p <= 'z') ? *p - 'a' + 10
                : (*p >= 'A' && *p <= 'Z') ? *p - 'A' + 10
                                           : 99;
        if (d >= base)
            return false;
        if (loam__mul_u64(v, (uint64_t)base, &v) || loam__add_u64(v, (uint64_t)d, &v) ||
            v > (uint64_t)INT64_MAX + 1)
            return false;
        prev_digit = true;
    }
    if (!prev_digit)
        return false;
    if (!neg && v > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool parse_py_float(jinja_value s, double *out) {
    char tmp[128];
    const char *p = s.u.s.p, *end = p + s.u.s.n;
    while (p < end && loam__jinja_isspace((unsigned char)*p))
        p++;
    while (end > p && loam__jinja_isspace((unsigned char)end[-1]))
        end--;
    size_t n = 0;
    for (; p < end && n + 1 < sizeof tmp; p++)
        if (*p != '_')
            tmp[n++] = *p;
    if (p < end || n == 0)
        return false;
    tmp[n] = '\0';
    for (size_t k = 0; k < n; k++) /* strtod also takes hex floats, Python does not */
        if (tmp[k] == 'x' || tmp[k] == 'X' || tmp[k] == 'p' || tmp[k] == 'P')
            return false;
    char *e;
    errno = 0;
    double f = strtod(tmp, &e);
    if (*e)
        return false;
    *out = f;
    return true;
}

static loam_status f_int(jinja_render *r, jinja_value x, const jinja_args *args, jinja_value *out) {
    BIND("int", "default", "base");
    jinja_value dflt = have[0] ? v[0] : jv_int(0);
    int64_t base = 10;
    if (have[1])
        TRY(loam__jinja_need_int(r, v[1], "base", &base));
    if (base < 2 || base > 36)
        return loam__jinja_error(r, "int() base must be >= 2 and <= 36");
    int64_t i;
    double f;
    switch (x.type) {
    case JV_INT:
        *out = x;
        return LOAM_OK;
    case JV_BOOL:
        *out = jv_int(x.u.b);
        return LOAM_OK;
    case JV_FLOAT:
        if (!isfinite(x.u.f))
            return loam__jinja_error(r, "cannot convert float %s to integer",
                                     isnan(x.u.f) ? "NaN" : "infinity");
        if (fabs(x.u.f) >= 9.2e18)
            return loam__jinja_error(r, "integer out of the 64-bit range");
        *out = jv_int((int64_t)x.u.f);
        return LOAM_OK;
    case JV_STR:
        if (parse_py_int(x, base, &i))
            *out = jv_int(i);
        else if (parse_py_float(x, &f) && isfinite(f) && fabs(f) < 9.2e18)
            *out = jv_int((int64_t)f);
        else if (parse_py_float(x, &f) && !isfinite(f))
            return loam__jinja_error(r, "cannot convert float infinity to integer");
        else
            *out = dflt;
        return LOAM_OK;
    default:
        *out = dflt;
        return LOAM_OK;
    }
}

static loam_status f_float(jinja_render *r, jinja_value x, const jinja_args *args,
                           jinja_value *out) {
    BIND("float", "default");
    jinja_value dflt = have[0] ? v[0] : jv_float(0.0);
    double f;
    switch (x.type) {
    case JV_FLOAT:
        *out = x;
        return LOAM_OK;
    case JV_INT:
        *out = jv_float((double)x.u.i);
        return LOAM_OK;
    case JV_BOOL:
        *out = jv_float(x.u.b);
        return LOAM_OK;
    case JV_STR:
        *out = parse_py_float(x, &f) ? jv_float(f) : dflt;
        return LOAM_OK;
    default:
        *out = dflt;
        return LOAM_OK;
    }
}

static loam_status f_sort_like(jinja_render *r, jinja_value seq, const jinja_args *args, int kind,
                               jinja_value *out) {
    /* kind 0 sort, 1 unique, 2 min, 3 max */
    static const char *const fname[] = {"sort", "unique", "min", "max"};
    jinja_value v[3];
    bool have[3];
    bool reverse = false;
    if (kind == 0) {
        static const char *const names[] = {"reverse", "case_sensitive", "attribute"};
        TRY(loam__jinja_bind(r, fname[kind], args, names, 3, v, have));
        reverse = loam__jinja_truthy_arg(v[0], false);
        v[0] = v[1];
        v[1] = v[2];
        have[0] = have[1];
        have[1] = have[2];
    } else {
        static const char *const names[] = {"case_sensitive", "attribute"};
        TRY(loam__jinja_bind(r, fname[kind], args, names, 2, v, have));
    }
    bool cs = loam__jinja_truthy_arg(v[0], false);
    jinja_list *items;
    TRY(loam__jinja_iterate(r, seq, &items));
    keyed *k = loam__jinja_alloc(A(r), (items->n + 1) * sizeof *k);
    if (!k)
        return loam__jinja_oom(r);
    /* sort(attribute="a,b") sorts by several attributes (jinja2's make_multi_attrgetter) */
    size_t n_attr = 1;
    if (kind == 0 && have[1] && v[1].type == JV_STR)
        for (size_t c = 0; c < v[1].u.s.n; c++)
            n_attr += v[1].u.s.p[c] == ',';
    for (size_t i = 0; i < items->n; i++) {
        jinja_value key = items->v[i];
        if (n_attr > 1) {
            jinja_list *parts = loam__jinja_list_new(A(r), n_attr);
            if (!parts)
                return loam__jinja_oom(r);
            const char *a = v[1].u.s.p, *end = a + v[1].u.s.n;
            while (a <= end) {
                const char *comma = memchr(a, ',', (size_t)(end - a));
                if (!comma)
                    comma = end;
                jinja_value part;
                TRY(attr_path(r, items->v[i], jv_str(a, (size_t)(comma - a)), &part));
                TRY(sort_key(r, part, cs, &parts->v[parts->n++]));
                a = comma + 1;
            }
            k[i].key = jv_list(parts);
            k[i].key.flags = JF_TUPLE;
            k[i].val = items->v[i];
            continue;
        }
        if (have[1] && v[1].type != JV_NONE)
            TRY(attr_path(r, key, v[1], &key));
        TRY(sort_key(r, key, cs, &k[i].key));
        k[i].val = items->v[i];
    }
    if (kind == 1) {
        jinja_list *l = loam__jinja_list_new(A(r), 0);
        jinja_list *seen = loam__jinja_list_new(A(r), 0);
        if (!l || !seen)
            return loam__jinja_oom(r);
        for (size_t i = 0; i < items->n; i++) {
            bool dup = false;
            for (size_t j = 0; j < seen->n && !dup; j++)
                dup = loam__jinja_equal(seen->v[j], k[i].key);
            TRY(loam__jinja_steps(r, seen->n));
            if (dup)
                continue;
            if (!loam__jinja_list_push(A(r), seen, k[i].key) ||
                !loam__jinja_list_push(A(r), l, k[i].val))
                return loam__jinja_oom(r);
        }
        *out = jv_list(l);
        return LOAM_OK;
    }
    if (kind >= 2) {
        if (items->n == 0) {
            *out = jv_undef_named("No aggregated item, sequence was empty.", 39);
            return LOAM_OK;
        }
        size_t best = 0;
        for (size_t i = 1; i < items->n; i++) {
            bool lt;
            if (loam__jinja_less(kind == 2 ? k[i].key : k[best].key,
                                 kind == 2 ? k[best].key : k[i].key, &lt))
                return loam__jinja_error(r, "'<' not supported between these types");
            if (lt)
                best = i;
        }
        *out = k[best].val;
        return LOAM_OK;
    }
    TRY(sort_keyed(r, k, items->n, reverse));
    jinja_list *l = loam__jinja_list_new(A(r), items->n);
    if (!l)
        return loam__jinja_oom(r);
    for (size_t i = 0; i < items->n; i++)
        l->v[l->n++] = k[i].val;
    *out = jv_list(l);
    return LOAM_OK;
}

static loam_status f_dictsort(jinja_render *r, jinja_value d, const jinja_args *args,
                              jinja_value *out) {
    BIND("dictsort", "case_sensitive", "by", "reverse");
    if (d.type != JV_DICT) {
        if (d.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, d);
        return loam__jinja_error(r, "dictsort needs a mapping, not %s", loam__jinja_type_name(d));
    }
    bool by_value = false;
    if (have[1]) {
        TRY(loam__jinja_need_str(r, v[1], "by"));
        if (v[1].u.s.n == 5 && !memcmp(v[1].u.s.p, "value", 5))
            by_value = true;
        else if (!(v[1].u.s.n == 3 && !memcmp(v[1].u.s.p, "key", 3)))
            return loam__jinja_error(r, "You can only sort by either \"key\" or \"value\"");
    }
    keyed *k = loam__jinja_alloc(A(r), (d.u.d->n + 1) * sizeof *k);
    if (!k)
        return loam__jinja_oom(r);
    for (size_t i = 0; i < d.u.d->n; i++) {
        TRY(sort_key(r, by_value ? d.u.d->vals[i] : d.u.d->keys[i],
                     loam__jinja_truthy_arg(v[0], false), &k[i].key));
        k[i].val = tuple2(r, d.u.d->keys[i], d.u.d->vals[i]);
        if (k[i].val.type != JV_LIST)
            return loam__jinja_oom(r);
    }
    TRY(sort_keyed(r, k, d.u.d->n, loam__jinja_truthy_arg(v[2], false)));
    jinja_list *l = loam__jinja_list_new(A(r), d.u.d->n);
    if (!l)
        return loam__jinja_oom(r);
    for (size_t i = 0; i < d.u.d->n; i++)
        l->v[l->n++] = k[i].val;
    *out = jv_list(l);
    return LOAM_OK;
}

static loam_status f_escape(jinja_render *r, jinja_value x, jinja_value *out) {
    loam_status st;
    jinja_value s = str_of(r, x, &st);
    TRY(st);
    jinja_buf b = {.a = A(r)};
    for (size_t i = 0; i < s.u.s.n; i++) {
        switch (s.u.s.p[i]) {
        case '&':
            loam__jinja_buf_put(&b, "&amp;", 5);
            break;
        case '<':
            loam__jinja_buf_put(&b, "&lt;", 4);
            break;
        case '>':
            loam__jinja_buf_put(&b, "&gt;", 4);
            break;
        case '"':
            loam__jinja_buf_put(&b, "&#34;", 5);
            break;
        case '\'':
            loam__jinja_buf_put(&b, "&#39;", 5);
            break;
        default:
            loam__jinja_buf_putc(&b, s.u.s.p[i]);
        }
    }
    return loam__jinja_buf_done(r, &b, out);
}

static loam_status f_length(jinja_render *r, jinja_value x, jinja_value *out) {
    switch (x.type) {
    case JV_UNDEF:
        *out = jv_int(0);
        return LOAM_OK;
    case JV_STR:
        *out = jv_int((int64_t)loam__jinja_utf8_len(x.u.s.p, x.u.s.n));
        return LOAM_OK;
    case JV_LIST:
        *out = jv_int((int64_t)x.u.l->n);
        return LOAM_OK;
    case JV_DICT:
        *out = jv_int((int64_t)x.u.d->n);
        return LOAM_OK;
    case JV_LOOP:
        *out = jv_int((int64_t)x.u.loop->items->n);
        return LOAM_OK;
    default:
        return loam__jinja_error(r, "object of type '%s' has no len()", loam__jinja_type_name(x));
    }
}

static loam_status f_first_last(jinja_render *r, jinja_value x, bool last, jinja_value *out) {
    if (x.type == JV_UNDEF) {
        *out = jv_undef_named(
            last ? "No last item, sequence was empty." : "No first item, sequence was empty.", 34);
        return LOAM_OK;
    }
    if (x.type != JV_LIST && x.type != JV_STR && x.type != JV_DICT)
        return loam__jinja_error(r, "'%s' object is not iterable", loam__jinja_type_name(x));
    jinja_list *l;
    TRY(loam__jinja_iterate(r, x, &l));
    if (l->n == 0)
        *out = jv_undef_named(
            last ? "No last item, sequence was empty." : "No first item, sequence was empty.", 34);
    else
        *out = l->v[last ? l->n - 1 : 0];
    return LOAM_OK;
}

static loam_status f_batch(jinja_render *r, jinja_value x, const jinja_args *args,
                           jinja_value *out) {
    BIND("batch", "linecount", "fill_with");
    int64_t n;
    if (!have[0])
        return loam__jinja_error(r, "batch() missing linecount");
    TRY(loam__jinja_need_int(r, v[0], "linecount", &n));
    if (n <= 0)
        return loam__jinja_error(r, "batch() linecount must be positive");
    jinja_list *items, *res = loam__jinja_list_new(A(r), 0), *cur = NULL;
    if (!res)
        return loam__jinja_oom(r);
    TRY(loam__jinja_iterate(r, x, &items));
    for (size_t i = 0; i < items->n; i++) {
        if (!cur || (int64_t)cur->n == n) {
            cur = loam__jinja_list_new(A(r), 0);
            if (!cur || !loam__jinja_list_push(A(r), res, jv_list(cur)))
                return loam__jinja_oom(r);
        }
        if (!loam__jinja_list_push(A(r), cur, items->v[i]))
            return loam__jinja_oom(r);
    }
    if (cur && have[1] && v[1].type != JV_NONE)
        while ((int64_t)cur->n < n)
            if (!loam__jinja_list_push(A(r), cur, v[1]))
                return loam__jinja_oom(r);
    *out = jv_list(res);
    return LOAM_OK;
}

loam_status loam__jinja_filter(jinja_render *r, const char *name, size_t n, jinja_value x,
                               const jinja_args *args, jinja_value *out, bool *found) {
    *found = true;
    loam_status st;
#define IS(s) (n == sizeof(s) - 1 && !memcmp(name, s, n))
    if (IS("safe")) {
        *out = x;
        return LOAM_OK;
    }
    if (IS("default") || IS("d")) {
        BIND("default", "default_value", "boolean");
        bool use =
            x.type == JV_UNDEF || (loam__jinja_truthy_arg(v[1], false) && !loam__jinja_truthy(x));
        *out = use ? (have[0] ? v[0] : jv_str("", 0)) : x;
        return LOAM_OK;
    }
    if (IS("length") || IS("count"))
        return f_length(r, x, out);
    if (IS("tojson"))
        return f_tojson(r, x, args, out);
    if (IS("string")) {
        *out = str_of(r, x, &st);
        return st;
    }
    if (IS("trim")) {
        BIND("trim", "chars");
        jinja_value s = str_of(r, x, &st);
        TRY(st);
        return loam__jinja_str_strip(r, s, v[0], 3, out);
    }
    if (IS("upper") || IS("lower") || IS("capitalize") || IS("title")) {
        jinja_value s = str_of(r, x, &st);
        TRY(st);
        if (IS("upper"))
            return loam__jinja_str_case(r, s, JCASE_UPPER, out);
        if (IS("lower"))
            return loam__jinja_str_case(r, s, JCASE_LOWER, out);
        if (IS("capitalize"))
            return loam__jinja_str_case(r, s, JCASE_CAPITALIZE, out);
        return loam__jinja_str_case(r, s, JCASE_JINJA_TITLE, out);
    }
    if (IS("replace")) {
        BIND("replace", "old", "new", "count");
        if (!have[0] || !have[1])
            return loam__jinja_error(r, "replace() needs old and new");
        jinja_value s = str_of(r, x, &st);
        TRY(st);
        int64_t count = -1;
        if (have[2] && v[2].type != JV_NONE)
            TRY(loam__jinja_need_int(r, v[2], "count", &count));
        bool oom1, oom2;
        jinja_value o = loam__jinja_to_str(A(r), v[0], &oom1),
                    w = loam__jinja_to_str(A(r), v[1], &oom2);
        if (oom1 || oom2)
            return loam__jinja_oom(r);
        return loam__jinja_str_replace(r, s, o, w, count, out);
    }
    if (IS("join")) {
        BIND("join", "d", "attribute");
        jinja_list *items;
        TRY(loam__jinja_iterate(r, x, &items));
        jinja_value sep = have[0] ? str_of(r, v[0], &st) : jv_str("", 0);
        if (have[0])
            TRY(st);
        jinja_buf b = {.a = A(r)};
        for (size_t i = 0; i < items->n; i++) {
            jinja_value it = items->v[i];
            if (have[1] && v[1].type != JV_NONE)
                TRY(attr_path(r, it, v[1], &it));
            if (i)
                loam__jinja_buf_put(&b, sep.u.s.p, sep.u.s.n);
            loam__jinja_str(&b, it);
        }
        return loam__jinja_buf_done(r, &b, out);
    }
    if (IS("items")) {
        if (x.type == JV_UNDEF) {
            jinja_list *l = loam__jinja_list_new(A(r), 0);
            if (!l)
                return loam__jinja_oom(r);
            *out = jv_list(l);
            return LOAM_OK;
        }
        if (x.type != JV_DICT)
            return loam__jinja_error(r, "Can only get item pairs from a mapping.");
        return dict_items(r, x.u.d, 0, out);
    }
    if (IS("first") || IS("last"))
        return f_first_last(r, x, IS("last"), out);
    if (IS("list")) {
        jinja_list *items;
        if (x.type != JV_LIST && x.type != JV_STR && x.type != JV_DICT && x.type != JV_UNDEF)
            return loam__jinja_error(r, "'%s' object is not iterable", loam__jinja_type_name(x));
        TRY(loam__jinja_iterate(r, x, &items));
        jinja_list *l = loam__jinja_list_new(A(r), items->n);
        if (!l)
            return loam__jinja_oom(r);
        if (items->n)
            memcpy(l->v, items->v, items->n * sizeof(jinja_value));
        l->n = items->n;
        *out = jv_list(l);
        return LOAM_OK;
    }
    if (IS("int"))
        return f_int(r, x, args, out);
    if (IS("float"))
        return f_float(r, x, args, out);
    if (IS("abs")) {
        if (x.type == JV_INT) {
            if (x.u.i == INT64_MIN)
                return loam__jinja_error(r, "integer overflow in abs");
            *out = jv_int(x.u.i < 0 ? -x.u.i : x.u.i);
        } else if (x.type == JV_BOOL)
            *out = jv_int(x.u.b);
        else if (x.type == JV_FLOAT)
            *out = jv_float(fabs(x.u.f));
        else if (x.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, x);
        else
            return loam__jinja_error(r, "bad operand type for abs(): '%s'",
                                     loam__jinja_type_name(x));
        return LOAM_OK;
    }
    if (IS("round"))
        return f_round(r, x, args, out);
    if (IS("indent"))
        return f_indent(r, x, args, out);
    if (IS("reverse")) {
        if (x.type == JV_STR) {
            jinja_list *cps;
            TRY(loam__jinja_iterate(r, x, &cps));
            jinja_buf b = {.a = A(r)};
            for (size_t i = cps->n; i-- > 0;)
                loam__jinja_buf_put(&b, cps->v[i].u.s.p, cps->v[i].u.s.n);
            return loam__jinja_buf_done(r, &b, out);
        }
        if (x.type != JV_LIST && x.type != JV_DICT) {
            if (x.type == JV_UNDEF)
                return loam__jinja_undefined_error(r, x);
            return loam__jinja_error(r, "argument to reversed() must be a sequence");
        }
        jinja_list *items;
        TRY(loam__jinja_iterate(r, x, &items));
        jinja_list *l = loam__jinja_list_new(A(r), items->n);
        if (!l)
            return loam__jinja_oom(r);
        for (size_t i = items->n; i-- > 0;)
            l->v[l->n++] = items->v[i];
        *out = jv_list(l);
        return LOAM_OK;
    }
    if (IS("sort"))
        return f_sort_like(r, x, args, 0, out);
    if (IS("unique"))
        return f_sort_like(r, x, args, 1, out);
    if (IS("min"))
        return f_sort_like(r, x, args, 2, out);
    if (IS("max"))
        return f_sort_like(r, x, args, 3, out);
    if (IS("dictsort"))
        return f_dictsort(r, x, args, out);
    if (IS("map"))
        return f_map(r, x, args, out);
    if (IS("select"))
        return select_items(r, x, args, false, true, out);
    if (IS("reject"))
        return select_items(r, x, args, false, false, out);
    if (IS("selectattr"))
        return select_items(r, x, args, true, true, out);
    if (IS("rejectattr"))
        return select_items(r, x, args, true, false, out);
    if (IS("escape") || IS("e"))
        return f_escape(r, x, out);
    if (IS("attr")) {
        BIND("attr", "name");
        if (!have[0])
            return loam__jinja_error(r, "attr() missing name");
        TRY(loam__jinja_need_str(r, v[0], "attribute name"));
        if (x.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, x);
        if (loam__jinja_method(r, x, v[0].u.s.p, v[0].u.s.n, out, &st))
            return st;
        TRY(st);
        if (x.type == JV_NS)
            return loam__jinja_getattr(r, x, v[0].u.s.p, v[0].u.s.n, out);
        *out = jv_undef();
        return LOAM_OK;
    }
    if (IS("sum")) {
        BIND("sum", "attribute", "start");
        jinja_list *items;
        TRY(loam__jinja_iterate(r, x, &items));
        jinja_value acc = have[1] ? v[1] : jv_int(0);
        for (size_t i = 0; i < items->n; i++) {
            jinja_value it = items->v[i];
            if (have[0] && v[0].type != JV_NONE)
                TRY(attr_path(r, it, v[0], &it));
            bool ai = acc.type == JV_INT || acc.type == JV_BOOL,
                 bi = it.type == JV_INT || it.type == JV_BOOL;
            if ((acc.type != JV_FLOAT && !ai) || (it.type != JV_FLOAT && !bi))
                return loam__jinja_error(r, "unsupported operand type(s) for +: '%s' and '%s'",
                                         loam__jinja_type_name(acc), loam__jinja_type_name(it));
            if (ai && bi) {
                int64_t s;
                if (__builtin_add_overflow(acc.type == JV_INT ? acc.u.i : acc.u.b,
                                           it.type == JV_INT ? it.u.i : it.u.b, &s))
                    return loam__jinja_error(r, "integer overflow in sum");
                acc = jv_int(s);
            } else {
                double fa = acc.type == JV_FLOAT ? acc.u.f
                                                 : (double)(acc.type == JV_INT ? acc.u.i : acc.u.b);
                double fb =
                    it.type == JV_FLOAT ? it.u.f : (double)(it.type == JV_INT ? it.u.i : it.u.b);
                acc = jv_float(fa + fb);
            }
        }
        *out = acc;
        return LOAM_OK;
    }
    if (IS("wordcount")) {
        jinja_value s = str_of(r, x, &st);
        TRY(st);
        /* jinja2: len(re.findall(r"\w+", s)) */
        int64_t words = 0;
        bool in_word = false;
        size_t i = 0;
        while (i < s.u.s.n) {
            uint32_t c = loam__jinja_utf8_next(s.u.s.p, s.u.s.n, &i);
            utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
            bool w = c == '_' || (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
                     (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) ||
                     k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC ||
                     k == UTF8PROC_CATEGORY_PC;
            if (w && !in_word)
                words++;
            in_word = w;
        }
        *out = jv_int(words);
        return LOAM_OK;
    }
    if (IS("center")) {
        BIND("center", "width");
        jinja_value s = str_of(r, x, &st);
        TRY(st);
        int64_t w = 80;
        if (have[0])
            TRY(loam__jinja_need_int(r, v[0], "width", &w));
        if (w > 100000)
            return loam__jinja_error(r, "center width too large");
        int64_t len = (int64_t)loam__jinja_utf8_len(s.u.s.p, s.u.s.n);
        if (w <= len) {
            *out = s;
            return LOAM_OK;
        }
        int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
        jinja_buf b = {.a = A(r)};
        for (int64_t k = 0; k < left; k++)
            loam__jinja_buf_putc(&b, ' ');
        loam__jinja_buf_put(&b, s.u.s.p, s.u.s.n);
        for (int64_t k = 0; k < pad - left; k++)
            loam__jinja_buf_putc(&b, ' ');
        return loam__jinja_buf_done(r, &b, out);
    }
    if (IS("format")) {
        jinja_value s = str_of(r, x, &st);
        TRY(st);
        if (args->n_kw)
            return loam__jinja_error(r, "format filter: keyword arguments are not supported");
        return loam__jinja_str_printf(r, s, args->pos, args->n_pos, out);
    }
    if (IS("batch"))
        return f_batch(r, x, args, out);
#undef IS
    *found = false;
    return LOAM_OK;
}
