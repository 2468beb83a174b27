/* test_fuse.c: loam_fuse on small model directories written here.
 *
 * A 2-layer model (hidden 64) with 4-bit group-32 projections, one 8-bit group-64 per-layer
 * override, a quantized embedding, a dense bf16 lm_head and bf16 norms; adapters in mlx-lm
 * and PEFT form. What is checked, against values computed here in double precision:
 *   - adapted weights: dequantize(fused) is within one quantization step (|scale| of its group,
 *     the MLX round-trip bound) of W + s·(A·B)ᵀ, and much closer to it than the base was;
 *     with --dequantize, equal to it within bf16 rounding; DoRA rows have norm m;
 *   - every other tensor is byte-identical (or, dequantized, exactly the dequantized base);
 *   - config.json: sorted, indent 4, ASCII-escaped, _name_or_path dropped, quantization_config
 *     a copy of quantization (both gone with --dequantize); the index: every tensor, sizes;
 *   - other files copied; the output appears whole or not at all (errors leave nothing,
 *     including under allocation failures).
 * End to end on the reference fixtures (tests/data/models, transformers logits with the LoRA
 * delta in fp32): logits of the fused model, re-quantized and dequantized, against runtime
 * LoRA on the base and against the reference. Dequantized fusing matches runtime LoRA to bf16
 * rounding; re-quantizing costs more (set LOAM_TEST_VERBOSE=1 for the figures).
 */
#define _POSIX_C_SOURCE 200809L
#include "json.h"
#include "lora.h"

#include "test.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#define NL    2
#define H     64
#define VOCAB 40
static const int64_t g_in[LOAM__N_MOD] = {H, H, H, H, H, H, 96};
static const int64_t g_out[LOAM__N_MOD] = {H, 32, 32, H, 96, 96, H};

static char g_root[64];

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static float frand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) * 0x1.0p-52 - 1.0);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// ---- the base model ---------------------------------------------------------------------------

/* Float weights of every projection, the embedding and lm_head, as the test knows them. */
static float *g_wf[NL][LOAM__N_MOD], *g_emb, *g_head;

static loam_qformat fmt_of(int l, int m) {
    if (l == 1 && m == LOAM__MOD_DOWN)
        return (loam_qformat){8, 32, LOAM_DTYPE_BF16};
    return (loam_qformat){4, 32, LOAM_DTYPE_BF16};
}

typedef struct blob {
    void *p[128];
    int n;
} blob;

static void *keep(blob *b, void *p) {
    b->p[b->n++] = p;
    return p;
}

static void add_quantized(loam_st_writer *w, blob *b, const char *prefix, const float *wf,
                          int64_t n, int64_t k, loam_qformat fmt) {
    loam_err e = {0};
    uint64_t wb = loam_qweight_bytes(fmt, n, k), sb = loam_qscale_bytes(fmt, n, k);
    void *wq = keep(b, malloc(wb)), *sc = keep(b, malloc(sb)), *bi = keep(b, malloc(sb));
    CHECK_OK(loam_quantize(wf, n, k, fmt, wq, sc, bi, &e), e);
    char name[160];
    int64_t shw[2] = {n, k * fmt.bits / 32}, shs[2] = {n, k / fmt.group_size};
    snprintf(name, sizeof name, "%s.weight", prefix);
    CHECK_OK(loam_st_writer_add(w, name, LOAM_DTYPE_U32, 2, shw, wq, &e), e);
    snprintf(name, sizeof name, "%s.scales", prefix);
    CHECK_OK(loam_st_writer_add(w, name, LOAM_DTYPE_BF16, 2, shs, sc, &e), e);
    snprintf(name, sizeof name, "%s.biases", prefix);
    CHECK_OK(loam_st_writer_add(w, name, LOAM_DTYPE_BF16, 2, shs, bi, &e), e);
}

static void add_float(loam_st_writer *w, blob *b, const char *name, loam_dtype dt, const float *v,
                      int32_t n_dims, int64_t d0, int64_t d1) {
    loam_err e = {0};
    int64_t n = n_dims == 1 ? d0 : d0 * d1, sh[2] = {d0, d1};
    void *buf = keep(b, malloc((size_t)n * (size_t)(loam_dtype_bits(dt) / 8)));
    for (int64_t i = 0; i < n; i++)
        loam__store_float(buf, dt, (size_t)i, v ? v[i] : 1.0f);
    CHECK_OK(loam_st_writer_add(w, name, dt, n_dims, sh, buf, &e), e);
}

