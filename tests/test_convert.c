/* test_convert.c: loam_convert_quantize (`loam quantize`), loam_synth (`loam synth`) and the
 * mlx-lm directory writer behind both (src/convert.c, src/synth.c).
 *
 * - A hand-made Hugging Face directory with every special case (tied embeddings with a stale
 *   lm_head, a rotary inv_freq buffer, a Linear bias, a weight whose width is no multiple of the
 *   group size, f32 data cast to the config's float16, layers 2 and 10 for the order, side
 *   files) is converted with tiny shards; every output tensor is compared with what it must be
 *   (quantized words/scales/biases bit for bit against loam_quantize of the cast values), and
 *   the index, config.json text (sorted keys, Python float/escape style, quantization fields)
 *   and copied files are checked.
 * - Errors: non-empty destination, an already quantized source, bad parameters, a NaN in the
 *   source, cancellation through the progress callback.
 * - Python json.dump formatting of tricky values, against strings Python 3 prints.
 * - synth: every preset's shapes agree with its config; tiny loads; the same seed gives the same
 *   bytes; scales are finite and non-zero; dequantized weights have the planned spread; the
 *   float variant converts to the same layout as the quantized one.
 */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"
#include "json.h"
#include "quant.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- helpers ----------------------------------------------------------------------------------

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int exists(const char *dir, const char *name) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static char *read_text(const char *dir, const char *name) {
    char p[4096], *s = NULL;
    size_t len;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    loam_err e;
    if (loam__read_file(p, &s, &len, &e) != LOAM_OK) return NULL;
    return s;
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    loam_err e;
    CHECK_OK(loam__write_file_atomic(p, text, strlen(text), &e), e);
}

static uint64_t g_rng = 77;
static float rnd(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_rng >> 11) * 0x1p-53) - 0.5f;
}

// ---- a hand-made Hugging Face directory -------------------------------------------------------

typedef struct {
    const char *name;
    int64_t n, k; /* k = 0: 1-D [n] */
} src_tensor;

static const src_tensor k_src[] = {
    {"model.embed_tokens.weight", 8, 64},
    {"lm_head.weight", 8, 64}, /* tied: dropped */
    {"model.layers.10.self_attn.q_proj.weight", 4, 128},
    {"model.layers.2.self_attn.q_proj.weight", 4, 128},
    {"model.layers.2.self_attn.q_proj.bias", 4, 0},
    {"model.layers.2.self_attn.rotary_emb.inv_freq", 16, 0}, /* dropped */
    {"model.layers.2.mlp.odd.weight", 3, 96},                /* 96 % 64: stays float */
    {"model.norm.weight", 64, 0},
};
#define N_SRC (sizeof k_src / sizeof k_src[0])
static float *g_src[N_SRC];

static const char *k_config =
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"_name_or_path\": \"somewhere/else\", "
    "\"torch_dtype\": \"float16\", \"tie_word_embeddings\": true, \"attention_dropout\": 0.0, "
    "\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000, \"note\": \"na\xc3\xafve \xf0\x9f\x98\x80\", "
    "\"rope_scaling\": {\"factor\": 8.0, \"rope_type\": \"llama3\"}, \"empty\": [], "
    "\"eos_token_id\": [1, 2]}";

/* poison: put a NaN into the file's layers.2 q_proj (g_src keeps the clean values). */
static void make_source(const char *dir, int poison) {
    loam_err e = {0};
    mkdir(dir, 0755);
    loam_st_writer *w = NULL;
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    for (size_t i = 0; i < N_SRC; i++) {
        int64_t n = k_src[i].n, k = k_src[i].k ? k_src[i].k : 1;
        if (!g_src[i]) {
            g_src[i] = loam__malloc(sizeof(float) * (size_t)(n * k));
            for (int64_t j = 0; j < n * k; j++) g_src[i][j] = 0.1f * rnd();
        }
        int64_t shape[2] = {n, k_src[i].k};
        CHECK_OK(loam_st_writer_add(w, k_src[i].name, LOAM_DTYPE_F32, k_src[i].k ? 2 : 1, shape,
                                    g_src[i], &e), e);
    }
    float saved = g_src[3][5];
    if (poison) g_src[3][5] = NAN;
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(loam_st_writer_write(w, p, &e), e);
    g_src[3][5] = saved;
    loam_st_writer_free(w);
    write_text(dir, "config.json", k_config);
    write_text(dir, "tokenizer.json", "{}");
    write_text(dir, "generation_config.json", "{\"eos_token_id\": [1, 2]}");
    write_text(dir, "helper.py", "# code\n");
    write_text(dir, "README.md", "card\n");
}

