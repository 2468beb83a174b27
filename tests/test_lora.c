/* test_lora.c: the adapter loader (mlx-lm and PEFT) and loam__lora_apply.
 *
 * Adapters are written here with loam_st_writer into temporary directories, from one set of
 * random A [in, r], B [r, out] (mlx-lm layout) per module, so every comparison has an exact
 * expected value: the mlx-lm and PEFT spellings of the same adapter must load to bit-identical
 * normalised tensors; scales follow alpha/r, alpha/sqrt(r) (rsLoRA) and rank/alpha patterns;
 * DoRA factors match m / ||W + s·(A·B)ᵀ||_row computed in double; loam__lora_apply matches a
 * double-precision y + s·x·A·B (⊙ dora); every refused input gives its status and a message
 * naming the file and the tensor.
 * Fixtures: tests/data/models/<case>/adapter_mlx and adapter_peft (written by mlx-lm and PEFT
 * from one trained adapter, tools/reference): both load to the same normalised tensors, scales
 * and DoRA factors, on the modules case.json lists.
 */
#define _POSIX_C_SOURCE 200809L
#include "json.h"
#include "lora.h"
#include "model.h"

#include "test.h"

#include <omp.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- a small model geometry and its base weights ----------------------------------------------

#define NL 3
static const int64_t g_in[LOAM__N_MOD] = {64, 64, 64, 96, 64, 64, 128};
static const int64_t g_out[LOAM__N_MOD] = {96, 32, 32, 64, 128, 128, 64};
static float *g_w[NL][LOAM__N_MOD]; /* dense base weights [out, in] */
static loam__qmat g_qm[NL][LOAM__N_MOD];

static const loam__qmat *base_weight(void *user, int32_t layer, loam__mod mod) {
    (void)user;
    return &g_qm[layer][mod];
}

static loam__lora_base g_base;

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) * 0x1.0p-52 - 1.0);
}

static void setup_base(void) {
    memset(&g_base, 0, sizeof g_base);
    g_base.n_layer = NL;
    for (int m = 0; m < LOAM__N_MOD; m++) {
        g_base.in[m] = g_in[m];
        g_base.out[m] = g_out[m];
    }
    g_base.weight = base_weight;
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            size_t n = (size_t)(g_in[m] * g_out[m]);
            g_w[l][m] = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++)
                g_w[l][m][i] = 0.1f * frand();
            g_qm[l][m] =
                (loam__qmat){LOAM_DTYPE_F32, {0}, g_w[l][m], NULL, NULL, g_out[m], g_in[m]};
        }
}

static void teardown_base(void) {
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++)
            free(g_w[l][m]);
}

// ---- writing adapter directories ---------------------------------------------------------------

static char g_root[64];
static int g_dir_seq;

typedef struct tensor_spec {
    char name[160];
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[3];
    const float *data; /* converted to dtype on write; NULL = zeros */
} tensor_spec;

typedef struct adapter_files {
    char dir[128];
    tensor_spec t[64];
    int n;
} adapter_files;

static void af_init(adapter_files *af) {
    memset(af, 0, sizeof *af);
    snprintf(af->dir, sizeof af->dir, "%s/a%03d", g_root, g_dir_seq++);
    mkdir(af->dir, 0755);
}

static tensor_spec *af_add(adapter_files *af, loam_dtype dt, const float *data, int32_t n_dims,
                           int64_t d0, int64_t d1, const char *fmt, ...) {
    tensor_spec *t = &af->t[af->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dt;
    t->n_dims = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = data;
    return t;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void af_write(adapter_files *af, const char *st_name, const char *config) {
    loam_st_writer *w = NULL;
    loam_err e = {0};
    CHECK_OK(loam_st_writer_new(&w, &e), e);
    void *bufs[64] = {0};
    for (int i = 0; i < af->n; i++) {
        tensor_spec *t = &af->t[i];
        int64_t n = 1;
        for (int d = 0; d < t->n_dims; d++)
            n *= t->shape[d];
        size_t eb = (size_t)loam_dtype_bits(t->dtype) / 8;
        bufs[i] = calloc((size_t)n, eb);
        if (t->data) {
            for (int64_t j = 0; j < n; j++) {
                if (t->dtype == LOAM_DTYPE_I32) {
                    int32_t v = (int32_t)t->data[j];
                    memcpy((char *)bufs[i] + j * 4, &v, 4);
                } else {
                    loam__store_float(bufs[i], t->dtype, (size_t)j, t->data[j]);
                }
            }
        }
        CHECK_OK(loam_st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, bufs[i], &e), e);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", af->dir, st_name);
    CHECK_OK(loam_st_writer_write(w, path, &e), e);
    loam_st_writer_free(w);
    for (int i = 0; i < af->n; i++)
        free(bufs[i]);
    if (config)
        write_file(af->dir, "adapter_config.json", config);
}

// ---- reference adapter values ------------------------------------------------------------------

#define MAXR 16
static float *g_a[NL][LOAM__N_MOD]; /* [in, MAXR] mlx layout, first r columns used per rank */
static float *g_b[NL][LOAM__N_MOD]; /* [MAXR, out] */
static float *g_m[NL][LOAM__N_MOD]; /* [out] */

static void setup_adapter_values(void) {
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            g_a[l][m] = malloc((size_t)(g_in[m] * MAXR) * sizeof(float));
            g_b[l][m] = malloc((size_t)(g_out[m] * MAXR) * sizeof(float));
            g_m[l][m] = malloc((size_t)g_out[m] * sizeof(float));
            for (int64_t i = 0; i < g_in[m] * MAXR; i++)
                g_a[l][m][i] = 0.2f * frand();
            for (int64_t i = 0; i < g_out[m] * MAXR; i++)
                g_b[l][m][i] = 0.05f * frand();
            for (int64_t i = 0; i < g_out[m]; i++)
                g_m[l][m][i] = 0.5f + 0.25f * frand();
        }
}

static void teardown_adapter_values(void) {
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            free(g_a[l][m]);
            free(g_b[l][m]);
            free(g_m[l][m]);
        }
}

/* A of rank r, in the layout a format stores: mlx [in, r]; PEFT [r, in] (transposed). */
static float *pack_a(int l, int m, int r, bool peft) {
    float *o = malloc((size_t)(g_in[m] * r) * sizeof(float));
    for (int64_t i = 0; i < g_in[m]; i++)
        for (int j = 0; j < r; j++) {
            float v = g_a[l][m][i * MAXR + j];
            if (peft)
                o[j * g_in[m] + i] = v;
            else
                o[i * r + j] = v;
        }
    return o;
}

