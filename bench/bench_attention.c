/* bench_attention.c: the attention of one decode step of Qwen3-8B at a given context depth,
 * per kernel (the portable C of the reference path, AVX2, AVX-512 where this CPU has them).
 *
 *   build/bench/bench_attention [DEPTH ...]        (default 512 2048 4096)
 *
 * Shapes: 36 layers, 8 KV heads, GQA 4 (32 query heads), head_dim 128. The paged KV cache holds
 * DEPTH tokens per layer in 32-token blocks, the blocks of the sequence scattered over the pool
 * as after other sequences came and went; per layer every (KV head) task runs on 2 threads, as
 * the CPU backend runs it (one decode row: 8 tasks). K and V are float32, so a step reads
 * 36·8·DEPTH·128·4·2 bytes (147 MB at 512, 604 MB at 2048) that no cache holds: the figure that
 * matters is the step time against that many bytes at the machine's bandwidth.
 * Validation first: every kernel against loam__attend_c on one layer (relative L2 < 2e-6).
 * Reported: best and median of 7 steps, ms, and the KV read rate that implies.
 */
#define _POSIX_C_SOURCE 200809L
#include "cpu/attention.h"
#include "cpu/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N_LAYER = 36, N_KV = 8, REP = 4, HD = 128, B = LOAM__KV_BLOCK, REPS = 7, THREADS = 2 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench {
    int depth, n_blocks;
    float *k, *v;    /* (N_LAYER, n_blocks, N_KV, B, HD) */
    int32_t *table;  /* (n_blocks) */
    float *q, *out;  /* (N_KV * REP * HD) */
    float *w;        /* (THREADS, REP, w_stride) */
    int64_t w_stride;
} bench;

static loam__attn_task task(const bench *b, int l, int h, float *out, float *w) {
    int64_t bs = (int64_t)N_KV * B * HD;
    loam__attn_task t = {
        .q = b->q + (int64_t)h * REP * HD,
        .out = out + (int64_t)h * REP * HD,
        .k = b->k + (int64_t)l * b->n_blocks * bs + (int64_t)h * B * HD,
        .v = b->v + (int64_t)l * b->n_blocks * bs + (int64_t)h * B * HD,
        .table = b->table,
        .block_stride = bs,
        .n_keys = b->depth,
        .n_rep = REP,
        .head_dim = HD,
        .scale = 1.0f / sqrtf((float)HD),
        .w = w,
        .w_stride = b->w_stride,
    };
    return t;
}

static double step(const bench *b, loam__attend_fn fn) {
    double t0 = now_s();
    for (int l = 0; l < N_LAYER; l++) {
#pragma omp parallel for num_threads(THREADS) schedule(dynamic, 1)
        for (int h = 0; h < N_KV; h++) {
            loam__attn_task t =
                task(b, l, h, b->out, b->w + (int64_t)omp_get_thread_num() * REP * b->w_stride);
            fn(&t);
        }
    }
    return now_s() - t0;
}

static void run(int depth) {
    bench b = {.depth = depth, .n_blocks = (depth + B - 1) / B};
    b.w_stride = (int64_t)b.n_blocks * B;
    size_t kv = (size_t)N_LAYER * (size_t)b.n_blocks * N_KV * B * HD;
    b.k = malloc(kv * 4);
    b.v = malloc(kv * 4);
    b.table = malloc((size_t)b.n_blocks * sizeof(int32_t));
    b.q = malloc((size_t)N_KV * REP * HD * 4);
    b.out = malloc((size_t)N_KV * REP * HD * 4);
    float *ref = malloc((size_t)N_KV * REP * HD * 4);
    b.w = malloc((size_t)THREADS * REP * (size_t)b.w_stride * 4);
    if (!b.k || !b.v || !b.table || !b.q || !b.out || !ref || !b.w) {
        fprintf(stderr, "bench_attention: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < kv; i++) b.k[i] = rnd(), b.v[i] = rnd();
    for (int i = 0; i < N_KV * REP * HD; i++) b.q[i] = 2.0f * rnd();
    for (int i = 0; i < b.n_blocks; i++) b.table[i] = i; /* then a fixed shuffle */
    for (int i = b.n_blocks - 1; i > 0; i--) {
        int j = (int)((unsigned)(rnd() * 1e6f + 1e6f) % (unsigned)(i + 1));
        int32_t x = b.table[i];
        b.table[i] = b.table[j];
        b.table[j] = x;
    }
    struct {
        const char *name;
        loam__attend_fn fn;
    } ks[3] = {{"c (reference)", loam__attend_c}};
    int nk = 1;
    if (loam__cpu_kernels_named("avx2")) ks[nk].name = "avx2", ks[nk++].fn = loam__attend_avx2;
    if (loam__cpu_kernels_named("avx512")) ks[nk].name = "avx512", ks[nk++].fn = loam__attend_avx512;

    for (int h = 0; h < N_KV; h++) { /* validate on layer 0 */
        loam__attn_task t = task(&b, 0, h, ref, b.w);
        loam__attend_c(&t);
    }
    for (int i = 1; i < nk; i++) {
        for (int h = 0; h < N_KV; h++) {
            loam__attn_task t = task(&b, 0, h, b.out, b.w);
            ks[i].fn(&t);
        }
        double num = 0, den = 0;
        for (int j = 0; j < N_KV * REP * HD; j++) {
            num += (double)(b.out[j] - ref[j]) * (b.out[j] - ref[j]);
            den += (double)ref[j] * ref[j];
        }
        if (!(sqrt(num / den) < 2e-6)) {
            fprintf(stderr, "bench_attention: %s differs from c: rel L2 %.3g\n", ks[i].name,
                    sqrt(num / den));
            exit(1);
        }
    }
    double mb = (double)kv * 4 * 2 / 1e6;
    printf("depth %d: K+V %.0f MB per step\n", depth, mb);
    for (int i = 0; i < nk; i++) {
        double t[REPS];
        step(&b, ks[i].fn); /* warm-up */
        for (int r = 0; r < REPS; r++) t[r] = step(&b, ks[i].fn);
        qsort(t, REPS, sizeof t[0], cmp_d);
        printf("  %-14s best %7.2f ms  median %7.2f ms  (%.1f GB/s of K+V)\n", ks[i].name,
               t[0] * 1e3, t[REPS / 2] * 1e3, mb / 1e3 / t[0]);
    }
    free(b.k), free(b.v), free(b.table), free(b.q), free(b.out), free(ref), free(b.w);
}

int main(int argc, char **argv) {
    printf("bench_attention: Qwen3-8B decode attention, %d threads, kernels of %s\n", THREADS,
           loam_cpu_kernels_name());
    if (argc > 1)
        for (int i = 1; i < argc; i++) run(atoi(argv[i]) > 0 ? atoi(argv[i]) : 1);
    else
        for (int d = 512; d <= 4096; d *= 2)
            if (d != 1024) run(d);
    return 0;
}
