/* tok_text.c: the text side of the tokenizer: UTF-8, regexes, splitting, normalizers and
 * pre-tokenizers, written to match Hugging Face `tokenizers` (tokenizer/pattern.rs,
 * tokenizer/normalizer.rs, the normalizers/ and pre_tokenizers/ modules) byte for byte.
 *
 * Regexes. tokenizer.json patterns are Oniguruma (Ruby syntax) regexes; we run them with PCRE2
 * (PCRE2_UTF | PCRE2_UCP, ^/$ at line ends as in Ruby, JIT when available). The two engines
 * agree on the constructs tokenizers use (\p{L}, \p{N}, (?i:...), lookahead, possessive and lazy
 * quantifiers) except for a few escapes, which compile_translated() rewrites:
 *   \s  Oniguruma: the Unicode White_Space property. PCRE2 (UCP) also matches U+180E.
 *   \w  Oniguruma and Rust's regex crate: Alphabetic, Mark, Nd, Pc, Join_Control. PCRE2 10.42
 *       (UCP): L, N and '_'.
 *   \h  Oniguruma: a hex digit. PCRE2: horizontal space.
 * Outside a character class \S, \W and \H become the negated classes; inside a class \S, \W
 * and \H keep PCRE2's meaning (no tokenizer we know writes them there).
 * Match iteration follows the onig crate's FindMatches: after a non-empty match, the next empty
 * match is skipped; an empty match advances the search by one character.
 *
 * Splitting. A pattern turns a piece into spans (start, end, is_match) covering it (HF
 * find_matches); `invert` flips is_match; the delimiter behaviour (Removed, Isolated,
 * MergedWithPrevious, MergedWithNext, Contiguous) folds the spans exactly as
 * NormalizedString::split does; empty spans are dropped. One-character patterns (digits,
 * whitespace, punctuation, a given char) make one span per matching character.
 *
 * Pre-tokenizers run depth first: stage k splits a piece and hands every sub-piece to stage
 * k+1, the last stage hands words to the BPE model. That is equivalent to HF's breadth-first
 * PreTokenizedString (each stage acts on each piece independently) and needs memory for one
 * piece per stage only.
 *
 * "lead" (Metaspace prepend_scheme "first"). HF prepends the replacement only to a piece whose
 * original offset is 0. We track, per piece, how many of its leading bytes stem from the first
 * original character (0 = the piece does not start at the original start): a sub-piece starting
 * at byte k inherits lead - k when k < lead. Normalizers keep it approximately (the length of
 * the first output character, plus any prepended text; 0 when the first character is removed).
 */
#include "tokenizer.h"

#include <utf8proc.h>

// ---- growable buffers ---------------------------------------------------------------------------

static loam_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return LOAM_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return LOAM_E_NOMEM;
        n *= 2;
    }
    void *q = loam__realloc(*p, n * elem);
    if (!q)
        return LOAM_E_NOMEM;
    *p = q;
    *cap = n;
    return LOAM_OK;
}

loam_status loam__tok_bytes_reserve(loam__tok_bytes *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1)
        return LOAM_E_NOMEM;
    return grow((void **)&b->p, &b->cap, b->len + extra + 1, 1);
}

loam_status loam__tok_bytes_put(loam__tok_bytes *b, const void *src, size_t n) {
    if (loam__tok_bytes_reserve(b, n))
        return LOAM_E_NOMEM;
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = '\0';
    return LOAM_OK;
}

loam_status loam__tok_ids_push(loam__tok_ids *v, int32_t id) {
    if (v->len == v->cap && grow((void **)&v->p, &v->cap, v->len + 1, sizeof *v->p))
        return LOAM_E_NOMEM;
    v->p[v->len++] = id;
    return LOAM_OK;
}

loam_status loam__tok_matches_push(loam__tok_matches *m, size_t start, size_t end, int is_match) {
    if (m->len == m->cap && grow((void **)&m->p, &m->cap, m->len + 1, sizeof *m->p))
        return LOAM_E_NOMEM;
    m->p[m->len++] = (loam__tok_match){start, end, is_match};
    return LOAM_OK;
}

static loam_status nomem(loam__tok_enc *c) {
    return loam__fail(c->err, LOAM_E_NOMEM, "tokenizer: out of memory");
}

// ---- UTF-8 --------------------------------------------------------------------------------------

