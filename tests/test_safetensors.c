/* test_safetensors.c: the safetensors reader and writer (src/safetensors.c, src/json.c).
 *
 * - Every validation rule of FORMATS.md §5.4, in order, with its own test, and the reference
 *   test vectors of huggingface/safetensors `tensor.rs` byte for byte (tests named ref_*).
 * - What loam adds: duplicate keys, strict UTF-8 and JSON lexical rules, integers below 2^53,
 *   at most LOAM_MAX_DIMS dims, "__metadata__": null, unaligned data, error messages naming
 *   the file and the tensor.
 * - The writer: byte-exact against the reference serializer's vectors, round trips with lazy
 *   tensors, metadata, scalars, empty tensors; failures leave no temporary file and do not
 *   touch an existing file. Allocation failures anywhere return LOAM_E_NOMEM without leaks.
 */
#define _POSIX_C_SOURCE 200809L
#include "../src/json.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- helpers ----------------------------------------------------------------------------------

typedef struct {
    uint8_t *b;
    size_t n;
} buf;

/* 8-byte length field n + header (hlen bytes) + data_len bytes of fill. */
static buf mk_n(const char *header, size_t hlen, uint64_t n, size_t data_len, uint8_t fill) {
    buf r;
    r.n = 8 + hlen + data_len;
    r.b = malloc(r.n + 1);
    for (int i = 0; i < 8; i++) r.b[i] = (uint8_t)(n >> (8 * i));
    memcpy(r.b + 8, header, hlen);
    memset(r.b + 8 + hlen, fill, data_len);
    return r;
}
static buf mk(const char *header, size_t data_len) {
    return mk_n(header, strlen(header), strlen(header), data_len, 0);
}
static buf raw(const void *bytes, size_t n) {
    buf r;
    r.n = n;
    r.b = malloc(n + 1);
    if (n) memcpy(r.b, bytes, n);
    return r;
}

/* Opening must fail with LOAM_E_FORMAT and a message naming the file and containing `want`. */
static void expect_fail_at(buf f, const char *want, int line) {
    loam_st *st = (loam_st *)1;
    loam_err e = {LOAM_OK, ""};
    loam_status s = loam_st_open_memory(&st, f.b, f.n, "bad.safetensors", &e);
    if (s != LOAM_E_FORMAT || st != NULL || e.code != LOAM_E_FORMAT ||
        strncmp(e.msg, "bad.safetensors: ", 17) != 0 || !strstr(e.msg, want)) {
        t_failed_checks++;
        fprintf(stderr, "%s:%d: %s: expected format error containing \"%s\", got status %d: %s\n",
                __FILE__, line, t_current, want, (int)s, e.msg);
    }
    loam_st_close(s == LOAM_OK ? st : NULL);
    free(f.b);
}
#define EXPECT_FAIL(f, want) expect_fail_at((f), (want), __LINE__)

static loam_st *open_ok_at(buf f, int line) {
    loam_st *st = NULL;
    loam_err e = {LOAM_OK, ""};
    loam_status s = loam_st_open_memory(&st, f.b, f.n, "ok.safetensors", &e);
    if (s != LOAM_OK) {
        t_failed_checks++;
        fprintf(stderr, "%s:%d: %s: open failed: %s\n", __FILE__, line, t_current, e.msg);
    }
    return st;
}
#define OPEN_OK(f) open_ok_at((f), __LINE__)

static char g_dir[256];

static void make_tmpdir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/loam_test_st_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
}

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void rm_tmpdir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

static buf read_whole(const char *path) {
    buf r = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f) return r;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    r.b = malloc((size_t)n + 1);
    r.n = fread(r.b, 1, (size_t)n, f);
    fclose(f);
    return r;
}

