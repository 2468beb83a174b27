/* fuzz_bpe.c: libFuzzer target for the tokenizer (src/tokenizer.c, tok_text.c, tok_bpe.c,
 * tok_decode.c). The first input byte picks one of two small tokenizers built in memory and
 * whether the post-processor runs; the rest is the text, arbitrary bytes (invalid UTF-8, NULs).
 *   A: byte-level BPE (256 byte characters, a few merges, GPT-2 regex, two special added tokens,
 *      no normalizer): decode(encode(x)) must give x with invalid UTF-8 replaced by U+FFFD.
 *   B: every other component at once: NFKC + Lowercase + Replace normalizers, a Split regex with
 *      Digits and Metaspace, byte fallback with fused unk, a subword prefix, added tokens with
 *      lstrip / rstrip / single_word / normalized, TemplateProcessing, a decoder sequence.
 * For both, the text must encode, the ids must decode (with and without skip_special) into
 * valid UTF-8, and streaming the ids must give the same text as one decode.
 * Any crash, sanitizer report or broken invariant (abort) is a finding.
 * Build and run: make fuzz && build-fuzz/fuzz/fuzz_bpe fuzz/corpus/bpe
 */
#include "loam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_bpe: invariant broken: %s\n", what);
        abort();
    }
}

static int put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* GPT-2 bytes_to_unicode */
static unsigned byte_char(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE))
            n++;
    return 256 + n;
}

static loam_tokenizer *make_a(void) {
    static char json[16384];
    char *o = json;
    o +=
        sprintf(o, "{\"added_tokens\":[{\"id\":262,\"content\":\"<|end|>\",\"special\":true,"
                   "\"normalized\":false},{\"id\":263,\"content\":\"<x>\",\"special\":false,"
                   "\"normalized\":false}],\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                   "\"add_prefix_space\":false,\"use_regex\":true},\"decoder\":{\"type\":"
                   "\"ByteLevel\"},\"post_processor\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":"
                   "\"BPE\",\"vocab\":{");
    for (unsigned b = 0; b < 256; b++) {
        unsigned c = byte_char(b);
        o += sprintf(o, "%s\"", b ? "," : "");
        if (c == '"' || c == '\\')
            *o++ = '\\';
        o += put_utf8(o, c);
        o += sprintf(o, "\":%u", b);
    }
    o +=
        sprintf(o, ",\"he\":256,\"ll\":257,\"hell\":258,\"\xC4\xA0"
                   "t\":259,\"\xC4\xA0"
                   "th\":260,"
                   "\"\xC4\xA0\xC4\xA0\":261},\"merges\":[\"h e\",\"l l\",\"he ll\",\"\xC4\xA0 t\","
                   "\"\xC4\xA0t h\",\"\xC4\xA0 \xC4\xA0\"]}}");
    loam_tokenizer *t = NULL;
    loam_err e;
    require(loam_tokenizer_open_memory(&t, json, (size_t)(o - json), &e) == LOAM_OK, e.msg);
    return t;
}