static int src_index(const char *name) {
    for (size_t i = 0; i < N_SRC; i++)
        if (strcmp(k_src[i].name, name) == 0) return (int)i;
    return -1;
}

static float to_f16(float v) { return loam__f16_to_f32(loam__f32_to_f16(v)); }

static void test_convert_handmade(void) {
    char src[] = "/tmp/loam-conv-src-XXXXXX", dst[] = "/tmp/loam-conv-dst-XXXXXX";
    CHECK(mkdtemp(src) && mkdtemp(dst));
    make_source(src, 0);
    loam_convert_params p = loam_convert_params_default();
    p.max_shard_bytes = 600; /* several shards */
    loam_err e = {0};
    CHECK_OK(loam_convert_quantize(src, dst, &p, &e), e);

    loam_modeldir *md = NULL;
    CHECK_OK(loam_modeldir_open(&md, dst, &e), e);
    if (!md) return;
    CHECK(loam_modeldir_has_index(md));
    size_t n_sh = loam_modeldir_n_shards(md);
    CHECK(n_sh >= 3);
    char want[64];
    snprintf(want, sizeof want, "model-00001-of-%05zu.safetensors", n_sh);
    CHECK(exists(dst, want));
    for (size_t i = 0; i < n_sh; i++) CHECK_STR(loam_st_metadata(loam_modeldir_shard(md, i), "format"), "mlx");
    /* tensors: 3 quantized weights × 3, bias, odd weight, norm */
    CHECK_EQ_I64(loam_modeldir_n_tensors(md), 12);
    CHECK(loam_modeldir_find(md, "lm_head.weight", NULL, NULL) == LOAM_E_NOTFOUND);
    CHECK(loam_modeldir_find(md, "model.layers.2.self_attn.rotary_emb.inv_freq", NULL, NULL) ==
          LOAM_E_NOTFOUND);
    uint64_t total = 0;
    for (size_t i = 0; i < loam_modeldir_n_tensors(md); i++) {
        loam_tensor t;
        CHECK_OK(loam_modeldir_tensor(md, i, &t, NULL), e);
        total += t.n_bytes;
        char base[256];
        snprintf(base, sizeof base, "%s", t.name);
        char *dot = strrchr(base, '.');
        const char *part = dot ? dot + 1 : "";
        if (dot) *dot = '\0';
        char wname[300];
        snprintf(wname, sizeof wname, "%s.weight", base);
        int si = src_index(t.name);
        if (si >= 0 && t.dtype != LOAM_DTYPE_U32) { /* a float tensor: cast to f16 */
            CHECK(t.dtype == LOAM_DTYPE_F16);
            for (uint64_t j = 0; j < t.n_elements; j++)
                CHECK(loam__load_float(t.data, LOAM_DTYPE_F16, j) == to_f16(g_src[si][j]));
            continue;
        }
        si = src_index(wname);
        CHECK(si >= 0);
        if (si < 0) continue;
        int64_t n = k_src[si].n, k = k_src[si].k;
        loam_qformat f = {4, 64, LOAM_DTYPE_F16};
        float *cast = loam__malloc(sizeof(float) * (size_t)(n * k));
        uint8_t *wq = loam__malloc((size_t)loam_qweight_bytes(f, n, k));
        uint8_t *sc = loam__malloc((size_t)loam_qscale_bytes(f, n, k)), *bi = loam__malloc((size_t)loam_qscale_bytes(f, n, k));
        for (int64_t j = 0; j < n * k; j++) cast[j] = to_f16(g_src[si][j]);
        CHECK_OK(loam_quantize(cast, n, k, f, wq, sc, bi, &e), e);
        if (strcmp(part, "weight") == 0) {
            CHECK(t.dtype == LOAM_DTYPE_U32 && t.shape[0] == n && t.shape[1] == k / 8);
            CHECK(memcmp(t.data, wq, (size_t)t.n_bytes) == 0);
        } else {
            CHECK(t.dtype == LOAM_DTYPE_F16 && t.shape[0] == n && t.shape[1] == k / 64);
            CHECK(memcmp(t.data, strcmp(part, "scales") == 0 ? sc : bi, (size_t)t.n_bytes) == 0);
        }
        loam__free(cast);
        loam__free(wq);
        loam__free(sc);
        loam__free(bi);
    }
    /* natural order: layer 2 is written before layer 10 */
    loam_tensor t2 = {0}, t10 = {0};
    size_t s2 = 0, s10 = 0;
    for (size_t i = 0; i < loam_modeldir_n_tensors(md); i++) {
        loam_tensor t;
        size_t sh;
        loam_modeldir_tensor(md, i, &t, &sh);
        if (strcmp(t.name, "model.layers.2.self_attn.q_proj.weight") == 0) t2 = t, s2 = sh;
        if (strcmp(t.name, "model.layers.10.self_attn.q_proj.weight") == 0) t10 = t, s10 = sh;
    }
    CHECK(s2 < s10 || (s2 == s10 && (const uint8_t *)t2.data < (const uint8_t *)t10.data));
    loam_modeldir_close(md);

    /* index: metadata and sorted weight map */
    char *idx = read_text(dst, "model.safetensors.index.json");
    CHECK(idx != NULL);
    if (idx) {
        cJSON *j = cJSON_Parse(idx);
        const cJSON *meta = cJSON_GetObjectItem(j, "metadata");
        CHECK_EQ_I64(cJSON_GetObjectItem(meta, "total_size")->valuedouble, total);
        /* embed 8*64 + q 2*4*128 + bias 4 + odd 3*96 + norm 64 */
        CHECK_EQ_I64(cJSON_GetObjectItem(meta, "total_parameters")->valuedouble,
                     8 * 64 + 2 * 4 * 128 + 4 + 3 * 96 + 64);
        const cJSON *prev = NULL;
        for (const cJSON *c = cJSON_GetObjectItem(j, "weight_map")->child; c; prev = c, c = c->next)
            if (prev) CHECK(strcmp(prev->string, c->string) < 0);
        cJSON_Delete(j);
        CHECK(strncmp(idx, "{\n    \"metadata\": {\n        \"total_size\": ", 41) == 0);
    }
    loam__free(idx);
    /* config: sorted, Python style, quantization fields, _name_or_path gone */
    char *cfg = read_text(dst, "config.json");
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(strstr(cfg, "\"_name_or_path\"") == NULL);
        CHECK(strstr(cfg, "    \"attention_dropout\": 0.0,\n") != NULL);
        CHECK(strstr(cfg, "    \"rms_norm_eps\": 1e-06,\n") != NULL);
        CHECK(strstr(cfg, "    \"rope_theta\": 1000000,\n") != NULL);
        CHECK(strstr(cfg, "        \"factor\": 8.0,\n") != NULL);
        CHECK(strstr(cfg, "    \"empty\": [],\n") != NULL);
        CHECK(strstr(cfg, "\"na\\u00efve \\ud83d\\ude00\"") != NULL);
        CHECK(strstr(cfg, "    \"quantization\": {\n        \"group_size\": 64,\n        \"bits\": 4,\n"
                          "        \"mode\": \"affine\"\n    },\n") != NULL);
        CHECK(strstr(cfg, "    \"quantization_config\": {\n        \"group_size\": 64,") != NULL);
        const char *a = strstr(cfg, "\"architectures\""), *b = strstr(cfg, "\"attention_dropout\""),
                   *c = strstr(cfg, "\"tie_word_embeddings\""), *d = strstr(cfg, "\"torch_dtype\"");
        CHECK(a && b && c && d && a < b && b < c && c < d);
        CHECK(cfg[strlen(cfg) - 1] == '}');
    }
    loam__free(cfg);
    CHECK(exists(dst, "tokenizer.json") && exists(dst, "generation_config.json") &&
          exists(dst, "helper.py"));
    CHECK(!exists(dst, "README.md"));

    /* errors */
    CHECK(loam_convert_quantize(src, dst, &p, &e) == LOAM_E_INVAL); /* dst not empty */
    CHECK(strstr(e.msg, "not empty") != NULL);
    char dst2[] = "/tmp/loam-conv-dst2-XXXXXX";
    CHECK(mkdtemp(dst2) != NULL);
    CHECK(loam_convert_quantize(dst, dst2, &p, &e) == LOAM_E_UNSUPPORTED); /* already quantized */
    p.bits = 7;
    CHECK(loam_convert_quantize(src, dst2, &p, &e) == LOAM_E_INVAL);
    p = loam_convert_params_default();
    p.dtype = LOAM_DTYPE_I8;
    CHECK(loam_convert_quantize(src, dst2, &p, &e) == LOAM_E_INVAL);
    rm_rf(dst2);
    rm_rf(dst);
    rm_rf(src);
}

