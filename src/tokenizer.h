/* tokenizer.h: internal structures of the tokenizer.json tokenizer (never installed).
 *
 * The tokenizer is split over four files, one concern each:
 *   tokenizer.c   loading tokenizer.json / tokenizer_config.json (cJSON), added tokens, the
 *                 encode driver (added-token split -> normalize -> pre-tokenize -> model ->
 *                 post-process) and the public lookups;
 *   tok_text.c    Unicode and text transforms: UTF-8 helpers, regex compilation (PCRE2, with
 *                 Oniguruma's \s and \w translated), pattern splitting with HF's five delimiter
 *                 behaviours, normalizers and pre-tokenizers;
 *   tok_bpe.c     the BPE model: vocab and merge hash tables, merge-rank BPE with a priority
 *                 queue, byte fallback / unk handling, and the shared word cache;
 *   tok_decode.c  decoders, lossy UTF-8 (Rust from_utf8_lossy rules) and streaming decode.
 *
 * Every string the tokenizer keeps (vocab pieces, added-token contents, decoder strings) lives
 * NUL-terminated in one pool and is named by a loam__tok_span (offset, length), so growing the
 * pool while loading never invalidates a reference.
 *
 * Adding a component? Add its kind below, its JSON parsing in tokenizer.c (parse_normalizer,
 * parse_pre_tokenizer, parse_decoder, parse_post_processor), its behaviour in tok_text.c or
 * tok_decode.c, and a unit test with a hand-written tokenizer.json in tests/data/tokenizer/.
 */
#ifndef LOAM_TOKENIZER_H
#define LOAM_TOKENIZER_H

#include "json.h"
#include "loam_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

// ---- growable buffers (per call scratch; never shared between threads) ------------------------

typedef struct loam__tok_bytes {
    char *p;
    size_t len, cap;
} loam__tok_bytes;

typedef struct loam__tok_ids {
    int32_t *p;
    size_t len, cap;
} loam__tok_ids;

/* One span of a split: [start, end) in the piece, is_match = matched by the pattern. */
typedef struct loam__tok_match {
    size_t start, end;
    int is_match;
} loam__tok_match;

typedef struct loam__tok_matches {
    loam__tok_match *p;
    size_t len, cap;
} loam__tok_matches;

loam_status loam__tok_bytes_reserve(loam__tok_bytes *b, size_t extra);
loam_status loam__tok_bytes_put(loam__tok_bytes *b, const void *src, size_t n);
loam_status loam__tok_ids_push(loam__tok_ids *v, int32_t id);
loam_status loam__tok_matches_push(loam__tok_matches *m, size_t start, size_t end, int is_match);

// ---- strings --------------------------------------------------------------------------------

typedef struct loam__tok_span {
    uint32_t off, len;
} loam__tok_span;

#define LOAM__TOK_NO_SPAN UINT32_MAX /* off of a span that names nothing */

// ---- components -----------------------------------------------------------------------------

typedef enum loam__tok_behavior { /* HF SplitDelimiterBehavior */
                                  LOAM__TOK_REMOVED,
                                  LOAM__TOK_ISOLATED,
                                  LOAM__TOK_MERGED_WITH_PREVIOUS,
                                  LOAM__TOK_MERGED_WITH_NEXT,
                                  LOAM__TOK_CONTIGUOUS
} loam__tok_behavior;

typedef enum loam__tok_pred { /* one-character patterns (HF `impl Pattern for Fn(char) -> bool`) */
                              LOAM__TOK_PRED_NUMERIC,    /* char::is_numeric: Nd, Nl, No */
                              LOAM__TOK_PRED_WHITESPACE, /* char::is_whitespace: White_Space */
                              LOAM__TOK_PRED_PUNCT, /* ASCII punctuation or Unicode P* (Punctuation,
                                                       BertPreTokenizer) */
                              LOAM__TOK_PRED_CHAR   /* one given code point (Metaspace,
                                                       CharDelimiterSplit) */
} loam__tok_pred;

