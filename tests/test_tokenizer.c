/* test_tokenizer.c: the tokenizer.json tokenizer.
 *
 * 1. Hand-written tokenizers in tests/data/tokenizer/ (whole pipelines): BPE merge order, both
 *    merge forms, subword prefix / word suffix, unk and byte fallback, added-token flags, byte
 *    level, Metaspace, post-processors and decoders.
 * 2. One component at a time: a word-list model (ignore_merges, vocab = printable ASCII + the
 *    words a test expects, <unk> for the rest) with the component spliced in; the pieces show
 *    exactly how the text was normalized and split.
 * 3. Errors: unsupported components, malformed files, invalid UTF-8 input, the buffer protocol.
 * 4. Streaming decode, concurrent encodes.
 * 5. The real Qwen3 and Llama 3 tokenizers (npm, tests/fetch-data.sh; missing data fails), and
 *    the Hugging Face `tokenizers` fixtures tests/data/tokenizer/{qwen3,llama3}_cases.json
 *    (tools/reference/tokenizer_fixtures.py): every case compared exactly.
 * Expected values of 1-4 follow the `tokenizers` source (the rules are quoted in src/tok_*.c).
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include "../src/tokenizer.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

#define DATA  LOAM_TEST_DIR "/data/tokenizer/"
#define CACHE LOAM_TEST_DIR "/.cache/"

static loam_tokenizer *open_file(const char *path) {
    loam_err e;
    loam_tokenizer *t = NULL;
    if (loam_tokenizer_open(&t, path, &e)) {
        fprintf(stderr, "open %s: %s\n", path, e.msg);
        t_failed_checks++;
    }
    return t;
}

/* Encodes text and joins the pieces with '|'. */
static const char *pieces_n(const loam_tokenizer *t, const char *text, size_t len, int special) {
    static char out[8192];
    int32_t ids[1024];
    size_t n = 0;
    loam_err e;
    out[0] = '\0';
    if (!t)
        return "(no tokenizer)";
    if (loam_tok_encode(t, text, len, special, ids, 1024, &n, &e)) {
        snprintf(out, sizeof out, "(error: %s)", e.msg);
        return out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n && i < 1024; i++) {
        const char *p = loam_tok_piece(t, ids[i]);
        k += (size_t)snprintf(out + k, sizeof out - k, "%s%s", i ? "|" : "", p ? p : "(null)");
        if (k >= sizeof out)
            break;
    }
    return out;
}

static const char *pieces(const loam_tokenizer *t, const char *text) {
    return pieces_n(t, text, strlen(text), 0);
}

static size_t encode(const loam_tokenizer *t, const char *text, size_t len, int special,
                     int32_t *ids, size_t cap) {
    size_t n = 0;
    loam_err e;
    if (!t || loam_tok_encode(t, text, len, special, ids, cap, &n, &e)) {
        t_failed_checks++;
        fprintf(stderr, "encode failed: %s\n", t ? e.msg : "no tokenizer");
        return 0;
    }
    return n;
}

static const char *decode(const loam_tokenizer *t, const int32_t *ids, size_t n, int skip) {
    static char out[8192];
    size_t len;
    loam_err e;
    if (!t || loam_tok_decode(t, ids, n, skip, out, sizeof out, &len, &e))
        return "(error)";
    return len < sizeof out ? out : "(too long)";
}

/* Decodes the ids of '|'-separated pieces. */
static const char *decode_pieces(const loam_tokenizer *t, const char *list, int skip) {
    int32_t ids[64];
    size_t n = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *p = buf, *q; p && n < 64; p = q) {
        q = strchr(p, '|');
        if (q)
            *q++ = '\0';
        ids[n] = t ? loam_tok_id(t, p) : -1;
        if (ids[n] < 0) {
            fprintf(stderr, "no piece '%s'\n", p);
            t_failed_checks++;
        }
        n++;
    }
    return decode(t, ids, n, skip);
}

// ---- a word-list tokenizer with one component spliced in --------------------------------------

static void json_str(char **o, const char *s) {
    *(*o)++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            *(*o)++ = '\\';
        *(*o)++ = *s;
    }
    *(*o)++ = '"';
}

