/* jinja_eval.c: the evaluator of the chat-template interpreter: walks the AST of jinja_parse.c
 * and writes the output, with jinja2's semantics as transformers configures it (jinja.h).
 *
 * Scoping, as jinja2 compiles it:
 * - The template body has one scope; `set` in an `if` writes there too.
 * - Each for-loop iteration gets a fresh scope under the enclosing one: the loop variables,
 *   `loop`, and whatever the body `set`s live there and vanish after the iteration (so a
 *   counter needs namespace(); reading a name the body sets later in the iteration shows the
 *   outer value).
 * - A macro call gets a scope under the scope the macro was defined in (a live reference: the
 *   macro sees later top-level sets). `with` opens a scope.
 * - Lookup: scopes innermost first, then the render context (messages, tools, ...), then the
 *   globals (range, namespace, dict, raise_exception, strftime_now, ...), else undefined.
 *
 * Undefined (jinja2's default Undefined): printing gives "", `is defined` is false, truthiness
 * false, iteration empty, length 0, `~` concatenates "", == only to another undefined; any other
 * use (attribute, item, call, arithmetic, comparison with <) is an error whose message says what
 * was undefined ("'x' is undefined", "'dict object' has no attribute 'tool_calls'").
 *
 * Attribute access is the sandbox's: `a.b` tries the Python attribute (a method of str, list,
 * dict) and then the item a['b']; `a['b']` tries the item first, then the attribute. Methods
 * that would mutate a list or dict (append, pop, update...) are refused as the
 * ImmutableSandboxedEnvironment refuses them ("access to attribute 'append' of 'list' object is
 * unsafe."). Namespace attributes are set with {% set ns.x = ... %}.
 *
 * Bounds: output bytes, arena bytes, loop iterations, evaluation steps, macro call depth and C
 * recursion depth, each a clear LOAM_E_TEMPLATE error with the line:col of the node at fault.
 */
#include "jinja.h"

#include <math.h>
#include <time.h>

#define JINJA_MAX_EVAL_DEPTH 3000

typedef struct scope_var {
    const char *name;
    size_t n;
    jinja_value v;
} scope_var;

typedef struct scope {
    struct scope *parent;
    scope_var *vars;
    size_t n, cap;
} scope;

struct jinja_macro {
    const jinja_node *node; /* JN_MACRO, or JN_CALLBLOCK for `caller` */
    scope *closure;
    jinja_value caller; /* the caller macro passed to this call block, if any */
};

enum { CTL_NONE = 0, CTL_BREAK, CTL_CONTINUE };

struct jinja_render {
    const jinja_template *t;
    jinja_arena *a;
    const jinja_config *lim;
    jinja_dict *globals;
    jinja_buf *out; /* current output sink */
    uint64_t loop_iters, steps;
    uint32_t call_depth, eval_depth;
    loam_err *err;
    const jinja_node *at; /* node whose position errors name */
    double now;
    int control;
    bool failed;
};

// ---- errors -----------------------------------------------------------------------------------

static loam_status vfail_at(jinja_render *r, const jinja_node *n, const char *fmt, va_list ap) {
    if (r->failed)
        return LOAM_E_TEMPLATE;
    r->failed = true;
    char msg[220];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (n)
        return loam__fail(r->err, LOAM_E_TEMPLATE, "template:%u:%u: %s", n->line, n->col, msg);
    return loam__fail(r->err, LOAM_E_TEMPLATE, "template: %s", msg);
}

static loam_status fail_at(jinja_render *r, const jinja_node *n, const char *fmt, ...)
    LOAM__PRINTF(3, 4);
static loam_status fail_at(jinja_render *r, const jinja_node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loam_status s = vfail_at(r, n, fmt, ap);
    va_end(ap);
    return s;
}

loam_status loam__jinja_error(jinja_render *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loam_status s = vfail_at(r, r->at, fmt, ap);
    va_end(ap);
    return s;
}

loam_status loam__jinja_oom(jinja_render *r) {
    if (r->failed)
        return LOAM_E_TEMPLATE;
    if (r->a->over_limit)
        return loam__jinja_error(r, "template used more than the %llu-byte memory limit",
                                 (unsigned long long)r->a->limit);
    r->failed = true;
    return loam__fail(r->err, LOAM_E_NOMEM, "template: out of memory");
}

loam_status loam__jinja_steps(jinja_render *r, uint64_t n) {
    r->steps += n;
    if (r->lim->max_steps && r->steps > r->lim->max_steps)
        return loam__jinja_error(r, "template exceeded the work limit (%llu steps)",
                                 (unsigned long long)r->lim->max_steps);
    return LOAM_OK;
}

jinja_arena *loam__jinja_arena(jinja_render *r) {
    return r->a;
}
double loam__jinja_now(jinja_render *r) {
    return r->now;
}

loam_status loam__jinja_undefined_error(jinja_render *r, jinja_value u) {
    if (u.u.s.n)
        return loam__jinja_error(r, "%.*s", (int)u.u.s.n, u.u.s.p);
    return loam__jinja_error(r, "value is undefined");
}

/* An undefined value whose later use reports "msg". */
static jinja_value make_undef(jinja_render *r, const char *fmt, ...) LOAM__PRINTF(2, 3);
static jinja_value make_undef(jinja_render *r, const char *fmt, ...) {
    char tmp[200];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0)
        return jv_undef();
    size_t n = (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1;
    char *p = loam__jinja_alloc(r->a, n + 1);
    if (!p)
        return jv_undef();
    memcpy(p, tmp, n);
    return jv_undef_named(p, n);
}

/* "'dict object'" style names jinja2 uses in messages. */
static const char *obj_name(jinja_value v) {
    switch ((jinja_type)v.type) {
    case JV_DICT:
        return "dict object";
    case JV_LIST:
        return v.flags & JF_TUPLE ? "tuple object" : "list object";
    case JV_STR:
        return "str object";
    case JV_INT:
        return "int object";
    case JV_FLOAT:
        return "float object";
    case JV_BOOL:
        return "bool object";
    case JV_NONE:
        return "None";
    case JV_NS:
        return "jinja2.utils.Namespace object";
    case JV_LOOP:
        return "LoopContext object";
    default:
        return "object";
    }
}

static int trunc_len(size_t n) {
    return (int)(n > 60 ? 60 : n);
}

// ---- scopes -----------------------------------------------------------------------------------

static scope *scope_new(jinja_render *r, scope *parent) {
    scope *s = loam__jinja_alloc(r->a, sizeof *s);
    if (s)
        s->parent = parent;
    return s;
}

