/* model.c: config.json, weight binding by name, RoPE frequencies, and the adapter table.
 *
 * config.json (FORMATS.md §6.1, §6.7): the architecture comes from "architectures"[0] (or
 * "model_type"); shapes from vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads (absent or null: = heads) and head_dim (required for
 * Qwen3, else hidden_size / heads). rope_theta is read at top level or from
 * rope_parameters.rope_theta; the scaling dict is rope_scaling or rope_parameters, its type in
 * "rope_type" or "type" (§6.5). Architecture differences:
 *   Qwen3  per-head q/k RMSNorm before RoPE, Linear biases only with attention_bias
 *   Qwen2  q/k/v biases always, o_proj none, no q/k norm
 *   Llama  q/k/v/o biases with attention_bias, gate/up/down biases with mlp_bias
 *
 * Quantization (§2.2, mlx-lm load_model's class_predicate): a module path P with an entry in
 * config "quantization" uses it (false: float weight; a dict: its bits / group_size, each
 * missing or null key taking the affine default 4 / 64, mode "affine" unless given); otherwise P
 * is quantized with the top-level bits / group_size iff "P.scales" exists. A quantized module
 * binds P.weight (U32 [n, k*bits/32]), P.scales and P.biases (F32/F16/BF16 [n, k/group_size]);
 * a float one binds P.weight (F32/F16/BF16 [n, k]). Every shape is checked; the tensors stay in
 * the mapped files. Norm weights and Linear biases are converted to f32 into one block.
 *
 * RoPE (§6.5): the per-pair inverse frequencies are computed once here in float32 exactly as
 * transformers does (inv_freq = 1 / base^(2i/D)), then scaled: linear divides by factor, llama3
 * blends by wavelength, yarn ramps between interpolation and extrapolation and sets
 * rope_attn_factor (HF attention_factor, which multiplies cos and sin).
 */
#include "json.h"
#include "model.h"

#include <math.h>

#define LOAM__PI 3.14159265358979323846

// ---- JSON helpers -----------------------------------------------------------------------------

/* Reads an integer field: LOAM_OK and *out set, or *out = dflt when absent/null and !required. */
static loam_status json_i32(const cJSON *o, const char *key, bool required, int32_t dflt,
                            int32_t lo, int32_t *out, loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return loam__fail(err, LOAM_E_FORMAT, "config.json: '%s' is missing", key);
        *out = dflt;
        return LOAM_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)INT32_MAX)
        return loam__fail(err, LOAM_E_FORMAT, "config.json: '%s' must be an integer >= %d", key,
                          lo);
    *out = (int32_t)v->valuedouble;
    return LOAM_OK;
}

static loam_status json_f64(const cJSON *o, const char *key, double dflt, double *out,
                            loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return LOAM_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: '%s' must be a number", key);
    *out = v->valuedouble;
    return LOAM_OK;
}

static loam_status json_bool(const cJSON *o, const char *key, int dflt, int *out, loam_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return LOAM_OK;
    }
    if (!cJSON_IsBool(v))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: '%s' must be true or false", key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return LOAM_OK;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// ---- config -----------------------------------------------------------------------------------

#define TRY(x)                                                                                     \
    do {                                                                                           \
        loam_status s_ = (x);                                                                      \
        if (s_ != LOAM_OK) return s_;                                                              \
    } while (0)

static loam_status parse_arch(loam__config *c, const cJSON *root, loam_err *err) {
    static const struct {
        const char *arch, *model_type;
        loam__arch id;
    } k_arch[] = {
        {"Qwen3ForCausalLM", "qwen3", LOAM__ARCH_QWEN3},
        {"Qwen2ForCausalLM", "qwen2", LOAM__ARCH_QWEN2},
        {"LlamaForCausalLM", "llama", LOAM__ARCH_LLAMA},
    };
    const char *name = NULL;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (cJSON_IsArray(archs) && cJSON_GetArraySize(archs) > 0) {
        const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
        if (!cJSON_IsString(a0))
            return loam__fail(err, LOAM_E_FORMAT, "config.json: 'architectures' must hold strings");
        name = a0->valuestring;
        for (size_t i = 0; i < sizeof k_arch / sizeof k_arch[0]; i++)
            if (strcmp(name, k_arch[i].arch) == 0) {
                c->arch = k_arch[i].id;
                c->arch_name = k_arch[i].arch;
                return LOAM_OK;
            }
    } else if ((name = json_str(root, "model_type")) != NULL) {
        for (size_t i = 0; i < sizeof k_arch / sizeof k_arch[0]; i++)
            if (strcmp(name, k_arch[i].model_type) == 0) {
                c->arch = k_arch[i].id;
                c->arch_name = k_arch[i].arch;
                return LOAM_OK;
            }
    } else {
        return loam__fail(err, LOAM_E_FORMAT,
                          "config.json: neither 'architectures' nor 'model_type' is given");
    }
    return loam__fail(err, LOAM_E_UNSUPPORTED,
                      "config.json: architecture '%.80s' is not supported (Qwen3ForCausalLM, "
                      "Qwen2ForCausalLM, LlamaForCausalLM)",
                      name);
}

