/* loam.h: the one public header of libloam.
 *
 * loam runs quantized large language models (MLX affine format) with LoRA adapters applied at
 * run time in full precision. This header is the whole public contract: opaque handles,
 * plain *_params structs filled by *_params_default(), status codes from one table, and a
 * caller-owned error message (loam_err) on every fallible call.
 *
 * Conventions that hold for every function below unless its comment says otherwise:
 * - Fallible functions return loam_status (LOAM_OK == 0). On failure, if err != NULL,
 *   err->code is the same status and err->msg names the file, tensor or field at fault.
 *   No function prints, exits or aborts on bad input.
 * - Whoever creates an object frees it: _open/_close for file-backed objects, _new/_free for
 *   the rest; passing NULL to a _close/_free is a no-op. Heap memory the library hands back
 *   (strings, arrays) is released with loam_free().
 * - Pointers passed in are borrowed for the duration of the call unless stated otherwise.
 * - Thread-safety: functions taking a const handle may be called from any number of threads
 *   at once; anything else needs the caller to serialise access to that handle.
 */
#ifndef LOAM_H
#define LOAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LOAM_BUILD) && defined(__GNUC__)
#define LOAM_API __attribute__((visibility("default")))
#else
#define LOAM_API
#endif

#define LOAM_VERSION_MAJOR 0
#define LOAM_VERSION_MINOR 1
#define LOAM_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH", static string. */
LOAM_API const char *loam_version(void);

// ---- status and errors ------------------------------------------------------------------------

/* One table: the enum and loam_status_str() are generated from it. Append only. */
#define LOAM_STATUS_LIST(X)                                                                        \
    X(OK, "ok")                                                                                    \
    X(E_IO, "I/O error")                                                                           \
    X(E_FORMAT, "malformed model, adapter or tokenizer file")                                     \
    X(E_NOMEM, "out of memory")                                                                    \
    X(E_RANGE, "value out of range (context full, bad token id)")                                 \
    X(E_INVAL, "invalid argument")                                                                 \
    X(E_UNSUPPORTED, "unsupported feature")                                                        \
    X(E_NOTFOUND, "not found")                                                                     \
    X(E_CUDA, "CUDA error")                                                                        \
    X(E_CANCELLED, "cancelled by the caller")                                                      \
    X(E_BUSY, "resource in use")                                                                   \
    X(E_TEMPLATE, "chat template error")

typedef enum loam_status {
#define LOAM_X_(name, msg) LOAM_##name,
    LOAM_STATUS_LIST(LOAM_X_)
#undef LOAM_X_
} loam_status;

/* Caller-owned error detail. msg is always NUL-terminated after a failed call. */
typedef struct loam_err {
    loam_status code;
    char msg[256];
} loam_err;

/* Static description of a status, never NULL (unknown codes give "unknown status"). */
LOAM_API const char *loam_status_str(loam_status s);

/* Release memory returned by the library (strings, arrays). NULL is a no-op. */
LOAM_API void loam_free(void *p);

// ---- dtypes -----------------------------------------------------------------------------------

/* Element types of safetensors files (FORMATS.md §5.3). Append only. */
typedef enum loam_dtype {
    LOAM_DTYPE_INVALID = 0,
    LOAM_DTYPE_BOOL,
    LOAM_DTYPE_U8,
    LOAM_DTYPE_I8,
    LOAM_DTYPE_I16,
    LOAM_DTYPE_U16,
    LOAM_DTYPE_F16,
    LOAM_DTYPE_BF16,
    LOAM_DTYPE_I32,
    LOAM_DTYPE_U32,
    LOAM_DTYPE_F32,
    LOAM_DTYPE_F64,
    LOAM_DTYPE_I64,
    LOAM_DTYPE_U64,
    LOAM_DTYPE_C64,
    LOAM_DTYPE_F4,
    LOAM_DTYPE_F6_E2M3,
    LOAM_DTYPE_F6_E3M2,
    LOAM_DTYPE_F8_E5M2,
    LOAM_DTYPE_F8_E4M3,
    LOAM_DTYPE_F8_E8M0,
    LOAM_DTYPE_F8_E4M3FNUZ,
    LOAM_DTYPE_F8_E5M2FNUZ,
    LOAM_DTYPE_COUNT
} loam_dtype;

/* safetensors name ("BF16"), or NULL for an invalid value. */
LOAM_API const char *loam_dtype_name(loam_dtype t);
/* Bits per element (4 for F4, 6 for F6_*), 0 for an invalid value. */
LOAM_API int loam_dtype_bits(loam_dtype t);
/* Case-sensitive lookup of a safetensors dtype string; LOAM_DTYPE_INVALID if unknown. */
LOAM_API loam_dtype loam_dtype_from_name(const char *name, size_t len);

/* Fault injection for tests: the Nth heap allocation from now on (1 = the next) fails, and
 * every one after it until reset. n = 0 turns it off. Also reports bytes currently held by the
 * library. Not thread-safe; for test programs only. */
LOAM_API void loam_debug_fail_alloc_after(uint64_t n);
LOAM_API uint64_t loam_debug_bytes_in_use(void);

// ---- safetensors (issue 2) --------------------------------------------------------------------

// ---- model directories (issue 2) --------------------------------------------------------------

// ---- quantization (issue 3) -------------------------------------------------------------------

// ---- tokenizer (issue 4) ----------------------------------------------------------------------

// ---- chat templates (issue 4) -----------------------------------------------------------------

// ---- model, adapters, sessions (issue 5) ------------------------------------------------------

// ---- sampling (issue 5) -----------------------------------------------------------------------

// ---- generation, the one-call API (issues 5, 8) -----------------------------------------------

// ---- server engine (issue 7) ------------------------------------------------------------------

#ifdef __cplusplus
}
#endif
#endif /* LOAM_H */
