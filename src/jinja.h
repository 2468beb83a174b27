/* jinja.h: internals of the chat-template interpreter (a Jinja2 subset), shared by
 * src/jinja_lex.c (source -> tokens), src/jinja_parse.c (tokens -> AST), src/jinja_value.c (values,
 * arena, JSON in/out, Python str()/repr()), src/jinja_eval.c (the evaluator), src/jinja_builtins.c
 * (filters, tests, dict/list methods, globals) and src/jinja_str.c (str methods and string
 * operations). The public face is src/chat_template.c.
 *
 * Reference semantics: jinja2 3.x as Hugging Face transformers configures it for
 * apply_chat_template: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 * extensions=[loopcontrols, the `generation` tag]), default Undefined, `tojson` replaced by
 * json.dumps(x, ensure_ascii=False, indent=, separators=, sort_keys=), and the globals
 * raise_exception(msg) and strftime_now(fmt). Values behave as the Python objects they stand
 * for: str() of a list is "['a', 1]", 1.0 prints "1.0", True prints "True", dicts keep
 * insertion order.
 *
 * Memory: a parsed template owns one arena (the AST and its string constants), immutable after
 * parsing, so one template may be rendered from many threads at once. Each render has its own
 * arena for every value it makes; nothing is freed before the render ends, then the arena goes
 * at once. The arena has a byte limit, so a template cannot eat the machine.
 *
 * Strings are UTF-8 byte ranges (p, n), always valid UTF-8 (template source and JSON input are
 * validated); Python's code-point operations (len, slicing, reversal) decode on the fly.
 */
#ifndef LOAM_JINJA_H
#define LOAM_JINJA_H

#include "loam_internal.h"

#include <stdbool.h>
#include <stdint.h>

// ---- render settings: limits (each a clear error when exceeded) and the clock -----------------

typedef struct jinja_config {
    uint64_t max_output_bytes; /* rendered text */
    uint64_t max_arena_bytes;  /* every value a render makes, garbage included */
    uint64_t max_loop_iters;   /* for-loop iterations over the whole render */
    uint64_t max_steps;        /* evaluation work units (nodes, elements touched) */
    uint32_t max_call_depth;   /* nested macro calls and recursive loops */
    int64_t now;               /* strftime_now's clock (seconds since the epoch); 0 = time() */
} jinja_config;

#define JINJA_MAX_PARSE_DEPTH 200    /* nesting of expressions and blocks in the source */
#define JINJA_MAX_RANGE       100000 /* range() length, as jinja2's sandbox MAX_RANGE */

void loam__jinja_default_config(jinja_config *lim);

// ---- arena ------------------------------------------------------------------------------------

typedef struct jinja_chunk jinja_chunk;
typedef struct jinja_arena {
    jinja_chunk *head;
    uint64_t used;   /* bytes handed out plus chunk overhead */
    uint64_t limit;  /* 0 = none */
    bool over_limit; /* an allocation failed because of the limit */
} jinja_arena;

/* Zeroed, 16-byte aligned memory, or NULL (out of memory or over the limit). */
void *loam__jinja_alloc(jinja_arena *a, size_t n);
void loam__jinja_arena_free(jinja_arena *a);

// ---- values -----------------------------------------------------------------------------------

typedef enum jinja_type {
    JV_UNDEF = 0,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* also tuples (flag JF_TUPLE): only repr differs */
    JV_DICT,
    JV_NS, /* namespace(): a dict whose attributes can be set */
    JV_MACRO,
    JV_FUNC, /* builtin function or bound method */
    JV_LOOP, /* the `loop` object of a for loop */
} jinja_type;

#define JF_TUPLE 1u

typedef struct jinja_list jinja_list;
typedef struct jinja_dict jinja_dict;
typedef struct jinja_func jinja_func;
typedef struct jinja_loop jinja_loop;
typedef struct jinja_macro jinja_macro;

typedef struct jinja_value {
    uint8_t type;  /* jinja_type */
    uint8_t flags; /* JF_* */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;              /* JV_STR; for JV_UNDEF the hint (what was missing), may be empty */
        jinja_list *l;    /* JV_LIST */
        jinja_dict *d;    /* JV_DICT, JV_NS */
        jinja_func *fn;   /* JV_FUNC */
        jinja_loop *loop; /* JV_LOOP */
        jinja_macro *m;   /* JV_MACRO */
    } u;
} jinja_value;

struct jinja_list {
    jinja_value *v;
    size_t n, cap;
};

struct jinja_dict {
    jinja_value *keys, *vals;
    size_t n, cap;
    uint32_t *index; /* open-addressing hash of positions+1, built once n > 8 */
    size_t index_cap;
};