static loam_status scope_set(jinja_render *r, scope *s, const char *name, size_t n, jinja_value v) {
    for (size_t i = 0; i < s->n; i++)
        if (s->vars[i].n == n && !memcmp(s->vars[i].name, name, n)) {
            s->vars[i].v = v;
            return LOAM_OK;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        scope_var *nv = loam__jinja_alloc(r->a, cap * sizeof *nv);
        if (!nv)
            return loam__jinja_oom(r);
        if (s->n)
            memcpy(nv, s->vars, s->n * sizeof *nv);
        s->vars = nv;
        s->cap = cap;
    }
    s->vars[s->n].name = name;
    s->vars[s->n].n = n;
    s->vars[s->n].v = v;
    s->n++;
    return LOAM_OK;
}

static jinja_value lookup(jinja_render *r, scope *s, const char *name, size_t n) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (s->vars[i].n == n && !memcmp(s->vars[i].name, name, n))
                return s->vars[i].v;
    int64_t at = loam__jinja_dict_find(r->globals, jv_str(name, n));
    if (at >= 0)
        return r->globals->vals[at];
    jinja_value g;
    if (loam__jinja_global(name, n, &g))
        return g;
    return make_undef(r, "'%.*s' is undefined", trunc_len(n), name);
}

// ---- output -----------------------------------------------------------------------------------

static loam_status emit(jinja_render *r, const jinja_node *at, const char *s, size_t n) {
    loam__jinja_buf_put(r->out, s, n);
    if (r->out->failed) {
        if (r->out->max && r->out->n + n > r->out->max)
            return fail_at(r, at, "rendered output exceeds the %llu-byte limit",
                           (unsigned long long)r->out->max);
        r->at = at;
        return loam__jinja_oom(r);
    }
    return LOAM_OK;
}

static loam_status emit_value(jinja_render *r, const jinja_node *at, jinja_value v) {
    if (v.type == JV_STR)
        return emit(r, at, v.u.s.p, v.u.s.n);
    jinja_buf b = {.a = r->a};
    loam__jinja_str(&b, v);
    if (b.failed) {
        r->at = at;
        return loam__jinja_oom(r);
    }
    return emit(r, at, b.p, b.n);
}

// ---- expressions ------------------------------------------------------------------------------

static loam_status eval(jinja_render *r, scope *s, const jinja_node *n, jinja_value *out);
static loam_status exec_body(jinja_render *r, scope *s, jinja_node *const *body, uint32_t n);

loam_status loam__jinja_iterate(jinja_render *r, jinja_value v, jinja_list **out) {
    switch ((jinja_type)v.type) {
    case JV_UNDEF:
        *out = loam__jinja_list_new(r->a, 0);
        break;
    case JV_LIST:
        *out = v.u.l;
        return LOAM_OK;
    case JV_DICT: {
        jinja_list *l = loam__jinja_list_new(r->a, v.u.d->n);
        if (!l)
            return loam__jinja_oom(r);
        for (size_t i = 0; i < v.u.d->n; i++)
            l->v[i] = v.u.d->keys[i];
        l->n = v.u.d->n;
        *out = l;
        break;
    }
    case JV_STR: {
        size_t cps = loam__jinja_utf8_len(v.u.s.p, v.u.s.n);
        jinja_list *l = loam__jinja_list_new(r->a, cps);
        if (!l)
            return loam__jinja_oom(r);
        size_t i = 0;
        while (i < v.u.s.n) {
            size_t st = i;
            loam__jinja_utf8_next(v.u.s.p, v.u.s.n, &i);
            l->v[l->n++] = jv_str(v.u.s.p + st, i - st);
        }
        *out = l;
        break;
    }
    default:
        return loam__jinja_error(r, "'%s' object is not iterable", loam__jinja_type_name(v));
    }
    if (!*out)
        return loam__jinja_oom(r);
    return loam__jinja_steps(r, (*out)->n);
}

static loam_status getattr_impl(jinja_render *r, jinja_value obj, const char *name, size_t n,
                                jinja_value *out, bool item_first_done);

static jinja_value loop_attr(jinja_render *r, jinja_loop *L, const char *name, size_t n,
                             bool *found) {
    *found = true;
    size_t len = L->items->n;
#define IS(s) (n == sizeof(s) - 1 && !memcmp(name, s, n))
    if (IS("index"))
        return jv_int((int64_t)L->index0 + 1);
    if (IS("index0"))
        return jv_int((int64_t)L->index0);
    if (IS("revindex"))
        return jv_int((int64_t)(len - L->index0));
    if (IS("revindex0"))
        return jv_int((int64_t)(len - L->index0 - 1));
    if (IS("first"))
        return jv_bool(L->index0 == 0);
    if (IS("last"))
        return jv_bool(L->index0 + 1 == len);
    if (IS("length"))
        return jv_int((int64_t)len);
    if (IS("depth"))
        return jv_int(L->depth0 + 1);
    if (IS("depth0"))
        return jv_int(L->depth0);
    if (IS("previtem"))
        return L->index0 > 0 ? L->items->v[L->index0 - 1]
                             : make_undef(r, "there is no previous item");
    if (IS("nextitem"))
        return L->index0 + 1 < len ? L->items->v[L->index0 + 1]
                                   : make_undef(r, "there is no next item");
#undef IS
    *found = false;
    return jv_undef();
}

/* obj.name as the sandbox resolves it (attribute first, then item). */
static loam_status getattr_impl(jinja_render *r, jinja_value obj, const char *name, size_t n,
                                jinja_value *out, bool item_first_done) {
    if (obj.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, obj);
    if (obj.type == JV_LOOP) {
        bool found;
        *out = loop_attr(r, obj.u.loop, name, n, &found);
        if (found)
            return LOAM_OK;
    }
    if (loam__jinja_unsafe_method(obj, name, n)) {
        *out = make_undef(r, "access to attribute '%.*s' of '%s' object is unsafe.", trunc_len(n),
                          name, loam__jinja_type_name(obj));
        return LOAM_OK;
    }
    loam_status st = LOAM_OK;
    if (loam__jinja_method(r, obj, name, n, out, &st))
        return st;
    if (st != LOAM_OK)
        return st;
    if ((!item_first_done && obj.type == JV_DICT) || obj.type == JV_NS) {
        int64_t at = loam__jinja_dict_find(obj.u.d, jv_str(name, n));
        if (at >= 0) {
            *out = obj.u.d->vals[at];
            return LOAM_OK;
        }
    }
    if (obj.type == JV_NONE)
        *out = make_undef(r, "'None' has no attribute '%.*s'", trunc_len(n), name);
    else
        *out = make_undef(r, "'%s' has no attribute '%.*s'", obj_name(obj), trunc_len(n), name);
    return LOAM_OK;
}

loam_status loam__jinja_getattr(jinja_render *r, jinja_value obj, const char *name, size_t n,
                                jinja_value *out) {
    return getattr_impl(r, obj, name, n, out, false);
}

static bool as_index(jinja_value v, int64_t *i) {
    if (v.type == JV_INT)
        *i = v.u.i;
    else if (v.type == JV_BOOL)
        *i = v.u.b;
    else
        return false;
    return true;
}

