/* jinja_parse.c: lexer and parser of the chat-template language (a Jinja2 subset), producing
 * the AST of jinja.h.
 *
 * Lexing follows jinja2's lexer with transformers' settings (trim_blocks, lstrip_blocks,
 * keep_trailing_newline off):
 * - The source's line breaks (\r\n, \r, \n) all become \n, and one trailing \n is dropped.
 * - Text runs until the next "{{", "{%" or "{#". A "-" right after the opening delimiter strips
 *   all whitespace before the tag; a "+" keeps it; otherwise, for "{%" and "{#" (lstrip_blocks),
 *   spaces and tabs between the start of the line and the tag are removed, when only whitespace
 *   stands there and the line really starts there (after a \n, the start of the template, or a
 *   tag whose end swallowed a \n).
 * - "-%}" / "-#}" / "-}}" strip all whitespace after the tag; "%}" and "#}" otherwise swallow
 *   one following \n (trim_blocks); "}}" swallows nothing.
 * - Inside tags: whitespace, numbers (1, 1_000, 0x1f, 0o7, 0b1, 1.5, 1e3), names, strings in
 *   ' or " with Python escapes (\n \t \\ \' \" \xhh \uhhhh \Uhhhhhhhh octal), and the operators
 *   + - * / // % ** ~ == != < <= > >= = . : | , ; ( ) [ ] { }. While a bracket is open, "}}" and
 *   "%}" are operators, not the end of the tag.
 * - {% raw %}...{% endraw %} is text.
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

#include <errno.h>
#include <math.h>

// ---- tokens -----------------------------------------------------------------------------------

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
    O_ADD = 1, O_SUB, O_DIV, O_FLOORDIV, O_MUL, O_MOD, O_POW, O_TILDE, O_LBRACKET, O_RBRACKET,
    O_LPAREN, O_RPAREN, O_LBRACE, O_RBRACE, O_EQ, O_NE, O_GT, O_GTEQ, O_LT, O_LTEQ, O_ASSIGN,
    O_DOT, O_COLON, O_PIPE, O_COMMA, O_SEMICOLON,
} op_code;

static const struct {
    const char *s;
    uint8_t code;
} k_ops[] = {
    /* longest first */
    {"//", O_FLOORDIV}, {"**", O_POW}, {"==", O_EQ}, {"!=", O_NE}, {">=", O_GTEQ}, {"<=", O_LTEQ},
    {"+", O_ADD}, {"-", O_SUB}, {"/", O_DIV}, {"*", O_MUL}, {"%", O_MOD}, {"~", O_TILDE},
    {"[", O_LBRACKET}, {"]", O_RBRACKET}, {"(", O_LPAREN}, {")", O_RPAREN}, {"{", O_LBRACE},
    {"}", O_RBRACE}, {">", O_GT}, {"<", O_LT}, {"=", O_ASSIGN}, {".", O_DOT}, {":", O_COLON},
    {"|", O_PIPE}, {",", O_COMMA}, {";", O_SEMICOLON},
};

typedef struct token {
    uint8_t type;
    uint8_t op;
    uint32_t line, col;
    const char *s; /* name, decoded string, data */
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct parser {
    jinja_template *t;
    const char *src; /* normalised source (in the arena) */
    size_t len;
    token *toks;
    size_t n_toks, cap_toks, pos;
    loam_err *err;
    bool failed;
    int depth;
    int loop_depth;
    size_t pos_off; /* pos_of() cache */
    uint32_t pos_line, pos_col;
    loam_status status;
} parser;

/* Line and column (1-based, columns in code points) of a source offset. Offsets are mostly
 * asked for in increasing order, so the scan resumes from the previous answer. */
static void pos_of(parser *p, size_t off, uint32_t *line, uint32_t *col) {
    if (off < p->pos_off) {
        p->pos_off = 0;
        p->pos_line = 1;
        p->pos_col = 1;
    }
    uint32_t l = p->pos_line, c = p->pos_col;
    for (size_t k = p->pos_off; k < off && k < p->len; k++) {
        if (p->src[k] == '\n') l++, c = 1;
        else if (((unsigned char)p->src[k] & 0xc0) != 0x80) c++;
    }
    p->pos_off = off < p->len ? off : p->len;
    p->pos_line = l;
    p->pos_col = c;
    *line = l;
    *col = c;
}

static void fail_at(parser *p, uint32_t line, uint32_t col, const char *fmt, ...) LOAM__PRINTF(4, 5);
static void fail_at(parser *p, uint32_t line, uint32_t col, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = true;
    p->status = LOAM_E_TEMPLATE;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    loam__fail(p->err, LOAM_E_TEMPLATE, "template:%u:%u: %s", line, col, msg);
}

static void fail_off(parser *p, size_t off, const char *msg) {
    uint32_t l, c;
    pos_of(p, off, &l, &c);
    fail_at(p, l, c, "%s", msg);
}

static void oom(parser *p) {
    if (p->failed) return;
    p->failed = true;
    p->status = LOAM_E_NOMEM;
    loam__fail(p->err, LOAM_E_NOMEM, "template: out of memory while parsing");
}

static token *push_tok(parser *p, uint8_t type, size_t off) {
    if (p->n_toks == p->cap_toks) {
        size_t cap = p->cap_toks ? p->cap_toks * 2 : 256;
        token *nt = loam__realloc(p->toks, cap * sizeof(token));
        if (!nt) {
            oom(p);
            return NULL;
        }
        p->toks = nt;
        p->cap_toks = cap;
    }
    token *t = &p->toks[p->n_toks++];
    memset(t, 0, sizeof *t);
    t->type = type;
    pos_of(p, off, &t->line, &t->col);
    return t;
}

// ---- lexer ------------------------------------------------------------------------------------

static bool is_ws_at(const char *s, size_t n, size_t i, size_t *adv) {
    size_t j = i;
    uint32_t c = loam__jinja_utf8_next(s, n, &j);
    *adv = j - i;
    return loam__jinja_isspace(c);
}

/* Python str.rstrip() of s[0:n): new length. */
static size_t rstrip_len(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t k = end - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
        size_t adv;
        if (!is_ws_at(s, end, k, &adv)) break;
        end = k;
    }
    return end;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t adv;
    while (i < n && is_ws_at(s, n, i, &adv)) i += adv;
    return i;
}

