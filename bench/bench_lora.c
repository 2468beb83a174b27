/* bench_lora.c: what runtime LoRA costs a CPU decode step, on Qwen3-8B shapes.
 *
 *   build/bench/bench_lora [--quick]
 *
 * The target (DESIGN.md): a rank-8 adapter on all seven projections of 16 layers makes decode
 * at most 3% slower. Decode is bound by reading weights, so the bench reads them as decode
 * does: every projection of all 36 layers, 4-bit group 64 with bf16 scales (4.1 GB, random
 * packed words; allocated once so each matmul streams from DRAM), one token (m = 1), all cores,
 * through loam__matmul. A "step" is those 252 matmuls plus the lm_head; a LoRA step adds
 * loam__lora_apply after the projections of the last 16 layers, as the forward pass calls it
 * (A and B fp32: 38.8 MB, also streamed from DRAM because the base weights flush the caches).
 * Reported: best-of-N step times with and without the adapter, the difference as a percentage,
 * and the LoRA work alone (cold, as in a step, and warm, in a loop over one layer).
 * Attention, norms and sampling are left out, so the true share of decode time is lower than
 * the percentage printed: the figure is an upper bound.
 *
 * Validation first: loam__lora_apply on one module against a double-precision x·A·B.
 */
#define _POSIX_C_SOURCE 200809L
#include "lora.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    N_LAYER = 36,
    N_ADAPTED = 16,
    RANK = 8,
    HIDDEN = 4096,
    KV = 1024,
    FF = 12288,
    VOCAB = 151936
};