/* Byte offset of code point k in s (k <= length). */
static size_t cp_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (k > 0 && i < n) {
        loam__jinja_utf8_next(s, n, &i);
        k--;
    }
    return i;
}

/* obj[key] as the sandbox does it (item first, then attribute for string keys). */
static loam_status getitem(jinja_render *r, jinja_value obj, jinja_value key, jinja_value *out) {
    if (obj.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, obj);
    int64_t idx;
    switch ((jinja_type)obj.type) {
    case JV_DICT: {
        int64_t at = loam__jinja_dict_find(obj.u.d, key);
        if (at >= 0) {
            *out = obj.u.d->vals[at];
            return LOAM_OK;
        }
        if (key.type == JV_LIST && !(key.flags & JF_TUPLE))
            return loam__jinja_error(r, "unhashable type: 'list'");
        break;
    }
    case JV_LIST:
        if (as_index(key, &idx)) {
            int64_t len = (int64_t)obj.u.l->n;
            if (idx < 0)
                idx += len;
            if (idx >= 0 && idx < len) {
                *out = obj.u.l->v[idx];
                return LOAM_OK;
            }
            *out = make_undef(r, "'%s' has no element %lld", obj_name(obj),
                              (long long)(idx < 0 ? idx - len : idx));
            return LOAM_OK;
        }
        break;
    case JV_STR:
        if (as_index(key, &idx)) {
            int64_t len = (int64_t)loam__jinja_utf8_len(obj.u.s.p, obj.u.s.n);
            if (idx < 0)
                idx += len;
            if (idx >= 0 && idx < len) {
                size_t b = cp_offset(obj.u.s.p, obj.u.s.n, (size_t)idx), e = b;
                loam__jinja_utf8_next(obj.u.s.p, obj.u.s.n, &e);
                *out = jv_str(obj.u.s.p + b, e - b);
                return LOAM_OK;
            }
            *out = make_undef(r, "'str object' has no element %lld", (long long)idx);
            return LOAM_OK;
        }
        break;
    default:
        break;
    }
    if (key.type == JV_STR)
        return getattr_impl(r, obj, key.u.s.p, key.u.s.n, out, true);
    jinja_buf b = {.a = r->a};
    loam__jinja_repr(&b, key);
    *out =
        make_undef(r, "'%s' has no attribute %.*s", obj_name(obj), trunc_len(b.n), b.p ? b.p : "");
    return LOAM_OK;
}

/* Python slice indices for a sequence of length len. */
static loam_status slice_indices(jinja_render *r, jinja_value start, jinja_value stop,
                                 jinja_value step, int64_t len, int64_t *o_start, int64_t *o_stop,
                                 int64_t *o_step) {
    int64_t st = 1, a, b;
    if (step.type != JV_NONE && step.type != JV_UNDEF) {
        if (!as_index(step, &st))
            return loam__jinja_error(r, "slice indices must be integers or None");
        if (st == 0)
            return loam__jinja_error(r, "slice step cannot be zero");
    }
    int64_t lo = st < 0 ? -1 : 0, hi = st < 0 ? len - 1 : len;
    if (start.type == JV_NONE || start.type == JV_UNDEF)
        a = st < 0 ? hi : lo;
    else {
        if (!as_index(start, &a))
            return loam__jinja_error(r, "slice indices must be integers or None");
        if (a < 0)
            a = a + len < lo ? lo : a + len;
        else if (a > hi)
            a = hi;
    }
    if (stop.type == JV_NONE || stop.type == JV_UNDEF)
        b = st < 0 ? lo : hi;
    else {
        if (!as_index(stop, &b))
            return loam__jinja_error(r, "slice indices must be integers or None");
        if (b < 0)
            b = b + len < lo ? lo : b + len;
        else if (b > hi)
            b = hi;
    }
    *o_start = a;
    *o_stop = b;
    *o_step = st;
    return LOAM_OK;
}

static loam_status do_slice(jinja_render *r, jinja_value obj, jinja_value start, jinja_value stop,
                            jinja_value step, jinja_value *out) {
    if (obj.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, obj);
    if (obj.type != JV_LIST && obj.type != JV_STR) {
        *out = make_undef(r, "'%s' cannot be sliced", obj_name(obj));
        return LOAM_OK;
    }
    jinja_list *src = NULL;
    if (obj.type == JV_LIST)
        src = obj.u.l;
    else
        TRY(loam__jinja_iterate(r, obj, &src));
    int64_t a = 0, b = 0, st = 1;
    TRY(slice_indices(r, start, stop, step, (int64_t)src->n, &a, &b, &st));
    jinja_list *l = loam__jinja_list_new(r->a, 0);
    if (!l)
        return loam__jinja_oom(r);
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
        if (!loam__jinja_list_push(r->a, l, src->v[i]))
            return loam__jinja_oom(r);
    TRY(loam__jinja_steps(r, l->n));
    if (obj.type == JV_LIST) {
        *out = jv_list(l);
        out->flags = obj.flags;
        return LOAM_OK;
    }
    jinja_buf buf = {.a = r->a};
    for (size_t i = 0; i < l->n; i++)
        loam__jinja_buf_put(&buf, l->v[i].u.s.p, l->v[i].u.s.n);
    if (buf.failed)
        return loam__jinja_oom(r);
    *out = jv_str(buf.p ? buf.p : "", buf.n);
    return LOAM_OK;
}

// ---- arithmetic -------------------------------------------------------------------------------

static bool num(jinja_value v, double *f, int64_t *i, bool *is_int) {
    switch (v.type) {
    case JV_BOOL:
        *i = v.u.b;
        *f = v.u.b;
        *is_int = true;
        return true;
    case JV_INT:
        *i = v.u.i;
        *f = (double)v.u.i;
        *is_int = true;
        return true;
    case JV_FLOAT:
        *f = v.u.f;
        *i = 0;
        *is_int = false;
        return true;
    default:
        return false;
    }
}

static const char *op_str(uint8_t op) {
    switch (op) {
    case JOP_ADD:
        return "+";
    case JOP_SUB:
        return "-";
    case JOP_MUL:
        return "*";
    case JOP_DIV:
        return "/";
    case JOP_FLOORDIV:
        return "//";
    case JOP_MOD:
        return "%";
    case JOP_POW:
        return "**";
    case JOP_LT:
        return "<";
    case JOP_LE:
        return "<=";
    case JOP_GT:
        return ">";
    case JOP_GE:
        return ">=";
    default:
        return "?";
    }
}

