/* tokenizer.c: loading a Hugging Face tokenizer.json and the encode pipeline.
 *
 * tokenizer.json (serialization of `tokenizers` Tokenizer, "version": "1.0"):
 *   {"version", "truncation", "padding",            (truncation/padding: ignored, see loam.h)
 *    "added_tokens": [{"id", "content", "single_word", "lstrip", "rstrip", "normalized",
 *                      "special"}],
 *    "normalizer", "pre_tokenizer", "post_processor", "decoder":  null or {"type": ..., ...},
 *    "model": {"type": "BPE", "vocab": {piece: id}, "merges": ["a b" | ["a", "b"]],
 *              "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
 *              "byte_fallback", "ignore_merges", "dropout"}}
 * Components are listed in tokenizer.h; each unknown "type" is a LOAM_E_UNSUPPORTED error.
 *
 * Added tokens follow AddedVocabulary::add_tokens: an empty content is ignored, a repeated
 * identical token is ignored, a token whose content is already known keeps that id (added tokens
 * first, then the vocab), any other token gets the next id after the vocab (the "id" in the file
 * is not used, exactly as HF only warns about it). Tokens with normalized=false are matched in
 * the raw text, the others in each normalized piece against their normalized content; decode
 * shows that normalized content (tokenizers >= 0.23).
 *
 * Encode (Tokenizer::encode_single_sequence + post_process):
 *  1. invalid UTF-8 becomes U+FFFD (loam.h);
 *  2. leftmost-longest matches of raw added tokens split the text (single_word: no word
 *     character (\w) may touch the match; lstrip/rstrip: the token swallows whitespace beside
 *     it); the pieces between them are
 *  3. normalized, then split again by the normalized added tokens;
 *  4. each remaining piece runs through the pre-tokenizer stages and the BPE model (tok_text.c,
 *     tok_bpe.c);
 *  5. with add_special, the post-processor templates wrap the ids.
 * A loam__tok_enc holds all scratch for one call, so concurrent encodes share nothing but the
 * locked word cache.
 */
#include "tokenizer.h"

#include <sys/stat.h>

// ---- pool ---------------------------------------------------------------------------------------

static loam_status pool_add(loam_tokenizer *t, const char *s, size_t n, loam__tok_span *out,
                            loam_err *err) {
    if (n >= UINT32_MAX || t->pool_len + n + 1 >= UINT32_MAX)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: strings exceed 4 GiB");
    if (t->pool_len + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 4096;
        while (cap < t->pool_len + n + 1)
            cap *= 2;
        char *p = loam__realloc(t->pool, cap);
        if (!p)
            return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
        t->pool = p;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, s, n);
    t->pool[t->pool_len + n] = '\0';
    *out = (loam__tok_span){(uint32_t)t->pool_len, (uint32_t)n};
    t->pool_len += n + 1;
    return LOAM_OK;
}

static void *push_elem(void **arr, size_t *n, size_t elem) {
    void *p = loam__realloc(*arr, (*n + 1) * elem);
    if (!p)
        return NULL;
    *arr = p;
    char *e = (char *)p + *n * elem;
    memset(e, 0, elem);
    (*n)++;
    return e;
}

// ---- JSON helpers -----------------------------------------------------------------------------

static loam_status nomem(loam_err *err) {
    return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
}

/* A string field: *out NULL when absent or null. */
static loam_status get_str(const cJSON *o, const char *key, const char **out, const char *what,
                           loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return LOAM_OK;
    if (!cJSON_IsString(v) || !v->valuestring)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: '%s' must be a string", what,
                          key);
    *out = v->valuestring;
    return LOAM_OK;
}

static loam_status get_bool(const cJSON *o, const char *key, int def, int *out, const char *what,
                            loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = def;
    if (!v || cJSON_IsNull(v))
        return LOAM_OK;
    if (!cJSON_IsBool(v))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: '%s' must be true or false",
                          what, key);
    *out = cJSON_IsTrue(v);
    return LOAM_OK;
}

static int json_int(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != (double)(int64_t)d)
        return 0;
    *out = (int64_t)d;
    return 1;
}

static loam_status get_uint(const cJSON *o, const char *key, size_t def, size_t *out,
                            const char *what, loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = def;
    if (!v || cJSON_IsNull(v))
        return LOAM_OK;
    int64_t x;
    if (!json_int(v, 0, 1e15, &x))
        return loam__fail(err, LOAM_E_FORMAT,
                          "tokenizer.json: %s: '%s' must be a non-negative integer", what, key);
    *out = (size_t)x;
    return LOAM_OK;
}

/* A one-character string field (Metaspace replacement, Strip content, delimiter). */
static loam_status get_char(const cJSON *o, const char *key, uint32_t def, uint32_t *out,
                            const char *what, loam_err *err) {
    const char *s;
    loam_status st = get_str(o, key, &s, what, err);
    if (st)
        return st;
    *out = def;
    if (!s)
        return LOAM_OK;
    size_t n = strlen(s), adv = 0;
    if (n)
        *out = loam__utf8_decode(s, n, &adv);
    if (n == 0 || adv != n)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: '%s' must be one character",
                          what, key);
    return LOAM_OK;
}

static const char *type_of(const cJSON *o) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static loam_status unsupported(loam_err *err, const char *what, const char *type) {
    return loam__fail(err, LOAM_E_UNSUPPORTED, "tokenizer.json: %s type '%.60s' is not supported",
                      what, type ? type : "(missing)");
}

/* "pattern": {"String": s} | {"Regex": r} -> compiled regex. */
static loam_status get_pattern(loam_tokenizer *t, const cJSON *o, const char *what, pcre2_code **re,
                               loam_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *s = p ? cJSON_GetObjectItemCaseSensitive(p, "String") : NULL;
    const cJSON *r = p ? cJSON_GetObjectItemCaseSensitive(p, "Regex") : NULL;
    const cJSON *v = s ? s : r;
    if (!cJSON_IsObject(p) || !cJSON_IsString(v) || !v->valuestring)
        return loam__fail(
            err, LOAM_E_FORMAT,
            "tokenizer.json: %s: 'pattern' must be {\"String\": ...} or {\"Regex\": ...}", what);
    const char *text = v->valuestring;
    return loam__tok_regex_compile(t, text, strlen(text), s != NULL, what, re, err);
}

static loam_status get_behavior(const cJSON *o, loam__tok_behavior def, loam__tok_behavior *out,
                                const char *what, loam_err *err) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    const char *s;
    loam_status st = get_str(o, "behavior", &s, what, err);
    if (st)
        return st;
    *out = def;
    if (!s)
        return LOAM_OK;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (loam__tok_behavior)i;
            return LOAM_OK;
        }
    return loam__fail(err, LOAM_E_FORMAT,
                      "tokenizer.json: %s: behavior '%.40s' is not one of Removed, Isolated, "
                      "MergedWithPrevious, MergedWithNext, Contiguous",
                      what, s);
}