static const int64_t k_in[LOAM__N_MOD] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, FF};
static const int64_t k_out[LOAM__N_MOD] = {HIDDEN, KV, KV, HIDDEN, FF, FF, HIDDEN};

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float rnd_f(void) {
    return (float)((double)(rnd() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void *xalloc(size_t n) {
    void *p = loam__aligned_alloc(64, n);
    if (!p) {
        fprintf(stderr, "bench_lora: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static loam__qmat make_q4(int64_t n, int64_t k) {
    loam_qformat fmt = {4, 64, LOAM_DTYPE_BF16};
    size_t wb = (size_t)loam_qweight_bytes(fmt, n, k), sb = (size_t)loam_qscale_bytes(fmt, n, k);
    uint8_t *w = xalloc(wb);
    uint16_t *s = xalloc(sb), *b = xalloc(sb);
    for (size_t i = 0; i < wb; i += 8) {
        uint64_t v = rnd();
        memcpy(w + i, &v, wb - i < 8 ? wb - i : 8);
    }
    for (size_t i = 0; i < sb / 2; i++) {
        s[i] = loam__f32_to_bf16(0.01f + 0.001f * rnd_f());
        b[i] = loam__f32_to_bf16(-0.08f + 0.01f * rnd_f());
    }
    return (loam__qmat){LOAM_DTYPE_U32, fmt, w, s, b, n, k};
}

static loam__lora_mod make_lora(int64_t in, int64_t out) {
    float *a = xalloc((size_t)(in * RANK) * sizeof(float));
    float *b = xalloc((size_t)(out * RANK) * sizeof(float));
    for (int64_t i = 0; i < in * RANK; i++)
        a[i] = rnd_f() / 64.0f;
    for (int64_t i = 0; i < out * RANK; i++)
        b[i] = rnd_f() / 64.0f;
    loam__lora_mod m = {a, b, RANK, 2.0f, NULL, NULL};
    return m;
}

static loam__qmat g_w[N_LAYER][LOAM__N_MOD], g_head;
static loam__lora_mod g_lora[N_ADAPTED][LOAM__N_MOD];
static float g_x[FF], g_y[VOCAB], g_t[64];
static void *g_scratch;

static double step(bool lora) {
    double t0 = loam__now();
    for (int l = 0; l < N_LAYER; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            loam__matmul(&g_w[l][m], g_x, 1, g_y, 0, g_scratch);
            int la = l - (N_LAYER - N_ADAPTED);
            if (lora && la >= 0)
                loam__lora_apply(&g_lora[la][m], g_x, 1, k_in[m], k_out[m], g_y, g_t);
        }
    loam__matmul(&g_head, g_x, 1, g_y, 0, g_scratch);
    return loam__now() - t0;
}

static double lora_only(int layers) {
    double t0 = loam__now();
    for (int l = 0; l < layers; l++)
        for (int m = 0; m < LOAM__N_MOD; m++)
            loam__lora_apply(&g_lora[l % N_ADAPTED][m], g_x, 1, k_in[m], k_out[m], g_y, g_t);
    return loam__now() - t0;
}

static int validate(void) {
    const int m = LOAM__MOD_DOWN;
    const loam__lora_mod *lm = &g_lora[0][m];
    for (int i = 0; i < FF; i++)
        g_x[i] = rnd_f();
    memset(g_y, 0, sizeof g_y);
    loam__lora_apply(lm, g_x, 1, k_in[m], k_out[m], g_y, g_t);
    double t[RANK], worst = 0;
    for (int j = 0; j < RANK; j++) {
        t[j] = 0;
        for (int64_t i = 0; i < k_in[m]; i++)
            t[j] += (double)g_x[i] * lm->a[i * RANK + j];
    }
    for (int64_t o = 0; o < k_out[m]; o++) {
        double want = 0;
        for (int j = 0; j < RANK; j++)
            want += lm->scale * t[j] * lm->b[j * k_out[m] + o];
        worst = fmax(worst, fabs(g_y[o] - want));
    }
    printf("validate: loam__lora_apply vs double, down_proj %lldx%lld rank %d: max |err| %.3g %s\n",
           (long long)k_in[m], (long long)k_out[m], RANK, worst, worst < 1e-5 ? "ok" : "FAIL");
    return worst < 1e-5 ? 0 : 1;
}

int main(int argc, char **argv) {
    int reps = argc > 1 && strcmp(argv[1], "--quick") == 0 ? 3 : 9;
    printf("bench_lora: Qwen3-8B shapes, 4-bit g64 bf16, %d layers, rank-%d LoRA on all 7 "
           "projections of the last %d; %d OpenMP threads; CPU kernels %s\n",
           N_LAYER, RANK, N_ADAPTED, omp_get_max_threads(), loam_cpu_kernels_name());
    double bytes = 0, lbytes = 0;
    for (int l = 0; l < N_LAYER; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            g_w[l][m] = make_q4(k_out[m], k_in[m]);
            bytes += (double)loam_qweight_bytes(g_w[l][m].fmt, k_out[m], k_in[m]) +
                     2.0 * (double)loam_qscale_bytes(g_w[l][m].fmt, k_out[m], k_in[m]);
        }
    g_head = make_q4(VOCAB, HIDDEN);
    bytes += (double)loam_qweight_bytes(g_head.fmt, VOCAB, HIDDEN) +
             2.0 * (double)loam_qscale_bytes(g_head.fmt, VOCAB, HIDDEN);
    for (int l = 0; l < N_ADAPTED; l++)
        for (int m = 0; m < LOAM__N_MOD; m++) {
            g_lora[l][m] = make_lora(k_in[m], k_out[m]);
            lbytes += (double)((k_in[m] + k_out[m]) * RANK) * 4.0;
        }
    g_scratch = xalloc(loam__matmul_scratch_bytes(1, FF));
    printf("weights %.2f GB per step; adapter %.1f MB (%.2f%% of it)\n", bytes / 1e9, lbytes / 1e6,
           100.0 * lbytes / bytes);
    if (validate())
        return 1;
    for (int i = 0; i < FF; i++)
        g_x[i] = rnd_f();

    double best_base = 1e9, best_lora = 1e9;
    step(false);
    step(true);
    for (int r = 0; r < reps; r++) { /* interleaved so drift hits both alike */
        double a = step(false), b = step(true);
        best_base = a < best_base ? a : best_base;
        best_lora = b < best_lora ? b : best_lora;
    }
    printf("step without adapter: %8.2f ms  (%.1f GB/s of weights)\n", best_base * 1e3,
           bytes / best_base / 1e9);
    printf("step with adapter:    %8.2f ms  (+%.2f%%)\n", best_lora * 1e3,
           100.0 * (best_lora - best_base) / best_base);
    double cold = 1e9, warm = 1e9;
    for (int r = 0; r < reps; r++) {
        double c = lora_only(N_ADAPTED);
        cold = c < cold ? c : cold;
    }
    for (int r = 0; r < reps; r++) {
        double t0 = loam__now();
        for (int i = 0; i < 16; i++)
            for (int m = 0; m < LOAM__N_MOD; m++)
                loam__lora_apply(&g_lora[0][m], g_x, 1, k_in[m], k_out[m], g_y, g_t);
        double w = loam__now() - t0;
        warm = w < warm ? w : warm;
    }
    printf("LoRA alone, 16 layers x 7 modules: %.3f ms back to back (%.1f GB/s; %.2f%% of the "
           "base step), %.3f ms with one layer's A and B in cache\n",
           cold * 1e3, lbytes / cold / 1e9, 100.0 * cold / best_base, warm * 1e3);
    return 0;
}
