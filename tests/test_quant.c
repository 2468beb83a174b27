/* test_quant.c: MLX affine quantization (src/quant_ref.c) and the CPU matmul kernels.
 *
 * - Worked examples of FORMATS.md §1.2/§1.3 (exact words and bytes), pack/unpack round trips,
 *   the special groups (all zero, constant, eps-dominated), non-finite input rejected.
 * - Round trip |w − deq(q(w))| ≤ |scale| + 1e-6 per group for every bits × group size (the MLX
 *   test_quantized.py invariant) with F32 storage. With BF16/F16 storage the stored s and b
 *   carry a relative rounding u (2^-9, 2^-12) that q·s and b pass on, so the bound becomes
 *   |s|·(1 + n_bins·u) + u·|b| + 1e-6.
 * - Every kernel table this CPU can run (scalar, avx2, avx512vnni; neon on aarch64) against
 *   loam__matmul_ref on random shapes with ragged edges (n = 1, odd n, m = 1..9, group counts
 *   not multiples of 16 or 2), every width, group size and scale dtype, 1-3 threads, and
 *   unaligned weights/scales/scratch. Tolerances, derived next to the checks:
 *     int8 path (4-bit g64): |Δy| ≤ Σ_g |s_g|·Σ_i |q_i − 8|·d_g/2 (kernels.h) + float slack;
 *       and SIMD tables equal the scalar table up to float summation order;
 *       relative L2 error on Gaussian data ≤ 1e-2 (expected ~0.5%, see check_l2).
 *     float paths (dense, generic widths): summation order only, the γ_k worst case
 *       (k+64)·2^-24 times the sum of the magnitudes the kernels add (see bounds()).
 * - The MLX fixtures are checked by test_quant_fixtures.c (it needs the safetensors reader,
 *   which this file does without so that it cross-builds for aarch64 alone).
 */
#define _POSIX_C_SOURCE 200809L
#include "cpu/kernels.h"
#include "test.h"

#include <sys/wait.h>
#include <unistd.h>

