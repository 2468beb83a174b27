/* safetensors.c: read (mmap, validated) and write safetensors files (FORMATS.md §5).
 *
 * Byte layout:
 *
 *   offset 0        8               8+N                                   EOF
 *          +--------+---------------+--------------------------------------+
 *          | N: u64 | header: N     | data: tensors back to back, each     |
 *          | LE     | bytes of JSON | END-BEGIN bytes, little-endian,      |
 *          |        | (UTF-8)       | row-major; offsets relative to 8+N   |
 *          +--------+---------------+--------------------------------------+
 *
 *   header = { "__metadata__": {"format": "pt"} | null,               (optional; str -> str)
 *              "NAME": {"dtype": "BF16", "shape": [d0, d1, ...],
 *                       "data_offsets": [BEGIN, END]}, ... }
 *
 * Reading applies the reference rules of FORMATS.md §5.4 in their order, each with its own
 * message naming the file:
 *   1. fewer than 8 bytes;
 *   2. N > 100,000,000;
 *   3. 8 + N beyond the end of the file;
 *   4. header not UTF-8;
 *   5. header not JSON, or not the schema above: unknown dtype (case-sensitive), shape or
 *      offsets not non-negative integers, offsets not exactly two, metadata value not a string;
 *   6. tensors sorted by (BEGIN, END) must tile the data section from 0 without gaps or
 *      overlaps (BEGIN == previous END, END >= BEGIN); elements * bits may not overflow 64 bits,
 *      must be whole bytes and equal END - BEGIN;
 *   7. the last END must be exactly the end of the file (no trailing bytes, no truncation).
 * Beyond the reference (FORMATS.md §5.6): duplicate keys are rejected at every level (cJSON
 * keeps them), "__metadata__": null is accepted, leading and trailing JSON whitespace is
 * accepted, data need not be aligned (MLX writes unpadded headers; loam_tensor.data may be
 * unaligned). Known differences from the reference, all on the strict side except the last:
 *   - integers in shape and data_offsets must be below 2^53 (cJSON stores numbers as doubles;
 *     larger values would be rounded, so they are refused with a message saying so);
 *   - at most LOAM_MAX_DIMS (8) dimensions;
 *   - "\u0000" inside any string is refused (cJSON would cut the name there);
 *   - a number written as 2.0 or 2e0 in shape or data_offsets reads as the integer 2 (cJSON
 *     keeps no number text; the reference refuses non-integer syntax).
 * All arithmetic on file values is 64-bit and overflow-checked. Opening reads only the header:
 * tensor bytes are never touched, so opening a 5 GB file costs one page fault per header page.
 * If a mapped file is truncated by someone else after opening, reading tensor data faults
 * (SIGBUS), as with any mmap reader.
 *
 * Writing (loam_st_writer_*): the header lists "__metadata__" first (when set) and the tensors
 * in the order added, with contiguous offsets in that order; it is padded with spaces so N is a
 * multiple of 8 (as the Rust writer does), so tensor i is aligned to 8 when every tensor before
 * it has a byte size that is a multiple of 8. The file goes to "PATH.tmp.<pid>", is fsynced and
 * renamed over PATH (then the directory is fsynced); on any failure the temporary file is
 * removed and PATH is untouched. Lazy tensors are produced one at a time into one buffer sized
 * for the largest of them.
 */
#define _POSIX_C_SOURCE 200809L
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER_BYTES 100000000ull

typedef struct st_entry {
    const char *name; /* in blob */
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[LOAM_MAX_DIMS];
    uint64_t begin, end; /* relative to the data section */
    uint64_t n_elements;
} st_entry;

struct loam_st {
    char *path;           /* file path, or the name given to loam_st_open_memory */
    const uint8_t *bytes; /* the whole file image */
    uint64_t file_bytes;
    uint64_t header_bytes; /* N */
    void *map;             /* non-NULL when we own a mapping of map_len bytes */
    size_t map_len;
    size_t n_tensors;
    st_entry *tensors; /* (n_tensors) in data-offset order */
    const st_entry **by_name; /* (n_tensors) the same entries sorted by name */
    size_t n_meta;
    const char **meta; /* (2 * n_meta) key, value pairs in header order, into blob */
    char *blob;        /* every name, key and value, NUL-terminated */
};

// ---- small helpers ----------------------------------------------------------------------------