static loam_status parse_rope(loam__config *c, const cJSON *root, loam_err *err) {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: 'rope_parameters' must be an object");
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: 'rope_scaling' must be an object");
    if (!cJSON_IsObject(rp)) rp = NULL;
    if (!cJSON_IsObject(rs)) rs = NULL;

    double theta_default = 10000.0;
    if (rp) TRY(json_f64(rp, "rope_theta", theta_default, &theta_default, err));
    TRY(json_f64(root, "rope_theta", theta_default, &c->rope_theta, err));
    if (!(c->rope_theta > 1.0))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: 'rope_theta' must be > 1");

    double prf = 1.0;
    TRY(json_f64(root, "partial_rotary_factor", 1.0, &prf, err));
    if (rp) TRY(json_f64(rp, "partial_rotary_factor", prf, &prf, err));
    if (prf != 1.0)
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "config.json: partial_rotary_factor %g is not supported", prf);

    const cJSON *sc = rs ? rs : rp;
    c->rope_type = LOAM__ROPE_DEFAULT;
    if (!sc) return LOAM_OK;
    const char *type = json_str(sc, "rope_type");
    if (!type) type = json_str(sc, "type");
    if (!type || strcmp(type, "default") == 0) return LOAM_OK;
    if (strcmp(type, "linear") == 0) c->rope_type = LOAM__ROPE_LINEAR;
    else if (strcmp(type, "llama3") == 0) c->rope_type = LOAM__ROPE_LLAMA3;
    else if (strcmp(type, "yarn") == 0) c->rope_type = LOAM__ROPE_YARN;
    else
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "config.json: rope type '%.40s' is not supported (default, linear, "
                          "llama3, yarn)",
                          type);
    TRY(json_f64(sc, "factor", 0.0, &c->rope_factor, err));
    if (!(c->rope_factor > 0.0))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: rope scaling '%s' needs factor > 0",
                          type);
    if (c->rope_type == LOAM__ROPE_LLAMA3) {
        TRY(json_f64(sc, "low_freq_factor", 1.0, &c->rope_low_freq, err));
        TRY(json_f64(sc, "high_freq_factor", 4.0, &c->rope_high_freq, err));
        TRY(json_f64(sc, "original_max_position_embeddings", 8192.0, &c->rope_orig_ctx, err));
        if (!(c->rope_high_freq > c->rope_low_freq) || !(c->rope_low_freq > 0) ||
            !(c->rope_orig_ctx > 0))
            return loam__fail(err, LOAM_E_FORMAT,
                              "config.json: llama3 rope needs high_freq_factor > "
                              "low_freq_factor > 0 and original_max_position_embeddings > 0");
    } else if (c->rope_type == LOAM__ROPE_YARN) {
        TRY(json_f64(sc, "original_max_position_embeddings", (double)c->n_ctx_train,
                     &c->rope_orig_ctx, err));
        TRY(json_f64(sc, "beta_fast", 32.0, &c->yarn_beta_fast, err));
        TRY(json_f64(sc, "beta_slow", 1.0, &c->yarn_beta_slow, err));
        TRY(json_f64(sc, "mscale", 0.0, &c->yarn_mscale, err));
        TRY(json_f64(sc, "mscale_all_dim", 0.0, &c->yarn_mscale_all_dim, err));
        TRY(json_f64(sc, "attention_factor", 0.0, &c->yarn_attn_factor, err));
        int truncate = 1;
        TRY(json_bool(sc, "truncate", 1, &truncate, err));
        if (!truncate)
            return loam__fail(err, LOAM_E_UNSUPPORTED,
                              "config.json: yarn rope with truncate=false is not supported");
        if (!(c->rope_orig_ctx > 0))
            return loam__fail(err, LOAM_E_FORMAT,
                              "config.json: yarn rope needs original_max_position_embeddings");
    }
    return LOAM_OK;
}

/* The "quantization" dict (or an mlx-style "quantization_config"), NULL when none. */
static loam_status find_quant(const cJSON *root, const cJSON **out, loam_err *err) {
    *out = NULL;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization");
    if (!q || cJSON_IsNull(q)) {
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
        if (cJSON_IsObject(qc)) {
            const char *method = json_str(qc, "quant_method");
            if (method)
                return loam__fail(err, LOAM_E_UNSUPPORTED,
                                  "config.json: quantization_config method '%.40s' is not "
                                  "supported (MLX affine only)",
                                  method);
            q = qc;
        } else {
            return LOAM_OK;
        }
    }
    if (!cJSON_IsObject(q))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: 'quantization' must be an object");
    *out = q;
    return LOAM_OK;
}