static void write_whole(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

#define HDR_TEST_2X2 "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"

// ---- reference vectors (huggingface/safetensors tensor.rs tests) ------------------------------

static void ref_deserialization(void) {
    static const char v[] = "<\x00\x00\x00\x00\x00\x00\x00" HDR_TEST_2X2
                            "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    buf f = raw(v, sizeof v - 1);
    loam_st *st = OPEN_OK(f);
    if (st) {
        CHECK_EQ_I64(loam_st_n_tensors(st), 1);
        loam_tensor t;
        loam_err e;
        CHECK_OK(loam_st_find(st, "test", &t, &e), e);
        CHECK_STR(t.name, "test");
        CHECK_EQ_I64(t.dtype, LOAM_DTYPE_I32);
        CHECK_EQ_I64(t.n_dims, 2);
        CHECK_EQ_I64(t.shape[0], 2);
        CHECK_EQ_I64(t.shape[1], 2);
        CHECK_EQ_I64(t.n_elements, 4);
        CHECK_EQ_I64(t.n_bytes, 16);
        CHECK(t.data == f.b + 8 + 60);
        CHECK_EQ_I64(loam_st_header_bytes(st), 60);
        CHECK_EQ_I64(loam_st_file_bytes(st), 84);
        CHECK_EQ_I64(loam_st_n_metadata(st), 0);
        CHECK(loam_st_metadata(st, "format") == NULL);
    }
    loam_st_close(st);
    free(f.b);
}

static void ref_empty_shapes_allowed(void) {
    static const char v[] =
        "8\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}"
        "\x00\x00\x00\x00";
    buf f = raw(v, sizeof v - 1);
    loam_st *st = OPEN_OK(f);
    loam_tensor t;
    if (st && loam_st_tensor(st, 0, &t) == LOAM_OK) {
        CHECK_EQ_I64(t.n_dims, 0);
        CHECK_EQ_I64(t.n_elements, 1);
        CHECK_EQ_I64(t.n_bytes, 4);
        CHECK(memcmp(t.data, "\0\0\0\0", 4) == 0);
    } else {
        CHECK(0);
    }
    loam_st_close(st);
    free(f.b);
}

static void ref_zero_sized_tensor(void) {
    static const char v[] =
        "<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,0],\"data_offsets\":[0, "
        "0]}}";
    buf f = raw(v, sizeof v - 1);
    loam_st *st = OPEN_OK(f);
    loam_tensor t;
    if (st && loam_st_tensor(st, 0, &t) == LOAM_OK) {
        CHECK_EQ_I64(t.shape[0], 2);
        CHECK_EQ_I64(t.shape[1], 0);
        CHECK_EQ_I64(t.n_elements, 0);
        CHECK_EQ_I64(t.n_bytes, 0);
    } else {
        CHECK(0);
    }
    loam_st_close(st);
    free(f.b);
}

static void ref_invalid_info(void) {
    static const char v[] =
        "<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0, "
        "4]}}";
    EXPECT_FAIL(raw(v, sizeof v - 1), "tensor 'test': I32 [2, 2] needs 16 bytes but data_offsets [0, 4) hold 4");
}

static void ref_validation_overflow(void) {
    /* The reference fails these in validate() (ValidationOverflow); loam refuses the dimension
     * already, since it is not below 2^53. */
    static const char v1[] =
        "O\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],"
        "\"data_offsets\":[0,16]}}\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    EXPECT_FAIL(raw(v1, sizeof v1 - 1), "tensor 'test': shape[1] is 2^53 or more");
    static const char v2[] =
        "N\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],"
        "\"data_offsets\":[0,16]}}\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    EXPECT_FAIL(raw(v2, sizeof v2 - 1), "shape[1] is 2^53 or more");
}

static void ref_json_attack(void) {
    char h[1024];
    size_t k = 0;
    k += (size_t)snprintf(h + k, sizeof h - k, "{");
    for (int i = 0; i < 10; i++)
        k += (size_t)snprintf(h + k, sizeof h - k,
                              "%s\"weight_%d\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}",
                              i ? "," : "", i);
    snprintf(h + k, sizeof h - k, "}");
    EXPECT_FAIL(mk(h, 16), "tensor 'weight_1': data_offsets [0, 16) overlap tensor 'weight_0'");
}

static void ref_metadata_incomplete_buffer(void) {
    static const char extra[] =
        "<\x00\x00\x00\x00\x00\x00\x00" HDR_TEST_2X2
        "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        "extra_bogus_data_for_polyglot_file";
    EXPECT_FAIL(raw(extra, sizeof extra - 1), "34 trailing bytes after the last tensor");
    static const char missing[] = "<\x00\x00\x00\x00\x00\x00\x00" HDR_TEST_2X2
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    EXPECT_FAIL(raw(missing, sizeof missing - 1),
                "file is truncated: tensors need 16 data bytes, the file holds 14 (2 missing)");
}

static void ref_header_too_large(void) {
    static const char v[] = "<\x00\x00\x00\x00\xff\xff\xff" HDR_TEST_2X2
                            "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    EXPECT_FAIL(raw(v, sizeof v - 1), "header length 18446742974197923900 exceeds the limit");
}

static void ref_header_too_small(void) {
    EXPECT_FAIL(raw("", 0), "file is 0 bytes, too short for the 8-byte header length");
}

static void ref_invalid_header_length(void) {
    EXPECT_FAIL(raw("<\x00\x00\x00\x00\x00\x00\x00", 8),
                "header length 60 runs past the end of the 8-byte file");
}

static void ref_invalid_header_non_utf8(void) {
    EXPECT_FAIL(raw("\x01\x00\x00\x00\x00\x00\x00\x00\xff", 9), "header: invalid UTF-8 at byte 0");
}

static void ref_invalid_header_not_json(void) {
    EXPECT_FAIL(raw("\x01\x00\x00\x00\x00\x00\x00\x00{", 9), "header: invalid JSON");
}

static void ref_whitespace_padded_header(void) {
    buf f = raw("\x06\x00\x00\x00\x00\x00\x00\x00{}\x0D\x20\x09\x0A", 14);
    loam_st *st = OPEN_OK(f);
    CHECK_EQ_I64(loam_st_n_tensors(st), 0);
    loam_st_close(st);
    free(f.b);
}

static void ref_whitespace_leading_padded_header(void) {
    buf f = raw("\x06\x00\x00\x00\x00\x00\x00\x00\x09\x0A{}\x0D\x20", 14);
    loam_st *st = OPEN_OK(f);
    CHECK_EQ_I64(loam_st_n_tensors(st), 0);
    loam_st_close(st);
    free(f.b);
}

// ---- each rule in order, plus loam's own ------------------------------------------------------

static void rule1_too_small(void) {
    EXPECT_FAIL(raw("\x00\x00\x00\x00\x00\x00\x00", 7), "file is 7 bytes, too short");
}

static void rule2_header_too_large(void) {
    /* 100,000,000 is the largest allowed; one more is refused before looking at the file size */
    buf f = mk_n("{}", 2, 100000001, 0, 0);
    EXPECT_FAIL(f, "header length 100000001 exceeds the limit of 100000000 bytes");
    f = mk_n("{}", 2, 100000000, 0, 0);
    EXPECT_FAIL(f, "header length 100000000 runs past the end of the 10-byte file");
}

static void rule3_header_past_end(void) {
    EXPECT_FAIL(mk_n("{}", 2, 3, 0, 0), "header length 3 runs past the end of the 10-byte file");
    /* N = 2^64 - 1: 8 + N would overflow; refused by rule 2 first */
    EXPECT_FAIL(mk_n("{}", 2, UINT64_MAX, 0, 0), "exceeds the limit");
}

static void rule4_utf8(void) {
    /* overlong '/', surrogate, beyond U+10FFFF, truncated sequence, lone continuation byte */
    EXPECT_FAIL(mk("{\"a\xc0\xaf\":1}", 0), "header: invalid UTF-8 at byte 3");
    EXPECT_FAIL(mk("{\"\xed\xa0\x80\":1}", 0), "invalid UTF-8 at byte 2");
    EXPECT_FAIL(mk("{\"\xf4\x90\x80\x80\":1}", 0), "invalid UTF-8 at byte 2");
    EXPECT_FAIL(mk_n("{\"\xe2\x82", 4, 4, 0, 0), "invalid UTF-8 at byte 2");
    EXPECT_FAIL(mk("{\"\x80\":1}", 0), "invalid UTF-8");
    /* UTF-8 is checked before JSON: not JSON either, but the UTF-8 message wins (rule order) */
    EXPECT_FAIL(mk("nonsense \xff", 0), "invalid UTF-8 at byte 9");
    /* valid multi-byte names are fine */
    buf f = mk("{\"caf\xc3\xa9 \xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    loam_st *st = OPEN_OK(f);
    loam_tensor t;
    if (st && loam_st_tensor(st, 0, &t) == LOAM_OK) CHECK_STR(t.name, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    loam_st_close(st);
    free(f.b);
}

static void rule5_json(void) {
    EXPECT_FAIL(mk_n("", 0, 0, 0, 0), "header: invalid JSON: empty");
    EXPECT_FAIL(mk("   ", 0), "invalid JSON: empty");
    EXPECT_FAIL(mk("{", 0), "invalid JSON");
    EXPECT_FAIL(mk("{} x", 0), "unexpected 'x' at byte 3");
    EXPECT_FAIL(mk("{}{}", 0), "invalid JSON near byte 2");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"F32\",}}", 0), "invalid JSON");
    EXPECT_FAIL(mk("[]", 0), "header is not a JSON object");
    EXPECT_FAIL(mk("\"x\"", 0), "header is not a JSON object");
    /* cJSON laxities closed by the lexical pass */
    EXPECT_FAIL(mk("\xef\xbb\xbf{}", 0), "unexpected byte 0xef at byte 0");
    EXPECT_FAIL(mk("{}\x0c", 0), "unexpected byte 0x0c");
    EXPECT_FAIL(mk_n("\x00{}", 3, 3, 0, 0), "unexpected byte 0x00 at byte 0");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"F32\",\"shape\":[+1],\"data_offsets\":[0,4]}}", 4),
                "unexpected '+'");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4),
                "malformed number at byte 29");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.],\"data_offsets\":[0,4]}}", 4),
                "malformed number");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,4]}}", 4),
                "malformed number");
    EXPECT_FAIL(mk("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "escaped NUL (\\u0000) at byte 3");
    EXPECT_FAIL(mk("{\"a\\uZZZZ\":1}", 0), "bad \\u escape at byte 3");
    EXPECT_FAIL(mk("{\"a\\x\":1}", 0), "bad escape '\\x' at byte 3");
    EXPECT_FAIL(mk("{\"a\tb\":1}", 0), "raw control byte 0x09 in a string at byte 3");
    EXPECT_FAIL(mk("{\"abc", 0), "string at byte 1 is not terminated");
    EXPECT_FAIL(mk("{\"a\":tru}", 0), "unexpected 't'");
    EXPECT_FAIL(mk("{\"a\\ud800\":1}", 0), "invalid JSON"); /* lone surrogate escape */
}

static void rule5_schema(void) {
    EXPECT_FAIL(mk("{\"w\":[]}", 0), "tensor 'w': entry is not a JSON object");
    EXPECT_FAIL(mk("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'w': missing \"dtype\"");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'w': missing \"shape\"");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), "missing \"data_offsets\"");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "dtype is not a string");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"Q4_0\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "tensor 'w': unknown dtype \"Q4_0\"");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                "unknown dtype \"f32\""); /* case-sensitive */
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4), "shape is not an array");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
                "tensor 'w': shape[0] is negative");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 0),
                "shape[0] is negative");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4),
                "shape[0] is not an integer");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4),
                "shape[0] is not a number");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8),
                "data_offsets is not an array of two integers");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4),
                "data_offsets is not an array of two integers");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0,\"b\":4}}}", 4),
                "data_offsets is not an array of two integers");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4),
                "tensor 'w': data_offsets[0] is negative");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4),
                "data_offsets[1] is 2^53 or more");
    EXPECT_FAIL(mk("{\"__metadata__\":{\"format\":1}}", 0), "__metadata__ value of \"format\" is not a string");
    EXPECT_FAIL(mk("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0), "value of \"a\" is not a string");
    EXPECT_FAIL(mk("{\"__metadata__\":[\"pt\"]}", 0), "__metadata__ is not an object or null");
    EXPECT_FAIL(mk("{\"__metadata__\":\"pt\"}", 0), "__metadata__ is not an object or null");
}