static bool cancel_at_half(void *user, uint64_t done, uint64_t total) {
    (*(int *)user)++;
    return done * 2 < total;
}

static void test_convert_errors(void) {
    char src[] = "/tmp/loam-conv-src-XXXXXX", dst[] = "/tmp/loam-conv-dst-XXXXXX";
    CHECK(mkdtemp(src) && mkdtemp(dst));
    make_source(src, 1);
    loam_err e = {0};
    CHECK(loam_convert_quantize(src, dst, NULL, &e) == LOAM_E_FORMAT);
    CHECK(strstr(e.msg, "model.layers.2.self_attn.q_proj.weight") != NULL);
    CHECK(strstr(e.msg, "not finite") != NULL);
    rm_rf(dst);
    rm_rf(src);
    char src2[] = "/tmp/loam-conv-src-XXXXXX", dst2[] = "/tmp/loam-conv-dst-XXXXXX";
    CHECK(mkdtemp(src2) && mkdtemp(dst2));
    make_source(src2, 0);
    loam_convert_params p = loam_convert_params_default();
    int calls = 0;
    p.progress = cancel_at_half;
    p.progress_user = &calls;
    CHECK(loam_convert_quantize(src2, dst2, &p, &e) == LOAM_E_CANCELLED);
    CHECK(calls > 1);
    CHECK(!exists(dst2, "model.safetensors"));
    CHECK(loam_convert_quantize("/nonexistent/loam", dst2, NULL, &e) != LOAM_OK);
    rm_rf(dst2);
    rm_rf(src2);
}