static loam_status parse_config(loam__config *c, const cJSON *root, int *tied, loam_err *err) {
    memset(c, 0, sizeof *c);
    TRY(parse_arch(c, root, err));
    TRY(json_i32(root, "vocab_size", true, 0, 1, &c->n_vocab, err));
    TRY(json_i32(root, "hidden_size", true, 0, 1, &c->n_embd, err));
    TRY(json_i32(root, "intermediate_size", true, 0, 1, &c->n_ff, err));
    TRY(json_i32(root, "num_hidden_layers", true, 0, 1, &c->n_layer, err));
    TRY(json_i32(root, "num_attention_heads", true, 0, 1, &c->n_head, err));
    TRY(json_i32(root, "num_key_value_heads", false, c->n_head, 1, &c->n_head_kv, err));
    if (c->n_head % c->n_head_kv != 0)
        return loam__fail(err, LOAM_E_FORMAT,
                          "config.json: num_attention_heads %d is not a multiple of "
                          "num_key_value_heads %d",
                          c->n_head, c->n_head_kv);
    if (c->arch == LOAM__ARCH_QWEN3) {
        TRY(json_i32(root, "head_dim", true, 0, 2, &c->head_dim, err));
    } else {
        if (c->n_embd % c->n_head != 0)
            return loam__fail(err, LOAM_E_FORMAT,
                              "config.json: hidden_size %d is not a multiple of "
                              "num_attention_heads %d",
                              c->n_embd, c->n_head);
        TRY(json_i32(root, "head_dim", false, c->n_embd / c->n_head, 2, &c->head_dim, err));
    }
    if (c->head_dim % 2 != 0)
        return loam__fail(err, LOAM_E_FORMAT, "config.json: head_dim %d must be even",
                          c->head_dim);
    /* products used as tensor dimensions must fit int32 comfortably */
    if ((int64_t)c->n_head * c->head_dim > (1 << 24) || c->n_embd > (1 << 24) ||
        c->n_ff > (1 << 26) || c->n_layer > 4096)
        return loam__fail(err, LOAM_E_FORMAT, "config.json: model dimensions are implausible");
    TRY(json_i32(root, "max_position_embeddings", false,
                 c->arch == LOAM__ARCH_LLAMA ? 2048 : 32768, 1, &c->n_ctx_train, err));
    double eps;
    TRY(json_f64(root, "rms_norm_eps", 1e-6, &eps, err));
    if (!(eps > 0.0 && eps < 1.0))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: 'rms_norm_eps' out of range");
    c->rms_eps = (float)eps;

    const char *act = json_str(root, "hidden_act");
    if (act && strcmp(act, "silu") != 0)
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "config.json: hidden_act '%.40s' is not supported (silu)", act);
    int sliding = 0;
    TRY(json_bool(root, "use_sliding_window", 0, &sliding, err));
    if (sliding)
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "config.json: sliding-window attention (use_sliding_window) is not "
                          "supported");
    TRY(parse_rope(c, root, err));
    TRY(json_bool(root, "tie_word_embeddings", -1, tied, err));

    int attn_bias = 0, mlp_bias = 0;
    TRY(json_bool(root, "attention_bias", 0, &attn_bias, err));
    switch (c->arch) {
    case LOAM__ARCH_QWEN3:
        c->qk_norm = true;
        c->qkv_bias = c->o_bias = attn_bias != 0;
        break;
    case LOAM__ARCH_QWEN2: c->qkv_bias = true; break;
    case LOAM__ARCH_LLAMA:
        TRY(json_bool(root, "mlp_bias", 0, &mlp_bias, err));
        c->qkv_bias = c->o_bias = attn_bias != 0;
        c->mlp_bias = mlp_bias != 0;
        break;
    }
    return LOAM_OK;
}

// ---- quantization spec of one module ----------------------------------------------------------

typedef struct qspec {
    bool quantized;
    int32_t bits, group_size;
} qspec;

static loam_status check_mode(const cJSON *o, const char *path, loam_err *err) {
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(o, "mode");
    if (!mode || cJSON_IsNull(mode)) return LOAM_OK;
    if (!cJSON_IsString(mode))
        return loam__fail(err, LOAM_E_FORMAT, "config.json: quantization mode of '%s' is not a "
                          "string", path);
    if (strcmp(mode->valuestring, "affine") != 0)
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "model: layer '%s' uses quantization mode '%.20s' (only affine is "
                          "supported)",
                          path, mode->valuestring);
    return LOAM_OK;
}

/* bits / group_size of a quantization dict; absent or null keys take the affine defaults.
 * With check_mode, a mode other than affine is LOAM_E_UNSUPPORTED naming path. */
