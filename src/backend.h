/* backend.h: the interface between the generic forward pass and a backend (CPU now, CUDA
 * later), DESIGN.md "The backend interface".
 *
 * The unit of work is a step: n_rows rows, each one token of one sequence at one position,
 * with the adapter of its sequence. Rows are ordered so that rows sharing an adapter are
 * contiguous (the step lists those groups); within a group, rows keep the caller's order.
 * A backend runs a step as a fixed sequence of coarse, fused stages (loam__forward_step):
 *
 *   embed                                  x = embedding rows of the tokens
 *   for each layer l:
 *     attn_qkv   (l)   RMSNorm(x) -> q, k, v projections (+ LoRA, + Linear bias)
 *     attention  (l)   q/k RMSNorm (Qwen3) + RoPE, K/V written to the paged cache, causal GQA
 *                      attention of every row over its sequence's tokens 0..pos
 *     attn_out   (l)   o projection (+ LoRA, + bias), x += result
 *     ffn_up     (l)   RMSNorm(x) -> gate, up (+ LoRA, + bias), silu(gate) * up
 *     ffn_down   (l)   down projection (+ LoRA, + bias), x += result
 *   head                                   final RMSNorm of the rows that want logits -> logits
 *
 * Stage functions cannot fail on the CPU (a device backend reports through step_status): every size was checked when the session was created and every
 * step descriptor when the decode call was validated. Backend state (activations, KV storage,
 * scratch) is created per session with the sizes in loam__backend_shape; nothing allocates
 * during a step.
 *
 * Adding a backend? Implement every member of loam__backend, add it to session.c's choice,
 * and run tests/test_model.c against the scalar reference path.
 */
#ifndef LOAM_BACKEND_H
#define LOAM_BACKEND_H

#include "kvcache.h"
#include "model.h"

/* Highest LoRA rank a session runs (its scratch holds at least this many floats). */
#define LOAM__LORA_RANK_MAX 65536

/* Rows [row0, row0 + n) of a step use adapter a (NULL = base model). */
typedef struct loam__group {
    const loam__adapter *a;
    int32_t row0, n;
} loam__group;

typedef struct loam__step {
    int32_t n_rows;
    const int32_t *token;      /* (n_rows) */
    const int32_t *pos;        /* (n_rows) absolute position in its sequence */
    const int32_t *seq;        /* (n_rows) */
    const loam__kv *kv;        /* block tables; every row's block is already allocated */
    int32_t n_groups;
    const loam__group *groups; /* (n_groups) contiguous, covering all rows in order */
    int32_t n_out;             /* rows whose logits are wanted */
    const int32_t *out_rows;   /* (n_out) row of each output, in output order */
    float *logits;             /* (n_out, n_vocab) destination */
} loam__step;

/* Sizes a backend session is created for. */
typedef struct loam__backend_shape {
    int32_t n_batch;  /* most rows per step */
    int32_t n_blocks; /* KV pool blocks of LOAM__KV_BLOCK tokens */
    int32_t n_ctx;    /* most tokens one sequence can attend to */
    int32_t n_threads;
    bool reference;   /* scalar reference kernels */
    int32_t n_seq;    /* sequences (block tables in loam__kv) */
} loam__backend_shape;

typedef struct loam__backend {
    const char *name;
    loam_status (*session_new)(void **out, const loam_model *m, const loam__backend_shape *shape,
                               loam_err *err);
    void (*session_free)(void *bs);
    void (*embed)(void *bs, const loam__step *st);
    void (*attn_qkv)(void *bs, const loam__step *st, int32_t layer);
    void (*attention)(void *bs, const loam__step *st, int32_t layer);
    void (*attn_out)(void *bs, const loam__step *st, int32_t layer);
    void (*ffn_up)(void *bs, const loam__step *st, int32_t layer);
    void (*ffn_down)(void *bs, const loam__step *st, int32_t layer);
    void (*head)(void *bs, const loam__step *st); /* called only when st->n_out > 0 */
    /* Optional (NULL: stages never fail): after a step, LOAM_OK or the failure of one of its
     * stages with its message (a device error); the step's logits and the cache entries it
     * wrote are then undefined. */
    loam_status (*step_status)(void *bs, loam_err *err);
} loam__backend;

extern const loam__backend loam__backend_cpu;
#ifdef LOAM_CUDA
extern const loam__backend loam__backend_cuda; /* src/cuda/backend_cuda.c, `make CUDA=1` */
#endif

/* The forward pass, written once: runs the stages above for one step. */
void loam__forward_step(const loam__backend *be, void *bs, const loam__step *st,
                        int32_t n_layer);

#endif /* LOAM_BACKEND_H */
