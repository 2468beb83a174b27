/* tok_decode.c: ids -> text, as Hugging Face `tokenizers` Tokenizer::decode, plus streaming.
 *
 * decode: each id becomes its token string (an added token's content, else the vocab piece);
 * ids without a string (out of range, unused rows of the embedding) are skipped, as HF does;
 * with skip_special, tokens whose string is the content of a special added token are skipped.
 * The strings then pass through the decoder chain (each decoder maps a list of strings to a
 * list of strings; a Sequence runs them in order) and are concatenated. Without a decoder the
 * strings are joined with " ".
 *   ByteLevel    every token whose characters are all in the byte-level alphabet becomes those
 *                bytes, any other token its own UTF-8; the bytes of all tokens are joined and
 *                made text with Rust's String::from_utf8_lossy: each maximal ill-formed subpart
 *                becomes one U+FFFD. Output: one string.
 *   Metaspace    the replacement character becomes ' ', except in the first token (unless the
 *                prepend scheme is "never"), where every replacement character is dropped.
 *   ByteFallback runs of "<0xXX>" tokens become their bytes when those form valid UTF-8, else
 *                one U+FFFD per byte.
 *   Fuse         all strings joined into one.
 *   Strip        at most `start` leading and `stop` trailing `content` characters removed.
 *   Replace      regex or string replacement in every string.
 *   BPEDecoder   the end-of-word suffix becomes " " (nothing in the last string).
 * The result is always valid UTF-8.
 *
 * Streaming. Two ways, both giving exactly decode() of all ids when the chunks are joined:
 *  - The decoder is ByteLevel alone (Qwen, Llama 3, GPT-2): the text is lossy(bytes of all
 *    tokens), so the stream keeps only the raw bytes not yet released. Each push appends the
 *    token's bytes and releases everything but a trailing incomplete UTF-8 sequence (at most 3
 *    bytes that a later token may complete); invalid bytes are released at once as U+FFFD, exactly
 *    where decode() puts them. O(token length) per push.
 *  - Any other decoder: Hugging Face's DecodeStream. The stream keeps the ids since the last
 *    emission point, decodes that window on each push and releases what lies beyond the text
 *    already released from it, unless the text did not grow, or ends in U+FFFD, or (with a
 *    ByteFallback decoder) the last token is a <0xXX> byte token, whose group of bytes may still
 *    turn into U+FFFDs. After a release the window keeps the ids of the released chunk as
 *    context, so the next token is decoded in place (a Metaspace token is never "first" again).
 *    A run of byte tokens is held until it ends, however long.
 * Flush releases whatever is held and resets the stream.
 */
#include "tokenizer.h"

typedef struct slist { /* strings in buf, each a (start, end) span */
    loam__tok_bytes buf;
    loam__tok_matches sp;
} slist;

typedef struct dctx {
    loam__tok_enc enc; /* only md, tmp_m and err are used (Replace) */
    slist a, b;
    loam__tok_bytes tmp;
} dctx;

static void slist_free(slist *l) {
    loam__free(l->buf.p);
    loam__free(l->sp.p);
}

static void dctx_free(dctx *d) {
    if (d->enc.md)
        pcre2_match_data_free(d->enc.md);
    loam__free(d->enc.tmp_m.p);
    slist_free(&d->a);
    slist_free(&d->b);
    loam__free(d->tmp.p);
}

static loam_status dctx_init(const loam_tokenizer *tok, dctx *d, loam_err *err) {
    memset(d, 0, sizeof *d);
    d->enc.tok = tok;
    d->enc.err = err;
    d->enc.md = pcre2_match_data_create(1, tok->gctx);
    if (!d->enc.md)
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    return LOAM_OK;
}

static loam_status slist_add(slist *l, const char *s, size_t n) {
    size_t start = l->buf.len;
    if (loam__tok_bytes_put(&l->buf, s, n))
        return LOAM_E_NOMEM;
    return loam__tok_matches_push(&l->sp, start, l->buf.len, 0);
}

/* Adds the string being built at the end of buf (from `start`). */
static loam_status slist_close(slist *l, size_t start) {
    return loam__tok_matches_push(&l->sp, start, l->buf.len, 0);
}