static bool all_ws(const char *s, size_t from, size_t to) {
    if (from >= to) return false; /* jinja2 matches \s+: at least one */
    return skip_ws(s, to, from) == to;
}

static void emit_data(parser *p, size_t off, const char *s, size_t n) {
    if (!n) return;
    token *t = push_tok(p, T_DATA, off);
    if (!t) return;
    t->s = s;
    t->n = n;
}

/* Applies the strip sign of a tag to the text before it; returns the text's new length. */
static size_t strip_before(const char *text, size_t n, char sign, bool lstrip, bool line_starting) {
    if (sign == '-') return rstrip_len(text, n);
    if (sign == '+' || !lstrip) return n;
    size_t l_pos = n;
    while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
    if ((l_pos > 0 || line_starting) && all_ws(text, l_pos, n)) return l_pos;
    return n;
}

/* Matches a block end ("+%}", "-%}\s*", "%}\n?") at i; returns the length or 0. */
static size_t match_end(const char *s, size_t n, size_t i, char close) {
    if (i + 1 < n && s[i] == close && s[i + 1] == '}') return 2 + (i + 2 < n && s[i + 2] == '\n');
    if (i + 2 < n && (s[i] == '-' || s[i] == '+') && s[i + 1] == close && s[i + 2] == '}') {
        if (s[i] == '+') return 3;
        return skip_ws(s, n, i + 3) - i;
    }
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a string literal's body as Python's unicode-escape codec does. */
static bool unescape(parser *p, size_t off, const char *s, size_t n, const char **out, size_t *out_n) {
    jinja_buf b = {.a = &p->t->arena};
    size_t i = 0;
    while (i < n) {
        if (s[i] != '\\' || i + 1 >= n) {
            loam__jinja_buf_putc(&b, s[i++]);
            continue;
        }
        char e = s[i + 1];
        i += 2;
        uint32_t cp = 0;
        int digits = 0;
        switch (e) {
        case '\n': continue;
        case '\\': loam__jinja_buf_putc(&b, '\\'); continue;
        case '\'': loam__jinja_buf_putc(&b, '\''); continue;
        case '"': loam__jinja_buf_putc(&b, '"'); continue;
        case 'a': loam__jinja_buf_putc(&b, '\a'); continue;
        case 'b': loam__jinja_buf_putc(&b, '\b'); continue;
        case 'f': loam__jinja_buf_putc(&b, '\f'); continue;
        case 'n': loam__jinja_buf_putc(&b, '\n'); continue;
        case 'r': loam__jinja_buf_putc(&b, '\r'); continue;
        case 't': loam__jinja_buf_putc(&b, '\t'); continue;
        case 'v': loam__jinja_buf_putc(&b, '\v'); continue;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(s[i++] - '0');
                loam__jinja_utf8_put(&b, cp);
                continue;
            }
            if ((unsigned char)e >= 0x80) {
                /* jinja2 backslash-replaces non-ASCII before decoding: "\é" reads as "\xe9" */
                size_t j = i - 1;
                uint32_t c = loam__jinja_utf8_next(s, n, &j);
                i = j;
                loam__jinja_buf_putc(&b, '\\');
                if (c <= 0xff) loam__jinja_buf_printf(&b, "x%02x", c);
                else if (c <= 0xffff) loam__jinja_buf_printf(&b, "u%04x", c);
                else loam__jinja_buf_printf(&b, "U%08x", c);
                continue;
            }
            if (e == 'N') {
                fail_off(p, off, "\\N{...} escapes are not supported");
                return false;
            }
            loam__jinja_buf_putc(&b, '\\');
            loam__jinja_buf_putc(&b, e);
            continue;
        }
        for (int k = 0; k < digits; k++) {
            int h = i < n ? hexval(s[i]) : -1;
            if (h < 0) {
                fail_off(p, off, "truncated \\x, \\u or \\U escape in string literal");
                return false;
            }
            cp = cp * 16 + (uint32_t)h;
            i++;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            fail_off(p, off, "escape is not a Unicode scalar value (surrogate or too large)");
            return false;
        }
        loam__jinja_utf8_put(&b, cp);
    }
    if (b.failed) {
        oom(p);
        return false;
    }
    *out = b.p ? b.p : "";
    *out_n = b.n;
    return true;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits with single underscores between them (Python numeric literal style); returns end. */
static size_t scan_digits(const char *s, size_t n, size_t i, int base) {
    size_t start = i;
    while (i < n) {
        int h = hexval(s[i]);
        if (h >= 0 && h < base) {
            i++;
            continue;
        }
        if (s[i] == '_' && i > start && i + 1 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 1]) < base) {
            i++;
            continue;
        }
        break;
    }
    return i;
}

/* Lexes one tag body starting at i (after the opening delimiter); returns the end offset, or
 * 0 on error. close is '%' or '}' (variables). */