static loam_status repeat(jinja_render *r, jinja_value seq, int64_t times, jinja_value *out) {
    if (times < 0)
        times = 0;
    if (seq.type == JV_STR) {
        uint64_t total;
        if (loam__mul_u64(seq.u.s.n, (uint64_t)times, &total) || total > SIZE_MAX / 2 ||
            (r->a->limit && total > r->a->limit))
            return loam__jinja_error(r, "string repetition result too large");
        char *p = loam__jinja_alloc(r->a, (size_t)total + 1);
        if (!p)
            return loam__jinja_oom(r);
        for (int64_t k = 0; k < times; k++)
            memcpy(p + (size_t)k * seq.u.s.n, seq.u.s.p, seq.u.s.n);
        TRY(loam__jinja_steps(r, total / 64));
        *out = jv_str(p, (size_t)total);
        return LOAM_OK;
    }
    uint64_t total;
    if (loam__mul_u64(seq.u.l->n, (uint64_t)times, &total) ||
        total > (uint64_t)SIZE_MAX / sizeof(jinja_value) ||
        (r->a->limit && total * sizeof(jinja_value) > r->a->limit))
        return loam__jinja_error(r, "list repetition result too large");
    jinja_list *l = loam__jinja_list_new(r->a, (size_t)total);
    if (!l && total)
        return loam__jinja_oom(r);
    if (!l)
        l = loam__jinja_list_new(r->a, 0);
    if (!l)
        return loam__jinja_oom(r);
    for (int64_t k = 0; k < times; k++)
        for (size_t i = 0; i < seq.u.l->n; i++)
            l->v[l->n++] = seq.u.l->v[i];
    TRY(loam__jinja_steps(r, total));
    *out = jv_list(l);
    out->flags = seq.flags;
    return LOAM_OK;
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0.0) {
        if ((b < 0) != (m < 0))
            m += b;
    } else {
        m = copysign(0.0, b);
    }
    return m;
}

static double py_floordiv(double a, double b) {
    double m = fmod(a, b);
    double div = (a - m) / b;
    if (m != 0.0 && ((b < 0) != (m < 0)))
        div -= 1.0;
    if (div != 0.0) {
        double fl = floor(div);
        if (div - fl > 0.5)
            fl += 1.0;
        return fl;
    }
    return copysign(0.0, a / b);
}

static loam_status binop(jinja_render *r, uint8_t op, jinja_value a, jinja_value b,
                         jinja_value *out) {
    if (op == JOP_CONCAT) {
        bool oom1, oom2;
        jinja_value sa = loam__jinja_to_str(r->a, a, &oom1),
                    sb = loam__jinja_to_str(r->a, b, &oom2);
        if (oom1 || oom2)
            return loam__jinja_oom(r);
        char *p = loam__jinja_alloc(r->a, sa.u.s.n + sb.u.s.n + 1);
        if (!p)
            return loam__jinja_oom(r);
        memcpy(p, sa.u.s.p, sa.u.s.n);
        memcpy(p + sa.u.s.n, sb.u.s.p, sb.u.s.n);
        *out = jv_str(p, sa.u.s.n + sb.u.s.n);
        return loam__jinja_steps(r, (sa.u.s.n + sb.u.s.n) / 64);
    }
    if (a.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, a);
    if (b.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, b);
    double fa = 0, fb = 0;
    int64_t ia = 0, ib = 0;
    bool inta = false, intb = false;
    bool na = num(a, &fa, &ia, &inta), nb = num(b, &fb, &ib, &intb);
    if (na && nb) {
        bool ints = inta && intb;
        int64_t ri;
        switch (op) {
        case JOP_ADD:
            if (!ints) {
                *out = jv_float(fa + fb);
                return LOAM_OK;
            }
            if (__builtin_add_overflow(ia, ib, &ri))
                break;
            *out = jv_int(ri);
            return LOAM_OK;
        case JOP_SUB:
            if (!ints) {
                *out = jv_float(fa - fb);
                return LOAM_OK;
            }
            if (__builtin_sub_overflow(ia, ib, &ri))
                break;
            *out = jv_int(ri);
            return LOAM_OK;
        case JOP_MUL:
            if (!ints) {
                *out = jv_float(fa * fb);
                return LOAM_OK;
            }
            if (__builtin_mul_overflow(ia, ib, &ri))
                break;
            *out = jv_int(ri);
            return LOAM_OK;
        case JOP_DIV:
            if (fb == 0.0)
                return loam__jinja_error(r, "division by zero");
            *out = jv_float(fa / fb);
            return LOAM_OK;
        case JOP_FLOORDIV:
        case JOP_MOD:
            if (fb == 0.0)
                return loam__jinja_error(r, op == JOP_MOD ? "modulo by zero" : "division by zero");
            if (ints) {
                if (ia == INT64_MIN && ib == -1)
                    break;
                int64_t q = ia / ib, m = ia % ib;
                if (m != 0 && ((m < 0) != (ib < 0))) {
                    q -= 1;
                    m += ib;
                }
                *out = jv_int(op == JOP_MOD ? m : q);
                return LOAM_OK;
            }
            *out = jv_float(op == JOP_MOD ? py_fmod(fa, fb) : py_floordiv(fa, fb));
            return LOAM_OK;
        case JOP_POW:
            if (ints && ib >= 0) {
                int64_t acc = 1, base = ia, e = ib;
                bool ovf = false;
                while (e > 0 && !ovf) {
                    if (e & 1)
                        ovf |= __builtin_mul_overflow(acc, base, &acc);
                    e >>= 1;
                    if (e)
                        ovf |= __builtin_mul_overflow(base, base, &base);
                }
                if (ovf)
                    break;
                *out = jv_int(acc);
                return LOAM_OK;
            }
            if (fa == 0.0 && fb < 0)
                return loam__jinja_error(r, "0.0 cannot be raised to a negative power");
            if (fa < 0 && fb != floor(fb))
                return loam__jinja_error(r, "negative number raised to a fractional power");
            *out = jv_float(pow(fa, fb));
            return LOAM_OK;
        default:
            break;
        }
        return loam__jinja_error(r, "integer overflow in '%s' (loam integers are 64-bit)",
                                 op_str(op));
    }
    if (op == JOP_ADD && a.type == JV_STR && b.type == JV_STR)
        return binop(r, JOP_CONCAT, a, b, out);
    if (op == JOP_ADD && a.type == JV_LIST && b.type == JV_LIST &&
        (a.flags & JF_TUPLE) == (b.flags & JF_TUPLE)) {
        jinja_list *l = loam__jinja_list_new(r->a, a.u.l->n + b.u.l->n);
        if (!l)
            return loam__jinja_oom(r);
        if (a.u.l->n)
            memcpy(l->v, a.u.l->v, a.u.l->n * sizeof(jinja_value));
        if (b.u.l->n)
            memcpy(l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jinja_value));
        l->n = a.u.l->n + b.u.l->n;
        *out = jv_list(l);
        out->flags = a.flags;
        return loam__jinja_steps(r, l->n);
    }
    if (op == JOP_MUL && (a.type == JV_STR || a.type == JV_LIST) && nb && intb)
        return repeat(r, a, ib, out);
    if (op == JOP_MUL && (b.type == JV_STR || b.type == JV_LIST) && na && inta)
        return repeat(r, b, ia, out);
    if (op == JOP_MOD && a.type == JV_STR)
        return loam__jinja_percent(r, a, b, out);
    return loam__jinja_error(r, "unsupported operand type(s) for %s: '%s' and '%s'", op_str(op),
                             loam__jinja_type_name(a), loam__jinja_type_name(b));
}