static void slist_reset(slist *l) {
    l->buf.len = 0;
    l->sp.len = 0;
}

#define STR(l, i) ((l)->buf.p ? (l)->buf.p + (l)->sp.p[i].start : "")
#define LEN(l, i) ((l)->sp.p[i].end - (l)->sp.p[i].start)

static const char k_fffd[3] = {'\xEF', '\xBF', '\xBD'};

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" -> byte (u8::from_str_radix on the two characters, which accepts "+X"). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    if (s[3] == '+' && l >= 0)
        return l;
    return h >= 0 && l >= 0 ? h * 16 + l : -1;
}

/* Appends the bytes of one ByteLevel token: its characters mapped back to bytes when all are in
 * the byte-level alphabet, else its own UTF-8. */
static loam_status byte_level_bytes(const char *s, size_t len, loam__tok_bytes *out) {
    size_t k = 0, mark = out->len;
    while (k < len) {
        size_t adv;
        uint32_t cp = loam__utf8_decode(s + k, len - k, &adv);
        int b = cp < 512 ? loam__tok_char_byte(cp) : -1;
        if (b < 0) {
            out->len = mark;
            return loam__tok_bytes_put(out, s, len);
        }
        char byte = (char)b;
        if (loam__tok_bytes_put(out, &byte, 1))
            return LOAM_E_NOMEM;
        k += adv;
    }
    return LOAM_OK;
}

static loam_status flush_bytes(dctx *d, slist *out) {
    if (d->tmp.len == 0)
        return LOAM_OK;
    loam_status st = LOAM_OK;
    if (loam__tok_utf8_valid(d->tmp.p, d->tmp.len))
        st = slist_add(out, d->tmp.p, d->tmp.len);
    else
        for (size_t i = 0; i < d->tmp.len && !st; i++)
            st = slist_add(out, k_fffd, 3);
    d->tmp.len = 0;
    return st;
}