static const char k_json_b[] =
    "{\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
    "{\"id\":30,\"content\":\"<m>\",\"special\":true,\"lstrip\":true,\"rstrip\":true,"
    "\"normalized\":false},"
    "{\"id\":31,\"content\":\"ab\",\"single_word\":true,\"normalized\":true},"
    "{\"id\":32,\"content\":\"Q\",\"normalized\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":"
    "\"Lowercase\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s{2,}\"},\"content\":\" \"}]},"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+|\\\\p{N}|\\\\s+(?!\\\\S)|[^\\\\s\\\\p{"
    "L}]+\"},"
    "\"behavior\":\"MergedWithNext\",\"invert\":false},"
    "{\"type\":\"Digits\",\"individual_digits\":false},"
    "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\","
    "\"split\":true}]},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<"
    "s>\","
    "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":"
    "{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{"
    "\"String\":"
    "\"\xE2\x96\x81\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
    "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
    "\"continuing_subword_prefix\":\"##\",\"vocab\":{\"<unk>\":0,\"<s>\":1,\"<0x41>\":2,\"<0xC3>\":"
    "3,"
    "\"<0xA9>\":4,\"<0xE2>\":5,\"<0x82>\":6,\"<0xAC>\":7,\"<0x0A>\":8,\"\xE2\x96\x81\":9,\"a\":10,"
    "\"##b\":11,\"ab\":12,\"c\":13,\"##c\":14,\"abc\":15,\"1\":16,\"##2\":17,\"12\":18,"
    "\"\xE2\x96\x81"
    "a\":19,"
    "\"##a\":20,\"##1\":21},\"merges\":[[\"a\",\"##b\"],[\"ab\",\"##c\"],[\"1\",\"##2\"],"
    "[\"\xE2\x96\x81\",\"##a\"]]}}";

static loam_tokenizer *g_tok[2];

static void check_decode(const loam_tokenizer *t, const int32_t *ids, size_t n, int skip,
                         const char *want, size_t want_len) {
    loam_err e;
    size_t len = 0;
    require(loam_tok_decode(t, ids, n, skip, NULL, 0, &len, &e) == LOAM_OK, "decode size");
    char *buf = malloc(len + 1);
    require(buf != NULL, "malloc");
    size_t len2 = 0;
    require(loam_tok_decode(t, ids, n, skip, buf, len + 1, &len2, &e) == LOAM_OK && len2 == len,
            "decode");
    if (want)
        require(len == want_len && memcmp(buf, want, len) == 0, "decode(encode(x)) == x");
    /* streaming gives the same text */
    loam_tok_stream *s;
    require(loam_tok_stream_new(t, skip, &s, &e) == LOAM_OK, "stream_new");
    char *acc = malloc(len + 1);
    size_t k = 0;
    require(acc != NULL, "malloc");
    for (size_t i = 0; i <= n; i++) {
        const char *chunk;
        size_t cl;
        require((i < n ? loam_tok_stream_push(s, ids[i], &chunk, &cl, &e)
                       : loam_tok_stream_flush(s, &chunk, &cl, &e)) == LOAM_OK,
                "stream");
        require(k + cl <= len, "stream longer than decode");
        memcpy(acc + k, chunk, cl);
        k += cl;
    }
    require(k == len && memcmp(acc, buf, len) == 0, "stream == decode");
    loam_tok_stream_free(s);
    free(acc);
    free(buf);
}

/* The text with invalid UTF-8 replaced by U+FFFD (the documented encode behaviour). */
static size_t lossy(const uint8_t *s, size_t n, char *out) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            out[k++] = (char)b;
            i++;
            continue;
        }
        if (b >= 0xC2 && b <= 0xDF)
            need = 1;
        else if (b == 0xE0)
            need = 2, lo = 0xA0;
        else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF)
            need = 2;
        else if (b == 0xED)
            need = 2, hi = 0x9F;
        else if (b == 0xF0)
            need = 3, lo = 0x90;
        else if (b >= 0xF1 && b <= 0xF3)
            need = 3;
        else if (b == 0xF4)
            need = 3, hi = 0x8F;
        size_t j = 1;
        while (need && j <= need && i + j < n) {
            uint8_t c = s[i + j];
            if (c < (j == 1 ? lo : 0x80) || c > (j == 1 ? hi : 0xBF))
                break;
            j++;
        }
        if (need && j == need + 1) {
            memcpy(out + k, s + i, j);
            k += j;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
        }
        i += j;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok[0]) {
        loam_err e;
        g_tok[0] = make_a();
        require(loam_tokenizer_open_memory(&g_tok[1], k_json_b, sizeof k_json_b - 1, &e) == LOAM_OK,
                e.msg);
    }
    if (size == 0)
        return 0;
    int which = data[0] & 1, special = (data[0] >> 1) & 1;
    const loam_tokenizer *t = g_tok[which];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    loam_err e;
    size_t n = 0;
    require(loam_tok_encode(t, text, len, special, NULL, 0, &n, &e) == LOAM_OK, "encode size");
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    require(ids != NULL, "malloc");
    size_t n2 = 0;
    require(loam_tok_encode(t, text, len, special, ids, n, &n2, &e) == LOAM_OK && n2 == n,
            "encode");
    for (size_t i = 0; i < n; i++)
        require(ids[i] >= 0 && ids[i] < loam_tok_n_vocab(t), "id range");
    char *clean = NULL;
    size_t clean_len = 0;
    if (which == 0 && !special) {
        clean = malloc(3 * len + 1);
        require(clean != NULL, "malloc");
        clean_len = lossy((const uint8_t *)text, len, clean);
    }
    check_decode(t, ids, n, 0, clean, clean_len);
    check_decode(t, ids, n, 1, NULL, 0);
    free(clean);
    free(ids);
    return 0;
}