static void format_shape(char *buf, size_t cap, int32_t n_dims, const int64_t *shape) {
    size_t k = 0;
    int w = snprintf(buf, cap, "[");
    if (w > 0) k = (size_t)w;
    for (int32_t d = 0; d < n_dims && k < cap; d++) {
        w = snprintf(buf + k, cap - k, "%s%" PRId64, d ? ", " : "", shape[d]);
        if (w < 0) return;
        k += (size_t)w;
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* NULL when v is a non-negative integer below 2^53 (stored in *out), else what is wrong. */
static const char *uint_problem(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return "is not a number";
    if (loam__json_uint(v, out) == 0) return NULL;
    double d = v->valuedouble;
    if (d < 0.0 || signbit(d)) return "is negative";
    if (d >= (double)LOAM__JSON_MAX_INT)
        return "is 2^53 or more (loam reads header integers only below 2^53 = "
               "9007199254740992, where they are exact)";
    return "is not an integer";
}

// ---- reading: the schema (rule 5) -------------------------------------------------------------

static loam_status parse_tensor(const loam_st *st, const cJSON *v, st_entry *t, loam_err *err) {
    const char *name = v->string;
    if (!cJSON_IsObject(v))
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': entry is not a JSON object",
                          st->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(v, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(v, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(v, "data_offsets");
    if (!dt || !sh || !of)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': missing \"%s\"", st->path, name,
                          !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt))
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': dtype is not a string",
                          st->path, name);
    t->dtype = loam_dtype_from_name(dt->valuestring, strlen(dt->valuestring));
    if (t->dtype == LOAM_DTYPE_INVALID)
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': unknown dtype \"%.32s\"",
                          st->path, name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': shape is not an array", st->path,
                          name);
    int n_dims = cJSON_GetArraySize(sh);
    if (n_dims > LOAM_MAX_DIMS)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.80s': shape has %d dimensions; loam supports at most %d",
                          st->path, name, n_dims, LOAM_MAX_DIMS);
    t->n_dims = n_dims;
    memset(t->shape, 0, sizeof t->shape);
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        uint64_t u = 0;
        const char *why = uint_problem(x, &u);
        if (why)
            return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': shape[%d] %s", st->path,
                              name, d, why);
        t->shape[d] = (int64_t)u;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: tensor '%.80s': data_offsets is not an array of two integers",
                          st->path, name);
    uint64_t be[2] = {0, 0};
    d = 0;
    for (const cJSON *x = of->child; x; x = x->next, d++) {
        const char *why = uint_problem(x, &be[d]);
        if (why)
            return loam__fail(err, LOAM_E_FORMAT, "%s: tensor '%.80s': data_offsets[%d] %s",
                              st->path, name, d, why);
    }
    t->begin = be[0];
    t->end = be[1];
    return LOAM_OK;
}

static size_t blob_put(char *blob, size_t at, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(blob + at, s, n);
    return at + n;
}

static loam_status parse_header(loam_st *st, const cJSON *root, loam_err *err) {
    if (!cJSON_IsObject(root))
        return loam__fail(err, LOAM_E_FORMAT, "%s: header is not a JSON object", st->path);
    const cJSON *meta = NULL;
    size_t n_tensors = 0, n_meta = 0;
    uint64_t blob_bytes = 0; /* bounded by the header size, so no overflow */
    for (const cJSON *c = root->child; c; c = c->next) {
        blob_bytes += strlen(c->string) + 1;
        if (strcmp(c->string, "__metadata__") == 0) {
            meta = c;
            continue;
        }
        n_tensors++;
    }
    if (meta && !cJSON_IsNull(meta)) {
        if (!cJSON_IsObject(meta))
            return loam__fail(err, LOAM_E_FORMAT, "%s: __metadata__ is not an object or null",
                              st->path);
        for (const cJSON *c = meta->child; c; c = c->next) {
            if (!cJSON_IsString(c))
                return loam__fail(err, LOAM_E_FORMAT,
                                  "%s: __metadata__ value of \"%.80s\" is not a string", st->path,
                                  c->string);
            blob_bytes += strlen(c->string) + strlen(c->valuestring) + 2;
            n_meta++;
        }
    }
    st->blob = loam__malloc((size_t)blob_bytes + 1);
    st->tensors = loam__calloc(n_tensors + 1, sizeof *st->tensors);
    st->by_name = loam__calloc(n_tensors + 1, sizeof *st->by_name);
    st->meta = loam__calloc(2 * n_meta + 1, sizeof *st->meta);
    if (!st->blob || !st->tensors || !st->by_name || !st->meta)
        return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory for %zu tensors", st->path,
                          n_tensors);
    size_t at = 0, i = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        st_entry *t = &st->tensors[i++];
        loam_status s = parse_tensor(st, c, t, err);
        if (s != LOAM_OK) return s;
        t->name = st->blob + at;
        at = blob_put(st->blob, at, c->string);
    }
    st->n_tensors = n_tensors;
    if (n_meta) {
        size_t k = 0;
        for (const cJSON *c = meta->child; c; c = c->next) {
            st->meta[k++] = st->blob + at;
            at = blob_put(st->blob, at, c->string);
            st->meta[k++] = st->blob + at;
            at = blob_put(st->blob, at, c->valuestring);
        }
    }
    st->n_meta = n_meta;
    return LOAM_OK;
}