/* prepend_scheme / legacy add_prefix_space of Metaspace (pre-tokenizer and decoder). */
static loam_status get_prepend_scheme(const cJSON *o, int *out, const char *what, loam_err *err) {
    const char *s;
    int aps;
    loam_status st = get_str(o, "prepend_scheme", &s, what, err);
    if (!st)
        st = get_bool(o, "add_prefix_space", -1, &aps, what, err);
    if (st)
        return st;
    *out = LOAM__TOK_PREPEND_ALWAYS;
    if (s) {
        if (strcmp(s, "first") == 0)
            *out = LOAM__TOK_PREPEND_FIRST;
        else if (strcmp(s, "never") == 0)
            *out = LOAM__TOK_PREPEND_NEVER;
        else if (strcmp(s, "always") != 0)
            return loam__fail(
                err, LOAM_E_FORMAT,
                "tokenizer.json: %s: prepend_scheme '%.40s' is not first, never or always", what,
                s);
    }
    if (aps == 0) {
        if (*out != LOAM__TOK_PREPEND_NEVER && s)
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: %s: add_prefix_space does not match prepend_scheme",
                              what);
        *out = LOAM__TOK_PREPEND_NEVER;
    }
    return LOAM_OK;
}

static const cJSON *get_array(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsArray(v) ? v : NULL;
}

// ---- normalizers ------------------------------------------------------------------------------

static loam_status parse_normalizer(loam_tokenizer *t, const cJSON *o, const char *what,
                                    loam_err *err) {
    if (!cJSON_IsObject(o))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s must be an object", what);
    const char *type = type_of(o);
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *list = get_array(o, "normalizers");
        if (!list)
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: %s: 'normalizers' must be an array", what);
        int i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", what, i);
            loam_status st = parse_normalizer(t, c, sub, err);
            if (st)
                return st;
        }
        return LOAM_OK;
    }
    static const struct {
        const char *name;
        loam__tok_norm_kind kind;
    } simple[] = {{"NFC", LOAM__TOK_NORM_NFC},
                  {"NFD", LOAM__TOK_NORM_NFD},
                  {"NFKC", LOAM__TOK_NORM_NFKC},
                  {"NFKD", LOAM__TOK_NORM_NFKD},
                  {"Lowercase", LOAM__TOK_NORM_LOWERCASE},
                  {"StripAccents", LOAM__TOK_NORM_STRIP_ACCENTS},
                  {"ByteLevel", LOAM__TOK_NORM_BYTE_LEVEL},
                  {"Replace", LOAM__TOK_NORM_REPLACE},
                  {"Prepend", LOAM__TOK_NORM_PREPEND},
                  {"Strip", LOAM__TOK_NORM_STRIP}};
    int kind = -1;
    for (size_t i = 0; type && i < sizeof simple / sizeof simple[0]; i++)
        if (strcmp(type, simple[i].name) == 0)
            kind = (int)simple[i].kind;
    if (kind < 0)
        return unsupported(err, "normalizer", type);
    loam__tok_norm *nm = push_elem((void **)&t->norms, &t->n_norms, sizeof *nm);
    if (!nm)
        return nomem(err);
    nm->kind = (loam__tok_norm_kind)kind;
    const char *s;
    loam_status st = LOAM_OK;
    switch (nm->kind) {
    case LOAM__TOK_NORM_REPLACE:
        if ((st = get_pattern(t, o, what, &nm->re, err)))
            return st;
        if ((st = get_str(o, "content", &s, what, err)))
            return st;
        if (!s)
            return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'content' is missing", what);
        return pool_add(t, s, strlen(s), &nm->str, err);
    case LOAM__TOK_NORM_PREPEND:
        if ((st = get_str(o, "prepend", &s, what, err)))
            return st;
        if (!s)
            return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'prepend' is missing", what);
        return pool_add(t, s, strlen(s), &nm->str, err);
    case LOAM__TOK_NORM_STRIP:
        if ((st = get_bool(o, "strip_left", 0, &nm->left, what, err)))
            return st;
        return get_bool(o, "strip_right", 0, &nm->right, what, err);
    default:
        return LOAM_OK;
    }
}

// ---- pre-tokenizers ---------------------------------------------------------------------------

static loam__tok_pre *new_stage(loam_tokenizer *t, loam_err *err) {
    if (t->n_pres >= LOAM__TOK_MAX_STAGES) {
        loam__fail(err, LOAM_E_UNSUPPORTED, "tokenizer.json: more than %d pre-tokenizer stages",
                   LOAM__TOK_MAX_STAGES);
        return NULL;
    }
    loam__tok_pre *p = push_elem((void **)&t->pres, &t->n_pres, sizeof *p);
    if (!p)
        nomem(err);
    return p;
}

static loam_status pred_stage(loam_tokenizer *t, loam__tok_pred pred, uint32_t ch,
                              loam__tok_behavior b, loam_err *err) {
    loam__tok_pre *p = new_stage(t, err);
    if (!p)
        return err ? err->code : LOAM_E_NOMEM;
    p->kind = LOAM__TOK_PRE_SPLIT_PRED;
    p->pred = pred;
    p->pred_char = ch;
    p->behavior = b;
    return LOAM_OK;
}