static const char *CONFIG =
    "{\"model_type\": \"qwen3\", \"num_hidden_layers\": 2, \"hidden_size\": 64,"
    " \"_name_or_path\": \"somewhere\", \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000,"
    " \"initializer_range\": 0.02, \"note\": \"\xc3\xbc \\\"q\\\" \\u00e9\xf0\x9f\x98\x80\","
    " \"tie_word_embeddings\": false, \"architectures\": [\"Qwen3ForCausalLM\"], \"empty\": {},"
    " \"quantization\": {\"group_size\": 32, \"bits\": 4, \"mode\": \"affine\","
    " \"model.layers.1.mlp.down_proj\": {\"group_size\": 32, \"bits\": 8}},"
    " \"quantization_config\": {\"group_size\": 32, \"bits\": 4}}";

/* model dir: quantized (dense = false) or every projection dense F16 (dense = true) */
static void write_model(const char *dir, bool dense) {
    mkdir(dir, 0755);
    loam_st_writer *w = NULL;
    loam_err e = {0};
    blob b = {0};
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    char name[160];
    if (dense)
        add_float(w, &b, "model.embed_tokens.weight", LOAM_DTYPE_F16, g_emb, 2, VOCAB, H);
    else
        add_quantized(w, &b, "model.embed_tokens", g_emb, VOCAB, H, fmt_of(0, 0));
    for (int l = 0; l < NL; l++) {
        for (int m = 0; m < LOAM__N_MOD; m++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, loam__mod_path[m]);
            if (dense) {
                char wn[180];
                snprintf(wn, sizeof wn, "%s.weight", name);
                add_float(w, &b, wn, LOAM_DTYPE_F16, g_wf[l][m], 2, g_out[m], g_in[m]);
            } else {
                add_quantized(w, &b, name, g_wf[l][m], g_out[m], g_in[m], fmt_of(l, m));
            }
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add_float(w, &b, name, LOAM_DTYPE_BF16, NULL, 1, H, 0);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
        add_float(w, &b, name, LOAM_DTYPE_BF16, NULL, 1, 16, 0);
    }
    add_float(w, &b, "model.norm.weight", LOAM_DTYPE_BF16, NULL, 1, H, 0);
    add_float(w, &b, "lm_head.weight", LOAM_DTYPE_BF16, g_head, 2, VOCAB, H);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(loam_st_writer_write(w, path, &e), e);
    loam_st_writer_free(w);
    for (int i = 0; i < b.n; i++)
        free(b.p[i]);
    if (dense) {
        write_text(dir, "config.json", "{\"num_hidden_layers\": 2, \"torch_dtype\": \"float16\"}");
    } else {
        write_text(dir, "config.json", CONFIG);
    }
    write_text(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}\n");
    write_text(dir, "generation_config.json", "{\"eos_token_id\": [1, 2]}\n");
}

// ---- adapters ---------------------------------------------------------------------------------

#define R 4
static float g_a[NL][LOAM__N_MOD][96 * R], g_b[NL][LOAM__N_MOD][R * 96], g_m[H];
static const float S = 2.0f;

typedef struct which {
    int l, m;
} which;
static const which g_adapted[4] = {
    {0, LOAM__MOD_Q}, {1, LOAM__MOD_Q}, {0, LOAM__MOD_V}, {1, LOAM__MOD_DOWN}};

static void write_adapter(const char *dir, bool peft, bool dora, bool lora_bias) {
    mkdir(dir, 0755);
    loam_st_writer *w = NULL;
    loam_err e = {0};
    blob b = {0};
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    for (int i = 0; i < 4; i++) {
        int l = g_adapted[i].l, m = g_adapted[i].m;
        char name[160];
        const char *mp = loam__mod_path[m];
        if (!peft) {
            snprintf(name, sizeof name, "model.layers.%d.%s.lora_a", l, mp);
            add_float(w, &b, name, LOAM_DTYPE_F32, g_a[l][m], 2, g_in[m], R);
            snprintf(name, sizeof name, "model.layers.%d.%s.lora_b", l, mp);
            add_float(w, &b, name, LOAM_DTYPE_F32, g_b[l][m], 2, R, g_out[m]);
            if (dora && i == 0) {
                snprintf(name, sizeof name, "model.layers.%d.%s.m", l, mp);
                add_float(w, &b, name, LOAM_DTYPE_F32, g_m, 1, g_out[m], 0);
            }
        } else {
            float *at = keep(&b, malloc(sizeof g_a[l][m])),
                  *bt = keep(&b, malloc(sizeof g_b[l][m]));
            for (int64_t x = 0; x < g_in[m]; x++)
                for (int j = 0; j < R; j++)
                    at[j * g_in[m] + x] = g_a[l][m][x * R + j];
            for (int j = 0; j < R; j++)
                for (int64_t o = 0; o < g_out[m]; o++)
                    bt[o * R + j] = g_b[l][m][j * g_out[m] + o];
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_A.weight", l, mp);
            add_float(w, &b, name, LOAM_DTYPE_F32, at, 2, R, g_in[m]);
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.weight", l, mp);
            add_float(w, &b, name, LOAM_DTYPE_F32, bt, 2, g_out[m], R);
            if (lora_bias && i == 0) {
                snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.bias", l,
                         mp);
                add_float(w, &b, name, LOAM_DTYPE_F32, g_m, 1, g_out[m], 0);
            }
        }
    }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir,
             peft ? "adapter_model.safetensors" : "adapters.safetensors");
    CHECK_OK(loam_st_writer_write(w, path, &e), e);
    loam_st_writer_free(w);
    for (int i = 0; i < b.n; i++)
        free(b.p[i]);
    if (peft)
        write_text(dir, "adapter_config.json",
                   "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"lora_bias\": true}");
    else if (dora)
        write_text(dir, "adapter_config.json",
                   "{\"fine_tune_type\": \"dora\", \"num_layers\": -1,"
                   " \"lora_parameters\": {\"rank\": 4, \"scale\": 2.0}}");
    else
        write_text(dir, "adapter_config.json",
                   "{\"fine_tune_type\": \"lora\", \"num_layers\": 2,"
                   " \"lora_parameters\": {\"rank\": 4, \"scale\": 2.0}}");
}