/* words: NULL-terminated. Components: JSON text or NULL for null. */
static loam_tokenizer *mk(const char *norm, const char *pre, const char *post, const char *dec,
                          const char *const *words) {
    static char json[65536];
    char *o = json;
    o +=
        sprintf(o,
                "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":%s,\"pre_tokenizer\":%s,"
                "\"post_processor\":%s,\"decoder\":%s,\"model\":{\"type\":\"BPE\","
                "\"unk_token\":\"<unk>\",\"ignore_merges\":true,\"merges\":[],\"vocab\":{"
                "\"<unk>\":0",
                norm ? norm : "null", pre ? pre : "null", post ? post : "null", dec ? dec : "null");
    int id = 1;
    for (int c = 0x20; c < 0x7F; c++) {
        char s[2] = {(char)c, 0};
        *o++ = ',';
        json_str(&o, s);
        o += sprintf(o, ":%d", id++);
    }
    for (int i = 0; words && words[i]; i++) {
        *o++ = ',';
        json_str(&o, words[i]);
        o += sprintf(o, ":%d", id++);
    }
    o += sprintf(o, "}}}");
    loam_err e;
    loam_tokenizer *t = NULL;
    if (loam_tokenizer_open_memory(&t, json, (size_t)(o - json), &e)) {
        fprintf(stderr, "mk: %s\n", e.msg);
        t_failed_checks++;
    }
    return t;
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

// ---- 1. hand-written tokenizers ---------------------------------------------------------------

static void test_bpe_ranks(void) {
    loam_tokenizer *t = open_file(DATA "bpe_ranks.json");
    CHECK_STR(pieces(t, "abc"), "abc");    /* b c (rank 0) first, then a bc */
    CHECK_STR(pieces(t, "abcd"), "abc|d"); /* stale (a, b) entry skipped; c d lost */
    CHECK_STR(pieces(t, "aaaa"), "aaaa");  /* equal ranks: leftmost first */
    CHECK_STR(pieces(t, "aaa"), "aa|a");
    CHECK_STR(pieces(t, "a  bc\td"), "a|bc|d"); /* WhitespaceSplit */
    CHECK_STR(pieces(t, "axb"), "ab");          /* no unk_token: x vanishes, then a b merge */
    CHECK_EQ_I64(loam_tok_n_vocab(t), 11);
    int32_t ids[] = {6, 3};
    CHECK_STR(decode(t, ids, 2, 0), "abc d"); /* no decoder: joined with spaces */
    loam_tokenizer_close(t);
}

static void test_bpe_affixes(void) {
    loam_tokenizer *t = open_file(DATA "bpe_affixes.json");
    CHECK_STR(pieces_n(t, "lower low a", 11, 1), "[CLS]|lower</w>|low</w>|a</w>|[SEP]");
    CHECK_STR(pieces(t, "lowx, zz"), "low|[UNK]|[UNK]|[UNK]"); /* fuse_unk: zz is one */
    CHECK_STR(decode_pieces(t, "lower</w>|low</w>|a</w>", 0), "lower low a");
    CHECK_STR(decode_pieces(t, "low|##er</w>", 0), "low##er"); /* the last suffix becomes "" */
    loam_tokenizer_close(t);
}

static void test_spm_byte_fallback(void) {
    loam_tokenizer *t = open_file(DATA "spm_byte_fallback.json");
    CHECK_STR(pieces(t, "Hello world"), "▁Hello|▁world");
    CHECK_STR(pieces_n(t, "Hello world", 11, 1), "<s>|▁Hello|▁world");
    CHECK_STR(pieces(t, "€"), "▁|<0xE2>|<0x82>|<0xAC>");
    /* ü has no byte tokens: unk; HF adds a pending unk only after the byte tokens */
    CHECK_STR(pieces(t, "ü€ü"), "▁|<0xE2>|<0x82>|<0xAC>|<unk>");
    CHECK_STR(pieces(t, "üü"), "▁|<unk>");     /* fused */
    CHECK_STR(pieces(t, "<s>Hi"), "<s>|▁H|i"); /* Prepend runs after the token */
    CHECK_STR(pieces(t, "<s>"), "<s>");        /* not on an empty piece */
    CHECK_STR(pieces(t, ""), "");
    CHECK_STR(pieces_n(t, "", 0, 1), "<s>");
    CHECK_STR(pieces(t, "\n"), "▁|<0x0A>");
    CHECK_STR(decode_pieces(t, "▁Hello|▁world", 0), "Hello world");
    CHECK_STR(decode_pieces(t, "<s>|▁Hello", 0), "<s> Hello");
    CHECK_STR(decode_pieces(t, "<s>|▁Hello", 1), "Hello");
    CHECK_STR(decode_pieces(t, "▁|<0xE2>|<0x82>|<0xAC>", 0), "€");
    CHECK_STR(decode_pieces(t, "<0xE2>|<0x82>|▁w", 0), "\xEF\xBF\xBD\xEF\xBF\xBD w");
    CHECK_STR(decode_pieces(t, "▁|<0x0A>", 0), "\n");
    CHECK(loam_tok_is_special(t, 1) && !loam_tok_is_special(t, 20));
    loam_tokenizer_close(t);
}

static void test_metaspace_file(void) {
    loam_tokenizer *t = open_file(DATA "metaspace.json");
    CHECK_STR(pieces(t, "hello world"), "▁hello|▁world");
    CHECK_STR(pieces(t, "<sep>hello world"), "<sep>|hello|▁world"); /* "first": only at start */
    CHECK_STR(decode_pieces(t, "▁hello|▁world", 0), "hello world");
    CHECK_STR(decode_pieces(t, "<sep>|hello|▁world", 0), "<sep>hello world");
    CHECK_STR(decode_pieces(t, "<sep>|hello|▁world", 1), "hello world");
    loam_tokenizer_close(t);
}

static void test_byte_level_file(void) {
    loam_tokenizer *t = open_file(DATA "byte_level.json");
    int32_t ids[256];
    CHECK_STR(pieces(t, "hello world"), "Ġhello|Ġworld");
    CHECK_STR(pieces_n(t, "hello world", 11, 1), "<|endoftext|>|Ġhello|Ġworld|<|endoftext|>");
    CHECK_STR(pieces(t, "HELLO"), "Ġhello"); /* Lowercase normalizer */
    CHECK_STR(pieces(t, "hell"), "Ġ|hell");
    CHECK_STR(pieces(t, "lll"), "Ġ|ll|l");
    CHECK_STR(pieces(t, "é"), "Ġ|Ã©");
    CHECK_STR(pieces(t, "İ"), "Ġ|i|Ì|ĩ"); /* lowercase İ is i + U+0307 */
    CHECK_STR(pieces(t, "a<|endoftext|>b"), "Ġ|a|<|endoftext|>|Ġ|b");
    CHECK_STR(pieces(t, "a <mask> b"), "Ġ|a|<mask>|Ġ|b"); /* lstrip */
    CHECK_STR(pieces(t, "x[R]   y"), "Ġ|x|[R]|Ġ|y");      /* rstrip */
    CHECK_STR(pieces(t, "a word."), "Ġ|a|Ġ|word|Ġ|.");    /* single_word */
    CHECK(strstr(pieces(t, "swordfish"), "word") == NULL);
    CHECK(strstr(pieces(t, "_word"), "|word") == NULL);
    CHECK_STR(pieces(t, "xABCx"), "Ġ|x|ABC|Ġ|x"); /* normalized: "abc" matches after Lowercase */
    CHECK_STR(decode_pieces(t, "ABC", 0), "abc"); /* decode shows the normalized content */
    CHECK_STR(pieces(t, "x  y"), "Ġ|x|Ġ|Ġ|y");
    size_t n = encode(t, "hello world", 11, 0, ids, 256);
    CHECK_STR(decode(t, ids, n, 0), " hello world");
    n = encode(t, "a<|endoftext|>b", 15, 1, ids, 256);
    CHECK_STR(decode(t, ids, n, 0), "<|endoftext|> a<|endoftext|> b<|endoftext|>");
    CHECK_STR(decode(t, ids, n, 1), " a b");
    n = encode(t, "\xF0\x9F\x98\x80", 4, 0, ids, 256);
    CHECK_STR(decode(t, ids, n, 0), " \xF0\x9F\x98\x80");
    CHECK_STR(decode(t, ids + 1, 2, 0), "\xEF\xBF\xBD"); /* F0 9F: one maximal subpart */
    CHECK_STR(decode_pieces(t, "Ġ|ð|Ł|Ġ", 0), " \xEF\xBF\xBD ");
    CHECK_EQ_I64(loam_tok_id(t, "<mask>"), 268);
    CHECK_STR(loam_tok_piece(t, 271), "ABC");
    CHECK(loam_tok_piece(t, 272) == NULL && loam_tok_piece(t, -1) == NULL);
    CHECK(loam_tok_is_special(t, 268) && !loam_tok_is_special(t, 269));
    loam_tokenizer_close(t);
}

// ---- 2. components ------------------------------------------------------------------------------

static void test_normalizers(void) {
    struct {
        const char *norm, *in, *out;
    } cases[] = {
        {"{\"type\":\"NFC\"}", "e\xCC\x81", "\xC3\xA9"},
        {"{\"type\":\"NFC\"}", "\xE2\x84\xAB", "\xC3\x85"}, /* Angstrom sign -> Å */
        {"{\"type\":\"NFD\"}", "\xC3\xA9", "e\xCC\x81"},
        {"{\"type\":\"NFKC\"}", "\xEF\xAC\x81 \xE2\x91\xA0", "fi 1"}, /* ﬁ ① */
        {"{\"type\":\"NFKD\"}", "\xEF\xAC\x81\xC3\xA9", "fie\xCC\x81"},
        {"{\"type\":\"Lowercase\"}", "HeLLo \xC4\xB0 \xCE\xA3", "hello i\xCC\x87 \xCF\x83"},
        {"{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"_\"}", "a b  c",
         "a_b__c"},
        {"{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\" \"}", "a b   c",
         "a b c"},
        {"{\"type\":\"Replace\",\"pattern\":{\"String\":\".\"},\"content\":\"\"}", "a.b.", "ab"},
        {"{\"type\":\"Prepend\",\"prepend\":\"_\"}", "ab", "_ab"},
        {"{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", "  ab \t", "ab"},
        {"{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false}",
         " \xE3\x80\x80"
         "ab ",
         "ab "},
        {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"},{\"type\":\"StripAccents\"}]}",
         "caf\xC3\xA9", "cafe"},
        {"{\"type\":\"ByteLevel\"}", "\xC3\xA9", "\xC3\x83\xC2\xA9"},
        {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"},{\"type\":\"Replace\","
         "\"pattern\":{\"String\":\"a\"},\"content\":\"b\"}]}",
         "AAA", "bbb"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loam_tokenizer *t = mk(cases[i].norm, NULL, NULL, NULL, W(cases[i].out));
        CHECK_STR(pieces(t, cases[i].in), cases[i].out);
        loam_tokenizer_close(t);
    }
    loam_tokenizer *t = mk("{\"type\":\"Prepend\",\"prepend\":\"_\"}", NULL, NULL, NULL, NULL);
    CHECK_STR(pieces(t, ""), ""); /* nothing to prepend to */
    loam_tokenizer_close(t);
}

static void test_split_behaviors(void) {
    const char *const words[] = {"a ", "b ", " b", " c", "  ", "ab", "cd", NULL};
    struct {
        const char *behavior, *out;
    } cases[] = {
        {"Removed", "a|b|c"},
        {"Isolated", "a| |b| | |c"},
        {"MergedWithPrevious", "a |b | |c"},
        {"MergedWithNext", "a| b| | c"},
        {"Contiguous", "a| |b|  |c"},
    };
    for (size_t i = 0; i < 5; i++) {
        char pre[200];
        snprintf(pre, sizeof pre,
                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":\" "
                 "\"},\"behavior\":\"%s\",\"invert\":false}",
                 cases[i].behavior);
        loam_tokenizer *t = mk(NULL, pre, NULL, NULL, words);
        CHECK_STR(pieces(t, "a b  c"), cases[i].out);
        loam_tokenizer_close(t);
    }
    loam_tokenizer *t = mk(NULL,
                           "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[a-z]+\"},"
                           "\"behavior\":\"Removed\",\"invert\":true}",
                           NULL, NULL, words);
    CHECK_STR(pieces(t, "ab cd"), "ab|cd");
    loam_tokenizer_close(t);
    t = mk(NULL,
           "{\"type\":\"Split\",\"pattern\":{\"String\":\"a.\"},\"behavior\":\"Isolated\","
           "\"invert\":false}",
           NULL, NULL, W("a."));
    CHECK_STR(pieces(t, "xa.yab"), "x|a.|y|a|b"); /* literal: '.' is no wildcard */
    loam_tokenizer_close(t);
}

static void test_pre_tokenizers(void) {
    struct {
        const char *pre, *in, *out;
        const char *const *words;
    } cases[] = {
        {"{\"type\":\"Digits\",\"individual_digits\":true}", "a123b", "a|1|2|3|b", NULL},
        {"{\"type\":\"Digits\",\"individual_digits\":false}", "a123b45", "a|123|b|45",
         W("123", "45")},
        {"{\"type\":\"Whitespace\"}", "Hey man! ok?!", "Hey|man|!|ok|?!",
         W("Hey", "man", "ok", "?!")},
        {"{\"type\":\"Whitespace\"}", "na\xC3\xAFve,\xCC\x81x", "na\xC3\xAFve|,|\xCC\x81x",
         W("na\xC3\xAFve", "\xCC\x81x")}, /* \w has letters and marks */
        {"{\"type\":\"WhitespaceSplit\"}",
         "a \t b\nc\xC2\xA0"
         "d",
         "a|b|c|d", NULL},
        {"{\"type\":\"Punctuation\"}", "a,b!!", "a|,|b|!|!", NULL},
        {"{\"type\":\"Punctuation\",\"behavior\":\"Contiguous\"}", "a,b!!", "a|,|b|!!", W("!!")},
        {"{\"type\":\"BertPreTokenizer\"}", "Hey, you!", "Hey|,|you|!", W("Hey", "you")},
        {"{\"type\":\"CharDelimiterSplit\",\"delimiter\":\"-\"}", "a-b--c", "a|b|c", NULL},
        {"{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"always\",\"split\":"
         "false}",
         "a b", "_a_b", W("_a_b")},
        {"{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"never\",\"split\":"
         "true}",
         "a b", "a|_b", W("_b")},
        {"{\"type\":\"Metaspace\",\"replacement\":\"_\",\"add_prefix_space\":true}", "a b", "_a|_b",
         W("_a", "_b")},
        {"{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}", "a b",
         "a\xC4\xA0"
         "b",
         W("a\xC4\xA0"
           "b")},
        {"{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}", "it's  x",
         "\xC4\xA0it|'s|\xC4\xA0|\xC4\xA0x", W("\xC4\xA0it", "'s", "\xC4\xA0x", "\xC4\xA0")},
        {"{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},{\"type\":"
         "\"Digits\",\"individual_digits\":true}]}",
         "ab12 c", "ab|1|2|c", W("ab")},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loam_tokenizer *t = mk(NULL, cases[i].pre, NULL, NULL, cases[i].words);
        CHECK_STR(pieces(t, cases[i].in), cases[i].out);
        loam_tokenizer_close(t);
    }
}

static void test_decoders(void) {
    struct {
        const char *dec, *list, *out;
    } cases[] = {
        {"{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"always\"}",
         "_hello|_world", "hello world"},
        {"{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"never\"}", "_hello",
         " hello"},
        {"{\"type\":\"ByteFallback\"}", "<0x61>|<0xE2>|<0x82>|<0xAC>|x", "a\xE2\x82\xACx"},
        {"{\"type\":\"ByteFallback\"}", "<0xE2>|x", "\xEF\xBF\xBDx"},
        {"{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":"
         "\" \","
         "\"start\":1,\"stop\":1}]}",
         "  a|b  ", " ab "},
        {"{\"type\":\"Strip\",\"content\":\"x\",\"start\":2,\"stop\":1}", "xxxaxx", "xax"},
        {"{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"_+\"},\"content\":\" \"}", "a__b", "a b"},
        {"{\"type\":\"ByteLevel\"}", "\xC4\xA0hello|\xC4\x8A", " hello\n"},
        {"{\"type\":\"ByteLevel\"}", "\xE2\x82\xAC|x",
         "\xE2\x82\xACx"}, /* € is not in the alphabet */
        {NULL, "a|b", "a b"},
        {"{\"type\":\"Sequence\",\"decoders\":[]}", "a|b", "ab"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loam_tokenizer *t =
            mk(NULL, NULL, NULL, cases[i].dec,
               W("_hello", "_world", "<0x61>", "<0xE2>", "<0x82>", "<0xAC>", "  a", "b  ", "xxxaxx",
                 "a__b", "\xC4\xA0hello", "\xC4\x8A", "\xE2\x82\xAC"));
        CHECK_STR(decode_pieces(t, cases[i].list, 0), cases[i].out);
        loam_tokenizer_close(t);
    }
}

static void test_post_processors(void) {
    loam_tokenizer *t =
        mk(NULL, "{\"type\":\"WhitespaceSplit\"}",
           "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"X\","
           "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":"
           "{\"id\":\"Y\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"X\":{\"id\":"
           "\"X\",\"ids\":[34,35],\"tokens\":[\"A\",\"B\"]},\"Y\":{\"id\":\"Y\",\"ids\":[36],"
           "\"tokens\":[\"C\"]}}}",
           NULL, NULL);
    CHECK_STR(pieces_n(t, "x y", 3, 1), "A|B|x|y|C");
    CHECK_STR(pieces_n(t, "x y", 3, 0), "x|y");
    loam_tokenizer_close(t);
    t = mk(
        NULL, NULL,
        "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"RobertaProcessing\",\"sep\":[\"B\",35],"
        "\"cls\":[\"A\",34],\"trim_offsets\":true,\"add_prefix_space\":true},{\"type\":"
        "\"ByteLevel\"}]}",
        NULL, NULL);
    CHECK_STR(pieces_n(t, "x", 1, 1), "A|x|B");
    loam_tokenizer_close(t);
}

// ---- 3. errors ----------------------------------------------------------------------------------

static void expect_error(const char *norm, const char *pre, const char *post, const char *dec,
                         loam_status want, const char *msg_part) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,"
             "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
             norm ? norm : "null", pre ? pre : "null", post ? post : "null", dec ? dec : "null");
    loam_tokenizer *t = (loam_tokenizer *)1;
    loam_err e;
    loam_status st = loam_tokenizer_open_memory(&t, json, strlen(json), &e);
    CHECK_EQ_I64(st, want);
    CHECK(t == NULL);
    if (!strstr(e.msg, msg_part)) {
        t_failed_checks++;
        fprintf(stderr, "message '%s' lacks '%s'\n", e.msg, msg_part);
    }
}

static void test_unsupported(void) {
    expect_error("{\"type\":\"BertNormalizer\"}", NULL, NULL, NULL, LOAM_E_UNSUPPORTED,
                 "normalizer type 'BertNormalizer' is not supported");
    expect_error("{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}", NULL, NULL, NULL,
                 LOAM_E_UNSUPPORTED, "normalizer type 'Precompiled' is not supported");
    expect_error(NULL, "{\"type\":\"UnicodeScripts\"}", NULL, NULL, LOAM_E_UNSUPPORTED,
                 "pre_tokenizer type 'UnicodeScripts' is not supported");
    expect_error(NULL, NULL, "{\"type\":\"Foo\"}", NULL, LOAM_E_UNSUPPORTED,
                 "post_processor type 'Foo' is not supported");
    expect_error(NULL, NULL, NULL, "{\"type\":\"CTC\"}", LOAM_E_UNSUPPORTED,
                 "decoder type 'CTC' is not supported");
    expect_error(NULL,
                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\","
                 "\"invert\":false}",
                 NULL, NULL, LOAM_E_FORMAT, "does not compile");
    expect_error(NULL,
                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}",
                 NULL, NULL, LOAM_E_FORMAT, "behavior 'Sideways'");
    struct {
        const char *json, *msg;
        loam_status st;
    } files[] = {
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model type 'Unigram' is not supported",
         LOAM_E_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}", "dropout",
         LOAM_E_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
         "merge 0: piece 'b' is not in the vocab", LOAM_E_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}", "'a' + 'a'",
         LOAM_E_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a a\"]}}", "one space",
         LOAM_E_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "model.vocab['a']",
         LOAM_E_FORMAT},
        {"{\"version\":\"2.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
         "unknown version", LOAM_E_UNSUPPORTED},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}", "tokenizer.json",
         LOAM_E_FORMAT},
        {"[]", "not an object", LOAM_E_FORMAT},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}",
         "duplicate key", LOAM_E_FORMAT},
        {"{\"added_tokens\":[{\"id\":1}],\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
         "'content' is missing", LOAM_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        loam_tokenizer *t = NULL;
        loam_err e;
        CHECK_EQ_I64(loam_tokenizer_open_memory(&t, files[i].json, strlen(files[i].json), &e),
                     files[i].st);
        if (!strstr(e.msg, files[i].msg)) {
            t_failed_checks++;
            fprintf(stderr, "message '%s' lacks '%s'\n", e.msg, files[i].msg);
        }
    }
    loam_tokenizer *t = NULL;
    loam_err e;
    CHECK_EQ_I64(loam_tokenizer_open(&t, DATA "no-such-file.json", &e), LOAM_E_IO);
    CHECK_EQ_I64(loam_tokenizer_open_dir(&t, DATA, &e), LOAM_E_IO); /* no tokenizer.json there */
}