typedef enum loam__tok_norm_kind {
    LOAM__TOK_NORM_NFC,
    LOAM__TOK_NORM_NFD,
    LOAM__TOK_NORM_NFKC,
    LOAM__TOK_NORM_NFKD,
    LOAM__TOK_NORM_LOWERCASE,
    LOAM__TOK_NORM_REPLACE,
    LOAM__TOK_NORM_PREPEND,
    LOAM__TOK_NORM_STRIP,
    LOAM__TOK_NORM_STRIP_ACCENTS,
    LOAM__TOK_NORM_BYTE_LEVEL
} loam__tok_norm_kind;

typedef struct loam__tok_norm {
    loam__tok_norm_kind kind;
    pcre2_code *re;     /* Replace: the pattern (a string pattern is compiled as a literal) */
    loam__tok_span str; /* Replace: content; Prepend: the prefix */
    int left, right;    /* Strip */
} loam__tok_norm;

typedef enum loam__tok_pre_kind {
    LOAM__TOK_PRE_SPLIT_REGEX, /* Split (regex or string), Whitespace */
    LOAM__TOK_PRE_SPLIT_PRED,  /* Digits, WhitespaceSplit, Punctuation, CharDelimiterSplit, Bert */
    LOAM__TOK_PRE_BYTE_LEVEL,  /* optional " " prefix, optional GPT-2 regex, byte -> char map */
    LOAM__TOK_PRE_METASPACE    /* ' ' -> replacement, prepend scheme, optional split */
} loam__tok_pre_kind;

enum { LOAM__TOK_PREPEND_ALWAYS, LOAM__TOK_PREPEND_FIRST, LOAM__TOK_PREPEND_NEVER };

/* One pre-tokenizer stage (a Sequence is flattened into consecutive stages). */
typedef struct loam__tok_pre {
    loam__tok_pre_kind kind;
    pcre2_code *re;              /* SPLIT_REGEX; BYTE_LEVEL when use_regex */
    loam__tok_pred pred;         /* SPLIT_PRED */
    uint32_t pred_char;          /* LOAM__TOK_PRED_CHAR */
    loam__tok_behavior behavior; /* SPLIT_* */
    int invert;                  /* SPLIT_* */
    int add_prefix_space;        /* BYTE_LEVEL */
    uint32_t replacement;        /* METASPACE */
    char rep_utf8[4];            /* METASPACE: replacement encoded */
    int rep_len;
    int prepend_scheme; /* METASPACE */
    int split;          /* METASPACE */
} loam__tok_pre;

typedef enum loam__tok_dec_kind {
    LOAM__TOK_DEC_BYTE_LEVEL,
    LOAM__TOK_DEC_METASPACE,
    LOAM__TOK_DEC_BYTE_FALLBACK,
    LOAM__TOK_DEC_FUSE,
    LOAM__TOK_DEC_STRIP,
    LOAM__TOK_DEC_REPLACE,
    LOAM__TOK_DEC_BPE /* BPEDecoder: suffix -> " " (nothing on the last token) */
} loam__tok_dec_kind;

typedef struct loam__tok_dec {
    loam__tok_dec_kind kind;
    pcre2_code *re;     /* REPLACE */
    loam__tok_span str; /* REPLACE: content; BPE: suffix */
    uint32_t ch;        /* METASPACE: replacement; STRIP: content */
    int prepend_never;  /* METASPACE: prepend_scheme == never */
    size_t start, stop; /* STRIP */
} loam__tok_dec;

/* A post-processor template: ids to emit, with LOAM__TOK_SEQ where the encoded text goes.
 * TemplateProcessing, BertProcessing and RobertaProcessing all become one of these; ByteLevel
 * changes only offsets and is dropped; a Sequence is the list applied in order. */
#define LOAM__TOK_SEQ (-1)
typedef struct loam__tok_template {
    int32_t *items;
    size_t n_items;
} loam__tok_template;

// ---- added tokens -----------------------------------------------------------------------------

