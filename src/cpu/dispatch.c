/* dispatch.c: picks the CPU kernel table at run time and drives loam__matmul.
 *
 * Selection: the first table of k_tables (best first) this CPU can run, by cpuid on x86-64
 * (AVX-512 F/BW/VL/DQ/VNNI → avx512vnni, AVX2+FMA+F16C → avx2) and the hwcap "asimddp" bit on
 * aarch64 (neon with sdot); the scalar table otherwise. LOAM_CPU=scalar|avx2|avx512|neon
 * overrides the choice when this CPU can run the named table (for tests and benchmarks; an
 * unknown or unrunnable name keeps the automatic choice). No -march=native: each ISA file is
 * compiled with its own flags and only called after the check.
 *
 * loam__matmul (y [m, n] = x [m, k] · Wᵀ) has three paths:
 *  - 4-bit group-64: x is quantized once per call to int8 per group (kernels.h), then the
 *    table's tiles run over the weights. Each thread owns a contiguous range of output rows and
 *    walks it in blocks of ROW_BLOCK rows; inside a block every activation row passes over the
 *    block's weights (mm tiles, then mv tiles for the leftover activation rows), so the block
 *    stays in L1/L2 and every weight byte comes from memory once per call, whatever m is.
 *  - dense F32/F16/BF16: the same walk with float x and the dense tiles.
 *  - every other width / group size (the generic path): a chunk of a weight row is unpacked to
 *    one byte per element and the table's dot_qf computes Σ (s·q + b)·x in float against every
 *    activation row (x stays float: no activation rounding on this path).
 *
 * Threads: one OpenMP parallel region per call (activation quantization split over the
 * threads, a barrier, then the rows). Measured against a spinning pthread pool in
 * bench/bench_qmatmul.c (bench/RESULTS.md): an empty region costs 1.0 µs against the pool's
 * 0.6 µs, and a 2048×1024 4-bit matrix-vector product (in cache) 16.3 µs against 15.1 µs. An 8B
 * decode step makes about 250 calls, so OpenMP costs ~0.1 ms of a ~65 ms step: not worth a
 * pool of our own. With 1 thread (or too few rows for 2) no region is opened.
 */
#include "cpu/kernels.h"

#include <math.h>
#include <omp.h>

#if defined(__x86_64__)
#include <cpuid.h>
static const loam__kernels *const k_tables[] = {&loam__kernels_avx512, &loam__kernels_avx2,
                                                &loam__kernels_scalar};
