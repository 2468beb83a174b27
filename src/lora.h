/* lora.h: internal contract between the adapter loader (lora.c) and the forward pass.
 *
 * Every adapter, whatever its file format (mlx-lm or PEFT, FORMATS.md §3, §4), is normalised
 * at load into: per layer and per projection module, A [in, r] and B [r, out] in float32 and a
 * scalar scale, so the forward pass computes y = W·x + scale·((x·A)·B) for each adapted module.
 * DoRA adds a per-output factor dora[out] = m / ||W + scale·(A·B)ᵀ||_row computed once at
 * load, applied as y = dora ⊙ (W·x + scale·x·A·B) before the Linear bias. PEFT's lora_bias adds
 * scale·bias_B to the LoRA term (never together with DoRA).
 */
#ifndef LOAM_LORA_H
#define LOAM_LORA_H

#include "quant.h"

/* The adaptable projections of a transformer block, in a fixed order. */
typedef enum loam__mod {
    LOAM__MOD_Q = 0,
    LOAM__MOD_K,
    LOAM__MOD_V,
    LOAM__MOD_O,
    LOAM__MOD_GATE,
    LOAM__MOD_UP,
    LOAM__MOD_DOWN,
    LOAM__N_MOD
} loam__mod;

/* Block-relative module paths: "self_attn.q_proj", ..., "mlp.down_proj". */
extern const char *const loam__mod_path[LOAM__N_MOD];

typedef struct loam__lora_mod {
    const float *a;    /* (in, r) row-major; NULL when this module is not adapted */
    const float *b;    /* (r, out) row-major */
    int32_t r;         /* rank */
    float scale;       /* mlx-lm scale, or PEFT alpha/r (alpha/sqrt(r) with rsLoRA) */
    const float *dora; /* (out) DoRA factor, or NULL */
    const float *bias; /* (out) PEFT lora_B bias (lora_bias=true): y += scale·bias; or NULL */
} loam__lora_mod;

/* What the base model tells the loader: its geometry, and its weights (for DoRA norms). */
typedef struct loam__lora_base {
    int32_t n_layer;
    int64_t in[LOAM__N_MOD];  /* input features per module */
    int64_t out[LOAM__N_MOD]; /* output features per module */
    /* the base weight of (layer, module); used only for DoRA */
    const loam__qmat *(*weight)(void *user, int32_t layer, loam__mod mod);
    void *user;
} loam__lora_base;

typedef struct loam__adapter loam__adapter; /* defined in lora.c */

/* Loads an mlx-lm or PEFT adapter directory and checks it fits base: an unknown key, a wrong
 * layer index, a shape that does not match, or a module the model lacks is LOAM_E_FORMAT with
 * the file and tensor named. */
loam_status loam__adapter_load(loam__adapter **out, const char *dir, const loam__lora_base *base,
                               loam_err *err);
void loam__adapter_free(loam__adapter *a);
/* The module of layer l, or NULL when the adapter does not touch it. */
const loam__lora_mod *loam__adapter_mod(const loam__adapter *a, int32_t layer, loam__mod mod);
/* A number no other adapter of this process has had (1, 2, ...): a key for copies of its
 * weights elsewhere (device memory) that outlives the adapter's addresses. */
uint64_t loam__adapter_serial(const loam__adapter *a);
/* "mlx-lm" or "peft" */
const char *loam__adapter_format(const loam__adapter *a);

/* y [m, out] += LoRA term of x [m, in] (then the DoRA factor, if any); scratch holds m*r
 * floats. y must hold the base output without the Linear bias. Splits large modules over
 * OpenMP threads when called outside a parallel region; inside one it runs on the calling
 * thread. Equals loam__lora_down followed by loam__lora_up over [0, out). */
void loam__lora_apply(const loam__lora_mod *mod, const float *x, int64_t m, int64_t in, int64_t out,
                      float *y, float *scratch);
/* The two halves, for a backend that fuses the LoRA term into its own threaded matmul:
 * t [m, r] = scale·(x [m, in] · A), computed once per step; then, by any thread for its own
 * output range, y [m, o0:o1] += t·B[:, o0:o1] (+ scale·bias), then ⊙ dora over that range. */
void loam__lora_down(const loam__lora_mod *mod, const float *x, int64_t m, int64_t in, float *t);
void loam__lora_up(const loam__lora_mod *mod, const float *t, int64_t m, int64_t out, int64_t o0,
                   int64_t o1, float *y);

#endif /* LOAM_LORA_H */