typedef struct loam__tok_added {
    loam__tok_span content; /* as in tokenizer.json */
    loam__tok_span pattern; /* what is matched: content, normalized when `normalized` */
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} loam__tok_added;

/* Byte trie over added-token patterns for leftmost-longest matching. */
typedef struct loam__tok_trie_node {
    int32_t child;   /* first child, -1 if none */
    int32_t sibling; /* next sibling, -1 if none */
    int32_t added;   /* index into tok->added of the pattern ending here, -1 if none */
    uint8_t byte;
} loam__tok_trie_node;

typedef struct loam__tok_trie {
    loam__tok_trie_node *nodes; /* nodes[0] is the root */
    size_t n_nodes, cap;
    int32_t root[256]; /* child of the root for each first byte, -1 if none */
} loam__tok_trie;

// ---- the BPE model ----------------------------------------------------------------------------

typedef struct loam__tok_vslot { /* vocab hash slot; entry -1 = empty */
    uint32_t hash;
    int32_t entry;
} loam__tok_vslot;

typedef struct loam__tok_ventry { /* one vocab entry: pool string -> id */
    loam__tok_span s;
    int32_t id;
} loam__tok_ventry;

typedef struct loam__tok_mslot { /* merge hash slot: (left id, right id) -> (rank, new id) */
    uint64_t key;                /* LOAM__TOK_MKEY_EMPTY = empty */
    uint32_t rank;
    int32_t new_id;
} loam__tok_mslot;

#define LOAM__TOK_MKEY_EMPTY UINT64_MAX

#define LOAM__TOK_CACHE_SHARDS   16
#define LOAM__TOK_CACHE_SLOTS    4096         /* per shard, power of two */
#define LOAM__TOK_CACHE_ARENA    (128u << 10) /* bytes of keys + ids per shard */
#define LOAM__TOK_CACHE_MAX_WORD 128          /* longer words are not cached */

typedef struct loam__tok_cslot {
    uint64_t hash;
    uint32_t off; /* into the shard arena: key bytes, padding to 4, then ids */
    uint16_t key_len, n_ids;
} loam__tok_cslot;

typedef struct loam__tok_cache_shard {
    pthread_mutex_t mu;
    loam__tok_cslot *slots; /* (LOAM__TOK_CACHE_SLOTS); key_len 0 = empty */
    char *arena;            /* (LOAM__TOK_CACHE_ARENA) */
    uint32_t used, count;
} loam__tok_cache_shard;

typedef struct loam__tok_bpe {
    loam__tok_ventry *entries; /* (n_entries), in file order */
    size_t n_entries;
    loam__tok_vslot *vslots; /* (vmask + 1) */
    uint32_t vmask;
    loam__tok_mslot *mslots; /* (mmask + 1) */
    uint64_t mmask;
    size_t n_merges;
    int32_t byte_ids[256]; /* id of "<0xXX>" or -1 (byte_fallback) */
    int32_t char_ids[512]; /* id of the one-character piece for code points < 512, -1 none;
                              only used when there is no prefix and no suffix */
    loam__tok_span unk;    /* unk_token, off == LOAM__TOK_NO_SPAN when null */
    loam__tok_span prefix; /* continuing_subword_prefix (len 0 when null or "") */
    loam__tok_span suffix; /* end_of_word_suffix */
    int fuse_unk, byte_fallback, ignore_merges;
    loam__tok_cache_shard shards[LOAM__TOK_CACHE_SHARDS];
    int cache_ready;
} loam__tok_bpe;

// ---- the tokenizer ------------------------------------------------------------------------------

struct loam_tokenizer {
    char *pool; /* every string, NUL-terminated */
    size_t pool_len, pool_cap;

    loam__tok_bpe bpe;