// ---- Python json.dump -------------------------------------------------------------------------

static void check_dump(const char *in, const char *want) {
    loam_err e = {0};
    cJSON *v = NULL;
    loam__numkinds k = {0};
    CHECK_OK(loam__json_parse(in, strlen(in), "test", &v, &e), e);
    CHECK_OK(loam__json_number_kinds(in, strlen(in), v, &k, &e), e);
    char *got = loam__json_dump_py(v, 1, &k);
    CHECK_STR(got, want);
    loam__free(got);
    loam__numkinds_free(&k);
    cJSON_Delete(v);
}

static void test_json_dump_py(void) {
    /* what python3 -c 'import json; print(json.dumps(json.loads(S), indent=4, sort_keys=...))'
     * prints (top level sorted as mlx-lm's save_config does) */
    check_dump("[1e-06, 1E16, 0.1, 100.0, 1.5e-10, 123456789.123, 0.0001, 0.00001, -0.0, 3, -7, "
               "2.5e300, 1e22]",
               "[\n    1e-06,\n    1e+16,\n    0.1,\n    100.0,\n    1.5e-10,\n    123456789.123,\n"
               "    0.0001,\n    1e-05,\n    -0.0,\n    3,\n    -7,\n    2.5e+300,\n    1e+22\n]");
    check_dump("{\"b\": {\"z\": 1, \"a\": [true, false, null, {}]}, \"a\": \"tab\\t\\\"q\\\" \\u00e9 /\"}",
               "{\n    \"a\": \"tab\\t\\\"q\\\" \\u00e9 /\",\n    \"b\": {\n        \"z\": 1,\n"
               "        \"a\": [\n            true,\n            false,\n            null,\n"
               "            {}\n        ]\n    }\n}");
    check_dump("\"\\ud83d\\ude00\\u0001\\u007f\"", "\"\\ud83d\\ude00\\u0001\x7f\"");
}

