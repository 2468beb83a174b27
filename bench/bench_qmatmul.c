/* bench_qmatmul.c: the quantized matmul kernel lab (llm.c dev/cuda style): the reference
 * (loam__matmul_ref), the variants (every kernel table this CPU runs: scalar, avx2,
 * avx512vnni / neon), validation of each variant against the reference, then timing.
 *
 *   make bench                       (builds and runs every bench/bench_*.c)
 *   build/bench/bench_qmatmul [--quick]
 *
 * What it measures, on Qwen3-8B shapes (n × k: 4096×4096 q/o, 12288×4096 gate/up, 4096×12288
 * down, 151936×4096 head), 4-bit, group 64, bf16 scales and biases:
 *  1. memory read bandwidth: a multi-threaded sum over a 1 GiB buffer, 1 and 2 threads;
 *  2. matrix-vector (decode, m = 1), 1 and 2 threads: GB/s of quantized weight read (packed
 *     words + scales + biases per call / time), as a % of the read bandwidth of (1). Each shape
 *     is allocated in enough copies (≥ 512 MiB) that every call reads from DRAM, as decode does
 *     (an 8B model is 4.3 GB; a single 8 MiB matrix would sit in the 32 MiB L3 and flatter us);
 *  3. matrix-matrix (batches, prefill) m = 16 and m = 512: GFLOP/s = 2·m·n·k / time;
 *  4. dense bf16 matrix-vector (unquantized models and float heads), GB/s;
 *  5. threading: an OpenMP region (what loam__matmul uses) against a spinning pthread pool, on
 *     an empty job and on a small in-cache matrix-vector product (Qwen3-0.6B q_proj size).
 * Weights are random packed words with plausible scales (no quantization of floats needed).
 */
#define _GNU_SOURCE
#include "cpu/kernels.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bandwidth reference's read loop is compiled for AVX2 when this is x86-64 and the CPU has
 * it (32-byte loads into 4 independent accumulators): a plain C loop of 8-byte loads measures
 * the loop, not the memory, and reads below what the kernels reach. The only ISA-specific code
 * of this program, and not a kernel. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t sum_wide(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, a0);
    return t[0] + t[1] + t[2] + t[3];
}
static int have_wide_sum(void) {
    return __builtin_cpu_supports("avx2");
}
#else
static uint64_t sum_wide(const uint8_t *p, size_t n) {
    (void)p, (void)n;
    return 0;
}
static int have_wide_sum(void) {
    return 0;
}
#endif

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float rnd_unif(void) {
    return (float)(rnd() >> 40) * 0x1p-24f;
}

static void *xalloc(size_t n) {
    void *p = loam__aligned_alloc(64, n);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

// ---- 1. memory read bandwidth -----------------------------------------------------------------

static uint64_t sum_plain(const uint8_t *p, size_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, v[4];
    for (size_t i = 0; i < n; i += 32) {
        memcpy(v, p + i, 32);
        s0 += v[0];
        s1 += v[1];
        s2 += v[2];
        s3 += v[3];
    }
    return s0 + s1 + s2 + s3;
}

static uint8_t *g_buf; /* 1 GiB read by the bandwidth passes */
#define BUF_BYTES ((size_t)1 << 30)

/* Seconds of one pass of nt threads each summing its part of the 1 GiB buffer. */
static double read_pass(int nt) {
    const int wide = have_wide_sum();
    uint64_t total = 0;
    double t0 = loam__now();
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
        size_t per = BUF_BYTES / (size_t)omp_get_num_threads() / 128 * 128;
        const uint8_t *p = g_buf + per * (size_t)omp_get_thread_num();
        total += wide ? sum_wide(p, per) : sum_plain(p, per);
    }
    double dt = loam__now() - t0;
    if (total == 42)
        puts("");
    return dt;
}

/* Best of 5 passes, GB/s. */
static double read_bandwidth(int nt) {
    double best = 1e30;
    for (int it = 0; it < 5; it++)
        best = fmin(best, read_pass(nt));
    return (double)BUF_BYTES / best / 1e9;
}

// ---- weights ----------------------------------------------------------------------------------

typedef struct {
    loam__qmat *W; /* copies */
    int n_copies;
    size_t bytes; /* bytes read per call: words + scales + biases (or dense) */
} wset;

