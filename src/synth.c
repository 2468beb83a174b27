/* synth.c: `loam synth` (loam_synth): model directories with random weights and the exact
 * config.json, tensor names, shapes and dtypes of real models, for benchmarks and tests.
 *
 * Presets (numbers from the models' Hugging Face config.json files, FORMATS.md §6.2):
 *   qwen3-0.6b  hidden 1024, ffn 3072, 28 layers, 16 heads, 8 KV heads, tied embeddings
 *   qwen3-1.7b  hidden 2048, ffn 6144, 28 layers, 16 heads, 8 KV heads, tied
 *   qwen3-4b    hidden 2560, ffn 9728, 36 layers, 32 heads, 8 KV heads, tied
 *   qwen3-8b    hidden 4096, ffn 12288, 36 layers, 32 heads, 8 KV heads
 *   qwen3-14b   hidden 5120, ffn 17408, 40 layers, 40 heads, 8 KV heads
 *     (all Qwen3: head_dim 128, vocab 151936, rope_theta 1e6, rms_norm_eps 1e-6, 40960 positions)
 *   llama3-8b   Llama-3.1-8B-Instruct: hidden 4096, ffn 14336, 32 layers, 32 heads, 8 KV heads,
 *               vocab 128256, rope_theta 5e5 with llama3 scaling (factor 8), 131072 positions
 *   tiny        a 2-layer Qwen3 (hidden 128, ffn 256, 4 heads of 32, 2 KV heads, vocab 512,
 *               untied) for tests; every width is a multiple of 128, so any group size works.
 * With bits = 0 the directory is a Hugging Face float checkpoint instead (bf16 weights of
 * N(0, 0.02)-like spread, no quantization keys, shard metadata {"format": "pt"}): the input
 * `loam quantize` takes, and an unquantized model for the dense kernels.
 * The directory is what `mlx_lm.convert -q` would write for the real model (convert.h): the same
 * sorted config plus "quantization"/"quantization_config", P.weight/P.scales/P.biases for every
 * Linear and the embedding whose input width divides by the group size, bf16 norms.
 *
 * The weights are not quantized from floats: packed words are random bytes (every bit pattern
 * is a valid q), each group gets a scale of the size MLX would give N(0, 0.02) weights
 * (|s| = 2·2.4·0.02/(2^bits−1), ±30%) with a random sign and bias −s·round((2^bits−1)/2 ± 0.5),
 * so dequantized weights are centred on 0 with a standard deviation near 0.02; norm weights are
 * 1 ± 0.05. No NaN, no all-zero group (every scale is non-zero). Random numbers are
 * counter-based (splitmix64 of seed, tensor name hash and position), so a tensor's bytes do not
 * depend on thread count or order, and chunks are generated in parallel.
 */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"

#include "json.h"

#include <math.h>
#include <omp.h>

typedef struct {
    const char *name;
    int llama; /* 0: Qwen3ForCausalLM, 1: LlamaForCausalLM */
    int64_t hidden, ffn, layers, heads, kv_heads, head_dim, vocab;
    int tied;
    int64_t max_pos, max_window_layers;
} preset;

static const preset k_presets[] = {
    {"tiny", 0, 128, 256, 2, 4, 2, 32, 512, 0, 4096, 2},
    {"qwen3-0.6b", 0, 1024, 3072, 28, 16, 8, 128, 151936, 1, 40960, 28},
    {"qwen3-1.7b", 0, 2048, 6144, 28, 16, 8, 128, 151936, 1, 40960, 28},
    {"qwen3-4b", 0, 2560, 9728, 36, 32, 8, 128, 151936, 1, 40960, 36},
    {"qwen3-8b", 0, 4096, 12288, 36, 32, 8, 128, 151936, 0, 40960, 36},
    {"qwen3-14b", 0, 5120, 17408, 40, 40, 8, 128, 151936, 0, 40960, 40},
    {"llama3-8b", 1, 4096, 14336, 32, 32, 8, 128, 128256, 0, 131072, 0},
};
#define N_PRESETS (sizeof k_presets / sizeof k_presets[0])

const char *loam_synth_preset(size_t i) {
    return i < N_PRESETS ? k_presets[i].name : NULL;
}

loam_synth_params loam_synth_params_default(void) {
    loam_synth_params p;
    memset(&p, 0, sizeof p);
    p.bits = 4;
    p.group_size = 64;
    p.seed = 1;
    p.max_shard_bytes = (uint64_t)5 << 30;
    return p;
}