static loam_status parse_pre_tokenizer(loam_tokenizer *t, const cJSON *o, const char *what,
                                       loam_err *err) {
    if (!cJSON_IsObject(o))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s must be an object", what);
    const char *type = type_of(o);
    loam_status st;
    if (!type)
        return unsupported(err, "pre_tokenizer", type);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = get_array(o, "pretokenizers");
        if (!list)
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: %s: 'pretokenizers' must be an array", what);
        int i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", what, i);
            if ((st = parse_pre_tokenizer(t, c, sub, err)))
                return st;
        }
        return LOAM_OK;
    }
    if (strcmp(type, "WhitespaceSplit") == 0)
        return pred_stage(t, LOAM__TOK_PRED_WHITESPACE, 0, LOAM__TOK_REMOVED, err);
    if (strcmp(type, "BertPreTokenizer") == 0) {
        if ((st = pred_stage(t, LOAM__TOK_PRED_WHITESPACE, 0, LOAM__TOK_REMOVED, err)))
            return st;
        return pred_stage(t, LOAM__TOK_PRED_PUNCT, 0, LOAM__TOK_ISOLATED, err);
    }
    if (strcmp(type, "Punctuation") == 0) {
        loam__tok_behavior b;
        if ((st = get_behavior(o, LOAM__TOK_ISOLATED, &b, what, err)))
            return st;
        return pred_stage(t, LOAM__TOK_PRED_PUNCT, 0, b, err);
    }
    if (strcmp(type, "Digits") == 0) {
        int indiv;
        if ((st = get_bool(o, "individual_digits", 0, &indiv, what, err)))
            return st;
        return pred_stage(t, LOAM__TOK_PRED_NUMERIC, 0,
                          indiv ? LOAM__TOK_ISOLATED : LOAM__TOK_CONTIGUOUS, err);
    }
    if (strcmp(type, "CharDelimiterSplit") == 0) {
        uint32_t ch;
        if ((st = get_char(o, "delimiter", UINT32_MAX, &ch, what, err)))
            return st;
        if (ch == UINT32_MAX)
            return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'delimiter' is missing",
                              what);
        return pred_stage(t, LOAM__TOK_PRED_CHAR, ch, LOAM__TOK_REMOVED, err);
    }
    loam__tok_pre *p;
    if (strcmp(type, "Split") == 0) {
        if (!(p = new_stage(t, err)))
            return err ? err->code : LOAM_E_NOMEM;
        p->kind = LOAM__TOK_PRE_SPLIT_REGEX;
        if ((st = get_pattern(t, o, what, &p->re, err)))
            return st;
        if ((st = get_behavior(o, LOAM__TOK_ISOLATED, &p->behavior, what, err)))
            return st;
        return get_bool(o, "invert", 0, &p->invert, what, err);
    }
    if (strcmp(type, "Whitespace") == 0) {
        if (!(p = new_stage(t, err)))
            return err ? err->code : LOAM_E_NOMEM;
        p->kind = LOAM__TOK_PRE_SPLIT_REGEX;
        p->behavior = LOAM__TOK_REMOVED;
        p->invert = 1;
        static const char re[] = "\\w+|[^\\w\\s]+";
        return loam__tok_regex_compile(t, re, sizeof re - 1, 0, what, &p->re, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        if (!(p = new_stage(t, err)))
            return err ? err->code : LOAM_E_NOMEM;
        p->kind = LOAM__TOK_PRE_BYTE_LEVEL;
        int use_regex;
        if ((st = get_bool(o, "add_prefix_space", 1, &p->add_prefix_space, what, err)))
            return st;
        if ((st = get_bool(o, "use_regex", 1, &use_regex, what, err)))
            return st;
        if (!use_regex)
            return LOAM_OK;
        static const char gpt2[] =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
        return loam__tok_regex_compile(t, gpt2, sizeof gpt2 - 1, 0, what, &p->re, err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        if (!(p = new_stage(t, err)))
            return err ? err->code : LOAM_E_NOMEM;
        p->kind = LOAM__TOK_PRE_METASPACE;
        if ((st = get_char(o, "replacement", 0x2581, &p->replacement, what, err)))
            return st;
        p->rep_len = loam__utf8_encode(p->replacement, p->rep_utf8);
        if ((st = get_prepend_scheme(o, &p->prepend_scheme, what, err)))
            return st;
        if ((st = get_bool(o, "split", 1, &p->split, what, err)))
            return st;
        p->pred = LOAM__TOK_PRED_CHAR;
        p->pred_char = p->replacement;
        return LOAM_OK;
    }
    return unsupported(err, "pre_tokenizer", type);
}

// ---- decoders ---------------------------------------------------------------------------------

static loam_status parse_decoder(loam_tokenizer *t, const cJSON *o, const char *what,
                                 loam_err *err) {
    if (!cJSON_IsObject(o))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s must be an object", what);
    const char *type = type_of(o);
    loam_status st;
    if (!type)
        return unsupported(err, "decoder", type);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = get_array(o, "decoders");
        if (!list)
            return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'decoders' must be an array",
                              what);
        int i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.decoders[%d]", what, i);
            if ((st = parse_decoder(t, c, sub, err)))
                return st;
        }
        return LOAM_OK;
    }
    static const struct {
        const char *name;
        loam__tok_dec_kind kind;
    } kinds[] = {{"ByteLevel", LOAM__TOK_DEC_BYTE_LEVEL},
                 {"Metaspace", LOAM__TOK_DEC_METASPACE},
                 {"ByteFallback", LOAM__TOK_DEC_BYTE_FALLBACK},
                 {"Fuse", LOAM__TOK_DEC_FUSE},
                 {"Strip", LOAM__TOK_DEC_STRIP},
                 {"Replace", LOAM__TOK_DEC_REPLACE},
                 {"BPEDecoder", LOAM__TOK_DEC_BPE}};
    int kind = -1;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(type, kinds[i].name) == 0)
            kind = (int)kinds[i].kind;
    if (kind < 0)
        return unsupported(err, "decoder", type);
    loam__tok_dec *d = push_elem((void **)&t->decs, &t->n_decs, sizeof *d);
    if (!d)
        return nomem(err);
    d->kind = (loam__tok_dec_kind)kind;
    const char *s;
    switch (d->kind) {
    case LOAM__TOK_DEC_METASPACE: {
        int scheme;
        if ((st = get_char(o, "replacement", 0x2581, &d->ch, what, err)))
            return st;
        if ((st = get_prepend_scheme(o, &scheme, what, err)))
            return st;
        d->prepend_never = scheme == LOAM__TOK_PREPEND_NEVER;
        return LOAM_OK;
    }
    case LOAM__TOK_DEC_STRIP:
        if ((st = get_char(o, "content", ' ', &d->ch, what, err)))
            return st;
        if ((st = get_uint(o, "start", 0, &d->start, what, err)))
            return st;
        return get_uint(o, "stop", 0, &d->stop, what, err);
    case LOAM__TOK_DEC_REPLACE:
        if ((st = get_pattern(t, o, what, &d->re, err)))
            return st;
        if ((st = get_str(o, "content", &s, what, err)))
            return st;
        if (!s)
            return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'content' is missing", what);
        return pool_add(t, s, strlen(s), &d->str, err);
    case LOAM__TOK_DEC_BPE:
        if ((st = get_str(o, "suffix", &s, what, err)))
            return st;
        if (!s)
            s = "</w>";
        return pool_add(t, s, strlen(s), &d->str, err);
    default:
        return LOAM_OK;
    }
}

// ---- post-processors --------------------------------------------------------------------------

static loam_status template_add(loam__tok_template *tp, int32_t v, loam_err *err) {
    int32_t *p = loam__realloc(tp->items, (tp->n_items + 1) * sizeof *p);
    if (!p)
        return nomem(err);
    p[tp->n_items++] = v;
    tp->items = p;
    return LOAM_OK;
}