static void rule5_integers_below_2_53(void) {
    /* 2^53 - 1 is read exactly (and then fails coverage); 2^53 is refused with a reason */
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740991],\"data_offsets\":[0,9007199254740991]}}", 0),
                "tensors need 9007199254740991 data bytes");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],\"data_offsets\":[0,1]}}", 1),
                "shape[0] is 2^53 or more (loam reads header integers only below 2^53");
    /* a number written 2.0 reads as 2 (documented: cJSON keeps no number text) */
    buf f = mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2e0]}}", 2);
    loam_st *st = OPEN_OK(f);
    loam_st_close(st);
    free(f.b);
}

static void rule5_max_dims(void) {
    buf f = mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,2]}}", 2);
    loam_st *st = OPEN_OK(f);
    loam_tensor t;
    if (st && loam_st_tensor(st, 0, &t) == LOAM_OK) {
        CHECK_EQ_I64(t.n_dims, 8);
        CHECK_EQ_I64(t.shape[7], 2);
    }
    loam_st_close(st);
    free(f.b);
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,2]}}", 2),
                "tensor 'w': shape has 9 dimensions; loam supports at most 8");
}

static void rule5_duplicate_keys(void) {
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2),
                "header: duplicate key \"w\"");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
                "duplicate key \"dtype\"");
    EXPECT_FAIL(mk("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0), "duplicate key \"a\"");
    EXPECT_FAIL(mk("{\"__metadata__\":null,\"__metadata__\":{}}", 0), "duplicate key \"__metadata__\"");
}