/* config.json of the real model, as text (so float fields stay floats: see loam__numkinds). */
static int config_text(const preset *m, char *buf, size_t cap) {
    if (m->llama)
        return snprintf(
            buf, cap,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, "
            "\"attention_dropout\": 0.0, \"bos_token_id\": 128000, "
            "\"eos_token_id\": [128001, 128008, 128009], \"hidden_act\": \"silu\", "
            "\"hidden_size\": %lld, \"initializer_range\": 0.02, \"intermediate_size\": %lld, "
            "\"max_position_embeddings\": %lld, \"mlp_bias\": false, \"model_type\": \"llama\", "
            "\"num_attention_heads\": %lld, \"num_hidden_layers\": %lld, "
            "\"num_key_value_heads\": %lld, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, "
            "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, "
            "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, "
            "\"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0, "
            "\"tie_word_embeddings\": %s, \"torch_dtype\": \"bfloat16\", "
            "\"transformers_version\": \"4.43.0.dev0\", \"use_cache\": true, "
            "\"vocab_size\": %lld}",
            (long long)m->hidden, (long long)m->ffn, (long long)m->max_pos, (long long)m->heads,
            (long long)m->layers, (long long)m->kv_heads, m->tied ? "true" : "false",
            (long long)m->vocab);
    return snprintf(
        buf, cap,
        "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false, "
        "\"attention_dropout\": 0.0, \"bos_token_id\": %d, \"eos_token_id\": %d, "
        "\"head_dim\": %lld, \"hidden_act\": \"silu\", \"hidden_size\": %lld, "
        "\"initializer_range\": 0.02, \"intermediate_size\": %lld, "
        "\"max_position_embeddings\": %lld, \"max_window_layers\": %lld, "
        "\"model_type\": \"qwen3\", \"num_attention_heads\": %lld, \"num_hidden_layers\": %lld, "
        "\"num_key_value_heads\": %lld, \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, "
        "\"rope_theta\": 1000000, \"sliding_window\": null, \"tie_word_embeddings\": %s, "
        "\"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.0\", "
        "\"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": %lld}",
        m->vocab > 151645 ? 151643 : 1, m->vocab > 151645 ? 151645 : 2, (long long)m->head_dim,
        (long long)m->hidden, (long long)m->ffn, (long long)m->max_pos,
        (long long)m->max_window_layers, (long long)m->heads, (long long)m->layers,
        (long long)m->kv_heads, m->tied ? "true" : "false", (long long)m->vocab);
}

// ---- random fills -----------------------------------------------------------------------------

enum { T_PACKED, T_SCALES, T_BIASES, T_NORM, T_DENSE };

typedef struct {
    int kind;
    uint64_t seed; /* params seed mixed with the hash of the weight's name */
    int bits;
    uint64_t n_elements; /* of the output tensor */
} synth_job;

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* uniform in [0, 1) from 24 bits of r */
static float unit(uint64_t r) {
    return (float)(r >> 40) * 0x1p-24f;
}

/* Scale and bias of group g (the same seed for both tensors of one weight). */
static void group_sb(const synth_job *j, uint64_t g, float *s, float *b) {
    uint64_t r = splitmix64(j->seed ^ splitmix64(g));
    float n_bins = (float)((1 << j->bits) - 1);
    float mag = 2.0f * 2.4f * 0.02f / n_bins * (0.7f + 0.6f * unit(r));
    float sc = (r & 1u) ? mag : -mag;
    float zero = floorf(n_bins / 2.0f) + (float)((r >> 1) & 1u); /* 7 or 8 for 4 bits */
    *s = sc;
    *b = -sc * zero;
}

static loam_status synth_fill(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    (void)err;
    const synth_job *j = (const synth_job *)user;
    uint8_t *d = (uint8_t *)dst;
    const int64_t chunk = 1 << 17; /* elements (or 8-byte words) per parallel work item */
    if (j->kind == T_PACKED) {
        int64_t words = (int64_t)(n_bytes / 8);
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < words; c += chunk) {
            int64_t e = c + chunk < words ? c + chunk : words;
            for (int64_t i = c; i < e; i++)
                loam__wr_u64le(d + 8 * i, splitmix64(j->seed + (uint64_t)i));
        }
        for (uint64_t i = (uint64_t)words * 8; i < n_bytes; i++)
            d[i] = (uint8_t)splitmix64(j->seed + i);
        return LOAM_OK;
    }
    int64_t n = (int64_t)j->n_elements;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += chunk) {
        int64_t e = c + chunk < n ? c + chunk : n;
        for (int64_t i = c; i < e; i++) {
            float v, s, b;
            switch (j->kind) {
            case T_SCALES:
                group_sb(j, (uint64_t)i, &s, &b);
                v = s;
                break;
            case T_BIASES:
                group_sb(j, (uint64_t)i, &s, &b);
                v = b;
                break;
            case T_NORM:
                v = 1.0f + 0.1f * (unit(splitmix64(j->seed + (uint64_t)i)) - 0.5f);
                break;
            default:
                v = 0.06f * (unit(splitmix64(j->seed + (uint64_t)i)) - 0.5f);
                break;
            }
            loam__store_float(d, LOAM_DTYPE_BF16, (size_t)i, v);
        }
    }
    return LOAM_OK;
}