/* ["[CLS]", 101] of BertProcessing / RobertaProcessing */
static loam_status get_pair_id(const cJSON *o, const char *key, int32_t *id, const char *what,
                               loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    int64_t x;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsString(v->child) ||
        !json_int(v->child->next, 0, INT32_MAX - 1, &x))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: '%s' must be [token, id]", what,
                          key);
    *id = (int32_t)x;
    return LOAM_OK;
}

static loam_status parse_post_processor(loam_tokenizer *t, const cJSON *o, const char *what,
                                        loam_err *err) {
    if (!cJSON_IsObject(o))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s must be an object", what);
    const char *type = type_of(o);
    loam_status st;
    if (!type)
        return unsupported(err, "post_processor", type);
    if (strcmp(type, "ByteLevel") == 0)
        return LOAM_OK; /* offsets only */
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = get_array(o, "processors");
        if (!list)
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: %s: 'processors' must be an array", what);
        int i = 0;
        for (const cJSON *c = list->child; c; c = c->next, i++) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s.processors[%d]", what, i);
            if ((st = parse_post_processor(t, c, sub, err)))
                return st;
        }
        return LOAM_OK;
    }
    int bert = strcmp(type, "BertProcessing") == 0,
        roberta = strcmp(type, "RobertaProcessing") == 0;
    if (!bert && !roberta && strcmp(type, "TemplateProcessing") != 0)
        return unsupported(err, "post_processor", type);
    loam__tok_template *tp = push_elem((void **)&t->posts, &t->n_posts, sizeof *tp);
    if (!tp)
        return nomem(err);
    if (bert || roberta) {
        int32_t cls, sep;
        if ((st = get_pair_id(o, "cls", &cls, what, err)))
            return st;
        if ((st = get_pair_id(o, "sep", &sep, what, err)))
            return st;
        if ((st = template_add(tp, cls, err)) || (st = template_add(tp, LOAM__TOK_SEQ, err)))
            return st;
        return template_add(tp, sep, err);
    }
    const cJSON *single = get_array(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    if (!single)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'single' must be an array",
                          what);
    for (const cJSON *piece = single->child; piece; piece = piece->next) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(seq ? seq : sp, "id");
        if (!cJSON_IsString(id) || !id->valuestring)
            return loam__fail(
                err, LOAM_E_FORMAT,
                "tokenizer.json: %s: a 'single' item must be {\"Sequence\": {\"id\": ...}} "
                "or {\"SpecialToken\": {\"id\": ...}}",
                what);
        if (seq) {
            if (strcmp(id->valuestring, "A") != 0)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "tokenizer.json: %s: the single template uses sequence '%.20s'",
                                  what, id->valuestring);
            if ((st = template_add(tp, LOAM__TOK_SEQ, err)))
                return st;
            continue;
        }
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(specials, id->valuestring);
        const cJSON *ids = tok ? get_array(tok, "ids") : NULL;
        if (!ids)
            return loam__fail(
                err, LOAM_E_FORMAT,
                "tokenizer.json: %s: special token '%.60s' has no entry with 'ids' in "
                "special_tokens",
                what, id->valuestring);
        for (const cJSON *x = ids->child; x; x = x->next) {
            int64_t v;
            if (!json_int(x, 0, INT32_MAX - 1, &v))
                return loam__fail(err, LOAM_E_FORMAT,
                                  "tokenizer.json: %s: special token '%.60s': bad id", what,
                                  id->valuestring);
            if ((st = template_add(tp, (int32_t)v, err)))
                return st;
        }
    }
    return LOAM_OK;
}

// ---- model ------------------------------------------------------------------------------------

static loam_status parse_model(loam_tokenizer *t, const cJSON *m, loam_err *err) {
    const char *what = "model";
    if (!cJSON_IsObject(m))
        return loam__fail(err, LOAM_E_FORMAT,
                          "tokenizer.json: 'model' is missing or not an object");
    const char *type = type_of(m);
    if (type ? strcmp(type, "BPE") != 0 : !cJSON_GetObjectItemCaseSensitive(m, "merges"))
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "tokenizer.json: model type '%.40s' is not supported (only BPE)",
                          type ? type : "(missing)");
    loam__tok_bpe *b = &t->bpe;
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) {
        if (!cJSON_IsNumber(dropout) || !(dropout->valuedouble >= 0 && dropout->valuedouble <= 1))
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: model.dropout must be in [0, 1]");
        if (dropout->valuedouble > 0)
            return loam__fail(err, LOAM_E_UNSUPPORTED,
                              "tokenizer.json: model.dropout %g is not supported (random merges)",
                              dropout->valuedouble);
    }
    const char *unk, *prefix, *suffix;
    loam_status st;
    if ((st = get_str(m, "unk_token", &unk, what, err)) ||
        (st = get_str(m, "continuing_subword_prefix", &prefix, what, err)) ||
        (st = get_str(m, "end_of_word_suffix", &suffix, what, err)) ||
        (st = get_bool(m, "fuse_unk", 0, &b->fuse_unk, what, err)) ||
        (st = get_bool(m, "byte_fallback", 0, &b->byte_fallback, what, err)) ||
        (st = get_bool(m, "ignore_merges", 0, &b->ignore_merges, what, err)))
        return st;
    b->unk = (loam__tok_span){LOAM__TOK_NO_SPAN, 0};
    if (unk && (st = pool_add(t, unk, strlen(unk), &b->unk, err)))
        return st;
    if ((st = pool_add(t, prefix ? prefix : "", prefix ? strlen(prefix) : 0, &b->prefix, err)))
        return st;
    if ((st = pool_add(t, suffix ? suffix : "", suffix ? strlen(suffix) : 0, &b->suffix, err)))
        return st;

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return loam__fail(err, LOAM_E_FORMAT,
                          "tokenizer.json: model needs a 'vocab' object and a 'merges' array");
    if ((st = loam__tok_bpe_init_vocab(t, (size_t)cJSON_GetArraySize(vocab), err)))
        return st;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        int64_t id;
        const char *key = v->string ? v->string : "";
        size_t kl = strlen(key);
        if (!json_int(v, 0, INT32_MAX - 1, &id))
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: model.vocab['%.60s'] must be an id in [0, 2^31-1)",
                              key);
        loam__tok_span s;
        if ((st = pool_add(t, key, kl, &s, err)))
            return st;
        if ((st = loam__tok_bpe_add_vocab(t, s, (int32_t)id, err)))
            return st;
    }
    if ((st = loam__tok_bpe_init_merges(t, (size_t)cJSON_GetArraySize(merges), err)))
        return st;
    uint32_t rank = 0;
    for (const cJSON *e = merges->child; e; e = e->next) {
        const char *a, *bb;
        size_t na, nb;
        if (cJSON_IsString(e) && e->valuestring) {
            const char *s = e->valuestring;
            if (strncmp(s, "#version", 8) == 0)
                continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return loam__fail(
                    err, LOAM_E_FORMAT,
                    "tokenizer.json: merge %u ('%.60s') is not two pieces separated by one "
                    "space",
                    rank + 1, s);
            a = s, na = (size_t)(sp - s), bb = sp + 1, nb = strlen(sp + 1);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring, na = strlen(a);
            bb = e->child->next->valuestring, nb = strlen(bb);
        } else {
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: merge %u must be \"a b\" or [\"a\", \"b\"]",
                              rank + 1);
        }
        if ((st = loam__tok_bpe_add_merge(t, rank, a, na, bb, nb, err)))
            return st;
        rank++;
    }
    return LOAM_OK;
}