static loam__qmat make_q4(int64_t n, int64_t k) {
    loam_qformat f = {4, 64, LOAM_DTYPE_BF16};
    size_t wb = (size_t)loam_qweight_bytes(f, n, k), sb = (size_t)loam_qscale_bytes(f, n, k);
    uint8_t *w = xalloc(wb), *s = xalloc(sb), *b = xalloc(sb);
    for (size_t i = 0; i < wb; i += 8) {
        uint64_t v = rnd();
        memcpy(w + i, &v, 8);
    }
    for (size_t i = 0; i < sb / 2; i++) {
        float sc = (0.002f + 0.01f * rnd_unif()) * (rnd() & 1 ? 1.0f : -1.0f);
        uint16_t hs = loam__f32_to_bf16(sc), hb = loam__f32_to_bf16(-7.5f * sc);
        memcpy(s + 2 * i, &hs, 2);
        memcpy(b + 2 * i, &hb, 2);
    }
    return (loam__qmat){LOAM_DTYPE_U32, f, w, s, b, n, k};
}

static loam__qmat make_bf16(int64_t n, int64_t k) {
    size_t nb = (size_t)(n * k) * 2u;
    uint8_t *w = xalloc(nb);
    for (size_t i = 0; i < nb / 2; i++) {
        uint16_t h = loam__f32_to_bf16(0.05f * (rnd_unif() - 0.5f));
        memcpy(w + 2 * i, &h, 2);
    }
    return (loam__qmat){LOAM_DTYPE_BF16, {0}, w, NULL, NULL, n, k};
}

static size_t qmat_bytes(const loam__qmat *W) {
    if (W->dtype != LOAM_DTYPE_U32)
        return (size_t)(W->n * W->k) * 2u;
    return (size_t)(loam_qweight_bytes(W->fmt, W->n, W->k) +
                    2 * loam_qscale_bytes(W->fmt, W->n, W->k));
}

static wset make_set(int64_t n, int64_t k, int dense, size_t min_total) {
    wset s;
    s.W = NULL;
    loam__qmat first = dense ? make_bf16(n, k) : make_q4(n, k);
    s.bytes = qmat_bytes(&first);
    s.n_copies = (int)((min_total + s.bytes - 1) / s.bytes);
    if (s.n_copies < 1)
        s.n_copies = 1;
    s.W = xalloc(sizeof(loam__qmat) * (size_t)s.n_copies);
    s.W[0] = first;
    for (int c = 1; c < s.n_copies; c++)
        s.W[c] = dense ? make_bf16(n, k) : make_q4(n, k);
    return s;
}

static void free_set(wset *s) {
    for (int c = 0; c < s->n_copies; c++) {
        loam__free((void *)s->W[c].w);
        loam__free((void *)s->W[c].scales);
        loam__free((void *)s->W[c].biases);
    }
    loam__free(s->W);
}

// ---- validation -------------------------------------------------------------------------------

/* Max |y − ref| / max |ref| over the first rows of W (a view, so the reference stays quick). */
static double validate(const loam__kernels *kt, const loam__qmat *W, int64_t m) {
    loam__qmat V = *W;
    V.n = W->n < 64 ? W->n : 64;
    float *x = xalloc(sizeof(float) * (size_t)(m * W->k));
    for (int64_t i = 0; i < m * W->k; i++)
        x[i] = rnd_unif() - 0.5f;
    float *y = xalloc(sizeof(float) * (size_t)(m * V.n)),
          *ref = xalloc(sizeof(float) * (size_t)(m * V.n));
    void *scratch = xalloc(loam__matmul_scratch_bytes(m, W->k));
    loam__matmul_ref(&V, x, m, ref);
    loam__matmul_with(kt, &V, x, m, y, 2, scratch);
    double err = 0, mx = 0;
    for (int64_t i = 0; i < m * V.n; i++) {
        err = fmax(err, fabs((double)y[i] - ref[i]));
        mx = fmax(mx, fabs((double)ref[i]));
    }
    loam__free(x);
    loam__free(y);
    loam__free(ref);
    loam__free(scratch);
    return err / mx;
}