uint32_t loam__utf8_decode(const char *s, size_t n, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    size_t l = loam__utf8_len(u[0]);
    if (l > n)
        l = 1;
    uint32_t cp;
    switch (l) {
    case 1:
        cp = u[0];
        break;
    case 2:
        cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3Fu);
        break;
    case 3:
        cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3Fu);
        break;
    default:
        cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
             ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3Fu);
        break;
    }
    *adv = l;
    return cp;
}

int loam__utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The well-formed UTF-8 table (Unicode Table 3-7): for each lead byte, the allowed range of the
 * second byte; later bytes are 80..BF. An ill-formed sequence is replaced by one U+FFFD per
 * maximal subpart: the lead plus the continuation bytes that were still acceptable. */
size_t loam__utf8_invalid_prefix(const unsigned char *s, size_t n, size_t *valid_len) {
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80) {
        *valid_len = 1;
        return 0;
    } else if (b >= 0xC2 && b <= 0xDF) {
        need = 2;
    } else if (b == 0xE0) {
        need = 3, lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
        need = 3;
    } else if (b == 0xED) {
        need = 3, hi = 0x9F;
    } else if (b == 0xF0) {
        need = 4, lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
        need = 4;
    } else if (b == 0xF4) {
        need = 4, hi = 0x8F;
    } else {
        return 1;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n)
            return i;
        unsigned char c = s[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h)
            return i;
    }
    *valid_len = need;
    return 0;
}

loam_status loam__utf8_lossy(loam__tok_bytes *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (loam__tok_bytes_reserve(out, n))
        return LOAM_E_NOMEM;
    size_t i = 0, run = 0; /* valid bytes not yet copied start at run */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t v, bad = loam__utf8_invalid_prefix(u + i, n - i, &v);
        if (!bad) {
            i += v;
            continue;
        }
        if (loam__tok_bytes_put(out, s + run, i - run))
            return LOAM_E_NOMEM;
        if (loam__tok_bytes_put(out, "\xEF\xBF\xBD", 3))
            return LOAM_E_NOMEM;
        i += bad;
        run = i;
    }
    return loam__tok_bytes_put(out, s + run, n - run);
}

// ---- character classes ----------------------------------------------------------------------