// ---- expected values --------------------------------------------------------------------------

static float bf16r(double v) {
    return loam__bf16_to_f32(loam__f32_to_bf16((float)v));
}

/* Dequantized base row o of (l, m) from the model directory md. */
static void base_row(const loam_modeldir *md, int l, int m, int64_t o, float *row) {
    char name[160];
    loam_tensor w, s, b;
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, loam__mod_path[m]);
    loam_modeldir_find(md, name, &w, NULL);
    snprintf(name, sizeof name, "model.layers.%d.%s.scales", l, loam__mod_path[m]);
    loam_modeldir_find(md, name, &s, NULL);
    snprintf(name, sizeof name, "model.layers.%d.%s.biases", l, loam__mod_path[m]);
    loam_modeldir_find(md, name, &b, NULL);
    loam__qmat q = {LOAM_DTYPE_U32, fmt_of(l, m), w.data, s.data, b.data, g_out[m], g_in[m]};
    loam__qmat_row(&q, o, row);
}

/* W + s·(A·B)ᵀ for row o, in double, from the rounded base. */
static double expected(float base, int l, int m, int64_t o, int64_t i) {
    double d = 0;
    for (int j = 0; j < R; j++)
        d += (double)g_a[l][m][i * R + j] * g_b[l][m][j * g_out[m] + o];
    return (double)base + S * d;
}

static bool is_adapted(int l, int m) {
    for (int i = 0; i < 4; i++)
        if (g_adapted[i].l == l && g_adapted[i].m == m)
            return true;
    return false;
}

static loam_modeldir *open_dir(const char *dir) {
    loam_modeldir *md = NULL;
    loam_err e = {0};
    CHECK_OK(loam_modeldir_open(&md, dir, &e), e);
    return md;
}

static int g_progress_calls;
static uint64_t g_progress_done, g_progress_total;
static void on_progress(void *user, uint64_t done, uint64_t total) {
    (void)user;
    g_progress_calls++;
    g_progress_done = done;
    g_progress_total = total;
}

static void check_no_tmp(void) {
    DIR *d = opendir(g_root);
    struct dirent *e;
    int tmp = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            tmp++;
    if (d)
        closedir(d);
    CHECK_EQ_I64(tmp, 0);
}

// ---- tests ------------------------------------------------------------------------------------

static char g_model[128], g_dense[128], g_lora[128], g_dora[128], g_peft_bias[128];

