/* jinja_parse.c: parser of the chat-template language (a Jinja2 subset): the tokens of
 * jinja_lex.c -> the AST of jinja.h.
 *
 * Grammar (jinja2 precedence, lowest first): cond-expr `a if b else c`, or, and, not, comparisons
 * (chained, incl. in / not in), + -, ~, * / // %, ** (left-assoc), unary - +, then postfix
 * (.attr, [index], [a:b:c], call(...)), filters `|f(args)` and tests `is [not] t(args)` (which
 * bind looser than unary minus, so -1|abs == 1). Statements: if/elif/else, for (with target
 * tuples, `if` filter, else, recursive), set (incl. namespace attributes and block set), macro,
 * call blocks, filter blocks, with, break/continue, raw, generation (transformers' tag).
 *
 * Every node records the line and column where it starts, for error messages. Nesting depth is
 * bounded (JINJA_MAX_PARSE_DEPTH) so hostile input cannot overflow the C stack.
 */
#include "jinja.h"

typedef jinja_parser parser;
typedef jinja_token token;

// ---- parser helpers ---------------------------------------------------------------------------

static token *cur(parser *p) {
    return &p->toks[p->pos];
}
static token *peek(parser *p, size_t k) {
    size_t i = p->pos + k;
    return &p->toks[i < p->n_toks ? i : p->n_toks - 1];
}
static void advance(parser *p) {
    if (p->pos + 1 < p->n_toks)
        p->pos++;
}
static bool is_op(parser *p, uint8_t op) {
    return cur(p)->type == T_OP && cur(p)->op == op;
}
static bool tok_is_name(const token *t, const char *name) {
    size_t l = strlen(name);
    return t->type == T_NAME && t->n == l && !memcmp(t->s, name, l);
}
static bool is_name(parser *p, const char *name) {
    return tok_is_name(cur(p), name);
}

static const char *tok_desc(const token *t) {
    switch (t->type) {
    case T_EOF:
        return "end of template";
    case T_DATA:
        return "template data";
    case T_VAR_BEGIN:
        return "'{{'";
    case T_VAR_END:
        return "'}}'";
    case T_BLOCK_BEGIN:
        return "'{%'";
    case T_BLOCK_END:
        return "'%}'";
    case T_NAME:
        return "name";
    case T_STRING:
        return "string";
    case T_INT:
        return "integer";
    case T_FLOAT:
        return "float";
    default:
        return loam__jinja_op_text(t->op);
    }
}

static void fail_tok(parser *p, const char *want) {
    token *t = cur(p);
    if (t->type == T_NAME)
        loam__jinja_parse_fail(p, t->line, t->col, "expected %s, got '%.*s'", want,
                               (int)(t->n > 40 ? 40 : t->n), t->s);
    else
        loam__jinja_parse_fail(p, t->line, t->col, "expected %s, got %s", want, tok_desc(t));
}

static bool expect_op(parser *p, uint8_t op, const char *desc) {
    if (!is_op(p, op)) {
        fail_tok(p, desc);
        return false;
    }
    advance(p);
    return true;
}

static bool expect_type(parser *p, uint8_t type, const char *desc) {
    if (cur(p)->type != type) {
        fail_tok(p, desc);
        return false;
    }
    advance(p);
    return true;
}

