/* test_modeldir.c: model directories (src/modeldir.c): single and sharded layouts with and
 * without model.safetensors.index.json, one sorted name space, and every inconsistency between
 * the index and the shards reported with both files named. Directories are built in /tmp with
 * the safetensors writer. */
#define _POSIX_C_SOURCE 200809L
#include "../src/loam_internal.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static void new_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/loam_test_md_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
}

static void rm_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    rmdir(g_dir);
}

static void put_text(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A shard holding U8 tensors, each [2] with bytes {tag, tag + 1}, tag = first letter. */
static void put_shard(const char *file, const char *const *names, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, file);
    loam_st_writer *w = NULL;
    loam_err e;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    CHECK_OK(loam_st_writer_set_metadata(w, "format", "mlx", &e), e);
    static uint8_t data[256][2];
    int64_t shape[1] = {2};
    for (size_t i = 0; i < n; i++) {
        uint8_t tag = (uint8_t)names[i][0];
        data[tag][0] = tag;
        data[tag][1] = (uint8_t)(tag + 1);
        CHECK_OK(loam_st_writer_add(w, names[i], LOAM_DTYPE_U8, 1, shape, data[tag], &e), e);
    }
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    loam_st_writer_free(w);
}

static const char *const k_s1[] = {"model.embed_tokens.weight",
                                   "model.layers.0.mlp.up_proj.weight"};
static const char *const k_s2[] = {"model.layers.1.mlp.up_proj.weight", "lm_head.weight"};
static const char *const k_s3[] = {"model.norm.weight"};

#define F1 "model-00001-of-00003.safetensors"
#define F2 "model-00002-of-00003.safetensors"
#define F3 "model-00003-of-00003.safetensors"

static void put_three(void) {
    put_shard(F2, k_s2, 2);
    put_shard(F1, k_s1, 2);
    put_shard(F3, k_s3, 1);
}

static const char *k_index_ok =
    "{\"metadata\":{\"total_size\":10},\"weight_map\":{"
    "\"lm_head.weight\":\"" F2 "\","
    "\"model.embed_tokens.weight\":\"" F1 "\","
    "\"model.layers.0.mlp.up_proj.weight\":\"" F1 "\","
    "\"model.layers.1.mlp.up_proj.weight\":\"" F2 "\","
    "\"model.norm.weight\":\"" F3 "\"}}";

/* open must fail with `code` and a message containing every one of want[0..n). */
static void expect_open_fail_at(loam_status code, const char *const *want, size_t n, int line) {
    loam_modeldir *md = (loam_modeldir *)1;
    loam_err e = {LOAM_OK, ""};
    loam_status s = loam_modeldir_open(&md, g_dir, &e);
    int ok = s == code && md == NULL;
    for (size_t i = 0; i < n; i++) ok = ok && strstr(e.msg, want[i]) != NULL;
    if (!ok) {
        t_failed_checks++;
        fprintf(stderr, "%s:%d: %s: expected status %d with", __FILE__, line, t_current, (int)code);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " \"%s\"", want[i]);
        fprintf(stderr, "; got %d: %s\n", (int)s, e.msg);
        if (s == LOAM_OK) loam_modeldir_close(md);
    }
}
#define EXPECT_OPEN_FAIL(code, ...)                                                                \
    do {                                                                                           \
        const char *const w_[] = {__VA_ARGS__};                                                    \
        expect_open_fail_at((code), w_, sizeof w_ / sizeof w_[0], __LINE__);                       \
    } while (0)

static void check_three(const loam_modeldir *md) {
    CHECK_EQ_I64(loam_modeldir_n_shards(md), 3);
    CHECK_EQ_I64(loam_modeldir_n_tensors(md), 5);
    const char *sorted[] = {"lm_head.weight", "model.embed_tokens.weight",
                            "model.layers.0.mlp.up_proj.weight",
                            "model.layers.1.mlp.up_proj.weight", "model.norm.weight"};
    const size_t shard_of[] = {1, 0, 0, 1, 2};
    for (size_t i = 0; i < 5; i++) {
        loam_tensor t;
        size_t sh = 99;
        CHECK_EQ_I64(loam_modeldir_tensor(md, i, &t, &sh), LOAM_OK);
        CHECK_STR(t.name, sorted[i]);
        CHECK_EQ_I64(sh, shard_of[i]);
        CHECK_EQ_I64(((const uint8_t *)t.data)[0], (uint8_t)sorted[i][0]);
        loam_err e;
        loam_tensor u;
        CHECK_OK(loam_modeldir_find(md, sorted[i], &u, &e), e);
        CHECK(u.data == t.data);
    }
    loam_tensor t;
    CHECK_EQ_I64(loam_modeldir_tensor(md, 5, &t, NULL), LOAM_E_RANGE);
    loam_err e;
    CHECK_EQ_I64(loam_modeldir_find(md, "model.nope", &t, &e), LOAM_E_NOTFOUND);
    CHECK(strstr(e.msg, "no tensor named 'model.nope'") && strstr(e.msg, g_dir));
    CHECK(strstr(loam_st_path(loam_modeldir_shard(md, 0)), F1) != NULL);
    CHECK(strstr(loam_st_path(loam_modeldir_shard(md, 2)), F3) != NULL);
    CHECK(loam_modeldir_shard(md, 3) == NULL);
}