static loam_status quant_params(const cJSON *o, const char *path, bool mode_check, qspec *q,
                                loam_err *err) {
    q->quantized = true;
    q->bits = 4;
    q->group_size = 64;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "bits");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "group_size");
    if (b && !cJSON_IsNull(b)) {
        if (!cJSON_IsNumber(b) || b->valuedouble != floor(b->valuedouble) ||
            b->valuedouble < 1 || b->valuedouble > 32)
            return loam__fail(err, LOAM_E_FORMAT, "config.json: bad 'bits' for '%s'", path);
        q->bits = (int32_t)b->valuedouble;
    }
    if (g && !cJSON_IsNull(g)) {
        if (!cJSON_IsNumber(g) || g->valuedouble != floor(g->valuedouble) ||
            g->valuedouble < 1 || g->valuedouble > 65536)
            return loam__fail(err, LOAM_E_FORMAT, "config.json: bad 'group_size' for '%s'",
                              path);
        q->group_size = (int32_t)g->valuedouble;
    }
    return mode_check ? check_mode(o, path, err) : LOAM_OK;
}

typedef struct binder {
    loam_model *m;
    const cJSON *quant; /* the quantization dict, or NULL */
    float *f32;         /* next free float of m->f32 */
    float *f32_end;
} binder;

static loam_status module_spec(binder *b, const char *path, qspec *q, loam_err *err) {
    memset(q, 0, sizeof *q);
    const cJSON *e = b->quant ? cJSON_GetObjectItemCaseSensitive(b->quant, path) : NULL;
    if (e && cJSON_IsFalse(e)) return LOAM_OK;
    if (e && cJSON_IsObject(e)) return quant_params(e, path, true, q, err);
    if (e && !cJSON_IsTrue(e))
        return loam__fail(err, LOAM_E_FORMAT,
                          "config.json: quantization entry '%s' must be an object or false", path);
    /* no entry (or true): quantized with the top-level parameters iff P.scales exists */
    char name[512];
    snprintf(name, sizeof name, "%s.scales", path);
    loam_tensor t;
    if (!e && loam_modeldir_find(b->m->md, name, &t, NULL) != LOAM_OK) return LOAM_OK;
    if (!b->quant)
        return loam__fail(err, LOAM_E_FORMAT,
                          "model: '%s' is stored quantized but config.json has no "
                          "'quantization'",
                          name);
    return quant_params(b->quant, path, true, q, err);
}

// ---- binding ----------------------------------------------------------------------------------

static bool is_float_dtype(loam_dtype t) {
    return t == LOAM_DTYPE_F32 || t == LOAM_DTYPE_F16 || t == LOAM_DTYPE_BF16;
}