static size_t lex_tag(parser *p, size_t i, char close, bool *line_starting) {
    const char *s = p->src;
    size_t n = p->len;
    int balance = 0;
    char stack[JINJA_MAX_PARSE_DEPTH];
    for (;;) {
        size_t j = skip_ws(s, n, i);
        i = j;
        if (i >= n) {
            fail_off(p, i, close == '%' ? "unexpected end of template, expected '%}'"
                                        : "unexpected end of template, expected '}}'");
            return 0;
        }
        if (balance == 0) {
            size_t e = close == '%' ? match_end(s, n, i, '%') : 0;
            if (close == '}') {
                if (i + 1 < n && s[i] == '}' && s[i + 1] == '}') e = 2;
                else if (i + 2 < n && s[i] == '-' && s[i + 1] == '}' && s[i + 2] == '}')
                    e = skip_ws(s, n, i + 3) - i;
            }
            if (e) {
                if (!push_tok(p, close == '%' ? T_BLOCK_END : T_VAR_END, i)) return 0;
                *line_starting = s[i + e - 1] == '\n';
                return i + e;
            }
        }
        char c = s[i];
        /* float: digits ('.' digits)? (e[+-]digits)?, at least one of the two parts */
        if (is_digit(c)) {
            bool prefixed = c == '0' && i + 1 < n && strchr("xXoObB", s[i + 1]) && s[i + 1] != '\0';
            if (prefixed) {
                int base = (s[i + 1] == 'x' || s[i + 1] == 'X') ? 16 : (s[i + 1] == 'o' || s[i + 1] == 'O') ? 8 : 2;
                size_t k = i + 2;
                if (k < n && s[k] == '_') k++;
                size_t e = scan_digits(s, n, k, base);
                if (e > k) {
                    token *t = push_tok(p, T_INT, i);
                    if (!t) return 0;
                    uint64_t v = 0;
                    for (size_t q = k; q < e; q++) {
                        if (s[q] == '_') continue;
                        if (loam__mul_u64(v, (uint64_t)base, &v) || loam__add_u64(v, (uint64_t)hexval(s[q]), &v) ||
                            v > INT64_MAX) {
                            fail_off(p, i, "integer literal out of the 64-bit range");
                            return 0;
                        }
                    }
                    t->i = (int64_t)v;
                    i = e;
                    continue;
                }
            }
            size_t e = scan_digits(s, n, i, 10);
            size_t fe = e;
            bool is_float = false;
            if (fe + 1 < n && s[fe] == '.' && is_digit(s[fe + 1])) {
                fe = scan_digits(s, n, fe + 1, 10);
                is_float = true;
            }
            if (fe < n && (s[fe] == 'e' || s[fe] == 'E')) {
                size_t k = fe + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (k < n && is_digit(s[k])) {
                    fe = scan_digits(s, n, k, 10);
                    is_float = true;
                }
            }
            char tmp[128];
            size_t tl = 0;
            size_t end = is_float ? fe : e;
            if (!is_float && c == '0') { /* jinja2: 0(_?0)* only; "01" is an error later */
                end = i + 1;
                while (end + 1 < n && ((s[end] == '_' && s[end + 1] == '0') || s[end] == '0')) end += s[end] == '_' ? 2 : 1;
            }
            for (size_t q = i; q < end && tl + 1 < sizeof tmp; q++)
                if (s[q] != '_') tmp[tl++] = s[q];
            tmp[tl] = '\0';
            if (end - i >= sizeof tmp - 1) {
                fail_off(p, i, "number literal too long");
                return 0;
            }
            token *t = push_tok(p, is_float ? T_FLOAT : T_INT, i);
            if (!t) return 0;
            if (is_float) {
                t->f = strtod(tmp, NULL);
            } else {
                errno = 0;
                long long v = strtoll(tmp, NULL, 10);
                if (errno == ERANGE) {
                    fail_off(p, i, "integer literal out of the 64-bit range");
                    return 0;
                }
                t->i = v;
            }
            i = end;
            continue;
        }
        if (is_name_start(c)) {
            size_t e = i + 1;
            while (e < n && (is_name_start(s[e]) || is_digit(s[e]))) e++;
            token *t = push_tok(p, T_NAME, i);
            if (!t) return 0;
            t->s = s + i;
            t->n = e - i;
            i = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t e = i + 1;
            while (e < n && s[e] != c) e += (s[e] == '\\' && e + 1 < n) ? 2 : 1;
            if (e >= n) {
                fail_off(p, i, "unterminated string literal");
                return 0;
            }
            token *t = push_tok(p, T_STRING, i);
            if (!t) return 0;
            if (!unescape(p, i, s + i + 1, e - i - 1, &t->s, &t->n)) return 0;
            i = e + 1;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
            size_t ol = strlen(k_ops[k].s);
            if (n - i >= ol && !memcmp(s + i, k_ops[k].s, ol)) break;
        }
        if (k == sizeof k_ops / sizeof k_ops[0]) {
            uint32_t l, col;
            pos_of(p, i, &l, &col);
            size_t q = i;
            uint32_t cp = loam__jinja_utf8_next(s, n, &q);
            if (cp >= 0x20 && cp < 0x7f) fail_at(p, l, col, "unexpected char '%c'", (char)cp);
            else fail_at(p, l, col, "unexpected char U+%04X", cp);
            return 0;
        }
        uint8_t op = k_ops[k].code;
        if (op == O_LBRACE || op == O_LPAREN || op == O_LBRACKET) {
            if (balance >= JINJA_MAX_PARSE_DEPTH) {
                fail_off(p, i, "brackets nest too deeply");
                return 0;
            }
            stack[balance++] = op == O_LBRACE ? '}' : op == O_LPAREN ? ')' : ']';
        } else if (op == O_RBRACE || op == O_RPAREN || op == O_RBRACKET) {
            char want = op == O_RBRACE ? '}' : op == O_RPAREN ? ')' : ']';
            if (balance == 0 || stack[balance - 1] != want) {
                uint32_t l, col;
                pos_of(p, i, &l, &col);
                if (balance == 0) fail_at(p, l, col, "unexpected '%c'", want);
                else fail_at(p, l, col, "unexpected '%c', expected '%c'", want, stack[balance - 1]);
                return 0;
            }
            balance--;
        }
        token *t = push_tok(p, T_OP, i);
        if (!t) return 0;
        t->op = op;
        i += strlen(k_ops[k].s);
    }
}