    loam__tok_added *added; /* (n_added): one entry per distinct content, first-seen order */
    size_t n_added;
    int32_t *added_slots; /* hash of added contents -> index into added, -1 = empty */
    uint32_t added_mask;
    uint8_t *added_special;   /* (n_added): content is in HF's special_tokens_set */
    loam__tok_trie trie_raw;  /* patterns of added tokens with normalized == false */
    loam__tok_trie trie_norm; /* patterns of added tokens with normalized == true */
    pcre2_code *word_re;      /* \w class for single_word checks, NULL when none is single_word */

    loam__tok_norm *norms;
    size_t n_norms;
    loam__tok_pre *pres;
    size_t n_pres;
    loam__tok_dec *decs;
    size_t n_decs;
    int has_decoder;
    loam__tok_template *posts;
    size_t n_posts;

    int32_t n_vocab;         /* max id + 1 over the model vocab and added tokens */
    loam__tok_span *id_text; /* (n_vocab): what decode uses for each id; off NO_SPAN = none */
    loam__tok_span *id_raw;  /* (n_vocab): loam_tok_piece (added content or vocab string) */
    uint8_t *id_special;     /* (n_vocab): the id's text is the content of a special token */

    pcre2_general_context *gctx; /* routes PCRE2 allocations through loam__malloc */

    char *config_text; /* tokenizer_config.json as read ("{}" when only chat_template.jinja is
                        * there), NULL when opened from a file */
    char *template_text; /* DIR/chat_template.jinja when present (overrides config_text's) */
    int32_t bos_id, eos_id, pad_id;
};

static inline const char *loam__tok_str(const loam_tokenizer *t, loam__tok_span s) {
    return t->pool + s.off;
}

/* Raw text of tokenizer_config.json when the tokenizer was opened from a model directory, else
 * NULL. Valid until loam_tokenizer_close. For the chat-template engine. */
const char *loam__tok_config_text(const loam_tokenizer *tok);
const char *loam__tok_template_text(const loam_tokenizer *tok); /* NULL when no .jinja file */

// ---- tok_text.c -------------------------------------------------------------------------------

/* Number of bytes of the UTF-8 sequence starting with lead byte b (1 for invalid leads). */
static inline size_t loam__utf8_len(unsigned char b) {
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 1;
}
/* Decodes one code point of valid UTF-8 at s (n >= 1 bytes available); *adv = bytes used. */
uint32_t loam__utf8_decode(const char *s, size_t n, size_t *adv);
/* Encodes cp into out (4 bytes room); returns the byte count. */
int loam__utf8_encode(uint32_t cp, char *out);
/* Length of the longest valid UTF-8 prefix-free chunk: returns the number of leading bytes of s
 * that form a maximal invalid subpart (Unicode "maximal subpart" = Rust from_utf8_lossy), or 0
 * if s starts with a valid sequence (then *valid_len is its length). */
size_t loam__utf8_invalid_prefix(const unsigned char *s, size_t n, size_t *valid_len);
/* Appends s with every maximal invalid subpart replaced by U+FFFD (from_utf8_lossy). */
loam_status loam__utf8_lossy(loam__tok_bytes *out, const char *s, size_t n);
static inline int loam__tok_utf8_valid(const char *s, size_t n) {
    return loam__utf8_valid((const uint8_t *)s, n, NULL);
}

int loam__tok_is_white_space(uint32_t cp);

/* Compiles a tokenizer.json regex (Oniguruma syntax) with PCRE2 (UTF, UCP, JIT when available);
 * `literal` compiles the text as a plain string. `what` names the component for errors. */
loam_status loam__tok_regex_compile(loam_tokenizer *tok, const char *pattern, size_t len,
                                    int literal, const char *what, pcre2_code **out, loam_err *err);