// ---- synth ------------------------------------------------------------------------------------

static void test_synth_presets(void) {
    size_t n = 0;
    while (loam_synth_preset(n)) n++;
    CHECK_EQ_I64(n, 7);
    CHECK_STR(loam_synth_preset(0), "tiny");
    CHECK(loam_synth_preset(7) == NULL);
    /* parameter counts of the real models as mlx-lm counts them (Hugging Face safetensors
     * totals; Qwen3-1.7B's checkpoint also stores its tied lm_head, 311,164,928 more, which
     * mlx-lm drops) */
    static const struct { const char *name; uint64_t params; } real[] = {
        {"qwen3-0.6b", 596049920ull}, {"qwen3-1.7b", 1720574976ull}, {"qwen3-4b", 4022468096ull},
        {"qwen3-8b", 8190735360ull}, {"qwen3-14b", 14768307200ull}, {"llama3-8b", 8030261248ull},
    };
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        uint64_t params = 0, bytes = 0;
        loam_err e = {0};
        CHECK_OK(loam__synth_size(real[i].name, 4, 64, &params, &bytes, &e), e);
        if (params != real[i].params)
            fprintf(stderr, "%s: %llu parameters, want %llu\n", real[i].name,
                    (unsigned long long)params, (unsigned long long)real[i].params);
        CHECK_EQ_I64(params, real[i].params);
        if (i == 3) CHECK(bytes > 4600000000ull && bytes < 4620000000ull); /* 4.61 GB */
        uint64_t fparams = 0, fbytes = 0;
        CHECK_OK(loam__synth_size(real[i].name, 0, 64, &fparams, &fbytes, &e), e);
        CHECK_EQ_I64(fparams, real[i].params);
        CHECK_EQ_I64(fbytes, 2 * real[i].params); /* bf16 */
    }
    loam_err e = {0};
    char d[] = "/tmp/loam-synth-XXXXXX";
    CHECK(mkdtemp(d) != NULL);
    CHECK(loam_synth("nonsense", d, NULL, &e) == LOAM_E_NOTFOUND);
    loam_synth_params p = loam_synth_params_default();
    p.bits = 5;
    CHECK(loam_synth("tiny", d, &p, &e) == LOAM_OK);
    loam_modeldir *md = NULL;
    CHECK_OK(loam_modeldir_open(&md, d, &e), e);
    if (md) {
        loam_tensor t;
        CHECK_OK(loam_modeldir_find(md, "model.layers.1.mlp.down_proj.weight", &t, &e), e);
        CHECK(t.dtype == LOAM_DTYPE_U32 && t.shape[0] == 128 && t.shape[1] == 256 * 5 / 32);
        loam_tensor sc, bi;
        CHECK_OK(loam_modeldir_find(md, "model.layers.1.mlp.down_proj.scales", &sc, &e), e);
        CHECK_OK(loam_modeldir_find(md, "model.layers.1.mlp.down_proj.biases", &bi, &e), e);
        CHECK(sc.dtype == LOAM_DTYPE_BF16 && sc.shape[1] == 4);
        /* dequantized weights: finite, centred, spread near 0.02 */
        loam__qmat W = {LOAM_DTYPE_U32, {5, 64, LOAM_DTYPE_BF16}, t.data, sc.data, bi.data, 128, 256};
        float row[256];
        double s1 = 0, s2 = 0;
        for (int64_t r = 0; r < 128; r++) {
            loam__qmat_row(&W, r, row);
            for (int j = 0; j < 256; j++) {
                CHECK(isfinite(row[j]));
                s1 += row[j];
                s2 += (double)row[j] * row[j];
            }
        }
        double mean = s1 / (128 * 256), sd = sqrt(s2 / (128 * 256) - mean * mean);
        CHECK(fabs(mean) < 0.005 && sd > 0.01 && sd < 0.04);
        for (uint64_t i = 0; i < sc.n_elements; i++) {
            float v = loam__load_float(sc.data, LOAM_DTYPE_BF16, i);
            CHECK(isfinite(v) && v != 0.0f);
        }
        CHECK_OK(loam_modeldir_find(md, "model.norm.weight", &t, &e), e);
        for (uint64_t i = 0; i < t.n_elements; i++)
            CHECK(fabsf(loam__load_float(t.data, LOAM_DTYPE_BF16, i) - 1.0f) <= 0.06f);
        CHECK(strstr(loam_modeldir_config_text(md), "\"bits\": 5") != NULL);
        loam_modeldir_close(md);
    }
    rm_rf(d);
}