static bool lex(parser *p) {
    const char *s = p->src;
    size_t n = p->len, pos = 0;
    bool line_starting = true;
    while (pos < n && !p->failed) {
        /* next tag start */
        size_t t = pos;
        while (t + 1 < n && !(s[t] == '{' && (s[t + 1] == '{' || s[t + 1] == '%' || s[t + 1] == '#'))) t++;
        if (t + 1 >= n) {
            emit_data(p, pos, s + pos, n - pos);
            break;
        }
        char kind = s[t + 1];
        char sign = t + 2 < n && (s[t + 2] == '-' || s[t + 2] == '+') ? s[t + 2] : 0;
        size_t body = t + 2 + (sign ? 1 : 0);
        /* {% raw %} ... {% endraw %} */
        if (kind == '%') {
            size_t k = skip_ws(s, n, body);
            if (n - k >= 3 && !memcmp(s + k, "raw", 3)) {
                size_t k2 = skip_ws(s, n, k + 3);
                size_t close = 0;
                if (k2 + 1 < n && s[k2] == '%' && s[k2 + 1] == '}') close = k2 + 2;
                else if (k2 + 2 < n && s[k2] == '-' && s[k2 + 1] == '%' && s[k2 + 2] == '}') close = skip_ws(s, n, k2 + 3);
                if (close) {
                    emit_data(p, pos, s + pos, strip_before(s + pos, t - pos, sign, true, line_starting));
                    /* find {%[-+]? endraw ...%} */
                    size_t r = close;
                    for (;; r++) {
                        if (r + 1 >= n) {
                            fail_off(p, t, "missing end of raw directive");
                            return false;
                        }
                        if (s[r] != '{' || s[r + 1] != '%') continue;
                        char sg = r + 2 < n && (s[r + 2] == '-' || s[r + 2] == '+') ? s[r + 2] : 0;
                        size_t q = skip_ws(s, n, r + 2 + (sg ? 1 : 0));
                        if (n - q < 6 || memcmp(s + q, "endraw", 6)) continue;
                        q = skip_ws(s, n, q + 6);
                        size_t e = match_end(s, n, q, '%');
                        if (!e) continue;
                        emit_data(p, close, s + close, strip_before(s + close, r - close, sg, true, false));
                        pos = q + e;
                        line_starting = s[pos - 1] == '\n';
                        break;
                    }
                    continue;
                }
            }
        }
        emit_data(p, pos, s + pos, strip_before(s + pos, t - pos, sign, kind != '{', line_starting));
        if (kind == '#') {
            size_t c = body;
            size_t e = 0;
            for (; c + 1 < n; c++) {
                if (s[c] == '#' && s[c + 1] == '}') {
                    e = 2 + (c + 2 < n && s[c + 2] == '\n');
                    break;
                }
                if (c + 2 < n && (s[c] == '-' || s[c] == '+') && s[c + 1] == '#' && s[c + 2] == '}') {
                    e = s[c] == '+' ? 3 : skip_ws(s, n, c + 3) - c;
                    break;
                }
            }
            if (!e) {
                fail_off(p, t, "missing end of comment tag");
                return false;
            }
            pos = c + e;
            line_starting = s[pos - 1] == '\n';
            continue;
        }
        if (!push_tok(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, t)) return false;
        pos = lex_tag(p, body, kind == '%' ? '%' : '}', &line_starting);
        if (!pos) return false;
    }
    return !p->failed && push_tok(p, T_EOF, n) != NULL;
}

// ---- parser helpers ---------------------------------------------------------------------------

static token *cur(parser *p) { return &p->toks[p->pos]; }
static token *peek(parser *p, size_t k) {
    size_t i = p->pos + k;
    return &p->toks[i < p->n_toks ? i : p->n_toks - 1];
}
static void advance(parser *p) {
    if (p->pos + 1 < p->n_toks) p->pos++;
}
static bool is_op(parser *p, uint8_t op) { return cur(p)->type == T_OP && cur(p)->op == op; }
static bool tok_is_name(const token *t, const char *name) {
    size_t l = strlen(name);
    return t->type == T_NAME && t->n == l && !memcmp(t->s, name, l);
}
static bool is_name(parser *p, const char *name) { return tok_is_name(cur(p), name); }

static const char *tok_desc(const token *t) {
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_NAME: return "name";
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    default: {
        for (size_t k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++)
            if (k_ops[k].code == t->op) return k_ops[k].s;
        return "operator";
    }
    }
}

static void fail_tok(parser *p, const char *want) {
    token *t = cur(p);
    if (t->type == T_NAME)
        fail_at(p, t->line, t->col, "expected %s, got '%.*s'", want, (int)(t->n > 40 ? 40 : t->n), t->s);
    else fail_at(p, t->line, t->col, "expected %s, got %s", want, tok_desc(t));
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
        oom(p);
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
    if (!x) return false;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 8;
        jinja_node **nv = loam__jinja_alloc(&p->t->arena, cap * sizeof *nv);
        if (!nv) {
            oom(p);
            return false;
        }
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static bool enter(parser *p) {
    if (++p->depth > JINJA_MAX_PARSE_DEPTH) {
        token *t = cur(p);
        fail_at(p, t->line, t->col, "template nests too deeply (more than %d levels)", JINJA_MAX_PARSE_DEPTH);
        return false;
    }
    return true;
}
static void leave(parser *p) { p->depth--; }

// ---- expressions ------------------------------------------------------------------------------

static jinja_node *parse_expression(parser *p, bool with_condexpr);
static jinja_node *parse_tuple(parser *p, bool with_condexpr, bool simplified, const char *end_name);
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
        if (!c) return NULL;
        c->b = e1;
        c->a = parse_or(p);
        if (!c->a) return NULL;
        if (is_name(p, "else")) {
            advance(p);
            c->c = parse_condexpr(p);
            if (!c->c) return NULL;
        }
        e1 = c;
    }
    return e1;
}

static jinja_node *parse_expression(parser *p, bool with_condexpr) {
    if (!enter(p)) return NULL;
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
        if (!n) return NULL;
        n->a = left;
        n->b = parse_not(p);
        if (!n->b) return NULL;
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
        if (!n) return NULL;
        n->a = left;
        n->b = parse_and(p);
        if (!n->b) return NULL;
        left = n;
    }
    return left;
}