// ---- timing -----------------------------------------------------------------------------------

/* Seconds per call: passes over all the copies (each call on a matrix not read since the
 * previous pass, so from DRAM when the copies exceed the caches) for at least min_s seconds
 * and 5 passes after a warm-up pass; the fastest pass counts (other jobs on a shared machine
 * only ever slow a pass down). When bw is not NULL, every pass is preceded by a read pass of
 * the same threads over the 1 GiB buffer and *bw gets the best of those (GB/s): the kernel and
 * the bandwidth it is compared with are measured under the same conditions. */
static double time_calls(const loam__kernels *kt, const wset *s, int64_t m, int nt, double min_s,
                         double *bw) {
    const int64_t k = s->W[0].k, n = s->W[0].n;
    float *x = xalloc(sizeof(float) * (size_t)(m * k)),
          *y = xalloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * k; i++)
        x[i] = rnd_unif() - 0.5f;
    void *scratch = xalloc(loam__matmul_scratch_bytes(m, k));
    for (int c = 0; c < s->n_copies; c++)
        loam__matmul_with(kt, &s->W[c], x, m, y, nt, scratch);
    double best = 1e30, best_read = 1e30, t_start = loam__now();
    for (int pass = 0; pass < 5 || loam__now() - t_start < min_s; pass++) {
        if (bw)
            best_read = fmin(best_read, read_pass(nt));
        double t0 = loam__now();
        for (int c = 0; c < s->n_copies; c++)
            loam__matmul_with(kt, &s->W[c], x, m, y, nt, scratch);
        best = fmin(best, (loam__now() - t0) / s->n_copies);
    }
    if (bw)
        *bw = (double)BUF_BYTES / best_read / 1e9;
    loam__free(x);
    loam__free(y);
    loam__free(scratch);
    return best;
}

// ---- 5. OpenMP region vs a spinning pthread pool ----------------------------------------------

/* The pool: one worker per extra thread spins on a generation counter (as a pool must to
 * answer in well under a microsecond), runs its share, and bumps a done counter. */
typedef struct {
    _Atomic long gen, done;
    _Atomic int quit;
    void (*job)(int t, int nt, void *arg);
    void *arg;
    int nt;
} pool;

static pool g_pool;

static void *pool_worker(void *p) {
    int t = (int)(intptr_t)p;
    long seen = 0;
    for (;;) {
        long g;
        while ((g = atomic_load_explicit(&g_pool.gen, memory_order_acquire)) == seen)
            if (atomic_load_explicit(&g_pool.quit, memory_order_relaxed))
                return NULL;
        seen = g;
        g_pool.job(t, g_pool.nt, g_pool.arg);
        atomic_fetch_add_explicit(&g_pool.done, 1, memory_order_release);
    }
}

static void pool_run(void (*job)(int, int, void *), void *arg) {
    g_pool.job = job;
    g_pool.arg = arg;
    atomic_store(&g_pool.done, 0);
    atomic_fetch_add_explicit(&g_pool.gen, 1, memory_order_release);
    job(0, g_pool.nt, arg);
    while (atomic_load_explicit(&g_pool.done, memory_order_acquire) < g_pool.nt - 1) {
    }
}

typedef struct {
    const loam__kernels *kt;
    const loam__qmat *W;
    const float *x;
    float *y;
    uint8_t *scratch; /* one slice per thread */
    size_t scratch_bytes;
} mv_job;

static void empty_job(int t, int nt, void *arg) {
    (void)t, (void)nt, (void)arg;
}

/* Thread t of nt: its rows of a matrix-vector product, as a view of W. */
static void mv_slice(int t, int nt, void *arg) {
    mv_job *j = (mv_job *)arg;
    int64_t per = (j->W->n + nt - 1) / nt, r0 = per * t,
            r1 = r0 + per < j->W->n ? r0 + per : j->W->n;
    loam__qmat V = *j->W;
    size_t row_w = (size_t)V.k / 2u, row_s = (size_t)(V.k / 64) * 2u;
    V.w = (const uint8_t *)V.w + (size_t)r0 * row_w;
    V.scales = (const uint8_t *)V.scales + (size_t)r0 * row_s;
    V.biases = (const uint8_t *)V.biases + (size_t)r0 * row_s;
    V.n = r1 - r0;
    loam__matmul_with(j->kt, &V, j->x, 1, j->y + r0, 1, j->scratch + (size_t)t * j->scratch_bytes);
}