// ---- added tokens -----------------------------------------------------------------------------

static uint32_t str_hash(const char *s, size_t n) { /* FNV-1a: added contents are few */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int32_t added_find(const loam_tokenizer *t, const char *s, size_t n) {
    if (!t->added_slots)
        return -1;
    for (uint32_t i = str_hash(s, n) & t->added_mask;; i = (i + 1) & t->added_mask) {
        int32_t k = t->added_slots[i];
        if (k < 0)
            return -1;
        loam__tok_span c = t->added[k].content;
        if (c.len == n && memcmp(t->pool + c.off, s, n) == 0)
            return k;
    }
}

static void added_insert(loam_tokenizer *t, int32_t k) {
    loam__tok_span c = t->added[k].content;
    uint32_t i = str_hash(t->pool + c.off, c.len) & t->added_mask;
    while (t->added_slots[i] >= 0)
        i = (i + 1) & t->added_mask;
    t->added_slots[i] = k;
}

static loam_status enc_init(loam__tok_enc *c, const loam_tokenizer *tok, loam_err *err) {
    memset(c, 0, sizeof *c);
    c->tok = tok;
    c->err = err;
    c->md = pcre2_match_data_create(1, tok->gctx);
    return c->md ? LOAM_OK : nomem(err);
}

static void enc_free(loam__tok_enc *c) {
    if (c->md)
        pcre2_match_data_free(c->md);
    loam__free(c->out.p);
    for (int i = 0; i < 2; i++) {
        loam__free(c->norm[i].p);
        loam__free(c->added_m[i].p);
    }
    for (int i = 0; i < LOAM__TOK_MAX_STAGES; i++) {
        loam__free(c->stage_a[i].p);
        loam__free(c->stage_b[i].p);
        loam__free(c->stage_m[i].p);
    }
    loam__free(c->tmp_m.p);
    loam__tok_enc_free_bpe(c);
}

static loam_status parse_added_tokens(loam_tokenizer *t, const cJSON *list, loam_err *err) {
    if (!list || cJSON_IsNull(list))
        return LOAM_OK;
    if (!cJSON_IsArray(list))
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: 'added_tokens' must be an array");
    size_t count = (size_t)cJSON_GetArraySize(list), slots = 16;
    while (slots < 2 * count + 1)
        slots *= 2;
    t->added_slots = loam__malloc(slots * sizeof *t->added_slots);
    t->added = loam__calloc(count ? count : 1, sizeof *t->added);
    t->added_special = loam__calloc(count ? count : 1, 1);
    if (!t->added_slots || !t->added || !t->added_special)
        return nomem(err);
    for (size_t i = 0; i < slots; i++)
        t->added_slots[i] = -1;
    t->added_mask = (uint32_t)(slots - 1);

    loam__tok_enc c;
    loam_status st = enc_init(&c, t, err);
    int64_t next_id = (int64_t)loam__tok_bpe_size(t);
    int idx = 0;
    for (const cJSON *o = list->child; o && !st; o = o->next, idx++) {
        char what[48];
        snprintf(what, sizeof what, "added_tokens[%d]", idx);
        const char *content;
        int single, lstrip, rstrip, normalized, special;
        if (!cJSON_IsObject(o)) {
            st = loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s must be an object", what);
            break;
        }
        if ((st = get_str(o, "content", &content, what, err)))
            break;
        if (!content) {
            st = loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: %s: 'content' is missing", what);
            break;
        }
        if ((st = get_bool(o, "special", 0, &special, what, err)) ||
            (st = get_bool(o, "single_word", 0, &single, what, err)) ||
            (st = get_bool(o, "lstrip", 0, &lstrip, what, err)) ||
            (st = get_bool(o, "rstrip", 0, &rstrip, what, err)) ||
            (st = get_bool(o, "normalized", !special, &normalized, what, err)))
            break;
        size_t n = strlen(content);
        if (n == 0)
            continue;
        int32_t k = added_find(t, content, n);
        if (k >= 0) {
            loam__tok_added *a = &t->added[k];
            if (a->single_word == single && a->lstrip == lstrip && a->rstrip == rstrip &&
                a->normalized == normalized && a->special == special)
                continue;
        }
        int32_t id;
        if (k >= 0) {
            id = t->added[k].id;
        } else {
            id = loam__tok_bpe_lookup(t, content, n);
            if (id < 0) {
                if (next_id > INT32_MAX - 1) {
                    st = loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: too many added tokens");
                    break;
                }
                id = (int32_t)next_id++;
            }
            k = (int32_t)t->n_added++;
            if ((st = pool_add(t, content, n, &t->added[k].content, err)))
                break;
            added_insert(t, k);
        }
        loam__tok_added *a = &t->added[k];
        a->id = id;
        a->single_word = (uint8_t)single, a->lstrip = (uint8_t)lstrip, a->rstrip = (uint8_t)rstrip;
        a->normalized = (uint8_t)normalized, a->special = (uint8_t)special;
        if (special)
            t->added_special[k] = 1;
        a->pattern = a->content;
        if (normalized && t->n_norms) {
            const char *ns;
            size_t nn, lead = 0;
            if ((st = loam__tok_normalize(&c, content, n, &ns, &nn, &lead)))
                break;
            if ((nn != n || memcmp(ns, content, n) != 0) &&
                (st = pool_add(t, ns, nn, &a->pattern, err)))
                break;
        }
    }
    enc_free(&c);
    return st;
}

static loam_status trie_node(loam__tok_trie *tr, uint8_t byte, int32_t *out) {
    if (tr->n_nodes == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 64;
        loam__tok_trie_node *p = loam__realloc(tr->nodes, cap * sizeof *p);
        if (!p)
            return LOAM_E_NOMEM;
        tr->nodes = p;
        tr->cap = cap;
    }
    tr->nodes[tr->n_nodes] = (loam__tok_trie_node){-1, -1, -1, byte};
    *out = (int32_t)tr->n_nodes++;
    return LOAM_OK;
}

static loam_status trie_add(loam__tok_trie *tr, const char *s, size_t n, int32_t added) {
    int32_t node = 0, x;
    if (tr->n_nodes == 0) {
        if (trie_node(tr, 0, &x))
            return LOAM_E_NOMEM;
        for (int i = 0; i < 256; i++)
            tr->root[i] = -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t ch = node == 0 ? tr->root[b] : tr->nodes[node].child;
        if (node != 0)
            while (ch >= 0 && tr->nodes[ch].byte != b)
                ch = tr->nodes[ch].sibling;
        if (ch < 0) {
            if (trie_node(tr, b, &ch))
                return LOAM_E_NOMEM;
            if (node == 0) {
                tr->root[b] = ch;
            } else {
                tr->nodes[ch].sibling = tr->nodes[node].child;
                tr->nodes[node].child = ch;
            }
        }
        node = ch;
    }
    if (tr->nodes[node].added < 0)
        tr->nodes[node].added = added;
    return LOAM_OK;
}

/* Tries (lowest id wins a duplicate pattern), id tables, special flags, the \w class. */
static loam_status build_tables(loam_tokenizer *t, loam_err *err) {
    int64_t max_id = -1;
    for (size_t i = 0; i < t->bpe.n_entries; i++)
        if (t->bpe.entries[i].id > max_id)
            max_id = t->bpe.entries[i].id;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > max_id)
            max_id = t->added[i].id;
    t->n_vocab = (int32_t)(max_id + 1);
    size_t nv = (size_t)t->n_vocab ? (size_t)t->n_vocab : 1;
    t->id_text = loam__malloc(nv * sizeof *t->id_text);
    t->id_raw = loam__malloc(nv * sizeof *t->id_raw);
    t->id_special = loam__calloc(nv, 1);
    if (!t->id_text || !t->id_raw || !t->id_special)
        return nomem(err);
    for (size_t i = 0; i < nv; i++)
        t->id_text[i] = t->id_raw[i] = (loam__tok_span){LOAM__TOK_NO_SPAN, 0};
    for (size_t i = 0; i < t->bpe.n_entries; i++) {
        const loam__tok_ventry *e = &t->bpe.entries[i];
        if (t->id_raw[e->id].off == LOAM__TOK_NO_SPAN)
            t->id_raw[e->id] = t->id_text[e->id] = e->s;
    }
    int any_single = 0;
    /* added tokens in id order: the trie keeps the first (lowest id) of equal patterns */
    size_t *order = loam__malloc((t->n_added ? t->n_added : 1) * sizeof *order);
    if (!order)
        return nomem(err);
    for (size_t i = 0; i < t->n_added; i++)
        order[i] = i;
    for (size_t i = 1; i < t->n_added; i++) /* insertion sort: added tokens are nearly sorted */
        for (size_t j = i; j > 0 && t->added[order[j]].id < t->added[order[j - 1]].id; j--) {
            size_t x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    loam_status st = LOAM_OK;
    for (size_t r = 0; r < t->n_added && !st; r++) {
        size_t i = order[r];
        const loam__tok_added *a = &t->added[i];
        t->id_raw[a->id] = a->content;
        t->id_text[a->id] = a->pattern;
        any_single |= a->single_word;
        if (a->pattern.len == 0)
            continue;
        loam__tok_trie *tr = a->normalized ? &t->trie_norm : &t->trie_raw;
        if (trie_add(tr, loam__tok_str(t, a->pattern), a->pattern.len, (int32_t)i))
            st = nomem(err);
    }
    loam__free(order);
    if (st)
        return st;
    for (size_t id = 0; id < (size_t)t->n_vocab; id++) {
        loam__tok_span s = t->id_text[id];
        if (s.off == LOAM__TOK_NO_SPAN)
            continue;
        int32_t k = added_find(t, loam__tok_str(t, s), s.len);
        t->id_special[id] = (uint8_t)(k >= 0 && t->added_special[k]);
    }
    if (any_single) {
        static const char w[] = "\\w";
        return loam__tok_regex_compile(t, w, 2, 0, "single_word", &t->word_re, err);
    }
    return LOAM_OK;
}

// ---- opening ------------------------------------------------------------------------------------

static void *pcre_malloc(size_t n, void *data) {
    (void)data;
    return loam__malloc(n);
}

static void pcre_free(void *p, void *data) {
    (void)data;
    loam__free(p);
}

static loam_status load(loam_tokenizer **out, const char *json, size_t len, loam_err *err) {
    *out = NULL;
    loam_tokenizer *t = loam__calloc(1, sizeof *t);
    if (!t)
        return nomem(err);
    t->bos_id = t->eos_id = t->pad_id = -1;
    cJSON *root = NULL;
    loam_status st = LOAM_OK;
    t->gctx = pcre2_general_context_create(pcre_malloc, pcre_free, NULL);
    if (!t->gctx) {
        st = nomem(err);
        goto fail;
    }
    if ((st = loam__json_parse(json, len, "tokenizer.json", &root, err)))
        goto fail;
    if (!cJSON_IsObject(root)) {
        st = loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: the top level is not an object");
        goto fail;
    }
    const char *version;
    if ((st = get_str(root, "version", &version, "top level", err)))
        goto fail;
    if (version && strcmp(version, "1.0") != 0) {
        st =
            loam__fail(err, LOAM_E_UNSUPPORTED, "tokenizer.json: unknown version '%.20s'", version);
        goto fail;
    }
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "normalizer")) && !cJSON_IsNull(x) &&
        (st = parse_normalizer(t, x, "normalizer", err)))
        goto fail;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) && !cJSON_IsNull(x) &&
        (st = parse_pre_tokenizer(t, x, "pre_tokenizer", err)))
        goto fail;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "post_processor")) && !cJSON_IsNull(x) &&
        (st = parse_post_processor(t, x, "post_processor", err)))
        goto fail;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "decoder")) && !cJSON_IsNull(x)) {
        t->has_decoder = 1;
        if ((st = parse_decoder(t, x, "decoder", err)))
            goto fail;
    }
    if ((st = parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), err)))
        goto fail;
    if ((st = parse_added_tokens(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err)))
        goto fail;
    if ((st = loam__tok_bpe_finish(t, err)))
        goto fail;
    if ((st = build_tables(t, err)))
        goto fail;
    cJSON_Delete(root);
    *out = t;
    return LOAM_OK;