/* B of rank r: mlx [r, out]; PEFT [out, r]. */
static float *pack_b(int l, int m, int r, bool peft) {
    float *o = malloc((size_t)(g_out[m] * r) * sizeof(float));
    for (int j = 0; j < r; j++)
        for (int64_t k = 0; k < g_out[m]; k++) {
            float v = g_b[l][m][j * g_out[m] + k];
            if (peft)
                o[k * r + j] = v;
            else
                o[j * g_out[m] + k] = v;
        }
    return o;
}

static float *g_owned[2048];
static int g_n_owned;
static float *own(float *p) {
    g_owned[g_n_owned++] = p;
    return p;
}
static void free_owned(void) {
    for (int i = 0; i < g_n_owned; i++)
        free(g_owned[i]);
    g_n_owned = 0;
}

/* Adds lora tensors for (l, m) at rank r in the given format. key_style for PEFT:
 * 0 = "base_model.model." prefix, 1 = no prefix, 2 = prefix and ".default." */
static void add_mod(adapter_files *af, bool peft, int key_style, loam_dtype dt, int l, int m,
                    int r) {
    float *a = own(pack_a(l, m, r, peft)), *b = own(pack_b(l, m, r, peft));
    if (!peft) {
        af_add(af, dt, a, 2, g_in[m], r, "model.layers.%d.%s.lora_a", l, loam__mod_path[m]);
        af_add(af, dt, b, 2, r, g_out[m], "model.layers.%d.%s.lora_b", l, loam__mod_path[m]);
        return;
    }
    const char *pre = key_style == 1 ? "" : "base_model.model.";
    const char *def = key_style == 2 ? ".default" : "";
    af_add(af, dt, a, 2, r, g_in[m], "%smodel.layers.%d.%s.lora_A%s.weight", pre, l,
           loam__mod_path[m], def);
    af_add(af, dt, b, 2, g_out[m], r, "%smodel.layers.%d.%s.lora_B%s.weight", pre, l,
           loam__mod_path[m], def);
}

static loam__adapter *load_ok(const char *dir) {
    loam__adapter *a = NULL;
    loam_err e = {0};
    CHECK_OK(loam__adapter_load(&a, dir, &g_base, &e), e);
    return a;
}

/* Loading fails with `code` and a message containing every needle given. */
static void load_fails(const char *dir, loam_status code, const char *n1, const char *n2) {
    loam__adapter *a = (loam__adapter *)1;
    loam_err e = {0};
    loam_status s = loam__adapter_load(&a, dir, &g_base, &e);
    CHECK_EQ_I64(s, code);
    CHECK(a == NULL);
    if (n1 && !strstr(e.msg, n1))
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, n1);
    if (n2 && !strstr(e.msg, n2))
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, n2);
    CHECK(!n1 || strstr(e.msg, n1));
    CHECK(!n2 || strstr(e.msg, n2));
}

static const char *MLX_CFG =
    "{\"fine_tune_type\": \"lora\", \"num_layers\": -1,"
    " \"lora_parameters\": {\"rank\": 4, \"scale\": 20.0, \"dropout\": 0.0}}";
static const char *PEFT_CFG = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 80,"
                              " \"target_modules\": [\"q_proj\"], \"fan_in_fan_out\": false}";

/* The loaded module equals the reference values at rank r, bit for bit (after dtype rounding). */
static void check_mod_values(const loam__adapter *ad, int l, int m, int r, loam_dtype dt,
                             float scale) {
    const loam__lora_mod *lm = loam__adapter_mod(ad, l, (loam__mod)m);
    CHECK(lm != NULL);
    if (!lm)
        return;
    CHECK_EQ_I64(lm->r, r);
    CHECK_CLOSE(lm->scale, scale, 1e-6 * fabs(scale));
    int bad = 0;
    for (int64_t i = 0; i < g_in[m]; i++)
        for (int j = 0; j < r; j++) {
            float want = g_a[l][m][i * MAXR + j];
            if (dt == LOAM_DTYPE_BF16)
                want = loam__bf16_to_f32(loam__f32_to_bf16(want));
            if (dt == LOAM_DTYPE_F16)
                want = loam__f16_to_f32(loam__f32_to_f16(want));
            bad += lm->a[i * r + j] != want;
        }
    for (int j = 0; j < r; j++)
        for (int64_t k = 0; k < g_out[m]; k++) {
            float want = g_b[l][m][j * g_out[m] + k];
            if (dt == LOAM_DTYPE_BF16)
                want = loam__bf16_to_f32(loam__f32_to_bf16(want));
            if (dt == LOAM_DTYPE_F16)
                want = loam__f16_to_f32(loam__f32_to_f16(want));
            bad += lm->b[j * g_out[m] + k] != want;
        }
    CHECK_EQ_I64(bad, 0);
}

// ---- tests ------------------------------------------------------------------------------------

static void test_mlx_and_peft_agree(void) {
    adapter_files mlx, peft[3];
    af_init(&mlx);
    for (int l = 0; l < NL; l++)
        for (int m = 0; m < LOAM__N_MOD; m++)
            add_mod(&mlx, false, 0, LOAM_DTYPE_F32, l, m, 4);
    af_write(&mlx, "adapters.safetensors", MLX_CFG);
    loam__adapter *am = load_ok(mlx.dir);
    CHECK_STR(loam__adapter_format(am), "mlx-lm");
    for (int style = 0; style < 3; style++) {
        af_init(&peft[style]);
        for (int l = 0; l < NL; l++)
            for (int m = 0; m < LOAM__N_MOD; m++)
                add_mod(&peft[style], true, style, LOAM_DTYPE_F32, l, m, 4);
        af_write(&peft[style], "adapter_model.safetensors", PEFT_CFG);
        loam__adapter *ap = load_ok(peft[style].dir);
        CHECK_STR(loam__adapter_format(ap), "peft");
        for (int l = 0; l < NL && am && ap; l++)
            for (int m = 0; m < LOAM__N_MOD; m++) {
                check_mod_values(am, l, m, 4, LOAM_DTYPE_F32, 20.0f);
                check_mod_values(ap, l, m, 4, LOAM_DTYPE_F32, 20.0f); /* 80 / 4 */
                const loam__lora_mod *x = loam__adapter_mod(am, l, (loam__mod)m);
                const loam__lora_mod *y = loam__adapter_mod(ap, l, (loam__mod)m);
                if (x && y) {
                    CHECK(memcmp(x->a, y->a, (size_t)(g_in[m] * 4) * sizeof(float)) == 0);
                    CHECK(memcmp(x->b, y->b, (size_t)(g_out[m] * 4) * sizeof(float)) == 0);
                    CHECK(x->scale == y->scale);
                    CHECK(x->dora == NULL && y->dora == NULL && y->bias == NULL);
                }
            }
        loam__adapter_free(ap);
    }
    CHECK(loam__adapter_mod(am, NL, LOAM__MOD_Q) == NULL);
    CHECK(loam__adapter_mod(am, -1, LOAM__MOD_Q) == NULL);
    CHECK(loam__adapter_mod(NULL, 0, LOAM__MOD_Q) == NULL);
    loam__adapter_free(am);
    loam__adapter_free(NULL);
    free_owned();
}

