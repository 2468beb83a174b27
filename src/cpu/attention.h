/* attention.h: one attention task of the CPU backend, and its kernels.
 *
 * A task is one row (one token of one sequence) and one KV head: the n_rep query heads that
 * share that KV head (GQA) attend, causally, to keys 0 .. n_keys-1 of the row's sequence:
 *     w_j[t] = scale · q_j · k_t            for every key t < n_keys
 *     w_j    = softmax(w_j)                  in float32
 *     out_j  = Σ_t w_j[t] · v_t
 * Keys and values live in the paged cache (backend_cpu.c): key t is row t % LOAM__KV_BLOCK of
 * block table[t / LOAM__KV_BLOCK], whose (LOAM__KV_BLOCK, head_dim) floats for this layer and
 * KV head start at k + table[b] * block_stride (v likewise).
 *
 * loam__attend_c is the portable C version and the reference path's. The ISA versions
 * (attention_avx512.c, attention_avx2.c) compute the same thing for head_dim 64 or 128 with
 * 16 / 8 keys per step, an in-register reduction tree for the dot products, a polynomial
 * exp (relative error below 2e-7) and the 1/Σ folded into the output; test_model.c checks them
 * against loam__attend_c on random caches.
 *
 * Adding an ISA: a file attention_<isa>.c compiled with that ISA's flags (Makefile), and its
 * entry in attention.c's table.
 */
#ifndef LOAM_CPU_ATTENTION_H
#define LOAM_CPU_ATTENTION_H

#include "../kvcache.h"

typedef struct loam__attn_task {
    const float *q;       /* (n_rep, head_dim) the query heads, normed and rotated */
    float *out;           /* (n_rep, head_dim) */
    const float *k, *v;   /* cache base of this layer and KV head (see above) */
    const int32_t *table; /* the sequence's block table */
    int64_t block_stride; /* floats from one block's data to the next block's */
    int32_t n_keys;       /* >= 1 */
    int32_t n_rep;        /* query heads per KV head */
    int32_t head_dim;
    float scale;          /* 1 / sqrt(head_dim) */
    float *w;             /* (n_rep, w_stride) scratch */
    int64_t w_stride;     /* >= n_keys rounded up to LOAM__KV_BLOCK */
} loam__attn_task;

typedef void (*loam__attend_fn)(const loam__attn_task *t);

void loam__attend_c(const loam__attn_task *t);
/* x86-64 only, head_dim 64 or 128, n_rep <= 64; defined in their ISA files. */
void loam__attend_avx512(const loam__attn_task *t);
void loam__attend_avx2(const loam__attn_task *t);

/* The version for this CPU (following the CPU kernel table that cpu/dispatch.c chose, so
 * LOAM_CPU=avx2 or scalar selects the matching attention), head_dim and n_rep; always
 * loam__attend_c for the reference path. */
loam__attend_fn loam__attend_pick(int32_t head_dim, int32_t n_rep, bool reference);

#endif /* LOAM_CPU_ATTENTION_H */