static void shape_str(const loam_tensor *t, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = '\0';
    o += (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Finds name and checks it is 2-D [rows, cols] (cols < 0: 1-D [rows]) of an allowed dtype. */
static loam_status find_tensor(binder *b, const char *name, int64_t rows, int64_t cols,
                               bool want_u32, loam_tensor *t, loam_err *err) {
    if (loam_modeldir_find(b->m->md, name, t, NULL) != LOAM_OK)
        return loam__fail(err, LOAM_E_FORMAT, "model: tensor '%s' is missing", name);
    if (want_u32 ? t->dtype != LOAM_DTYPE_U32 : !is_float_dtype(t->dtype))
        return loam__fail(err, LOAM_E_FORMAT, "model: tensor '%s' has dtype %s, expected %s",
                          name, loam_dtype_name(t->dtype) ? loam_dtype_name(t->dtype) : "?",
                          want_u32 ? "U32" : "F32, F16 or BF16");
    bool ok = cols < 0 ? (t->n_dims == 1 && t->shape[0] == rows)
                       : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char have[128];
        shape_str(t, have, sizeof have);
        if (cols < 0)
            return loam__fail(err, LOAM_E_FORMAT, "model: tensor '%s' has shape %s, expected [%lld]",
                              name, have, (long long)rows);
        return loam__fail(err, LOAM_E_FORMAT,
                          "model: tensor '%s' has shape %s, expected [%lld, %lld]", name, have,
                          (long long)rows, (long long)cols);
    }
    b->m->weight_bytes += t->n_bytes;
    return LOAM_OK;
}

/* Binds module `path` (Linear or Embedding) as an n x k weight matrix. */
static loam_status bind_matrix(binder *b, const char *path, int64_t n, int64_t k, loam__qmat *w,
                               loam_err *err) {
    qspec q;
    TRY(module_spec(b, path, &q, err));
    char name[512];
    loam_tensor t, ts, tb;
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = k;
    snprintf(name, sizeof name, "%s.weight", path);
    if (!q.quantized) {
        TRY(find_tensor(b, name, n, k, false, &t, err));
        w->dtype = t.dtype;
        w->w = t.data;
        if (b->m->cfg.bits) b->m->cfg.mixed = true;
        return LOAM_OK;
    }
    loam_qformat fmt = {q.bits, q.group_size, LOAM_DTYPE_BF16};
    loam_err qe;
    if (loam_qformat_check(fmt, k, &qe) != LOAM_OK)
        return loam__fail(err, LOAM_E_UNSUPPORTED, "model: layer '%s' (%lld inputs): %s", path,
                          (long long)k, qe.msg);
    TRY(find_tensor(b, name, n, k * q.bits / 32, true, &t, err));
    snprintf(name, sizeof name, "%s.scales", path);
    TRY(find_tensor(b, name, n, k / q.group_size, false, &ts, err));
    snprintf(name, sizeof name, "%s.biases", path);
    TRY(find_tensor(b, name, n, k / q.group_size, false, &tb, err));
    if (tb.dtype != ts.dtype)
        return loam__fail(err, LOAM_E_FORMAT, "model: '%s.biases' is %s but '%s.scales' is %s",
                          path, loam_dtype_name(tb.dtype), path, loam_dtype_name(ts.dtype));
    fmt.scale_dtype = ts.dtype;
    w->dtype = LOAM_DTYPE_U32;
    w->fmt = fmt;
    w->w = t.data;
    w->scales = ts.data;
    w->biases = tb.data;
    if (b->m->cfg.bits && (q.bits != b->m->cfg.bits || q.group_size != b->m->cfg.group_size))
        b->m->cfg.mixed = true;
    if (loam__qmat_check(w, &qe) != LOAM_OK)
        return loam__fail(err, LOAM_E_UNSUPPORTED, "model: layer '%s': %s", path, qe.msg);
    return LOAM_OK;
}

/* Binds a float vector of n elements, converted to f32 into the model's block. */
static loam_status bind_vector(binder *b, const char *name, int64_t n, const float **out,
                               loam_err *err) {
    loam_tensor t;
    TRY(find_tensor(b, name, n, -1, false, &t, err));
    LOAM_CHECK(b->f32_end - b->f32 >= n);
    float *dst = b->f32;
    for (int64_t i = 0; i < n; i++) dst[i] = loam__load_float(t.data, t.dtype, (size_t)i);
    b->f32 += n;
    *out = dst;
    return LOAM_OK;
}

static uint64_t linear_bytes(const loam__qmat *w) {
    if (w->dtype == LOAM_DTYPE_U32) {
        uint64_t groups = (uint64_t)w->n * (uint64_t)(w->k / w->fmt.group_size);
        return (uint64_t)w->n * (uint64_t)(w->k * w->fmt.bits / 8) +
               2 * groups * (uint64_t)(loam_dtype_bits(w->fmt.scale_dtype) / 8);
    }
    return (uint64_t)w->n * (uint64_t)w->k * (uint64_t)(loam_dtype_bits(w->dtype) / 8);
}

/* Input and output features of each module. */
static void module_dims(const loam__config *c, int64_t in[LOAM__N_MOD], int64_t out[LOAM__N_MOD]) {
    int64_t q = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_head_kv * c->head_dim;
    in[LOAM__MOD_Q] = c->n_embd, out[LOAM__MOD_Q] = q;
    in[LOAM__MOD_K] = c->n_embd, out[LOAM__MOD_K] = kv;
    in[LOAM__MOD_V] = c->n_embd, out[LOAM__MOD_V] = kv;
    in[LOAM__MOD_O] = q, out[LOAM__MOD_O] = c->n_embd;
    in[LOAM__MOD_GATE] = c->n_embd, out[LOAM__MOD_GATE] = c->n_ff;
    in[LOAM__MOD_UP] = c->n_embd, out[LOAM__MOD_UP] = c->n_ff;
    in[LOAM__MOD_DOWN] = c->n_ff, out[LOAM__MOD_DOWN] = c->n_embd;
}

static bool module_has_bias(const loam__config *c, loam__mod mod) {
    switch (mod) {
    case LOAM__MOD_Q:
    case LOAM__MOD_K:
    case LOAM__MOD_V: return c->qkv_bias;
    case LOAM__MOD_O: return c->o_bias;
    default: return c->mlp_bias;
    }
}

static loam_status bind_layer(binder *b, int32_t l, loam_err *err) {
    loam_model *m = b->m;
    const loam__config *c = &m->cfg;
    loam__layer *L = &m->layers[l];
    char path[256], name[320];
    uint64_t bytes0 = m->weight_bytes;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    TRY(bind_vector(b, name, c->n_embd, &L->attn_norm, err));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    TRY(bind_vector(b, name, c->n_embd, &L->ffn_norm, err));
    if (c->qk_norm) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
        TRY(bind_vector(b, name, c->head_dim, &L->q_norm, err));
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
        TRY(bind_vector(b, name, c->head_dim, &L->k_norm, err));
    }
    int64_t in[LOAM__N_MOD], out[LOAM__N_MOD];
    module_dims(c, in, out);
    for (int mod = 0; mod < LOAM__N_MOD; mod++) {
        snprintf(path, sizeof path, "model.layers.%d.%s", l, loam__mod_path[mod]);
        TRY(bind_matrix(b, path, out[mod], in[mod], &L->lin[mod].w, err));
        m->n_params += (uint64_t)out[mod] * (uint64_t)in[mod];
        if (module_has_bias(c, (loam__mod)mod)) {
            snprintf(name, sizeof name, "%s.bias", path);
            TRY(bind_vector(b, name, out[mod], &L->lin[mod].bias, err));
            m->n_params += (uint64_t)out[mod];
        }
    }
    m->n_params += 2 * (uint64_t)c->n_embd + (c->qk_norm ? 2 * (uint64_t)c->head_dim : 0);
    m->step_bytes += m->weight_bytes - bytes0;
    return LOAM_OK;
}