static void test_dtypes(void) {
    loam_dtype dts[2] = {LOAM_DTYPE_BF16, LOAM_DTYPE_F16};
    for (int d = 0; d < 2; d++) {
        adapter_files af;
        af_init(&af);
        add_mod(&af, true, 0, dts[d], 1, LOAM__MOD_V, 8);
        add_mod(&af, true, 0, dts[d], 2, LOAM__MOD_DOWN, 8);
        af_write(&af, "adapter_model.safetensors",
                 "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16}");
        loam__adapter *a = load_ok(af.dir);
        check_mod_values(a, 1, LOAM__MOD_V, 8, dts[d], 2.0f);
        check_mod_values(a, 2, LOAM__MOD_DOWN, 8, dts[d], 2.0f);
        CHECK(loam__adapter_mod(a, 0, LOAM__MOD_V) == NULL); /* not in the file */
        CHECK(loam__adapter_mod(a, 1, LOAM__MOD_Q) == NULL);
        loam__adapter_free(a);
    }
    free_owned();
}

static void test_scales(void) {
    /* PEFT: alpha / r, rsLoRA alpha / sqrt(r), rank_pattern and alpha_pattern (regex, first
     * match in file order, matched against "model.layers.N.<module>") */
    adapter_files af;
    af_init(&af);
    add_mod(&af, true, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_Q, 4);
    add_mod(&af, true, 0, LOAM_DTYPE_F32, 1, LOAM__MOD_Q, 16);
    add_mod(&af, true, 0, LOAM_DTYPE_F32, 1, LOAM__MOD_V, 4);
    add_mod(&af, true, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_UP, 4);
    af_write(&af, "adapter_model.safetensors",
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8,"
             " \"rank_pattern\": {\"layers\\\\.1\\\\..*q_proj\": 16},"
             " \"alpha_pattern\": {\"v_proj\": 32, \"self_attn.v_proj\": 99, \"up\": 5}}");
    loam__adapter *a = load_ok(af.dir);
    check_mod_values(a, 0, LOAM__MOD_Q, 4, LOAM_DTYPE_F32, 2.0f);
    check_mod_values(a, 1, LOAM__MOD_Q, 16, LOAM_DTYPE_F32, 0.5f); /* 8 / 16 */
    check_mod_values(a, 1, LOAM__MOD_V, 4, LOAM_DTYPE_F32, 8.0f);  /* 32 / 4: first match */
    check_mod_values(a, 2, LOAM__MOD_UP, 4, LOAM_DTYPE_F32, 2.0f); /* "up" must end the name */
    loam__adapter_free(a);

    adapter_files rs;
    af_init(&rs);
    add_mod(&rs, true, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_K, 16);
    af_write(&rs, "adapter_model.safetensors",
             "{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32, \"use_rslora\": true}");
    a = load_ok(rs.dir);
    check_mod_values(a, 0, LOAM__MOD_K, 16, LOAM_DTYPE_F32, 8.0f); /* 32 / sqrt(16) */
    loam__adapter_free(a);

    /* mlx-lm: scale is the multiplier itself; defaults rank 8, scale 20 */
    adapter_files m;
    af_init(&m);
    add_mod(&m, false, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_O, 8);
    af_write(&m, "adapters.safetensors", "{\"num_layers\": 1}");
    a = load_ok(m.dir);
    check_mod_values(a, 2, LOAM__MOD_O, 8, LOAM_DTYPE_F32, 20.0f);
    loam__adapter_free(a);
    free_owned();
}

static void test_num_layers_and_keys(void) {
    /* num_layers 2 of 3: the last two layers are wrapped; layer 0 tensors are refused */
    adapter_files af;
    af_init(&af);
    add_mod(&af, false, 0, LOAM_DTYPE_F32, 1, LOAM__MOD_Q, 4);
    add_mod(&af, false, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_Q, 4);
    af_write(&af, "adapters.safetensors",
             "{\"num_layers\": 2, \"lora_parameters\": {\"rank\": 4, \"scale\": 2.5}}");
    loam__adapter *a = load_ok(af.dir);
    check_mod_values(a, 1, LOAM__MOD_Q, 4, LOAM_DTYPE_F32, 2.5f);
    check_mod_values(a, 2, LOAM__MOD_Q, 4, LOAM_DTYPE_F32, 2.5f);
    loam__adapter_free(a);

    const char *all_cfgs[] = {"{\"num_layers\": 0, \"lora_parameters\": {\"rank\": 4}}",
                              "{\"num_layers\": -1, \"lora_parameters\": {\"rank\": 4}}",
                              "{\"num_layers\": 7, \"lora_parameters\": {\"rank\": 4}}"};
    for (int c = 0; c < 3; c++) {
        adapter_files all;
        af_init(&all);
        add_mod(&all, false, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_GATE, 4);
        af_write(&all, "adapters.safetensors", all_cfgs[c]);
        a = load_ok(all.dir);
        check_mod_values(a, 0, LOAM__MOD_GATE, 4, LOAM_DTYPE_F32, 20.0f);
        loam__adapter_free(a);
    }
    adapter_files two;
    af_init(&two);
    add_mod(&two, false, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_Q, 4);
    af_write(&two, "adapters.safetensors",
             "{\"num_layers\": 2, \"lora_parameters\": {\"rank\": 4}}");
    load_fails(two.dir, LOAM_E_FORMAT, "model.layers.0.self_attn.q_proj.lora_a",
               "not adapted by this adapter_config.json");

    /* keys: block-relative paths, and full module paths (any layer) */
    adapter_files k;
    af_init(&k);
    add_mod(&k, false, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_Q, 4);
    add_mod(&k, false, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_DOWN, 4);
    add_mod(&k, false, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_V, 4);
    af_write(&k, "adapters.safetensors",
             "{\"num_layers\": 1, \"lora_parameters\": {\"rank\": 4, \"keys\":"
             " [\"self_attn.q_proj\", \"mlp.down_proj\", \"model.layers.0.self_attn.v_proj\"]}}");
    a = load_ok(k.dir);
    check_mod_values(a, 2, LOAM__MOD_Q, 4, LOAM_DTYPE_F32, 20.0f);
    check_mod_values(a, 0, LOAM__MOD_V, 4, LOAM_DTYPE_F32, 20.0f);
    loam__adapter_free(a);
    adapter_files k2;
    af_init(&k2);
    add_mod(&k2, false, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_K, 4);
    af_write(&k2, "adapters.safetensors",
             "{\"lora_parameters\": {\"rank\": 4, \"keys\": [\"self_attn.q_proj\"]}}");
    load_fails(k2.dir, LOAM_E_FORMAT, "model.layers.2.self_attn.k_proj.lora_a", "keys");
    free_owned();
}