/* Unicode White_Space (Rust char::is_whitespace, regex \s, Oniguruma \s). */
int loam__tok_is_white_space(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

static int is_numeric(uint32_t cp) { /* Rust char::is_numeric: Nd, Nl, No */
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int is_punct(uint32_t cp) { /* ASCII punctuation or Unicode P* (HF is_punc) */
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
               (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int is_mark(uint32_t cp) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

// ---- byte-level alphabet (GPT-2 bytes_to_unicode)
// -------------------------------------------------

/* Printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) map to themselves; the other 68 bytes map,
 * in increasing order, to U+0100, U+0101, ... */
uint32_t loam__tok_byte_char(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    uint32_t n;
    if (b <= 0x20)
        n = b; /* 0x00..0x20: 33 bytes */
    else if (b <= 0xA0)
        n = 33u + (b - 0x7Fu); /* 0x7F..0xA0: 34 bytes */
    else
        n = 67; /* 0xAD */
    return 256 + n;
}

int loam__tok_char_byte(uint32_t cp) {
    if (cp < 256) {
        uint8_t b = (uint8_t)cp;
        return loam__tok_byte_char(b) == cp ? (int)cp : -1;
    }
    if (cp > 256 + 67)
        return -1;
    uint32_t n = cp - 256;
    if (n <= 32)
        return (int)n;
    if (n <= 66)
        return (int)(0x7F + (n - 33));
    return 0xAD;
}

/* Appends the byte-level form of s (each byte -> one character). */
static loam_status byte_level_map(loam__tok_bytes *out, const char *s, size_t n) {
    if (loam__tok_bytes_reserve(out, n * 2))
        return LOAM_E_NOMEM;
    char *o = out->p + out->len;
    for (size_t i = 0; i < n; i++)
        o += loam__utf8_encode(loam__tok_byte_char((uint8_t)s[i]), o);
    out->len = (size_t)(o - out->p);
    out->p[out->len] = '\0';
    return LOAM_OK;
}

static size_t byte_level_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += loam__tok_byte_char((uint8_t)s[i]) < 0x80 ? 1 : 2;
    return k;
}

// ---- regexes ----------------------------------------------------------------------------------

#define WS_CLASS                                                                                   \
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"  \
    "\\x{205F}\\x{3000}"
#define WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"
#define HEX_CLASS  "0-9A-Fa-f"

/* Rewrites Oniguruma escapes that PCRE2 reads differently (see the file comment). */
static loam_status translate_regex(const char *p, size_t n, loam__tok_bytes *out) {
    int in_class = 0;
    size_t i = 0;
    while (i < n) {
        char ch = p[i];
        if (ch == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *cls = e == 's' || e == 'S'   ? WS_CLASS
                              : e == 'w' || e == 'W' ? WORD_CLASS
                              : e == 'h' || e == 'H' ? HEX_CLASS
                                                     : NULL;
            int neg = e == 'S' || e == 'W' || e == 'H';
            if (cls && !in_class) {
                if (loam__tok_bytes_put(out, neg ? "[^" : "[", neg ? 2 : 1) ||
                    loam__tok_bytes_put(out, cls, strlen(cls)) || loam__tok_bytes_put(out, "]", 1))
                    return LOAM_E_NOMEM;
            } else if (cls && in_class && !neg) {
                if (loam__tok_bytes_put(out, cls, strlen(cls)))
                    return LOAM_E_NOMEM;
            } else if (loam__tok_bytes_put(out, p + i, 2)) {
                return LOAM_E_NOMEM;
            }
            i += 2;
            continue;
        }
        if (!in_class && ch == '[') {
            in_class = 1;
            size_t j = i + 1;
            if (j < n && p[j] == '^')
                j++;
            if (j < n && p[j] == ']')
                j++; /* a leading ']' is literal */
            if (loam__tok_bytes_put(out, p + i, j - i))
                return LOAM_E_NOMEM;
            i = j;
            continue;
        }
        if (in_class && ch == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < n; j++)
                if (p[j] == ':' && p[j + 1] == ']') {
                    end = p + j + 2;
                    break;
                }
            if (end) {
                if (loam__tok_bytes_put(out, p + i, (size_t)(end - (p + i))))
                    return LOAM_E_NOMEM;
                i = (size_t)(end - p);
                continue;
            }
        }
        if (in_class && ch == ']')
            in_class = 0;
        if (loam__tok_bytes_put(out, p + i, 1))
            return LOAM_E_NOMEM;
        i++;
    }
    return LOAM_OK;
}

loam_status loam__tok_regex_compile(loam_tokenizer *tok, const char *pattern, size_t len,
                                    int literal, const char *what, pcre2_code **out,
                                    loam_err *err) {
    *out = NULL;
    loam__tok_bytes tr = {0};
    const char *src = pattern;
    size_t src_len = len;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NO_UTF_CHECK;
    if (literal) {
        opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | PCRE2_LITERAL; /* UCP etc. are not allowed */
    } else {
        if (translate_regex(pattern, len, &tr)) {
            loam__free(tr.p);
            return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
        }
        src = tr.p ? tr.p : "";
        src_len = tr.len;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(tok->gctx);
    if (!cc) {
        loam__free(tr.p);
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int ec;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, src_len, opts, &ec, &eoff, cc);
    pcre2_compile_context_free(cc);
    loam__free(tr.p);
    if (!re && ec == PCRE2_ERROR_HEAP_FAILED)
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return loam__fail(err, LOAM_E_FORMAT,
                          "tokenizer.json: %s: regex '%.60s' does not compile: %s", what, pattern,
                          (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs */
    *out = re;
    return LOAM_OK;
}

static loam_status match_at(loam__tok_enc *c, const pcre2_code *re, const char *s, size_t n,
                            size_t at, uint32_t opts, int *found) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, opts | PCRE2_NO_UTF_CHECK, c->md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter uses the heap */
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, c->md,
                         NULL);
    if (rc == PCRE2_ERROR_NOMATCH) {
        *found = 0;
        return LOAM_OK;
    }
    if (rc < 0) {
        if (rc == PCRE2_ERROR_NOMEMORY)
            return nomem(c);
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return loam__fail(c->err, LOAM_E_RANGE, "tokenizer: regex match failed: %s",
                          (const char *)msg);
    }
    *found = 1;
    return LOAM_OK;
}

loam_status loam__tok_find_regex(loam__tok_enc *c, const pcre2_code *re, const char *s, size_t n,
                                 loam__tok_matches *m) {
    m->len = 0;
    if (n == 0)
        return loam__tok_matches_push(m, 0, 0, 0) ? nomem(c) : LOAM_OK;
    size_t prev = 0, last_end = 0;
    int skip_next_empty = 0;
    while (last_end <= n) {
        int found = 0;
        loam_status st = match_at(c, re, s, n, last_end, 0, &found);
        if (st)
            return st;
        if (!found)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms)
            me = ms; /* \K can end a match before it starts */
        last_end = me;
        if (ms == me) {
            last_end += last_end < n ? loam__utf8_len((unsigned char)s[last_end]) : 1;
            if (skip_next_empty) {
                skip_next_empty = 0;
                continue;
            }
        } else {
            skip_next_empty = 1;
        }
        if (ms > prev && loam__tok_matches_push(m, prev, ms, 0))
            return nomem(c);
        if (loam__tok_matches_push(m, ms, me, 1))
            return nomem(c);
        prev = me;
    }
    if (prev < n && loam__tok_matches_push(m, prev, n, 0))
        return nomem(c);
    return LOAM_OK;
}

// ---- splitting --------------------------------------------------------------------------------

static int pred_test(const loam__tok_pre *p, uint32_t cp) {
    switch (p->pred) {
    case LOAM__TOK_PRED_NUMERIC:
        return is_numeric(cp);
    case LOAM__TOK_PRED_WHITESPACE:
        return loam__tok_is_white_space(cp);
    case LOAM__TOK_PRED_PUNCT:
        return is_punct(cp);
    case LOAM__TOK_PRED_CHAR:
        return cp == p->pred_char;
    }
    return 0;
}

static loam_status find_pred(loam__tok_enc *c, const loam__tok_pre *p, const char *s, size_t n,
                             loam__tok_matches *m) {
    m->len = 0;
    if (n == 0)
        return loam__tok_matches_push(m, 0, 0, 0) ? nomem(c) : LOAM_OK;
    size_t last = 0, i = 0;
    while (i < n) {
        size_t adv;
        uint32_t cp = loam__utf8_decode(s + i, n - i, &adv);
        if (pred_test(p, cp)) {
            if (last < i && loam__tok_matches_push(m, last, i, 0))
                return nomem(c);
            if (loam__tok_matches_push(m, i, i + adv, 1))
                return nomem(c);
            last = i + adv;
        }
        i += adv;
    }
    if (last < n && loam__tok_matches_push(m, last, n, 0))
        return nomem(c);
    return LOAM_OK;
}

/* Folds spans per the delimiter behaviour (NormalizedString::split); leaves only the spans to
 * keep (possibly empty ones, which callers skip). */
static void apply_behavior(loam__tok_matches *m, loam__tok_behavior b, int invert) {
    loam__tok_match *p = m->p;
    size_t n = m->len, w = 0;
    if (invert)
        for (size_t i = 0; i < n; i++)
            p[i].is_match = !p[i].is_match;
    switch (b) {
    case LOAM__TOK_ISOLATED:
        return;
    case LOAM__TOK_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!p[i].is_match)
                p[w++] = p[i];
        m->len = w;
        return;
    case LOAM__TOK_CONTIGUOUS:
    case LOAM__TOK_MERGED_WITH_PREVIOUS: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            int is_match = p[i].is_match;
            int merge = b == LOAM__TOK_CONTIGUOUS ? is_match == prev : is_match && !prev;
            if (merge && w > 0)
                p[w - 1].end = p[i].end;
            else
                p[w++] = p[i];
            prev = is_match;
        }
        m->len = w;
        return;
    }
    case LOAM__TOK_MERGED_WITH_NEXT: {
        int prev = 0;
        w = n; /* accumulate from the back: the last kept span is p[w] */
        for (size_t i = n; i-- > 0;) {
            int is_match = p[i].is_match;
            if (is_match && !prev && w < n)
                p[w].start = p[i].start;
            else
                p[--w] = p[i];
            prev = is_match;
        }
        memmove(p, p + w, (n - w) * sizeof *p);
        m->len = n - w;
        return;
    }
    }
}