static void bench_threading(const loam__kernels *kt) {
    const int nt = 2, reps = 20000;
    printf("\n5. threading, %d threads: OpenMP region vs spinning pthread pool (µs per call, "
           "best of 5 rounds of %d)\n",
           nt, reps);
    loam__qmat W = make_q4(2048, 1024); /* Qwen3-0.6B q_proj: 1 MiB, in cache */
    float *x = xalloc(sizeof(float) * 1024), *y = xalloc(sizeof(float) * 2048);
    for (int i = 0; i < 1024; i++)
        x[i] = rnd_unif() - 0.5f;
    size_t sb = loam__matmul_scratch_bytes(1, 1024);
    mv_job job = {kt, &W, x, y, xalloc(sb * nt), sb};
    void *scratch = xalloc(sb);
    double t_omp_empty = 1e30, t_pool_empty = 1e30, t_omp_mv = 1e30, t_pool_mv = 1e30,
           t_one_mv = 1e30, t0;
    /* OpenMP first, while no pool thread exists to compete for the cores */
    for (int round = 0; round < 5; round++) {
        t0 = loam__now();
        for (int i = 0; i < reps; i++) {
#pragma omp parallel num_threads(nt)
            empty_job(omp_get_thread_num(), nt, NULL);
        }
        t_omp_empty = fmin(t_omp_empty, (loam__now() - t0) / reps * 1e6);
        t0 = loam__now();
        for (int i = 0; i < reps; i++)
            loam__matmul_with(kt, &W, x, 1, y, nt, scratch);
        t_omp_mv = fmin(t_omp_mv, (loam__now() - t0) / reps * 1e6);
        t0 = loam__now();
        for (int i = 0; i < reps; i++)
            loam__matmul_with(kt, &W, x, 1, y, 1, scratch);
        t_one_mv = fmin(t_one_mv, (loam__now() - t0) / reps * 1e6);
    }
    g_pool.nt = nt;
    pthread_t th;
    pthread_create(&th, NULL, pool_worker, (void *)(intptr_t)1);
    for (int round = 0; round < 5; round++) {
        t0 = loam__now();
        for (int i = 0; i < reps; i++)
            pool_run(empty_job, NULL);
        t_pool_empty = fmin(t_pool_empty, (loam__now() - t0) / reps * 1e6);
        t0 = loam__now();
        for (int i = 0; i < reps; i++)
            pool_run(mv_slice, &job);
        t_pool_mv = fmin(t_pool_mv, (loam__now() - t0) / reps * 1e6);
    }
    atomic_store(&g_pool.quit, 1);
    pthread_join(th, NULL);
    printf("   empty job:                      OpenMP %6.2f   pool %6.2f\n", t_omp_empty,
           t_pool_empty);
    printf("   2048x1024 q4 matrix-vector:     OpenMP %6.2f   pool %6.2f   (1 thread %6.2f)\n",
           t_omp_mv, t_pool_mv, t_one_mv);
    loam__free(scratch);
    loam__free(job.scratch);
    loam__free(x);
    loam__free(y);
    loam__free((void *)W.w);
    loam__free((void *)W.scales);
    loam__free((void *)W.biases);
}

// ---- main -------------------------------------------------------------------------------------