// ---- the tensor list --------------------------------------------------------------------------

typedef struct {
    loam__out_tensor *out;
    synth_job *jobs;
    size_t n, cap;
    const loam_synth_params *p;
} tlist;

static loam_status add_out(tlist *l, const char *name, loam_dtype dt, int64_t d0, int64_t d1,
                           int n_dims, synth_job job, uint64_t n_params, loam_err *err) {
    if (l->n == l->cap)
        return loam__fail(err, LOAM_E_NOMEM, "synth: tensor list full");
    loam__out_tensor *o = &l->out[l->n];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->dtype = dt;
    o->n_dims = n_dims;
    o->shape[0] = d0;
    o->shape[1] = n_dims == 2 ? d1 : 0;
    uint64_t elems = (uint64_t)d0 * (uint64_t)(n_dims == 2 ? d1 : 1);
    o->n_bytes = elems * (uint64_t)loam_dtype_bits(dt) / 8u;
    o->n_params = n_params;
    job.n_elements = elems;
    l->jobs[l->n] = job;
    o->fill = synth_fill;
    o->user = &l->jobs[l->n];
    l->n++;
    return LOAM_OK;
}

/* A Linear/Embedding weight [n, k] named base.weight: quantized when k divides by group_size. */
static loam_status add_linear(tlist *l, const char *base, int64_t n, int64_t k, loam_err *err) {
    char name[256];
    uint64_t seed = l->p->seed ^ hash_name(base);
    const int bits = l->p->bits, gs = l->p->group_size;
    if (bits == 0 || k % gs != 0) {
        snprintf(name, sizeof name, "%s.weight", base);
        return add_out(l, name, LOAM_DTYPE_BF16, n, k, 2, (synth_job){T_DENSE, seed, bits, 0},
                       (uint64_t)(n * k), err);
    }
    loam_status s;
    snprintf(name, sizeof name, "%s.weight", base);
    s = add_out(l, name, LOAM_DTYPE_U32, n, k * bits / 32, 2, (synth_job){T_PACKED, seed, bits, 0},
                (uint64_t)(n * k), err);
    snprintf(name, sizeof name, "%s.scales", base);
    if (s == LOAM_OK)
        s = add_out(l, name, LOAM_DTYPE_BF16, n, k / gs, 2, (synth_job){T_SCALES, seed, bits, 0}, 0,
                    err);
    snprintf(name, sizeof name, "%s.biases", base);
    if (s == LOAM_OK)
        s = add_out(l, name, LOAM_DTYPE_BF16, n, k / gs, 2, (synth_job){T_BIASES, seed, bits, 0}, 0,
                    err);
    return s;
}

static loam_status add_norm(tlist *l, const char *name, int64_t n, loam_err *err) {
    return add_out(l, name, LOAM_DTYPE_BF16, n, 0, 1,
                   (synth_job){T_NORM, l->p->seed ^ hash_name(name), 0, 0}, (uint64_t)n, err);
}

/* "model.layers.L.suffix" in buf. */
static const char *layer_name(char *buf, size_t cap, int64_t L, const char *suffix) {
    snprintf(buf, cap, "model.layers.%lld.%s", (long long)L, suffix);
    return buf;
}

/* In mlx-lm's save order at the layer level (embedding, layers 0.., final norm, head), the
 * names within a layer sorted. */
static loam_status build(tlist *l, const preset *m, loam_err *err) {
    const int64_t H = m->hidden, hd = m->head_dim, q_out = m->heads * hd, kv_out = m->kv_heads * hd;
    char b[160];
    const size_t n = sizeof b;
    loam_status s = add_linear(l, "model.embed_tokens", m->vocab, H, err);
    for (int64_t L = 0; s == LOAM_OK && L < m->layers; L++) {
        s = add_norm(l, layer_name(b, n, L, "input_layernorm.weight"), H, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "mlp.down_proj"), H, m->ffn, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "mlp.gate_proj"), m->ffn, H, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "mlp.up_proj"), m->ffn, H, err);
        if (s == LOAM_OK)
            s = add_norm(l, layer_name(b, n, L, "post_attention_layernorm.weight"), H, err);
        if (s == LOAM_OK && !m->llama)
            s = add_norm(l, layer_name(b, n, L, "self_attn.k_norm.weight"), hd, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "self_attn.k_proj"), kv_out, H, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "self_attn.o_proj"), H, q_out, err);
        if (s == LOAM_OK && !m->llama)
            s = add_norm(l, layer_name(b, n, L, "self_attn.q_norm.weight"), hd, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "self_attn.q_proj"), q_out, H, err);
        if (s == LOAM_OK)
            s = add_linear(l, layer_name(b, n, L, "self_attn.v_proj"), kv_out, H, err);
    }
    if (s == LOAM_OK)
        s = add_norm(l, "model.norm.weight", H, err);
    if (s == LOAM_OK && !m->tied)
        s = add_linear(l, "lm_head", m->vocab, H, err);
    return s;
}