// ---- normalizers ------------------------------------------------------------------------------

static size_t first_char_len(const char *s, size_t n) {
    return n ? loam__utf8_len((unsigned char)s[0]) : 0;
}

static loam_status norm_unicode(loam__tok_enc *c, loam__tok_norm_kind k, const char *s, size_t n,
                                loam__tok_bytes *out) {
    int ascii = 1, below_300 = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b >= 0x80) {
            ascii = 0;
            size_t adv;
            if (loam__utf8_decode(s + i, n - i, &adv) >= 0x300)
                below_300 = 0;
            i += adv - 1;
        }
    }
    /* ASCII is invariant under every form; below U+0300 nothing composes (NFC) */
    if (ascii || (k == LOAM__TOK_NORM_NFC && below_300))
        return loam__tok_bytes_put(out, s, n) ? nomem(c) : LOAM_OK;
    utf8proc_option_t o = UTF8PROC_STABLE;
    if (k == LOAM__TOK_NORM_NFC)
        o |= UTF8PROC_COMPOSE;
    if (k == LOAM__TOK_NORM_NFD)
        o |= UTF8PROC_DECOMPOSE;
    if (k == LOAM__TOK_NORM_NFKC)
        o |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    if (k == LOAM__TOK_NORM_NFKD)
        o |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    if (n > (size_t)(PTRDIFF_MAX / 64))
        return loam__fail(c->err, LOAM_E_RANGE, "tokenizer: text too long to normalize");
    size_t want = n + 16; /* code points; grows when a decomposition expands */
    for (;;) {
        if (loam__tok_bytes_reserve(out, want * 4 + 4))
            return nomem(c);
        /* decompose into the free tail of out, aligned for int32 */
        size_t base = (out->len + 3) & ~(size_t)3;
        if (base + want * 4 > out->cap) {
            if (loam__tok_bytes_reserve(out, want * 4 + 8))
                return nomem(c);
            base = (out->len + 3) & ~(size_t)3;
        }
        utf8proc_int32_t *buf = (utf8proc_int32_t *)(void *)(out->p + base);
        utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                                buf, (utf8proc_ssize_t)want, o);
        if (r < 0)
            return loam__fail(c->err, LOAM_E_INVAL, "tokenizer: normalization failed: %s",
                              utf8proc_errmsg(r));
        if ((size_t)r > want) {
            want = (size_t)r;
            continue;
        }
        r = utf8proc_reencode(buf, r, o);
        if (r < 0)
            return loam__fail(c->err, LOAM_E_INVAL, "tokenizer: normalization failed: %s",
                              utf8proc_errmsg(r));
        /* the UTF-8 result is now at out->p + base; move it to out->len */
        memmove(out->p + out->len, out->p + base, (size_t)r);
        out->len += (size_t)r;
        out->p[out->len] = '\0';
        return LOAM_OK;
    }
}

