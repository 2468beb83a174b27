/* convert.h: writing mlx-lm model directories (internal; convert.c, synth.c).
 *
 * Both `loam quantize` (convert.c) and `loam synth` (synth.c) describe the tensors of the
 * directory they make as a list of loam__out_tensor, each produced lazily by a fill callback,
 * plus a config.json tree; loam__write_mlx_dir turns that into shards, the index and the config
 * exactly as mlx-lm's save_model / save_config do (FORMATS.md §2.1).
 */
#ifndef LOAM_CONVERT_H
#define LOAM_CONVERT_H

#include "loam_internal.h"

#include <cJSON.h>

typedef struct loam__out_tensor {
    char name[256];
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[LOAM_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t n_params; /* what mlx-lm's get_total_parameters counts for this tensor */
    loam_st_fill_fn fill;
    void *user;
} loam__out_tensor;

/* Python keeps 1 and 1.0 apart where cJSON does not: the number nodes of a parsed tree whose
 * source lexeme had a '.', 'e' or 'E' (floats to Python). Pointers into the tree. */
typedef struct loam__numkinds {
    const cJSON **floats;
    size_t n;
} loam__numkinds;

/* Fills k for root, which was parsed from text[0..len) (cJSON keeps document order, so the
 * i-th number of a pre-order walk is the i-th number token of the text). */
loam_status loam__json_number_kinds(const char *text, size_t len, const cJSON *root,
                                    loam__numkinds *k, loam_err *err);
void loam__numkinds_free(loam__numkinds *k);

/* The bytes Python's json.dump(v, f, indent=4) writes for the tree v (mlx-lm writes config.json
 * and the index that way): 4-space indents, ", "/": " separators, non-ASCII as \uXXXX, no
 * final newline; with sort_top, the top-level object's keys in sorted order (save_config's
 * dict(sorted(config.items()))). A number node listed in kinds (may be NULL) prints as a
 * Python float repr ("1.0", "1e-06"), any other integral number as an integer. Returns a
 * loam__malloc'd string, NULL when out of memory. */
char *loam__json_dump_py(const cJSON *v, int sort_top, const loam__numkinds *kinds);

/* Writes dir (created; an existing dir must be empty): the tensors, in the given order, into
 * shards (a new shard when the next tensor would take the current one past max_shard_bytes),
 * named model.safetensors when one shard else model-0000i-of-0000n.safetensors, each with
 * metadata {"format": format} ("mlx"; "pt" as Hugging Face writes); model.safetensors.index.json
 * with metadata total_size / total_parameters and the weight_map sorted by name; and config.json
 * (loam__json_dump_py of config with sorted keys). progress (may be NULL) is called after every
 * tensor with bytes done / total; returning false cancels (LOAM_E_CANCELLED). */
loam_status loam__write_mlx_dir(const char *dir, const loam__out_tensor *t, size_t n,
                                const cJSON *config, const loam__numkinds *kinds,
                                const char *format, uint64_t max_shard_bytes,
                                loam_progress_fn progress, void *user, loam_err *err);

/* Parameters (as mlx-lm counts them) and bytes of tensor data loam_synth would write for a
 * preset with bits (0: bf16) and group_size, without writing anything. */
loam_status loam__synth_size(const char *preset, int32_t bits, int32_t group_size,
                             uint64_t *n_params, uint64_t *n_bytes, loam_err *err);

/* Copies the regular file src to dst (created or replaced through a temporary). */
loam_status loam__copy_file(const char *src, const char *dst, loam_err *err);

#endif /* LOAM_CONVERT_H */