static void test_invalid_utf8(void) {
    loam_tokenizer *t = open_file(DATA "byte_level.json");
    struct {
        const char *bad;
        size_t n;
        const char *clean;
    } cases[] = {
        {"\x80", 1, "\xEF\xBF\xBD"},
        {"a\xE2\x82", 3, "a\xEF\xBF\xBD"},
        {"\xC0\x80", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xED\xA0\x80z", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz"},
        {"\xF0\x9F\x98x", 4, "\xEF\xBF\xBDx"},
        {"\xF5\xFF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"<mask\xFF>", 7, "<mask\xEF\xBF\xBD>"},
    };
    int32_t a[64], b[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t na = encode(t, cases[i].bad, cases[i].n, 1, a, 64);
        size_t nb = encode(t, cases[i].clean, strlen(cases[i].clean), 1, b, 64);
        CHECK_EQ_I64(na, nb);
        CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
    }
    size_t n = encode(t, "a\0b", 3, 0, a, 64); /* NUL is a character (byte-level Ā) */
    CHECK_STR(pieces_n(t, "a\0b", 3, 0), "Ġ|a|Ā|b");
    char out[16];
    size_t len;
    loam_err e;
    CHECK_OK(loam_tok_decode(t, a, n, 0, out, sizeof out, &len, &e), e);
    CHECK(len == 4 && memcmp(out, " a\0b", 4) == 0);
    loam_tokenizer_close(t);
}

static void test_buffer_protocol(void) {
    loam_tokenizer *t = open_file(DATA "byte_level.json");
    loam_err e;
    size_t n = 99;
    int32_t ids[4] = {-7, -7, -7, -7};
    CHECK_OK(loam_tok_encode(t, "hello world", 11, 1, NULL, 0, &n, &e), e);
    CHECK_EQ_I64(n, 4);
    CHECK_OK(loam_tok_encode(t, "hello world", 11, 1, ids, 2, &n, &e), e);
    CHECK(n == 4 && ids[0] == 267 && ids[1] == 260 && ids[2] == -7);
    int32_t all[4] = {267, 260, 265, 267};
    char buf[32];
    size_t len = 0;
    memset(buf, 'Z', sizeof buf);
    CHECK_OK(loam_tok_decode(t, all, 4, 1, NULL, 0, &len, &e), e);
    CHECK_EQ_I64(len, 12);
    CHECK_OK(loam_tok_decode(t, all, 4, 1, buf, 12, &len, &e), e); /* no room for the NUL */
    CHECK(buf[0] == 'Z');
    CHECK_OK(loam_tok_decode(t, all, 4, 1, buf, 13, &len, &e), e);
    CHECK_STR(buf, " hello world");
    int32_t odd[] = {-1, 260, 100000, 265};
    CHECK_STR(decode(t, odd, 4, 0), " hello world"); /* ids without a token are skipped */
    CHECK_EQ_I64(loam_tok_encode(t, NULL, 3, 0, ids, 4, &n, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_tok_encode(NULL, "x", 1, 0, ids, 4, &n, &e), LOAM_E_INVAL);
    loam_tokenizer_close(t);
}

static void test_open_dir(void) {
    char dir[] = "/tmp/loam-tok-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    char *text;
    size_t len;
    loam_err e;
    CHECK_OK(loam__read_file(DATA "byte_level.json", &text, &len, &e), e);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK_OK(loam__write_file_atomic(path, text, len, &e), e);
    loam__free(text);
    loam_tokenizer *t = NULL; /* no tokenizer_config.json: fine, no special ids */
    CHECK_OK(loam_tokenizer_open_dir(&t, dir, &e), e);
    CHECK(loam_tok_bos_id(t) == -1 && loam_tok_eos_id(t) == -1 && loam__tok_config_text(t) == NULL);
    loam_tokenizer_close(t);
    const char cfg[] = "{\"bos_token\": {\"content\": \"<|endoftext|>\", \"lstrip\": false},"
                       " \"eos_token\": \"<mask>\", \"pad_token\": null}";
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    CHECK_OK(loam__write_file_atomic(path, cfg, sizeof cfg - 1, &e), e);
    CHECK_OK(loam_tokenizer_open_dir(&t, dir, &e), e);
    CHECK(loam_tok_bos_id(t) == 267 && loam_tok_eos_id(t) == 268 && loam_tok_pad_id(t) == -1);
    CHECK_STR(loam__tok_config_text(t), cfg);
    loam_tokenizer_close(t);
    CHECK_OK(loam__write_file_atomic(path, "{\"bos_token\": ", 14, &e), e);
    CHECK_EQ_I64(loam_tokenizer_open_dir(&t, dir, &e), LOAM_E_FORMAT);
    CHECK(t == NULL && strstr(e.msg, "tokenizer_config.json"));
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    remove(path);
    rmdir(dir);
    t = open_file(DATA "byte_level.json");
    CHECK(loam__tok_config_text(t) == NULL);
    loam_tokenizer_close(t);
}

/* Every allocation of open, encode and decode fails in turn: each failure is a clean error,
 * and everything is given back. */
static void test_alloc_failures(void) {
    char *json;
    size_t len;
    loam_err e;
    CHECK_OK(loam__read_file(DATA "spm_byte_fallback.json", &json, &len, &e), e);
    uint64_t base = loam_debug_bytes_in_use();
    int opened = 0, n_fail = 0;
    for (uint64_t k = 1; k < 5000 && !opened; k++) {
        loam_tokenizer *t = NULL;
        loam_debug_fail_alloc_after(k);
        loam_status st = loam_tokenizer_open_memory(&t, json, len, &e);
        int32_t ids[16];
        size_t n = 0;
        char out[64];
        size_t out_len;
        if (st == LOAM_OK) {
            st = loam_tok_encode(t, "Hello €ü", 10, 1, ids, 16, &n, &e);
            if (st == LOAM_OK)
                st = loam_tok_decode(t, ids, n, 0, out, sizeof out, &out_len, &e);
            loam_tok_stream *s = NULL;
            if (st == LOAM_OK)
                st = loam_tok_stream_new(t, 0, &s, &e);
            const char *x;
            size_t xl;
            for (size_t i = 0; st == LOAM_OK && i < n; i++)
                st = loam_tok_stream_push(s, ids[i], &x, &xl, &e);
            loam_tok_stream_free(s);
            opened = st == LOAM_OK;
        }
        loam_debug_fail_alloc_after(0);
        if (!opened) {
            n_fail++;
            if (st != LOAM_E_NOMEM) {
                t_failed_checks++;
                fprintf(stderr, "allocation %llu: status %d (%s)\n", (unsigned long long)k, st,
                        e.msg);
            }
        }
        loam_tokenizer_close(t);
        CHECK_EQ_I64(loam_debug_bytes_in_use(), base);
    }
    CHECK(opened && n_fail > 10);
    loam__free(json);
}

// ---- 4. streaming, threads ----------------------------------------------------------------------

/* Streams ids one by one; every chunk must be valid UTF-8; the chunks must equal decode(). */
static int stream_matches(const loam_tokenizer *t, const int32_t *ids, size_t n, int skip) {
    loam_tok_stream *s;
    loam_err e;
    if (loam_tok_stream_new(t, skip, &s, &e))
        return 0;
    loam__tok_bytes all = {0};
    int ok = 1;
    const char *text;
    size_t len;
    for (size_t i = 0; i <= n && ok; i++) {
        loam_status st = i < n ? loam_tok_stream_push(s, ids[i], &text, &len, &e)
                               : loam_tok_stream_flush(s, &text, &len, &e);
        if (st || !loam__tok_utf8_valid(text, len) || loam__tok_bytes_put(&all, text, len))
            ok = 0;
    }
    loam__tok_bytes one = {0};
    if (loam__tok_decode_into(t, ids, n, skip, &one, &e))
        ok = 0;
    if (ok && (one.len != all.len || (one.len && memcmp(one.p, all.p, one.len) != 0)))
        ok = 0;
    loam__free(all.p);
    loam__free(one.p);
    loam_tok_stream_free(s);
    return ok;
}

static void test_stream(void) {
    loam_tokenizer *t = open_file(DATA "byte_level.json");
    loam_tok_stream *s;
    loam_err e;
    CHECK_OK(loam_tok_stream_new(t, 0, &s, &e), e);
    const char *text;
    size_t len;
    int32_t emoji[] = {32, 0xF0, 0x9F, 0x98, 0x80, 32};
    const char *want[] = {" ", "", "", "", "\xF0\x9F\x98\x80", " "};
    for (int i = 0; i < 6; i++) {
        CHECK_OK(loam_tok_stream_push(s, emoji[i], &text, &len, &e), e);
        CHECK_STR(text, want[i]);
        CHECK_EQ_I64(len, strlen(want[i]));
    }
    /* an unfinished character is released by flush as U+FFFD, and the stream starts afresh */
    CHECK_OK(loam_tok_stream_push(s, 0xE2, &text, &len, &e), e);
    CHECK_EQ_I64(len, 0);
    CHECK_OK(loam_tok_stream_flush(s, &text, &len, &e), e);
    CHECK_STR(text, "\xEF\xBF\xBD");
    CHECK_OK(loam_tok_stream_push(s, 260, &text, &len, &e), e);
    CHECK_STR(text, " hello");
    loam_tok_stream_free(s);
    int32_t mixed[] = {267, 32, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 267, 0x80, 0x41, 0xF0, 0x9F, 266};
    CHECK(stream_matches(t, mixed, 13, 0));
    CHECK(stream_matches(t, mixed, 13, 1));
    int32_t fffd[3 * 80 + 2];
    for (int i = 0; i < 80; i++)
        fffd[3 * i] = 0xEF, fffd[3 * i + 1] = 0xBF, fffd[3 * i + 2] = 0xBD;
    fffd[240] = 0xE2, fffd[241] = 0x82; /* a long run of real U+FFFD, then an unfinished € */
    CHECK(stream_matches(t, fffd, 242, 0));
    loam_tokenizer_close(t);
    t = open_file(DATA "metaspace.json");
    int32_t ms[] = {3, 4, 1, 5, 4};
    CHECK(stream_matches(t, ms, 5, 0));
    CHECK(stream_matches(t, ms, 5, 1));
    loam_tokenizer_close(t);
    t = open_file(DATA "spm_byte_fallback.json");
    int32_t sp[] = {1, 20, 7, 4, 5, 6, 25, 4, 3, 21, 3, 4, 3, 25, 3, 4};
    CHECK(stream_matches(t, sp, 16, 0)); /* a byte group is held until it ends: 0A E2 0A */
    CHECK(stream_matches(t, sp, 16, 1));
    loam_tokenizer_close(t);
}

typedef struct {
    const loam_tokenizer *t;
    const char *const *texts;
    size_t n_texts;
    int32_t (*want)[64];
    size_t *want_n;
    int bad;
} thread_arg;

static void *encode_thread(void *p) {
    thread_arg *a = p;
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < a->n_texts; i++) {
            int32_t ids[64];
            size_t n;
            loam_err e;
            if (loam_tok_encode(a->t, a->texts[i], strlen(a->texts[i]), 1, ids, 64, &n, &e) ||
                n != a->want_n[i] || memcmp(ids, a->want[i], n * sizeof *ids) != 0)
                a->bad++;
        }
    return NULL;
}

static void test_threads(void) {
    loam_tokenizer *t = open_file(DATA "byte_level.json");
    const char *const texts[] = {"hello world",    "a <mask> b", "lll hell é",
                                 "swordfish word", "x[R]   y",   "HELLO <|endoftext|> world"};
    enum { NT = 6, TH = 4 };
    int32_t want[NT][64];
    size_t want_n[NT];
    for (int i = 0; i < NT; i++)
        want_n[i] = encode(t, texts[i], strlen(texts[i]), 1, want[i], 64);
    pthread_t th[TH];
    thread_arg args[TH];
    for (int i = 0; i < TH; i++) {
        args[i] = (thread_arg){t, texts, NT, want, want_n, 0};
        pthread_create(&th[i], NULL, encode_thread, &args[i]);
    }
    for (int i = 0; i < TH; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_I64(args[i].bad, 0);
    }
    loam_tokenizer_close(t);
}

// ---- 5. real tokenizers -------------------------------------------------------------------------

static loam_tokenizer *open_real(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, CACHE "tokenizer-%s/package/models", name);
    loam_tokenizer *t = NULL;
    loam_err e;
    if (loam_tokenizer_open_dir(&t, dir, &e)) {
        fprintf(stderr, "%s: %s (run tests/fetch-data.sh)\n", dir, e.msg);
        t_failed_checks++;
    }
    return t;
}