// ---- reading: offsets and sizes (rules 6 and 7) -----------------------------------------------

static int cmp_offsets(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static loam_status check_layout(loam_st *st, loam_err *err) {
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_offsets);
    uint64_t start = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < st->n_tensors; i++) {
        st_entry *t = &st->tensors[i];
        if (t->begin != start || t->end < t->begin) {
            if (t->end < t->begin)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "%s: tensor '%.80s': data_offsets [%" PRIu64 ", %" PRIu64
                                  "] end before they begin",
                                  st->path, t->name, t->begin, t->end);
            if (t->begin < start)
                return loam__fail(err, LOAM_E_FORMAT,
                                  "%s: tensor '%.80s': data_offsets [%" PRIu64 ", %" PRIu64
                                  ") overlap tensor '%.80s', which ends at %" PRIu64,
                                  st->path, t->name, t->begin, t->end, prev ? prev : "", start);
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: tensor '%.80s': data_offsets [%" PRIu64 ", %" PRIu64
                              ") leave a gap of %" PRIu64 " bytes after %s%.80s%s (offset %" PRIu64
                              ")",
                              st->path, t->name, t->begin, t->end, t->begin - start,
                              prev ? "tensor '" : "the start of the data", prev ? prev : "",
                              prev ? "'" : "", start);
        }
        uint64_t n = 1;
        for (int32_t d = 0; d < t->n_dims; d++) {
            if (loam__mul_u64(n, (uint64_t)t->shape[d], &n)) {
                char shape[160];
                format_shape(shape, sizeof shape, t->n_dims, t->shape);
                return loam__fail(
                    err, LOAM_E_FORMAT,
                    "%s: tensor '%.80s': shape %s has more elements than 64 bits hold", st->path,
                    t->name, shape);
            }
        }
        uint64_t bits;
        if (loam__mul_u64(n, (uint64_t)loam_dtype_bits(t->dtype), &bits)) {
            char shape[160];
            format_shape(shape, sizeof shape, t->n_dims, t->shape);
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: tensor '%.80s': %s %s is more bits than 64 bits hold", st->path,
                              t->name, loam_dtype_name(t->dtype), shape);
        }
        if (bits % 8 != 0)
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: tensor '%.80s': %" PRIu64 " elements of %s are not a whole "
                              "number of bytes",
                              st->path, t->name, n, loam_dtype_name(t->dtype));
        if (t->end - t->begin != bits / 8) {
            char shape[160];
            format_shape(shape, sizeof shape, t->n_dims, t->shape);
            return loam__fail(err, LOAM_E_FORMAT,
                              "%s: tensor '%.80s': %s %s needs %" PRIu64
                              " bytes but data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64,
                              st->path, t->name, loam_dtype_name(t->dtype), shape, bits / 8,
                              t->begin, t->end, t->end - t->begin);
        }
        t->n_elements = n;
        start = t->end;
        prev = t->name;
    }
    uint64_t data_bytes = st->file_bytes - 8 - st->header_bytes; /* rule 3 made this safe */
    if (start < data_bytes)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: %" PRIu64
                          " trailing bytes after the last tensor (data section is %" PRIu64
                          " bytes, tensors cover %" PRIu64 ")",
                          st->path, data_bytes - start, data_bytes, start);
    if (start > data_bytes)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: file is truncated: tensors need %" PRIu64
                          " data bytes, the file holds %" PRIu64 " (%" PRIu64 " missing)",
                          st->path, start, data_bytes, start - data_bytes);
    return LOAM_OK;
}