struct jinja_func {
    uint16_t id;      /* builtin number (jinja_builtins.c) */
    jinja_value self; /* bound object, or undefined for free functions */
};

struct jinja_loop {
    jinja_list *items; /* what is iterated (after the loop's `if` filter) */
    size_t index0;
    int64_t depth0;
    const void *node; /* the JN_FOR, for recursive loop(...) calls */
    void *scope;      /* scope the loop runs in */
    jinja_value changed_last;
    bool changed_init;
};

static inline jinja_value jv_undef(void) {
    jinja_value v;
    memset(&v, 0, sizeof v);
    return v;
}
static inline jinja_value jv_none(void) {
    jinja_value v = jv_undef();
    v.type = JV_NONE;
    return v;
}
static inline jinja_value jv_bool(bool b) {
    jinja_value v = jv_undef();
    v.type = JV_BOOL;
    v.u.b = b;
    return v;
}
static inline jinja_value jv_int(int64_t i) {
    jinja_value v = jv_undef();
    v.type = JV_INT;
    v.u.i = i;
    return v;
}
static inline jinja_value jv_float(double f) {
    jinja_value v = jv_undef();
    v.type = JV_FLOAT;
    v.u.f = f;
    return v;
}
static inline jinja_value jv_str(const char *p, size_t n) {
    jinja_value v = jv_undef();
    v.type = JV_STR;
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline jinja_value jv_undef_named(const char *p, size_t n) {
    jinja_value v = jv_undef();
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

/* Growable byte buffer in an arena (for building strings). */
typedef struct jinja_buf {
    jinja_arena *a;
    char *p;
    size_t n, cap;
    uint64_t max; /* 0 = none; exceeding it fails like out of memory */
    bool failed;
} jinja_buf;

void loam__jinja_buf_put(jinja_buf *b, const char *s, size_t n);
void loam__jinja_buf_putc(jinja_buf *b, char c);
void loam__jinja_buf_printf(jinja_buf *b, const char *fmt, ...) LOAM__PRINTF(2, 3);

/* Containers (NULL / false on allocation failure). */
jinja_list *loam__jinja_list_new(jinja_arena *a, size_t cap);
bool loam__jinja_list_push(jinja_arena *a, jinja_list *l, jinja_value v);
jinja_dict *loam__jinja_dict_new(jinja_arena *a);
/* Python d[k] = v: replaces the value in place (keeping the position) or appends. */
bool loam__jinja_dict_set(jinja_arena *a, jinja_dict *d, jinja_value k, jinja_value v);
/* Position of key k, or -1. Keys compare as Python dict keys do (1 == 1.0 == True). */
int64_t loam__jinja_dict_find(const jinja_dict *d, jinja_value k);
jinja_value loam__jinja_dict_get_cstr(const jinja_dict *d, const char *key, bool *found);
static inline jinja_value jv_list(jinja_list *l) {
    jinja_value v = jv_undef();
    v.type = JV_LIST;
    v.u.l = l;
    return v;
}
static inline jinja_value jv_dict(jinja_dict *d) {
    jinja_value v = jv_undef();
    v.type = JV_DICT;
    v.u.d = d;
    return v;
}

/* Python semantics. */
bool loam__jinja_truthy(jinja_value v);
bool loam__jinja_equal(jinja_value a, jinja_value b);
/* Python <: 0 on success with *lt set, -1 when the types cannot be ordered. */
int loam__jinja_less(jinja_value a, jinja_value b, bool *lt);
const char *loam__jinja_type_name(jinja_value v); /* "str", "int", "dict", "NoneType"... */

/* Appends Python str(v) (undefined prints nothing) / repr(v) to b. */
void loam__jinja_str(jinja_buf *b, jinja_value v);
void loam__jinja_repr(jinja_buf *b, jinja_value v);
/* str(v) as a value (strings returned as they are). */
jinja_value loam__jinja_to_str(jinja_arena *a, jinja_value v, bool *oom);
/* Python repr(float). */
void loam__jinja_float_repr(jinja_buf *b, double f);

/* json.dumps(v, ensure_ascii=, indent=, separators=, sort_keys=). indent: NULL = none, else the
 * indent string (json.dumps turns an int n into n spaces). item_sep / key_sep NULL = defaults.
 * Returns 0, or -1 with a message in why (a value that is not JSON serializable). */
int loam__jinja_json_dump(jinja_buf *b, jinja_value v, bool ensure_ascii, const char *indent,
                          size_t indent_len, const char *item_sep, const char *key_sep,
                          bool sort_keys, char *why, size_t why_cap);
/* Strict JSON text -> value (Python json.loads: ints stay ints, duplicate keys keep the first
 * position and the last value). 0 on success; -1 with "line:col: message" in why; -2 when
 * memory ran out. */
int loam__jinja_json_parse(jinja_arena *a, const char *text, size_t len, jinja_value *out,
                           char *why, size_t why_cap);

// ---- UTF-8 ------------------------------------------------------------------------------------

/* Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i. */
uint32_t loam__jinja_utf8_next(const char *s, size_t n, size_t *i);
void loam__jinja_utf8_put(jinja_buf *b, uint32_t cp);
/* Byte offset of the first invalid sequence, or len when s is valid UTF-8 (no surrogates). */
size_t loam__jinja_utf8_check(const char *s, size_t len);
size_t loam__jinja_utf8_len(const char *s, size_t n); /* code points */
bool loam__jinja_isspace(uint32_t cp);                /* Python str.isspace */

// ---- AST --------------------------------------------------------------------------------------

typedef enum jinja_kind {
    /* statements */
    JN_TEXT = 1,    /* s: literal output */
    JN_OUTPUT,      /* a: expression */
    JN_IF,          /* a: test, body, else_body (elif = an JN_IF alone in else_body) */
    JN_FOR,         /* a: target, b: iterable, c: filter or NULL, body, else_body, flag recursive */
    JN_SET,         /* a: target, b: value */
    JN_SETBLOCK,    /* a: target, body, c: filter chain applied to the body (JN_FILTER, a = NULL) */
    JN_MACRO,       /* s: name, args (JN_NAME, b = default or NULL), body */
    JN_CALLBLOCK,   /* a: the call expression, args: caller's parameters, body */
    JN_FILTERBLOCK, /* c: filter chain (innermost a = NULL), body */
    JN_WITH,        /* args: JN_SET assignments, body */
    JN_BREAK,
    JN_CONTINUE,
    JN_GENERATION, /* body, rendered in its own scope (transformers' {% generation %} call block) */
    /* expressions */
    JN_CONST,   /* val */
    JN_NAME,    /* s */
    JN_GETATTR, /* a, s */
    JN_GETITEM, /* a, b */
    JN_SLICE,   /* a, b start, c stop, d step (each may be NULL) */
    JN_CALL,    /* a: callee, args (JN_KWARG for name=value) */
    JN_KWARG,   /* s: name, a: value */
    JN_FILTER,  /* s: name, a: subject (NULL in filter blocks), args */
    JN_TEST,    /* s: name, a: subject, args, flag negated */
    JN_BINOP,   /* op, a, b */
    JN_NEG,     /* a */
    JN_POS,     /* a */
    JN_NOT,     /* a */
    JN_AND,     /* a, b */
    JN_OR,      /* a, b */
    JN_COMPARE, /* args: operands, ops: n_args-1 comparison operators */
    JN_COND,    /* a: test, b: then, c: else (NULL = undefined) */
    JN_LIST,    /* args */
    JN_TUPLE,   /* args */
    JN_DICT,    /* args: keys and values alternating */
    JN_NSATTR,  /* assignment target a.s (namespace attribute): a = JN_NAME */
} jinja_kind;

typedef enum jinja_op {
    JOP_ADD = 1,
    JOP_SUB,
    JOP_MUL,
    JOP_DIV,
    JOP_FLOORDIV,
    JOP_MOD,
    JOP_POW,
    JOP_CONCAT,
    JOP_EQ,
    JOP_NE,
    JOP_LT,
    JOP_LE,
    JOP_GT,
    JOP_GE,
    JOP_IN,
    JOP_NOTIN,
} jinja_op;

typedef struct jinja_node jinja_node;
struct jinja_node {
    uint8_t kind, op;
    bool flag;
    uint32_t line, col;
    const char *s; /* name or text */
    size_t s_len;
    jinja_value val;
    jinja_node *a, *b, *c, *d;
    jinja_node **args;
    uint32_t n_args;
    uint8_t *ops; /* JN_COMPARE */
    jinja_node **body, **else_body;
    uint32_t n_body, n_else;
};

typedef struct jinja_template {
    jinja_arena arena;
    jinja_node **body;
    uint32_t n_body;
} jinja_template;

// ---- lexer (jinja_lex.c) -> parser (jinja_parse.c) ---------------------------------------------

typedef enum tok_type {
    T_EOF,
    T_DATA,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP,
} tok_type;

typedef enum op_code {
    O_ADD = 1,
    O_SUB,
    O_DIV,
    O_FLOORDIV,
    O_MUL,
    O_MOD,
    O_POW,
    O_TILDE,
    O_LBRACKET,
    O_RBRACKET,
    O_LPAREN,
    O_RPAREN,
    O_LBRACE,
    O_RBRACE,
    O_EQ,
    O_NE,
    O_GT,
    O_GTEQ,
    O_LT,
    O_LTEQ,
    O_ASSIGN,
    O_DOT,
    O_COLON,
    O_PIPE,
    O_COMMA,
    O_SEMICOLON,
} op_code;

typedef struct jinja_token {
    uint8_t type;
    uint8_t op;
    uint32_t line, col;
    const char *s; /* name, decoded string, data */
    size_t n;
    int64_t i;
    double f;
} jinja_token;

typedef struct jinja_parser {
    jinja_template *t;
    const char *src; /* normalised source (in the arena) */
    size_t len;
    jinja_token *toks;
    size_t n_toks, cap_toks, pos; /* pos: the parser's current token */
    loam_err *err;
    bool failed;
    int depth;      /* parser recursion, bounded by JINJA_MAX_PARSE_DEPTH */
    int loop_depth; /* for loops around the current statement (break/continue) */
    size_t pos_off; /* pos_of() cache */
    uint32_t pos_line, pos_col;
    loam_status status;
} jinja_parser;

/* Tokenizes p->src (already normalised) into p->toks, ending with T_EOF. false on error. */
bool loam__jinja_lex(jinja_parser *p);
/* Records a syntax error "template:LINE:COL: message" (the first one wins). */
void loam__jinja_parse_fail(jinja_parser *p, uint32_t line, uint32_t col, const char *fmt, ...)
    LOAM__PRINTF(4, 5);
/* The same at a byte offset of p->src. */
void loam__jinja_parse_fail_off(jinja_parser *p, size_t off, const char *msg);
void loam__jinja_parse_oom(jinja_parser *p);
/* The text of an operator token ("//", "(", ...). */
const char *loam__jinja_op_text(uint8_t op);

/* Parses template source (any bytes; must be UTF-8) with transformers' settings. On failure
 * returns LOAM_E_TEMPLATE with "template:LINE:COL: message" in err. */
loam_status loam__jinja_parse(jinja_template *t, const char *src, size_t len, loam_err *err);

/* Renders with `globals` (a dict, borrowed) as the context, allocating values in `ra` (freed
 * by the caller). Output is a loam__malloc'd NUL-terminated string. */
loam_status loam__jinja_render(const jinja_template *t, jinja_arena *ra, jinja_dict *globals,
                               const jinja_config *lim, char **out, size_t *out_len, loam_err *err);

// ---- evaluator <-> builtins -------------------------------------------------------------------

typedef struct jinja_render jinja_render; /* jinja_eval.c */

/* Arguments of a builtin call: positional values, then keyword (name, value) pairs. */
typedef struct jinja_args {
    jinja_value *pos;
    size_t n_pos;
    const char **kw_names;
    size_t *kw_lens;
    jinja_value *kw_vals;
    size_t n_kw;
} jinja_args;

/* What the evaluator offers the builtins. */
jinja_arena *loam__jinja_arena(jinja_render *r);
loam_status loam__jinja_error(jinja_render *r, const char *fmt, ...) LOAM__PRINTF(2, 3);
loam_status loam__jinja_oom(jinja_render *r);
loam_status loam__jinja_steps(jinja_render *r, uint64_t n);
double loam__jinja_now(jinja_render *r);
/* Calls a callable value (macro or builtin) with args. */
loam_status loam__jinja_call_value(jinja_render *r, jinja_value fn, const jinja_args *args,
                                   jinja_value *out);
/* Python-level attribute access as the sandbox does it (methods first, then items). */
loam_status loam__jinja_getattr(jinja_render *r, jinja_value obj, const char *name, size_t n,
                                jinja_value *out);
/* Error for using an undefined value. */
loam_status loam__jinja_undefined_error(jinja_render *r, jinja_value u);
/* Materialises an iterable (list, tuple, str -> chars, dict -> keys, undefined -> empty). */
loam_status loam__jinja_iterate(jinja_render *r, jinja_value v, jinja_list **out);

/* Filters and tests by name; *found = false when there is no such name. */
loam_status loam__jinja_filter(jinja_render *r, const char *name, size_t n, jinja_value subject,
                               const jinja_args *args, jinja_value *out, bool *found);
loam_status loam__jinja_test(jinja_render *r, const char *name, size_t n, jinja_value subject,
                             const jinja_args *args, bool *out, bool *found);
/* Attribute `name` of a str/list/dict that is a method: a bound JV_FUNC, or *found = false. */
bool loam__jinja_method(jinja_render *r, jinja_value self, const char *name, size_t n,
                        jinja_value *out, loam_status *st);
/* A global function (range, namespace, dict, raise_exception, strftime_now...) or found=false. */
bool loam__jinja_global(const char *name, size_t n, jinja_value *out);
/* Calls a JV_FUNC. */
loam_status loam__jinja_call_builtin(jinja_render *r, const jinja_func *fn, const jinja_args *a,
                                     jinja_value *out);
/* True when `name` is a mutating list/dict method the immutable sandbox refuses. */
bool loam__jinja_unsafe_method(jinja_value self, const char *name, size_t n);

#define TRY(x)                                                                                     \
    do {                                                                                           \
        loam_status s_ = (x);                                                                      \
        if (s_ != LOAM_OK)                                                                         \
            return s_;                                                                             \
    } while (0)

/* Binds positional and keyword arguments to parameter names (Python rules: too many, unknown
 * or repeated arguments are errors). Unbound parameters are JV_UNDEF with have[i] false. */
loam_status loam__jinja_bind(jinja_render *r, const char *fname, const jinja_args *a,
                             const char *const *names, size_t n_names, jinja_value *vals,
                             bool *have);
/* In a builtin taking (jinja_render *r, const jinja_args *args): binds into v[] and have[]. */
#define BIND(fname, ...)                                                                           \
    static const char *const names_[] = {__VA_ARGS__};                                             \
    enum { N_ = sizeof names_ / sizeof names_[0] };                                                \
    jinja_value v[N_];                                                                             \
    bool have[N_];                                                                                 \
    TRY(loam__jinja_bind(r, fname, args, names_, N_, v, have))

/* Argument checks that report Python's TypeError wording; undefined values report themselves. */
loam_status loam__jinja_need_str(jinja_render *r, jinja_value v, const char *what);
loam_status loam__jinja_need_int(jinja_render *r, jinja_value v, const char *what, int64_t *out);
/* An optional boolean argument: its truthiness, or dflt when not given. */
bool loam__jinja_truthy_arg(jinja_value v, bool dflt);
/* Finishes a string built in b as *out (out of memory if b failed); counts its work. */
loam_status loam__jinja_buf_done(jinja_render *r, jinja_buf *b, jinja_value *out);

// ---- strings (jinja_str.c) --------------------------------------------------------------------

#define JINJA_STR_METHOD_BASE 100 /* jinja_func ids of str methods start here */

typedef enum jinja_case {
    JCASE_UPPER,
    JCASE_LOWER,
    JCASE_PY_TITLE,    /* str.title() */
    JCASE_CAPITALIZE,  /* str.capitalize() */
    JCASE_JINJA_TITLE, /* the title filter: words start after - whitespace ( { [ < */
} jinja_case;

loam_status loam__jinja_str_case(jinja_render *r, jinja_value s, jinja_case how, jinja_value *out);
/* str.strip/lstrip/rstrip(chars): which 1 left, 2 right, 3 both; chars undefined/None = spaces. */
loam_status loam__jinja_str_strip(jinja_render *r, jinja_value s, jinja_value chars, int which,
                                  jinja_value *out);
/* str.replace(old, new, count); count < 0 = all. */
loam_status loam__jinja_str_replace(jinja_render *r, jinja_value s, jinja_value old, jinja_value nw,
                                    int64_t count, jinja_value *out);
loam_status loam__jinja_str_splitlines(jinja_render *r, jinja_value s, bool keepends,
                                       jinja_list **out);
/* Python "fmt" % (vals...). */
loam_status loam__jinja_str_printf(jinja_render *r, jinja_value fmt, const jinja_value *vals,
                                   size_t n_vals, jinja_value *out);
/* "fmt" % arg, a tuple spreading into the arguments. */
loam_status loam__jinja_percent(jinja_render *r, jinja_value fmt, jinja_value arg,
                                jinja_value *out);
/* str.isdigit/isalpha/isalnum/isspace/isupper/islower for kind 0..5. */
bool loam__jinja_str_is(jinja_value s, int kind);
const char *loam__jinja_find_bytes(const char *h, size_t hn, const char *nd, size_t nn);
/* Method number of a str method name, 0 if none; calling one. */
uint16_t loam__jinja_str_method_id(const char *name, size_t n);
loam_status loam__jinja_str_method(jinja_render *r, uint16_t id, jinja_value s,
                                   const jinja_args *args, jinja_value *out);

#endif /* LOAM_JINJA_H */