fail:
    cJSON_Delete(root);
    loam_tokenizer_close(t);
    return st;
}

void loam_tokenizer_close(loam_tokenizer *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n_norms; i++)
        pcre2_code_free(t->norms[i].re);
    for (size_t i = 0; i < t->n_pres; i++)
        pcre2_code_free(t->pres[i].re);
    for (size_t i = 0; i < t->n_decs; i++)
        pcre2_code_free(t->decs[i].re);
    for (size_t i = 0; i < t->n_posts; i++)
        loam__free(t->posts[i].items);
    pcre2_code_free(t->word_re);
    loam__free(t->norms);
    loam__free(t->pres);
    loam__free(t->decs);
    loam__free(t->posts);
    loam__tok_bpe_free(&t->bpe);
    loam__free(t->added);
    loam__free(t->added_slots);
    loam__free(t->added_special);
    loam__free(t->trie_raw.nodes);
    loam__free(t->trie_norm.nodes);
    loam__free(t->id_text);
    loam__free(t->id_raw);
    loam__free(t->id_special);
    loam__free(t->config_text);
    loam__free(t->template_text);
    loam__free(t->pool);
    if (t->gctx)
        pcre2_general_context_free(t->gctx);
    loam__free(t);
}

loam_status loam_tokenizer_open_memory(loam_tokenizer **out, const char *json, size_t json_len,
                                       loam_err *err) {
    loam__err_clear(err);
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "loam_tokenizer_open_memory: NULL argument");
    *out = NULL;
    if (!json && json_len)
        return loam__fail(err, LOAM_E_INVAL, "loam_tokenizer_open_memory: NULL argument");
    return load(out, json ? json : "", json_len, err);
}