static const preset *find_preset(const char *name) {
    for (size_t i = 0; name && i < N_PRESETS; i++)
        if (strcmp(k_presets[i].name, name) == 0)
            return &k_presets[i];
    return NULL;
}

static loam_status tlist_init(tlist *l, const preset *m, const loam_synth_params *p,
                              loam_err *err) {
    memset(l, 0, sizeof *l);
    l->p = p;
    l->cap = (size_t)(16 + 32 * m->layers);
    l->out = loam__calloc(l->cap, sizeof *l->out);
    l->jobs = loam__calloc(l->cap, sizeof *l->jobs);
    if (!l->out || !l->jobs)
        return loam__fail(err, LOAM_E_NOMEM, "synth: out of memory");
    return build(l, m, err);
}

static void tlist_free(tlist *l) {
    loam__free(l->out);
    loam__free(l->jobs);
}

loam_status loam__synth_size(const char *preset_name, int32_t bits, int32_t group_size,
                             uint64_t *n_params, uint64_t *n_bytes, loam_err *err) {
    const preset *m = find_preset(preset_name);
    if (!m)
        return loam__fail(err, LOAM_E_NOTFOUND, "synth: no preset '%.64s'", preset_name);
    loam_synth_params p = loam_synth_params_default();
    p.bits = bits;
    p.group_size = group_size;
    tlist l;
    loam_status s = tlist_init(&l, m, &p, err);
    *n_params = *n_bytes = 0;
    for (size_t i = 0; s == LOAM_OK && i < l.n; i++) {
        *n_params += l.out[i].n_params;
        *n_bytes += l.out[i].n_bytes;
    }
    tlist_free(&l);
    return s;
}

loam_status loam_synth(const char *preset_name, const char *dst_dir,
                       const loam_synth_params *params, loam_err *err) {
    loam_synth_params p = params ? *params : loam_synth_params_default();
    if (!preset_name || !dst_dir)
        return loam__fail(err, LOAM_E_INVAL, "synth: NULL argument");
    const preset *m = find_preset(preset_name);
    if (!m)
        return loam__fail(err, LOAM_E_NOTFOUND, "synth: no preset '%.64s'", preset_name);
    loam_status s = LOAM_OK;
    if (p.bits != 0)
        s = loam_qformat_check((loam_qformat){p.bits, p.group_size, LOAM_DTYPE_BF16}, p.group_size,
                               err);
    if (s != LOAM_OK)
        return s;
    if (p.max_shard_bytes == 0)
        p.max_shard_bytes = (uint64_t)5 << 30;

    char text[2048];
    config_text(m, text, sizeof text);
    cJSON *config = NULL;
    loam__numkinds kinds = {0};
    tlist l;
    s = tlist_init(&l, m, &p, err);
    if (s == LOAM_OK)
        s = loam__json_parse(text, strlen(text), "synth config", &config, err);
    if (s == LOAM_OK)
        s = loam__json_number_kinds(text, strlen(text), config, &kinds, err);
    if (s != LOAM_OK)
        goto done;
    if (p.bits != 0) {
        cJSON *q1 = cJSON_CreateObject(), *q2 = NULL;
        if (q1 && cJSON_AddNumberToObject(q1, "group_size", p.group_size) &&
            cJSON_AddNumberToObject(q1, "bits", p.bits) &&
            cJSON_AddStringToObject(q1, "mode", "affine"))
            q2 = cJSON_Duplicate(q1, 1);
        if (!q2 || !cJSON_AddItemToObject(config, "quantization", q1)) {
            cJSON_Delete(q1);
            cJSON_Delete(q2);
            s = loam__fail(err, LOAM_E_NOMEM, "synth: out of memory");
            goto done;
        }
        if (!cJSON_AddItemToObject(config, "quantization_config", q2)) {
            cJSON_Delete(q2);
            s = loam__fail(err, LOAM_E_NOMEM, "synth: out of memory");
            goto done;
        }
    }
    s = loam__write_mlx_dir(dst_dir, l.out, l.n, config, &kinds, p.bits ? "mlx" : "pt",
                            p.max_shard_bytes, p.progress, p.progress_user, err);
done:
    loam__numkinds_free(&kinds);
    cJSON_Delete(config);
    tlist_free(&l);
    return s;
}