/* Per-call encode context: scratch buffers, owned by one thread for one call. */
#define LOAM__TOK_MAX_STAGES 32
typedef struct loam__tok_enc {
    const loam_tokenizer *tok;
    pcre2_match_data *md;
    loam__tok_ids out;                             /* ids of the text (before post-processing) */
    loam__tok_bytes norm[2];                       /* normalizer ping-pong */
    loam__tok_bytes stage_a[LOAM__TOK_MAX_STAGES]; /* pre-tokenizer: transformed piece */
    loam__tok_bytes stage_b[LOAM__TOK_MAX_STAGES]; /* pre-tokenizer: transformed sub-piece */
    loam__tok_matches stage_m[LOAM__TOK_MAX_STAGES];
    loam__tok_matches tmp_m;
    loam__tok_matches added_m[2]; /* added-token splits: raw text, normalized piece */
    /* BPE scratch */
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    loam__tok_ids word_ids;
    loam_err *err;
} loam__tok_enc;

/* All matches of re in s[0, n): (start, end, is_match) spans covering s (HF find_matches with
 * Oniguruma's iteration rules for empty matches). */
loam_status loam__tok_find_regex(loam__tok_enc *c, const pcre2_code *re, const char *s, size_t n,
                                 loam__tok_matches *m);
/* Appends s with every match of re replaced by content (Replace normalizer and decoder). */
loam_status loam__tok_replace(loam__tok_enc *c, const pcre2_code *re, const char *content,
                              size_t content_len, const char *s, size_t n, loam__tok_bytes *out);
/* Applies a normalizer sequence to s; result in *out_s and *out_n (points into c->norm).
 * *lead tracks how many leading bytes are aligned to original offset 0 (0 = none). */
loam_status loam__tok_normalize(loam__tok_enc *c, const char *s, size_t n, const char **out_s,
                                size_t *out_n, size_t *lead);
/* Runs pre-tokenizer stages [stage, n_pres) on a non-empty piece, then the model. */
loam_status loam__tok_pre_tokenize(loam__tok_enc *c, size_t stage, const char *s, size_t n,
                                   size_t lead);
/* Byte-level alphabet: byte -> code point, and code point (< 512) -> byte or -1. */
uint32_t loam__tok_byte_char(uint8_t b);
int loam__tok_char_byte(uint32_t cp);

// ---- tok_bpe.c ------------------------------------------------------------------------------

loam_status loam__tok_bpe_init_vocab(loam_tokenizer *tok, size_t n_entries, loam_err *err);
/* Inserts (or, for a repeated key, overwrites like a hash map) a vocab entry. */
loam_status loam__tok_bpe_add_vocab(loam_tokenizer *tok, loam__tok_span s, int32_t id,
                                    loam_err *err);
int32_t loam__tok_bpe_lookup(const loam_tokenizer *tok, const char *s, size_t n);
loam_status loam__tok_bpe_init_merges(loam_tokenizer *tok, size_t n_merges, loam_err *err);
/* Adds merge number `rank` of pieces a and b; errors name the missing piece. */
loam_status loam__tok_bpe_add_merge(loam_tokenizer *tok, uint32_t rank, const char *a, size_t na,
                                    const char *b, size_t nb, loam_err *err);
int loam__tok_bpe_merge_get(const loam__tok_bpe *bpe, int32_t a, int32_t b, uint32_t *rank,
                            int32_t *new_id);
/* Number of distinct vocab strings (HF get_vocab_size). */
static inline size_t loam__tok_bpe_size(const loam_tokenizer *tok) {
    return tok->bpe.n_entries;
}
/* Final load step: byte/char lookup tables, cache shards. */
loam_status loam__tok_bpe_finish(loam_tokenizer *tok, loam_err *err);
void loam__tok_bpe_free(loam__tok_bpe *bpe);
/* Tokenizes one pre-tokenized word, appending ids to c->out. */
loam_status loam__tok_bpe_word(loam__tok_enc *c, const char *w, size_t n);
void loam__tok_enc_free_bpe(loam__tok_enc *c);

// ---- tok_decode.c ---------------------------------------------------------------------------

/* Decodes ids into out (appended, valid UTF-8), as HF Tokenizer::decode. */
loam_status loam__tok_decode_into(const loam_tokenizer *tok, const int32_t *ids, size_t n,
                                  int skip_special, loam__tok_bytes *out, loam_err *err);

#endif /* LOAM_TOKENIZER_H */