static int cmp_names(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return strcmp(x->name, y->name);
}

/* The whole of validation, rules 1 to 7 in order. */
static loam_status st_parse(loam_st *st, loam_err *err) {
    if (st->file_bytes < 8)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: file is %" PRIu64 " bytes, too short for the 8-byte header length",
                          st->path, st->file_bytes);
    uint64_t n = loam__rd_u64le(st->bytes);
    if (n > ST_MAX_HEADER_BYTES)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: header length %" PRIu64 " exceeds the limit of %llu bytes", st->path,
                          n, ST_MAX_HEADER_BYTES);
    if (8 + n > st->file_bytes)
        return loam__fail(err, LOAM_E_FORMAT,
                          "%s: header length %" PRIu64 " runs past the end of the %" PRIu64
                          "-byte file",
                          st->path, n, st->file_bytes);
    st->header_bytes = n;
    char what[300];
    snprintf(what, sizeof what, "%s: header", st->path);
    cJSON *root = NULL;
    loam_status s = loam__json_parse((const char *)st->bytes + 8, (size_t)n, what, &root, err);
    if (s != LOAM_OK) return s;
    s = parse_header(st, root, err);
    cJSON_Delete(root);
    if (s != LOAM_OK) return s;
    s = check_layout(st, err);
    if (s != LOAM_OK) return s;
    for (size_t i = 0; i < st->n_tensors; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->n_tensors, sizeof *st->by_name, cmp_names);
    return LOAM_OK;
}

// ---- reading: public API ----------------------------------------------------------------------

void loam_st_close(loam_st *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    loam__free(st->tensors);
    loam__free(st->by_name);
    loam__free(st->meta);
    loam__free(st->blob);
    loam__free(st->path);
    loam__free(st);
}

static loam_st *st_new(const char *path) {
    loam_st *st = loam__calloc(1, sizeof *st);
    if (!st) return NULL;
    st->path = loam__strdup(path);
    if (!st->path) {
        loam__free(st);
        return NULL;
    }
    return st;
}

loam_status loam_st_open_memory(loam_st **out, const void *bytes, size_t n_bytes,
                                const char *name, loam_err *err) {
    if (!out) return loam__fail(err, LOAM_E_INVAL, "loam_st_open_memory: out is NULL");
    *out = NULL;
    if (!name) name = "(memory)";
    if (!bytes && n_bytes)
        return loam__fail(err, LOAM_E_INVAL, "%s: bytes is NULL but n_bytes is %zu", name, n_bytes);
    loam_st *st = st_new(name);
    if (!st) return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", name);
    st->bytes = bytes;
    st->file_bytes = n_bytes;
    loam_status s = st_parse(st, err);
    if (s != LOAM_OK) {
        loam_st_close(st);
        return s;
    }
    *out = st;
    return LOAM_OK;
}

loam_status loam_st_open(loam_st **out, const char *path, loam_err *err) {
    if (!out || !path) return loam__fail(err, LOAM_E_INVAL, "loam_st_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loam__fail(err, LOAM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return loam__fail(err, LOAM_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return loam__fail(err, LOAM_E_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size > SIZE_MAX) {
        close(fd);
        return loam__fail(err, LOAM_E_IO, "%s: %" PRIu64 " bytes do not fit the address space",
                          path, size);
    }
    loam_st *st = st_new(path);
    if (!st) {
        close(fd);
        return loam__fail(err, LOAM_E_NOMEM, "%s: out of memory", path);
    }
    st->file_bytes = size;
    if (size >= 8) { /* shorter files fail rule 1 without a mapping */
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            loam_st_close(st);
            return loam__fail(err, LOAM_E_IO, "%s: cannot map %" PRIu64 " bytes: %s", path, size,
                              strerror(e));
        }
        st->map = map;
        st->map_len = (size_t)size;
        st->bytes = map;
    }
    close(fd);
    loam_status s = st_parse(st, err);
    if (s != LOAM_OK) {
        loam_st_close(st);
        return s;
    }
    *out = st;
    return LOAM_OK;
}

const char *loam_st_path(const loam_st *st) { return st ? st->path : NULL; }
size_t loam_st_n_tensors(const loam_st *st) { return st ? st->n_tensors : 0; }
uint64_t loam_st_header_bytes(const loam_st *st) { return st ? st->header_bytes : 0; }
uint64_t loam_st_file_bytes(const loam_st *st) { return st ? st->file_bytes : 0; }