/* m / ||W + s·(A·B)ᵀ||_row in double. */
static double dora_ref(const loam__qmat *W, int l, int m, int r, double s, int64_t o,
                       const float *mag) {
    int64_t in = g_in[m], out = g_out[m];
    float *row = malloc((size_t)in * sizeof(float));
    loam__qmat_row(W, o, row);
    double ss = 0, w2 = 0;
    for (int64_t i = 0; i < in; i++) {
        double d = 0;
        for (int j = 0; j < r; j++)
            d += (double)g_a[l][m][i * MAXR + j] * (double)g_b[l][m][j * out + o];
        double v = (double)row[i] + s * d;
        ss += v * v;
        w2 += (double)row[i] * row[i];
    }
    free(row);
    return (mag ? (double)mag[o] : sqrt(w2)) / sqrt(ss);
}

static void test_dora(void) {
    /* mlx-lm DoRA with m, PEFT DoRA with lora_magnitude_vector: same factors */
    adapter_files mx, pf;
    af_init(&mx);
    af_init(&pf);
    const int mods[3] = {LOAM__MOD_Q, LOAM__MOD_O, LOAM__MOD_DOWN};
    for (int i = 0; i < 3; i++) {
        int m = mods[i];
        add_mod(&mx, false, 0, LOAM_DTYPE_F32, 1, m, 4);
        af_add(&mx, LOAM_DTYPE_F32, g_m[1][m], 1, g_out[m], 0, "model.layers.1.%s.m",
               loam__mod_path[m]);
        add_mod(&pf, true, 0, LOAM_DTYPE_F32, 1, m, 4);
        af_add(&pf, LOAM_DTYPE_F32, g_m[1][m], 1, g_out[m], 0,
               i == 0 ? "base_model.model.model.layers.1.%s.lora_magnitude_vector"
                      : "base_model.model.model.layers.1.%s.lora_magnitude_vector.weight",
               loam__mod_path[m]);
    }
    add_mod(&mx, false, 0, LOAM_DTYPE_F32, 2, LOAM__MOD_K, 4); /* no m: mlx-lm's init */
    af_write(&mx, "adapters.safetensors",
             "{\"fine_tune_type\": \"dora\", \"num_layers\": 2,"
             " \"lora_parameters\": {\"rank\": 4, \"scale\": 3.0}}");
    af_write(&pf, "adapter_model.safetensors",
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"use_dora\": true}");
    loam__adapter *a = load_ok(mx.dir), *b = load_ok(pf.dir);
    for (int i = 0; i < 3 && a && b; i++) {
        int m = mods[i];
        const loam__lora_mod *x = loam__adapter_mod(a, 1, (loam__mod)m);
        const loam__lora_mod *y = loam__adapter_mod(b, 1, (loam__mod)m);
        CHECK(x && x->dora && y && y->dora);
        if (!x || !x->dora || !y || !y->dora)
            continue;
        double worst = 0;
        for (int64_t o = 0; o < g_out[m]; o++) {
            double want = dora_ref(&g_qm[1][m], 1, m, 4, 3.0, o, g_m[1][m]);
            worst = fmax(worst, fabs(x->dora[o] - want) / want);
            CHECK(x->dora[o] == y->dora[o]);
        }
        CHECK(worst < 1e-6);
    }
    if (a) {
        const loam__lora_mod *k = loam__adapter_mod(a, 2, LOAM__MOD_K);
        CHECK(k && k->dora);
        for (int64_t o = 0; k && k->dora && o < g_out[LOAM__MOD_K]; o++)
            CHECK_CLOSE(k->dora[o],
                        dora_ref(&g_qm[2][LOAM__MOD_K], 2, LOAM__MOD_K, 4, 3.0, o, NULL), 1e-6);
    }
    loam__adapter_free(a);
    loam__adapter_free(b);

    /* a quantized base weight: the factor uses the dequantized rows */
    const int l = 1, m = LOAM__MOD_Q;
    loam_qformat fmt = {4, 32, LOAM_DTYPE_BF16};
    uint64_t wb = loam_qweight_bytes(fmt, g_out[m], g_in[m]);
    uint64_t sb = loam_qscale_bytes(fmt, g_out[m], g_in[m]);
    void *wq = malloc(wb), *sc = malloc(sb), *bi = malloc(sb);
    loam_err e = {0};
    CHECK_OK(loam_quantize(g_w[l][m], g_out[m], g_in[m], fmt, wq, sc, bi, &e), e);
    loam__qmat saved = g_qm[l][m];
    g_qm[l][m] = (loam__qmat){LOAM_DTYPE_U32, fmt, wq, sc, bi, g_out[m], g_in[m]};
    a = load_ok(mx.dir);
    const loam__lora_mod *q = a ? loam__adapter_mod(a, l, (loam__mod)m) : NULL;
    CHECK(q && q->dora);
    double worst = 0, moved = 0;
    for (int64_t o = 0; q && q->dora && o < g_out[m]; o++) {
        double want = dora_ref(&g_qm[l][m], l, m, 4, 3.0, o, g_m[l][m]);
        double dense = dora_ref(&saved, l, m, 4, 3.0, o, g_m[l][m]);
        worst = fmax(worst, fabs(q->dora[o] - want) / want);
        moved = fmax(moved, fabs(want - dense) / want);
    }
    CHECK(worst < 1e-6);
    CHECK(moved > 1e-6); /* the quantized weight really is a different matrix */
    loam__adapter_free(a);
    g_qm[l][m] = saved;
    free(wq);
    free(sc);
    free(bi);

    /* DoRA without a base weight to read */
    loam__lora_base nob = g_base;
    nob.weight = NULL;
    loam__adapter *z = NULL;
    CHECK_EQ_I64(loam__adapter_load(&z, mx.dir, &nob, &e), LOAM_E_FORMAT);
    CHECK(strstr(e.msg, "DoRA needs the base weight") != NULL);
    free_owned();
}