static loam_status contains(jinja_render *r, jinja_value needle, jinja_value hay, bool *out) {
    switch ((jinja_type)hay.type) {
    case JV_UNDEF:
        *out = false;
        return LOAM_OK;
    case JV_STR:
        if (needle.type != JV_STR)
            return loam__jinja_error(r, "'in <string>' requires string as left operand, not %s",
                                     loam__jinja_type_name(needle));
        if (needle.u.s.n == 0)
            *out = true;
        else {
            *out = false;
            for (size_t i = 0; i + needle.u.s.n <= hay.u.s.n; i++)
                if (!memcmp(hay.u.s.p + i, needle.u.s.p, needle.u.s.n)) {
                    *out = true;
                    break;
                }
        }
        return loam__jinja_steps(r, hay.u.s.n / 64);
    case JV_LIST:
        *out = false;
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (loam__jinja_equal(hay.u.l->v[i], needle)) {
                *out = true;
                break;
            }
        return loam__jinja_steps(r, hay.u.l->n);
    case JV_DICT:
    case JV_NS:
        if (needle.type == JV_LIST && !(needle.flags & JF_TUPLE))
            return loam__jinja_error(r, "unhashable type: 'list'");
        *out = loam__jinja_dict_find(hay.u.d, needle) >= 0;
        return LOAM_OK;
    default:
        return loam__jinja_error(r, "argument of type '%s' is not iterable",
                                 loam__jinja_type_name(hay));
    }
}

static loam_status compare(jinja_render *r, uint8_t op, jinja_value a, jinja_value b, bool *out) {
    switch (op) {
    case JOP_EQ:
        *out = loam__jinja_equal(a, b);
        return LOAM_OK;
    case JOP_NE:
        *out = !loam__jinja_equal(a, b);
        return LOAM_OK;
    case JOP_IN:
        return contains(r, a, b, out);
    case JOP_NOTIN:
        TRY(contains(r, a, b, out));
        *out = !*out;
        return LOAM_OK;
    default:
        break;
    }
    if (a.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, a);
    if (b.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, b);
    bool lt;
    jinja_value x = a, y = b;
    if (op == JOP_GT || op == JOP_GE)
        x = b, y = a; /* a > b is b < a; a >= b is b < a or a == b */
    if (loam__jinja_less(x, y, &lt))
        return loam__jinja_error(r, "'%s' not supported between instances of '%s' and '%s'",
                                 op_str(op), loam__jinja_type_name(a), loam__jinja_type_name(b));
    if (op == JOP_LT || op == JOP_GT) {
        *out = lt;
        return LOAM_OK;
    }
    /* not (b < a) would be wrong for NaN */
    bool eq = loam__jinja_equal(a, b);
    *out = lt || eq;
    return LOAM_OK;
}

// ---- calls ------------------------------------------------------------------------------------

static loam_status eval_args(jinja_render *r, scope *s, const jinja_node *n, jinja_args *args,
                             size_t extra_kw) {
    memset(args, 0, sizeof *args);
    size_t n_kw = extra_kw;
    for (uint32_t i = 0; i < n->n_args; i++)
        n_kw += n->args[i]->kind == JN_KWARG;
    size_t n_pos = n->n_args - (n_kw - extra_kw);
    args->pos = loam__jinja_alloc(r->a, (n_pos + 1) * sizeof(jinja_value));
    args->kw_names = loam__jinja_alloc(r->a, (n_kw + 1) * sizeof(char *));
    args->kw_lens = loam__jinja_alloc(r->a, (n_kw + 1) * sizeof(size_t));
    args->kw_vals = loam__jinja_alloc(r->a, (n_kw + 1) * sizeof(jinja_value));
    if (!args->pos || !args->kw_names || !args->kw_lens || !args->kw_vals)
        return loam__jinja_oom(r);
    for (uint32_t i = 0; i < n->n_args; i++) {
        const jinja_node *a = n->args[i];
        if (a->kind == JN_KWARG) {
            args->kw_names[args->n_kw] = a->s;
            args->kw_lens[args->n_kw] = a->s_len;
            TRY(eval(r, s, a->a, &args->kw_vals[args->n_kw]));
            args->n_kw++;
        } else {
            TRY(eval(r, s, a, &args->pos[args->n_pos++]));
        }
    }
    return LOAM_OK;
}

static loam_status capture_begin(jinja_render *r, jinja_buf *b, jinja_buf **saved) {
    memset(b, 0, sizeof *b);
    b->a = r->a;
    b->max = r->lim->max_output_bytes;
    *saved = r->out;
    r->out = b;
    return LOAM_OK;
}

static jinja_value capture_end(jinja_render *r, jinja_buf *b, jinja_buf *saved) {
    r->out = saved;
    return jv_str(b->p ? b->p : "", b->n);
}

static loam_status run_loop(jinja_render *r, scope *s, const jinja_node *n, jinja_value iterable,
                            int64_t depth0);