static void test_fuse_quantized(void) {
    char out[160];
    snprintf(out, sizeof out, "%s/fused", g_root);
    loam_fuse_params p = loam_fuse_params_default();
    p.progress = on_progress;
    loam_err e = {0};
    g_progress_calls = 0;
    CHECK_OK(loam_fuse(g_model, g_lora, out, &p, &e), e);
    CHECK_EQ_I64(g_progress_calls, 4); /* one per adapted module */
    CHECK(g_progress_done == 4 && g_progress_total == 4);
    check_no_tmp();
    loam_modeldir *in = open_dir(g_model), *fo = open_dir(out);
    if (!in || !fo) {
        loam_modeldir_close(in);
        loam_modeldir_close(fo);
        return;
    }
    CHECK_EQ_I64(loam_modeldir_n_tensors(fo), loam_modeldir_n_tensors(in));
    CHECK_STR(loam_st_metadata(loam_modeldir_shard(fo, 0), "format"), "mlx");
    /* unadapted tensors: identical bytes */
    int differ = 0;
    for (size_t i = 0; i < loam_modeldir_n_tensors(in); i++) {
        loam_tensor a, b;
        loam_modeldir_tensor(in, i, &a, NULL);
        if (loam_modeldir_find(fo, a.name, &b, NULL) != LOAM_OK) {
            CHECK(0);
            continue;
        }
        CHECK(a.dtype == b.dtype && a.n_bytes == b.n_bytes && a.shape[0] == b.shape[0]);
        bool adapted = false;
        for (int k = 0; k < 4; k++) {
            char pre[96];
            snprintf(pre, sizeof pre, "model.layers.%d.%s.", g_adapted[k].l,
                     loam__mod_path[g_adapted[k].m]);
            adapted |= strncmp(a.name, pre, strlen(pre)) == 0;
        }
        if (!adapted)
            differ += memcmp(a.data, b.data, (size_t)a.n_bytes) != 0;
    }
    CHECK_EQ_I64(differ, 0);
    /* adapted: within one step of W + sAB, and much closer than the base */
    for (int k = 0; k < 4; k++) {
        int l = g_adapted[k].l, m = g_adapted[k].m;
        loam_qformat f = fmt_of(l, m);
        char name[160];
        loam_tensor w, s, b;
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, loam__mod_path[m]);
        loam_modeldir_find(fo, name, &w, NULL);
        snprintf(name, sizeof name, "model.layers.%d.%s.scales", l, loam__mod_path[m]);
        loam_modeldir_find(fo, name, &s, NULL);
        snprintf(name, sizeof name, "model.layers.%d.%s.biases", l, loam__mod_path[m]);
        loam_modeldir_find(fo, name, &b, NULL);
        loam__qmat q = {LOAM_DTYPE_U32, f, w.data, s.data, b.data, g_out[m], g_in[m]};
        float row[96], brow[96];
        int outside = 0;
        double err_fused = 0, err_base = 0;
        for (int64_t o = 0; o < g_out[m]; o++) {
            loam__qmat_row(&q, o, row);
            base_row(in, l, m, o, brow);
            for (int64_t i = 0; i < g_in[m]; i++) {
                /* mlx-lm's chain: bf16(bf16(W) + bf16(s·AB)), then one step of the new grid
                 * (plus one bf16 ulp of the delta: it is summed in another order here) */
                double delta = expected(0.0f, l, m, o, i);
                double want = bf16r(bf16r(brow[i]) + bf16r(delta));
                size_t gi = (size_t)(o * (g_in[m] / f.group_size) + i / f.group_size);
                double step = fabs(loam__load_float(s.data, LOAM_DTYPE_BF16, gi));
                double bias = fabs(loam__load_float(b.data, LOAM_DTYPE_BF16, gi));
                /* MLX's bound |w - deq(q(w))| <= |scale| holds for the float32 scale and bias;
                 * storing them in bf16 adds up to q_max·|scale|·2^-8 + |bias|·2^-8 */
                double tol = step * (1.01 + (double)((1 << f.bits) - 1) * 0x1.0p-8) +
                             bias * 0x1.0p-8 + fabs(delta) * 0x1.0p-7 + 1e-7;
                if (fabs(row[i] - want) > tol)
                    outside++;
                err_fused += fabs(row[i] - want);
                err_base += fabs(brow[i] - want);
            }
        }
        CHECK_EQ_I64(outside, 0);
        if (!(err_fused < 0.5 * err_base))
            fprintf(stderr, "  layer %d %s: fused error %g vs base %g\n", l, loam__mod_path[m],
                    err_fused, err_base);
        CHECK(err_fused < 0.5 * err_base);
    }
    /* config.json */
    char *cfg = read_text(out, "config.json");
    CHECK(cfg && strncmp(cfg, "{\n    \"architectures\": [\n        \"Qwen3ForCausalLM\"\n    ],",
                         55) == 0);
    CHECK(cfg && strstr(cfg, "\n    \"rms_norm_eps\": 1e-06,\n"));
    CHECK(cfg && strstr(cfg, "\n    \"rope_theta\": 1000000,\n"));
    CHECK(cfg && strstr(cfg, "\n    \"initializer_range\": 0.02,\n"));
    CHECK(cfg && strstr(cfg, "\"note\": \"\\u00fc \\\"q\\\" \\u00e9\\ud83d\\ude00\""));
    CHECK(cfg && strstr(cfg, "\"empty\": {},"));
    CHECK(cfg && !strstr(cfg, "_name_or_path"));
    cJSON *c = NULL;
    if (cfg)
        CHECK_OK(loam__json_parse(cfg, strlen(cfg), "config.json", &c, &e), e);
    if (c) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization");
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(c, "quantization_config");
        CHECK(q && qc && cJSON_Compare(q, qc, true));
        CHECK(cJSON_GetObjectItemCaseSensitive(q, "model.layers.1.mlp.down_proj") != NULL);
        const char *prev = "";
        for (const cJSON *it = c->child; it; it = it->next) {
            CHECK(strcmp(prev, it->string) < 0);
            prev = it->string;
        }
        cJSON_Delete(c);
    }
    free(cfg);
    /* the index and the copied files */
    char *idx = read_text(out, "model.safetensors.index.json");
    cJSON *ij = NULL;
    if (idx)
        CHECK_OK(loam__json_parse(idx, strlen(idx), "index", &ij, &e), e);
    if (ij) {
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(ij, "weight_map");
        CHECK_EQ_I64(cJSON_GetArraySize(wm), (int64_t)loam_modeldir_n_tensors(fo));
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(ij, "metadata");
        uint64_t total = 0, params = 0, want_params = 0;
        for (size_t i = 0; i < loam_modeldir_n_tensors(fo); i++) {
            loam_tensor t;
            loam_modeldir_tensor(fo, i, &t, NULL);
            total += t.n_bytes;
            if (strstr(t.name, ".scales") || strstr(t.name, ".biases"))
                continue;
            bool q8 = strstr(t.name, "layers.1.mlp.down_proj.weight") != NULL;
            want_params +=
                t.dtype == LOAM_DTYPE_U32 ? t.n_elements * 32 / (q8 ? 8 : 4) : t.n_elements;
        }
        CHECK_EQ_I64(loam__json_uint(cJSON_GetObjectItemCaseSensitive(md, "total_size"), &params),
                     0);
        CHECK_EQ_I64(params, total);
        CHECK_EQ_I64(
            loam__json_uint(cJSON_GetObjectItemCaseSensitive(md, "total_parameters"), &params), 0);
        CHECK_EQ_I64(params, want_params);
        cJSON_Delete(ij);
    }
    free(idx);
    char *t1 = read_text(out, "tokenizer.json"), *t2 = read_text(g_model, "tokenizer.json");
    CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    free(t1);
    free(t2);
    char *g1 = read_text(out, "generation_config.json");
    CHECK(g1 != NULL);
    free(g1);
    loam_modeldir_close(in);
    loam_modeldir_close(fo);

    /* the output exists now: a second fuse into it is refused and leaves it alone */
    CHECK_EQ_I64(loam_fuse(g_model, g_lora, out, NULL, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "not an empty directory") != NULL);
    /* an empty directory is fine */
    char empty[160];
    snprintf(empty, sizeof empty, "%s/empty", g_root);
    mkdir(empty, 0755);
    CHECK_OK(loam_fuse(g_model, g_lora, empty, NULL, &e), e);
}