/* y = y0 + s·x·A·B (+ s·bias) then ⊙ dora, in double. */
static void apply_ref(const loam__lora_mod *lm, const float *x, int64_t m, int64_t in, int64_t out,
                      const float *y0, double *y) {
    for (int64_t row = 0; row < m; row++) {
        double t[128];
        for (int j = 0; j < lm->r; j++) {
            double acc = 0;
            for (int64_t i = 0; i < in; i++)
                acc += (double)x[row * in + i] * lm->a[i * lm->r + j];
            t[j] = acc * lm->scale;
        }
        for (int64_t o = 0; o < out; o++) {
            double acc = y0[row * out + o];
            for (int j = 0; j < lm->r; j++)
                acc += t[j] * lm->b[(int64_t)j * out + o];
            if (lm->bias)
                acc += (double)lm->scale * lm->bias[o];
            if (lm->dora)
                acc *= lm->dora[o];
            y[row * out + o] = acc;
        }
    }
}

static void check_apply(int64_t in, int64_t out, int32_t r, int64_t m, bool dora, bool bias) {
    loam__lora_mod lm = {0};
    float *A = malloc((size_t)(in * r) * sizeof(float));
    float *B = malloc((size_t)(out * r) * sizeof(float));
    float *D = malloc((size_t)out * sizeof(float)), *BI = malloc((size_t)out * sizeof(float));
    float *x = malloc((size_t)(m * in) * sizeof(float));
    float *y = malloc((size_t)(m * out) * sizeof(float)),
          *y0 = malloc((size_t)(m * out) * sizeof(float));
    double *want = malloc((size_t)(m * out) * sizeof(double));
    float *scratch = malloc((size_t)(m * r) * sizeof(float));
    for (int64_t i = 0; i < in * r; i++)
        A[i] = frand() / sqrtf((float)in);
    for (int64_t i = 0; i < out * r; i++)
        B[i] = frand();
    for (int64_t i = 0; i < out; i++) {
        D[i] = 0.8f + 0.4f * frand();
        BI[i] = frand();
    }
    for (int64_t i = 0; i < m * in; i++)
        x[i] = frand();
    for (int64_t i = 0; i < m * out; i++)
        y0[i] = y[i] = 3.0f * frand();
    lm.a = A;
    lm.b = B;
    lm.r = r;
    lm.scale = 1.75f;
    lm.dora = dora ? D : NULL;
    lm.bias = bias ? BI : NULL;
    loam__lora_apply(&lm, x, m, in, out, y, scratch);
    apply_ref(&lm, x, m, in, out, y0, want);
    /* float32 accumulation over in and r terms of size ~1: relative to the term magnitudes */
    double worst = 0;
    for (int64_t i = 0; i < m * out; i++)
        worst = fmax(worst, fabs(y[i] - want[i]));
    double tol = 2e-6 * (sqrt((double)in) + (double)r) * 4.0 + 1e-5;
    if (!(worst <= tol))
        fprintf(stderr, "  apply in %lld out %lld r %d m %lld: max error %g > %g\n", (long long)in,
                (long long)out, r, (long long)m, worst, tol);
    CHECK(worst <= tol);
    /* the split halves over two output ranges give the same bits as one call on a thread */
    float *y2 = malloc((size_t)(m * out) * sizeof(float));
    memcpy(y2, y0, (size_t)(m * out) * sizeof(float));
    loam__lora_down(&lm, x, m, in, scratch);
    int64_t cut = out / 3;
    loam__lora_up(&lm, scratch, m, out, cut, out, y2);
    loam__lora_up(&lm, scratch, m, out, 0, cut, y2);
    double worst2 = 0;
    for (int64_t i = 0; i < m * out; i++)
        worst2 = fmax(worst2, fabs(y2[i] - want[i]));
    CHECK(worst2 <= tol);
    free(y2);
    free(A);
    free(B);
    free(D);
    free(BI);
    free(x);
    free(y);
    free(y0);
    free(want);
    free(scratch);
}

static void test_apply(void) {
    check_apply(64, 96, 4, 1, false, false);
    check_apply(64, 96, 8, 3, false, false);
    check_apply(96, 64, 12, 2, true, false); /* 8-column block + tail */
    check_apply(33, 17, 3, 5, false, true);  /* ragged everything, lora_bias */
    check_apply(128, 64, 1, 1, true, false);
    /* the threaded path: (in + out) * r >= 65536 */
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    check_apply(4096, 4096, 8, 1, false, false);
    check_apply(4096, 1024, 16, 2, true, false);
    check_apply(1536, 4096, 100, 1, false, true); /* r > 64: threads on the up half only */
    omp_set_num_threads(saved);
}

static void test_lora_bias(void) {
    adapter_files af;
    af_init(&af);
    add_mod(&af, true, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_V, 4);
    af_add(&af, LOAM_DTYPE_F32, g_m[0][LOAM__MOD_V], 1, g_out[LOAM__MOD_V], 0,
           "base_model.model.model.layers.0.self_attn.v_proj.lora_B.bias");
    af_write(&af, "adapter_model.safetensors",
             "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 4, \"lora_bias\": true}");
    loam__adapter *a = load_ok(af.dir);
    const loam__lora_mod *v = a ? loam__adapter_mod(a, 0, LOAM__MOD_V) : NULL;
    CHECK(v && v->bias);
    for (int64_t o = 0; v && v->bias && o < g_out[LOAM__MOD_V]; o++)
        CHECK(v->bias[o] == g_m[0][LOAM__MOD_V][o]);
    loam__adapter_free(a);
    /* with DoRA: refused */
    adapter_files d;
    af_init(&d);
    add_mod(&d, true, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_V, 4);
    af_add(&d, LOAM_DTYPE_F32, g_m[0][LOAM__MOD_V], 1, g_out[LOAM__MOD_V], 0,
           "base_model.model.model.layers.0.self_attn.v_proj.lora_B.bias");
    af_write(&d, "adapter_model.safetensors",
             "{\"peft_type\": \"LORA\", \"r\": 4, \"use_dora\": true, \"lora_bias\": true}");
    load_fails(d.dir, LOAM_E_UNSUPPORTED, "lora_B.bias", "DoRA together with lora_bias");
    free_owned();
}