static loam_status call_macro(jinja_render *r, const jinja_macro *m, const jinja_args *args,
                              jinja_value *out) {
    if (r->call_depth >= r->lim->max_call_depth)
        return loam__jinja_error(r, "macro calls nest deeper than %u", r->lim->max_call_depth);
    const jinja_node *def = m->node;
    scope *ms = scope_new(r, m->closure);
    if (!ms)
        return loam__jinja_oom(r);
    jinja_list *varargs = loam__jinja_list_new(r->a, 0);
    jinja_dict *kwargs = loam__jinja_dict_new(r->a);
    if (!varargs || !kwargs)
        return loam__jinja_oom(r);
    for (uint32_t i = 0; i < def->n_args; i++) {
        const jinja_node *p = def->args[i];
        jinja_value v = jv_undef();
        bool have = false;
        if (i < args->n_pos) {
            v = args->pos[i];
            have = true;
        }
        for (size_t k = 0; k < args->n_kw; k++)
            if (args->kw_lens[k] == p->s_len && !memcmp(args->kw_names[k], p->s, p->s_len)) {
                if (have)
                    return loam__jinja_error(r, "macro got multiple values for argument '%.*s'",
                                             trunc_len(p->s_len), p->s);
                v = args->kw_vals[k];
                have = true;
            }
        if (!have) {
            if (p->b) {
                const jinja_node *saved_at = r->at;
                TRY(eval(r, ms, p->b, &v));
                r->at = saved_at;
            } else {
                v = make_undef(r, "parameter '%.*s' was not provided", trunc_len(p->s_len), p->s);
            }
        }
        TRY(scope_set(r, ms, p->s, p->s_len, v));
    }
    for (size_t i = def->n_args; i < args->n_pos; i++)
        if (!loam__jinja_list_push(r->a, varargs, args->pos[i]))
            return loam__jinja_oom(r);
    for (size_t k = 0; k < args->n_kw; k++) {
        bool is_param = false;
        for (uint32_t i = 0; i < def->n_args; i++)
            if (args->kw_lens[k] == def->args[i]->s_len &&
                !memcmp(args->kw_names[k], def->args[i]->s, args->kw_lens[k]))
                is_param = true;
        if (is_param)
            continue;
        if (args->kw_lens[k] == 6 && !memcmp(args->kw_names[k], "caller", 6)) {
            TRY(scope_set(r, ms, "caller", 6, args->kw_vals[k]));
            continue;
        }
        if (!loam__jinja_dict_set(r->a, kwargs, jv_str(args->kw_names[k], args->kw_lens[k]),
                                  args->kw_vals[k]))
            return loam__jinja_oom(r);
    }
    jinja_value va = jv_list(varargs);
    va.flags = JF_TUPLE;
    TRY(scope_set(r, ms, "varargs", 7, va));
    TRY(scope_set(r, ms, "kwargs", 6, jv_dict(kwargs)));
    jinja_buf b, *saved;
    capture_begin(r, &b, &saved);
    r->call_depth++;
    int saved_ctl = r->control;
    r->control = CTL_NONE;
    loam_status st = exec_body(r, ms, def->body, def->n_body);
    r->control = saved_ctl;
    r->call_depth--;
    *out = capture_end(r, &b, saved);
    return st;
}

loam_status loam__jinja_call_value(jinja_render *r, jinja_value fn, const jinja_args *args,
                                   jinja_value *out) {
    switch ((jinja_type)fn.type) {
    case JV_MACRO:
        return call_macro(r, fn.u.m, args, out);
    case JV_FUNC:
        return loam__jinja_call_builtin(r, fn.u.fn, args, out);
    case JV_LOOP: {
        jinja_loop *L = fn.u.loop;
        const jinja_node *n = L->node;
        if (!n->flag)
            return loam__jinja_error(
                r, "the loop is not recursive; call loop(...) only in 'recursive' loops");
        if (args->n_pos != 1 || args->n_kw)
            return loam__jinja_error(r, "loop() takes exactly one argument");
        if (r->call_depth >= r->lim->max_call_depth)
            return loam__jinja_error(r, "recursive loops nest deeper than %u",
                                     r->lim->max_call_depth);
        jinja_buf b, *saved;
        capture_begin(r, &b, &saved);
        r->call_depth++;
        loam_status st = run_loop(r, L->scope, n, args->pos[0], L->depth0 + 1);
        r->call_depth--;
        *out = capture_end(r, &b, saved);
        return st;
    }
    case JV_UNDEF:
        return loam__jinja_undefined_error(r, fn);
    default:
        return loam__jinja_error(r, "'%s' object is not callable", loam__jinja_type_name(fn));
    }
}

// ---- eval -------------------------------------------------------------------------------------

static loam_status eval_inner(jinja_render *r, scope *s, const jinja_node *n, jinja_value *out) {
    switch ((jinja_kind)n->kind) {
    case JN_CONST:
        *out = n->val;
        return LOAM_OK;
    case JN_NAME:
        *out = lookup(r, s, n->s, n->s_len);
        return LOAM_OK;
    case JN_GETATTR: {
        jinja_value obj;
        TRY(eval(r, s, n->a, &obj));
        r->at = n;
        return loam__jinja_getattr(r, obj, n->s, n->s_len, out);
    }
    case JN_GETITEM: {
        jinja_value obj, key;
        TRY(eval(r, s, n->a, &obj));
        TRY(eval(r, s, n->b, &key));
        r->at = n;
        return getitem(r, obj, key, out);
    }
    case JN_SLICE: {
        jinja_value obj, a = jv_none(), b = jv_none(), c = jv_none();
        TRY(eval(r, s, n->a, &obj));
        if (n->b)
            TRY(eval(r, s, n->b, &a));
        if (n->c)
            TRY(eval(r, s, n->c, &b));
        if (n->d)
            TRY(eval(r, s, n->d, &c));
        r->at = n;
        return do_slice(r, obj, a, b, c, out);
    }
    case JN_CALL: {
        jinja_value fn;
        jinja_args args;
        TRY(eval(r, s, n->a, &fn));
        TRY(eval_args(r, s, n, &args, 0));
        r->at = n;
        return loam__jinja_call_value(r, fn, &args, out);
    }
    case JN_FILTER: {
        jinja_value subject;
        jinja_args args;
        TRY(eval(r, s, n->a, &subject));
        TRY(eval_args(r, s, n, &args, 0));
        r->at = n;
        bool found;
        TRY(loam__jinja_filter(r, n->s, n->s_len, subject, &args, out, &found));
        if (!found)
            return fail_at(r, n, "no filter named '%.*s'", trunc_len(n->s_len), n->s);
        return LOAM_OK;
    }
    case JN_TEST: {
        jinja_value subject;
        jinja_args args;
        TRY(eval(r, s, n->a, &subject));
        TRY(eval_args(r, s, n, &args, 0));
        r->at = n;
        bool found, res;
        TRY(loam__jinja_test(r, n->s, n->s_len, subject, &args, &res, &found));
        if (!found)
            return fail_at(r, n, "no test named '%.*s'", trunc_len(n->s_len), n->s);
        *out = jv_bool(n->flag ? !res : res);
        return LOAM_OK;
    }
    case JN_BINOP: {
        jinja_value a, b;
        TRY(eval(r, s, n->a, &a));
        TRY(eval(r, s, n->b, &b));
        r->at = n;
        return binop(r, n->op, a, b, out);
    }
    case JN_NEG:
    case JN_POS: {
        jinja_value a;
        TRY(eval(r, s, n->a, &a));
        r->at = n;
        if (a.type == JV_UNDEF)
            return loam__jinja_undefined_error(r, a);
        if (a.type == JV_BOOL)
            a = jv_int(a.u.b);
        if (a.type == JV_INT) {
            if (n->kind == JN_NEG && a.u.i == INT64_MIN)
                return fail_at(r, n, "integer overflow in unary '-'");
            *out = jv_int(n->kind == JN_NEG ? -a.u.i : a.u.i);
            return LOAM_OK;
        }
        if (a.type == JV_FLOAT) {
            *out = jv_float(n->kind == JN_NEG ? -a.u.f : a.u.f);
            return LOAM_OK;
        }
        return fail_at(r, n, "bad operand type for unary %s: '%s'", n->kind == JN_NEG ? "-" : "+",
                       loam__jinja_type_name(a));
    }
    case JN_NOT: {
        jinja_value a;
        TRY(eval(r, s, n->a, &a));
        *out = jv_bool(!loam__jinja_truthy(a));
        return LOAM_OK;
    }
    case JN_AND:
    case JN_OR: {
        jinja_value a;
        TRY(eval(r, s, n->a, &a));
        bool t = loam__jinja_truthy(a);
        if ((n->kind == JN_AND && !t) || (n->kind == JN_OR && t)) {
            *out = a;
            return LOAM_OK;
        }
        return eval(r, s, n->b, out);
    }
    case JN_COMPARE: {
        jinja_value left;
        TRY(eval(r, s, n->args[0], &left));
        for (uint32_t i = 1; i < n->n_args; i++) {
            jinja_value right;
            TRY(eval(r, s, n->args[i], &right));
            bool res;
            r->at = n;
            TRY(compare(r, n->ops[i - 1], left, right, &res));
            if (!res) {
                *out = jv_bool(false);
                return LOAM_OK;
            }
            left = right;
        }
        *out = jv_bool(true);
        return LOAM_OK;
    }
    case JN_COND: {
        jinja_value c;
        TRY(eval(r, s, n->a, &c));
        if (loam__jinja_truthy(c))
            return eval(r, s, n->b, out);
        if (n->c)
            return eval(r, s, n->c, out);
        *out = make_undef(r,
                          "the inline if-expression on line %u evaluated to false and no else "
                          "section was defined.",
                          n->line);
        return LOAM_OK;
    }
    case JN_LIST:
    case JN_TUPLE: {
        jinja_list *l = loam__jinja_list_new(r->a, n->n_args);
        if (!l)
            return loam__jinja_oom(r);
        for (uint32_t i = 0; i < n->n_args; i++)
            TRY(eval(r, s, n->args[i], &l->v[l->n++]));
        *out = jv_list(l);
        if (n->kind == JN_TUPLE)
            out->flags = JF_TUPLE;
        return LOAM_OK;
    }
    case JN_DICT: {
        jinja_dict *d = loam__jinja_dict_new(r->a);
        if (!d)
            return loam__jinja_oom(r);
        for (uint32_t i = 0; i + 1 < n->n_args; i += 2) {
            jinja_value k, v;
            TRY(eval(r, s, n->args[i], &k));
            TRY(eval(r, s, n->args[i + 1], &v));
            if (k.type == JV_LIST && !(k.flags & JF_TUPLE))
                return fail_at(r, n->args[i], "unhashable type: 'list'");
            if (k.type == JV_DICT || k.type == JV_UNDEF)
                return fail_at(r, n->args[i], "unhashable type: '%s'", loam__jinja_type_name(k));
            if (!loam__jinja_dict_set(r->a, d, k, v))
                return loam__jinja_oom(r);
        }
        *out = jv_dict(d);
        return LOAM_OK;
    }
    default:
        return fail_at(r, n, "internal error: not an expression");
    }
}