static void test_fuse_dequantize(void) {
    char out[160];
    snprintf(out, sizeof out, "%s/deq/", g_root); /* trailing slash on purpose */
    loam_fuse_params p = loam_fuse_params_default();
    p.dequantize = true;
    loam_err e = {0};
    CHECK_OK(loam_fuse(g_model, g_dora, out, &p, &e), e);
    check_no_tmp();
    loam_modeldir *in = open_dir(g_model), *fo = open_dir(out);
    if (!in || !fo) {
        loam_modeldir_close(in);
        loam_modeldir_close(fo);
        return;
    }
    int quant_left = 0;
    for (size_t i = 0; i < loam_modeldir_n_tensors(fo); i++) {
        loam_tensor t;
        loam_modeldir_tensor(fo, i, &t, NULL);
        quant_left +=
            t.dtype == LOAM_DTYPE_U32 || strstr(t.name, ".scales") || strstr(t.name, ".biases");
    }
    CHECK_EQ_I64(quant_left, 0);
    /* the embedding: exactly the dequantized base in bf16 */
    loam_tensor ew, es, eb, eo;
    loam_modeldir_find(in, "model.embed_tokens.weight", &ew, NULL);
    loam_modeldir_find(in, "model.embed_tokens.scales", &es, NULL);
    loam_modeldir_find(in, "model.embed_tokens.biases", &eb, NULL);
    CHECK_OK(loam_modeldir_find(fo, "model.embed_tokens.weight", &eo, &e), e);
    CHECK(eo.dtype == LOAM_DTYPE_BF16 && eo.shape[0] == VOCAB && eo.shape[1] == H);
    loam__qmat eq = {LOAM_DTYPE_U32, fmt_of(0, 0), ew.data, es.data, eb.data, VOCAB, H};
    int bad = 0;
    for (int64_t o = 0; o < VOCAB; o++) {
        float row[H];
        loam__qmat_row(&eq, o, row);
        for (int i = 0; i < H; i++)
            bad += loam__load_float(eo.data, LOAM_DTYPE_BF16, (size_t)(o * H + i)) != bf16r(row[i]);
    }
    CHECK_EQ_I64(bad, 0);
    /* adapted: W + sAB within bf16 rounding; the DoRA module's rows have norm m */
    for (int k = 0; k < 4; k++) {
        int l = g_adapted[k].l, m = g_adapted[k].m;
        char name[160];
        loam_tensor w;
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, loam__mod_path[m]);
        CHECK_OK(loam_modeldir_find(fo, name, &w, &e), e);
        CHECK(w.dtype == LOAM_DTYPE_BF16 && w.shape[0] == g_out[m] && w.shape[1] == g_in[m]);
        double worst = 0;
        for (int64_t o = 0; o < g_out[m]; o++) {
            float brow[96];
            base_row(in, l, m, o, brow);
            /* DoRA factor m / ||W + sAB||; without m in the file (k > 0) m = ||W|| */
            double want[96], norm = 0, wnorm = 0;
            for (int64_t i = 0; i < g_in[m]; i++) {
                want[i] = expected(bf16r(brow[i]), l, m, o, i);
                norm += want[i] * want[i];
                wnorm += (double)brow[i] * brow[i];
            }
            double f = (k == 0 ? g_m[o] : sqrt(wnorm)) / sqrt(norm), got_norm = 0;
            for (int64_t i = 0; i < g_in[m]; i++) {
                double got = loam__load_float(w.data, LOAM_DTYPE_BF16, (size_t)(o * g_in[m] + i));
                double mag = fabs(f) * (fabs(brow[i]) + fabs(want[i] - bf16r(brow[i])));
                worst = fmax(worst, fabs(got - f * want[i]) / (mag + 1e-6));
                got_norm += got * got;
            }
            if (k == 0)
                CHECK_CLOSE(sqrt(got_norm), g_m[o], 1e-2 * g_m[o]);
        }
        CHECK(worst < 0x1.0p-6); /* a few bf16 roundings */
    }
    char *cfg = read_text(out, "config.json");
    CHECK(cfg && !strstr(cfg, "\"quantization\"") && !strstr(cfg, "\"quantization_config\""));
    free(cfg);
    loam_modeldir_close(in);
    loam_modeldir_close(fo);
}