/* F16C by cpuid leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c". */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
static int cpu_can_run(const loam__kernels *kt) {
    __builtin_cpu_init();
    if (kt == &loam__kernels_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") &&
               cpu_has_f16c();
    if (kt == &loam__kernels_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    return 1;
}
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
static const loam__kernels *const k_tables[] = {&loam__kernels_neon, &loam__kernels_scalar};
static int cpu_can_run(const loam__kernels *kt) {
    if (kt == &loam__kernels_neon)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
    return 1;
}
#else
static const loam__kernels *const k_tables[] = {&loam__kernels_scalar};
static int cpu_can_run(const loam__kernels *kt) {
    (void)kt;
    return 1;
}
#endif

#define N_TABLES  (sizeof k_tables / sizeof k_tables[0])
#define ROW_BLOCK 16  /* a multiple of every table's mv_rows and mm_rows */
#define GEN_CHUNK 512 /* generic path: elements unpacked at a time (a multiple of 128) */

// ---- selection --------------------------------------------------------------------------------

const loam__kernels *loam__cpu_kernels_named(const char *name) {
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_TABLES; i++) {
        const char *tn = k_tables[i]->name;
        int match =
            strcmp(name, tn) == 0 || (strcmp(name, "avx512") == 0 && strcmp(tn, "avx512vnni") == 0);
        if (match)
            return cpu_can_run(k_tables[i]) ? k_tables[i] : NULL;
    }
    return NULL;
}

const loam__kernels *loam__cpu_kernels(void) {
    static const loam__kernels *_Atomic chosen; /* set once; racing first calls agree */
    const loam__kernels *kt = chosen;
    if (kt)
        return kt;
    kt = loam__cpu_kernels_named(getenv("LOAM_CPU"));
    for (size_t i = 0; !kt && i < N_TABLES; i++)
        if (cpu_can_run(k_tables[i]))
            kt = k_tables[i];
    chosen = kt;
    return kt;
}

const char *loam_cpu_kernels_name(void) {
    return loam__cpu_kernels()->name;
}

// ---- activation quantization ------------------------------------------------------------------

static int64_t round_up(int64_t v, int64_t a) {
    return (v + a - 1) / a * a;
}

/* round-to-nearest-even of v for |v| < 2^22, as rintf, without a libm call: adding 1.5·2^23
 * leaves the rounded integer in the low mantissa bits. Defined for any input (a NaN gives an
 * arbitrary value, which the caller clamps). */
static inline int32_t round_small(float v) {
    float y = v + 12582912.0f;
    uint32_t u;
    memcpy(&u, &y, 4);
    return (int32_t)(u - 0x4B400000u);
}

void loam__quantize_act(const float *x, int64_t k, int order, int64_t a0, int64_t a1, int64_t g0,
                        int64_t g1, const loam__actq *xq) {
    const int64_t gp = xq->n_gpad;
    for (int64_t a = a0; a < a1; a++) {
        int8_t *q = (int8_t *)xq->q + (size_t)a * (size_t)gp * 64u;
        float *d = (float *)xq->d + (size_t)a * (size_t)gp;
        float *c = (float *)xq->c + (size_t)a * (size_t)gp;
        float *sum = (float *)xq->sum + (size_t)a * (size_t)gp;
        for (int64_t g = g0; g < g1 && g < gp; g++) {
            /* where the 32 even and the 32 odd elements of group g go (kernels.h) */
            size_t lo = order == LOAM__ACT_PAIRS ? (size_t)(g >> 1) * 128u + (size_t)(g & 1) * 32u
                                                 : (size_t)g * 64u;
            size_t hi = lo + (order == LOAM__ACT_PAIRS ? 64u : 32u);
            if (g >= xq->n_groups) { /* padding group */
                memset(q + lo, 0, 32);
                memset(q + hi, 0, 32);
                d[g] = c[g] = sum[g] = 0.0f;
                continue;
            }
            const float *xg = x + (size_t)a * (size_t)k + (size_t)g * 64u;
            /* four independent max / sum chains (one chain of 64 float adds is the slow part) */
            float am[4] = {0.0f, 0.0f, 0.0f, 0.0f}, ps[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int i = 0; i < 64; i += 4)
                for (int u = 0; u < 4; u++) {
                    float v = fabsf(xg[i + u]);
                    am[u] = v > am[u] ? v : am[u];
                    ps[u] += xg[i + u];
                }
            float amax = am[0] > am[1] ? am[0] : am[1], amax2 = am[2] > am[3] ? am[2] : am[3];
            amax = amax > amax2 ? amax : amax2;
            float s = (ps[0] + ps[1]) + (ps[2] + ps[3]);
            float step = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t qs = 0;
            for (int j = 0; j < 32; j++) {
                int32_t e = round_small(xg[2 * j] * inv), o = round_small(xg[2 * j + 1] * inv);
                e = e > 127 ? 127 : e < -127 ? -127 : e; /* |x·inv| <= 127 but for NaN/inf */
                o = o > 127 ? 127 : o < -127 ? -127 : o;
                q[lo + (size_t)j] = (int8_t)e;
                q[hi + (size_t)j] = (int8_t)o;
                qs += e + o;
            }
            d[g] = step;
            c[g] = 8.0f * (s - step * (float)qs);
            sum[g] = s;
        }
    }
}

size_t loam__matmul_scratch_bytes(int64_t m, int64_t k) {
    if (m <= 0 || k <= 0)
        return 64;
    uint64_t gp = (uint64_t)round_up((k + 63) / 64, 16), row = gp * 64u + 3u * gp * 4u, n;
    if (loam__mul_u64(row, (uint64_t)m, &n) || loam__add_u64(n, 64u, &n) || n > SIZE_MAX)
        return SIZE_MAX;
    return (size_t)n;
}

/* Lays out loam__actq in scratch for m rows of k = n_groups*64 inputs. */
static loam__actq act_layout(void *scratch, int64_t m, int64_t k) {
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63u) & ~(uintptr_t)63u);
    loam__actq xq;
    xq.n_groups = k / 64;
    xq.n_gpad = round_up(xq.n_groups, 16);
    size_t qb = (size_t)m * (size_t)xq.n_gpad * 64u, fb = (size_t)m * (size_t)xq.n_gpad * 4u;
    xq.q = (const int8_t *)base;
    xq.d = (const float *)(base + qb);
    xq.c = (const float *)(base + qb + fb);
    xq.sum = (const float *)(base + qb + 2 * fb);
    return xq;
}