static void rule5_metadata(void) {
    buf f = mk("{\"__metadata__\":null}", 0);
    loam_st *st = OPEN_OK(f);
    CHECK_EQ_I64(loam_st_n_metadata(st), 0);
    loam_st_close(st);
    free(f.b);
    f = mk("{\"__metadata__\":{\"format\":\"mlx\",\"note\":\"caf\xc3\xa9\\n\"},"
           "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"x\":{\"dtype\":\"U8\","
           "\"shape\":[1],\"data_offsets\":[1,2],\"extra\":[1.5,{\"ignored\":true}]}}",
           2);
    st = OPEN_OK(f);
    if (st) {
        CHECK_EQ_I64(loam_st_n_metadata(st), 2);
        CHECK_EQ_I64(loam_st_n_tensors(st), 2);
        CHECK_STR(loam_st_metadata(st, "format"), "mlx");
        CHECK_STR(loam_st_metadata(st, "note"), "caf\xc3\xa9\n");
        CHECK(loam_st_metadata(st, "nope") == NULL);
        const char *k = NULL, *v = NULL;
        loam_st_metadata_at(st, 1, &k, &v);
        CHECK_STR(k, "note");
        loam_st_metadata_at(st, 2, &k, &v);
        CHECK(k == NULL && v == NULL);
    }
    loam_st_close(st);
    free(f.b);
}

static void rule6_offsets(void) {
    /* gap at the start, gap between, overlap, end before begin */
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2),
                "tensor 'w': data_offsets [1, 2) leave a gap of 1 bytes after the start of the data");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 10),
                "tensor 'b': data_offsets [6, 10) leave a gap of 2 bytes after tensor 'a' (offset 4)");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6),
                "tensor 'b': data_offsets [2, 6) overlap tensor 'a', which ends at 4");
    EXPECT_FAIL(mk("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4),
                "tensor 'b': data_offsets [4, 0] end before they begin");
    /* header order is irrelevant; several empty tensors may share an offset */
    buf f = mk("{\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
               "\"e1\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
               "\"a\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]},"
               "\"e2\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,4]},"
               "\"e3\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[12,12]}}",
               12);
    loam_st *st = OPEN_OK(f);
    if (st) {
        const char *order[] = {"a", "e1", "e2", "z", "e3"};
        for (size_t i = 0; i < 5; i++) {
            loam_tensor t;
            CHECK_EQ_I64(loam_st_tensor(st, i, &t), LOAM_OK);
            CHECK_STR(t.name, order[i]);
        }
        loam_tensor t;
        CHECK_EQ_I64(loam_st_tensor(st, 5, &t), LOAM_E_RANGE);
    }
    loam_st_close(st);
    free(f.b);
}

static void rule6_sizes(void) {
    /* element count overflow, bit count overflow, sub-byte remainder, byte count mismatch */
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[4503599627370496,4503599627370496,2],"
                   "\"data_offsets\":[0,1]}}", 1),
                "tensor 'w': shape [4503599627370496, 4503599627370496, 2] has more elements than 64 bits hold");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[1073741824,2147483648],\"data_offsets\":[0,1]}}", 1),
                "tensor 'w': F32 [1073741824, 2147483648] is more bits than 64 bits hold");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1),
                "tensor 'w': 3 elements of F4 are not a whole number of bytes");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"F6_E2M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2),
                "2 elements of F6_E2M3 are not a whole number of bytes");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,4],\"data_offsets\":[0,12]}}", 12),
                "tensor 'w': BF16 [3, 4] needs 24 bytes but data_offsets [0, 12) hold 12");
    /* sub-byte dtypes in whole bytes are fine */
    buf f = mk("{\"w\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[0,3]},"
               "\"v\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[3,6]}}", 6);
    loam_st *st = OPEN_OK(f);
    loam_tensor t;
    loam_err e;
    if (st) {
        CHECK_OK(loam_st_find(st, "w", &t, &e), e);
        CHECK_EQ_I64(t.n_elements, 6);
        CHECK_EQ_I64(t.n_bytes, 3);
    }
    loam_st_close(st);
    free(f.b);
}