// ---- helpers ----------------------------------------------------------------------------------

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd_u64(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rnd_unif(void) { return (float)((double)(rnd_u64() >> 11) * 0x1.0p-53); }
static float rnd_normal(void) {
    double u1 = ((double)(rnd_u64() >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(rnd_u64() >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static const int k_bits[] = {2, 3, 4, 5, 6, 8};
static const int k_groups[] = {32, 64, 128};
static const loam_dtype k_sdt[] = {LOAM_DTYPE_BF16, LOAM_DTYPE_F16, LOAM_DTYPE_F32};

static size_t esize(loam_dtype t) { return t == LOAM_DTYPE_F32 ? 4u : 2u; }

/* A quantized (or dense) matrix held at deliberately odd addresses. */
typedef struct {
    loam__qmat W;
    uint8_t *wbuf, *sbuf, *bbuf;
    float *wf; /* the float source [n, k] */
} tmat;

static void tmat_free(tmat *t) {
    loam__free(t->wbuf);
    loam__free(t->sbuf);
    loam__free(t->bbuf);
    loam__free(t->wf);
}

/* Gaussian rows with a per-row scale, some groups with outliers. */
static float *rand_matrix(int64_t n, int64_t k) {
    float *w = loam__malloc((size_t)(n * k) * sizeof(float));
    for (int64_t r = 0; r < n; r++) {
        float sc = 0.02f + 0.1f * rnd_unif();
        for (int64_t j = 0; j < k; j++) w[r * k + j] = sc * rnd_normal();
        if (rnd_u64() % 4 == 0) w[r * k + (int64_t)(rnd_u64() % (uint64_t)k)] = 20.0f * sc;
    }
    return w;
}

static tmat make_q(int64_t n, int64_t k, loam_qformat fmt) {
    tmat t = {0};
    t.wf = rand_matrix(n, k);
    uint64_t wb = loam_qweight_bytes(fmt, n, k), sb = loam_qscale_bytes(fmt, n, k);
    t.wbuf = loam__malloc((size_t)wb + 3);
    t.sbuf = loam__malloc((size_t)sb + 1);
    t.bbuf = loam__malloc((size_t)sb + 1);
    loam_err e = {0};
    CHECK_OK(loam_quantize(t.wf, n, k, fmt, t.wbuf + 3, t.sbuf + 1, t.bbuf + 1, &e), e);
    t.W = (loam__qmat){LOAM_DTYPE_U32, fmt, t.wbuf + 3, t.sbuf + 1, t.bbuf + 1, n, k};
    return t;
}

static tmat make_dense(int64_t n, int64_t k, loam_dtype dt) {
    tmat t = {0};
    t.wf = rand_matrix(n, k);
    t.wbuf = loam__malloc((size_t)(n * k) * esize(dt) + 1);
    for (int64_t i = 0; i < n * k; i++) loam__store_float(t.wbuf + 1, dt, (size_t)i, t.wf[i]);
    t.W = (loam__qmat){dt, {0}, t.wbuf + 1, NULL, NULL, n, k};
    return t;
}

static float *rand_x(int64_t m, int64_t k) {
    float *x = loam__malloc((size_t)(m * k) * sizeof(float));
    for (int64_t i = 0; i < m * k; i++) x[i] = rnd_normal();
    return x;
}

// ---- worked examples and packing --------------------------------------------------------------

static void test_worked_example(void) {
    float w[32];
    for (int i = 0; i < 32; i++) w[i] = (float)((i - 10) * 0.1);
    static const uint32_t want4[4] = {0xbccddeefu, 0x8899aaabu, 0x44556677u, 0x00112233u};
    static const uint32_t want3[3] = {0x6ddb6fffu, 0x36dc925bu, 0x00124a49u};
    static const uint8_t q4[32] = {15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 10, 9, 9, 8, 8,
                                   7,  7,  6,  6,  5,  5,  4,  4,  3,  3,  2,  2,  1, 1, 0, 0};
    uint8_t wq[16];
    float s, b;
    loam_err e = {0};
    CHECK_OK(loam_quantize(w, 1, 32, (loam_qformat){4, 32, LOAM_DTYPE_F32}, wq, &s, &b, &e), e);
    for (int i = 0; i < 4; i++) CHECK_EQ_I64(loam__rd_u32le(wq + 4 * i), want4[i]);
    CHECK_CLOSE(s, -0.21, 1e-7);
    CHECK_CLOSE(b, 2.1, 1e-7);
    uint8_t q[32];
    loam__qunpack(wq, 4, 0, 32, q);
    CHECK(memcmp(q, q4, 32) == 0);
    CHECK_OK(loam_quantize(w, 1, 32, (loam_qformat){3, 32, LOAM_DTYPE_F32}, wq, &s, &b, &e), e);
    for (int i = 0; i < 3; i++) CHECK_EQ_I64(loam__rd_u32le(wq + 4 * i), want3[i]);
    CHECK_CLOSE(s, -0.42, 1e-7);
    CHECK_CLOSE(b, 2.1, 1e-7);
    /* the same group with bf16 storage: the words do not change, scale/bias are rounded */
    uint16_t sh, bh;
    CHECK_OK(loam_quantize(w, 1, 32, (loam_qformat){4, 32, LOAM_DTYPE_BF16}, wq, &sh, &bh, &e), e);
    for (int i = 0; i < 4; i++) CHECK_EQ_I64(loam__rd_u32le(wq + 4 * i), want4[i]);
    CHECK_EQ_I64(sh, loam__f32_to_bf16(2.1f / -10.0f));
    CHECK_EQ_I64(bh, loam__f32_to_bf16(2.1f));
}

static void test_pack_examples(void) {
    uint8_t v[8] = {0, 1, 2, 3, 4, 5, 6, 7}, out[8] = {0}, back[8];
    static const uint8_t b3[3] = {0x88, 0xc6, 0xfa}, b5[5] = {0x20, 0x88, 0x41, 0x8a, 0x39};
    static const uint8_t b6[3] = {0x40, 0x20, 0x0c};
    loam__qpack(v, 8, 3, out);
    CHECK(memcmp(out, b3, 3) == 0);
    loam__qpack(v, 8, 5, out);
    CHECK(memcmp(out, b5, 5) == 0);
    loam__qpack(v, 4, 6, out);
    CHECK(memcmp(out, b6, 3) == 0);
    loam__qpack(v, 8, 4, out);
    CHECK_EQ_I64(loam__rd_u32le(out), 0x76543210);
    loam__qunpack(b5, 5, 0, 8, back);
    CHECK(memcmp(back, v, 8) == 0);
    loam__qunpack(b3, 3, 2, 5, back); /* element 2 straddles bytes 0 and 1 */
    CHECK(memcmp(back, v + 2, 5) == 0);
}

static void test_pack_roundtrip(void) {
    for (size_t bi = 0; bi < sizeof k_bits / sizeof k_bits[0]; bi++) {
        int bits = k_bits[bi];
        enum { N = 256 };
        uint8_t q[N], back[N], row[N];
        for (int i = 0; i < N; i++) q[i] = (uint8_t)(rnd_u64() & ((1u << bits) - 1u));
        loam__qpack(q, N, bits, row);
        /* the bit stream, read back one bit at a time */
        for (int i = 0; i < N; i++) {
            uint32_t v = 0;
            for (int t = 0; t < bits; t++) {
                int bit = i * bits + t;
                v |= (uint32_t)((row[bit / 8] >> (bit % 8)) & 1) << t;
            }
            CHECK_EQ_I64(v, q[i]);
        }
        for (int j0 = 0; j0 < N; j0 += 37) {
            int len = N - j0 < 50 ? N - j0 : 50;
            loam__qunpack(row, bits, j0, len, back);
            CHECK(memcmp(back, q + j0, (size_t)len) == 0);
        }
    }
}

static void test_special_groups(void) {
    loam_err e = {0};
    float w[64], deq[64];
    uint8_t wq[64];
    float s, b;
    loam_qformat f = {4, 64, LOAM_DTYPE_F32};
    memset(w, 0, sizeof w); /* all zero: scale = -eps, bias 0, q 0, exact zeros back */
    CHECK_OK(loam_quantize(w, 1, 64, f, wq, &s, &b, &e), e);
    CHECK(s == -1e-7f && b == 0.0f);
    for (int i = 0; i < 32; i++) CHECK_EQ_I64(wq[i], 0);
    CHECK_OK(loam_dequantize(wq, &s, &b, 1, 64, f, deq, &e), e);
    for (int i = 0; i < 64; i++) CHECK(deq[i] == 0.0f);
    for (int i = 0; i < 64; i++) w[i] = -2.5f; /* constant: bias = c, q = 0, c back exactly */
    CHECK_OK(loam_quantize(w, 1, 64, f, wq, &s, &b, &e), e);
    CHECK(b == -2.5f && fabsf(s) < 1e-6f);
    CHECK_OK(loam_dequantize(wq, &s, &b, 1, 64, f, deq, &e), e);
    for (int i = 0; i < 64; i++) CHECK(deq[i] == -2.5f);
    for (int i = 0; i < 64; i++) w[i] = 1e-9f * (float)(i % 7 - 3); /* eps-dominated: q0 = 0 */
    CHECK_OK(loam_quantize(w, 1, 64, f, wq, &s, &b, &e), e);
    CHECK(b == 0.0f && s == -1e-7f);
    /* zero is exact whenever it lies in the range */
    for (int i = 0; i < 64; i++) w[i] = (float)i * 0.37f - 5.0f;
    w[10] = 0.0f;
    for (size_t bi = 0; bi < 6; bi++) {
        f.bits = k_bits[bi];
        CHECK_OK(loam_quantize(w, 1, 64, f, wq, &s, &b, &e), e);
        CHECK_OK(loam_dequantize(wq, &s, &b, 1, 64, f, deq, &e), e);
        CHECK_CLOSE(deq[10], 0.0, 1e-6 * fabs(b));
    }
    w[3] = NAN;
    CHECK(loam_quantize(w, 1, 64, f, wq, &s, &b, &e) == LOAM_E_INVAL);
    w[3] = INFINITY;
    CHECK(loam_quantize(w, 1, 64, f, wq, &s, &b, &e) == LOAM_E_INVAL);
}

static void test_formats(void) {
    loam_err e = {0};
    loam_qformat f = {4, 64, LOAM_DTYPE_BF16};
    CHECK_OK(loam_qformat_check(f, 4096, &e), e);
    CHECK(loam_qformat_check((loam_qformat){7, 64, LOAM_DTYPE_BF16}, 64, &e) == LOAM_E_INVAL);
    CHECK(strstr(e.msg, "bits") != NULL);
    CHECK(loam_qformat_check((loam_qformat){4, 16, LOAM_DTYPE_BF16}, 64, &e) == LOAM_E_INVAL);
    CHECK(loam_qformat_check((loam_qformat){4, 64, LOAM_DTYPE_U32}, 64, &e) == LOAM_E_INVAL);
    CHECK(loam_qformat_check(f, 96, &e) == LOAM_E_INVAL);
    CHECK(strstr(e.msg, "96") != NULL);
    CHECK_EQ_I64(loam_qweight_bytes(f, 4096, 4096), 4096 * 4096 / 2);
    CHECK_EQ_I64(loam_qscale_bytes(f, 4096, 4096), 4096 * 64 * 2);
    CHECK_EQ_I64(loam_qweight_bytes((loam_qformat){3, 32, LOAM_DTYPE_F32}, 2, 96), 2 * 96 * 3 / 8);
    CHECK_EQ_I64(loam_qscale_bytes((loam_qformat){3, 32, LOAM_DTYPE_F32}, 2, 96), 2 * 3 * 4);
    CHECK_EQ_I64(loam_qweight_bytes(f, INT64_MAX / 2, 4096), 0); /* overflow */
    CHECK_EQ_I64(loam_qweight_bytes(f, 1, 100), 0);
    loam__qmat W = {LOAM_DTYPE_I8, f, &f, NULL, NULL, 1, 64};
    CHECK(loam__qmat_check(&W, &e) == LOAM_E_INVAL);
    W.dtype = LOAM_DTYPE_U32;
    CHECK(loam__qmat_check(&W, &e) == LOAM_E_INVAL); /* no scales */
    W.scales = W.biases = &f;
    CHECK_OK(loam__qmat_check(&W, &e), e);
    W.n = 0;
    CHECK(loam__qmat_check(&W, &e) == LOAM_E_INVAL);
}

static void test_roundtrip_bound(void) {
    const int64_t rows = 6, cols = 384; /* a multiple of 32, 64 and 128 */
    float *w = rand_matrix(rows, cols), *deq = loam__malloc(sizeof(float) * rows * cols);
    for (int64_t j = 0; j < cols; j++) w[j] = 0.5f; /* a constant row */
    for (int64_t j = 0; j < cols; j++) w[cols + j] = -0.01f - rnd_unif(); /* all negative */
    uint8_t *wq = loam__malloc((size_t)(rows * cols)), *sc = loam__malloc((size_t)(rows * cols)),
            *bi = loam__malloc((size_t)(rows * cols));
    loam_err e = {0};
    for (size_t b = 0; b < 6; b++)
        for (size_t g = 0; g < 3; g++)
            for (size_t d = 0; d < 3; d++) {
                loam_qformat f = {k_bits[b], k_groups[g], k_sdt[d]};
                CHECK_OK(loam_quantize(w, rows, cols, f, wq, sc, bi, &e), e);
                CHECK_OK(loam_dequantize(wq, sc, bi, rows, cols, f, deq, &e), e);
                double u = f.scale_dtype == LOAM_DTYPE_BF16 ? 0x1p-9
                           : f.scale_dtype == LOAM_DTYPE_F16 ? 0x1p-12 : 0.0;
                int bad = 0;
                for (int64_t i = 0; i < rows * cols; i++) {
                    size_t gi = (size_t)(i / f.group_size);
                    double s = fabs(loam__load_float(sc, f.scale_dtype, gi));
                    double bb = fabs(loam__load_float(bi, f.scale_dtype, gi));
                    double nb = (double)((1 << f.bits) - 1);
                    if (fabs((double)w[i] - deq[i]) > s * (1.0 + nb * u) + u * bb + 1e-6) bad++;
                }
                if (bad) fprintf(stderr, "bits %d gs %d %s: %d over the bound\n", f.bits,
                                 f.group_size, loam_dtype_name(f.scale_dtype), bad);
                CHECK_EQ_I64(bad, 0);
            }
    loam__free(w);
    loam__free(deq);
    loam__free(wq);
    loam__free(sc);
    loam__free(bi);
}

// ---- kernels against the reference ------------------------------------------------------------

static const char *const k_isas[] = {"scalar", "avx2", "avx512", "neon"};

/* Largest |y - ref| over bound, > 1 means failure; bound[a*n + r] per output. */
static double worst_ratio(const float *y, const float *ref, const double *bound, int64_t cnt) {
    double worst = 0.0;
    for (int64_t i = 0; i < cnt; i++) {
        double d = fabs((double)y[i] - ref[i]);
        if (!(d <= bound[i])) return INFINITY;
        if (bound[i] > 0 && d / bound[i] > worst) worst = d / bound[i];
    }
    return worst;
}

/* Per-output tolerances for W and x:
 *   bound_f = (k+64)·2^-24·(Σ|w·x| + Σ_g (n_bins·|s_g| + |b_g|)·Σ_{i∈g}|x_i|)
 *     float summation order only (the classic γ_k worst case for both sums); the second term
 *     covers kernels that form s·q and b·x separately (the identity, or w = fma(q, s, b) in the
 *     generic path), whose roundings are relative to those terms rather than to w;
 *   bound_q = Σ_g |s_g|·Σ_i |q_i−8|·d_g/2·(1+1e-6) + 8·bound_f for the 4-bit g64 int8 path
 *     (kernels.h: only the centred part meets the rounded activations). */
static void bounds(const loam__qmat *W, const float *x, int64_t m, double *bf, double *bq) {
    const int64_t n = W->n, k = W->k;
    float *row = loam__malloc(sizeof(float) * (size_t)k);
    uint8_t *q = loam__malloc((size_t)k);
    const int quant = W->dtype == LOAM_DTYPE_U32;
    const int is_q4 = quant && W->fmt.bits == 4 && W->fmt.group_size == 64;
    const int64_t gs = quant ? W->fmt.group_size : 1, ng = k / gs;
    const double n_bins = quant ? (double)((1 << W->fmt.bits) - 1) : 0.0;
    for (int64_t r = 0; r < n; r++) {
        loam__qmat_row(W, r, row);
        if (is_q4) loam__qunpack((const uint8_t *)W->w + r * k / 2, 4, 0, k, q);
        for (int64_t a = 0; a < m; a++) {
            const float *xa = x + a * k;
            double sabs = 0.0, qb = 0.0, extra = 0.0;
            for (int64_t j = 0; j < k; j++) sabs += fabs((double)row[j] * xa[j]);
            for (int64_t g = 0; quant && g < ng; g++) {
                double amax = 0.0, qs = 0.0, xs = 0.0;
                for (int64_t i = g * gs; i < (g + 1) * gs; i++) {
                    amax = fmax(amax, fabs(xa[i]));
                    xs += fabs(xa[i]);
                    if (is_q4) qs += fabs((double)q[i] - 8.0);
                }
                double s = fabs(loam__load_float(W->scales, W->fmt.scale_dtype, (size_t)(r * ng + g)));
                double b = fabs(loam__load_float(W->biases, W->fmt.scale_dtype, (size_t)(r * ng + g)));
                qb += s * qs * (amax / 127.0) * 0.5 * (1.0 + 1e-6);
                extra += (n_bins * s + b) * xs;
            }
            double f = (double)(k + 64) * 0x1p-24 * (sabs + extra);
            bf[a * n + r] = f + 1e-30;
            bq[a * n + r] = qb + 8.0 * f + 1e-30;
        }
    }
    loam__free(row);
    loam__free(q);
}

static int n_isa_runs;

/* Runs every available table with 1..3 threads on W, x and checks it against the reference. */
static void check_kernels(const loam__qmat *W, int64_t m, const char *what) {
    const int64_t n = W->n, k = W->k;
    float *x = rand_x(m, k);
    float *ref = loam__malloc(sizeof(float) * (size_t)(m * n));
    float *y = loam__malloc(sizeof(float) * (size_t)(m * n));
    float *ys = loam__malloc(sizeof(float) * (size_t)(m * n));
    double *bf = loam__malloc(sizeof(double) * (size_t)(m * n));
    double *bq = loam__malloc(sizeof(double) * (size_t)(m * n));
    size_t sb = loam__matmul_scratch_bytes(m, k);
    uint8_t *scratch = loam__malloc(sb + 5);
    int is_q4 = W->dtype == LOAM_DTYPE_U32 && W->fmt.bits == 4 && W->fmt.group_size == 64;
    loam__matmul_ref(W, x, m, ref);
    bounds(W, x, m, bf, bq);
    loam__matmul_with(&loam__kernels_scalar, W, x, m, ys, 1, scratch + 5);
    for (size_t t = 0; t < sizeof k_isas / sizeof k_isas[0]; t++) {
        const loam__kernels *kt = loam__cpu_kernels_named(k_isas[t]);
        if (!kt) continue;
        for (int nt = 1; nt <= 3; nt++) {
            for (int64_t i = 0; i < m * n; i++) y[i] = NAN;
            loam__matmul_with(kt, W, x, m, y, nt, scratch + 5);
            double wr = worst_ratio(y, ref, is_q4 ? bq : bf, m * n);
            /* same int8 activations in every table: only float order differs from scalar */
            double ws = is_q4 ? worst_ratio(y, ys, bf, m * n) : 0.0;
            if (!(wr <= 1.0) || !(ws <= 1.0)) {
                fprintf(stderr, "%s %s n=%lld k=%lld m=%lld threads=%d: error/bound %.3g "
                        "(vs reference), %.3g (vs scalar table)\n", what, kt->name, (long long)n,
                        (long long)k, (long long)m, nt, wr, ws);
                CHECK(wr <= 1.0 && ws <= 1.0);
            }
            if (getenv("LOAM_TEST_VERBOSE"))
                fprintf(stderr, "%-16s %-10s n=%-3lld k=%-5lld m=%lld t=%d ratio %.3g / %.3g\n", what,
                        kt->name, (long long)n, (long long)k, (long long)m, nt, wr, ws);
            n_isa_runs++;
        }
    }
    loam__free(x);
    loam__free(ref);
    loam__free(y);
    loam__free(ys);
    loam__free(bf);
    loam__free(bq);
    loam__free(scratch);
}

static void test_kernels_q4g64(void) {
    static const int64_t shapes[][3] = {
        /* n, k, m: one row, one column of groups, odd group counts, counts past 16, batches */
        {1, 64, 1},   {1, 64, 5},    {3, 128, 1},  {17, 192, 2},  {33, 64 * 17, 3},
        {5, 64 * 33, 4}, {64, 1024, 1}, {69, 640, 9}, {16, 64 * 31, 8}, {2, 4096, 1},
        {37, 256, 13},
    };
    for (size_t d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            tmat t = make_q(shapes[s][0], shapes[s][1], (loam_qformat){4, 64, k_sdt[d]});
            check_kernels(&t.W, shapes[s][2], "q4g64");
            tmat_free(&t);
        }
}

static void test_kernels_generic(void) {
    for (size_t b = 0; b < 6; b++)
        for (size_t g = 0; g < 3; g++)
            for (size_t d = 0; d < 3; d++) {
                loam_qformat f = {k_bits[b], k_groups[g], k_sdt[d]};
                int64_t n = 1 + (int64_t)(rnd_u64() % 19), k = f.group_size * (1 + (int64_t)(rnd_u64() % 9));
                int64_t m = 1 + (int64_t)(rnd_u64() % 5);
                tmat t = make_q(n, k, f);
                char what[64];
                snprintf(what, sizeof what, "b%d g%d %s", f.bits, f.group_size,
                         loam_dtype_name(f.scale_dtype));
                check_kernels(&t.W, m, what);
                tmat_free(&t);
            }
}

static void test_kernels_dense(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},  {1, 7, 3},   {3, 16, 1},  {5, 17, 4},
                                        {19, 100, 2}, {33, 257, 5}, {8, 1024, 9}, {64, 33, 1}};
    static const loam_dtype dts[] = {LOAM_DTYPE_F32, LOAM_DTYPE_F16, LOAM_DTYPE_BF16};
    for (size_t d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            tmat t = make_dense(shapes[s][0], shapes[s][1], dts[d]);
            check_kernels(&t.W, shapes[s][2], loam_dtype_name(dts[d]));
            tmat_free(&t);
        }
}

/* Relative L2 error of the int8 path on Gaussian x and quantized Gaussian weights. The int8
 * step is d = max|x|/127 over 64 values (max ≈ 2.4σ), so each x carries a rounding error of
 * rms d/√12 ≈ 0.0055σ; it only meets the centred weights s·(q−8), whose rms is close to the
 * weights' own, so ‖Δy‖/‖y‖ ≈ 0.55%. The bias term is exact. Checked ≤ 1e-2. */
static void test_l2_error(void) {
    const int64_t n = 256, k = 2048, m = 2;
    tmat t = make_q(n, k, (loam_qformat){4, 64, LOAM_DTYPE_BF16});
    float *x = rand_x(m, k), *ref = loam__malloc(sizeof(float) * (size_t)(m * n)),
          *y = loam__malloc(sizeof(float) * (size_t)(m * n));
    void *scratch = loam__malloc(loam__matmul_scratch_bytes(m, k));
    loam__matmul_ref(&t.W, x, m, ref);
    loam__matmul(&t.W, x, m, y, 0, scratch);
    double num = 0, den = 0;
    for (int64_t i = 0; i < m * n; i++) {
        num += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double rel = sqrt(num / den);
    CHECK(rel <= 1e-2);
    CHECK(rel > 1e-4); /* the int8 path really ran */
    loam__free(x);
    loam__free(ref);
    loam__free(y);
    loam__free(scratch);
    tmat_free(&t);
}

static void test_public_qmatmul(void) {
    const int64_t n = 40, k = 320, m = 3;
    loam_err e = {0};
    tmat t = make_q(n, k, (loam_qformat){3, 32, LOAM_DTYPE_F16});
    float *x = rand_x(m, k), *ref = loam__malloc(sizeof(float) * (size_t)(m * n)),
          *y = loam__malloc(sizeof(float) * (size_t)(m * n));
    loam__matmul_ref(&t.W, x, m, ref);
    CHECK_OK(loam_qmatmul(x, m, t.W.w, t.W.scales, t.W.biases, n, k, t.W.fmt, y, 2, &e), e);
    for (int64_t i = 0; i < m * n; i++) CHECK_CLOSE(y[i], ref[i], 1e-3);
    CHECK(loam_qmatmul(x, m, t.W.w, t.W.scales, t.W.biases, n, 100, t.W.fmt, y, 2, &e) ==
          LOAM_E_INVAL);
    CHECK(loam_qmatmul(x, 0, t.W.w, t.W.scales, t.W.biases, n, k, t.W.fmt, y, 2, &e) ==
          LOAM_E_INVAL);
    loam_debug_fail_alloc_after(1);
    CHECK(loam_qmatmul(x, m, t.W.w, t.W.scales, t.W.biases, n, k, t.W.fmt, y, 2, &e) ==
          LOAM_E_NOMEM);
    loam_debug_fail_alloc_after(0);
    /* the chosen table is one of ours and can run here */
    CHECK(loam__cpu_kernels_named(loam_cpu_kernels_name()) != NULL);
    CHECK(loam__cpu_kernels_named("scalar") == &loam__kernels_scalar);
    CHECK(loam__cpu_kernels_named("nonsense") == NULL);
    loam__free(x);
    loam__free(ref);
    loam__free(y);
    tmat_free(&t);
}

/* LOAM_CPU=scalar selects the scalar table (checked in a child: the choice is made once). */
static void test_env_override(void) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("LOAM_CPU", "scalar", 1);
        _exit(strcmp(loam_cpu_kernels_name(), "scalar") == 0 ? 0 : 1);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_qmat_row(void) {
    tmat t = make_q(3, 256, (loam_qformat){5, 128, LOAM_DTYPE_BF16});
    float row[256], all[3 * 256];
    loam_err e = {0};
    CHECK_OK(loam_dequantize(t.W.w, t.W.scales, t.W.biases, 3, 256, t.W.fmt, all, &e), e);
    loam__qmat_row(&t.W, 2, row);
    CHECK(memcmp(row, all + 512, sizeof row) == 0);
    loam__qmat_row_range(&t.W, 1, 128, 128, row);
    CHECK(memcmp(row, all + 256 + 128, 128 * sizeof(float)) == 0);
    tmat_free(&t);
    tmat d = make_dense(2, 9, LOAM_DTYPE_BF16);
    loam__qmat_row(&d.W, 1, row);
    for (int j = 0; j < 9; j++) CHECK(row[j] == loam__bf16_to_f32(loam__f32_to_bf16(d.wf[9 + j])));
    tmat_free(&d);
}

static void run_tests(void) {
    TEST(test_env_override); /* first: the table is chosen once per process */
    TEST(test_worked_example);
    TEST(test_pack_examples);
    TEST(test_pack_roundtrip);
    TEST(test_special_groups);
    TEST(test_formats);
    TEST(test_roundtrip_bound);
    TEST(test_qmat_row);
    TEST(test_kernels_q4g64);
    TEST(test_kernels_generic);
    TEST(test_kernels_dense);
    TEST(test_l2_error);
    TEST(test_public_qmatmul);
    for (size_t t = 0; t < sizeof k_isas / sizeof k_isas[0]; t++)
        if (!loam__cpu_kernels_named(k_isas[t]))
            fprintf(stderr, "note: kernel table '%s' not run (this CPU lacks it)\n", k_isas[t]);
    CHECK(n_isa_runs > 0);
}