static void test_qwen3(void) {
    loam_tokenizer *t = open_real("qwen3");
    if (!t)
        return;
    int32_t ids[64];
    CHECK_EQ_I64(loam_tok_n_vocab(t), 151669);
    CHECK_EQ_I64(loam_tok_eos_id(t), 151645);
    CHECK_EQ_I64(loam_tok_pad_id(t), 151643);
    CHECK_EQ_I64(loam_tok_bos_id(t), -1);
    CHECK_EQ_I64(loam_tok_id(t, "<|im_start|>"), 151644);
    CHECK_STR(loam_tok_piece(t, 151667), "<think>");
    CHECK(!loam_tok_is_special(t, 151667) && loam_tok_is_special(t, 151645));
    CHECK(loam__tok_config_text(t) && strstr(loam__tok_config_text(t), "chat_template"));
    size_t n = encode(t, "Hello world", 11, 1, ids, 64);
    CHECK(n == 2 && ids[0] == 9707 && ids[1] == 1879);
    const char *chat =
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
    n = encode(t, chat, strlen(chat), 1, ids, 64);
    CHECK_STR(decode(t, ids, n, 0), chat);
    CHECK_STR(decode(t, ids, n, 1), "user\nhi\nassistant\n<think>\n\n</think>\n\n");
    loam_tokenizer_close(t);
}

