/* kernels.h: the table of CPU kernels behind loam__matmul, one table per instruction set
 * (scalar.c, avx2.c, avx512.c, neon.c), picked once at run time by dispatch.c.
 *
 * The 4-bit, group-64 matmul uses the per-group identity (DESIGN.md decision 3)
 *     Σ_i (s·q_i + b)·x_i = s·Σ_i q_i·x_i + b·Σ_i x_i
 * with the activations quantized once per call, per group of 64, to int8: x_i ≈ d·xq_i,
 * d = max|x|/127. Centring q on 8 halves the error of that approximation, so a kernel computes
 *     y = Σ_g s_g·(d_g·I_g + c_g) + b_g·sum_g
 *     I_g   = Σ_i q_i·xq_i                       (exact integer dot: vpdpbusd / maddubs / sdot)
 *     c_g   = 8·(sum_g − d_g·Σ_i xq_i)            (per activation group, once per call)
 *     sum_g = Σ_i x_i                            (exact float sum)
 * which equals s·Σ(q_i−8)·d·xq_i + (b+8s)·Σx_i: only the centred part sees the int8 rounding,
 * so |y − y_exact| ≤ Σ_g |s_g|·Σ_i |q_i − 8|·d_g/2 (tests/test_quant.c checks exactly this).
 *
 * Quantized activations (loam__actq): for each of the m rows, n_gpad = round_up(n_groups, 16)
 * groups (the padding groups are zero everywhere), 64 int8 per group in the table's `order`,
 * and three float arrays d, c, sum of n_gpad entries. Everything is 64-byte aligned.
 *   LOAM__ACT_EVEN_ODD: per group, the 32 even elements then the 32 odd ones, because byte j of
 *     a packed 4-bit group holds element 2j in its low nibble and 2j+1 in its high nibble.
 *   LOAM__ACT_PAIRS: per pair of groups (2p, 2p+1): even(2p), even(2p+1), odd(2p), odd(2p+1),
 *     32 bytes each, so one 64-byte load of packed weights (two groups) meets one 64-byte load
 *     of activations per nibble.
 *
 * Tiles: a kernel computes y[a][r] for a few weight rows r and activation rows a at a time
 * (the dispatcher walks the tiles); mv = matrix-vector (mv_rows rows × 1 activation row),
 * mm = matrix-matrix (mm_rows × mm_acts), 1x1 for leftovers. y is [m, n] with n = W->n.
 *
 * Adding an ISA: a new file with its table, its entry in dispatch.c, and the ISA to the list
 * tests/test_quant.c forces.
 */
#ifndef LOAM_CPU_KERNELS_H
#define LOAM_CPU_KERNELS_H

#include "quant.h"

enum { LOAM__ACT_EVEN_ODD = 0, LOAM__ACT_PAIRS = 1 };

typedef struct loam__actq {
    const int8_t *q;  /* (m, n_gpad*64) */
    const float *d;   /* (m, n_gpad) int8 step per group */
    const float *c;   /* (m, n_gpad) centring correction per group */
    const float *sum; /* (m, n_gpad) exact Σx per group */
    int64_t n_groups; /* k / 64 */
    int64_t n_gpad;   /* round_up(n_groups, 16) */
} loam__actq;

/* A tile kernel: y[a'*n + r'] for the tile's rows r' = r, r+1, ... and activation rows
 * a' = a, a+1, ... . x is `const loam__actq *` for the 4-bit kernels and the float input
 * x [m, k] for the dense ones. */
typedef void (*loam__tile_fn)(const loam__qmat *W, int64_t r, const void *x, int64_t a, float *y);

typedef struct loam__tiles {
    int mv_rows;               /* rows of the matrix-vector tile (× 1 activation row) */
    int mm_rows, mm_acts;      /* the matrix-matrix tile */
    loam__tile_fn mv, mm, one; /* one: 1 row × 1 activation row, for leftovers */
} loam__tiles;

typedef struct loam__kernels {
    const char *name;  /* "scalar", "avx2", "avx512vnni", "neon" */
    int act_order;     /* LOAM__ACT_EVEN_ODD or LOAM__ACT_PAIRS */
    loam__tiles q4;    /* 4-bit, group 64, scales/biases of any float dtype */
    loam__tiles dense; /* F32 / F16 / BF16 weights */
    /* The generic path (every width and group size but 4-bit/64): Σ_i (s_g·q_i + b_g)·x_i
     * over len elements (a whole number of groups of gs), q one unsigned byte per element
     * (unpacked, or the packed row itself for 8 bits), s and b one float per group. */
    float (*dot_qf)(const uint8_t *q, const float *s, const float *b, int gs, const float *x,
                    int64_t len);
} loam__kernels;

/* Defined only where the ISA exists (avx2/avx512 on x86-64, neon on aarch64). */
extern const loam__kernels loam__kernels_scalar;
extern const loam__kernels loam__kernels_avx2;
extern const loam__kernels loam__kernels_avx512;
extern const loam__kernels loam__kernels_neon;

/* The table chosen at run time (cpuid, or LOAM_CPU=scalar|avx2|avx512|neon when this CPU
 * has it); never NULL. Thread-safe. */
const loam__kernels *loam__cpu_kernels(void);
/* The table with this name ("scalar", "avx2", "avx512" or "avx512vnni", "neon") when this CPU
 * can run it, else NULL. For tests and benchmarks. */
const loam__kernels *loam__cpu_kernels_named(const char *name);
/* loam__matmul with an explicit table. */
void loam__matmul_with(const loam__kernels *kt, const loam__qmat *W, const float *x, int64_t m,
                       float *y, int n_threads, void *scratch);

/* Quantizes activation rows [a0, a1), groups [g0, g1) of x [m, k] into xq (whose buffers the
 * caller laid out as above). Scalar, shared by every table. */
void loam__quantize_act(const float *x, int64_t k, int order, int64_t a0, int64_t a1, int64_t g0,
                        int64_t g1, const loam__actq *xq);

#endif /* LOAM_CPU_KERNELS_H */