static jinja_node *node_at(parser *p, uint8_t kind, const token *at) {
    jinja_node *n = loam__jinja_alloc(&p->t->arena, sizeof *n);
    if (!n) {
        loam__jinja_parse_oom(p);
        return NULL;
    }
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

/* Growable node list while parsing; copied into the arena when done. */
typedef struct nlist {
    jinja_node **v;
    uint32_t n, cap;
} nlist;

static bool nl_push(parser *p, nlist *l, jinja_node *x) {
    if (!x)
        return false;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 8;
        jinja_node **nv = loam__jinja_alloc(&p->t->arena, cap * sizeof *nv);
        if (!nv) {
            loam__jinja_parse_oom(p);
            return false;
        }
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static bool enter(parser *p) {
    if (++p->depth > JINJA_MAX_PARSE_DEPTH) {
        token *t = cur(p);
        loam__jinja_parse_fail(p, t->line, t->col,
                               "template nests too deeply (more than %d levels)",
                               JINJA_MAX_PARSE_DEPTH);
        return false;
    }
    return true;
}
static void leave(parser *p) {
    p->depth--;
}

// ---- expressions ------------------------------------------------------------------------------

static jinja_node *parse_expression(parser *p, bool with_condexpr);
static jinja_node *parse_tuple(parser *p, bool with_condexpr, bool simplified,
                               const char *end_name);
static jinja_node *parse_unary(parser *p, bool with_filter);
static jinja_node *parse_primary(parser *p);
static jinja_node *parse_postfix(parser *p, jinja_node *node);
static jinja_node *parse_filter_expr(parser *p, jinja_node *node);

static jinja_node *parse_or(parser *p);

static jinja_node *parse_condexpr(parser *p) {
    token *at = cur(p);
    jinja_node *e1 = parse_or(p);
    while (e1 && is_name(p, "if")) {
        advance(p);
        jinja_node *c = node_at(p, JN_COND, at);
        if (!c)
            return NULL;
        c->b = e1;
        c->a = parse_or(p);
        if (!c->a)
            return NULL;
        if (is_name(p, "else")) {
            advance(p);
            c->c = parse_condexpr(p);
            if (!c->c)
                return NULL;
        }
        e1 = c;
    }
    return e1;
}

static jinja_node *parse_expression(parser *p, bool with_condexpr) {
    if (!enter(p))
        return NULL;
    jinja_node *r = with_condexpr ? parse_condexpr(p) : parse_or(p);
    leave(p);
    return r;
}

static jinja_node *parse_not(parser *p);
static jinja_node *parse_and(parser *p) {
    jinja_node *left = parse_not(p);
    while (left && is_name(p, "and")) {
        token *at = cur(p);
        advance(p);
        jinja_node *n = node_at(p, JN_AND, at);
        if (!n)
            return NULL;
        n->a = left;
        n->b = parse_not(p);
        if (!n->b)
            return NULL;
        left = n;
    }
    return left;
}

static jinja_node *parse_or(parser *p) {
    jinja_node *left = parse_and(p);
    while (left && is_name(p, "or")) {
        token *at = cur(p);
        advance(p);
        jinja_node *n = node_at(p, JN_OR, at);
        if (!n)
            return NULL;
        n->a = left;
        n->b = parse_and(p);
        if (!n->b)
            return NULL;
        left = n;
    }
    return left;
}

static jinja_node *parse_compare(parser *p);
static jinja_node *parse_not(parser *p) {
    if (is_name(p, "not")) {
        token *at = cur(p);
        advance(p);
        if (!enter(p))
            return NULL;
        jinja_node *n = node_at(p, JN_NOT, at);
        if (n)
            n->a = parse_not(p);
        leave(p);
        return n && n->a ? n : NULL;
    }
    return parse_compare(p);
}

static jinja_node *parse_math1(parser *p);
static jinja_node *parse_compare(parser *p) {
    token *at = cur(p);
    jinja_node *expr = parse_math1(p);
    if (!expr)
        return NULL;
    nlist operands = {0};
    uint8_t ops[64];
    uint32_t n_ops = 0;
    for (;;) {
        uint8_t op = 0;
        token *t = cur(p);
        if (t->type == T_OP) {
            switch (t->op) {
            case O_EQ:
                op = JOP_EQ;
                break;
            case O_NE:
                op = JOP_NE;
                break;
            case O_LT:
                op = JOP_LT;
                break;
            case O_LTEQ:
                op = JOP_LE;
                break;
            case O_GT:
                op = JOP_GT;
                break;
            case O_GTEQ:
                op = JOP_GE;
                break;
            default:
                break;
            }
            if (op)
                advance(p);
        } else if (tok_is_name(t, "in")) {
            op = JOP_IN;
            advance(p);
        } else if (tok_is_name(t, "not") && tok_is_name(peek(p, 1), "in")) {
            op = JOP_NOTIN;
            advance(p);
            advance(p);
        }
        if (!op)
            break;
        if (n_ops == sizeof ops) {
            loam__jinja_parse_fail(p, t->line, t->col, "too many chained comparisons");
            return NULL;
        }
        if (n_ops == 0 && !nl_push(p, &operands, expr))
            return NULL;
        ops[n_ops++] = op;
        if (!nl_push(p, &operands, parse_math1(p)))
            return NULL;
    }
    if (n_ops == 0)
        return expr;
    jinja_node *n = node_at(p, JN_COMPARE, at);
    if (!n)
        return NULL;
    n->args = operands.v;
    n->n_args = operands.n;
    n->ops = loam__jinja_alloc(&p->t->arena, n_ops);
    if (!n->ops) {
        loam__jinja_parse_oom(p);
        return NULL;
    }
    memcpy(n->ops, ops, n_ops);
    return n;
}

static jinja_node *binop(parser *p, uint8_t op, jinja_node *a, jinja_node *b, const token *at) {
    if (!a || !b)
        return NULL;
    jinja_node *n = node_at(p, JN_BINOP, at);
    if (!n)
        return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jinja_node *parse_concat(parser *p);
static jinja_node *parse_math1(parser *p) {
    jinja_node *left = parse_concat(p);
    while (left && (is_op(p, O_ADD) || is_op(p, O_SUB))) {
        token at = *cur(p);
        advance(p);
        left = binop(p, at.op == O_ADD ? JOP_ADD : JOP_SUB, left, parse_concat(p), &at);
    }
    return left;
}

static jinja_node *parse_math2(parser *p);
static jinja_node *parse_concat(parser *p) {
    jinja_node *left = parse_math2(p);
    while (left && is_op(p, O_TILDE)) {
        token at = *cur(p);
        advance(p);
        left = binop(p, JOP_CONCAT, left, parse_math2(p), &at);
    }
    return left;
}

static jinja_node *parse_pow(parser *p);
static jinja_node *parse_math2(parser *p) {
    jinja_node *left = parse_pow(p);
    while (left &&
           (is_op(p, O_MUL) || is_op(p, O_DIV) || is_op(p, O_FLOORDIV) || is_op(p, O_MOD))) {
        token at = *cur(p);
        advance(p);
        uint8_t op = at.op == O_MUL        ? JOP_MUL
                     : at.op == O_DIV      ? JOP_DIV
                     : at.op == O_FLOORDIV ? JOP_FLOORDIV
                                           : JOP_MOD;
        left = binop(p, op, left, parse_pow(p), &at);
    }
    return left;
}

static jinja_node *parse_pow(parser *p) {
    jinja_node *left = parse_unary(p, true);
    while (left && is_op(p, O_POW)) {
        token at = *cur(p);
        advance(p);
        left = binop(p, JOP_POW, left, parse_unary(p, true), &at);
    }
    return left;
}

static jinja_node *parse_unary(parser *p, bool with_filter) {
    if (!enter(p))
        return NULL;
    token *at = cur(p);
    jinja_node *node;
    if (is_op(p, O_SUB) || is_op(p, O_ADD)) {
        bool neg = is_op(p, O_SUB);
        advance(p);
        node = node_at(p, neg ? JN_NEG : JN_POS, at);
        if (node) {
            node->a = parse_unary(p, false);
            if (!node->a)
                node = NULL;
        }
    } else {
        node = parse_primary(p);
    }
    if (node)
        node = parse_postfix(p, node);
    if (node && with_filter)
        node = parse_filter_expr(p, node);
    leave(p);
    return node;
}

static jinja_node *const_node(parser *p, const token *at, jinja_value v) {
    jinja_node *n = node_at(p, JN_CONST, at);
    if (n)
        n->val = v;
    return n;
}

static jinja_node *parse_primary(parser *p) {
    token *t = cur(p);
    switch (t->type) {
    case T_NAME: {
        advance(p);
        if (tok_is_name(t, "true") || tok_is_name(t, "True"))
            return const_node(p, t, jv_bool(true));
        if (tok_is_name(t, "false") || tok_is_name(t, "False"))
            return const_node(p, t, jv_bool(false));
        if (tok_is_name(t, "none") || tok_is_name(t, "None"))
            return const_node(p, t, jv_none());
        jinja_node *n = node_at(p, JN_NAME, t);
        if (n) {
            n->s = t->s;
            n->s_len = t->n;
        }
        return n;
    }
    case T_STRING: {
        /* adjacent string literals concatenate */
        const char *s = t->s;
        size_t len = t->n;
        advance(p);
        while (cur(p)->type == T_STRING) {
            token *t2 = cur(p);
            char *c = loam__jinja_alloc(&p->t->arena, len + t2->n + 1);
            if (!c) {
                loam__jinja_parse_oom(p);
                return NULL;
            }
            memcpy(c, s, len);
            memcpy(c + len, t2->s, t2->n);
            s = c;
            len += t2->n;
            advance(p);
        }
        return const_node(p, t, jv_str(s, len));
    }
    case T_INT:
        advance(p);
        return const_node(p, t, jv_int(t->i));
    case T_FLOAT:
        advance(p);
        return const_node(p, t, jv_float(t->f));
    case T_OP:
        if (t->op == O_LPAREN) {
            advance(p);
            if (is_op(p, O_RPAREN)) { /* () is the empty tuple */
                advance(p);
                return node_at(p, JN_TUPLE, t);
            }
            jinja_node *n = parse_tuple(p, true, false, NULL);
            if (!n || !expect_op(p, O_RPAREN, "')'"))
                return NULL;
            return n;
        }
        if (t->op == O_LBRACKET) {
            advance(p);
            jinja_node *n = node_at(p, JN_LIST, t);
            if (!n)
                return NULL;
            nlist items = {0};
            while (!is_op(p, O_RBRACKET)) {
                if (items.n && !expect_op(p, O_COMMA, "',' or ']'"))
                    return NULL;
                if (is_op(p, O_RBRACKET))
                    break;
                if (!nl_push(p, &items, parse_expression(p, true)))
                    return NULL;
            }
            advance(p);
            n->args = items.v;
            n->n_args = items.n;
            return n;
        }
        if (t->op == O_LBRACE) {
            advance(p);
            jinja_node *n = node_at(p, JN_DICT, t);
            if (!n)
                return NULL;
            nlist items = {0};
            while (!is_op(p, O_RBRACE)) {
                if (items.n && !expect_op(p, O_COMMA, "',' or '}'"))
                    return NULL;
                if (is_op(p, O_RBRACE))
                    break;
                if (!nl_push(p, &items, parse_expression(p, true)))
                    return NULL;
                if (!expect_op(p, O_COLON, "':'"))
                    return NULL;
                if (!nl_push(p, &items, parse_expression(p, true)))
                    return NULL;
            }
            advance(p);
            n->args = items.v;
            n->n_args = items.n;
            return n;
        }
        break;
    default:
        break;
    }
    fail_tok(p, "an expression");
    return NULL;
}

/* Tuple or single expression; end_name: a name that ends the tuple (e.g. "in"). */
static bool tuple_ends(parser *p, const char *end_name) {
    token *t = cur(p);
    if (t->type == T_VAR_END || t->type == T_BLOCK_END || t->type == T_EOF)
        return true;
    if (t->type == T_OP && (t->op == O_RPAREN || t->op == O_RBRACKET || t->op == O_RBRACE))
        return true;
    if (end_name && tok_is_name(t, end_name))
        return true;
    return false;
}

static jinja_node *parse_tuple(parser *p, bool with_condexpr, bool simplified,
                               const char *end_name) {
    token *at = cur(p);
    nlist items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n) {
            if (!is_op(p, O_COMMA))
                break;
            advance(p);
            is_tuple = true;
        }
        if (tuple_ends(p, end_name))
            break;
        jinja_node *e;
        if (simplified)
            e = parse_primary(p);
        else
            e = parse_expression(p, with_condexpr);
        if (!nl_push(p, &items, e))
            return NULL;
    }
    if (!is_tuple) {
        if (items.n == 1)
            return items.v[0];
        if (!p->failed)
            loam__jinja_parse_fail(p, at->line, at->col, "expected an expression, got %s",
                                   tok_desc(at));
        return NULL;
    }
    jinja_node *n = node_at(p, JN_TUPLE, at);
    if (!n)
        return NULL;
    n->args = items.v;
    n->n_args = items.n;
    return n;
}

/* Call arguments after '(' : positional, then name=value. */
static bool parse_call_args(parser *p, jinja_node *n) {
    nlist args = {0};
    bool kw_seen = false;
    while (!is_op(p, O_RPAREN)) {
        if (args.n && !expect_op(p, O_COMMA, "',' or ')'"))
            return false;
        if (is_op(p, O_RPAREN))
            break;
        token *t = cur(p);
        if (is_op(p, O_MUL) || is_op(p, O_POW)) {
            loam__jinja_parse_fail(p, t->line, t->col,
                                   "*args and **kwargs in calls are not supported");
            return false;
        }
        if (t->type == T_NAME && peek(p, 1)->type == T_OP && peek(p, 1)->op == O_ASSIGN) {
            jinja_node *kw = node_at(p, JN_KWARG, t);
            if (!kw)
                return false;
            kw->s = t->s;
            kw->s_len = t->n;
            advance(p);
            advance(p);
            kw->a = parse_expression(p, true);
            if (!kw->a)
                return false;
            kw_seen = true;
            if (!nl_push(p, &args, kw))
                return false;
        } else {
            if (kw_seen) {
                loam__jinja_parse_fail(p, t->line, t->col,
                                       "positional argument after keyword argument");
                return false;
            }
            if (!nl_push(p, &args, parse_expression(p, true)))
                return false;
        }
    }
    advance(p);
    n->args = args.v;
    n->n_args = args.n;
    return true;
}

static jinja_node *parse_subscript(parser *p, jinja_node *node, const token *at) {
    /* after '[': index, or slice a:b:c */
    jinja_node *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    bool is_slice = false;
    if (!is_op(p, O_COLON)) {
        parts[0] = parse_expression(p, true);
        if (!parts[0])
            return NULL;
    }
    while (is_op(p, O_COLON) && k < 2) {
        is_slice = true;
        advance(p);
        k++;
        if (!is_op(p, O_COLON) && !is_op(p, O_RBRACKET)) {
            parts[k] = parse_expression(p, true);
            if (!parts[k])
                return NULL;
        }
    }
    if (!is_slice && is_op(p, O_COMMA)) {
        loam__jinja_parse_fail(p, cur(p)->line, cur(p)->col, "tuple subscripts are not supported");
        return NULL;
    }
    if (!expect_op(p, O_RBRACKET, "']'"))
        return NULL;
    jinja_node *n = node_at(p, is_slice ? JN_SLICE : JN_GETITEM, at);
    if (!n)
        return NULL;
    n->a = node;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jinja_node *parse_postfix(parser *p, jinja_node *node) {
    while (node) {
        token *at = cur(p);
        if (is_op(p, O_DOT)) {
            advance(p);
            token *t = cur(p);
            if (t->type == T_NAME) {
                jinja_node *n = node_at(p, JN_GETATTR, at);
                if (!n)
                    return NULL;
                n->a = node;
                n->s = t->s;
                n->s_len = t->n;
                advance(p);
                node = n;
            } else if (t->type == T_INT) {
                jinja_node *n = node_at(p, JN_GETITEM, at);
                if (!n)
                    return NULL;
                n->a = node;
                n->b = const_node(p, t, jv_int(t->i));
                advance(p);
                node = n;
            } else {
                fail_tok(p, "an attribute name");
                return NULL;
            }
        } else if (is_op(p, O_LBRACKET)) {
            advance(p);
            node = parse_subscript(p, node, at);
        } else if (is_op(p, O_LPAREN)) {
            advance(p);
            jinja_node *n = node_at(p, JN_CALL, at);
            if (!n)
                return NULL;
            n->line = node->line; /* a call is reported where its callee starts */
            n->col = node->col;
            n->a = node;
            if (!parse_call_args(p, n))
                return NULL;
            node = n;
        } else {
            break;
        }
    }
    return node;
}

/* name('.' name)* for filters and tests, stored as one dotted string. */
static bool parse_dotted(parser *p, jinja_node *n) {
    token *t = cur(p);
    if (t->type != T_NAME) {
        fail_tok(p, "a filter or test name");
        return false;
    }
    n->s = t->s;
    n->s_len = t->n;
    advance(p);
    while (is_op(p, O_DOT) && peek(p, 1)->type == T_NAME) {
        advance(p);
        n->s_len = (size_t)(cur(p)->s + cur(p)->n - n->s);
        advance(p);
    }
    return true;
}

static jinja_node *parse_filter(parser *p, jinja_node *node, const token *at) {
    /* at '|' already consumed */
    jinja_node *n = node_at(p, JN_FILTER, at);
    if (!n)
        return NULL;
    n->a = node;
    if (!parse_dotted(p, n))
        return NULL;
    if (is_op(p, O_LPAREN)) {
        advance(p);
        if (!parse_call_args(p, n))
            return NULL;
    }
    return n;
}

static jinja_node *parse_filter_expr(parser *p, jinja_node *node) {
    while (node) {
        token *at = cur(p);
        if (is_op(p, O_PIPE)) {
            advance(p);
            node = parse_filter(p, node, at);
        } else if (is_name(p, "is")) {
            advance(p);
            jinja_node *n = node_at(p, JN_TEST, at);
            if (!n)
                return NULL;
            n->a = node;
            if (is_name(p, "not")) {
                n->flag = true;
                advance(p);
            }
            if (!parse_dotted(p, n))
                return NULL;
            token *t = cur(p);
            if (is_op(p, O_LPAREN)) {
                advance(p);
                if (!parse_call_args(p, n))
                    return NULL;
            } else if ((t->type == T_NAME || t->type == T_STRING || t->type == T_INT ||
                        t->type == T_FLOAT ||
                        (t->type == T_OP &&
                         (t->op == O_LPAREN || t->op == O_LBRACKET || t->op == O_LBRACE))) &&
                       !tok_is_name(t, "else") && !tok_is_name(t, "or") && !tok_is_name(t, "and")) {
                if (tok_is_name(t, "is")) {
                    loam__jinja_parse_fail(p, t->line, t->col,
                                           "you cannot chain multiple tests with is");
                    return NULL;
                }
                jinja_node *arg = parse_postfix(p, parse_primary(p));
                if (!arg)
                    return NULL;
                n->args = loam__jinja_alloc(&p->t->arena, sizeof(jinja_node *));
                if (!n->args) {
                    loam__jinja_parse_oom(p);
                    return NULL;
                }
                n->args[0] = arg;
                n->n_args = 1;
            }
            node = n;
        } else if (is_op(p, O_LPAREN)) {
            advance(p);
            jinja_node *n = node_at(p, JN_CALL, at);
            if (!n)
                return NULL;
            n->a = node;
            if (!parse_call_args(p, n))
                return NULL;
            node = n;
        } else {
            break;
        }
    }
    return node;
}

// ---- statements -------------------------------------------------------------------------------

static bool subparse(parser *p, const char *const *end_names, nlist *out);

/* Assignment target: name, name.attr (namespace, when allowed), or a tuple of names. */
static jinja_node *parse_assign_target(parser *p, bool with_namespace, const char *end_name) {
    token *t = cur(p);
    if (with_namespace && t->type == T_NAME && peek(p, 1)->type == T_OP &&
        peek(p, 1)->op == O_DOT && peek(p, 2)->type == T_NAME) {
        jinja_node *n = node_at(p, JN_NSATTR, t);
        if (!n)
            return NULL;
        n->a = node_at(p, JN_NAME, t);
        if (!n->a)
            return NULL;
        n->a->s = t->s;
        n->a->s_len = t->n;
        advance(p);
        advance(p);
        n->s = cur(p)->s;
        n->s_len = cur(p)->n;
        advance(p);
        return n;
    }
    jinja_node *target = parse_tuple(p, true, true, end_name);
    if (!target)
        return NULL;
    if (target->kind == JN_TUPLE) {
        for (uint32_t i = 0; i < target->n_args; i++)
            if (target->args[i]->kind != JN_NAME) {
                loam__jinja_parse_fail(p, target->args[i]->line, target->args[i]->col,
                                       "cannot assign to this expression");
                return NULL;
            }
    } else if (target->kind != JN_NAME) {
        loam__jinja_parse_fail(p, target->line, target->col, "cannot assign to this expression");
        return NULL;
    }
    for (uint32_t i = 0; i < (target->kind == JN_TUPLE ? target->n_args : 1); i++) {
        jinja_node *nm = target->kind == JN_TUPLE ? target->args[i] : target;
        static const char *const reserved[] = {"true", "false", "none", "True", "False", "None"};
        for (size_t k = 0; k < 6; k++)
            if (nm->s_len == strlen(reserved[k]) && !memcmp(nm->s, reserved[k], nm->s_len)) {
                loam__jinja_parse_fail(p, nm->line, nm->col, "cannot assign to '%s'", reserved[k]);
                return NULL;
            }
    }
    return target;
}

/* parse_statements: [':'] '%}' body up to one of end_names; the end name is the current token. */
static bool parse_body(parser *p, const char *const *end_names, jinja_node ***body, uint32_t *n) {
    if (is_op(p, O_COLON))
        advance(p);
    if (!expect_type(p, T_BLOCK_END, "'%}'"))
        return false;
    nlist l = {0};
    if (!subparse(p, end_names, &l))
        return false;
    *body = l.v;
    *n = l.n;
    return true;
}

static bool expect_end_tag(parser *p, const char *name) {
    if (!is_name(p, name)) {
        fail_tok(p, name);
        return false;
    }
    advance(p);
    return true;
}

static jinja_node *parse_if(parser *p, token *at) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const end_only[] = {"endif", NULL};
    jinja_node *root = node_at(p, JN_IF, at), *node = root;
    while (node) {
        node->a = parse_tuple(p, false, false, NULL);
        if (!node->a || !parse_body(p, ends, &node->body, &node->n_body))
            return NULL;
        token *t = cur(p);
        advance(p);
        if (tok_is_name(t, "elif")) {
            jinja_node *e = node_at(p, JN_IF, t);
            if (!e)
                return NULL;
            node->else_body = loam__jinja_alloc(&p->t->arena, sizeof(jinja_node *));
            if (!node->else_body) {
                loam__jinja_parse_oom(p);
                return NULL;
            }
            node->else_body[0] = e;
            node->n_else = 1;
            node = e;
            continue;
        }
        if (tok_is_name(t, "else")) {
            if (!parse_body(p, end_only, &node->else_body, &node->n_else))
                return NULL;
            advance(p);
        }
        break;
    }
    return root;
}

static jinja_node *parse_for(parser *p, token *at) {
    static const char *const ends[] = {"endfor", "else", NULL};
    static const char *const end_only[] = {"endfor", NULL};
    jinja_node *n = node_at(p, JN_FOR, at);
    if (!n)
        return NULL;
    n->a = parse_assign_target(p, false, "in");
    if (!n->a || !expect_end_tag(p, "in"))
        return NULL;
    n->b = parse_tuple(p, false, false, "recursive");
    if (!n->b)
        return NULL;
    if (is_name(p, "if")) {
        advance(p);
        n->c = parse_expression(p, true);
        if (!n->c)
            return NULL;
    }
    if (is_name(p, "recursive")) {
        advance(p);
        n->flag = true;
    }
    p->loop_depth++;
    bool ok = parse_body(p, ends, &n->body, &n->n_body);
    p->loop_depth--;
    if (!ok)
        return NULL;
    if (is_name(p, "else")) {
        advance(p);
        if (!parse_body(p, end_only, &n->else_body, &n->n_else))
            return NULL;
    }
    advance(p);
    return n;
}

static jinja_node *parse_filter_chain(parser *p, const token *at) {
    jinja_node *chain = NULL;
    for (;;) {
        chain = parse_filter(p, chain, at);
        if (!chain)
            return NULL;
        if (!is_op(p, O_PIPE))
            break;
        advance(p);
    }
    return chain;
}

static jinja_node *parse_set(parser *p, token *at) {
    static const char *const ends[] = {"endset", NULL};
    jinja_node *target = parse_assign_target(p, true, NULL);
    if (!target)
        return NULL;
    if (is_op(p, O_ASSIGN)) {
        advance(p);
        jinja_node *n = node_at(p, JN_SET, at);
        if (!n)
            return NULL;
        n->a = target;
        n->b = parse_tuple(p, true, false, NULL);
        return n->b ? n : NULL;
    }
    jinja_node *n = node_at(p, JN_SETBLOCK, at);
    if (!n)
        return NULL;
    n->a = target;
    if (is_op(p, O_PIPE)) {
        token *ft = cur(p);
        advance(p);
        n->c = parse_filter_chain(p, ft);
        if (!n->c)
            return NULL;
    }
    if (!parse_body(p, ends, &n->body, &n->n_body))
        return NULL;
    advance(p);
    return n;
}

/* Macro or caller signature: '(' name [= default], ... ')'. */
static bool parse_signature(parser *p, jinja_node *n) {
    nlist args = {0};
    if (!expect_op(p, O_LPAREN, "'('"))
        return false;
    while (!is_op(p, O_RPAREN)) {
        if (args.n && !expect_op(p, O_COMMA, "',' or ')'"))
            return false;
        if (is_op(p, O_RPAREN))
            break;
        token *t = cur(p);
        if (t->type != T_NAME) {
            fail_tok(p, "a parameter name");
            return false;
        }
        jinja_node *a = node_at(p, JN_NAME, t);
        if (!a)
            return false;
        a->s = t->s;
        a->s_len = t->n;
        advance(p);
        if (is_op(p, O_ASSIGN)) {
            advance(p);
            a->b = parse_expression(p, true);
            if (!a->b)
                return false;
        }
        if (!nl_push(p, &args, a))
            return false;
    }
    advance(p);
    n->args = args.v;
    n->n_args = args.n;
    return true;
}

static jinja_node *parse_macro(parser *p, token *at) {
    static const char *const ends[] = {"endmacro", NULL};
    jinja_node *n = node_at(p, JN_MACRO, at);
    if (!n)
        return NULL;
    token *t = cur(p);
    if (t->type != T_NAME) {
        fail_tok(p, "a macro name");
        return NULL;
    }
    n->s = t->s;
    n->s_len = t->n;
    advance(p);
    if (!parse_signature(p, n))
        return NULL;
    int saved = p->loop_depth;
    p->loop_depth = 0;
    bool ok = parse_body(p, ends, &n->body, &n->n_body);
    p->loop_depth = saved;
    if (!ok)
        return NULL;
    advance(p);
    return n;
}

static jinja_node *parse_call_block(parser *p, token *at) {
    static const char *const ends[] = {"endcall", NULL};
    jinja_node *n = node_at(p, JN_CALLBLOCK, at);
    if (!n)
        return NULL;
    if (is_op(p, O_LPAREN) && !parse_signature(p, n))
        return NULL;
    token *ct = cur(p);
    n->a = parse_expression(p, true);
    if (!n->a)
        return NULL;
    if (n->a->kind != JN_CALL) {
        loam__jinja_parse_fail(p, ct->line, ct->col, "expected a call after {%% call %%}");
        return NULL;
    }
    int saved = p->loop_depth;
    p->loop_depth = 0;
    bool ok = parse_body(p, ends, &n->body, &n->n_body);
    p->loop_depth = saved;
    if (!ok)
        return NULL;
    advance(p);
    return n;
}

static jinja_node *parse_statement(parser *p) {
    token *t = cur(p);
    if (t->type != T_NAME) {
        fail_tok(p, "a tag name");
        return NULL;
    }
    if (!enter(p))
        return NULL;
    advance(p);
    jinja_node *n = NULL;
    if (tok_is_name(t, "if"))
        n = parse_if(p, t);
    else if (tok_is_name(t, "for"))
        n = parse_for(p, t);
    else if (tok_is_name(t, "set"))
        n = parse_set(p, t);
    else if (tok_is_name(t, "macro"))
        n = parse_macro(p, t);
    else if (tok_is_name(t, "call"))
        n = parse_call_block(p, t);
    else if (tok_is_name(t, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        n = node_at(p, JN_FILTERBLOCK, t);
        if (n)
            n->c = parse_filter_chain(p, t);
        if (n && (!n->c || !parse_body(p, ends, &n->body, &n->n_body)))
            n = NULL;
        if (n)
            advance(p);
    } else if (tok_is_name(t, "with")) {
        static const char *const ends[] = {"endwith", NULL};
        n = node_at(p, JN_WITH, t);
        nlist sets = {0};
        while (n && cur(p)->type != T_BLOCK_END) {
            if (sets.n && !expect_op(p, O_COMMA, "','"))
                return NULL;
            token *st = cur(p);
            jinja_node *s = node_at(p, JN_SET, st);
            if (!s)
                return NULL;
            s->a = parse_assign_target(p, false, NULL);
            if (!s->a || !expect_op(p, O_ASSIGN, "'='"))
                return NULL;
            s->b = parse_expression(p, true);
            if (!s->b || !nl_push(p, &sets, s))
                return NULL;
        }
        if (n) {
            n->args = sets.v;
            n->n_args = sets.n;
            if (!parse_body(p, ends, &n->body, &n->n_body))
                return NULL;
            advance(p);
        }
    } else if (tok_is_name(t, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        n = node_at(p, JN_GENERATION, t);
        int saved = p->loop_depth; /* the body is a macro body in jinja2: no break out of it */
        p->loop_depth = 0;
        bool ok = n && parse_body(p, ends, &n->body, &n->n_body);
        p->loop_depth = saved;
        if (!ok)
            return NULL;
        advance(p);
    } else if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        if (p->loop_depth == 0) {
            loam__jinja_parse_fail(p, t->line, t->col, "'%.*s' outside of a for loop", (int)t->n,
                                   t->s);
            return NULL;
        }
        n = node_at(p, tok_is_name(t, "break") ? JN_BREAK : JN_CONTINUE, t);
    } else {
        static const char *const unsupported[] = {
            "extends", "include", "import", "from", "block", "autoescape", "trans", "do", NULL};
        for (size_t k = 0; unsupported[k]; k++)
            if (tok_is_name(t, unsupported[k])) {
                loam__jinja_parse_fail(p, t->line, t->col,
                                       "the '%s' tag is not supported in chat templates",
                                       unsupported[k]);
                return NULL;
            }
        loam__jinja_parse_fail(p, t->line, t->col, "encountered unknown tag '%.*s'",
                               (int)(t->n > 40 ? 40 : t->n), t->s);
    }
    leave(p);
    return n;
}

static bool subparse(parser *p, const char *const *end_names, nlist *out) {
    if (!enter(p))
        return false;
    for (;;) {
        token *t = cur(p);
        if (t->type == T_EOF) {
            if (end_names) {
                char want[120] = "";
                for (size_t k = 0; end_names[k]; k++) {
                    size_t l = strlen(want);
                    snprintf(want + l, sizeof want - l, "%s'%s'", k ? " or " : "", end_names[k]);
                }
                loam__jinja_parse_fail(p, t->line, t->col,
                                       "unexpected end of template, expected %s", want);
                return false;
            }
            break;
        }
        if (t->type == T_DATA) {
            jinja_node *n = node_at(p, JN_TEXT, t);
            if (!n)
                return false;
            n->s = t->s;
            n->s_len = t->n;
            if (!nl_push(p, out, n))
                return false;
            advance(p);
        } else if (t->type == T_VAR_BEGIN) {
            advance(p);
            jinja_node *n = node_at(p, JN_OUTPUT, t);
            if (!n)
                return false;
            n->a = parse_tuple(p, true, false, NULL);
            if (!n->a || !expect_type(p, T_VAR_END, "'}}'") || !nl_push(p, out, n))
                return false;
        } else if (t->type == T_BLOCK_BEGIN) {
            advance(p);
            if (end_names) {
                for (size_t k = 0; end_names[k]; k++)
                    if (is_name(p, end_names[k])) {
                        leave(p);
                        return true;
                    }
            }
            token *name = cur(p);
            if (name->type == T_NAME && name->n >= 3 && !memcmp(name->s, "end", 3)) {
                loam__jinja_parse_fail(p, name->line, name->col, "unexpected '%.*s'",
                                       (int)(name->n > 40 ? 40 : name->n), name->s);
                return false;
            }
            jinja_node *n = parse_statement(p);
            if (!n || !expect_type(p, T_BLOCK_END, "'%}'") || !nl_push(p, out, n))
                return false;
        } else {
            fail_tok(p, "template data or a tag");
            return false;
        }
    }
    leave(p);
    return true;
}

loam_status loam__jinja_parse(jinja_template *t, const char *src, size_t len, loam_err *err) {
    memset(t, 0, sizeof *t);
    parser p = {.t = t, .err = err, .pos_line = 1, .pos_col = 1};
    size_t bad = loam__jinja_utf8_check(src, len);
    if (bad != len) {
        p.src = src;
        p.len = len;
        loam__jinja_parse_fail_off(&p, bad, "template is not valid UTF-8");
        return LOAM_E_TEMPLATE;
    }
    /* normalise line breaks, drop one trailing newline (keep_trailing_newline=False) */
    char *s = loam__jinja_alloc(&t->arena, len + 1);
    if (!s)
        return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n')
        n--;
    s[n] = '\0';
    p.src = s;
    p.len = n;
    nlist body = {0};
    if (loam__jinja_lex(&p) && subparse(&p, NULL, &body)) {
        t->body = body.v;
        t->n_body = body.n;
    }
    loam__free(p.toks);
    if (p.failed) {
        loam__jinja_arena_free(&t->arena);
        return p.status;
    }
    return LOAM_OK;
}