/* Prefixes err->msg with the file path (messages name "tokenizer.json" generically). */
static loam_status with_path(loam_status st, const char *path, loam_err *err) {
    if (st && err && strncmp(err->msg, "tokenizer.json: ", 16) == 0) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s: %s", path, err->msg + 16);
        memcpy(err->msg, msg, sizeof msg);
    }
    return st;
}

loam_status loam_tokenizer_open(loam_tokenizer **out, const char *path, loam_err *err) {
    loam__err_clear(err);
    if (!out || !path)
        return loam__fail(err, LOAM_E_INVAL, "loam_tokenizer_open: NULL argument");
    *out = NULL;
    char *text;
    size_t len;
    loam_status st = loam__read_file(path, &text, &len, err);
    if (st)
        return st;
    st = with_path(load(out, text, len, err), path, err);
    loam__free(text);
    return st;
}

/* tokenizer_config.json token fields: "text", {"content": "text", ...} or null. */
static int32_t config_token(const loam_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v) || !v->valuestring)
        return -1;
    return loam_tok_id(t, v->valuestring);
}

loam_status loam_tokenizer_open_dir(loam_tokenizer **out, const char *dir, loam_err *err) {
    loam__err_clear(err);
    if (!out || !dir)
        return loam__fail(err, LOAM_E_INVAL, "loam_tokenizer_open_dir: NULL argument");
    *out = NULL;
    size_t dl = strlen(dir);
    char *path = loam__malloc(dl + 32);
    if (!path)
        return nomem(err);
    snprintf(path, dl + 32, "%s/tokenizer.json", dir);
    loam_tokenizer *t;
    loam_status st = loam_tokenizer_open(&t, path, err);
    if (st) {
        loam__free(path);
        return st;
    }
    snprintf(path, dl + 32, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        size_t len;
        cJSON *cfg = NULL;
        st = loam__read_file(path, &t->config_text, &len, err);
        if (!st)
            st = loam__json_parse(t->config_text, len, path, &cfg, err);
        if (!st && !cJSON_IsObject(cfg))
            st = loam__fail(err, LOAM_E_FORMAT, "%s: the top level is not an object", path);
        if (!st) {
            t->bos_id = config_token(t, cfg, "bos_token");
            t->eos_id = config_token(t, cfg, "eos_token");
            t->pad_id = config_token(t, cfg, "pad_token");
        }
        cJSON_Delete(cfg);
    }
    /* transformers >= 4.47 saves the chat template as its own file; when present it wins over
     * tokenizer_config.json's "chat_template", as in transformers and `loam template` */
    snprintf(path, dl + 32, "%s/chat_template.jinja", dir);
    struct stat sb;
    if (!st && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        size_t len;
        st = loam__read_file(path, &t->template_text, &len, err);
        if (!st && strlen(t->template_text) != len)
            st = loam__fail(err, LOAM_E_FORMAT, "%s: contains a NUL byte", path);
        if (!st && !t->template_text[0])
            st = loam__fail(err, LOAM_E_FORMAT, "%s: empty chat template", path);
        if (!st && !t->config_text && !(t->config_text = loam__strdup("{}")))
            st = nomem(err);
    }
    loam__free(path);
    if (st) {
        loam_tokenizer_close(t);
        return st;
    }
    *out = t;
    return LOAM_OK;
}

const char *loam__tok_config_text(const loam_tokenizer *tok) {
    return tok ? tok->config_text : NULL;
}
const char *loam__tok_template_text(const loam_tokenizer *tok) {
    return tok ? tok->template_text : NULL;
}

// ---- lookups ----------------------------------------------------------------------------------

int32_t loam_tok_n_vocab(const loam_tokenizer *tok) {
    return tok ? tok->n_vocab : 0;
}

const char *loam_tok_piece(const loam_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab || tok->id_raw[id].off == LOAM__TOK_NO_SPAN)
        return NULL;
    return loam__tok_str(tok, tok->id_raw[id]);
}

int32_t loam_tok_id(const loam_tokenizer *tok, const char *piece) {
    if (!tok || !piece)
        return -1;
    size_t n = strlen(piece);
    int32_t k = added_find(tok, piece, n);
    return k >= 0 ? tok->added[k].id : loam__tok_bpe_lookup(tok, piece, n);
}

bool loam_tok_is_special(const loam_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_vocab && tok->id_special[id];
}

int32_t loam_tok_bos_id(const loam_tokenizer *tok) {
    return tok ? tok->bos_id : -1;
}
int32_t loam_tok_eos_id(const loam_tokenizer *tok) {
    return tok ? tok->eos_id : -1;
}
int32_t loam_tok_pad_id(const loam_tokenizer *tok) {
    return tok ? tok->pad_id : -1;
}

// ---- encode -----------------------------------------------------------------------------------