// ---- layouts that open ------------------------------------------------------------------------

static void single_file_with_config(void) {
    new_dir();
    const char *names[] = {"b", "a"};
    put_shard("model.safetensors", names, 2);
    put_text("config.json", "{\"model_type\":\"qwen3\"}");
    put_text("tokenizer.json", "{}");
    put_text("adapters.safetensors", "not a model file, ignored");
    put_text("xmodel.safetensors", "ignored too");
    loam_modeldir *md = NULL;
    loam_err e;
    CHECK_OK(loam_modeldir_open(&md, g_dir, &e), e);
    if (md) {
        CHECK_STR(loam_modeldir_path(md), g_dir);
        CHECK_STR(loam_modeldir_config_text(md), "{\"model_type\":\"qwen3\"}");
        CHECK(!loam_modeldir_has_index(md));
        CHECK_EQ_I64(loam_modeldir_n_shards(md), 1);
        CHECK_EQ_I64(loam_modeldir_n_tensors(md), 2);
        loam_tensor t;
        CHECK_EQ_I64(loam_modeldir_tensor(md, 0, &t, NULL), LOAM_OK);
        CHECK_STR(t.name, "a");
        CHECK_EQ_I64(loam_modeldir_find(md, "b", NULL, &e), LOAM_OK);
    }
    loam_modeldir_close(md);
    loam_modeldir_close(NULL);
    rm_dir();
}

static void sharded_without_index(void) {
    new_dir();
    put_three();
    loam_modeldir *md = NULL;
    loam_err e;
    CHECK_OK(loam_modeldir_open(&md, g_dir, &e), e);
    if (md) {
        CHECK(!loam_modeldir_has_index(md));
        CHECK(loam_modeldir_config_text(md) == NULL);
        check_three(md);
    }
    loam_modeldir_close(md);
    rm_dir();
}

static void sharded_with_index(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json", k_index_ok);
    loam_modeldir *md = NULL;
    loam_err e;
    char slash[300];
    snprintf(slash, sizeof slash, "%s//", g_dir); /* trailing slashes are dropped */
    CHECK_OK(loam_modeldir_open(&md, slash, &e), e);
    if (md) {
        CHECK(loam_modeldir_has_index(md));
        CHECK_STR(loam_modeldir_path(md), g_dir);
        check_three(md);
    }
    loam_modeldir_close(md);
    rm_dir();
}

// ---- every error ------------------------------------------------------------------------------

static void not_a_directory(void) {
    loam_modeldir *md = NULL;
    loam_err e;
    CHECK_EQ_I64(loam_modeldir_open(&md, "/nonexistent/loam/dir", &e), LOAM_E_IO);
    CHECK(strstr(e.msg, "/nonexistent/loam/dir"));
    new_dir();
    put_text("file", "x");
    char p[512];
    snprintf(p, sizeof p, "%s/file", g_dir);
    CHECK_EQ_I64(loam_modeldir_open(&md, p, &e), LOAM_E_IO);
    CHECK(strstr(e.msg, "not a directory"));
    CHECK_EQ_I64(loam_modeldir_open(&md, NULL, &e), LOAM_E_INVAL);
    rm_dir();
}

static void no_shards(void) {
    new_dir();
    put_text("config.json", "{}");
    EXPECT_OPEN_FAIL(LOAM_E_NOTFOUND, "no model*.safetensors shards");
    put_text("model.safetensors.index.json", "{\"weight_map\":{}}");
    EXPECT_OPEN_FAIL(LOAM_E_NOTFOUND, "no model*.safetensors shards");
    rm_dir();
}

static void duplicate_across_shards(void) {
    new_dir();
    put_three();
    const char *dup[] = {"model.norm.weight"};
    put_shard("model-00000-extra.safetensors", dup, 1);
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "tensor 'model.norm.weight' is in both",
                     "model-00000-extra.safetensors and " F3);
    rm_dir();
}

static void index_names_missing_shard(void) {
    new_dir();
    put_shard(F1, k_s1, 2);
    put_shard(F2, k_s2, 2);
    put_text("model.safetensors.index.json", k_index_ok);
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT,
                     "model.safetensors.index.json: names shard " F3 ", which is missing");
    rm_dir();
}