static void rule7_coverage(void) {
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 5),
                "1 trailing bytes after the last tensor (data section is 5 bytes, tensors cover 4)");
    EXPECT_FAIL(mk("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3),
                "truncated: tensors need 4 data bytes, the file holds 3 (1 missing)");
    EXPECT_FAIL(mk("{}", 1), "1 trailing bytes");
}

static void unaligned_mlx_style(void) {
    /* MLX: no padding, "__metadata__": null, keys alphabetical while data is in another order */
    const char *h = "{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}";
    size_t hl = strlen(h);
    CHECK(hl % 8 != 0);
    buf f = mk(h, 10);
    float vals[2] = {1.5f, -2.25f};
    uint16_t b = 0x3f80;
    memcpy(f.b + 8 + hl, &b, 2);
    memcpy(f.b + 8 + hl + 2, vals, 8);
    loam_st *st = OPEN_OK(f);
    loam_tensor t;
    loam_err e;
    if (st) {
        CHECK_OK(loam_st_find(st, "a", &t, &e), e);
        CHECK_EQ_I64((uintptr_t)t.data % 4, (8 + hl + 2) % 4); /* malloc'd f.b is aligned */
        CHECK((8 + hl + 2) % 4 != 0);
        CHECK_CLOSE(loam__rd_f32le(t.data), 1.5, 0);
        CHECK_CLOSE(loam__rd_f32le((const uint8_t *)t.data + 4), -2.25, 0);
        CHECK_OK(loam_st_find(st, "b", &t, &e), e);
        CHECK_CLOSE(loam__load_float(t.data, LOAM_DTYPE_BF16, 0), 1.0, 0);
        CHECK_EQ_I64(loam_st_find(st, "c", &t, &e), LOAM_E_NOTFOUND);
        CHECK_STR(e.msg, "ok.safetensors: no tensor named 'c'");
    }
    loam_st_close(st);
    free(f.b);
}