static loam_status norm_lowercase(loam__tok_enc *c, const char *s, size_t n, loam__tok_bytes *out) {
    if (loam__tok_bytes_reserve(out, n + 8))
        return nomem(c);
    size_t i = 0;
    while (i < n) {
        size_t adv;
        uint32_t cp = loam__utf8_decode(s + i, n - i, &adv);
        char enc[8];
        int k;
        if (cp == 0x130) { /* the one unconditional multi-char lowercase (SpecialCasing.txt) */
            memcpy(enc, "i\xCC\x87", 3);
            k = 3;
        } else {
            uint32_t lo = cp < 0x80 ? (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp)
                                    : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            k = loam__utf8_encode(lo, enc);
        }
        if (loam__tok_bytes_put(out, enc, (size_t)k))
            return nomem(c);
        i += adv;
    }
    return LOAM_OK;
}

/* Replace every match of re with content (used by the Replace normalizer and decoder). */
static loam_status replace_all(loam__tok_enc *c, const pcre2_code *re, const char *content,
                               size_t content_len, const char *s, size_t n, loam__tok_bytes *out,
                               int *first_removed) {
    loam_status st = loam__tok_find_regex(c, re, s, n, &c->tmp_m);
    if (st)
        return st;
    *first_removed = 0;
    for (size_t i = 0; i < c->tmp_m.len; i++) {
        loam__tok_match *mt = &c->tmp_m.p[i];
        if (mt->is_match) {
            if (i == 0 && mt->end > 0 && content_len == 0)
                *first_removed = 1;
            if (loam__tok_bytes_put(out, content, content_len))
                return nomem(c);
        } else if (loam__tok_bytes_put(out, s + mt->start, mt->end - mt->start)) {
            return nomem(c);
        }
    }
    return LOAM_OK;
}