static void print_machine(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], model[256] = "unknown";
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c)
                snprintf(model, sizeof model, "%s", c + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    printf("machine: %s, %d cores (OpenMP), chosen table: %s\n", model, omp_get_num_procs(),
           loam__cpu_kernels()->name);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};
    const loam__kernels *tables[4];
    int n_tables = 0;
    for (int i = 0; i < 4; i++)
        if (loam__cpu_kernels_named(isas[i]))
            tables[n_tables++] = loam__cpu_kernels_named(isas[i]);
    const double min_s = quick ? 0.2 : 1.0;
    const size_t min_total = (size_t)(quick ? 256 : 512) << 20;

    print_machine();
    g_buf = xalloc(BUF_BYTES);
    memset(g_buf, 1, BUF_BYTES);
    double bw1 = read_bandwidth(1), bw2 = read_bandwidth(2);
    printf("\n1. memory read bandwidth (sum over 1 GiB): 1 thread %.1f GB/s, 2 threads %.1f GB/s\n"
           "   (and again alongside every matrix-vector timing: the %% columns use that figure)\n",
           bw1, bw2);

    static const struct {
        const char *name;
        int64_t n, k;
    } shapes[] = {
        {"q/o 4096x4096", 4096, 4096},
        {"gate/up 12288x4096", 12288, 4096},
        {"down 4096x12288", 4096, 12288},
        {"head 151936x4096", 151936, 4096},
    };
    const int n_shapes = quick ? 2 : 4;
    printf("\n2. matrix-vector, 4-bit g64 bf16: GB/s of weights+scales+biases (%% of read "
           "bandwidth)\n");
    printf("   %-20s %-11s %9s %16s %16s %12s   %s\n", "shape", "table", "MB", "1 thread",
           "2 threads", "read 1t/2t", "validate (max err / max |ref|)");
    for (int s = 0; s < n_shapes; s++) {
        wset ws = make_set(shapes[s].n, shapes[s].k, 0, min_total);
        for (int t = 0; t < n_tables; t++) {
            if (strcmp(tables[t]->name, "scalar") == 0 && shapes[s].n > 20000)
                continue; /* slow */
            double err = validate(tables[t], &ws.W[0], 1);
            double t1 = time_calls(tables[t], &ws, 1, 1, min_s, &bw1);
            double t2 = time_calls(tables[t], &ws, 1, 2, min_s, &bw2);
            double g1 = (double)ws.bytes / t1 / 1e9, g2 = (double)ws.bytes / t2 / 1e9;
            printf("   %-20s %-11s %9.1f %7.1f (%3.0f%%) %7.1f (%3.0f%%) %5.1f/%5.1f   %.1e\n",
                   shapes[s].name, tables[t]->name, (double)ws.bytes / 1e6, g1, 100 * g1 / bw1, g2,
                   100 * g2 / bw2, bw1, bw2, err);
        }
        free_set(&ws);
    }

    printf("\n3. matrix-matrix, 4-bit g64 bf16, 2 threads: GFLOP/s (2·m·n·k per call)\n");
    printf("   %-20s %-11s %10s %10s   %s\n", "shape", "table", "m=16", "m=512",
           "validate m=16, m=512");
    for (int s = 0; s < (quick ? 1 : 3); s++) {
        wset ws = make_set(shapes[s].n, shapes[s].k, 0, 0);
        for (int t = 0; t < n_tables; t++) {
            if (strcmp(tables[t]->name, "scalar") == 0 && s > 0)
                continue;
            double flop16 = 2.0 * 16 * (double)shapes[s].n * (double)shapes[s].k;
            double e16 = validate(tables[t], &ws.W[0], 16),
                   e512 = validate(tables[t], &ws.W[0], 512);
            double t16 = time_calls(tables[t], &ws, 16, 2, min_s, NULL);
            double t512 = time_calls(tables[t], &ws, 512, 2, min_s, NULL);
            printf("   %-20s %-11s %10.1f %10.1f   %.1e %.1e\n", shapes[s].name, tables[t]->name,
                   flop16 / t16 / 1e9, 32.0 * flop16 / t512 / 1e9, e16, e512);
        }
        free_set(&ws);
    }

    printf("\n4. dense bf16 matrix-vector, 2 threads: GB/s (%% of read bandwidth)\n");
    {
        wset ws = make_set(4096, 4096, 1, min_total);
        for (int t = 0; t < n_tables; t++) {
            double err = validate(tables[t], &ws.W[0], 1);
            double t2 = time_calls(tables[t], &ws, 1, 2, min_s, &bw2);
            double g2 = (double)ws.bytes / t2 / 1e9;
            printf("   %-20s %-11s %7.1f (%3.0f%%) read %5.1f   %.1e\n", "bf16 4096x4096",
                   tables[t]->name, g2, 100 * g2 / bw2, bw2, err);
        }
        free_set(&ws);
    }

    bench_threading(loam__cpu_kernels());
    loam__free(g_buf);
    return 0;
}
