/* status.c: status strings, error filling, heap accounting with fault injection, dtype table,
 * half-precision conversion, whole-file read and atomic write.
 *
 * Heap accounting: every block carries a 16-byte prefix holding its size, so loam__free can
 * subtract it; loam_debug_bytes_in_use() reports the sum. The counters are atomics so the
 * accounting itself is thread-safe; fault injection is for single-threaded test programs.
 */
#define _POSIX_C_SOURCE 200809L
#include "loam_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *loam_version(void) { return "0.1.0"; }

const char *loam_status_str(loam_status s) {
    switch (s) {
#define LOAM_X_(name, msg)                                                                         \
    case LOAM_##name: return msg;
        LOAM_STATUS_LIST(LOAM_X_)
#undef LOAM_X_
    }
    return "unknown status";
}

loam_status loam__vfail(loam_err *err, loam_status code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

loam_status loam__fail(loam_err *err, loam_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loam__vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void loam__err_clear(loam_err *err) {
    if (err) {
        err->code = LOAM_OK;
        err->msg[0] = '\0';
    }
}

void loam__check_failed(const char *expr, const char *file, int line) {
    fprintf(stderr, "loam: internal check failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

// ---- memory -----------------------------------------------------------------------------------

#define LOAM__PREFIX 16u

static _Atomic uint64_t g_bytes_in_use;
static _Atomic uint64_t g_fail_countdown; /* 0 = off */

void loam_debug_fail_alloc_after(uint64_t n) { atomic_store(&g_fail_countdown, n); }
uint64_t loam_debug_bytes_in_use(void) { return atomic_load(&g_bytes_in_use); }

static int should_fail(void) {
    uint64_t c = atomic_load(&g_fail_countdown);
    if (c == 0) return 0;
    if (c == 1) return 1; /* stays failing until reset */
    atomic_store(&g_fail_countdown, c - 1);
    return 0;
}

void *loam__malloc(size_t n) {
    if (should_fail() || n > SIZE_MAX - LOAM__PREFIX) return NULL;
    uint8_t *p = malloc(n + LOAM__PREFIX);
    if (!p) return NULL;
    uint64_t sz = n;
    memcpy(p, &sz, sizeof sz);
    memset(p + 8, 0, 8);
    atomic_fetch_add(&g_bytes_in_use, sz);
    return p + LOAM__PREFIX;
}

void *loam__calloc(size_t count, size_t size) {
    uint64_t n;
    if (loam__mul_u64(count, size, &n) || n > SIZE_MAX) return NULL;
    void *p = loam__malloc((size_t)n);
    if (p) memset(p, 0, (size_t)n);
    return p;
}

void loam__free(void *p) {
    if (!p) return;
    uint8_t *base = (uint8_t *)p - LOAM__PREFIX;
    uint64_t sz;
    memcpy(&sz, base, sizeof sz);
    uint64_t align_pad;
    memcpy(&align_pad, base + 8, sizeof align_pad);
    atomic_fetch_sub(&g_bytes_in_use, sz);
    free(base - align_pad);
}

void *loam__realloc(void *p, size_t n) {
    if (!p) return loam__malloc(n);
    uint8_t *base = (uint8_t *)p - LOAM__PREFIX;
    uint64_t old, pad;
    memcpy(&old, base, sizeof old);
    memcpy(&pad, base + 8, sizeof pad);
    if (pad != 0) { /* aligned blocks are moved by hand */
        void *q = loam__malloc(n);
        if (!q) return NULL;
        memcpy(q, p, old < n ? (size_t)old : n);
        loam__free(p);
        return q;
    }
    if (should_fail() || n > SIZE_MAX - LOAM__PREFIX) return NULL;
    uint8_t *q = realloc(base, n + LOAM__PREFIX);
    if (!q) return NULL;
    uint64_t sz = n;
    memcpy(q, &sz, sizeof sz);
    atomic_fetch_sub(&g_bytes_in_use, old);
    atomic_fetch_add(&g_bytes_in_use, sz);
    return q + LOAM__PREFIX;
}

void *loam__aligned_alloc(size_t alignment, size_t n) {
    if (alignment < LOAM__PREFIX) alignment = LOAM__PREFIX;
    if (should_fail() || n > SIZE_MAX - alignment - LOAM__PREFIX) return NULL;
    uint8_t *raw = malloc(n + alignment + LOAM__PREFIX);
    if (!raw) return NULL;
    uintptr_t user = ((uintptr_t)raw + LOAM__PREFIX + alignment - 1) & ~(uintptr_t)(alignment - 1);
    uint8_t *base = (uint8_t *)user - LOAM__PREFIX;
    uint64_t sz = n, pad = (uint64_t)(base - raw);
    memcpy(base, &sz, 8);
    memcpy(base + 8, &pad, 8);
    atomic_fetch_add(&g_bytes_in_use, sz);
    return (void *)user;
}

char *loam__strndup(const char *s, size_t n) {
    char *d = loam__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *loam__strdup(const char *s) { return loam__strndup(s, strlen(s)); }

void loam_free(void *p) { loam__free(p); }

// ---- dtypes -----------------------------------------------------------------------------------

static const struct {
    const char *name;
    int bits;
} k_dtypes[LOAM_DTYPE_COUNT] = {
    [LOAM_DTYPE_BOOL] = {"BOOL", 8},
    [LOAM_DTYPE_U8] = {"U8", 8},
    [LOAM_DTYPE_I8] = {"I8", 8},
    [LOAM_DTYPE_I16] = {"I16", 16},
    [LOAM_DTYPE_U16] = {"U16", 16},
    [LOAM_DTYPE_F16] = {"F16", 16},
    [LOAM_DTYPE_BF16] = {"BF16", 16},
    [LOAM_DTYPE_I32] = {"I32", 32},
    [LOAM_DTYPE_U32] = {"U32", 32},
    [LOAM_DTYPE_F32] = {"F32", 32},
    [LOAM_DTYPE_F64] = {"F64", 64},
    [LOAM_DTYPE_I64] = {"I64", 64},
    [LOAM_DTYPE_U64] = {"U64", 64},
    [LOAM_DTYPE_C64] = {"C64", 64},
    [LOAM_DTYPE_F4] = {"F4", 4},
    [LOAM_DTYPE_F6_E2M3] = {"F6_E2M3", 6},
    [LOAM_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
    [LOAM_DTYPE_F8_E5M2] = {"F8_E5M2", 8},
    [LOAM_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [LOAM_DTYPE_F8_E8M0] = {"F8_E8M0", 8},
    [LOAM_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [LOAM_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
};

const char *loam_dtype_name(loam_dtype t) {
    if ((int)t <= 0 || (int)t >= LOAM_DTYPE_COUNT) return NULL;
    return k_dtypes[t].name;
}

int loam_dtype_bits(loam_dtype t) {
    if ((int)t <= 0 || (int)t >= LOAM_DTYPE_COUNT) return 0;
    return k_dtypes[t].bits;
}

loam_dtype loam_dtype_from_name(const char *name, size_t len) {
    for (int t = 1; t < LOAM_DTYPE_COUNT; t++) {
        const char *n = k_dtypes[t].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return (loam_dtype)t;
    }
    return LOAM_DTYPE_INVALID;
}

// ---- half precision ---------------------------------------------------------------------------

float loam__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t loam__f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (a < 0x38800000u) {                                   /* subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;          /* < half the smallest subnormal */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((a >> 13) - (112u << 10));
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

// ---- files ------------------------------------------------------------------------------------

loam_status loam__read_file(const char *path, char **out, size_t *len, loam_err *err) {
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loam__fail(err, LOAM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return loam__fail(err, LOAM_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = loam__malloc(n + 1);
    if (!buf) {
        close(fd);
        return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            loam__free(buf);
            return loam__fail(err, LOAM_E_IO, "%s: read failed", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return LOAM_OK;
}

loam_status loam__write_file_atomic(const char *path, const void *data, size_t len, loam_err *err) {
    char tmp[4096];
    int k = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp) return loam__fail(err, LOAM_E_INVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return loam__fail(err, LOAM_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return loam__fail(err, LOAM_E_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return loam__fail(err, LOAM_E_IO, "%s: fsync/close failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return loam__fail(err, LOAM_E_IO, "%s: rename failed: %s", path, strerror(e));
    }
    return LOAM_OK;
}

double loam__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