// ---- the walk over rows -----------------------------------------------------------------------

static void tiles_run(const loam__tiles *t, const loam__qmat *W, const void *x, int64_t m,
                      int64_t r0, int64_t r1, float *y) {
    for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
        int64_t re = rb + ROW_BLOCK < r1 ? rb + ROW_BLOCK : r1;
        int64_t a = 0;
        for (; a + t->mm_acts <= m; a += t->mm_acts) {
            int64_t r = rb;
            for (; r + t->mm_rows <= re; r += t->mm_rows)
                t->mm(W, r, x, a, y);
            for (; r < re; r++)
                for (int64_t j = a; j < a + t->mm_acts; j++)
                    t->one(W, r, x, j, y);
        }
        for (; a < m; a++) {
            int64_t r = rb;
            for (; r + t->mv_rows <= re; r += t->mv_rows)
                t->mv(W, r, x, a, y);
            for (; r < re; r++)
                t->one(W, r, x, a, y);
        }
    }
}

/* Generic path: unpack GEN_CHUNK elements of one row into bytes (whole packs: 8 values in 3
 * bytes for 3 bits, in 5 for 5 bits, 4 in 3 for 6 bits, 2 per byte for 4, 4 per byte for 2;
 * 8-bit rows are used as they are), then the table's dot_qf with every activation row. */
static inline void unpack_packs(const uint8_t *src, int64_t n_packs, const int bits, const int per,
                                const int bytes, uint8_t *q) {
    const uint64_t mask = (1u << bits) - 1u;
    /* one 8-byte load per pack while 8 bytes remain in the chunk, byte by byte after */
    const int64_t fast = n_packs * bytes >= 8 ? (n_packs * bytes - 8) / bytes + 1 : 0;
    for (int64_t p = 0; p < n_packs; p++) {
        uint64_t v = 0;
        if (p < fast)
            v = loam__rd_u64le(src + p * bytes);
        else
            for (int b = 0; b < bytes; b++)
                v |= (uint64_t)src[p * bytes + b] << (8 * b);
        for (int e = 0; e < per; e++)
            q[p * per + e] = (uint8_t)((v >> (e * bits)) & mask);
    }
}

static void unpack_chunk(const uint8_t *row, int bits, int64_t j0, int64_t len, uint8_t *q) {
    const uint8_t *src = row + (size_t)j0 * (size_t)bits / 8u;
    switch (bits) {
    case 2:
        unpack_packs(src, len / 4, 2, 4, 1, q);
        break;
    case 3:
        unpack_packs(src, len / 8, 3, 8, 3, q);
        break;
    case 4:
        unpack_packs(src, len / 2, 4, 2, 1, q);
        break;
    case 5:
        unpack_packs(src, len / 8, 5, 8, 5, q);
        break;
    case 6:
        unpack_packs(src, len / 4, 6, 4, 3, q);
        break;
    default:
        memcpy(q, src, (size_t)len);
        break;
    }
}

static void generic_run(const loam__kernels *kt, const loam__qmat *W, const float *x, int64_t m,
                        int64_t r0, int64_t r1, float *y) {
    const int64_t k = W->k, n = W->n;
    const int gs = W->fmt.group_size, bits = W->fmt.bits;
    const size_t row_bytes = (size_t)k * (size_t)bits / 8u, n_groups = (size_t)(k / gs);
    uint8_t qbuf[GEN_CHUNK];
    float s[GEN_CHUNK / 32], b[GEN_CHUNK / 32];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)W->w + (size_t)r * row_bytes;
        for (int64_t a = 0; a < m; a++)
            y[(size_t)a * (size_t)n + (size_t)r] = 0.0f;
        for (int64_t j0 = 0; j0 < k; j0 += GEN_CHUNK) {
            int64_t len = k - j0 < GEN_CHUNK ? k - j0 : GEN_CHUNK;
            const uint8_t *q = row + j0;
            if (bits != 8) {
                unpack_chunk(row, bits, j0, len, qbuf);
                q = qbuf;
            }
            for (int64_t g = 0; g < len / gs; g++) {
                size_t gi = (size_t)r * n_groups + (size_t)(j0 / gs + g);
                s[g] = loam__load_float(W->scales, W->fmt.scale_dtype, gi);
                b[g] = loam__load_float(W->biases, W->fmt.scale_dtype, gi);
            }
            for (int64_t a = 0; a < m; a++)
                y[(size_t)a * (size_t)n + (size_t)r] +=
                    kt->dot_qf(q, s, b, gs, x + (size_t)a * (size_t)k + (size_t)j0, len);
        }
    }
}