static jinja_node *parse_compare(parser *p);
static jinja_node *parse_not(parser *p) {
    if (is_name(p, "not")) {
        token *at = cur(p);
        advance(p);
        if (!enter(p)) return NULL;
        jinja_node *n = node_at(p, JN_NOT, at);
        if (n) n->a = parse_not(p);
        leave(p);
        return n && n->a ? n : NULL;
    }
    return parse_compare(p);
}

static jinja_node *parse_math1(parser *p);
static jinja_node *parse_compare(parser *p) {
    token *at = cur(p);
    jinja_node *expr = parse_math1(p);
    if (!expr) return NULL;
    nlist operands = {0};
    uint8_t ops[64];
    uint32_t n_ops = 0;
    for (;;) {
        uint8_t op = 0;
        token *t = cur(p);
        if (t->type == T_OP) {
            switch (t->op) {
            case O_EQ: op = JOP_EQ; break;
            case O_NE: op = JOP_NE; break;
            case O_LT: op = JOP_LT; break;
            case O_LTEQ: op = JOP_LE; break;
            case O_GT: op = JOP_GT; break;
            case O_GTEQ: op = JOP_GE; break;
            default: break;
            }
            if (op) advance(p);
        } else if (tok_is_name(t, "in")) {
            op = JOP_IN;
            advance(p);
        } else if (tok_is_name(t, "not") && tok_is_name(peek(p, 1), "in")) {
            op = JOP_NOTIN;
            advance(p);
            advance(p);
        }
        if (!op) break;
        if (n_ops == sizeof ops) {
            fail_at(p, t->line, t->col, "too many chained comparisons");
            return NULL;
        }
        if (n_ops == 0 && !nl_push(p, &operands, expr)) return NULL;
        ops[n_ops++] = op;
        if (!nl_push(p, &operands, parse_math1(p))) return NULL;
    }
    if (n_ops == 0) return expr;
    jinja_node *n = node_at(p, JN_COMPARE, at);
    if (!n) return NULL;
    n->args = operands.v;
    n->n_args = operands.n;
    n->ops = loam__jinja_alloc(&p->t->arena, n_ops);
    if (!n->ops) {
        oom(p);
        return NULL;
    }
    memcpy(n->ops, ops, n_ops);
    return n;
}

static jinja_node *binop(parser *p, uint8_t op, jinja_node *a, jinja_node *b, const token *at) {
    if (!a || !b) return NULL;
    jinja_node *n = node_at(p, JN_BINOP, at);
    if (!n) return NULL;
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
    while (left && (is_op(p, O_MUL) || is_op(p, O_DIV) || is_op(p, O_FLOORDIV) || is_op(p, O_MOD))) {
        token at = *cur(p);
        advance(p);
        uint8_t op = at.op == O_MUL ? JOP_MUL : at.op == O_DIV ? JOP_DIV : at.op == O_FLOORDIV ? JOP_FLOORDIV : JOP_MOD;
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
    if (!enter(p)) return NULL;
    token *at = cur(p);
    jinja_node *node;
    if (is_op(p, O_SUB) || is_op(p, O_ADD)) {
        bool neg = is_op(p, O_SUB);
        advance(p);
        node = node_at(p, neg ? JN_NEG : JN_POS, at);
        if (node) {
            node->a = parse_unary(p, false);
            if (!node->a) node = NULL;
        }
    } else {
        node = parse_primary(p);
    }
    if (node) node = parse_postfix(p, node);
    if (node && with_filter) node = parse_filter_expr(p, node);
    leave(p);
    return node;
}

static jinja_node *const_node(parser *p, const token *at, jinja_value v) {
    jinja_node *n = node_at(p, JN_CONST, at);
    if (n) n->val = v;
    return n;
}

static jinja_node *parse_primary(parser *p) {
    token *t = cur(p);
    switch (t->type) {
    case T_NAME: {
        advance(p);
        if (tok_is_name(t, "true") || tok_is_name(t, "True")) return const_node(p, t, jv_bool(true));
        if (tok_is_name(t, "false") || tok_is_name(t, "False")) return const_node(p, t, jv_bool(false));
        if (tok_is_name(t, "none") || tok_is_name(t, "None")) return const_node(p, t, jv_none());
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
                oom(p);
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
    case T_INT: advance(p); return const_node(p, t, jv_int(t->i));
    case T_FLOAT: advance(p); return const_node(p, t, jv_float(t->f));
    case T_OP:
        if (t->op == O_LPAREN) {
            advance(p);
            if (is_op(p, O_RPAREN)) { /* () is the empty tuple */
                advance(p);
                return node_at(p, JN_TUPLE, t);
            }
            jinja_node *n = parse_tuple(p, true, false, NULL);
            if (!n || !expect_op(p, O_RPAREN, "')'")) return NULL;
            return n;
        }
        if (t->op == O_LBRACKET) {
            advance(p);
            jinja_node *n = node_at(p, JN_LIST, t);
            if (!n) return NULL;
            nlist items = {0};
            while (!is_op(p, O_RBRACKET)) {
                if (items.n && !expect_op(p, O_COMMA, "',' or ']'")) return NULL;
                if (is_op(p, O_RBRACKET)) break;
                if (!nl_push(p, &items, parse_expression(p, true))) return NULL;
            }
            advance(p);
            n->args = items.v;
            n->n_args = items.n;
            return n;
        }
        if (t->op == O_LBRACE) {
            advance(p);
            jinja_node *n = node_at(p, JN_DICT, t);
            if (!n) return NULL;
            nlist items = {0};
            while (!is_op(p, O_RBRACE)) {
                if (items.n && !expect_op(p, O_COMMA, "',' or '}'")) return NULL;
                if (is_op(p, O_RBRACE)) break;
                if (!nl_push(p, &items, parse_expression(p, true))) return NULL;
                if (!expect_op(p, O_COLON, "':'")) return NULL;
                if (!nl_push(p, &items, parse_expression(p, true))) return NULL;
            }
            advance(p);
            n->args = items.v;
            n->n_args = items.n;
            return n;
        }
        break;
    default: break;
    }
    fail_tok(p, "an expression");
    return NULL;
}

/* Tuple or single expression; end_name: a name that ends the tuple (e.g. "in"). */
static bool tuple_ends(parser *p, const char *end_name) {
    token *t = cur(p);
    if (t->type == T_VAR_END || t->type == T_BLOCK_END || t->type == T_EOF) return true;
    if (t->type == T_OP && (t->op == O_RPAREN || t->op == O_RBRACKET || t->op == O_RBRACE)) return true;
    if (end_name && tok_is_name(t, end_name)) return true;
    return false;
}

static jinja_node *parse_tuple(parser *p, bool with_condexpr, bool simplified, const char *end_name) {
    token *at = cur(p);
    nlist items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n) {
            if (!is_op(p, O_COMMA)) break;
            advance(p);
            is_tuple = true;
        }
        if (tuple_ends(p, end_name)) break;
        jinja_node *e;
        if (simplified) e = parse_primary(p);
        else e = parse_expression(p, with_condexpr);
        if (!nl_push(p, &items, e)) return NULL;
    }
    if (!is_tuple) {
        if (items.n == 1) return items.v[0];
        if (!p->failed) fail_at(p, at->line, at->col, "expected an expression, got %s", tok_desc(at));
        return NULL;
    }
    jinja_node *n = node_at(p, JN_TUPLE, at);
    if (!n) return NULL;
    n->args = items.v;
    n->n_args = items.n;
    return n;
}