/* One adapter directory whose only problem is the extra tensor / config given. */
static void bad_mlx(const char *cfg, loam_dtype dt, int32_t n_dims, int64_t d0, int64_t d1,
                    const char *key, loam_status code, const char *n1, const char *n2) {
    adapter_files af;
    af_init(&af);
    add_mod(&af, false, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_Q, 4);
    if (key) {
        tensor_spec *t = af_add(&af, dt, NULL, n_dims, d0, d1, "%s", key);
        t->shape[2] = 2;
    }
    af_write(&af, "adapters.safetensors", cfg ? cfg : MLX_CFG);
    load_fails(af.dir, code, n1, n2);
}

static void bad_peft(const char *cfg, loam_dtype dt, int32_t n_dims, int64_t d0, int64_t d1,
                     const char *key, loam_status code, const char *n1, const char *n2) {
    adapter_files af;
    af_init(&af);
    add_mod(&af, true, 0, LOAM_DTYPE_F32, 0, LOAM__MOD_Q, 4);
    if (key)
        af_add(&af, dt, NULL, n_dims, d0, d1, "%s", key);
    af_write(&af, "adapter_model.safetensors", cfg ? cfg : PEFT_CFG);
    load_fails(af.dir, code, n1, n2);
}

static void test_errors(void) {
    const loam_dtype F = LOAM_DTYPE_F32;
    char path[256];
    /* directory contents */
    adapter_files af;
    af_init(&af);
    load_fails(af.dir, LOAM_E_NOTFOUND, "adapters.safetensors", "adapter_model.safetensors");
    write_file(af.dir, "adapter_model.bin", "pickle");
    load_fails(af.dir, LOAM_E_UNSUPPORTED, "adapter_model.bin", NULL);
    af_init(&af);
    add_mod(&af, false, 0, F, 0, LOAM__MOD_Q, 4);
    af_write(&af, "adapters.safetensors", NULL);
    load_fails(af.dir, LOAM_E_IO, "adapter_config.json", NULL);
    write_file(af.dir, "adapter_config.json", "{\"num_layers\": 2,}");
    load_fails(af.dir, LOAM_E_FORMAT, "adapter_config.json", NULL);
    write_file(af.dir, "adapter_config.json", "[1]");
    load_fails(af.dir, LOAM_E_FORMAT, "not a JSON object", NULL);
    snprintf(path, sizeof path, "%s/adapters.safetensors", af.dir);
    FILE *f = fopen(path, "wb");
    fputs("garbage!", f);
    fclose(f);
    write_file(af.dir, "adapter_config.json", MLX_CFG);
    load_fails(af.dir, LOAM_E_FORMAT, "adapters.safetensors", NULL);

    /* config fields */
    bad_mlx("{\"fine_tune_type\": \"full\"}", F, 0, 0, 0, NULL, LOAM_E_UNSUPPORTED, "\"full\"",
            NULL);
    bad_mlx("{\"fine_tune_type\": \"qlora\"}", F, 0, 0, 0, NULL, LOAM_E_FORMAT, "qlora", NULL);
    bad_mlx("{\"num_layers\": 1.5}", F, 0, 0, 0, NULL, LOAM_E_FORMAT, "num_layers", NULL);
    bad_mlx("{\"lora_parameters\": {\"rank\": 0}}", F, 0, 0, 0, NULL, LOAM_E_FORMAT, "rank", NULL);
    bad_mlx("{\"lora_parameters\": {\"scale\": \"x\"}}", F, 0, 0, 0, NULL, LOAM_E_FORMAT, "scale",
            NULL);
    bad_mlx("{\"lora_parameters\": {\"keys\": \"q_proj\"}}", F, 0, 0, 0, NULL, LOAM_E_FORMAT,
            "keys", NULL);
    bad_mlx("{\"lora_parameters\": {\"rank\": 8}}", F, 0, 0, 0, NULL, LOAM_E_FORMAT,
            "model.layers.0.self_attn.q_proj.lora_a", "lora_parameters.rank is 8");
    bad_peft("{\"peft_type\": \"IA3\"}", F, 0, 0, 0, NULL, LOAM_E_UNSUPPORTED, "IA3", NULL);
    bad_peft("{\"peft_type\": \"LORA\", \"r\": 4, \"layer_replication\": [[0, 2]]}", F, 0, 0, 0,
             NULL, LOAM_E_UNSUPPORTED, "layer_replication", NULL);
    bad_peft("{\"peft_type\": \"LORA\", \"r\": 4, \"rank_pattern\": {\"q_proj(\": 4}}", F, 0, 0, 0,
             NULL, LOAM_E_FORMAT, "not a valid regex", "q_proj(");
    bad_peft("{\"peft_type\": \"LORA\", \"r\": 4, \"use_rslora\": 1}", F, 0, 0, 0, NULL,
             LOAM_E_FORMAT, "use_rslora", NULL);
    bad_peft("{\"peft_type\": \"LORA\", \"r\": 8}", F, 0, 0, 0, NULL, LOAM_E_FORMAT,
             "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "r = 8");

    /* tensors: unknown keys, layers, modules, shapes, ranks, dtypes, duplicates, pairs */
    bad_mlx(NULL, F, 2, 64, 4, "model.layers.0.self_attn.q_proj.lora_c", LOAM_E_FORMAT,
            "adapters.safetensors", "'model.layers.0.self_attn.q_proj.lora_c' is not");
    bad_mlx(NULL, F, 2, 64, 4, "model.layers.01.self_attn.k_proj.lora_a", LOAM_E_FORMAT,
            "'model.layers.01.self_attn.k_proj.lora_a' is not", NULL);
    bad_mlx(NULL, F, 2, 64, 4, "model.layers.3.self_attn.k_proj.lora_a", LOAM_E_FORMAT,
            "model.layers.3.self_attn.k_proj.lora_a", "layer 3, but the model has 3 layers");
    bad_mlx(NULL, F, 2, 64, 4, "model.layers.1.self_attn.qkv_proj.lora_a", LOAM_E_FORMAT,
            "model.layers.1.self_attn.qkv_proj.lora_a", "no module 'self_attn.qkv_proj'");
    bad_mlx(NULL, F, 2, 63, 4, "model.layers.1.self_attn.k_proj.lora_a", LOAM_E_FORMAT,
            "model.layers.1.self_attn.k_proj.lora_a", "no matching lora B");
    bad_mlx(NULL, F, 3, 64, 4, "model.layers.1.self_attn.k_proj.lora_a", LOAM_E_FORMAT,
            "model.layers.1.self_attn.k_proj.lora_a", "expected 2 dims");
    bad_mlx(NULL, LOAM_DTYPE_I32, 2, 64, 4, "model.layers.1.self_attn.k_proj.lora_a", LOAM_E_FORMAT,
            "model.layers.1.self_attn.k_proj.lora_a", "dtype I32");
    bad_mlx(NULL, F, 1, 96, 0, "model.layers.0.self_attn.q_proj.m", LOAM_E_FORMAT,
            "model.layers.0.self_attn.q_proj.m", "DoRA magnitude");
    bad_mlx(NULL, F, 2, 64, 4, "lm_head.lora_a", LOAM_E_UNSUPPORTED, "lm_head.lora_a",
            "embedding or lm_head");
    bad_mlx(NULL, F, 2, 64, 4, "model.embed_tokens.lora_a", LOAM_E_UNSUPPORTED,
            "model.embed_tokens.lora_a", "embedding");
    bad_mlx(NULL, F, 2, 64, 4, "model.layers.0.self_attn.q_proj.weight", LOAM_E_FORMAT,
            "model.layers.0.self_attn.q_proj.weight", "not a mlx-lm LoRA adapter tensor");
    bad_mlx("{\"fine_tune_type\": \"dora\", \"num_layers\": -1, \"lora_parameters\":"
            " {\"rank\": 4}}",
            F, 1, 96, 0, "model.layers.2.self_attn.q_proj.m", LOAM_E_FORMAT,
            "model.layers.2.self_attn.q_proj.m", "without its lora A and B");
    bad_mlx("{\"fine_tune_type\": \"dora\", \"num_layers\": -1, \"lora_parameters\":"
            " {\"rank\": 4}}",
            F, 1, 95, 0, "model.layers.0.self_attn.q_proj.m", LOAM_E_FORMAT,
            "model.layers.0.self_attn.q_proj.m", "expected [96]");
    bad_peft(NULL, F, 2, 4, 64,
             "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
             LOAM_E_FORMAT, "lora_A.default.weight' duplicates", NULL);
    bad_peft(NULL, F, 2, 4, 151936, "base_model.model.model.embed_tokens.lora_embedding_A",
             LOAM_E_UNSUPPORTED, "lora_embedding_A", "embedding");
    bad_peft(NULL, F, 2, 64, 64, "base_model.model.lm_head.modules_to_save.default.weight",
             LOAM_E_UNSUPPORTED, "modules_to_save", "full weight");
    bad_peft(NULL, F, 1, 64, 0, "base_model.model.model.norm.weight", LOAM_E_UNSUPPORTED,
             "base_model.model.model.norm.weight", "full weight");
    bad_peft(NULL, F, 1, 96, 0,
             "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
             LOAM_E_FORMAT, "lora_magnitude_vector", "use_dora");

    /* shapes against the model, and A/B ranks */
    adapter_files s;
    af_init(&s);
    af_add(&s, F, NULL, 2, 65, 4, "model.layers.0.self_attn.k_proj.lora_a");
    af_add(&s, F, NULL, 2, 4, 32, "model.layers.0.self_attn.k_proj.lora_b");
    af_write(&s, "adapters.safetensors", MLX_CFG);
    load_fails(s.dir, LOAM_E_FORMAT, "model.layers.0.self_attn.k_proj.lora_a", "[65, 4]");
    af_init(&s);
    af_add(&s, F, NULL, 2, 64, 4, "model.layers.0.self_attn.k_proj.lora_a");
    af_add(&s, F, NULL, 2, 4, 33, "model.layers.0.self_attn.k_proj.lora_b");
    af_write(&s, "adapters.safetensors", MLX_CFG);
    load_fails(s.dir, LOAM_E_FORMAT, "model.layers.0.self_attn.k_proj.lora_b", "32 outputs");
    af_init(&s);
    af_add(&s, F, NULL, 2, 4, 64, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
    af_add(&s, F, NULL, 2, 32, 5, "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight");
    af_write(&s, "adapter_model.safetensors", PEFT_CFG);
    load_fails(s.dir, LOAM_E_FORMAT, "lora_A.weight' has rank 4", "lora_B.weight' has rank 5");

    /* a module the model does not have (geometry 0) */
    loam__lora_base saved = g_base;
    g_base.in[LOAM__MOD_GATE] = g_base.out[LOAM__MOD_GATE] = 0;
    bad_mlx(NULL, F, 2, 64, 4, "model.layers.0.mlp.gate_proj.lora_a", LOAM_E_FORMAT,
            "model.layers.0.mlp.gate_proj.lora_a", "the model has no mlp.gate_proj");
    g_base = saved;

    loam__adapter *a = NULL;
    loam_err e;
    CHECK_EQ_I64(loam__adapter_load(&a, NULL, &g_base, &e), LOAM_E_INVAL);
    free_owned();
}

static void test_alloc_failures(void) {
    adapter_files af;
    af_init(&af);
    for (int m = 0; m < LOAM__N_MOD; m++)
        add_mod(&af, true, 0, LOAM_DTYPE_BF16, 1, m, 4);
    af_add(&af, LOAM_DTYPE_F32, g_m[1][0], 1, g_out[0], 0,
           "base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector");
    af_write(&af, "adapter_model.safetensors",
             "{\"peft_type\": \"LORA\", \"r\": 4, \"use_dora\": true,"
             " \"rank_pattern\": {\"q_proj\": 4, \"k_proj\": 4}}");
    uint64_t before = loam_debug_bytes_in_use();
    int ok_at = 0;
    for (uint64_t k = 1; k < 200 && !ok_at; k++) {
        loam__adapter *a = NULL;
        loam_err e = {0};
        loam_debug_fail_alloc_after(k);
        loam_status s = loam__adapter_load(&a, af.dir, &g_base, &e);
        loam_debug_fail_alloc_after(0);
        if (s == LOAM_OK) {
            ok_at = (int)k;
            loam__adapter_free(a);
        } else if (s != LOAM_E_NOMEM) {
            fprintf(stderr, "  failing allocation %llu gave %d: %s\n", (unsigned long long)k, s,
                    e.msg);
            CHECK(0);
        }
    }
    CHECK(ok_at > 3);
    CHECK_EQ_I64(loam_debug_bytes_in_use(), before);
    free_owned();
}

// ---- the reference fixtures -------------------------------------------------------------------

static const loam__qmat *fixture_weight(void *user, int32_t layer, loam__mod mod) {
    const loam_model *m = user;
    return &m->layers[layer].lin[mod].w;
}

static void test_fixtures(void) {
    static const char *cases[] = {"qwen3_bf16",
                                  "qwen3_q4_g64_tied",
                                  "qwen3_q4_g32_gqa4_dora",
                                  "qwen3_q4_g64_override",
                                  "qwen3_q8_g32_gqa1_f16",
                                  "llama3_q4_g64",
                                  "qwen2_q4_g64_tied",
                                  "qwen3_q3_g64_tied",
                                  "qwen3_q4_g128_h64"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[512], amlx[600], apeft[600], cpath[600];
        snprintf(dir, sizeof dir, "%s/data/models/%s", LOAM_TEST_DIR, cases[c]);
        snprintf(amlx, sizeof amlx, "%s/adapter_mlx", dir);
        snprintf(apeft, sizeof apeft, "%s/adapter_peft", dir);
        snprintf(cpath, sizeof cpath, "%s/case.json", dir);
        loam_err e = {0};
        char *text = NULL;
        size_t len = 0;
        cJSON *cj = NULL;
        CHECK_OK(loam__read_file(cpath, &text, &len, &e), e);
        if (text)
            CHECK_OK(loam__json_parse(text, len, "case.json", &cj, &e), e);
        loam_model *m = NULL;
        CHECK_OK(loam_model_open(&m, dir, NULL, &e), e);
        if (!cj || !m) {
            fprintf(stderr, "  fixture %s unusable\n", cases[c]);
            loam__free(text);
            cJSON_Delete(cj);
            loam_model_close(m);
            continue;
        }
        loam__lora_base base;
        memset(&base, 0, sizeof base);
        base.n_layer = m->cfg.n_layer;
        for (int k = 0; k < LOAM__N_MOD; k++) {
            base.in[k] = m->layers[0].lin[k].w.k;
            base.out[k] = m->layers[0].lin[k].w.n;
        }
        base.weight = fixture_weight;
        base.user = m;
        loam__adapter *am = NULL, *ap = NULL;
        CHECK_OK(loam__adapter_load(&am, amlx, &base, &e), e);
        const cJSON *ma = cJSON_GetObjectItemCaseSensitive(cj, "mlx_adapter");
        const cJSON *mods = cJSON_GetObjectItemCaseSensitive(ma, "modules");
        double scale = cJSON_GetObjectItemCaseSensitive(ma, "scale")->valuedouble;
        int rank = (int)cJSON_GetObjectItemCaseSensitive(ma, "rank")->valuedouble;
        bool dora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ma, "dora"));
        /* exactly the listed modules are adapted, with the listed rank and scale */
        int listed = 0, adapted = 0;
        for (int32_t l = 0; am && l < base.n_layer; l++)
            for (int k = 0; k < LOAM__N_MOD; k++) {
                char name[96];
                snprintf(name, sizeof name, "model.layers.%d.%s", l, loam__mod_path[k]);
                bool want = false;
                for (const cJSON *it = mods ? mods->child : NULL; it; it = it->next)
                    want |= strcmp(it->valuestring, name) == 0;
                const loam__lora_mod *lm = loam__adapter_mod(am, l, (loam__mod)k);
                listed += want;
                adapted += lm != NULL;
                CHECK(want == (lm != NULL));
                if (lm) {
                    CHECK_EQ_I64(lm->r, rank);
                    CHECK_CLOSE(lm->scale, scale, 1e-6);
                    CHECK((lm->dora != NULL) == dora);
                }
            }
        CHECK_EQ_I64(adapted, listed);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "mlx_and_peft_same_adapter"))) {
            CHECK_OK(loam__adapter_load(&ap, apeft, &base, &e), e);
            CHECK_STR(loam__adapter_format(ap), "peft");
            int differ = 0;
            double dora_worst = 0;
            for (int32_t l = 0; am && ap && l < base.n_layer; l++)
                for (int k = 0; k < LOAM__N_MOD; k++) {
                    const loam__lora_mod *x = loam__adapter_mod(am, l, (loam__mod)k);
                    const loam__lora_mod *y = loam__adapter_mod(ap, l, (loam__mod)k);
                    CHECK((x == NULL) == (y == NULL));
                    if (!x || !y)
                        continue;
                    CHECK_EQ_I64(x->r, y->r);
                    CHECK_CLOSE(x->scale, y->scale, 1e-6 * fabs(x->scale));
                    size_t na = (size_t)(base.in[k] * x->r), nb = (size_t)(base.out[k] * x->r);
                    differ += memcmp(x->a, y->a, na * sizeof(float)) != 0;
                    differ += memcmp(x->b, y->b, nb * sizeof(float)) != 0;
                    CHECK((x->dora == NULL) == (y->dora == NULL));
                    for (int64_t o = 0; x->dora && y->dora && o < base.out[k]; o++)
                        dora_worst =
                            fmax(dora_worst, fabs(x->dora[o] - y->dora[o]) / fabs(x->dora[o]));
                }
            if (differ)
                fprintf(stderr, "  fixture %s: %d A/B tensors differ\n", cases[c], differ);
            CHECK_EQ_I64(differ, 0);
            CHECK(dora_worst < 1e-6);
        }
        loam__adapter_free(am);
        loam__adapter_free(ap);
        loam_model_close(m);
        cJSON_Delete(cj);
        loam__free(text);
    }
}

static void remove_tree(const char *root) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

static void run_tests(void) {
    snprintf(g_root, sizeof g_root, "/tmp/loam-test-lora-XXXXXX");
    if (!mkdtemp(g_root)) {
        fprintf(stderr, "mkdtemp failed\n");
        exit(1);
    }
    setup_base();
    setup_adapter_values();
    TEST(test_mlx_and_peft_agree);
    TEST(test_dtypes);
    TEST(test_scales);
    TEST(test_num_layers_and_keys);
    TEST(test_dora);
    TEST(test_apply);
    TEST(test_lora_bias);
    TEST(test_errors);
    TEST(test_alloc_failures);
    TEST(test_fixtures);
    teardown_adapter_values();
    teardown_base();
    remove_tree(g_root);
}