static loam_status dec_step(dctx *d, const loam__tok_dec *dec, const slist *in, slist *out) {
    const loam_tokenizer *t = d->enc.tok;
    size_t n = in->sp.len;
    slist_reset(out);
    switch (dec->kind) {
    case LOAM__TOK_DEC_BYTE_LEVEL: {
        d->tmp.len = 0;
        for (size_t i = 0; i < n; i++)
            if (byte_level_bytes(STR(in, i), LEN(in, i), &d->tmp))
                return LOAM_E_NOMEM;
        if (loam__utf8_lossy(&out->buf, d->tmp.p ? d->tmp.p : "", d->tmp.len))
            return LOAM_E_NOMEM;
        d->tmp.len = 0;
        return slist_close(out, 0);
    }
    case LOAM__TOK_DEC_METASPACE:
        for (size_t i = 0; i < n; i++) {
            const char *s = STR(in, i);
            size_t len = LEN(in, i), k = 0, start = out->buf.len;
            while (k < len) {
                size_t adv;
                uint32_t cp = loam__utf8_decode(s + k, len - k, &adv);
                if (cp == dec->ch) {
                    if (!(i == 0 && !dec->prepend_never) && loam__tok_bytes_put(&out->buf, " ", 1))
                        return LOAM_E_NOMEM;
                } else if (loam__tok_bytes_put(&out->buf, s + k, adv)) {
                    return LOAM_E_NOMEM;
                }
                k += adv;
            }
            if (slist_close(out, start))
                return LOAM_E_NOMEM;
        }
        return LOAM_OK;
    case LOAM__TOK_DEC_BYTE_FALLBACK:
        d->tmp.len = 0;
        for (size_t i = 0; i < n; i++) {
            int b = byte_token(STR(in, i), LEN(in, i));
            if (b >= 0) {
                char byte = (char)b;
                if (loam__tok_bytes_put(&d->tmp, &byte, 1))
                    return LOAM_E_NOMEM;
                continue;
            }
            if (flush_bytes(d, out) || slist_add(out, STR(in, i), LEN(in, i)))
                return LOAM_E_NOMEM;
        }
        return flush_bytes(d, out);
    case LOAM__TOK_DEC_FUSE:
        for (size_t i = 0; i < n; i++)
            if (loam__tok_bytes_put(&out->buf, STR(in, i), LEN(in, i)))
                return LOAM_E_NOMEM;
        return slist_close(out, 0);
    case LOAM__TOK_DEC_STRIP:
        for (size_t i = 0; i < n; i++) {
            const char *s = STR(in, i);
            size_t len = LEN(in, i), a = 0, b = len, adv;
            for (size_t k = 0; k < dec->start && a < len; k++) {
                if (loam__utf8_decode(s + a, len - a, &adv) != dec->ch)
                    break;
                a += adv;
            }
            for (size_t k = 0; k < dec->stop && b > 0; k++) {
                size_t p = b - 1;
                while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80)
                    p--;
                if (loam__utf8_decode(s + p, b - p, &adv) != dec->ch)
                    break;
                b = p;
            }
            if (slist_add(out, s + a, b > a ? b - a : 0))
                return LOAM_E_NOMEM;
        }
        return LOAM_OK;
    case LOAM__TOK_DEC_REPLACE:
        for (size_t i = 0; i < n; i++) {
            size_t start = out->buf.len;
            loam_status st = loam__tok_replace(&d->enc, dec->re, loam__tok_str(t, dec->str),
                                               dec->str.len, STR(in, i), LEN(in, i), &out->buf);
            if (st)
                return st;
            if (slist_close(out, start))
                return LOAM_E_NOMEM;
        }
        return LOAM_OK;
    case LOAM__TOK_DEC_BPE: {
        const char *suf = loam__tok_str(t, dec->str);
        size_t sl = dec->str.len;
        for (size_t i = 0; i < n; i++) {
            const char *s = STR(in, i), *rep = i + 1 == n ? "" : " ";
            size_t len = LEN(in, i), k = 0, start = out->buf.len, rl = strlen(rep);
            if (sl == 0) { /* str::replace("", r) puts r at every character boundary */
                while (k < len) {
                    size_t cl = loam__utf8_len((unsigned char)s[k]);
                    if (loam__tok_bytes_put(&out->buf, rep, rl) ||
                        loam__tok_bytes_put(&out->buf, s + k, cl))
                        return LOAM_E_NOMEM;
                    k += cl;
                }
                if (loam__tok_bytes_put(&out->buf, rep, rl))
                    return LOAM_E_NOMEM;
            } else {
                while (k < len) {
                    if (len - k >= sl && memcmp(s + k, suf, sl) == 0) {
                        if (loam__tok_bytes_put(&out->buf, rep, rl))
                            return LOAM_E_NOMEM;
                        k += sl;
                    } else {
                        if (loam__tok_bytes_put(&out->buf, s + k, 1))
                            return LOAM_E_NOMEM;
                        k++;
                    }
                }
            }
            if (slist_close(out, start))
                return LOAM_E_NOMEM;
        }
        return LOAM_OK;
    }
    }
    return LOAM_OK;
}

static loam_status dctx_decode(dctx *d, const int32_t *ids, size_t n, int skip_special,
                               loam__tok_bytes *out) {
    const loam_tokenizer *t = d->enc.tok;
    loam_err *err = d->enc.err;
    slist *in = &d->a, *next = &d->b;
    slist_reset(in);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || t->id_text[id].off == LOAM__TOK_NO_SPAN)
            continue;
        if (skip_special && t->id_special[id])
            continue;
        loam__tok_span s = t->id_text[id];
        if (t->has_decoder) {
            if (slist_add(in, loam__tok_str(t, s), s.len))
                goto oom;
        } else if ((count++ && loam__tok_bytes_put(out, " ", 1)) ||
                   loam__tok_bytes_put(out, loam__tok_str(t, s), s.len)) {
            goto oom;
        }
    }
    if (!t->has_decoder)
        return loam__tok_bytes_reserve(out, 0)
                   ? loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory")
                   : LOAM_OK;
    for (size_t k = 0; k < t->n_decs; k++) {
        loam_status st = dec_step(d, &t->decs[k], in, next);
        if (st == LOAM_E_NOMEM)
            goto oom;
        if (st)
            return st;
        slist *x = in;
        in = next;
        next = x;
    }
    for (size_t i = 0; i < in->sp.len; i++)
        if (loam__tok_bytes_put(out, STR(in, i), LEN(in, i)))
            goto oom;
    if (loam__tok_bytes_reserve(out, 0))
        goto oom;
    return LOAM_OK;
