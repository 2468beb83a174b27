/* test_quant_fixtures.c: loam_quantize and loam_dequantize against the MLX fixtures of
 * tests/data/quant, made by tools/reference/quant_fixtures.py (a numpy port of MLX's CPU
 * quantizer, FORMATS.md §1.2/§1.3): 54 cases, every bits {2,3,4,5,6,8} × group size
 * {32,64,128} × scale dtype {bf16,f16,f32}, over 4×256 inputs whose first groups are the special
 * cases (constant, all zero, all negative, ±100 outliers, the §1.2 worked example, eps-dominated,
 * dyadic ties). Every packed word, scale and bias must be identical, and dequantizing the
 * fixture's own words must give `dequant` (float32 s·q then + b) bit for bit.
 */
#include "quant.h"
#include "test.h"

static const int k_bits[] = {2, 3, 4, 5, 6, 8};
static const int k_groups[] = {32, 64, 128};
static const loam_dtype k_sdt[] = {LOAM_DTYPE_BF16, LOAM_DTYPE_F16, LOAM_DTYPE_F32};

/* 0 when tensor b{bits}.g{gs}.{dt}.{part} was found. */
static int find_case(const loam_st *st, loam_qformat f, const char *dt, const char *part,
                     loam_tensor *t) {
    char name[64];
    loam_err e = {0};
    snprintf(name, sizeof name, "b%d.g%d.%s.%s", f.bits, f.group_size, dt, part);
    CHECK_OK(loam_st_find(st, name, t, &e), e);
    return e.code != LOAM_OK;
}

static void test_mlx_fixtures(void) {
    loam_st *st = NULL;
    loam_err e = {0};
    CHECK_OK(loam_st_open(&st, LOAM_TEST_DIR "/data/quant/cases.safetensors", &e), e);
    if (!st) return;
    static const char *const dts[] = {"bf16", "f16", "f32"};
    int n_cases = 0;
    for (size_t b = 0; b < 6; b++)
        for (size_t g = 0; g < 3; g++)
            for (size_t d = 0; d < 3; d++) {
                loam_qformat f = {k_bits[b], k_groups[g], k_sdt[d]};
                char name[64];
                loam_tensor in, w, sc, bi, dq;
                snprintf(name, sizeof name, "input.g%d", f.group_size);
                CHECK_OK(loam_st_find(st, name, &in, &e), e);
                if (e.code != LOAM_OK) continue;
                if (find_case(st, f, dts[d], "weight", &w) || find_case(st, f, dts[d], "scales", &sc) ||
                    find_case(st, f, dts[d], "biases", &bi) || find_case(st, f, dts[d], "dequant", &dq))
                    continue;
                int64_t rows = in.shape[0], cols = in.shape[1];
                float *x = loam__malloc((size_t)in.n_bytes), *deq = loam__malloc((size_t)in.n_bytes);
                memcpy(x, in.data, (size_t)in.n_bytes);
                uint8_t *wq = loam__malloc((size_t)w.n_bytes), *s = loam__malloc((size_t)sc.n_bytes),
                        *bb = loam__malloc((size_t)bi.n_bytes);
                CHECK(w.n_bytes == loam_qweight_bytes(f, rows, cols));
                CHECK(sc.n_bytes == loam_qscale_bytes(f, rows, cols) && sc.dtype == f.scale_dtype);
                CHECK_OK(loam_quantize(x, rows, cols, f, wq, s, bb, &e), e);
                int same = memcmp(wq, w.data, (size_t)w.n_bytes) == 0 &&
                           memcmp(s, sc.data, (size_t)sc.n_bytes) == 0 &&
                           memcmp(bb, bi.data, (size_t)bi.n_bytes) == 0;
                /* dequantize the fixture's own words (so a quantizer bug cannot hide here) */
                CHECK_OK(loam_dequantize(w.data, sc.data, bi.data, rows, cols, f, deq, &e), e);
                same = same && memcmp(deq, dq.data, (size_t)dq.n_bytes) == 0;
                if (!same)
                    fprintf(stderr, "fixture b%d g%d %s differs\n", f.bits, f.group_size, dts[d]);
                CHECK(same);
                n_cases++;
                loam__free(x);
                loam__free(deq);
                loam__free(wq);
                loam__free(s);
                loam__free(bb);
            }
    CHECK_EQ_I64(n_cases, 54);
    loam_st_close(st);
}

static void run_tests(void) { TEST(test_mlx_fixtures); }