static loam_status eval(jinja_render *r, scope *s, const jinja_node *n, jinja_value *out) {
    if (++r->eval_depth > JINJA_MAX_EVAL_DEPTH) {
        r->eval_depth--;
        return fail_at(r, n, "template evaluation nests too deeply");
    }
    r->steps++;
    loam_status st = LOAM_OK;
    if (r->lim->max_steps && r->steps > r->lim->max_steps) {
        r->at = n;
        st = loam__jinja_steps(r, 0);
    } else {
        const jinja_node *saved = r->at;
        r->at = n;
        st = eval_inner(r, s, n, out);
        if (st == LOAM_OK)
            r->at = saved;
    }
    r->eval_depth--;
    return st;
}

// ---- statements -------------------------------------------------------------------------------

static loam_status assign(jinja_render *r, scope *s, const jinja_node *target, jinja_value v) {
    if (target->kind == JN_NAME)
        return scope_set(r, s, target->s, target->s_len, v);
    if (target->kind == JN_NSATTR) {
        jinja_value ns = lookup(r, s, target->a->s, target->a->s_len);
        if (ns.type != JV_NS)
            return fail_at(r, target, "cannot assign attribute on non-namespace object");
        if (!loam__jinja_dict_set(r->a, ns.u.d, jv_str(target->s, target->s_len), v))
            return loam__jinja_oom(r);
        return LOAM_OK;
    }
    /* tuple unpacking */
    jinja_list *items;
    r->at = target;
    if (v.type == JV_UNDEF)
        return loam__jinja_undefined_error(r, v);
    if (v.type == JV_DICT || v.type == JV_STR)
        TRY(loam__jinja_iterate(r, v, &items));
    else if (v.type == JV_LIST)
        items = v.u.l;
    else
        return fail_at(r, target, "cannot unpack non-iterable %s object", loam__jinja_type_name(v));
    if (items->n != target->n_args)
        return fail_at(r, target, "%s values to unpack (expected %u, got %zu)",
                       items->n > target->n_args ? "too many" : "not enough", target->n_args,
                       items->n);
    for (uint32_t i = 0; i < target->n_args; i++)
        TRY(assign(r, s, target->args[i], items->v[i]));
    return LOAM_OK;
}

static loam_status apply_filter_chain(jinja_render *r, scope *s, const jinja_node *f, jinja_value v,
                                      jinja_value *out) {
    if (!f) {
        *out = v;
        return LOAM_OK;
    }
    jinja_value subject;
    TRY(apply_filter_chain(r, s, f->a, v, &subject));
    jinja_args args;
    TRY(eval_args(r, s, f, &args, 0));
    r->at = f;
    bool found;
    TRY(loam__jinja_filter(r, f->s, f->s_len, subject, &args, out, &found));
    if (!found)
        return fail_at(r, f, "no filter named '%.*s'", trunc_len(f->s_len), f->s);
    return LOAM_OK;
}