/* Floats of the converted block: every norm weight and Linear bias. */
static int64_t f32_count(const loam__config *c) {
    int64_t in[LOAM__N_MOD], out[LOAM__N_MOD];
    module_dims(c, in, out);
    int64_t per = 2 * (int64_t)c->n_embd + (c->qk_norm ? 2 * (int64_t)c->head_dim : 0);
    for (int mod = 0; mod < LOAM__N_MOD; mod++)
        if (module_has_bias(c, (loam__mod)mod)) per += out[mod];
    return per * c->n_layer + c->n_embd;
}

// ---- RoPE frequencies -------------------------------------------------------------------------

static double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double rotations, double dim, double base, double ctx) {
    return dim * log(ctx / (rotations * 2.0 * LOAM__PI)) / (2.0 * log(base));
}

static void compute_rope(loam_model *m) {
    const loam__config *c = &m->cfg;
    int32_t half = c->head_dim / 2;
    float base = (float)c->rope_theta, dim = (float)c->head_dim;
    float *inv = m->rope_inv_freq;
    m->rope_attn_factor = 1.0f;
    for (int32_t i = 0; i < half; i++) inv[i] = 1.0f / powf(base, (float)(2 * i) / dim);
    switch (c->rope_type) {
    case LOAM__ROPE_DEFAULT: break;
    case LOAM__ROPE_LINEAR:
        for (int32_t i = 0; i < half; i++) inv[i] /= (float)c->rope_factor;
        break;
    case LOAM__ROPE_LLAMA3: {
        double old = c->rope_orig_ctx, lo = c->rope_low_freq, hi = c->rope_high_freq;
        double lo_wavelen = old / lo, hi_wavelen = old / hi;
        for (int32_t i = 0; i < half; i++) {
            double f = inv[i], wavelen = 2.0 * LOAM__PI / f;
            if (wavelen > lo_wavelen) {
                inv[i] = (float)(f / c->rope_factor);
            } else if (wavelen >= hi_wavelen) {
                double s = (old / wavelen - lo) / (hi - lo);
                inv[i] = (float)((1.0 - s) * f / c->rope_factor + s * f);
            }
        }
        break;
    }
    case LOAM__ROPE_YARN: {
        double b = c->rope_theta, d = c->head_dim, ctx = c->rope_orig_ctx;
        double low = floor(yarn_correction_dim(c->yarn_beta_fast, d, b, ctx));
        double high = ceil(yarn_correction_dim(c->yarn_beta_slow, d, b, ctx));
        if (low < 0) low = 0;
        if (high > d - 1) high = d - 1;
        if (low == high) high += 0.001;
        for (int32_t i = 0; i < half; i++) {
            float pos_freq = powf(base, (float)(2 * i) / dim);
            float extra = 1.0f / pos_freq, inter = 1.0f / ((float)c->rope_factor * pos_freq);
            float ramp = (float)(((double)i - low) / (high - low));
            ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
            float extra_factor = 1.0f - ramp;
            inv[i] = inter * (1.0f - extra_factor) + extra * extra_factor;
        }
        if (c->yarn_attn_factor > 0.0) m->rope_attn_factor = (float)c->yarn_attn_factor;
        else if (c->yarn_mscale != 0.0 && c->yarn_mscale_all_dim != 0.0)
            m->rope_attn_factor = (float)(yarn_mscale(c->rope_factor, c->yarn_mscale) /
                                          yarn_mscale(c->rope_factor, c->yarn_mscale_all_dim));
        else
            m->rope_attn_factor = (float)yarn_mscale(c->rope_factor, 1.0);
        break;
    }
    }
}

// ---- open / close -----------------------------------------------------------------------------

loam_model_params loam_model_params_default(void) {
    loam_model_params p;
    memset(&p, 0, sizeof p);
    const char *dev = getenv("LOAM_DEVICE");
    p.device = dev && strcmp(dev, "cuda") == 0 ? LOAM_DEVICE_CUDA : LOAM_DEVICE_CPU;
    return p;
}