static void fill_view(const loam_st *st, const st_entry *t, loam_tensor *out) {
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->n_dims = t->n_dims;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->n_elements = t->n_elements;
    out->n_bytes = t->end - t->begin;
    out->data = st->bytes + 8 + st->header_bytes + t->begin;
}

loam_status loam_st_tensor(const loam_st *st, size_t i, loam_tensor *out) {
    if (!st || !out) return LOAM_E_INVAL;
    if (i >= st->n_tensors) return LOAM_E_RANGE;
    fill_view(st, &st->tensors[i], out);
    return LOAM_OK;
}

loam_status loam_st_find(const loam_st *st, const char *name, loam_tensor *out, loam_err *err) {
    if (!st || !name) return loam__fail(err, LOAM_E_INVAL, "loam_st_find: NULL argument");
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) {
            if (out) fill_view(st, st->by_name[mid], out);
            return LOAM_OK;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return loam__fail(err, LOAM_E_NOTFOUND, "%s: no tensor named '%.80s'", st->path, name);
}

size_t loam_st_n_metadata(const loam_st *st) { return st ? st->n_meta : 0; }

void loam_st_metadata_at(const loam_st *st, size_t i, const char **key, const char **value) {
    const char *k = NULL, *v = NULL;
    if (st && i < st->n_meta) {
        k = st->meta[2 * i];
        v = st->meta[2 * i + 1];
    }
    if (key) *key = k;
    if (value) *value = v;
}

const char *loam_st_metadata(const loam_st *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

// ---- writing ----------------------------------------------------------------------------------

typedef struct wt_entry {
    char *name;
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[LOAM_MAX_DIMS];
    uint64_t n_bytes;
    const void *data; /* borrowed, or NULL for a lazy tensor */
    loam_st_fill_fn fill;
    void *user;
} wt_entry;

struct loam_st_writer {
    wt_entry *t; /* (n, capacity cap) in the order added */
    size_t n, cap;
    char **meta; /* (2 * n_meta) key, value pairs, owned */
    size_t n_meta, cap_meta;
};

loam_status loam_st_writer_new(loam_st_writer **out, loam_err *err) {
    if (!out) return loam__fail(err, LOAM_E_INVAL, "loam_st_writer_new: out is NULL");
    *out = loam__calloc(1, sizeof **out);
    if (!*out) return loam__fail(err, LOAM_E_NOMEM, "safetensors writer: out of memory");
    return LOAM_OK;
}

void loam_st_writer_free(loam_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) loam__free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++) loam__free(w->meta[i]);
    loam__free(w->t);
    loam__free(w->meta);
    loam__free(w);
}

static int valid_text(const char *s) {
    return loam__utf8_valid((const uint8_t *)s, strlen(s), NULL);
}

loam_status loam_st_writer_set_metadata(loam_st_writer *w, const char *key, const char *value,
                                        loam_err *err) {
    if (!w || !key || !value)
        return loam__fail(err, LOAM_E_INVAL, "loam_st_writer_set_metadata: NULL argument");
    if (!valid_text(key) || !valid_text(value))
        return loam__fail(err, LOAM_E_INVAL, "safetensors writer: metadata \"%.80s\" is not UTF-8",
                          key);
    char *v = loam__strdup(value);
    if (!v) return loam__fail(err, LOAM_E_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) { /* setting a key again replaces its value */
            loam__free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return LOAM_OK;
        }
    }
    char *k = loam__strdup(key);
    if (!k) {
        loam__free(v);
        return loam__fail(err, LOAM_E_NOMEM, "safetensors writer: out of memory");
    }
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 4;
        char **m = loam__realloc(w->meta, 2 * cap * sizeof *m);
        if (!m) {
            loam__free(k);
            loam__free(v);
            return loam__fail(err, LOAM_E_NOMEM, "safetensors writer: out of memory");
        }
        w->meta = m;
        w->cap_meta = cap;
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return LOAM_OK;
}