static loam_status run_loop(jinja_render *r, scope *s, const jinja_node *n, jinja_value iterable,
                            int64_t depth0) {
    jinja_list *items;
    r->at = n->b;
    if (iterable.type != JV_LIST && iterable.type != JV_DICT && iterable.type != JV_STR &&
        iterable.type != JV_UNDEF)
        return fail_at(r, n->b, "'%s' object is not iterable", loam__jinja_type_name(iterable));
    TRY(loam__jinja_iterate(r, iterable, &items));
    if (n->c) { /* {% for x in y if cond %}: filter first, so loop.length and loop.last see the
                   result */
        jinja_list *kept = loam__jinja_list_new(r->a, 0);
        if (!kept)
            return loam__jinja_oom(r);
        for (size_t i = 0; i < items->n; i++) {
            scope *fs = scope_new(r, s);
            if (!fs)
                return loam__jinja_oom(r);
            TRY(assign(r, fs, n->a, items->v[i]));
            jinja_value c;
            TRY(eval(r, fs, n->c, &c));
            if (loam__jinja_truthy(c) && !loam__jinja_list_push(r->a, kept, items->v[i]))
                return loam__jinja_oom(r);
        }
        items = kept;
    }
    if (items->n == 0)
        return exec_body(r, s, n->else_body, n->n_else);
    jinja_loop *L = loam__jinja_alloc(r->a, sizeof *L);
    if (!L)
        return loam__jinja_oom(r);
    L->items = items;
    L->depth0 = depth0;
    L->node = n;
    L->scope = s;
    jinja_value lv = jv_undef();
    lv.type = JV_LOOP;
    lv.u.loop = L;
    for (size_t i = 0; i < items->n; i++) {
        if (++r->loop_iters > r->lim->max_loop_iters)
            return fail_at(r, n, "template exceeded the limit of %llu loop iterations",
                           (unsigned long long)r->lim->max_loop_iters);
        L->index0 = i;
        scope *is = scope_new(r, s);
        if (!is)
            return loam__jinja_oom(r);
        TRY(scope_set(r, is, "loop", 4, lv));
        TRY(assign(r, is, n->a, items->v[i]));
        TRY(exec_body(r, is, n->body, n->n_body));
        if (r->control == CTL_BREAK) {
            r->control = CTL_NONE;
            break;
        }
        r->control = CTL_NONE;
    }
    return LOAM_OK;
}

static loam_status exec(jinja_render *r, scope *s, const jinja_node *n) {
    r->at = n;
    switch ((jinja_kind)n->kind) {
    case JN_TEXT:
        return emit(r, n, n->s, n->s_len);
    case JN_OUTPUT: {
        jinja_value v;
        TRY(eval(r, s, n->a, &v));
        return emit_value(r, n, v);
    }
    case JN_IF: {
        jinja_value c;
        TRY(eval(r, s, n->a, &c));
        if (loam__jinja_truthy(c))
            return exec_body(r, s, n->body, n->n_body);
        return exec_body(r, s, n->else_body, n->n_else);
    }
    case JN_FOR: {
        jinja_value it;
        TRY(eval(r, s, n->b, &it));
        return run_loop(r, s, n, it, 0);
    }
    case JN_SET: {
        jinja_value v;
        TRY(eval(r, s, n->b, &v));
        return assign(r, s, n->a, v);
    }
    case JN_SETBLOCK:
    case JN_FILTERBLOCK: {
        jinja_buf b, *saved;
        capture_begin(r, &b, &saved);
        scope *inner = scope_new(r, s);
        loam_status st = inner ? exec_body(r, inner, n->body, n->n_body) : loam__jinja_oom(r);
        jinja_value v = capture_end(r, &b, saved);
        TRY(st);
        TRY(apply_filter_chain(r, s, n->c, v, &v));
        if (n->kind == JN_SETBLOCK)
            return assign(r, s, n->a, v);
        return emit_value(r, n, v);
    }
    case JN_MACRO: {
        jinja_macro *m = loam__jinja_alloc(r->a, sizeof *m);
        if (!m)
            return loam__jinja_oom(r);
        m->node = n;
        m->closure = s;
        jinja_value v = jv_undef();
        v.type = JV_MACRO;
        v.u.m = m;
        return scope_set(r, s, n->s, n->s_len, v);
    }
    case JN_CALLBLOCK: {
        jinja_macro *m = loam__jinja_alloc(r->a, sizeof *m);
        if (!m)
            return loam__jinja_oom(r);
        m->node = n;
        m->closure = s;
        jinja_value caller = jv_undef();
        caller.type = JV_MACRO;
        caller.u.m = m;
        const jinja_node *call = n->a;
        jinja_value fn, res;
        jinja_args args;
        TRY(eval(r, s, call->a, &fn));
        TRY(eval_args(r, s, call, &args, 1));
        args.kw_names[args.n_kw] = "caller";
        args.kw_lens[args.n_kw] = 6;
        args.kw_vals[args.n_kw] = caller;
        args.n_kw++;
        r->at = call;
        TRY(loam__jinja_call_value(r, fn, &args, &res));
        return emit_value(r, n, res);
    }
    case JN_WITH: {
        scope *inner = scope_new(r, s);
        if (!inner)
            return loam__jinja_oom(r);
        for (uint32_t i = 0; i < n->n_args; i++) {
            jinja_value v;
            TRY(eval(r, s, n->args[i]->b, &v)); /* values see the outer scope, as in jinja2 */
            TRY(assign(r, inner, n->args[i]->a, v));
        }
        return exec_body(r, inner, n->body, n->n_body);
    }
    case JN_GENERATION: {
        scope *inner = scope_new(r, s);
        if (!inner)
            return loam__jinja_oom(r);
        return exec_body(r, inner, n->body, n->n_body);
    }
    case JN_BREAK:
        r->control = CTL_BREAK;
        return LOAM_OK;
    case JN_CONTINUE:
        r->control = CTL_CONTINUE;
        return LOAM_OK;
    default:
        return fail_at(r, n, "internal error: not a statement");
    }
}

static loam_status exec_body(jinja_render *r, scope *s, jinja_node *const *body, uint32_t n) {
    if (++r->eval_depth > JINJA_MAX_EVAL_DEPTH) {
        r->eval_depth--;
        return fail_at(r, n ? body[0] : NULL, "template evaluation nests too deeply");
    }
    loam_status st = LOAM_OK;
    for (uint32_t i = 0; i < n && r->control == CTL_NONE; i++) {
        st = exec(r, s, body[i]);
        if (st != LOAM_OK)
            break;
    }
    r->eval_depth--;
    return st;
}

loam_status loam__jinja_render(const jinja_template *t, jinja_arena *ra, jinja_dict *globals,
                               const jinja_config *lim, char **out, size_t *out_len,
                               loam_err *err) {
    *out = NULL;
    if (out_len)
        *out_len = 0;
    jinja_arena out_arena = {0};
    jinja_buf ob = {.a = &out_arena, .max = lim->max_output_bytes};
    jinja_render r = {.t = t, .a = ra, .lim = lim, .globals = globals, .out = &ob, .err = err};
    r.now = lim->now ? (double)lim->now : (double)time(NULL);
    ra->limit = lim->max_arena_bytes;
    loam_status st;
    scope *root = scope_new(&r, NULL);
    if (!root)
        st = loam__jinja_oom(&r);
    else
        st = exec_body(&r, root, t->body, t->n_body);
    if (st == LOAM_OK) {
        char *res = loam__malloc(ob.n + 1);
        if (!res) {
            st = loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
        } else {
            if (ob.n)
                memcpy(res, ob.p, ob.n);
            res[ob.n] = '\0';
            *out = res;
            if (out_len)
                *out_len = ob.n;
        }
    }
    loam__jinja_arena_free(&out_arena);
    return st;
}