loam_status loam__tok_replace(loam__tok_enc *c, const pcre2_code *re, const char *content,
                              size_t content_len, const char *s, size_t n, loam__tok_bytes *out) {
    int removed;
    return replace_all(c, re, content, content_len, s, n, out, &removed);
}

static loam_status norm_one(loam__tok_enc *c, const loam__tok_norm *nm, const char *s, size_t n,
                            loam__tok_bytes *out, size_t *lead) {
    const loam_tokenizer *t = c->tok;
    out->len = 0;
    if (loam__tok_bytes_reserve(out, n))
        return nomem(c);
    out->p[0] = '\0';
    int first_removed = 0;
    loam_status st = LOAM_OK;
    size_t added = 0; /* bytes inserted before the first character */
    switch (nm->kind) {
    case LOAM__TOK_NORM_NFC:
    case LOAM__TOK_NORM_NFD:
    case LOAM__TOK_NORM_NFKC:
    case LOAM__TOK_NORM_NFKD:
        st = norm_unicode(c, nm->kind, s, n, out);
        break;
    case LOAM__TOK_NORM_LOWERCASE:
        st = norm_lowercase(c, s, n, out);
        break;
    case LOAM__TOK_NORM_REPLACE:
        st = replace_all(c, nm->re, loam__tok_str(t, nm->str), nm->str.len, s, n, out,
                         &first_removed);
        break;
    case LOAM__TOK_NORM_PREPEND:
        if (n > 0) {
            if (loam__tok_bytes_put(out, loam__tok_str(t, nm->str), nm->str.len))
                return nomem(c);
            added = nm->str.len;
        }
        if (loam__tok_bytes_put(out, s, n))
            return nomem(c);
        break;
    case LOAM__TOK_NORM_STRIP: {
        size_t a = 0, b = n, adv;
        if (nm->left)
            while (a < b && loam__tok_is_white_space(loam__utf8_decode(s + a, b - a, &adv)))
                a += adv;
        if (nm->right)
            while (b > a) {
                size_t k = b - 1;
                while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80)
                    k--;
                if (!loam__tok_is_white_space(loam__utf8_decode(s + k, b - k, &adv)))
                    break;
                b = k;
            }
        first_removed = a > 0;
        if (loam__tok_bytes_put(out, s + a, b - a))
            return nomem(c);
        break;
    }
    case LOAM__TOK_NORM_STRIP_ACCENTS: {
        size_t i = 0, adv;
        while (i < n) {
            uint32_t cp = loam__utf8_decode(s + i, n - i, &adv);
            if (!is_mark(cp)) {
                if (loam__tok_bytes_put(out, s + i, adv))
                    return nomem(c);
            } else if (i == 0) {
                first_removed = 1;
            }
            i += adv;
        }
        break;
    }
    case LOAM__TOK_NORM_BYTE_LEVEL:
        if (byte_level_map(out, s, n))
            return nomem(c);
        break;
    }
    if (st)
        return st;
    if (*lead)
        *lead = first_removed || out->len == 0
                    ? 0
                    : added + first_char_len(out->p + added, out->len - added);
    return LOAM_OK;
}

loam_status loam__tok_normalize(loam__tok_enc *c, const char *s, size_t n, const char **out_s,
                                size_t *out_n, size_t *lead) {
    const loam_tokenizer *t = c->tok;
    for (size_t k = 0; k < t->n_norms; k++) {
        loam__tok_bytes *out = &c->norm[k & 1];
        loam_status st = norm_one(c, &t->norms[k], s, n, out, lead);
        if (st)
            return st;
        s = out->p;
        n = out->len;
    }
    *out_s = s;
    *out_n = n;
    return LOAM_OK;
}

// ---- pre-tokenizers -----------------------------------------------------------------------------

static loam_status recurse_spans(loam__tok_enc *c, size_t stage, const loam__tok_matches *m,
                                 const char *s, size_t lead) {
    for (size_t i = 0; i < m->len; i++) {
        size_t a = m->p[i].start, b = m->p[i].end;
        if (b <= a)
            continue;
        loam_status st =
            loam__tok_pre_tokenize(c, stage + 1, s + a, b - a, a < lead ? lead - a : 0);
        if (st)
            return st;
    }
    return LOAM_OK;
}