static void test_fuse_dense(void) {
    char out[160];
    snprintf(out, sizeof out, "%s/dense-fused", g_root);
    loam_err e = {0};
    CHECK_OK(loam_fuse(g_dense, g_lora, out, NULL, &e), e);
    loam_modeldir *fo = open_dir(out);
    if (!fo)
        return;
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            char name[160];
            loam_tensor w;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, loam__mod_path[m]);
            CHECK_OK(loam_modeldir_find(fo, name, &w, &e), e);
            CHECK(w.dtype == LOAM_DTYPE_F16);
            int bad = 0;
            for (int64_t o = 0; o < g_out[m]; o++)
                for (int64_t i = 0; i < g_in[m]; i++) {
                    float base = loam__f16_to_f32(loam__f32_to_f16(g_wf[l][m][o * g_in[m] + i]));
                    double want = is_adapted(l, m) ? expected(base, l, m, o, i) : base;
                    float got = loam__load_float(w.data, LOAM_DTYPE_F16, (size_t)(o * g_in[m] + i));
                    /* two f16 roundings of terms no larger than |base| + |delta| */
                    double mag = fabs(base) + fabs(want - base);
                    bad += fabs(got - want) > 0x1.0p-10 * mag + 1e-7;
                }
            CHECK_EQ_I64(bad, 0);
        }
    char *cfg = read_text(out, "config.json");
    CHECK(cfg &&
          strcmp(cfg, "{\n    \"num_hidden_layers\": 2,\n    \"torch_dtype\": \"float16\"\n}") ==
              0);
    free(cfg);
    loam_modeldir_close(fo);
}