static void test_llama3(void) {
    loam_tokenizer *t = open_real("llama3");
    if (!t)
        return;
    int32_t ids[64];
    CHECK_EQ_I64(loam_tok_n_vocab(t), 128256);
    CHECK_EQ_I64(loam_tok_bos_id(t), 128000);
    CHECK_EQ_I64(loam_tok_eos_id(t), 128001);
    size_t n = encode(t, "Hello world", 11, 1, ids, 64); /* post_processor ByteLevel: no BOS */
    CHECK(n == 2 && ids[0] == 9906 && ids[1] == 1917);
    CHECK_STR(pieces(t, "1234567"), "123|456|7");
    loam_tokenizer_close(t);
    /* Llama 3.1 adds <|begin_of_text|> through Sequence[ByteLevel, TemplateProcessing] */
    t = open_real("llama3_1");
    if (!t)
        return;
    n = encode(t, "Hello world", 11, 1, ids, 64);
    CHECK(n == 3 && ids[0] == 128000 && ids[1] == 9906 && ids[2] == 1917);
    n = encode(t, "Hello world", 11, 0, ids, 64);
    CHECK(n == 2 && ids[0] == 9906);
    loam_tokenizer_close(t);
}

/* Compares every case of a tools/reference/tokenizer_fixtures.py file. */
static void run_cases(const char *name) {
    char path[512];
    snprintf(path, sizeof path, DATA "%s_cases.json", name);
    char *text;
    size_t len;
    loam_err e;
    if (loam__read_file(path, &text, &len, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        t_failed_checks++;
        return;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    loam__free(text);
    loam_tokenizer *t = open_real(name);
    CHECK(cJSON_IsArray(root) && t);
    if (!cJSON_IsArray(root) || !t) {
        cJSON_Delete(root);
        loam_tokenizer_close(t);
        return;
    }
    size_t n_cases = 0, n_round = 0, bad = 0, cap = 1 << 16;
    int32_t *ids = loam__malloc(cap * sizeof *ids), *want = loam__malloc(cap * sizeof *want);
    for (const cJSON *c = root->child; c; c = c->next, n_cases++) {
        const char *in = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *keys[] = {"ids", "ids_special"};
        int case_bad = 0;
        for (int k = 0; k < 2; k++) {
            const cJSON *arr = cJSON_GetObjectItem(c, keys[k]);
            size_t nw = 0;
            for (const cJSON *x = arr->child; x && nw < cap; x = x->next)
                want[nw++] = (int32_t)x->valuedouble;
            size_t n = encode(t, in, strlen(in), k, ids, cap);
            if (n != nw || memcmp(ids, want, n * sizeof *ids) != 0) {
                case_bad = 1;
                fprintf(stderr, "%s: %s differ for %.60s\n", name, keys[k], in);
            }
        }
        const cJSON *arr = cJSON_GetObjectItem(c, "ids");
        size_t nw = 0;
        for (const cJSON *x = arr->child; x && nw < cap; x = x->next)
            want[nw++] = (int32_t)x->valuedouble;
        /* decode(encode(x)) == x wherever HF round-trips */
        if (strcmp(cJSON_GetObjectItem(c, "decoded")->valuestring, in) == 0) {
            size_t n = encode(t, in, strlen(in), 0, ids, cap);
            loam__tok_bytes rt = {0};
            if (loam__tok_decode_into(t, ids, n, 0, &rt, &e) || rt.len != strlen(in) ||
                memcmp(rt.p, in, rt.len) != 0) {
                case_bad = 1;
                fprintf(stderr, "%s: decode(encode(x)) != x for %.60s\n", name, in);
            }
            loam__free(rt.p);
            n_round++;
        }
        const char *dkeys[] = {"decoded", "decoded_skip"};
        for (int k = 0; k < 2; k++) {
            loam__tok_bytes out = {0};
            const char *exp = cJSON_GetObjectItem(c, dkeys[k])->valuestring;
            if (loam__tok_decode_into(t, want, nw, k, &out, &e) || out.len != strlen(exp) ||
                memcmp(out.p, exp, out.len) != 0) {
                case_bad = 1;
                fprintf(stderr, "%s: %s differs for %.60s\n", name, dkeys[k], in);
            }
            loam__free(out.p);
            if (!stream_matches(t, want, nw, k)) {
                case_bad = 1;
                fprintf(stderr, "%s: streaming (skip=%d) differs for %.60s\n", name, k, in);
            }
        }
        bad += (size_t)case_bad;
    }
    printf(
        "%s: %zu Hugging Face cases compared (ids, ids_special, decoded, decoded_skip, streaming; "
        "%zu round trips), %zu differ\n",
        name, n_cases, n_round, bad);
    CHECK_EQ_I64(bad, 0);
    CHECK(n_cases >= 500);
    loam__free(ids);
    loam__free(want);
    cJSON_Delete(root);
    loam_tokenizer_close(t);
}

static void test_hf_cases_qwen3(void) {
    run_cases("qwen3");
}
static void test_hf_cases_llama3(void) {
    run_cases("llama3");
}

static void run_tests(void) {
    TEST(test_bpe_ranks);
    TEST(test_bpe_affixes);
    TEST(test_spm_byte_fallback);
    TEST(test_metaspace_file);
    TEST(test_byte_level_file);
    TEST(test_normalizers);
    TEST(test_split_behaviors);
    TEST(test_pre_tokenizers);
    TEST(test_decoders);
    TEST(test_post_processors);
    TEST(test_unsupported);
    TEST(test_invalid_utf8);
    TEST(test_buffer_protocol);
    TEST(test_open_dir);
    TEST(test_alloc_failures);
    TEST(test_stream);
    TEST(test_threads);
    TEST(test_qwen3);
    TEST(test_llama3);
    TEST(test_hf_cases_qwen3);
    TEST(test_hf_cases_llama3);
}