static char *shard_bytes(const char *dir, size_t *len) {
    char p[4096], *s = NULL;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    loam_err e;
    if (loam__read_file(p, &s, len, &e) != LOAM_OK) return NULL;
    return s;
}

static void test_synth_seed_and_float(void) {
    char a[] = "/tmp/loam-synth-a-XXXXXX", b[] = "/tmp/loam-synth-b-XXXXXX",
         c[] = "/tmp/loam-synth-c-XXXXXX", f[] = "/tmp/loam-synth-f-XXXXXX",
         q[] = "/tmp/loam-synth-q-XXXXXX";
    CHECK(mkdtemp(a) && mkdtemp(b) && mkdtemp(c) && mkdtemp(f) && mkdtemp(q));
    loam_err e = {0};
    loam_synth_params p = loam_synth_params_default();
    CHECK_OK(loam_synth("tiny", a, &p, &e), e);
    CHECK_OK(loam_synth("tiny", b, &p, &e), e);
    p.seed = 2;
    CHECK_OK(loam_synth("tiny", c, &p, &e), e);
    size_t la = 0, lb = 0, lc = 0;
    char *sa = shard_bytes(a, &la), *sb = shard_bytes(b, &lb), *sc = shard_bytes(c, &lc);
    CHECK(sa && sb && sc && la == lb && la == lc);
    if (sa && sb && sc) {
        CHECK(memcmp(sa, sb, la) == 0);
        CHECK(memcmp(sa, sc, la) != 0);
    }
    loam__free(sa);
    loam__free(sb);
    loam__free(sc);
    /* the float variant quantizes into the same layout as the quantized one */
    p.bits = 0;
    CHECK_OK(loam_synth("tiny", f, &p, &e), e);
    CHECK_OK(loam_convert_quantize(f, q, NULL, &e), e);
    loam_modeldir *ma = NULL, *mq = NULL, *mf = NULL;
    CHECK_OK(loam_modeldir_open(&ma, a, &e), e);
    CHECK_OK(loam_modeldir_open(&mq, q, &e), e);
    CHECK_OK(loam_modeldir_open(&mf, f, &e), e);
    if (ma && mq && mf) {
        CHECK(strstr(loam_modeldir_config_text(mf), "quantization") == NULL);
        CHECK_STR(loam_st_metadata(loam_modeldir_shard(mf, 0), "format"), "pt");
        CHECK_EQ_I64(loam_modeldir_n_tensors(ma), loam_modeldir_n_tensors(mq));
        for (size_t i = 0; i < loam_modeldir_n_tensors(ma); i++) {
            loam_tensor ta, tq;
            loam_modeldir_tensor(ma, i, &ta, NULL);
            loam_modeldir_tensor(mq, i, &tq, NULL);
            CHECK_STR(ta.name, tq.name);
            CHECK(ta.dtype == tq.dtype && ta.n_dims == tq.n_dims && ta.shape[0] == tq.shape[0] &&
                  ta.shape[1] == tq.shape[1]);
        }
        CHECK_STR(loam_modeldir_config_text(ma), loam_modeldir_config_text(mq));
    }
    loam_modeldir_close(ma);
    loam_modeldir_close(mq);
    loam_modeldir_close(mf);
    rm_rf(a);
    rm_rf(b);
    rm_rf(c);
    rm_rf(f);
    rm_rf(q);
}

static void run_tests(void) {
    TEST(test_json_dump_py);
    TEST(test_convert_handmade);
    TEST(test_convert_errors);
    TEST(test_synth_presets);
    TEST(test_synth_seed_and_float);
    for (size_t i = 0; i < N_SRC; i++) loam__free(g_src[i]);
}
