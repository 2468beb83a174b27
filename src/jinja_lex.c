/* jinja_lex.c: the lexer of the chat-template language: template source -> tokens, with
 * jinja2's rules under transformers' settings (trim_blocks, lstrip_blocks,
 * keep_trailing_newline off). jinja_parse.c turns the tokens into the AST.
 *
 * - The source's line breaks (\r\n, \r, \n) all become \n (done by the caller), and one
 *   trailing \n is dropped.
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
 * Every token records its line and column (1-based; columns count code points).
 */
#include "jinja.h"

#include <errno.h>

typedef jinja_parser parser;
typedef jinja_token token;

static const struct {
    const char *s;
    uint8_t code;
} k_ops[] = {
    /* longest first */
    {"//", O_FLOORDIV}, {"**", O_POW},   {"==", O_EQ},      {"!=", O_NE},      {">=", O_GTEQ},
    {"<=", O_LTEQ},     {"+", O_ADD},    {"-", O_SUB},      {"/", O_DIV},      {"*", O_MUL},
    {"%", O_MOD},       {"~", O_TILDE},  {"[", O_LBRACKET}, {"]", O_RBRACKET}, {"(", O_LPAREN},
    {")", O_RPAREN},    {"{", O_LBRACE}, {"}", O_RBRACE},   {">", O_GT},       {"<", O_LT},
    {"=", O_ASSIGN},    {".", O_DOT},    {":", O_COLON},    {"|", O_PIPE},     {",", O_COMMA},
    {";", O_SEMICOLON},
};

const char *loam__jinja_op_text(uint8_t op) {
    for (size_t k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++)
        if (k_ops[k].code == op)
            return k_ops[k].s;
    return "operator";
}

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
        if (p->src[k] == '\n')
            l++, c = 1;
        else if (((unsigned char)p->src[k] & 0xc0) != 0x80)
            c++;
    }
    p->pos_off = off < p->len ? off : p->len;
    p->pos_line = l;
    p->pos_col = c;
    *line = l;
    *col = c;
}

void loam__jinja_parse_fail(parser *p, uint32_t line, uint32_t col, const char *fmt, ...) {
    if (p->failed)
        return;
    p->failed = true;
    p->status = LOAM_E_TEMPLATE;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    loam__fail(p->err, LOAM_E_TEMPLATE, "template:%u:%u: %s", line, col, msg);
}

void loam__jinja_parse_fail_off(parser *p, size_t off, const char *msg) {
    uint32_t l, c;
    pos_of(p, off, &l, &c);
    loam__jinja_parse_fail(p, l, c, "%s", msg);
}

void loam__jinja_parse_oom(parser *p) {
    if (p->failed)
        return;
    p->failed = true;
    p->status = LOAM_E_NOMEM;
    loam__fail(p->err, LOAM_E_NOMEM, "template: out of memory while parsing");
}