static loam_status bind_all(loam_model *m, const cJSON *root, int tied_cfg, loam_err *err) {
    loam__config *c = &m->cfg;
    binder b = {m, NULL, NULL, NULL};
    TRY(find_quant(root, &b.quant, err));
    if (b.quant) {
        qspec top;
        TRY(quant_params(b.quant, "quantization", false, &top, err));
        c->bits = top.bits;
        c->group_size = top.group_size;
    }

    loam_tensor t;
    bool has_head = loam_modeldir_find(m->md, "lm_head.weight", &t, NULL) == LOAM_OK;
    if (tied_cfg == 0 && !has_head)
        return loam__fail(err, LOAM_E_FORMAT,
                          "model: tensor 'lm_head.weight' is missing (tie_word_embeddings is "
                          "false)");
    c->tied = tied_cfg == 1 || (tied_cfg < 0 && !has_head);

    int64_t nf = f32_count(c);
    m->f32 = loam__malloc((size_t)nf * sizeof(float));
    m->layers = loam__calloc((size_t)c->n_layer, sizeof(loam__layer));
    m->rope_inv_freq = loam__malloc((size_t)(c->head_dim / 2) * sizeof(float));
    if (!m->f32 || !m->layers || !m->rope_inv_freq)
        return loam__fail(err, LOAM_E_NOMEM, "model: out of memory");
    b.f32 = m->f32;
    b.f32_end = m->f32 + nf;

    TRY(bind_matrix(&b, "model.embed_tokens", c->n_vocab, c->n_embd, &m->embed, err));
    m->n_params += (uint64_t)c->n_vocab * (uint64_t)c->n_embd;
    for (int32_t l = 0; l < c->n_layer; l++) TRY(bind_layer(&b, l, err));
    uint64_t before = m->weight_bytes;
    TRY(bind_vector(&b, "model.norm.weight", c->n_embd, &m->out_norm, err));
    m->n_params += (uint64_t)c->n_embd;
    if (c->tied) {
        m->head = m->embed;
        m->step_bytes += linear_bytes(&m->head);
    } else {
        TRY(bind_matrix(&b, "lm_head", c->n_vocab, c->n_embd, &m->head, err));
        m->n_params += (uint64_t)c->n_vocab * (uint64_t)c->n_embd;
    }
    m->step_bytes += m->weight_bytes - before;
    compute_rope(m);
    return LOAM_OK;
}

loam_status loam_model_open(loam_model **out, const char *dir, const loam_model_params *params,
                            loam_err *err) {
    *out = NULL;
    if (!dir) return loam__fail(err, LOAM_E_INVAL, "model: no directory given");
    loam_model_params p = params ? *params : loam_model_params_default();
    if (p.device != LOAM_DEVICE_CPU && p.device != LOAM_DEVICE_CUDA)
        return loam__fail(err, LOAM_E_INVAL, "model: device %d is neither CPU nor CUDA",
                          (int)p.device);
    loam_model *m = loam__calloc(1, sizeof *m);
    if (!m) return loam__fail(err, LOAM_E_NOMEM, "model: out of memory");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        loam__free(m);
        return loam__fail(err, LOAM_E_NOMEM, "model: cannot create a mutex");
    }
    m->n_threads = p.n_threads;
    m->device = p.device;
    cJSON *root = NULL;
    loam_status s = loam_modeldir_open(&m->md, dir, err);
    if (s != LOAM_OK) goto fail;
    const char *text = loam_modeldir_config_text(m->md);
    if (!text) {
        s = loam__fail(err, LOAM_E_FORMAT, "model: %.200s has no config.json", dir);
        goto fail;
    }
    if ((s = loam__json_parse(text, strlen(text), "config.json", &root, err)) != LOAM_OK)
        goto fail;
    if (!cJSON_IsObject(root)) {
        s = loam__fail(err, LOAM_E_FORMAT, "config.json: not a JSON object");
        goto fail;
    }
    int tied = -1;
    if ((s = parse_config(&m->cfg, root, &tied, err)) != LOAM_OK) goto fail;
    if ((s = bind_all(m, root, tied, err)) != LOAM_OK) goto fail;
    if ((s = loam__model_open_text(m, dir, root, err)) != LOAM_OK) goto fail;
    cJSON_Delete(root);
    *out = m;
    return LOAM_OK;
fail:
    cJSON_Delete(root);
    loam_model_close(m);
    return s;
}

void loam_model_close(loam_model *m) {
    if (!m) return;
    for (int i = 0; i < LOAM__MAX_ADAPTERS; i++) loam__adapter_free(m->adapters[i].a);
    loam__model_close_text(m);
    pthread_mutex_destroy(&m->lock);
    loam_modeldir_close(m->md);
    loam__free(m->layers);
    loam__free(m->f32);
    loam__free(m->rope_inv_freq);
    loam__free(m);
}

void loam_model_get_info(const loam_model *m, loam_model_info *out) {
    static const char *const k_rope[] = {"default", "linear", "llama3", "yarn"};
    const loam__config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    out->arch = c->arch_name;
    out->rope_type = k_rope[c->rope_type];
    out->n_vocab = c->n_vocab;
    out->n_embd = c->n_embd;
    out->n_ff = c->n_ff;
    out->n_layer = c->n_layer;
    out->n_head = c->n_head;
    out->n_head_kv = c->n_head_kv;
    out->head_dim = c->head_dim;
    out->n_ctx_train = c->n_ctx_train;
    out->rms_eps = c->rms_eps;
    out->rope_theta = (float)c->rope_theta;
    out->bits = c->bits;
    out->group_size = c->group_size;
    out->mixed = c->mixed;
    out->tied_embeddings = c->tied;
    out->n_params = m->n_params;
    out->weight_bytes = m->weight_bytes;
    out->step_bytes = m->step_bytes;
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->lock; /* the table is the mutable part */
    pthread_mutex_lock(lock);
    out->n_adapters = m->n_adapters;
    pthread_mutex_unlock(lock);
}