static loam_status writer_add(loam_st_writer *w, const char *name, loam_dtype dtype,
                              int32_t n_dims, const int64_t *shape, const void *data,
                              loam_st_fill_fn fill, void *user, loam_err *err) {
    if (!w || !name) return loam__fail(err, LOAM_E_INVAL, "safetensors writer: NULL argument");
    if (strcmp(name, "__metadata__") == 0 || !valid_text(name))
        return loam__fail(err, LOAM_E_INVAL, "safetensors writer: invalid tensor name '%.80s'",
                          name);
    if (loam_dtype_bits(dtype) == 0)
        return loam__fail(err, LOAM_E_INVAL, "safetensors writer: tensor '%.80s': invalid dtype %d",
                          name, (int)dtype);
    if (n_dims < 0 || n_dims > LOAM_MAX_DIMS || (n_dims > 0 && !shape))
        return loam__fail(err, LOAM_E_INVAL,
                          "safetensors writer: tensor '%.80s': %d dimensions (0..%d allowed)", name,
                          (int)n_dims, LOAM_MAX_DIMS);
    uint64_t n = 1;
    for (int32_t d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || (uint64_t)shape[d] >= LOAM__JSON_MAX_INT ||
            loam__mul_u64(n, (uint64_t)shape[d], &n))
            return loam__fail(err, LOAM_E_INVAL,
                              "safetensors writer: tensor '%.80s': shape[%d] = %" PRId64
                              " is negative, too large, or overflows the element count",
                              name, (int)d, shape[d]);
    }
    uint64_t bits;
    if (loam__mul_u64(n, (uint64_t)loam_dtype_bits(dtype), &bits) || bits % 8 != 0)
        return loam__fail(err, LOAM_E_INVAL,
                          "safetensors writer: tensor '%.80s': %" PRIu64
                          " elements of %s are not a whole number of bytes",
                          name, n, loam_dtype_name(dtype));
    if (!data && !fill && bits)
        return loam__fail(err, LOAM_E_INVAL, "safetensors writer: tensor '%.80s': data is NULL",
                          name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return loam__fail(err, LOAM_E_INVAL, "safetensors writer: tensor '%.80s' added twice",
                              name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        wt_entry *t = loam__realloc(w->t, cap * sizeof *t);
        if (!t) return loam__fail(err, LOAM_E_NOMEM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    wt_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    e->name = loam__strdup(name);
    if (!e->name) return loam__fail(err, LOAM_E_NOMEM, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->n_dims = n_dims;
    for (int32_t d = 0; d < n_dims; d++) e->shape[d] = shape[d];
    e->n_bytes = bits / 8;
    e->data = data;
    e->fill = fill;
    e->user = user;
    w->n++;
    return LOAM_OK;
}

loam_status loam_st_writer_add(loam_st_writer *w, const char *name, loam_dtype dtype,
                               int32_t n_dims, const int64_t *shape, const void *data,
                               loam_err *err) {
    return writer_add(w, name, dtype, n_dims, shape, data, NULL, NULL, err);
}

loam_status loam_st_writer_add_lazy(loam_st_writer *w, const char *name, loam_dtype dtype,
                                    int32_t n_dims, const int64_t *shape, loam_st_fill_fn fill,
                                    void *user, loam_err *err) {
    if (!fill) return loam__fail(err, LOAM_E_INVAL, "safetensors writer: fill is NULL");
    return writer_add(w, name, dtype, n_dims, shape, NULL, fill, user, err);
}

static cJSON *json_raw_u64(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf); /* exact digits: cJSON would print 1e+15 for large doubles */
}

/* The header JSON, unpadded, on cJSON's heap (cJSON_free); NULL when out of memory or when the
 * offsets reach 2^53. *data_bytes gets the size of the data section. */
static char *build_header(const loam_st_writer *w, uint64_t *data_bytes) {
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    uint64_t off = 0;
    if (!root) return NULL;
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m) goto done;
        for (size_t i = 0; i < w->n_meta; i++)
            if (!cJSON_AddStringToObject(m, w->meta[2 * i], w->meta[2 * i + 1])) goto done;
    }
    for (size_t i = 0; i < w->n; i++) {
        const wt_entry *e = &w->t[i];
        cJSON *o = cJSON_AddObjectToObject(root, e->name);
        if (!o || !cJSON_AddStringToObject(o, "dtype", loam_dtype_name(e->dtype))) goto done;
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        if (!shape) goto done;
        for (int32_t d = 0; d < e->n_dims; d++) {
            cJSON *x = json_raw_u64((uint64_t)e->shape[d]);
            if (!x || !cJSON_AddItemToArray(shape, x)) {
                cJSON_Delete(x);
                goto done;
            }
        }
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        uint64_t end;
        if (!offs || loam__add_u64(off, e->n_bytes, &end) || end >= LOAM__JSON_MAX_INT) goto done;
        cJSON *b = json_raw_u64(off), *x = json_raw_u64(end);
        if (!b || !x || !cJSON_AddItemToArray(offs, b)) {
            cJSON_Delete(b);
            cJSON_Delete(x);
            goto done;
        }
        if (!cJSON_AddItemToArray(offs, x)) {
            cJSON_Delete(x);
            goto done;
        }
        off = end;
    }
    text = cJSON_PrintUnformatted(root);
    *data_bytes = off;
done:
    cJSON_Delete(root);
    return text;
}

