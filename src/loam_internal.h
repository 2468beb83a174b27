/* loam_internal.h: helpers shared by every file of the library (never installed).
 *
 * - loam__fail(): fill a caller-owned loam_err and return the status, the one way to fail.
 * - loam__malloc and friends: all heap use goes through them (byte accounting, fault injection).
 * - Checked 64-bit arithmetic for sizes read from files or requests.
 * - Little-endian readers that never cast mapped bytes to typed pointers.
 * - bf16/f16 <-> f32 conversions (round to nearest even, NaN kept NaN).
 * - LOAM_ASSERT (internal invariants, off with NDEBUG) and LOAM_CHECK (always on).
 *   Neither is ever used on file contents, requests or allocations: those are errors.
 */
#ifndef LOAM_INTERNAL_H
#define LOAM_INTERNAL_H

#include "loam.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define LOAM__PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define LOAM__PRINTF(fmt_idx, arg_idx)
#endif

// ---- errors -----------------------------------------------------------------------------------

/* Writes "code + formatted message" into err (if not NULL) and returns code. */
loam_status loam__fail(loam_err *err, loam_status code, const char *fmt, ...) LOAM__PRINTF(3, 4);
loam_status loam__vfail(loam_err *err, loam_status code, const char *fmt, va_list ap);
/* Clears err to LOAM_OK with an empty message (if err != NULL). */
void loam__err_clear(loam_err *err);

void loam__check_failed(const char *expr, const char *file, int line);

#define LOAM_CHECK(x)                                                                              \
    do {                                                                                           \
        if (!(x)) loam__check_failed(#x, __FILE__, __LINE__);                                      \
    } while (0)

#ifdef NDEBUG
#define LOAM_ASSERT(x)                                                                             \
    do {                                                                                           \
        (void)sizeof(x);                                                                           \
    } while (0)
#else
#define LOAM_ASSERT(x) LOAM_CHECK(x)
#endif

// ---- memory -----------------------------------------------------------------------------------

void *loam__malloc(size_t n);
void *loam__calloc(size_t count, size_t size);
void *loam__realloc(void *p, size_t n);
void loam__free(void *p);
char *loam__strdup(const char *s);
char *loam__strndup(const char *s, size_t n);
/* aligned allocation (alignment a power of two >= sizeof(void *)); free with loam__free */
void *loam__aligned_alloc(size_t alignment, size_t n);

// ---- checked arithmetic -----------------------------------------------------------------------

static inline int loam__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
static inline int loam__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int loam__mul_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

// ---- little-endian access (mapped bytes may be unaligned) -------------------------------------

static inline uint16_t loam__rd_u16le(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t loam__rd_u32le(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint64_t loam__rd_u64le(const void *p) {
    return (uint64_t)loam__rd_u32le(p) | ((uint64_t)loam__rd_u32le((const uint8_t *)p + 4) << 32);
}
static inline float loam__rd_f32le(const void *p) {
    uint32_t u = loam__rd_u32le(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline void loam__wr_u32le(void *p, uint32_t v) {
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}
static inline void loam__wr_u64le(void *p, uint64_t v) {
    loam__wr_u32le(p, (uint32_t)v);
    loam__wr_u32le((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

// ---- half precision ---------------------------------------------------------------------------

static inline float loam__bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t loam__f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                           /* nearest even */
    return (uint16_t)(u >> 16);
}
float loam__f16_to_f32(uint16_t h);
uint16_t loam__f32_to_f16(float f);

/* Reads element i of a float-like array of dtype F32, F16 or BF16 (possibly unaligned). */
static inline float loam__load_float(const void *base, loam_dtype t, size_t i) {
    const uint8_t *b = (const uint8_t *)base;
    switch (t) {
    case LOAM_DTYPE_F32: return loam__rd_f32le(b + i * 4);
    case LOAM_DTYPE_BF16: return loam__bf16_to_f32(loam__rd_u16le(b + i * 2));
    case LOAM_DTYPE_F16: return loam__f16_to_f32(loam__rd_u16le(b + i * 2));
    default: return 0.0f;
    }
}
/* Writes element i of a F32/F16/BF16 array. */
static inline void loam__store_float(void *base, loam_dtype t, size_t i, float v) {
    uint8_t *b = (uint8_t *)base;
    switch (t) {
    case LOAM_DTYPE_F32: memcpy(b + i * 4, &v, 4); break;
    case LOAM_DTYPE_BF16: {
        uint16_t h = loam__f32_to_bf16(v);
        memcpy(b + i * 2, &h, 2);
        break;
    }
    case LOAM_DTYPE_F16: {
        uint16_t h = loam__f32_to_f16(v);
        memcpy(b + i * 2, &h, 2);
        break;
    }
    default: break;
    }
}

// ---- files ------------------------------------------------------------------------------------

/* Reads a whole (small) file into a NUL-terminated heap buffer (loam__free). */
loam_status loam__read_file(const char *path, char **out, size_t *len, loam_err *err);
/* Writes bytes to path through "path.tmp.<pid>", fsync and rename: never half-written. */
loam_status loam__write_file_atomic(const char *path, const void *data, size_t len, loam_err *err);
/* Monotonic clock in seconds. */
double loam__now(void);

#endif /* LOAM_INTERNAL_H */
