/* model.h: internal view of a loaded model, shared by model.c (config + binding), the session
 * driver (session.c) and the backends (cpu/backend_cpu.c).
 *
 * A model is its parsed config (loam__config), one loam__qmat per Linear/Embedding weight
 * (views into the mapped safetensors, see quant.h), the small float tensors converted to f32
 * at load (norm weights, Linear biases), the RoPE frequencies, and a table of loaded adapters.
 * Everything but the adapter table is immutable after loam_model_open; the table is guarded by
 * `lock` (adapters may be loaded while sessions decode).
 */
#ifndef LOAM_MODEL_H
#define LOAM_MODEL_H

#include "lora.h"
#include "quant.h"

#include <cJSON.h>
#include <pthread.h>

typedef enum loam__arch {
    LOAM__ARCH_QWEN3 = 0,
    LOAM__ARCH_QWEN2,
    LOAM__ARCH_LLAMA,
} loam__arch;

typedef enum loam__rope {
    LOAM__ROPE_DEFAULT = 0,
    LOAM__ROPE_LINEAR,
    LOAM__ROPE_LLAMA3,
    LOAM__ROPE_YARN,
} loam__rope;

typedef struct loam__config {
    loam__arch arch;
    const char *arch_name; /* static */
    int32_t n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_ctx_train;
    float rms_eps;
    double rope_theta;
    loam__rope rope_type;
    double rope_factor;         /* linear, llama3, yarn */
    double rope_low_freq;       /* llama3 low_freq_factor */
    double rope_high_freq;      /* llama3 high_freq_factor */
    double rope_orig_ctx;       /* llama3, yarn original_max_position_embeddings */
    double yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    double yarn_attn_factor;    /* attention_factor from the config, or 0 = derive */
    bool tied;                  /* output head = embedding */
    bool qkv_bias;              /* q/k/v projections have a Linear bias */
    bool o_bias;                /* o_proj has a Linear bias */
    bool mlp_bias;              /* gate/up/down have a Linear bias (Llama mlp_bias) */
    bool qk_norm;               /* per-head RMSNorm of q and k before RoPE (Qwen3) */
    int32_t bits, group_size;   /* default quantization, 0 when none */
    bool mixed;                 /* some layer differs from the default */
} loam__config;

/* One Linear layer: its weight and optional bias. */
typedef struct loam__linear {
    loam__qmat w;
    const float *bias; /* (w.n) f32, or NULL */
} loam__linear;

typedef struct loam__layer {
    const float *attn_norm;          /* (n_embd) input_layernorm */
    const float *ffn_norm;           /* (n_embd) post_attention_layernorm */
    const float *q_norm, *k_norm;    /* (head_dim) or NULL when !qk_norm */
    loam__linear lin[LOAM__N_MOD];   /* indexed by loam__mod (lora.h) */
} loam__layer;

#define LOAM__MAX_ADAPTERS 64
#define LOAM__ADAPTER_NAME_MAX 64
#define LOAM__MAX_EOS 8

typedef struct loam__adapter_slot {
    char name[LOAM__ADAPTER_NAME_MAX]; /* "" when the slot is free */
    loam__adapter *a;
    int32_t users;                     /* sequences (of any session) bound to it */
} loam__adapter_slot;

struct loam_model {
    loam__config cfg;
    loam_modeldir *md;
    loam__layer *layers;      /* (n_layer) */
    loam__qmat embed;         /* (n_vocab, n_embd) */
    loam__qmat head;          /* (n_vocab, n_embd): a copy of embed when tied */
    const float *out_norm;    /* (n_embd) model.norm */
    float *f32;               /* one block holding every converted norm weight and bias */
    float *rope_inv_freq;     /* (head_dim/2) per-pair inverse frequency, scaling applied */
    float rope_attn_factor;   /* multiplies cos and sin (YaRN), else 1 */
    uint64_t n_params, weight_bytes, step_bytes;
    int32_t n_threads;
    loam_device device;       /* where sessions run (loam_model_params) */

    loam_tokenizer *tok;      /* tokenizer.json of the directory, or NULL (model_text.c) */
    int32_t eos[LOAM__MAX_EOS]; /* end-of-sequence ids (model_text.c) */
    int32_t n_eos;

    pthread_mutex_t lock;     /* guards adapters[] */
    loam__adapter_slot adapters[LOAM__MAX_ADAPTERS];
    int32_t n_adapters;
};

/* Binds sequence users to adapter id (>= 0) under the model lock: adapter pointer of a
 * loaded id or NULL. Used by the session driver. */
const loam__adapter *loam__model_adapter_acquire(loam_model *m, int32_t id);
void loam__model_adapter_release(loam_model *m, int32_t id);

/* model_text.c: opens the directory's tokenizer and resolves the EOS ids; closes them. */
loam_status loam__model_open_text(loam_model *m, const char *dir, const cJSON *config,
                                  loam_err *err);
void loam__model_close_text(loam_model *m);

#endif /* LOAM_MODEL_H */