uint64_t loam_st_writer_file_bytes(const loam_st_writer *w) {
    if (!w) return 0;
    uint64_t data = 0;
    char *h = build_header(w, &data);
    if (!h) return 0;
    uint64_t n = strlen(h);
    cJSON_free(h);
    return 8 + (n + 7) / 8 * 8 + data;
}

static int write_all(int fd, const void *p, uint64_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t k = write(fd, b, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        b += k;
        n -= (uint64_t)k;
    }
    return 0;
}

static void fsync_parent_dir(const char *path) {
    char *copy = loam__strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: the rename is already done */
        close(fd);
    }
    loam__free(copy);
}

loam_status loam_st_writer_write(loam_st_writer *w, const char *path, loam_err *err) {
    if (!w || !path) return loam__fail(err, LOAM_E_INVAL, "loam_st_writer_write: NULL argument");
    uint64_t data_bytes = 0;
    char *header = build_header(w, &data_bytes);
    if (!header)
        return loam__fail(err, LOAM_E_NOMEM,
                          "%s: cannot build the header (out of memory, or data beyond 2^53 bytes)",
                          path);
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    uint64_t lazy_max = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->t[i].fill && w->t[i].n_bytes > lazy_max) lazy_max = w->t[i].n_bytes;
    loam_status s = LOAM_OK;
    uint8_t *head = NULL, *buf = NULL;
    int fd = -1, created = 0;
    char tmp[4096];
    int k = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp) {
        s = loam__fail(err, LOAM_E_INVAL, "%s: path too long", path);
        goto fail;
    }
    head = loam__malloc(8 + padded);
    if (lazy_max > SIZE_MAX) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: a lazy tensor of %" PRIu64 " bytes does not fit",
                       path, lazy_max);
        goto fail;
    }
    if (lazy_max) buf = loam__malloc((size_t)lazy_max);
    if (!head || (lazy_max && !buf)) {
        s = loam__fail(err, LOAM_E_NOMEM, "%s: out of memory (%" PRIu64 " bytes)", path,
                       lazy_max + 8 + padded);
        goto fail;
    }
    loam__wr_u64le(head, padded);
    memcpy(head + 8, header, hlen);
    memset(head + 8 + hlen, ' ', padded - hlen);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = loam__fail(err, LOAM_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto fail;
    }
    created = 1;
    if (write_all(fd, head, 8 + padded) != 0) {
        s = loam__fail(err, LOAM_E_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < w->n; i++) {
        const wt_entry *e = &w->t[i];
        const void *src = e->data;
        if (e->fill) {
            loam_err fe = {LOAM_OK, ""};
            loam_status fs = e->fill(e->user, buf, e->n_bytes, &fe);
            if (fs != LOAM_OK) {
                s = loam__fail(err, fs, "%s: tensor '%.80s': %s", path, e->name,
                               fe.msg[0] ? fe.msg : loam_status_str(fs));
                goto fail;
            }
            src = buf;
        }
        if (e->n_bytes && write_all(fd, src, e->n_bytes) != 0) {
            s = loam__fail(err, LOAM_E_IO, "%s: tensor '%.80s': write failed: %s", tmp, e->name,
                           strerror(errno));
            goto fail;
        }
    }
    if (fsync(fd) != 0) {
        s = loam__fail(err, LOAM_E_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        s = loam__fail(err, LOAM_E_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        s = loam__fail(err, LOAM_E_IO, "%s: rename failed: %s", path, strerror(errno));
        goto fail;
    }
    fsync_parent_dir(path);
    loam__free(buf);
    loam__free(head);
    cJSON_free(header);
    return LOAM_OK;
fail:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    loam__free(buf);
    loam__free(head);
    cJSON_free(header);
    return s;
}