static int is_word_at(loam__tok_enc *c, const char *s, size_t n, size_t at) {
    int found = 0;
    int rc = pcre2_match(c->tok->word_re, (PCRE2_SPTR)s, n, at, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                         c->md, NULL);
    if (rc >= 0)
        found = 1;
    return found;
}

/* Splits s by leftmost-longest added-token matches (AddedVocabulary::find_matches); is_match of
 * each span is the added index + 1, 0 for text. */
static loam_status find_added(loam__tok_enc *c, const loam__tok_trie *tr, const char *s, size_t n,
                              loam__tok_matches *m) {
    const loam_tokenizer *t = c->tok;
    m->len = 0;
    size_t start_offset = 0, i = 0;
    while (i < n) {
        int32_t node = tr->root[(uint8_t)s[i]];
        if (node < 0) {
            i++;
            continue;
        }
        int32_t best = -1;
        size_t best_end = 0, j = i + 1;
        for (;;) {
            if (tr->nodes[node].added >= 0) {
                best = tr->nodes[node].added;
                best_end = j;
            }
            if (j >= n)
                break;
            int32_t ch = tr->nodes[node].child;
            while (ch >= 0 && tr->nodes[ch].byte != (uint8_t)s[j])
                ch = tr->nodes[ch].sibling;
            if (ch < 0)
                break;
            node = ch;
            j++;
        }
        if (best < 0) {
            i++;
            continue;
        }
        const loam__tok_added *a = &t->added[best];
        size_t start = i, stop = best_end;
        i = best_end;
        if (a->single_word) {
            size_t p = start;
            if (p > 0) {
                p--;
                while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80)
                    p--;
            }
            int word_before = start > 0 && is_word_at(c, s, start, p);
            int word_after = stop < n && is_word_at(c, s, n, stop);
            if (word_before || word_after)
                continue;
        }
        if (a->lstrip) {
            size_t p = start;
            while (p > 0) {
                size_t q = p - 1, adv;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80)
                    q--;
                if (!loam__tok_is_white_space(loam__utf8_decode(s + q, p - q, &adv)))
                    break;
                p = q;
            }
            start = p > start_offset ? p : start_offset;
        }
        if (a->rstrip) {
            size_t adv;
            while (stop < n &&
                   loam__tok_is_white_space(loam__utf8_decode(s + stop, n - stop, &adv)))
                stop += adv;
        }
        if (start_offset < start && loam__tok_matches_push(m, start_offset, start, 0))
            return nomem(c->err);
        if (loam__tok_matches_push(m, start, stop, best + 1))
            return nomem(c->err);
        start_offset = stop;
    }
    if (start_offset < n && loam__tok_matches_push(m, start_offset, n, 0))
        return nomem(c->err);
    return LOAM_OK;
}

static loam_status encode_piece(loam__tok_enc *c, const char *s, size_t n, size_t lead) {
    const loam_tokenizer *t = c->tok;
    const char *ns;
    size_t nn;
    loam_status st = loam__tok_normalize(c, s, n, &ns, &nn, &lead);
    if (st || nn == 0)
        return st;
    if (t->trie_norm.n_nodes == 0)
        return loam__tok_pre_tokenize(c, 0, ns, nn, lead);
    loam__tok_matches *m = &c->added_m[1];
    if ((st = find_added(c, &t->trie_norm, ns, nn, m)))
        return st;
    for (size_t i = 0; i < m->len && !st; i++) {
        size_t a = m->p[i].start, b = m->p[i].end;
        if (m->p[i].is_match) {
            if (loam__tok_ids_push(&c->out, t->added[m->p[i].is_match - 1].id))
                return nomem(c->err);
        } else if (b > a) {
            st = loam__tok_pre_tokenize(c, 0, ns + a, b - a, a < lead ? lead - a : 0);
        }
    }
    return st;
}

static loam_status encode_all(loam__tok_enc *c, const char *s, size_t n, bool add_special,
                              loam__tok_ids *tmp) {
    const loam_tokenizer *t = c->tok;
    loam_status st = LOAM_OK;
    size_t lead0 = n ? loam__utf8_len((unsigned char)s[0]) : 0;
    if (n == 0) {
        /* nothing to encode */
    } else if (t->trie_raw.n_nodes == 0) {
        st = encode_piece(c, s, n, lead0);
    } else {
        loam__tok_matches *m = &c->added_m[0];
        if ((st = find_added(c, &t->trie_raw, s, n, m)))
            return st;
        for (size_t i = 0; i < m->len && !st; i++) {
            size_t a = m->p[i].start, b = m->p[i].end;
            if (m->p[i].is_match) {
                if (loam__tok_ids_push(&c->out, t->added[m->p[i].is_match - 1].id))
                    return nomem(c->err);
            } else if (b > a) {
                st = encode_piece(c, s + a, b - a, a == 0 ? lead0 : 0);
            }
        }
    }
    if (st || !add_special)
        return st;
    for (size_t k = 0; k < t->n_posts; k++) {
        const loam__tok_template *tp = &t->posts[k];
        tmp->len = 0;
        for (size_t i = 0; i < tp->n_items; i++) {
            if (tp->items[i] != LOAM__TOK_SEQ) {
                if (loam__tok_ids_push(tmp, tp->items[i]))
                    return nomem(c->err);
                continue;
            }
            for (size_t j = 0; j < c->out.len; j++)
                if (loam__tok_ids_push(tmp, c->out.p[j]))
                    return nomem(c->err);
        }
        loam__tok_ids x = c->out;
        c->out = *tmp;
        *tmp = x;
    }
    return LOAM_OK;
}

loam_status loam_tok_encode(const loam_tokenizer *tok, const char *text, size_t text_len,
                            bool add_special, int32_t *ids, size_t cap, size_t *n, loam_err *err) {
    loam__err_clear(err);
    if (!tok || !n || (text_len && !text) || (cap && !ids))
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_encode: NULL argument");
    loam__tok_enc c;
    loam__tok_bytes clean = {0};
    loam__tok_ids tmp = {0};
    loam_status st = enc_init(&c, tok, err);
    if (!st && !loam__tok_utf8_valid(text, text_len)) {
        if (loam__utf8_lossy(&clean, text, text_len))
            st = nomem(err);
        text = clean.p;
        text_len = clean.len;
    }
    if (!st)
        st = encode_all(&c, text ? text : "", text_len, add_special, &tmp);
    if (!st) {
        *n = c.out.len;
        if (c.out.len && cap)
            memcpy(ids, c.out.p, (c.out.len < cap ? c.out.len : cap) * sizeof *ids);
    }
    loam__free(clean.p);
    loam__free(tmp.p);
    enc_free(&c);
    return st;
}