// ---- adapters ---------------------------------------------------------------------------------

static const loam__qmat *base_weight(void *user, int32_t layer, loam__mod mod) {
    const loam_model *m = user;
    if (layer < 0 || layer >= m->cfg.n_layer || (int)mod < 0 || mod >= LOAM__N_MOD) return NULL;
    return &m->layers[layer].lin[mod].w;
}

static int find_slot(const loam_model *m, const char *name) {
    for (int i = 0; i < LOAM__MAX_ADAPTERS; i++)
        if (m->adapters[i].a && strcmp(m->adapters[i].name, name) == 0) return i;
    return -1;
}

loam_status loam_model_load_adapter(loam_model *m, const char *name, const char *dir,
                                    loam_err *err) {
    if (!name || !*name || strlen(name) >= LOAM__ADAPTER_NAME_MAX)
        return loam__fail(err, LOAM_E_INVAL, "adapter: name must be 1..%d bytes",
                          LOAM__ADAPTER_NAME_MAX - 1);
    if (!dir) return loam__fail(err, LOAM_E_INVAL, "adapter '%s': no directory given", name);
    pthread_mutex_lock(&m->lock);
    bool dup = find_slot(m, name) >= 0;
    pthread_mutex_unlock(&m->lock);
    if (dup) return loam__fail(err, LOAM_E_INVAL, "adapter '%s' is already loaded", name);

    loam__lora_base base;
    memset(&base, 0, sizeof base);
    base.n_layer = m->cfg.n_layer;
    module_dims(&m->cfg, base.in, base.out);
    base.weight = base_weight;
    base.user = m;
    loam__adapter *a = NULL;
    loam_status s = loam__adapter_load(&a, dir, &base, err);
    if (s != LOAM_OK) return s;

    pthread_mutex_lock(&m->lock);
    int slot = -1;
    if (find_slot(m, name) >= 0) {
        s = loam__fail(err, LOAM_E_INVAL, "adapter '%s' is already loaded", name);
    } else {
        for (int i = 0; i < LOAM__MAX_ADAPTERS && slot < 0; i++)
            if (!m->adapters[i].a) slot = i;
        if (slot < 0)
            s = loam__fail(err, LOAM_E_RANGE, "adapter '%s': %d adapters are already loaded",
                           name, LOAM__MAX_ADAPTERS);
    }
    if (slot >= 0) {
        loam__adapter_slot *sl = &m->adapters[slot];
        snprintf(sl->name, sizeof sl->name, "%s", name);
        sl->a = a;
        sl->users = 0;
        m->n_adapters++;
        a = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    loam__adapter_free(a);
    return s;
}

loam_status loam_model_unload_adapter(loam_model *m, const char *name, loam_err *err) {
    if (!name) return loam__fail(err, LOAM_E_INVAL, "adapter: no name given");
    loam__adapter *a = NULL;
    loam_status s = LOAM_OK;
    pthread_mutex_lock(&m->lock);
    int slot = find_slot(m, name);
    if (slot < 0) {
        s = loam__fail(err, LOAM_E_NOTFOUND, "adapter '%.80s' is not loaded", name);
    } else if (m->adapters[slot].users > 0) {
        s = loam__fail(err, LOAM_E_BUSY, "adapter '%s' is in use by %d sequence(s)", name,
                       m->adapters[slot].users);
    } else {
        a = m->adapters[slot].a;
        memset(&m->adapters[slot], 0, sizeof m->adapters[slot]);
        m->n_adapters--;
    }
    pthread_mutex_unlock(&m->lock);
    loam__adapter_free(a);
    return s;
}

int32_t loam_model_adapter_id(const loam_model *m, const char *name) {
    if (!name) return -1;
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->lock;
    pthread_mutex_lock(lock);
    int slot = find_slot(m, name);
    pthread_mutex_unlock(lock);
    return slot;
}

const loam__adapter *loam__model_adapter_acquire(loam_model *m, int32_t id) {
    if (id < 0 || id >= LOAM__MAX_ADAPTERS) return NULL;
    pthread_mutex_lock(&m->lock);
    const loam__adapter *a = m->adapters[id].a;
    if (a) m->adapters[id].users++;
    pthread_mutex_unlock(&m->lock);
    return a;
}

void loam__model_adapter_release(loam_model *m, int32_t id) {
    if (id < 0 || id >= LOAM__MAX_ADAPTERS) return;
    pthread_mutex_lock(&m->lock);
    LOAM_CHECK(m->adapters[id].a && m->adapters[id].users > 0);
    m->adapters[id].users--;
    pthread_mutex_unlock(&m->lock);
}