oom:
    return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
}

loam_status loam__tok_decode_into(const loam_tokenizer *tok, const int32_t *ids, size_t n,
                                  int skip_special, loam__tok_bytes *out, loam_err *err) {
    dctx d;
    loam_status st = dctx_init(tok, &d, err);
    if (!st)
        st = dctx_decode(&d, ids, n, skip_special, out);
    dctx_free(&d);
    return st;
}

loam_status loam_tok_decode(const loam_tokenizer *tok, const int32_t *ids, size_t n_ids,
                            bool skip_special, char *buf, size_t cap, size_t *len, loam_err *err) {
    loam__err_clear(err);
    if (!tok || !len || (n_ids && !ids) || (cap && !buf))
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_decode: NULL argument");
    loam__tok_bytes out = {0};
    loam_status st = loam__tok_decode_into(tok, ids, n_ids, skip_special, &out, err);
    if (!st) {
        *len = out.len;
        if (cap > out.len) {
            if (out.len)
                memcpy(buf, out.p, out.len);
            buf[out.len] = '\0';
        }
    }
    loam__free(out.p);
    return st;
}

// ---- streaming --------------------------------------------------------------------------------

struct loam_tok_stream {
    const loam_tokenizer *tok;
    int skip;
    int byte_level;    /* the decoder is ByteLevel alone: raw-byte streaming */
    int byte_fallback; /* the decoder chain has ByteFallback */
    dctx d;
    loam__tok_ids ids;      /* window (HF path) */
    size_t prefix_index;    /* HF prefix_index */
    loam__tok_bytes prefix; /* decode of the window at the last release (HF path) */
    loam__tok_bytes cur;
    loam__tok_bytes pending; /* bytes not yet released (byte-level path) */
    loam__tok_bytes out;
};

loam_status loam_tok_stream_new(const loam_tokenizer *tok, bool skip_special, loam_tok_stream **out,
                                loam_err *err) {
    loam__err_clear(err);
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_stream_new: NULL argument");
    *out = NULL;
    if (!tok)
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_stream_new: NULL argument");
    loam_tok_stream *s = loam__calloc(1, sizeof *s);
    if (!s)
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    s->tok = tok;
    s->skip = skip_special;
    s->byte_level =
        tok->has_decoder && tok->n_decs == 1 && tok->decs[0].kind == LOAM__TOK_DEC_BYTE_LEVEL;
    for (size_t i = 0; i < tok->n_decs; i++)
        if (tok->decs[i].kind == LOAM__TOK_DEC_BYTE_FALLBACK)
            s->byte_fallback = 1;
    loam_status st = dctx_init(tok, &s->d, err);
    if (st) {
        dctx_free(&s->d);
        loam__free(s);
        return st;
    }
    *out = s;
    return LOAM_OK;
}

void loam_tok_stream_free(loam_tok_stream *s) {
    if (!s)
        return;
    dctx_free(&s->d);
    loam__free(s->ids.p);
    loam__free(s->prefix.p);
    loam__free(s->cur.p);
    loam__free(s->pending.p);
    loam__free(s->out.p);
    loam__free(s);
}

static int ends_with_fffd(const loam__tok_bytes *b) {
    return b->len >= 3 && memcmp(b->p + b->len - 3, k_fffd, 3) == 0;
}

/* Start of a trailing incomplete (but so far well-formed) UTF-8 sequence of b[0, n), else n. */
static size_t incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        size_t p = n - k, v;
        if (b[p] < 0xC2 || b[p] > 0xF4)
            continue; /* not a lead byte */
        /* well-formed so far and cut short by the end of the bytes */
        return loam__utf8_invalid_prefix(b + p, k, &v) == k ? p : n;
    }
    return n;
}