static loam_status pre_byte_level(loam__tok_enc *c, size_t stage, const loam__tok_pre *p,
                                  const char *s, size_t n, size_t lead) {
    loam__tok_bytes *a = &c->stage_a[stage], *b = &c->stage_b[stage];
    if (p->add_prefix_space && s[0] != ' ') {
        a->len = 0;
        if (loam__tok_bytes_put(a, " ", 1) || loam__tok_bytes_put(a, s, n))
            return nomem(c);
        s = a->p;
        n = a->len;
        if (lead)
            lead++;
    }
    loam__tok_matches *m = &c->stage_m[stage];
    if (p->re) {
        loam_status st = loam__tok_find_regex(c, p->re, s, n, m);
        if (st)
            return st;
    } else {
        m->len = 0;
        if (loam__tok_matches_push(m, 0, n, 1))
            return nomem(c);
    }
    for (size_t i = 0; i < m->len; i++) {
        size_t x = m->p[i].start, y = m->p[i].end;
        if (y <= x)
            continue;
        b->len = 0;
        if (byte_level_map(b, s + x, y - x))
            return nomem(c);
        size_t sub_lead = x < lead ? byte_level_len(s + x, lead - x) : 0;
        loam_status st = loam__tok_pre_tokenize(c, stage + 1, b->p, b->len, sub_lead);
        if (st)
            return st;
    }
    return LOAM_OK;
}

static loam_status pre_metaspace(loam__tok_enc *c, size_t stage, const loam__tok_pre *p,
                                 const char *s, size_t n, size_t lead) {
    loam__tok_bytes *a = &c->stage_a[stage];
    a->len = 0;
    size_t rl = (size_t)p->rep_len, new_lead = 0;
    int starts = (size_t)n >= rl && memcmp(s, p->rep_utf8, rl) == 0;
    if (!starts && s[0] == ' ')
        starts = 1; /* a leading ' ' becomes the replacement */
    int prepend = !starts && (p->prepend_scheme == LOAM__TOK_PREPEND_ALWAYS ||
                              (p->prepend_scheme == LOAM__TOK_PREPEND_FIRST && lead > 0));
    if (prepend && loam__tok_bytes_put(a, p->rep_utf8, rl))
        return nomem(c);
    for (size_t i = 0; i < n; i++) {
        if (i == lead && lead)
            new_lead = a->len;
        if (s[i] == ' ') {
            if (loam__tok_bytes_put(a, p->rep_utf8, rl))
                return nomem(c);
        } else if (loam__tok_bytes_put(a, s + i, 1)) {
            return nomem(c);
        }
    }
    if (lead && !new_lead)
        new_lead = a->len;
    if (!p->split)
        return loam__tok_pre_tokenize(c, stage + 1, a->p, a->len, new_lead);
    loam__tok_matches *m = &c->stage_m[stage];
    loam_status st = find_pred(c, p, a->p, a->len, m);
    if (st)
        return st;
    apply_behavior(m, LOAM__TOK_MERGED_WITH_NEXT, 0);
    return recurse_spans(c, stage, m, a->p, new_lead);
}

loam_status loam__tok_pre_tokenize(loam__tok_enc *c, size_t stage, const char *s, size_t n,
                                   size_t lead) {
    const loam_tokenizer *t = c->tok;
    if (stage == t->n_pres)
        return loam__tok_bpe_word(c, s, n);
    const loam__tok_pre *p = &t->pres[stage];
    loam__tok_matches *m = &c->stage_m[stage];
    loam_status st;
    switch (p->kind) {
    case LOAM__TOK_PRE_SPLIT_REGEX:
        st = loam__tok_find_regex(c, p->re, s, n, m);
        if (st)
            return st;
        apply_behavior(m, p->behavior, p->invert);
        return recurse_spans(c, stage, m, s, lead);
    case LOAM__TOK_PRE_SPLIT_PRED:
        st = find_pred(c, p, s, n, m);
        if (st)
            return st;
        apply_behavior(m, p->behavior, p->invert);
        return recurse_spans(c, stage, m, s, lead);
    case LOAM__TOK_PRE_BYTE_LEVEL:
        return pre_byte_level(c, stage, p, s, n, lead);
    case LOAM__TOK_PRE_METASPACE:
        return pre_metaspace(c, stage, p, s, n, lead);
    }
    return LOAM_OK;
}