static void index_points_at_wrong_shard(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json",
             "{\"weight_map\":{\"lm_head.weight\":\"" F1 "\","
             "\"model.embed_tokens.weight\":\"" F1 "\","
             "\"model.layers.0.mlp.up_proj.weight\":\"" F1 "\","
             "\"model.layers.1.mlp.up_proj.weight\":\"" F2 "\","
             "\"model.norm.weight\":\"" F3 "\"}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "index.json: maps tensor 'lm_head.weight' to " F1,
                     "which does not contain it (it is in " F2 ")");
    rm_dir();
}

static void index_lists_absent_tensor(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json",
             "{\"weight_map\":{\"lm_head.weight\":\"" F2 "\","
             "\"model.embed_tokens.weight\":\"" F1 "\","
             "\"model.layers.0.mlp.up_proj.weight\":\"" F1 "\","
             "\"model.layers.1.mlp.up_proj.weight\":\"" F2 "\","
             "\"model.layers.2.mlp.up_proj.weight\":\"" F2 "\","
             "\"model.norm.weight\":\"" F3 "\"}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "maps tensor 'model.layers.2.mlp.up_proj.weight' to " F2
                                    ", which does not contain it");
    rm_dir();
}

static void tensor_missing_from_index(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json",
             "{\"weight_map\":{\"lm_head.weight\":\"" F2 "\","
             "\"model.embed_tokens.weight\":\"" F1 "\","
             "\"model.layers.1.mlp.up_proj.weight\":\"" F2 "\","
             "\"model.norm.weight\":\"" F3 "\"}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT,
                     "index.json: does not list tensor 'model.layers.0.mlp.up_proj.weight' of " F1);
    rm_dir();
}

static void shard_not_in_index(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json", k_index_ok);
    const char *x[] = {"zz"};
    put_shard("model-extra.safetensors", x, 1);
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT,
                     "model-extra.safetensors matches model*.safetensors but is not named in "
                     "model.safetensors.index.json");
    rm_dir();
}

static void bad_index_files(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../" F1 "\"}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "weight_map entry for tensor 'a' is not a plain file name");
    put_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":7}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "weight_map entry for tensor 'a' is not a plain file name");
    put_text("model.safetensors.index.json", "{\"metadata\":{}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "model.safetensors.index.json: no \"weight_map\" object");
    put_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"" F1 "\",}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "model.safetensors.index.json: invalid JSON");
    put_text("model.safetensors.index.json",
             "{\"weight_map\":{\"lm_head.weight\":\"" F2 "\",\"lm_head.weight\":\"" F2 "\"}}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "index.json: duplicate key \"lm_head.weight\"");
    rm_dir();
}

static void bad_config(void) {
    new_dir();
    put_three();
    put_text("config.json", "{\"hidden_size\": 4096,}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "config.json: invalid JSON");
    put_text("config.json", "[1]");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "config.json: not a JSON object");
    put_text("config.json", "{\"a\":1,\"a\":2}");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, "config.json: duplicate key \"a\"");
    rm_dir();
}

static void corrupt_shard(void) {
    new_dir();
    put_three();
    put_text(F2, "not a safetensors file");
    EXPECT_OPEN_FAIL(LOAM_E_FORMAT, F2 ": header length 7021991845529153390 exceeds the limit");
    rm_dir();
}

static void alloc_failures(void) {
    new_dir();
    put_three();
    put_text("model.safetensors.index.json", k_index_ok);
    put_text("config.json", "{}");
    uint64_t base = loam_debug_bytes_in_use();
    int ok_at = 0;
    for (uint64_t n = 1; n < 400 && !ok_at; n++) {
        loam_debug_fail_alloc_after(n);
        loam_modeldir *md = NULL;
        loam_err e;
        loam_status s = loam_modeldir_open(&md, g_dir, &e);
        loam_debug_fail_alloc_after(0);
        if (s == LOAM_OK) {
            ok_at = (int)n;
            loam_modeldir_close(md);
        } else {
            if (s != LOAM_E_NOMEM) fprintf(stderr, "n=%d: %s\n", (int)n, e.msg);
            CHECK_EQ_I64(s, LOAM_E_NOMEM);
        }
        CHECK_EQ_I64(loam_debug_bytes_in_use(), base);
    }
    CHECK(ok_at > 10);
    rm_dir();
}

static void run_tests(void) {
    TEST(single_file_with_config);
    TEST(sharded_without_index);
    TEST(sharded_with_index);
    TEST(not_a_directory);
    TEST(no_shards);
    TEST(duplicate_across_shards);
    TEST(index_names_missing_shard);
    TEST(index_points_at_wrong_shard);
    TEST(index_lists_absent_tensor);
    TEST(tensor_missing_from_index);
    TEST(shard_not_in_index);
    TEST(bad_index_files);
    TEST(bad_config);
    TEST(corrupt_shard);
    TEST(alloc_failures);
}