static token *push_tok(parser *p, uint8_t type, size_t off) {
    if (p->n_toks == p->cap_toks) {
        size_t cap = p->cap_toks ? p->cap_toks * 2 : 256;
        token *nt = loam__realloc(p->toks, cap * sizeof(token));
        if (!nt) {
            loam__jinja_parse_oom(p);
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
        while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
            k--;
        size_t adv;
        if (!is_ws_at(s, end, k, &adv))
            break;
        end = k;
    }
    return end;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t adv;
    while (i < n && is_ws_at(s, n, i, &adv))
        i += adv;
    return i;
}

static bool all_ws(const char *s, size_t from, size_t to) {
    if (from >= to)
        return false; /* jinja2 matches \s+: at least one */
    return skip_ws(s, to, from) == to;
}

static void emit_data(parser *p, size_t off, const char *s, size_t n) {
    if (!n)
        return;
    token *t = push_tok(p, T_DATA, off);
    if (!t)
        return;
    t->s = s;
    t->n = n;
}

/* Applies the strip sign of a tag to the text before it; returns the text's new length. */
static size_t strip_before(const char *text, size_t n, char sign, bool lstrip, bool line_starting) {
    if (sign == '-')
        return rstrip_len(text, n);
    if (sign == '+' || !lstrip)
        return n;
    size_t l_pos = n;
    while (l_pos > 0 && text[l_pos - 1] != '\n')
        l_pos--;
    if ((l_pos > 0 || line_starting) && all_ws(text, l_pos, n))
        return l_pos;
    return n;
}

/* Matches a block end ("+%}", "-%}\s*", "%}\n?") at i; returns the length or 0. */
static size_t match_end(const char *s, size_t n, size_t i, char close) {
    if (i + 1 < n && s[i] == close && s[i + 1] == '}')
        return 2 + (i + 2 < n && s[i + 2] == '\n');
    if (i + 2 < n && (s[i] == '-' || s[i] == '+') && s[i + 1] == close && s[i + 2] == '}') {
        if (s[i] == '+')
            return 3;
        return skip_ws(s, n, i + 3) - i;
    }
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a string literal's body as Python's unicode-escape codec does. */
static bool unescape(parser *p, size_t off, const char *s, size_t n, const char **out,
                     size_t *out_n) {
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
        case '\n':
            continue;
        case '\\':
            loam__jinja_buf_putc(&b, '\\');
            continue;
        case '\'':
            loam__jinja_buf_putc(&b, '\'');
            continue;
        case '"':
            loam__jinja_buf_putc(&b, '"');
            continue;
        case 'a':
            loam__jinja_buf_putc(&b, '\a');
            continue;
        case 'b':
            loam__jinja_buf_putc(&b, '\b');
            continue;
        case 'f':
            loam__jinja_buf_putc(&b, '\f');
            continue;
        case 'n':
            loam__jinja_buf_putc(&b, '\n');
            continue;
        case 'r':
            loam__jinja_buf_putc(&b, '\r');
            continue;
        case 't':
            loam__jinja_buf_putc(&b, '\t');
            continue;
        case 'v':
            loam__jinja_buf_putc(&b, '\v');
            continue;
        case 'x':
            digits = 2;
            break;
        case 'u':
            digits = 4;
            break;
        case 'U':
            digits = 8;
            break;
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
                if (c <= 0xff)
                    loam__jinja_buf_printf(&b, "x%02x", c);
                else if (c <= 0xffff)
                    loam__jinja_buf_printf(&b, "u%04x", c);
                else
                    loam__jinja_buf_printf(&b, "U%08x", c);
                continue;
            }
            if (e == 'N') {
                loam__jinja_parse_fail_off(p, off, "\\N{...} escapes are not supported");
                return false;
            }
            loam__jinja_buf_putc(&b, '\\');
            loam__jinja_buf_putc(&b, e);
            continue;
        }
        for (int k = 0; k < digits; k++) {
            int h = i < n ? hexval(s[i]) : -1;
            if (h < 0) {
                loam__jinja_parse_fail_off(p, off,
                                           "truncated \\x, \\u or \\U escape in string literal");
                return false;
            }
            cp = cp * 16 + (uint32_t)h;
            i++;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            loam__jinja_parse_fail_off(
                p, off, "escape is not a Unicode scalar value (surrogate or too large)");
            return false;
        }
        loam__jinja_utf8_put(&b, cp);
    }
    if (b.failed) {
        loam__jinja_parse_oom(p);
        return false;
    }
    *out = b.p ? b.p : "";
    *out_n = b.n;
    return true;
}

static bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Digits with single underscores between them (Python numeric literal style); returns end. */
static size_t scan_digits(const char *s, size_t n, size_t i, int base) {
    size_t start = i;
    while (i < n) {
        int h = hexval(s[i]);
        if (h >= 0 && h < base) {
            i++;
            continue;
        }
        if (s[i] == '_' && i > start && i + 1 < n && hexval(s[i + 1]) >= 0 &&
            hexval(s[i + 1]) < base) {
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
            loam__jinja_parse_fail_off(p, i,
                                       close == '%' ? "unexpected end of template, expected '%}'"
                                                    : "unexpected end of template, expected '}}'");
            return 0;
        }
        if (balance == 0) {
            size_t e = close == '%' ? match_end(s, n, i, '%') : 0;
            if (close == '}') {
                if (i + 1 < n && s[i] == '}' && s[i + 1] == '}')
                    e = 2;
                else if (i + 2 < n && s[i] == '-' && s[i + 1] == '}' && s[i + 2] == '}')
                    e = skip_ws(s, n, i + 3) - i;
            }
            if (e) {
                if (!push_tok(p, close == '%' ? T_BLOCK_END : T_VAR_END, i))
                    return 0;
                *line_starting = s[i + e - 1] == '\n';
                return i + e;
            }
        }
        char c = s[i];
        /* float: digits ('.' digits)? (e[+-]digits)?, at least one of the two parts */
        if (is_digit(c)) {
            bool prefixed = c == '0' && i + 1 < n && strchr("xXoObB", s[i + 1]) && s[i + 1] != '\0';
            if (prefixed) {
                int base = (s[i + 1] == 'x' || s[i + 1] == 'X')   ? 16
                           : (s[i + 1] == 'o' || s[i + 1] == 'O') ? 8
                                                                  : 2;
                size_t k = i + 2;
                if (k < n && s[k] == '_')
                    k++;
                size_t e = scan_digits(s, n, k, base);
                if (e > k) {
                    token *t = push_tok(p, T_INT, i);
                    if (!t)
                        return 0;
                    uint64_t v = 0;
                    for (size_t q = k; q < e; q++) {
                        if (s[q] == '_')
                            continue;
                        if (loam__mul_u64(v, (uint64_t)base, &v) ||
                            loam__add_u64(v, (uint64_t)hexval(s[q]), &v) || v > INT64_MAX) {
                            loam__jinja_parse_fail_off(p, i,
                                                       "integer literal out of the 64-bit range");
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
                if (k < n && (s[k] == '+' || s[k] == '-'))
                    k++;
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
                while (end + 1 < n && ((s[end] == '_' && s[end + 1] == '0') || s[end] == '0'))
                    end += s[end] == '_' ? 2 : 1;
            }
            for (size_t q = i; q < end && tl + 1 < sizeof tmp; q++)
                if (s[q] != '_')
                    tmp[tl++] = s[q];
            tmp[tl] = '\0';
            if (end - i >= sizeof tmp - 1) {
                loam__jinja_parse_fail_off(p, i, "number literal too long");
                return 0;
            }
            token *t = push_tok(p, is_float ? T_FLOAT : T_INT, i);
            if (!t)
                return 0;
            if (is_float) {
                t->f = strtod(tmp, NULL);
            } else {
                errno = 0;
                long long v = strtoll(tmp, NULL, 10);
                if (errno == ERANGE) {
                    loam__jinja_parse_fail_off(p, i, "integer literal out of the 64-bit range");
                    return 0;
                }
                t->i = v;
            }
            i = end;
            continue;
        }
        if (is_name_start(c)) {
            size_t e = i + 1;
            while (e < n && (is_name_start(s[e]) || is_digit(s[e])))
                e++;
            token *t = push_tok(p, T_NAME, i);
            if (!t)
                return 0;
            t->s = s + i;
            t->n = e - i;
            i = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t e = i + 1;
            while (e < n && s[e] != c)
                e += (s[e] == '\\' && e + 1 < n) ? 2 : 1;
            if (e >= n) {
                loam__jinja_parse_fail_off(p, i, "unterminated string literal");
                return 0;
            }
            token *t = push_tok(p, T_STRING, i);
            if (!t)
                return 0;
            if (!unescape(p, i, s + i + 1, e - i - 1, &t->s, &t->n))
                return 0;
            i = e + 1;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
            size_t ol = strlen(k_ops[k].s);
            if (n - i >= ol && !memcmp(s + i, k_ops[k].s, ol))
                break;
        }
        if (k == sizeof k_ops / sizeof k_ops[0]) {
            uint32_t l, col;
            pos_of(p, i, &l, &col);
            size_t q = i;
            uint32_t cp = loam__jinja_utf8_next(s, n, &q);
            if (cp >= 0x20 && cp < 0x7f)
                loam__jinja_parse_fail(p, l, col, "unexpected char '%c'", (char)cp);
            else
                loam__jinja_parse_fail(p, l, col, "unexpected char U+%04X", cp);
            return 0;
        }
        uint8_t op = k_ops[k].code;
        if (op == O_LBRACE || op == O_LPAREN || op == O_LBRACKET) {
            if (balance >= JINJA_MAX_PARSE_DEPTH) {
                loam__jinja_parse_fail_off(p, i, "brackets nest too deeply");
                return 0;
            }
            stack[balance++] = op == O_LBRACE ? '}' : op == O_LPAREN ? ')' : ']';
        } else if (op == O_RBRACE || op == O_RPAREN || op == O_RBRACKET) {
            char want = op == O_RBRACE ? '}' : op == O_RPAREN ? ')' : ']';
            if (balance == 0 || stack[balance - 1] != want) {
                uint32_t l, col;
                pos_of(p, i, &l, &col);
                if (balance == 0)
                    loam__jinja_parse_fail(p, l, col, "unexpected '%c'", want);
                else
                    loam__jinja_parse_fail(p, l, col, "unexpected '%c', expected '%c'", want,
                                           stack[balance - 1]);
                return 0;
            }
            balance--;
        }
        token *t = push_tok(p, T_OP, i);
        if (!t)
            return 0;
        t->op = op;
        i += strlen(k_ops[k].s);
    }
}

bool loam__jinja_lex(parser *p) {
    const char *s = p->src;
    size_t n = p->len, pos = 0;
    bool line_starting = true;
    while (pos < n && !p->failed) {
        /* next tag start */
        size_t t = pos;
        while (t + 1 < n &&
               !(s[t] == '{' && (s[t + 1] == '{' || s[t + 1] == '%' || s[t + 1] == '#')))
            t++;
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
                if (k2 + 1 < n && s[k2] == '%' && s[k2 + 1] == '}')
                    close = k2 + 2;
                else if (k2 + 2 < n && s[k2] == '-' && s[k2 + 1] == '%' && s[k2 + 2] == '}')
                    close = skip_ws(s, n, k2 + 3);
                if (close) {
                    emit_data(p, pos, s + pos,
                              strip_before(s + pos, t - pos, sign, true, line_starting));
                    /* find {%[-+]? endraw ...%} */
                    size_t r = close;
                    for (;; r++) {
                        if (r + 1 >= n) {
                            loam__jinja_parse_fail_off(p, t, "missing end of raw directive");
                            return false;
                        }
                        if (s[r] != '{' || s[r + 1] != '%')
                            continue;
                        char sg = r + 2 < n && (s[r + 2] == '-' || s[r + 2] == '+') ? s[r + 2] : 0;
                        size_t q = skip_ws(s, n, r + 2 + (sg ? 1 : 0));
                        if (n - q < 6 || memcmp(s + q, "endraw", 6))
                            continue;
                        q = skip_ws(s, n, q + 6);
                        size_t e = match_end(s, n, q, '%');
                        if (!e)
                            continue;
                        emit_data(p, close, s + close,
                                  strip_before(s + close, r - close, sg, true, false));
                        pos = q + e;
                        line_starting = s[pos - 1] == '\n';
                        break;
                    }
                    continue;
                }
            }
        }
        emit_data(p, pos, s + pos,
                  strip_before(s + pos, t - pos, sign, kind != '{', line_starting));
        if (kind == '#') {
            size_t c = body;
            size_t e = 0;
            for (; c + 1 < n; c++) {
                if (s[c] == '#' && s[c + 1] == '}') {
                    e = 2 + (c + 2 < n && s[c + 2] == '\n');
                    break;
                }
                if (c + 2 < n && (s[c] == '-' || s[c] == '+') && s[c + 1] == '#' &&
                    s[c + 2] == '}') {
                    e = s[c] == '+' ? 3 : skip_ws(s, n, c + 3) - c;
                    break;
                }
            }
            if (!e) {
                loam__jinja_parse_fail_off(p, t, "missing end of comment tag");
                return false;
            }
            pos = c + e;
            line_starting = s[pos - 1] == '\n';
            continue;
        }
        if (!push_tok(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, t))
            return false;
        pos = lex_tag(p, body, kind == '%' ? '%' : '}', &line_starting);
        if (!pos)
            return false;
    }
    return !p->failed && push_tok(p, T_EOF, n) != NULL;
}