static void test_fuse_errors(void) {
    char out[160];
    snprintf(out, sizeof out, "%s/never", g_root);
    loam_err e = {0};
    /* lora_bias cannot be fused */
    CHECK_EQ_I64(loam_fuse(g_model, g_peft_bias, out, NULL, &e), LOAM_E_UNSUPPORTED);
    CHECK(strstr(e.msg, "lora_B bias") != NULL);
    CHECK(!exists(out));
    /* an adapter that does not fit: the loader's message */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad-adapter", g_root);
    mkdir(bad, 0755);
    write_text(bad, "adapter_config.json", "{\"lora_parameters\": {\"rank\": 4}}");
    {
        loam_st_writer *w = NULL;
        loam_st_writer_new(&w, &e);
        float z[65 * 4] = {0};
        int64_t sa[2] = {65, 4}, sb[2] = {4, 64};
        loam_st_writer_add(w, "model.layers.1.self_attn.q_proj.lora_a", LOAM_DTYPE_F32, 2, sa, z,
                           &e);
        loam_st_writer_add(w, "model.layers.1.self_attn.q_proj.lora_b", LOAM_DTYPE_F32, 2, sb, z,
                           &e);
        char path[256];
        snprintf(path, sizeof path, "%s/adapters.safetensors", bad);
        CHECK_OK(loam_st_writer_write(w, path, &e), e);
        loam_st_writer_free(w);
    }
    CHECK_EQ_I64(loam_fuse(g_model, bad, out, NULL, &e), LOAM_E_FORMAT);
    CHECK(strstr(e.msg, "model.layers.1.self_attn.q_proj.lora_a") != NULL);
    CHECK(!exists(out));
    /* foreign quantization */
    char foreign[160];
    snprintf(foreign, sizeof foreign, "%s/foreign", g_root);
    write_model(foreign, true);
    write_text(foreign, "config.json",
               "{\"num_hidden_layers\": 2, \"quantization_config\": {\"quant_method\": \"awq\"}}");
    CHECK_EQ_I64(loam_fuse(foreign, g_lora, out, NULL, &e), LOAM_E_UNSUPPORTED);
    CHECK(strstr(e.msg, "quant_method") != NULL);
    write_text(foreign, "config.json", "{\"hidden_size\": 64}");
    CHECK_EQ_I64(loam_fuse(foreign, g_lora, out, NULL, &e), LOAM_E_FORMAT);
    CHECK(strstr(e.msg, "num_hidden_layers") != NULL);
    CHECK_EQ_I64(loam_fuse(NULL, g_lora, out, NULL, &e), LOAM_E_INVAL);
    check_no_tmp();
    CHECK(!exists(out));

    /* every allocation failing in turn: an error, no leak, no partial output */
    uint64_t before = loam_debug_bytes_in_use();
    int ok_at = 0;
    /* every one of the first 24, then every 7th (each run fsyncs: a full sweep takes long) */
    for (uint64_t k = 1; k < 4000 && !ok_at; k += k < 24 ? 1 : 7) {
        loam_debug_fail_alloc_after(k);
        loam_status s = loam_fuse(g_model, g_dora, out, NULL, &e);
        loam_debug_fail_alloc_after(0);
        if (s == LOAM_OK)
            ok_at = (int)k;
        else {
            if (s != LOAM_E_NOMEM && s != LOAM_E_IO) {
                fprintf(stderr, "  allocation %llu: status %d: %s\n", (unsigned long long)k, s,
                        e.msg);
                CHECK(0);
                break;
            }
            CHECK(!exists(out));
        }
        CHECK_EQ_I64(loam_debug_bytes_in_use(), before);
    }
    CHECK(ok_at > 100);
    check_no_tmp();
}

// ---- end to end on the reference fixtures -----------------------------------------------------

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Logits at every position of ids (one sequence) into out [T, n_vocab]; adapter dir or NULL. */
static bool model_logits(const char *dir, const char *adapter, const int32_t *ids, int T,
                         float *out, int *n_vocab) {
    loam_model *m = NULL;
    loam_session *s = NULL;
    loam_err e = {0};
    bool ok = false;
    CHECK_OK(loam_model_open(&m, dir, NULL, &e), e);
    if (!m)
        return false;
    int32_t id = -1;
    if (adapter) {
        CHECK_OK(loam_model_load_adapter(m, "a", adapter, &e), e);
        id = loam_model_adapter_id(m, "a");
    }
    loam_model_info info;
    loam_model_get_info(m, &info);
    *n_vocab = info.n_vocab;
    loam_session_params p = loam_session_params_default();
    p.n_ctx = 64;
    p.n_logits = T;
    p.n_threads = 2;
    CHECK_OK(loam_session_new(&s, m, &p, &e), e);
    loam_batch_entry ent[64];
    for (int t = 0; t < T; t++)
        ent[t] = (loam_batch_entry){0, t, ids[t], id, true};
    if (s && (!adapter || id >= 0)) {
        loam_status st = loam_session_decode(s, ent, (size_t)T, &e);
        CHECK_OK(st, e);
        if (st == LOAM_OK) {
            for (int t = 0; t < T; t++)
                memcpy(out + (size_t)t * info.n_vocab, loam_session_logits(s, (size_t)t),
                       (size_t)info.n_vocab * sizeof(float));
            ok = true;
        }
    }
    loam_session_free(s);
    loam_model_close(m);
    return ok;
}