static void find_many(void) {
    /* lookup by binary search over 300 names given in reverse order */
    char *h = malloc(64 * 1024);
    size_t k = 0;
    k += (size_t)sprintf(h + k, "{");
    for (int i = 0; i < 300; i++)
        k += (size_t)sprintf(h + k, "%s\"t%03d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                             i ? "," : "", 299 - i, i, i + 1);
    sprintf(h + k, "}");
    buf f = mk(h, 300);
    for (int i = 0; i < 300; i++) f.b[8 + strlen(h) + (size_t)i] = (uint8_t)(299 - i);
    loam_st *st = OPEN_OK(f);
    if (st) {
        int bad = 0;
        for (int i = 0; i < 300; i++) {
            char name[16];
            snprintf(name, sizeof name, "t%03d", i);
            loam_tensor t;
            if (loam_st_find(st, name, &t, NULL) != LOAM_OK || *(const uint8_t *)t.data != (uint8_t)i)
                bad++;
        }
        CHECK_EQ_I64(bad, 0);
        CHECK_EQ_I64(loam_st_find(st, "t300", NULL, NULL), LOAM_E_NOTFOUND);
        CHECK_EQ_I64(loam_st_find(st, "", NULL, NULL), LOAM_E_NOTFOUND);
    }
    loam_st_close(st);
    free(f.b);
    free(h);
}

static void open_files(void) {
    make_tmpdir();
    char p[512];
    loam_st *st = NULL;
    loam_err e;
    snprintf(p, sizeof p, "%s/missing.safetensors", g_dir);
    CHECK_EQ_I64(loam_st_open(&st, p, &e), LOAM_E_IO);
    CHECK(st == NULL);
    CHECK(strstr(e.msg, p) && strstr(e.msg, "cannot open"));
    CHECK_EQ_I64(loam_st_open(&st, g_dir, &e), LOAM_E_IO);
    CHECK(strstr(e.msg, "not a regular file"));
    snprintf(p, sizeof p, "%s/empty.safetensors", g_dir);
    write_whole(p, "", 0);
    CHECK_EQ_I64(loam_st_open(&st, p, &e), LOAM_E_FORMAT);
    CHECK(strstr(e.msg, p) && strstr(e.msg, "file is 0 bytes"));
    snprintf(p, sizeof p, "%s/ok.safetensors", g_dir);
    buf f = mk(HDR_TEST_2X2, 16);
    write_whole(p, f.b, f.n);
    free(f.b);
    CHECK_OK(loam_st_open(&st, p, &e), e);
    CHECK_STR(loam_st_path(st), p);
    loam_tensor t;
    CHECK_OK(loam_st_find(st, "test", &t, &e), e);
    CHECK_EQ_I64(t.n_bytes, 16);
    loam_st_close(st);
    loam_st_close(NULL);
    rm_tmpdir();
}

static void alloc_failures(void) {
    buf f = mk("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"U8\",\"shape\":[2],"
               "\"data_offsets\":[0,2]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
               3);
    uint64_t base = loam_debug_bytes_in_use();
    int ok_at = 0;
    for (uint64_t n = 1; n < 50 && !ok_at; n++) {
        loam_debug_fail_alloc_after(n);
        loam_st *st = NULL;
        loam_err e;
        loam_status s = loam_st_open_memory(&st, f.b, f.n, "m", &e);
        loam_debug_fail_alloc_after(0);
        if (s == LOAM_OK) {
            ok_at = (int)n;
            loam_st_close(st);
        } else {
            CHECK_EQ_I64(s, LOAM_E_NOMEM);
            CHECK(st == NULL);
        }
        CHECK_EQ_I64(loam_debug_bytes_in_use(), base);
    }
    CHECK(ok_at > 1);
    free(f.b);
}

static void bad_arguments(void) {
    loam_st *st = NULL;
    loam_err e;
    CHECK_EQ_I64(loam_st_open_memory(&st, NULL, 5, "x", &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_open_memory(NULL, "", 0, "x", &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_open(&st, NULL, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_n_tensors(NULL), 0);
    CHECK(loam_st_path(NULL) == NULL);
}

// ---- writer -----------------------------------------------------------------------------------

static const float k_six[6] = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f};

static void check_file_bytes(const char *path, const uint8_t *want, size_t n) {
    buf got = read_whole(path);
    CHECK_EQ_I64(got.n, n);
    if (got.n == n) CHECK(memcmp(got.b, want, n) == 0);
    free(got.b);
}

static void ref_writer_serialization(void) {
    static const uint8_t want[] = {
        64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,
        123, 34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104,
        97,  112, 101, 34,  58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,
        95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125,
        0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,
        128, 64,  0,   0,   160, 64};
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/a.safetensors", g_dir);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    int64_t shape[3] = {1, 2, 3};
    CHECK_OK(loam_st_writer_add(w, "attn.0", LOAM_DTYPE_F32, 3, shape, k_six, &e), e);
    CHECK_EQ_I64(loam_st_writer_file_bytes(w), sizeof want);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    loam_st_writer_free(w);
    check_file_bytes(p, want, sizeof want);
    rm_tmpdir();
}

static void ref_writer_forced_alignment(void) {
    static const uint8_t want[] = {
        72,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123,
        34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,
        112, 101, 34,  58,  91,  49,  44,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116,
        97,  95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125,
        125, 32,  32,  32,  32,  32,  32,  32,  0,   0,   0,   0,   0,   0,   128, 63,  0,   0,
        0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/a.safetensors", g_dir);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    int64_t shape[4] = {1, 1, 2, 3};
    CHECK_OK(loam_st_writer_add(w, "attn0", LOAM_DTYPE_F32, 4, shape, k_six, &e), e);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    loam_st_writer_free(w);
    check_file_bytes(p, want, sizeof want);
    loam_st *st = NULL;
    CHECK_OK(loam_st_open(&st, p, &e), e);
    loam_tensor t;
    if (st && loam_st_tensor(st, 0, &t) == LOAM_OK) CHECK_EQ_I64((uintptr_t)t.data % 8, 0);
    loam_st_close(st);
    rm_tmpdir();
}

static void ref_writer_empty(void) {
    static const uint8_t want0[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const uint8_t want1[] = {40,  0,   0,   0,   0,   0,   0,   0,   123, 34,  95,  95,
                                    109, 101, 116, 97,  100, 97,  116, 97,  95,  95,  34,  58,
                                    123, 34,  102, 114, 97,  109, 101, 119, 111, 114, 107, 34,
                                    58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/e.safetensors", g_dir);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    check_file_bytes(p, want0, sizeof want0);
    CHECK_OK(loam_st_writer_set_metadata(w, "framework", "pt", &e), e);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    check_file_bytes(p, want1, sizeof want1);
    loam_st_writer_free(w);
    loam_st *st = NULL;
    CHECK_OK(loam_st_open(&st, p, &e), e);
    CHECK_STR(loam_st_metadata(st, "framework"), "pt");
    CHECK_EQ_I64(loam_st_n_tensors(st), 0);
    loam_st_close(st);
    CHECK_EQ_I64(count_dir_entries(g_dir), 1);
    rm_tmpdir();
}

typedef struct {
    int calls;
    uint8_t seed;
    int fail_on;
} fill_state;

static loam_status fill_pattern(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    fill_state *fs = user;
    fs->calls++;
    if (fs->fail_on && fs->calls == fs->fail_on)
        return loam__fail(err, LOAM_E_IO, "source went away");
    uint8_t *d = dst;
    for (uint64_t i = 0; i < n_bytes; i++) d[i] = (uint8_t)(fs->seed + i * 7);
    return LOAM_OK;
}

static void writer_round_trip(void) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/rt.safetensors", g_dir);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    CHECK_OK(loam_st_writer_set_metadata(w, "format", "pt", &e), e);
    CHECK_OK(loam_st_writer_set_metadata(w, "format", "mlx", &e), e); /* replaces */
    CHECK_OK(loam_st_writer_set_metadata(w, "quote\"key", "line\nvalue \xc3\xa9", &e), e);
    fill_state fa = {0, 3, 0}, fb = {0, 11, 0};
    int64_t s1[2] = {100, 33}, s2[1] = {5}, s3[2] = {4, 0}, s4[3] = {2, 3, 4};
    uint16_t bf[5] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0};
    float scalar = 42.0f;
    CHECK_OK(loam_st_writer_add_lazy(w, "model.big", LOAM_DTYPE_U32, 2, s1, fill_pattern, &fa, &e), e);
    CHECK_OK(loam_st_writer_add(w, "bf", LOAM_DTYPE_BF16, 1, s2, bf, &e), e);
    CHECK_OK(loam_st_writer_add(w, "empty", LOAM_DTYPE_F32, 2, s3, NULL, &e), e);
    CHECK_OK(loam_st_writer_add(w, "scalar", LOAM_DTYPE_F32, 0, NULL, &scalar, &e), e);
    CHECK_OK(loam_st_writer_add_lazy(w, "name \"with\" \\ esc\t", LOAM_DTYPE_F4, 3, s4, fill_pattern, &fb, &e), e);
    uint64_t want_bytes = loam_st_writer_file_bytes(w);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    CHECK_EQ_I64(fa.calls, 1);
    CHECK_EQ_I64(fb.calls, 1);
    loam_st_writer_free(w);
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (uint64_t)sb.st_size == want_bytes);
    CHECK_EQ_I64(count_dir_entries(g_dir), 1);

    loam_st *st = NULL;
    CHECK_OK(loam_st_open(&st, p, &e), e);
    if (st) {
        CHECK_EQ_I64(loam_st_header_bytes(st) % 8, 0);
        CHECK_EQ_I64(loam_st_n_tensors(st), 5);
        CHECK_STR(loam_st_metadata(st, "format"), "mlx");
        CHECK_STR(loam_st_metadata(st, "quote\"key"), "line\nvalue \xc3\xa9");
        const char *order[] = {"model.big", "bf", "empty", "scalar", "name \"with\" \\ esc\t"};
        for (size_t i = 0; i < 5; i++) {
            loam_tensor t;
            CHECK_EQ_I64(loam_st_tensor(st, i, &t), LOAM_OK);
            CHECK_STR(t.name, order[i]);
        }
        loam_tensor t;
        CHECK_OK(loam_st_find(st, "model.big", &t, &e), e);
        CHECK_EQ_I64(t.n_bytes, 100 * 33 * 4);
        CHECK_EQ_I64((uintptr_t)t.data % 8, 0);
        int bad = 0;
        for (uint64_t i = 0; i < t.n_bytes; i++)
            if (((const uint8_t *)t.data)[i] != (uint8_t)(3 + i * 7)) bad++;
        CHECK_EQ_I64(bad, 0);
        CHECK_OK(loam_st_find(st, "bf", &t, &e), e);
        CHECK(memcmp(t.data, bf, 10) == 0);
        CHECK_OK(loam_st_find(st, "empty", &t, &e), e);
        CHECK_EQ_I64(t.n_bytes, 0);
        CHECK_EQ_I64(t.shape[1], 0);
        CHECK_OK(loam_st_find(st, "scalar", &t, &e), e);
        CHECK_EQ_I64(t.n_dims, 0);
        CHECK_CLOSE(loam__rd_f32le(t.data), 42.0, 0);
        CHECK_OK(loam_st_find(st, "name \"with\" \\ esc\t", &t, &e), e);
        CHECK_EQ_I64(t.dtype, LOAM_DTYPE_F4);
        CHECK_EQ_I64(t.n_bytes, 12);
        CHECK_EQ_I64(((const uint8_t *)t.data)[1], 18);
    }
    loam_st_close(st);
    rm_tmpdir();
}

static void writer_rejects(void) {
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    int64_t s[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, neg[1] = {-1}, big[1] = {INT64_C(1) << 53},
            three[1] = {3};
    uint8_t d[8] = {0};
    CHECK_OK(loam_st_writer_add(w, "a", LOAM_DTYPE_U8, 1, s, d, &e), e);
    CHECK_EQ_I64(loam_st_writer_add(w, "a", LOAM_DTYPE_U8, 1, s, d, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "tensor 'a' added twice"));
    CHECK_EQ_I64(loam_st_writer_add(w, "__metadata__", LOAM_DTYPE_U8, 1, s, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "bad\xff", LOAM_DTYPE_U8, 1, s, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_INVALID, 1, s, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", (loam_dtype)999, 1, s, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_U8, 9, s, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_U8, -1, s, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_U8, 1, neg, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_U8, 1, big, d, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_F4, 1, three, d, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "not a whole number of bytes"));
    CHECK_EQ_I64(loam_st_writer_add(w, "b", LOAM_DTYPE_U8, 1, s, NULL, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_add_lazy(w, "b", LOAM_DTYPE_U8, 1, s, NULL, NULL, &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_set_metadata(w, "k", "\xc3", &e), LOAM_E_INVAL);
    CHECK_EQ_I64(loam_st_writer_set_metadata(w, NULL, "v", &e), LOAM_E_INVAL);
    loam_st_writer_free(w);
    loam_st_writer_free(NULL);
}

static void writer_failure_leaves_nothing(void) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/keep.safetensors", g_dir);
    write_whole(p, "original", 8);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    int64_t s[1] = {1000};
    fill_state f1 = {0, 1, 0}, f2 = {0, 2, 1};
    CHECK_OK(loam_st_writer_add_lazy(w, "one", LOAM_DTYPE_U8, 1, s, fill_pattern, &f1, &e), e);
    CHECK_OK(loam_st_writer_add_lazy(w, "two", LOAM_DTYPE_U8, 1, s, fill_pattern, &f2, &e), e);
    CHECK_EQ_I64(loam_st_writer_write(w, p, &e), LOAM_E_IO);
    CHECK(strstr(e.msg, p) && strstr(e.msg, "tensor 'two': source went away"));
    check_file_bytes(p, (const uint8_t *)"original", 8);
    CHECK_EQ_I64(count_dir_entries(g_dir), 1);
    /* an allocation failure (the lazy buffer or the header copy) behaves the same */
    uint64_t base = loam_debug_bytes_in_use();
    for (uint64_t n = 1; n <= 3; n++) {
        loam_debug_fail_alloc_after(n);
        loam_status st = loam_st_writer_write(w, p, &e);
        loam_debug_fail_alloc_after(0);
        CHECK(st == LOAM_E_NOMEM || st == LOAM_OK || st == LOAM_E_IO);
        CHECK_EQ_I64(loam_debug_bytes_in_use(), base);
        CHECK_EQ_I64(count_dir_entries(g_dir), 1);
    }
    loam_st_writer_free(w);
    /* a directory that does not exist: nothing is created anywhere */
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    char q[600];
    snprintf(q, sizeof q, "%s/no/such/dir/x.safetensors", g_dir);
    CHECK_EQ_I64(loam_st_writer_write(w, q, &e), LOAM_E_IO);
    CHECK(strstr(e.msg, "cannot create"));
    /* the target is a directory: rename fails, the temporary file is removed */
    snprintf(q, sizeof q, "%s/adir", g_dir);
    CHECK(mkdir(q, 0755) == 0);
    CHECK_EQ_I64(loam_st_writer_write(w, q, &e), LOAM_E_IO);
    CHECK(strstr(e.msg, "rename failed"));
    CHECK_EQ_I64(count_dir_entries(g_dir), 2);
    rmdir(q);
    loam_st_writer_free(w);
    rm_tmpdir();
}

static void writer_then_reader_matches_memory(void) {
    /* a file written by the writer opens the same way from memory and from disk */
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/m.safetensors", g_dir);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    int64_t s[2] = {2, 3};
    CHECK_OK(loam_st_writer_add(w, "x", LOAM_DTYPE_F32, 2, s, k_six, &e), e);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    loam_st_writer_free(w);
    buf f = read_whole(p);
    loam_st *a = OPEN_OK(f), *b = NULL;
    CHECK_OK(loam_st_open(&b, p, &e), e);
    loam_tensor ta, tb;
    if (a && b && loam_st_tensor(a, 0, &ta) == LOAM_OK && loam_st_tensor(b, 0, &tb) == LOAM_OK) {
        CHECK_EQ_I64(ta.n_bytes, tb.n_bytes);
        CHECK(memcmp(ta.data, tb.data, ta.n_bytes) == 0);
        CHECK(memcmp(ta.data, k_six, 24) == 0);
    }
    loam_st_close(a);
    loam_st_close(b);
    free(f.b);
    rm_tmpdir();
}

static void json_helpers(void) {
    cJSON *root = NULL;
    loam_err e;
    CHECK_OK(loam__json_parse("{\"a\":[1,2,{\"b\":null}],\"c\":-1.5e3}", 33, "t", &root, &e), e);
    cJSON_Delete(root);
    CHECK_EQ_I64(loam__json_parse("{\"a\":{\"b\":1,\"b\":2}}", 19, "t", &root, &e), LOAM_E_FORMAT);
    CHECK_STR(e.msg, "t: duplicate key \"b\"");
    CHECK(root == NULL);
    /* not NUL-terminated input is fine */
    CHECK_OK(loam__json_parse("[1]xxxx", 3, "t", &root, &e), e);
    cJSON_Delete(root);
    size_t at = 0;
    CHECK(loam__utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4, &at));
    CHECK(!loam__utf8_valid((const uint8_t *)"ab\xe0\x9f\x80", 5, &at) && at == 2);
}

static void run_tests(void) {
    TEST(ref_deserialization);
    TEST(ref_empty_shapes_allowed);
    TEST(ref_zero_sized_tensor);
    TEST(ref_invalid_info);
    TEST(ref_validation_overflow);
    TEST(ref_json_attack);
    TEST(ref_metadata_incomplete_buffer);
    TEST(ref_header_too_large);
    TEST(ref_header_too_small);
    TEST(ref_invalid_header_length);
    TEST(ref_invalid_header_non_utf8);
    TEST(ref_invalid_header_not_json);
    TEST(ref_whitespace_padded_header);
    TEST(ref_whitespace_leading_padded_header);
    TEST(rule1_too_small);
    TEST(rule2_header_too_large);
    TEST(rule3_header_past_end);
    TEST(rule4_utf8);
    TEST(rule5_json);
    TEST(rule5_schema);
    TEST(rule5_integers_below_2_53);
    TEST(rule5_max_dims);
    TEST(rule5_duplicate_keys);
    TEST(rule5_metadata);
    TEST(rule6_offsets);
    TEST(rule6_sizes);
    TEST(rule7_coverage);
    TEST(unaligned_mlx_style);
    TEST(find_many);
    TEST(open_files);
    TEST(alloc_failures);
    TEST(bad_arguments);
    TEST(ref_writer_serialization);
    TEST(ref_writer_forced_alignment);
    TEST(ref_writer_empty);
    TEST(writer_round_trip);
    TEST(writer_rejects);
    TEST(writer_failure_leaves_nothing);
    TEST(writer_then_reader_matches_memory);
    TEST(json_helpers);
}