/* Byte-level path: appends the token's bytes and releases all but an incomplete tail. */
static loam_status push_bytes(loam_tok_stream *s, int32_t id, int final) {
    const loam_tokenizer *t = s->tok;
    if (id >= 0 && id < t->n_vocab && t->id_text[id].off != LOAM__TOK_NO_SPAN &&
        !(s->skip && t->id_special[id]))
        if (byte_level_bytes(loam__tok_str(t, t->id_text[id]), t->id_text[id].len, &s->pending))
            return LOAM_E_NOMEM;
    size_t n = s->pending.len;
    size_t cut = final ? n : incomplete_tail((const unsigned char *)s->pending.p, n);
    if (cut == 0)
        return LOAM_OK;
    if (loam__utf8_lossy(&s->out, s->pending.p, cut))
        return LOAM_E_NOMEM;
    memmove(s->pending.p, s->pending.p + cut, n - cut);
    s->pending.len = n - cut;
    return LOAM_OK;
}

/* HF path: releases cur beyond prefix. */
static loam_status emit(loam_tok_stream *s, loam_err *err) {
    if (s->prefix.len && memcmp(s->cur.p, s->prefix.p, s->prefix.len) != 0)
        return loam__fail(err, LOAM_E_INVAL,
                          "tokenizer: stream decode: the decoder changed text already emitted");
    if (loam__tok_bytes_put(&s->out, s->cur.p + s->prefix.len, s->cur.len - s->prefix.len))
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    return LOAM_OK;
}

static int is_byte_token(const loam_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab || t->id_text[id].off == LOAM__TOK_NO_SPAN)
        return 0;
    return byte_token(loam__tok_str(t, t->id_text[id]), t->id_text[id].len) >= 0;
}

static void set_text(loam_tok_stream *s, const char **text, size_t *len) {
    if (loam__tok_bytes_reserve(&s->out, 0) == LOAM_OK)
        s->out.p[s->out.len] = '\0';
    *text = s->out.len ? s->out.p : "";
    *len = s->out.len;
}

loam_status loam_tok_stream_push(loam_tok_stream *s, int32_t id, const char **text, size_t *len,
                                 loam_err *err) {
    loam__err_clear(err);
    if (!s || !text || !len)
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_stream_push: NULL argument");
    *text = "";
    *len = 0;
    s->d.enc.err = err;
    s->out.len = 0;
    loam_status st;
    if (s->byte_level) {
        if (push_bytes(s, id, 0))
            return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
        set_text(s, text, len);
        return LOAM_OK;
    }
    const loam_tokenizer *t = s->tok;
    if (loam__tok_ids_push(&s->ids, id))
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    s->cur.len = 0;
    if ((st = dctx_decode(&s->d, s->ids.p, s->ids.len, s->skip, &s->cur)))
        return st;
    int open_group = s->byte_fallback && is_byte_token(t, id) && !(s->skip && t->id_special[id]);
    if (s->cur.len <= s->prefix.len || ends_with_fffd(&s->cur) || open_group)
        return LOAM_OK;
    if ((st = emit(s, err)))
        return st;
    size_t new_index = s->ids.len - s->prefix_index;
    memmove(s->ids.p, s->ids.p + s->prefix_index, new_index * sizeof *s->ids.p);
    s->ids.len = new_index;
    s->prefix.len = 0;
    if ((st = dctx_decode(&s->d, s->ids.p, s->ids.len, s->skip, &s->prefix)))
        return st;
    s->prefix_index = new_index;
    set_text(s, text, len);
    return LOAM_OK;
}

loam_status loam_tok_stream_flush(loam_tok_stream *s, const char **text, size_t *len,
                                  loam_err *err) {
    loam__err_clear(err);
    if (!s || !text || !len)
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_stream_flush: NULL argument");
    *text = "";
    *len = 0;
    s->d.enc.err = err;
    s->out.len = 0;
    loam_status st = LOAM_OK;
    if (s->byte_level) {
        if (push_bytes(s, -1, 1))
            st = loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
        s->pending.len = 0;
    } else {
        s->cur.len = 0;
        st = dctx_decode(&s->d, s->ids.p, s->ids.len, s->skip, &s->cur);
        if (!st && s->cur.len > s->prefix.len)
            st = emit(s, err);
        s->ids.len = 0;
        s->prefix.len = 0;
        s->prefix_index = 0;
    }
    if (st)
        return st;
    set_text(s, text, len);
    return LOAM_OK;
}