enum { PATH_Q4, PATH_DENSE, PATH_GENERIC };

static void rows_run(const loam__kernels *kt, int path, const loam__qmat *W, const float *x,
                     const loam__actq *xq, int64_t m, int64_t r0, int64_t r1, float *y) {
    if (r0 >= r1)
        return;
    if (path == PATH_Q4)
        tiles_run(&kt->q4, W, xq, m, r0, r1, y);
    else if (path == PATH_DENSE)
        tiles_run(&kt->dense, W, x, m, r0, r1, y);
    else
        generic_run(kt, W, x, m, r0, r1, y);
}

void loam__matmul_with(const loam__kernels *kt, const loam__qmat *W, const float *x, int64_t m,
                       float *y, int n_threads, void *scratch) {
    LOAM_ASSERT(loam__qmat_check(W, NULL) == LOAM_OK);
    if (m <= 0)
        return;
    const int64_t n = W->n, k = W->k;
    int path = PATH_DENSE;
    if (W->dtype == LOAM_DTYPE_U32)
        path = W->fmt.bits == 4 && W->fmt.group_size == 64 ? PATH_Q4 : PATH_GENERIC;
    loam__actq xq = {0};
    if (path == PATH_Q4)
        xq = act_layout(scratch, m, k);
    const int64_t n_chunks = xq.n_gpad / 16; /* activation quantization work items per row */

    int64_t nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    int64_t max_nt = (n + ROW_BLOCK - 1) / ROW_BLOCK;
    if (nt > max_nt)
        nt = max_nt;
    if (nt <= 1) {
        if (path == PATH_Q4)
            loam__quantize_act(x, k, kt->act_order, 0, m, 0, xq.n_gpad, &xq);
        rows_run(kt, path, W, x, &xq, m, 0, n, y);
        return;
    }
#pragma omp parallel num_threads((int)nt)
    {
        if (path == PATH_Q4) {
#pragma omp for schedule(static)
            for (int64_t it = 0; it < m * n_chunks; it++)
                loam__quantize_act(x, k, kt->act_order, it / n_chunks, it / n_chunks + 1,
                                   (it % n_chunks) * 16, (it % n_chunks) * 16 + 16, &xq);
        }
        int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t per = round_up((n + T - 1) / T, ROW_BLOCK);
        int64_t r0 = t * per, r1 = r0 + per < n ? r0 + per : n;
        rows_run(kt, path, W, x, &xq, m, r0, r1, y);
    }
}

void loam__matmul(const loam__qmat *W, const float *x, int64_t m, float *y, int n_threads,
                  void *scratch) {
    loam__matmul_with(loam__cpu_kernels(), W, x, m, y, n_threads, scratch);
}

loam_status loam_qmatmul(const float *x, int64_t m, const void *wq, const void *scales,
                         const void *biases, int64_t n, int64_t k, loam_qformat fmt, float *y,
                         int n_threads, loam_err *err) {
    loam__qmat W = {LOAM_DTYPE_U32, fmt, wq, scales, biases, n, k};
    loam_status s = loam__qmat_check(&W, err);
    if (s != LOAM_OK)
        return s;
    if (m <= 0 || !x || !y)
        return loam__fail(err, LOAM_E_INVAL, "qmatmul: m = %lld, x or y NULL", (long long)m);
    size_t nb = loam__matmul_scratch_bytes(m, k);
    void *scratch = nb == SIZE_MAX ? NULL : loam__malloc(nb);
    if (!scratch)
        return loam__fail(err, LOAM_E_NOMEM, "qmatmul: no memory for %zu bytes of scratch", nb);
    loam__matmul(&W, x, m, y, n_threads, scratch);
    loam__free(scratch);
    return LOAM_OK;
}