static void test_fuse_fixtures(void) {
    static const char *cases[] = {"qwen3_q4_g64_tied", "qwen3_q4_g32_gqa4_dora", "qwen3_bf16",
                                  "qwen3_q8_g32_gqa1_f16"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[512], adapter[600], cpath[600], ref[600], fq[200], fd[200];
        snprintf(dir, sizeof dir, "%s/data/models/%s", LOAM_TEST_DIR, cases[c]);
        snprintf(adapter, sizeof adapter, "%s/adapter_mlx", dir);
        snprintf(cpath, sizeof cpath, "%s/case.json", dir);
        snprintf(ref, sizeof ref, "%s/logits_mlx.f32", dir);
        snprintf(fq, sizeof fq, "%s/fx-%zu-q", g_root, c);
        snprintf(fd, sizeof fd, "%s/fx-%zu-d", g_root, c);
        loam_err e = {0};
        char *text = NULL;
        size_t len = 0;
        cJSON *cj = NULL;
        CHECK_OK(loam__read_file(cpath, &text, &len, &e), e);
        if (text)
            CHECK_OK(loam__json_parse(text, len, "case.json", &cj, &e), e);
        const cJSON *jids = cJSON_GetObjectItemCaseSensitive(cj, "ids");
        int32_t ids[64];
        int T = 0;
        for (const cJSON *it = jids ? jids->child : NULL; it && T < 64; it = it->next)
            ids[T++] = (int32_t)it->valuedouble;
        CHECK(T > 0);
        loam_fuse_params p = loam_fuse_params_default();
        CHECK_OK(loam_fuse(dir, adapter, fq, &p, &e), e);
        p.dequantize = true;
        CHECK_OK(loam_fuse(dir, adapter, fd, &p, &e), e);
        int nv = 0;
        char *refbuf = NULL;
        size_t ref_len = 0;
        CHECK_OK(loam__read_file(ref, &refbuf, &ref_len, &e), e);
        float *lr = malloc(64 * 4096 * sizeof(float)), *lq = malloc(64 * 4096 * sizeof(float));
        float *ld = malloc(64 * 4096 * sizeof(float));
        bool ok = T > 0 && model_logits(dir, adapter, ids, T, lr, &nv) &&
                  model_logits(fq, NULL, ids, T, lq, &nv) &&
                  model_logits(fd, NULL, ids, T, ld, &nv);
        CHECK(ok);
        if (ok && refbuf && ref_len == (size_t)T * (size_t)nv * sizeof(float)) {
            const float *rf = (const float *)(const void *)refbuf;
            size_t n = (size_t)T * (size_t)nv;
            double d_runtime = rel_l2(lr, rf, n), d_deq = rel_l2(ld, rf, n),
                   d_q = rel_l2(lq, rf, n);
            double q_runtime = rel_l2(lq, lr, n);
            if (getenv("LOAM_TEST_VERBOSE"))
                fprintf(stderr,
                        "  %s: rel L2 of logits vs the fp32 reference: runtime LoRA %.3g, fused "
                        "dequantized %.3g, fused re-quantized %.3g (%.3g vs runtime LoRA)\n",
                        cases[c], d_runtime, d_deq, d_q, q_runtime);
            /* dequantized fusing loses only the bf16/f16 rounding of W + ΔW */
            CHECK(d_deq < 1e-2);
            CHECK(d_q < 0.5);
            /* a model without quantization re-quantizes nothing: both fuses agree */
            if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(cj, "quantization")))
                CHECK(d_q == d_deq);
        } else {
            CHECK(refbuf && ref_len == (size_t)T * (size_t)nv * sizeof(float));
        }
        free(lr);
        free(lq);
        free(ld);
        loam__free(refbuf);
        loam__free(text);
        cJSON_Delete(cj);
    }
}

static void run_tests(void) {
    snprintf(g_root, sizeof g_root, "/tmp/loam-test-fuse-XXXXXX");
    if (!mkdtemp(g_root)) {
        fprintf(stderr, "mkdtemp failed\n");
        exit(1);
    }
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            g_wf[l][m] = malloc((size_t)(g_in[m] * g_out[m]) * sizeof(float));
            for (int64_t i = 0; i < g_in[m] * g_out[m]; i++)
                g_wf[l][m][i] = 0.05f * frand();
            for (int64_t i = 0; i < g_in[m] * R; i++)
                g_a[l][m][i] = 0.2f * frand();
            for (int64_t i = 0; i < g_out[m] * R; i++)
                g_b[l][m][i] = 0.05f * frand();
        }
    for (int i = 0; i < H; i++)
        g_m[i] = 0.4f + 0.2f * frand();
    g_emb = malloc(VOCAB * H * sizeof(float));
    g_head = malloc(VOCAB * H * sizeof(float));
    for (int i = 0; i < VOCAB * H; i++) {
        g_emb[i] = frand();
        g_head[i] = frand();
    }
    snprintf(g_model, sizeof g_model, "%s/model", g_root);
    snprintf(g_dense, sizeof g_dense, "%s/dense", g_root);
    snprintf(g_lora, sizeof g_lora, "%s/lora", g_root);
    snprintf(g_dora, sizeof g_dora, "%s/dora", g_root);
    snprintf(g_peft_bias, sizeof g_peft_bias, "%s/peft-bias", g_root);
    write_model(g_model, false);
    write_model(g_dense, true);
    write_adapter(g_lora, false, false, false);
    write_adapter(g_dora, false, true, false);
    write_adapter(g_peft_bias, true, false, true);
    TEST(test_fuse_quantized);
    TEST(test_fuse_dequantize);
    TEST(test_fuse_dense);
    TEST(test_fuse_errors);
    TEST(test_fuse_fixtures);
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++)
            free(g_wf[l][m]);
    free(g_emb);
    free(g_head);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_root);
}