/* Call arguments after '(' : positional, then name=value. */
static bool parse_call_args(parser *p, jinja_node *n) {
    nlist args = {0};
    bool kw_seen = false;
    while (!is_op(p, O_RPAREN)) {
        if (args.n && !expect_op(p, O_COMMA, "',' or ')'")) return false;
        if (is_op(p, O_RPAREN)) break;
        token *t = cur(p);
        if (is_op(p, O_MUL) || is_op(p, O_POW)) {
            fail_at(p, t->line, t->col, "*args and **kwargs in calls are not supported");
            return false;
        }
        if (t->type == T_NAME && peek(p, 1)->type == T_OP && peek(p, 1)->op == O_ASSIGN) {
            jinja_node *kw = node_at(p, JN_KWARG, t);
            if (!kw) return false;
            kw->s = t->s;
            kw->s_len = t->n;
            advance(p);
            advance(p);
            kw->a = parse_expression(p, true);
            if (!kw->a) return false;
            kw_seen = true;
            if (!nl_push(p, &args, kw)) return false;
        } else {
            if (kw_seen) {
                fail_at(p, t->line, t->col, "positional argument after keyword argument");
                return false;
            }
            if (!nl_push(p, &args, parse_expression(p, true))) return false;
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
        if (!parts[0]) return NULL;
    }
    while (is_op(p, O_COLON) && k < 2) {
        is_slice = true;
        advance(p);
        k++;
        if (!is_op(p, O_COLON) && !is_op(p, O_RBRACKET)) {
            parts[k] = parse_expression(p, true);
            if (!parts[k]) return NULL;
        }
    }
    if (!is_slice && is_op(p, O_COMMA)) {
        fail_at(p, cur(p)->line, cur(p)->col, "tuple subscripts are not supported");
        return NULL;
    }
    if (!expect_op(p, O_RBRACKET, "']'")) return NULL;
    jinja_node *n = node_at(p, is_slice ? JN_SLICE : JN_GETITEM, at);
    if (!n) return NULL;
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
                if (!n) return NULL;
                n->a = node;
                n->s = t->s;
                n->s_len = t->n;
                advance(p);
                node = n;
            } else if (t->type == T_INT) {
                jinja_node *n = node_at(p, JN_GETITEM, at);
                if (!n) return NULL;
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
            if (!n) return NULL;
            n->line = node->line; /* a call is reported where its callee starts */
            n->col = node->col;
            n->a = node;
            if (!parse_call_args(p, n)) return NULL;
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
    if (!n) return NULL;
    n->a = node;
    if (!parse_dotted(p, n)) return NULL;
    if (is_op(p, O_LPAREN)) {
        advance(p);
        if (!parse_call_args(p, n)) return NULL;
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
            if (!n) return NULL;
            n->a = node;
            if (is_name(p, "not")) {
                n->flag = true;
                advance(p);
            }
            if (!parse_dotted(p, n)) return NULL;
            token *t = cur(p);
            if (is_op(p, O_LPAREN)) {
                advance(p);
                if (!parse_call_args(p, n)) return NULL;
            } else if ((t->type == T_NAME || t->type == T_STRING || t->type == T_INT || t->type == T_FLOAT ||
                        (t->type == T_OP && (t->op == O_LPAREN || t->op == O_LBRACKET || t->op == O_LBRACE))) &&
                       !tok_is_name(t, "else") && !tok_is_name(t, "or") && !tok_is_name(t, "and")) {
                if (tok_is_name(t, "is")) {
                    fail_at(p, t->line, t->col, "you cannot chain multiple tests with is");
                    return NULL;
                }
                jinja_node *arg = parse_postfix(p, parse_primary(p));
                if (!arg) return NULL;
                n->args = loam__jinja_alloc(&p->t->arena, sizeof(jinja_node *));
                if (!n->args) {
                    oom(p);
                    return NULL;
                }
                n->args[0] = arg;
                n->n_args = 1;
            }
            node = n;
        } else if (is_op(p, O_LPAREN)) {
            advance(p);
            jinja_node *n = node_at(p, JN_CALL, at);
            if (!n) return NULL;
            n->a = node;
            if (!parse_call_args(p, n)) return NULL;
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
    if (with_namespace && t->type == T_NAME && peek(p, 1)->type == T_OP && peek(p, 1)->op == O_DOT &&
        peek(p, 2)->type == T_NAME) {
        jinja_node *n = node_at(p, JN_NSATTR, t);
        if (!n) return NULL;
        n->a = node_at(p, JN_NAME, t);
        if (!n->a) return NULL;
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
    if (!target) return NULL;
    if (target->kind == JN_TUPLE) {
        for (uint32_t i = 0; i < target->n_args; i++)
            if (target->args[i]->kind != JN_NAME) {
                fail_at(p, target->args[i]->line, target->args[i]->col, "cannot assign to this expression");
                return NULL;
            }
    } else if (target->kind != JN_NAME) {
        fail_at(p, target->line, target->col, "cannot assign to this expression");
        return NULL;
    }
    for (uint32_t i = 0; i < (target->kind == JN_TUPLE ? target->n_args : 1); i++) {
        jinja_node *nm = target->kind == JN_TUPLE ? target->args[i] : target;
        static const char *const reserved[] = {"true", "false", "none", "True", "False", "None"};
        for (size_t k = 0; k < 6; k++)
            if (nm->s_len == strlen(reserved[k]) && !memcmp(nm->s, reserved[k], nm->s_len)) {
                fail_at(p, nm->line, nm->col, "cannot assign to '%s'", reserved[k]);
                return NULL;
            }
    }
    return target;
}

/* parse_statements: [':'] '%}' body up to one of end_names; the end name is the current token. */
static bool parse_body(parser *p, const char *const *end_names, jinja_node ***body, uint32_t *n) {
    if (is_op(p, O_COLON)) advance(p);
    if (!expect_type(p, T_BLOCK_END, "'%}'")) return false;
    nlist l = {0};
    if (!subparse(p, end_names, &l)) return false;
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
        if (!node->a || !parse_body(p, ends, &node->body, &node->n_body)) return NULL;
        token *t = cur(p);
        advance(p);
        if (tok_is_name(t, "elif")) {
            jinja_node *e = node_at(p, JN_IF, t);
            if (!e) return NULL;
            node->else_body = loam__jinja_alloc(&p->t->arena, sizeof(jinja_node *));
            if (!node->else_body) {
                oom(p);
                return NULL;
            }
            node->else_body[0] = e;
            node->n_else = 1;
            node = e;
            continue;
        }
        if (tok_is_name(t, "else")) {
            if (!parse_body(p, end_only, &node->else_body, &node->n_else)) return NULL;
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
    if (!n) return NULL;
    n->a = parse_assign_target(p, false, "in");
    if (!n->a || !expect_end_tag(p, "in")) return NULL;
    n->b = parse_tuple(p, false, false, "recursive");
    if (!n->b) return NULL;
    if (is_name(p, "if")) {
        advance(p);
        n->c = parse_expression(p, true);
        if (!n->c) return NULL;
    }
    if (is_name(p, "recursive")) {
        advance(p);
        n->flag = true;
    }
    p->loop_depth++;
    bool ok = parse_body(p, ends, &n->body, &n->n_body);
    p->loop_depth--;
    if (!ok) return NULL;
    if (is_name(p, "else")) {
        advance(p);
        if (!parse_body(p, end_only, &n->else_body, &n->n_else)) return NULL;
    }
    advance(p);
    return n;
}

static jinja_node *parse_filter_chain(parser *p, const token *at) {
    jinja_node *chain = NULL;
    for (;;) {
        chain = parse_filter(p, chain, at);
        if (!chain) return NULL;
        if (!is_op(p, O_PIPE)) break;
        advance(p);
    }
    return chain;
}

static jinja_node *parse_set(parser *p, token *at) {
    static const char *const ends[] = {"endset", NULL};
    jinja_node *target = parse_assign_target(p, true, NULL);
    if (!target) return NULL;
    if (is_op(p, O_ASSIGN)) {
        advance(p);
        jinja_node *n = node_at(p, JN_SET, at);
        if (!n) return NULL;
        n->a = target;
        n->b = parse_tuple(p, true, false, NULL);
        return n->b ? n : NULL;
    }
    jinja_node *n = node_at(p, JN_SETBLOCK, at);
    if (!n) return NULL;
    n->a = target;
    if (is_op(p, O_PIPE)) {
        token *ft = cur(p);
        advance(p);
        n->c = parse_filter_chain(p, ft);
        if (!n->c) return NULL;
    }
    if (!parse_body(p, ends, &n->body, &n->n_body)) return NULL;
    advance(p);
    return n;
}

/* Macro or caller signature: '(' name [= default], ... ')'. */
static bool parse_signature(parser *p, jinja_node *n) {
    nlist args = {0};
    if (!expect_op(p, O_LPAREN, "'('")) return false;
    while (!is_op(p, O_RPAREN)) {
        if (args.n && !expect_op(p, O_COMMA, "',' or ')'")) return false;
        if (is_op(p, O_RPAREN)) break;
        token *t = cur(p);
        if (t->type != T_NAME) {
            fail_tok(p, "a parameter name");
            return false;
        }
        jinja_node *a = node_at(p, JN_NAME, t);
        if (!a) return false;
        a->s = t->s;
        a->s_len = t->n;
        advance(p);
        if (is_op(p, O_ASSIGN)) {
            advance(p);
            a->b = parse_expression(p, true);
            if (!a->b) return false;
        }
        if (!nl_push(p, &args, a)) return false;
    }
    advance(p);
    n->args = args.v;
    n->n_args = args.n;
    return true;
}

static jinja_node *parse_macro(parser *p, token *at) {
    static const char *const ends[] = {"endmacro", NULL};
    jinja_node *n = node_at(p, JN_MACRO, at);
    if (!n) return NULL;
    token *t = cur(p);
    if (t->type != T_NAME) {
        fail_tok(p, "a macro name");
        return NULL;
    }
    n->s = t->s;
    n->s_len = t->n;
    advance(p);
    if (!parse_signature(p, n)) return NULL;
    int saved = p->loop_depth;
    p->loop_depth = 0;
    bool ok = parse_body(p, ends, &n->body, &n->n_body);
    p->loop_depth = saved;
    if (!ok) return NULL;
    advance(p);
    return n;
}

static jinja_node *parse_call_block(parser *p, token *at) {
    static const char *const ends[] = {"endcall", NULL};
    jinja_node *n = node_at(p, JN_CALLBLOCK, at);
    if (!n) return NULL;
    if (is_op(p, O_LPAREN) && !parse_signature(p, n)) return NULL;
    token *ct = cur(p);
    n->a = parse_expression(p, true);
    if (!n->a) return NULL;
    if (n->a->kind != JN_CALL) {
        fail_at(p, ct->line, ct->col, "expected a call after {%% call %%}");
        return NULL;
    }
    int saved = p->loop_depth;
    p->loop_depth = 0;
    bool ok = parse_body(p, ends, &n->body, &n->n_body);
    p->loop_depth = saved;
    if (!ok) return NULL;
    advance(p);
    return n;
}

static jinja_node *parse_statement(parser *p) {
    token *t = cur(p);
    if (t->type != T_NAME) {
        fail_tok(p, "a tag name");
        return NULL;
    }
    if (!enter(p)) return NULL;
    advance(p);
    jinja_node *n = NULL;
    if (tok_is_name(t, "if")) n = parse_if(p, t);
    else if (tok_is_name(t, "for")) n = parse_for(p, t);
    else if (tok_is_name(t, "set")) n = parse_set(p, t);
    else if (tok_is_name(t, "macro")) n = parse_macro(p, t);
    else if (tok_is_name(t, "call")) n = parse_call_block(p, t);
    else if (tok_is_name(t, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        n = node_at(p, JN_FILTERBLOCK, t);
        if (n) n->c = parse_filter_chain(p, t);
        if (n && (!n->c || !parse_body(p, ends, &n->body, &n->n_body))) n = NULL;
        if (n) advance(p);
    } else if (tok_is_name(t, "with")) {
        static const char *const ends[] = {"endwith", NULL};
        n = node_at(p, JN_WITH, t);
        nlist sets = {0};
        while (n && cur(p)->type != T_BLOCK_END) {
            if (sets.n && !expect_op(p, O_COMMA, "','")) return NULL;
            token *st = cur(p);
            jinja_node *s = node_at(p, JN_SET, st);
            if (!s) return NULL;
            s->a = parse_assign_target(p, false, NULL);
            if (!s->a || !expect_op(p, O_ASSIGN, "'='")) return NULL;
            s->b = parse_expression(p, true);
            if (!s->b || !nl_push(p, &sets, s)) return NULL;
        }
        if (n) {
            n->args = sets.v;
            n->n_args = sets.n;
            if (!parse_body(p, ends, &n->body, &n->n_body)) return NULL;
            advance(p);
        }
    } else if (tok_is_name(t, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        n = node_at(p, JN_GENERATION, t);
        int saved = p->loop_depth; /* the body is a macro body in jinja2: no break out of it */
        p->loop_depth = 0;
        bool ok = n && parse_body(p, ends, &n->body, &n->n_body);
        p->loop_depth = saved;
        if (!ok) return NULL;
        advance(p);
    } else if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        if (p->loop_depth == 0) {
            fail_at(p, t->line, t->col, "'%.*s' outside of a for loop", (int)t->n, t->s);
            return NULL;
        }
        n = node_at(p, tok_is_name(t, "break") ? JN_BREAK : JN_CONTINUE, t);
    } else {
        static const char *const unsupported[] = {"extends", "include", "import", "from", "block",
                                                  "autoescape", "trans", "do", NULL};
        for (size_t k = 0; unsupported[k]; k++)
            if (tok_is_name(t, unsupported[k])) {
                fail_at(p, t->line, t->col, "the '%s' tag is not supported in chat templates", unsupported[k]);
                return NULL;
            }
        fail_at(p, t->line, t->col, "encountered unknown tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
    }
    leave(p);
    return n;
}

static bool subparse(parser *p, const char *const *end_names, nlist *out) {
    if (!enter(p)) return false;
    for (;;) {
        token *t = cur(p);
        if (t->type == T_EOF) {
            if (end_names) {
                char want[120] = "";
                for (size_t k = 0; end_names[k]; k++) {
                    size_t l = strlen(want);
                    snprintf(want + l, sizeof want - l, "%s'%s'", k ? " or " : "", end_names[k]);
                }
                fail_at(p, t->line, t->col, "unexpected end of template, expected %s", want);
                return false;
            }
            break;
        }
        if (t->type == T_DATA) {
            jinja_node *n = node_at(p, JN_TEXT, t);
            if (!n) return false;
            n->s = t->s;
            n->s_len = t->n;
            if (!nl_push(p, out, n)) return false;
            advance(p);
        } else if (t->type == T_VAR_BEGIN) {
            advance(p);
            jinja_node *n = node_at(p, JN_OUTPUT, t);
            if (!n) return false;
            n->a = parse_tuple(p, true, false, NULL);
            if (!n->a || !expect_type(p, T_VAR_END, "'}}'") || !nl_push(p, out, n)) return false;
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
                fail_at(p, name->line, name->col, "unexpected '%.*s'", (int)(name->n > 40 ? 40 : name->n), name->s);
                return false;
            }
            jinja_node *n = parse_statement(p);
            if (!n || !expect_type(p, T_BLOCK_END, "'%}'") || !nl_push(p, out, n)) return false;
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
        fail_off(&p, bad, "template is not valid UTF-8");
        return LOAM_E_TEMPLATE;
    }
    /* normalise line breaks, drop one trailing newline (keep_trailing_newline=False) */
    char *s = loam__jinja_alloc(&t->arena, len + 1);
    if (!s) return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = '\0';
    p.src = s;
    p.len = n;
    nlist body = {0};
    if (lex(&p) && subparse(&p, NULL, &body)) {
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
