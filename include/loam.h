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

/* An open, fully validated safetensors file (FORMATS.md §5), mapped read-only. Opening checks
 * every rule of FORMATS.md §5.4 in order, plus: duplicate keys, strict UTF-8 and strict JSON
 * (see src/json.h), at most LOAM_MAX_DIMS dimensions, and integers in shape/data_offsets below
 * 2^53 (larger values are refused, never rounded). "__metadata__": null and leading/trailing
 * JSON whitespace are accepted; data need not be aligned. Tensor data is never read at open.
 * A loam_st is immutable after opening: any number of threads may use it at once. */
typedef struct loam_st loam_st;

#define LOAM_MAX_DIMS 8

/* A view of one tensor. Every pointer is borrowed from its owner (the loam_st or
 * loam_modeldir) and valid until that owner is closed. data may be unaligned (MLX writes
 * unpadded headers): read it with memcpy-style loads. shape[n_dims..] are 0. A 0-dim tensor is
 * a scalar (1 element); a 0 in the shape makes an empty tensor (n_bytes 0). */
typedef struct loam_tensor {
    const char *name;
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[LOAM_MAX_DIMS];
    uint64_t n_elements;
    uint64_t n_bytes;
    const void *data;
} loam_tensor;

/* Maps and validates path. On failure *out is NULL and err names the file and what is wrong
 * (LOAM_E_IO: cannot open/map; LOAM_E_FORMAT: a validation rule, naming the tensor, its
 * offsets, expected vs actual bytes; LOAM_E_NOMEM). */
LOAM_API loam_status loam_st_open(loam_st **out, const char *path, loam_err *err);
/* Validates an in-memory file image (borrowed; must outlive the handle). name is used in
 * messages and returned by loam_st_path(). For fuzzing and for embedded data. */
LOAM_API loam_status loam_st_open_memory(loam_st **out, const void *bytes, size_t n_bytes,
                                         const char *name, loam_err *err);
LOAM_API void loam_st_close(loam_st *st);
LOAM_API const char *loam_st_path(const loam_st *st);
/* Number of tensors; loam_st_tensor() enumerates them in data-offset order, 0 <= i < n
 * (LOAM_E_RANGE otherwise). */
LOAM_API size_t loam_st_n_tensors(const loam_st *st);
LOAM_API loam_status loam_st_tensor(const loam_st *st, size_t i, loam_tensor *out);
/* Lookup by name (binary search); LOAM_E_NOTFOUND (err names the file and tensor) when
 * absent. out may be NULL to test presence. */
LOAM_API loam_status loam_st_find(const loam_st *st, const char *name, loam_tensor *out,
                                  loam_err *err);
/* __metadata__ entries (string -> string) in header order; none when the key is absent or
 * null. loam_st_metadata_at sets both to NULL when i is out of range; loam_st_metadata
 * returns NULL when the key is absent. Strings live as long as st. */
LOAM_API size_t loam_st_n_metadata(const loam_st *st);
LOAM_API void loam_st_metadata_at(const loam_st *st, size_t i, const char **key,
                                  const char **value);
LOAM_API const char *loam_st_metadata(const loam_st *st, const char *key);
/* Byte length N of the JSON header (without the 8-byte length) and of the whole file. */
LOAM_API uint64_t loam_st_header_bytes(const loam_st *st);
LOAM_API uint64_t loam_st_file_bytes(const loam_st *st);

/* Writer: collects tensors, then writes "8-byte length, JSON header padded with spaces to a
 * multiple of 8, data" to path.tmp.<pid>, fsyncs and renames, so a crash never leaves a
 * half-written file; on failure the temporary file is removed and an existing file at path is
 * left as it was. The header lists "__metadata__" first (only when some entry was set), then
 * the tensors; data is laid out in the order added (add the widest dtypes first, or keep byte
 * sizes multiples of 8, for naturally aligned data). A writer is used by one thread. */
typedef struct loam_st_writer loam_st_writer;
/* Produces a lazily added tensor's bytes into dst (exactly n_bytes) during write. Returning an
 * error stops the write; err's message is included in the writer's. */
typedef loam_status (*loam_st_fill_fn)(void *user, void *dst, uint64_t n_bytes, loam_err *err);

LOAM_API loam_status loam_st_writer_new(loam_st_writer **out, loam_err *err);
LOAM_API void loam_st_writer_free(loam_st_writer *w);
/* Sets a __metadata__ entry (both strings copied, must be UTF-8); setting a key again
 * replaces its value. */
LOAM_API loam_status loam_st_writer_set_metadata(loam_st_writer *w, const char *key,
                                                 const char *value, loam_err *err);
/* Adds a tensor whose bytes (n_elements * dtype bits / 8) are borrowed until write returns.
 * LOAM_E_INVAL for a name already added, "__metadata__", a non-UTF-8 name, an invalid dtype,
 * n_dims outside 0..LOAM_MAX_DIMS, a dimension < 0 or >= 2^53, a sub-byte dtype whose bits do
 * not fill whole bytes, or data == NULL for a non-empty tensor. */
LOAM_API loam_status loam_st_writer_add(loam_st_writer *w, const char *name, loam_dtype dtype,
                                        int32_t n_dims, const int64_t *shape, const void *data,
                                        loam_err *err);
/* Adds a tensor produced by fill(user, ...) during write, once per write: peak memory stays
 * one tensor (one buffer the size of the largest lazy tensor). */
LOAM_API loam_status loam_st_writer_add_lazy(loam_st_writer *w, const char *name,
                                             loam_dtype dtype, int32_t n_dims,
                                             const int64_t *shape, loam_st_fill_fn fill,
                                             void *user, loam_err *err);
/* Total bytes the file will have with the tensors added so far (0 when out of memory). */
LOAM_API uint64_t loam_st_writer_file_bytes(const loam_st_writer *w);
/* Writes the file. The writer keeps its tensors and may write again (e.g. to another path). */
LOAM_API loam_status loam_st_writer_write(loam_st_writer *w, const char *path, loam_err *err);

// ---- model directories (issue 2) --------------------------------------------------------------

/* A Hugging Face / mlx-lm model directory (FORMATS.md §2.1): config.json and the shards named
 * by model.safetensors.index.json when present, else every model*.safetensors (sorted); one
 * tensor name space over all shards. LOAM_E_FORMAT, naming the files involved, for: a name in
 * two shards; a shard named by the index but missing; an index entry pointing at a file that
 * lacks the tensor; a tensor of a shard absent from the index (a stale index); a
 * model*.safetensors file the index does not name (mlx-lm would load it). LOAM_E_NOTFOUND when
 * there are no shards. Shards are mapped and validated, not read. config.json, when present,
 * must be a JSON object. Adapter directories are not model directories (open their
 * adapters.safetensors / adapter_model.safetensors with loam_st_open).
 * A loam_modeldir is immutable after opening: any number of threads may use it at once. */
typedef struct loam_modeldir loam_modeldir;

LOAM_API loam_status loam_modeldir_open(loam_modeldir **out, const char *dir, loam_err *err);
LOAM_API void loam_modeldir_close(loam_modeldir *md);
/* dir as given, without trailing slashes. */
LOAM_API const char *loam_modeldir_path(const loam_modeldir *md);
/* config.json text (NUL-terminated), or NULL when the directory has none. */
LOAM_API const char *loam_modeldir_config_text(const loam_modeldir *md);
/* True when the shards came from model.safetensors.index.json. */
LOAM_API bool loam_modeldir_has_index(const loam_modeldir *md);
/* Shards in file-name order; loam_st_path() of a shard is "DIR/FILE". NULL when out of range. */
LOAM_API size_t loam_modeldir_n_shards(const loam_modeldir *md);
LOAM_API const loam_st *loam_modeldir_shard(const loam_modeldir *md, size_t i);
/* Tensors of all shards, sorted by name (strcmp). *shard (may be NULL) gets the shard index.
 * LOAM_E_RANGE when i >= n. */
LOAM_API size_t loam_modeldir_n_tensors(const loam_modeldir *md);
LOAM_API loam_status loam_modeldir_tensor(const loam_modeldir *md, size_t i, loam_tensor *out,
                                          size_t *shard);
/* Lookup by name (binary search); LOAM_E_NOTFOUND naming the directory when absent. out may
 * be NULL to test presence. */
LOAM_API loam_status loam_modeldir_find(const loam_modeldir *md, const char *name,
                                        loam_tensor *out, loam_err *err);

// ---- quantization (issue 3) -------------------------------------------------------------------

/* MLX affine quantization (FORMATS.md §1): w = scale·q + bias per group of group_size
 * consecutive elements of a row; q packed LSB-first into uint32 words (§1.3).
 * bits in {2,3,4,5,6,8}, group_size in {32,64,128}, scale_dtype F32, F16 or BF16. */
typedef struct loam_qformat {
    int32_t bits;
    int32_t group_size;
    loam_dtype scale_dtype;
} loam_qformat;

/* LOAM_OK when fmt is supported and cols is a multiple of group_size; else LOAM_E_INVAL
 * naming the field. */
LOAM_API loam_status loam_qformat_check(loam_qformat fmt, int64_t cols, loam_err *err);
/* Bytes of the packed weight / of the scales (= biases) for a rows x cols matrix. */
LOAM_API uint64_t loam_qweight_bytes(loam_qformat fmt, int64_t rows, int64_t cols);
LOAM_API uint64_t loam_qscale_bytes(loam_qformat fmt, int64_t rows, int64_t cols);

/* Quantizes w [rows, cols] (row-major float32) exactly as MLX's CPU kernel (§1.2).
 * wq: rows x cols*bits/32 uint32 words (written little-endian, may be unaligned);
 * scales, biases: rows x cols/group_size elements of fmt.scale_dtype. */
LOAM_API loam_status loam_quantize(const float *w, int64_t rows, int64_t cols, loam_qformat fmt,
                                   void *wq, void *scales, void *biases, loam_err *err);
/* out [rows, cols] = scale·q + bias computed in float32 (one rounding). */
LOAM_API loam_status loam_dequantize(const void *wq, const void *scales, const void *biases,
                                     int64_t rows, int64_t cols, loam_qformat fmt, float *out,
                                     loam_err *err);
/* y [m, n] = x [m, k] · Wᵀ with W logical [n, k] quantized along k (MLX transpose=True).
 * Uses the fastest kernel for this CPU; n_threads <= 0 means all cores. */
LOAM_API loam_status loam_qmatmul(const float *x, int64_t m, const void *wq, const void *scales,
                                  const void *biases, int64_t n, int64_t k, loam_qformat fmt,
                                  float *y, int n_threads, loam_err *err);
/* Name of the CPU kernel set chosen at run time ("avx512vnni", "avx2", "neon", "scalar"). */
LOAM_API const char *loam_cpu_kernels_name(void);

/* Progress of a long job: done out of total (bytes of tensor data). Return false to cancel the
 * job, which then fails with LOAM_E_CANCELLED. Called on the thread that runs the job. */
typedef bool (*loam_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Parameters of loam_convert_quantize, filled by loam_convert_params_default(). */
typedef struct loam_convert_params {
    int32_t bits;             /* 4 */
    int32_t group_size;       /* 64 */
    loam_dtype dtype;         /* float tensors and scales/biases: F32, F16 or BF16; INVALID (the
                                 default) = config.json torch_dtype, else dtype, else
                                 text_config.dtype, else BF16 */
    uint64_t max_shard_bytes; /* 5 << 30, as mlx-lm */
    int32_t n_threads;        /* quantization threads, <= 0: all cores */
    loam_progress_fn progress; /* may be NULL */
    void *progress_user;
} loam_convert_params;

LOAM_API loam_convert_params loam_convert_params_default(void);

/* Converts the Hugging Face model directory src_dir (F32/F16/BF16 safetensors, sharded or not,
 * see loam_modeldir_open) into an mlx-lm quantized directory dst_dir, as `mlx_lm.convert -q`
 * does (FORMATS.md §2): float tensors are cast to params->dtype; every 2-D floating
 * "*.weight" (the Linear and Embedding weights of every architecture loam loads; norms are
 * 1-D) whose last dimension is a multiple of group_size becomes P.weight (U32), P.scales and
 * P.biases, quantized exactly as MLX's CPU kernel (loam_quantize) after the cast; everything
 * else stays float; lm_head.weight is dropped when config.json ties the embeddings, as are
 * rotary inv_freq buffers. Shards of at most max_shard_bytes ("model.safetensors" or
 * "model-0000i-of-0000n.safetensors", metadata {"format": "mlx"}), an index with total_size
 * and total_parameters, config.json with "quantization" and "quantization_config"
 * {group_size, bits, mode: "affine"} and sorted keys, and the tokenizer, chat template,
 * generation_config.json and *.py files copied. Peak memory is about one output tensor: the
 * source stays mapped and every output tensor is produced while it is written.
 * dst_dir is created; if it exists it must be empty. params may be NULL for the defaults.
 * Errors: LOAM_E_INVAL (bad params, dst not empty), LOAM_E_UNSUPPORTED (source already
 * quantized), LOAM_E_FORMAT / LOAM_E_IO naming the file or tensor, LOAM_E_CANCELLED.
 * Files already written are left in dst_dir on failure (each file itself is whole). */
LOAM_API loam_status loam_convert_quantize(const char *src_dir, const char *dst_dir,
                                           const loam_convert_params *params, loam_err *err);

/* Parameters of loam_synth, filled by loam_synth_params_default(). */
typedef struct loam_synth_params {
    int32_t bits;             /* 4; 0 writes an unquantized bf16 Hugging Face checkpoint */
    int32_t group_size;       /* 64 */
    uint64_t seed;            /* 1; the same seed gives the same bytes */
    uint64_t max_shard_bytes; /* 5 << 30 */
    loam_progress_fn progress; /* may be NULL */
    void *progress_user;
} loam_synth_params;

LOAM_API loam_synth_params loam_synth_params_default(void);

/* Names of the synth presets: "tiny", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b",
 * "qwen3-14b", "llama3-8b" for i = 0, 1, ...; NULL past the end. Static strings. */
LOAM_API const char *loam_synth_preset(size_t i);

/* Writes dst_dir (created; must be empty if it exists): a model directory with the exact
 * config.json, tensor names, shapes and dtypes of the preset's real model, quantized with
 * params->bits / group_size and bf16 scales as mlx-lm would store it, holding random weights:
 * random packed words, scales of a plausible size and either sign with the bias at −s·(7 or 8),
 * so dequantized weights are centred on 0 (never NaN, no all-zero groups), norms near 1.
 * Nothing is quantized from floats, so an 8B preset is written at disk speed. No tokenizer or
 * generation files are written. "tiny" is a 2-layer Qwen3 (hidden 128) for tests. With
 * params->bits == 0 the weights are bf16 floats (N(0, 0.02)-like) in a Hugging Face layout
 * (no quantization keys, shard metadata {"format": "pt"}), the input loam_convert_quantize
 * takes.
 * Errors: LOAM_E_NOTFOUND (unknown preset), LOAM_E_INVAL, LOAM_E_IO, LOAM_E_CANCELLED. */
LOAM_API loam_status loam_synth(const char *preset, const char *dst_dir,
                                const loam_synth_params *params, loam_err *err);

// ---- tokenizer (issue 4) ----------------------------------------------------------------------

/* A Hugging Face tokenizer.json tokenizer: the BPE model (byte-level as in Qwen and Llama 3, or
 * SentencePiece-style with byte fallback) with its added tokens, normalizers, pre-tokenizers,
 * post-processor and decoder, giving the same ids and text as the `tokenizers` library.
 * Components we do not implement make loading fail with LOAM_E_UNSUPPORTED naming the component,
 * e.g. "tokenizer.json: pre_tokenizer type 'UnicodeScripts' is not supported". The file's
 * `truncation` and `padding` are ignored, as transformers does on every call.
 * A loaded tokenizer is immutable (its word cache is internal and locked): every function
 * taking a const loam_tokenizer * may be called from any number of threads at once. */
typedef struct loam_tokenizer loam_tokenizer;

/* Loads a tokenizer.json file. On success *out owns the tokenizer until loam_tokenizer_close.
 * On failure *out is NULL and err names the file and the first problem (LOAM_E_IO,
 * LOAM_E_FORMAT for malformed JSON or an inconsistent model, LOAM_E_UNSUPPORTED). */
LOAM_API loam_status loam_tokenizer_open(loam_tokenizer **out, const char *tokenizer_json_path,
                                         loam_err *err);
/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json: its bos_token,
 * eos_token and pad_token strings (or {"content": ...} objects) are resolved to ids, and its
 * raw text is kept for the chat template. DIR/chat_template.jinja, when present, is kept too
 * and is the chat template in place of tokenizer_config.json's "chat_template" (as transformers
 * >= 4.47 saves it); an empty one is LOAM_E_FORMAT. A missing tokenizer_config.json is not an
 * error. */
LOAM_API loam_status loam_tokenizer_open_dir(loam_tokenizer **out, const char *model_dir,
                                             loam_err *err);
/* Loads tokenizer.json text from memory (json is borrowed for the call; need not be
 * NUL-terminated). */
LOAM_API loam_status loam_tokenizer_open_memory(loam_tokenizer **out, const char *json,
                                                size_t json_len, loam_err *err);
/* NULL is a no-op. No stream of this tokenizer may be used afterwards. */
LOAM_API void loam_tokenizer_close(loam_tokenizer *tok);

/* Encodes text_len bytes of UTF-8 text. add_special applies the post-processor (e.g. a BOS
 * from TemplateProcessing), as `add_special_tokens=True` does. Special added tokens written in
 * the text (e.g. "<|im_start|>") are always recognised. Invalid UTF-8 is not an error: every
 * maximal ill-formed subsequence is read as U+FFFD, as Python's bytes.decode("utf-8",
 * "replace") does, and that text is encoded. NUL bytes are ordinary characters.
 * Writes min(*n, cap) ids to ids and the number of ids in *n: when *n > cap the output is
 * incomplete; call again with cap >= *n (ids may be NULL when cap is 0).
 * Errors: LOAM_E_INVAL (NULL arguments), LOAM_E_NOMEM, LOAM_E_FORMAT (an unk_token missing
 * from the vocab is found only when needed, as in HF). */
LOAM_API loam_status loam_tok_encode(const loam_tokenizer *tok, const char *text, size_t text_len,
                                     bool add_special, int32_t *ids, size_t cap, size_t *n,
                                     loam_err *err);
/* Decodes ids into UTF-8 text, as `tokenizers` decode does: the decoder chain runs over the
 * token strings, incomplete or invalid byte sequences become U+FFFD, ids with no token
 * (negative, >= loam_tok_n_vocab, unused embedding rows) are skipped; with skip_special, tokens
 * of special added tokens (loam_tok_is_special) are left out. *len receives the text length in
 * bytes; the text and a terminating NUL are written only when cap > *len (otherwise call again
 * with cap >= *len + 1; buf may be NULL when cap is 0). The text is always valid UTF-8. */
LOAM_API loam_status loam_tok_decode(const loam_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                     bool skip_special, char *buf, size_t cap, size_t *len,
                                     loam_err *err);
/* One more than the largest id of the vocab and the added tokens (Qwen3: 151669; the model's
 * embedding may have more rows). */
LOAM_API int32_t loam_tok_n_vocab(const loam_tokenizer *tok);
/* The token string of id as stored in tokenizer.json (an added token's content, else the vocab
 * piece, e.g. "Ġthe" in byte-level vocabularies), NUL-terminated; NULL when id has none. Valid
 * until loam_tokenizer_close. */
LOAM_API const char *loam_tok_piece(const loam_tokenizer *tok, int32_t id);
/* Id of a token string (added tokens first, then the vocab), -1 when absent. */
LOAM_API int32_t loam_tok_id(const loam_tokenizer *tok, const char *piece);
/* True when id's token string is the content of a special added token (skipped by
 * skip_special). Qwen3's <think> is an added token but not special. */
LOAM_API bool loam_tok_is_special(const loam_tokenizer *tok, int32_t id);
/* Ids of tokenizer_config.json's bos_token / eos_token / pad_token, -1 when the tokenizer was not
 * opened from a directory, the field is null or absent, or names no token. */
LOAM_API int32_t loam_tok_bos_id(const loam_tokenizer *tok);
LOAM_API int32_t loam_tok_eos_id(const loam_tokenizer *tok);
LOAM_API int32_t loam_tok_pad_id(const loam_tokenizer *tok);

/* Streaming detokenizer: turns ids arriving one at a time into text chunks that never split a
 * UTF-8 character. Text that later tokens may still change (an incomplete UTF-8 sequence, a
 * run of <0xXX> byte-fallback tokens) is held back and released when it is settled; flush
 * releases the rest. The concatenated chunks always equal loam_tok_decode of all ids. Each
 * stream belongs to one thread; streams of one tokenizer are independent. Cost per push: the
 * token's length for ByteLevel decoders, else a decode of the ids since the last release. */
typedef struct loam_tok_stream loam_tok_stream;

/* tok is borrowed and must outlive the stream. */
LOAM_API loam_status loam_tok_stream_new(const loam_tokenizer *tok, bool skip_special,
                                         loam_tok_stream **out, loam_err *err);
/* Adds one id. *text and *len receive the new text (possibly empty, len 0), NUL-terminated, valid
 * until the next call on this stream. */
LOAM_API loam_status loam_tok_stream_push(loam_tok_stream *s, int32_t id, const char **text,
                                          size_t *len, loam_err *err);
/* Releases everything held back (possibly containing U+FFFD for bytes that never formed a
 * character) and resets the stream for a new sequence. Same *text and *len contract as push. */
LOAM_API loam_status loam_tok_stream_flush(loam_tok_stream *s, const char **text, size_t *len,
                                           loam_err *err);
/* NULL is a no-op. */
LOAM_API void loam_tok_stream_free(loam_tok_stream *s);


// ---- chat templates (issue 4) -----------------------------------------------------------------

/* A chat template: the Jinja template of a model's tokenizer_config.json ("chat_template"),
 * rendered exactly as Hugging Face transformers' apply_chat_template does (jinja2 with
 * trim_blocks and lstrip_blocks, its sandbox, default Undefined, tojson as
 * json.dumps(ensure_ascii=False), raise_exception, strftime_now, break/continue). The language
 * subset: if/elif/else, for (loop.*, else, `if` filters, recursive), set (incl. namespace
 * attributes and block set), macro and call blocks, filter blocks, with, raw, the usual filters,
 * tests and str/dict/list methods. Rendering is bounded: output size, memory, loop iterations,
 * work and macro recursion are limited, each a clear LOAM_E_TEMPLATE error. */
typedef struct loam_chat_template loam_chat_template;

/* Parses template source (UTF-8, len bytes, need not be NUL-terminated). On success *out owns
 * the parsed template until loam_chat_template_free(*out). Syntax errors return
 * LOAM_E_TEMPLATE with "template:LINE:COL: message" in err (1-based, columns in code points).
 * Thread-safety: a parsed template is immutable; any number of threads may render it at once. */
LOAM_API loam_status loam_chat_template_new(loam_chat_template **out, const char *source, size_t len,
                                            loam_err *err);
LOAM_API void loam_chat_template_free(loam_chat_template *t); /* NULL is a no-op */

/* Renders the template with the variables of a JSON object, e.g.
 *   {"messages": [...], "tools": [...] or null, "add_generation_prompt": true,
 *    "bos_token": "...", "eos_token": "...", "enable_thinking": false}
 * (any keys; numbers keep Python's int/float distinction). On success *out is the rendered
 * text, NUL-terminated, released with loam_free(); *out_len (if not NULL) its length in bytes
 * (the text may itself hold NUL bytes only if the template or context put them there).
 * Errors: LOAM_E_INVAL for bad JSON or a non-object context; LOAM_E_TEMPLATE for errors while
 * rendering (undefined values used, type errors, raise_exception("msg") whose message is the
 * error text, limits), with "template:LINE:COL: message". LOAM_E_NOMEM when memory runs out.
 * Thread-safe for a const template. */
LOAM_API loam_status loam_chat_template_render(const loam_chat_template *t, const char *context_json,
                                               char **out, size_t *out_len, loam_err *err);

/* transformers' apply_chat_template(messages, tools=tools, add_generation_prompt=...,
 * tokenize=False, **extra) given the text of a tokenizer_config.json:
 * - the template is config["chat_template"] (a string, or a list of {"name", "template"}: the
 *   one named "tool_use" when tools are given and it exists, else "default"), unless
 *   template_override (a template source, NUL-terminated; e.g. a model's chat_template.jinja)
 *   is not NULL;
 * - the variables are the special tokens bos_token, eos_token, unk_token, sep_token,
 *   pad_token, cls_token, mask_token (strings, or AddedToken objects {"content": ...}) and
 *   additional_special_tokens, those that are set; then the keys of extra_json (a JSON object,
 *   or NULL), which may override them; then messages, tools (tools_json: a JSON array, or NULL
 *   for None), documents (None) and add_generation_prompt. messages_json is a JSON array of
 *   messages, or a JSON object holding "messages" and optionally "tools" (used when tools_json
 *   is NULL), as an OpenAI request body does.
 * *out is released with loam_free(); *out_len may be NULL. Errors: LOAM_E_FORMAT for a config
 * without a usable chat_template, LOAM_E_INVAL for bad JSON arguments, LOAM_E_TEMPLATE as for
 * loam_chat_template_render. Parses the template on every call. Thread-safe. */
LOAM_API loam_status loam_chat_apply(const char *config_json, size_t config_len,
                                     const char *template_override, const char *messages_json,
                                     const char *tools_json, const char *extra_json,
                                     bool add_generation_prompt, char **out, size_t *out_len,
                                     loam_err *err);

/* loam_chat_apply() with the tokenizer_config.json text (and chat_template.jinja as the
 * template override) kept by loam_tokenizer_open_dir(): the model's own chat template and
 * special tokens. *out (NUL-terminated) is released with loam_free(). LOAM_E_NOTFOUND when the
 * tokenizer was not opened from a directory with a tokenizer_config.json or a
 * chat_template.jinja; other errors as loam_chat_apply. Thread-safe for a const tokenizer. */
LOAM_API loam_status loam_tok_apply_chat_template(const loam_tokenizer *tok, const char *messages_json,
                                                  const char *tools_json, const char *extra_json,
                                                  bool add_generation_prompt, char **out,
                                                  loam_err *err);

// ---- model, adapters, sessions (issue 5) ------------------------------------------------------

/* A model: config.json parsed, every weight bound by name from the directory's safetensors
 * files (mapped read-only, never copied except norm weights and Linear biases, kept as f32),
 * plus the LoRA adapters loaded into it. Architectures: Qwen3ForCausalLM, Qwen2ForCausalLM,
 * LlamaForCausalLM (FORMATS.md §6), weights MLX affine quantized (any bits / group size of
 * FORMATS.md §1, per-layer overrides of §2.2) or F32/F16/BF16.
 * Thread-safety: once open, a model may be used by any number of sessions on any threads at
 * once; loading and unloading adapters is internally locked and may run while sessions decode.
 * Every session must be freed before loam_model_close(). */
typedef struct loam_model loam_model;

/* Where a model's sessions run. */
typedef enum loam_device {
    LOAM_DEVICE_CPU = 0,  /* the CPU kernels (AVX2 / AVX-512 / NEON / scalar, chosen at run time) */
    LOAM_DEVICE_CUDA = 1, /* an NVIDIA GPU (sm_90), in a libloam built with `make CUDA=1`; MLX
                           * 4-bit group-64 bf16-scale weights only (docs/CUDA.md) */
} loam_device;

typedef struct loam_model_params {
    int32_t n_threads; /* default threads of this model's sessions (see loam_session_params);
                          <= 0: all cores */
    loam_device device; /* where its sessions run; sessions with `reference` set run on the
                           CPU whatever this says */
} loam_model_params;

/* Defaults: n_threads = 0; device LOAM_DEVICE_CPU, or what the environment variable LOAM_DEVICE
 * says when it is set to "cpu" or "cuda" (any other value: LOAM_DEVICE_CPU). */
LOAM_API loam_model_params loam_model_params_default(void);

/* Opens the model directory dir (config.json + model*.safetensors, see loam_modeldir_open).
 * params may be NULL for the defaults. Every tensor the architecture needs is found and its
 * dtype and shape checked; a missing or mis-shaped tensor (LOAM_E_FORMAT), an unknown
 * architecture or an unsupported feature such as a non-affine quantization mode, sliding-window
 * attention or a rope type other than default/linear/llama3/yarn (LOAM_E_UNSUPPORTED) is an
 * error whose message names the tensor, layer or config field. On failure *out is NULL. */
LOAM_API loam_status loam_model_open(loam_model **out, const char *dir,
                                     const loam_model_params *params, loam_err *err);
/* Closes the model, its mappings and every adapter still loaded. NULL is a no-op. */
LOAM_API void loam_model_close(loam_model *m);

/* What a model is. Strings are static or owned by the model (valid until loam_model_close). */
typedef struct loam_model_info {
    const char *arch;        /* "Qwen3ForCausalLM", "Qwen2ForCausalLM" or "LlamaForCausalLM" */
    const char *rope_type;   /* "default", "linear", "llama3" or "yarn" */
    int32_t n_vocab;         /* rows of the embedding and of the logits */
    int32_t n_embd;          /* hidden size */
    int32_t n_ff;            /* MLP intermediate size */
    int32_t n_layer;
    int32_t n_head;          /* query heads */
    int32_t n_head_kv;       /* key/value heads (GQA) */
    int32_t head_dim;
    int32_t n_ctx_train;     /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    int32_t bits;            /* default quantization of the file; 0 when not quantized */
    int32_t group_size;      /* 0 when not quantized */
    bool mixed;              /* some layers use another bit width / group size, or are float */
    bool tied_embeddings;    /* the output head is the embedding */
    uint64_t n_params;       /* logical parameters (a quantized weight counts rows x cols) */
    uint64_t weight_bytes;   /* bytes of every tensor the model binds, as stored */
    uint64_t step_bytes;     /* weight bytes one decode step reads: all layers, norms, head */
    int32_t n_adapters;      /* adapters loaded now */
} loam_model_info;

/* Fills *out. Thread-safe. */
LOAM_API void loam_model_get_info(const loam_model *m, loam_model_info *out);

/* Loads the LoRA/DoRA adapter directory dir (mlx-lm or PEFT, FORMATS.md §3, §4) under name
 * (copied; 1..63 bytes, unique in this model), checking that every tensor fits this model.
 * LOAM_E_INVAL for an empty, too long or duplicate name, LOAM_E_RANGE when 64 adapters are
 * already loaded, the loader's errors otherwise. Thread-safe against sessions decoding. */
LOAM_API loam_status loam_model_load_adapter(loam_model *m, const char *name, const char *dir,
                                             loam_err *err);
/* Unloads the adapter name. LOAM_E_NOTFOUND when no such adapter, LOAM_E_BUSY while a
 * sequence of any session is bound to it (reset those sequences first). Its id may later be
 * reused by another adapter. Thread-safe against sessions decoding. */
LOAM_API loam_status loam_model_unload_adapter(loam_model *m, const char *name, loam_err *err);
/* The id of a loaded adapter (>= 0, for loam_batch_entry.adapter), or -1 when none has that
 * name. Thread-safe. */
LOAM_API int32_t loam_model_adapter_id(const loam_model *m, const char *name);
/* Copies the name of adapter id into buf (cap bytes, NUL-terminated, truncated if needed);
 * false when no adapter has that id (ids run from 0 to 63). Thread-safe. */
LOAM_API bool loam_model_adapter_name(const loam_model *m, int32_t id, char *buf, size_t cap);
/* The tokenizer of the model directory (tokenizer.json, tokenizer_config.json), or NULL when
 * the directory has none. Owned by the model; valid until loam_model_close. Thread-safe. */
LOAM_API const loam_tokenizer *loam_model_tokenizer(const loam_model *m);
/* End-of-sequence ids: generation_config.json's eos_token_id (an id or a list) when present,
 * else config.json's, else the tokenizer's eos_token. Writes min(count, cap) ids and returns
 * the count. Thread-safe. */
LOAM_API int32_t loam_model_eos_ids(const loam_model *m, int32_t *ids, int32_t cap);

/* A session: the KV cache and activations of up to n_seq_max sequences decoded together.
 * The KV cache is one pool of fixed-size blocks (pages) shared by all sequences, allocated at
 * creation with every other buffer: decoding never allocates.
 * Thread-safety: a session is used by one thread at a time; distinct sessions of one model may
 * decode concurrently on different threads. */
typedef struct loam_session loam_session;

typedef struct loam_session_params {
    int32_t n_ctx;     /* KV capacity in tokens, shared by all sequences (one may use it all) */
    int32_t n_seq_max; /* sequence ids 0 .. n_seq_max-1 */
    int32_t n_batch;   /* most rows run through the model at once; longer decodes are split */
    int32_t n_logits;  /* most entries of one decode call that may ask for logits */
    int32_t n_threads; /* threads for matmuls and attention; <= 0: all cores */
    bool reference;    /* scalar float32 reference path (the twin the fast path is checked
                          against); slow, for tests */
} loam_session_params;

/* Defaults: n_ctx 4096, n_seq_max 1, n_batch 512, n_logits 0 (meaning n_seq_max),
 * n_threads 0, reference false. */
LOAM_API loam_session_params loam_session_params_default(void);

/* Creates a session on m (borrowed: m must outlive the session). params may be NULL for the
 * defaults. LOAM_E_INVAL when a size is out of range, LOAM_E_NOMEM when the buffers do not
 * fit. On failure *out is NULL. */
LOAM_API loam_status loam_session_new(loam_session **out, loam_model *m,
                                      const loam_session_params *params, loam_err *err);
/* Frees the session and releases its sequences' adapters. NULL is a no-op. */
LOAM_API void loam_session_free(loam_session *s);

/* One token to run: token `token` at position `pos` of sequence `seq`, with adapter `adapter`
 * (an id from loam_model_adapter_id, or -1 for the base model). */
typedef struct loam_batch_entry {
    int32_t seq;
    int32_t pos;
    int32_t token;
    int32_t adapter;
    bool want_logits; /* keep this entry's logits (see loam_session_logits) */
} loam_batch_entry;

/* Runs entries[0..n) through the model in one call (on a GPU session, LOAM_E_CUDA when the
 * device fails: the sequences of this call then hold positions whose cache is undefined, and
 * should be reset): entries of different sequences may be
 * mixed in any order and each sequence may contribute several consecutive tokens (a prompt);
 * all rows share each weight read, and long calls are split into steps of n_batch rows.
 * Rules, checked before anything changes (a failed call leaves the session as it was):
 * - 0 <= seq < n_seq_max, 0 <= token < n_vocab (LOAM_E_RANGE otherwise);
 * - positions are contiguous per sequence: the entries of sequence s, in array order, have
 *   pos = loam_session_seq_len(s), +1, +2, ... (LOAM_E_INVAL otherwise);
 * - a sequence keeps the adapter of its first token until loam_session_seq_reset; an entry
 *   naming another adapter, or an id not loaded, is LOAM_E_INVAL;
 * - at most n_logits entries want logits (LOAM_E_RANGE);
 * - the session holds at most n_ctx tokens over all sequences: a call that would exceed it is
 *   LOAM_E_RANGE ("context full").
 * n == 0 is a no-op that clears the logits. Logits of the previous call are invalidated. */
LOAM_API loam_status loam_session_decode(loam_session *s, const loam_batch_entry *entries,
                                         size_t n, loam_err *err);
/* Logits (float[n_vocab]) of the i-th entry of the last decode call that asked for them, in
 * array order; NULL when i is out of range. Owned by the session, valid until the next
 * decode call or loam_session_free. */
LOAM_API const float *loam_session_logits(const loam_session *s, size_t i);
/* Number of logits rows the last decode call produced. */
LOAM_API size_t loam_session_n_logits(const loam_session *s);
/* Forgets sequence seq (its KV blocks return to the pool, its adapter is released); its next
 * token has position 0. Out-of-range seq is a no-op. */
LOAM_API void loam_session_seq_reset(loam_session *s, int32_t seq);
/* Keeps the first len tokens of sequence seq and forgets the rest (their KV blocks return to
 * the pool), so decoding continues at position len: to roll back a draft, or to reuse a shared
 * prefix. len == 0 is loam_session_seq_reset. The sequence keeps its adapter while len > 0.
 * LOAM_E_RANGE when seq is out of range or len is negative or above the sequence's length; then
 * nothing changes. */
LOAM_API loam_status loam_session_seq_truncate(loam_session *s, int32_t seq, int32_t len,
                                               loam_err *err);
/* The backend the session runs on: "cpu" or "cuda" (see loam_model_params.device). */
LOAM_API const char *loam_session_backend(const loam_session *s);
/* The CUDA device's name (name of cap bytes) and its memory bandwidth in bytes/s (best of 5
 * device-to-device copies of 1 GiB, read + write; the ceiling `loam bench` reports against).
 * LOAM_E_UNSUPPORTED in a libloam built without CUDA; LOAM_E_CUDA without a usable device. */
LOAM_API loam_status loam_cuda_device_info(char *name, size_t cap, double *copy_bytes_per_s,
                                           loam_err *err);
/* Tokens held for sequence seq (the position its next token must have); -1 if out of range. */
LOAM_API int32_t loam_session_seq_len(const loam_session *s, int32_t seq);
/* Tokens held over all sequences, and the capacity n_ctx. */
LOAM_API int64_t loam_session_n_tokens(const loam_session *s);

// ---- sampling (issue 5) -----------------------------------------------------------------------

/* Token sampling as mlx-lm does it (FORMATS.md §7.1-§7.3), one sampler per sequence.
 *
 * Per step, loam_sampler_sample() applies, in this order:
 *  1. logit processors on the raw logits: logit_bias (additive), repetition penalty (each
 *     distinct token of the last repetition_window accepted tokens once: a positive logit is
 *     divided by the penalty, a negative one multiplied), presence penalty (subtracted once per
 *     distinct token of its window), frequency penalty (subtracted once per occurrence in its
 *     window);
 *  2. log-softmax;
 *  3. temperature == 0: argmax (lowest id on ties), every filter below is ignored;
 *  4. otherwise, on the untempered log-probabilities: top_p (keep the highest-ranked tokens
 *     whose higher-ranked predecessors hold less than top_p of the mass, i.e. the smallest
 *     prefix holding at least top_p), then min_p (drop tokens with p < min_p * p_max, keeping
 *     at least min_tokens_to_keep), then XTC when xtc_probability > 0 (a uniform u is drawn;
 *     when u <= xtc_probability, the survivors' probabilities are renormalized over the
 *     survivors and every survivor more likely than the least likely one above xtc_threshold
 *     is removed, xtc_special_tokens excepted: nothing is removed when fewer than two are
 *     above), then top_k (keep the k highest);
 *  5. draw from softmax(logprob / temperature) over the survivors.
 * "Rank" is a total order: higher log-probability first, lower token id first among exact
 * ties (mlx leaves ties to its sort). Every filter keeps a prefix of that order, so the
 * survivors are found by partial selection, not by sorting the vocabulary.
 * NaN logits count as -inf and +inf as FLT_MAX.
 *
 * Random numbers: xoshiro256** seeded by four splitmix64 outputs of the seed; one uniform
 * double (top 53 bits) per sampled token (two with XTC active: its coin first), none for greedy. The stream depends only on the seed,
 * so a seed gives the same tokens on every machine whose float arithmetic and expf/logf agree
 * (IEEE single precision; libms can differ in the last bit, which can flip a draw that lands
 * exactly on a boundary). Vocabularies of 32k entries and more are processed by OpenMP threads
 * in fixed chunks combined in order, so the tokens do not depend on the number of threads. */
typedef struct loam_sampler loam_sampler;

/* One logit bias entry: logits[token] += bias before anything else (duplicates add up). */
typedef struct loam_logit_bias {
    int32_t token;
    float bias; /* finite, or -INFINITY to ban the token */
} loam_logit_bias;

/* seed value meaning "unset": loam_sampler_new draws a seed from the clock, the process id
 * and the sampler's address (see loam_sampler_seed). */
#define LOAM_SEED_RANDOM UINT64_MAX

typedef struct loam_sampler_params {
    float temperature;          /* >= 0; 0 = greedy. default 0 (mlx-lm's default) */
    float top_p;                /* in [0, 1]; active when 0 < top_p < 1. default 1 */
    float min_p;                /* in [0, 1]; active when > 0. default 0 */
    int32_t min_tokens_to_keep; /* >= 1; min_p never keeps fewer. default 1 */
    int32_t top_k;              /* >= 0; active when > 0 (k >= n_vocab keeps all). default 0 */
    float xtc_probability;      /* in [0, 1]; XTC ("exclude top choices") active when > 0. default 0 */
    float xtc_threshold;        /* in [0, 0.5]. default 0.1 (mlx-lm server's) */
    const int32_t *xtc_special_tokens; /* n_xtc_special_tokens ids XTC never removes, copied by
                                        * loam_sampler_new; the generation engine fills "\n" and
                                        * the EOS ids when XTC is active and none are given */
    size_t n_xtc_special_tokens;
    float repetition_penalty;   /* >= 0; active when != 0 (1 is a no-op). default 0 */
    int32_t repetition_window;  /* >= 1 accepted tokens. default 20 */
    float presence_penalty;     /* finite; active when != 0. default 0 */
    int32_t presence_window;    /* >= 1. default 20 */
    float frequency_penalty;    /* finite; active when != 0. default 0 */
    int32_t frequency_window;   /* >= 1. default 20 */
    const loam_logit_bias *logit_bias; /* n_logit_bias entries, copied by loam_sampler_new */
    size_t n_logit_bias;
    uint64_t seed; /* any value; LOAM_SEED_RANDOM (the default) = draw one */
} loam_sampler_params;

/* The defaults above (greedy, no filters, no penalties, windows 20, random seed). */
LOAM_API loam_sampler_params loam_sampler_params_default(void);

/* Creates a sampler for a vocabulary of n_vocab tokens with all its scratch (about 9 bytes per
 * vocabulary entry plus the history window): loam_sampler_sample never allocates.
 * LOAM_E_INVAL names the offending field (a value outside the ranges above, n_vocab < 1);
 * LOAM_E_RANGE for a logit_bias or xtc_special_tokens token outside [0, n_vocab). */
LOAM_API loam_status loam_sampler_new(loam_sampler **out, const loam_sampler_params *params,
                                      int32_t n_vocab, loam_err *err);
LOAM_API void loam_sampler_free(loam_sampler *s);
/* Forgets the accepted tokens and restarts the random stream from the seed in use. */
LOAM_API void loam_sampler_reset(loam_sampler *s);
/* The seed in use (the drawn one when params.seed was LOAM_SEED_RANDOM). */
LOAM_API uint64_t loam_sampler_seed(const loam_sampler *s);
/* Records a token of the context (prompt tokens the penalties should see, then each sampled
 * token: sampling does not record by itself). Ids outside [0, n_vocab) are ignored. */
LOAM_API void loam_sampler_accept(loam_sampler *s, int32_t token);
/* Chooses the next token from logits [n_vocab], which it overwrites: on return logits holds the
 * log-probabilities of the processed, unfiltered, untempered distribution (what mlx-lm reports
 * as logprobs; feed it to loam_sampler_top_logprobs). If logprob is not NULL it receives the
 * log-probability of the chosen token under the distribution it was drawn from (filtered and
 * tempered; for greedy, the unfiltered one). Returns the token id, or -1 when every logit is
 * -inf or NaN after the processors. No allocation; not thread-safe per sampler. */
LOAM_API int32_t loam_sampler_sample(loam_sampler *s, float *logits, float *logprob);
/* The n highest entries of logprobs [n_vocab] (rank order above: descending, lower id first on
 * ties): writes min(n, n_vocab) ids and values and returns that count (0 if n <= 0). Pure
 * function, thread-safe, O(n_vocab * n) worst case: meant for small n (OpenAI allows <= 20). */
LOAM_API int32_t loam_sampler_top_logprobs(const float *logprobs, int32_t n_vocab, int32_t n,
                                           int32_t *ids, float *values);

/* Stop strings on the decoded text stream. Text is pushed as it is detokenized; the matcher
 * hands back only text that can no longer be part of a stop string: it holds back the longest
 * tail that is a proper prefix of some stop string, and an incomplete UTF-8 sequence at the end.
 * When a stop string completes, the text before it is released, the stop string and everything
 * after are dropped, and the matcher is finished. Among stop strings completing in the same
 * push, the one ending first wins (then the one starting first). */
typedef struct loam_stop_matcher loam_stop_matcher;

/* stops: n_stops NUL-terminated strings (copied); each non-empty (else LOAM_E_INVAL). n_stops
 * may be 0 (the matcher then only holds back incomplete UTF-8). */
LOAM_API loam_status loam_stop_matcher_new(loam_stop_matcher **out, const char *const *stops,
                                           size_t n_stops, loam_err *err);
LOAM_API void loam_stop_matcher_free(loam_stop_matcher *m);
LOAM_API void loam_stop_matcher_reset(loam_stop_matcher *m);
/* Feeds len bytes. *out / *out_len: text to emit now, borrowed until the next call on m.
 * *stopped (may be NULL) becomes true once a stop string has completed; pushes after that emit
 * nothing. LOAM_E_NOMEM if the internal buffer cannot grow (it grows only when a push is longer
 * than any before). */
LOAM_API loam_status loam_stop_matcher_push(loam_stop_matcher *m, const char *text, size_t len,
                                            const char **out, size_t *out_len, bool *stopped,
                                            loam_err *err);
/* End of generation: releases the held-back text (nothing if a stop string matched). */
LOAM_API void loam_stop_matcher_finish(loam_stop_matcher *m, const char **out, size_t *out_len);
/* Index of the stop string that matched, or -1. */
LOAM_API int loam_stop_matcher_which(const loam_stop_matcher *m);

// ---- fuse (issue 5) ---------------------------------------------------------------------------

/* Options of loam_fuse(), filled by loam_fuse_params_default(). */
typedef struct loam_fuse_params {
    bool dequantize; /* write every quantized weight as float (its scale dtype) and drop the
                        quantization keys of config.json. default false */
    /* called after each fused or dequantized tensor (done of total); may be NULL */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *user;
} loam_fuse_params;

LOAM_API loam_fuse_params loam_fuse_params_default(void);

/* Merges the LoRA/DoRA adapter in adapter_dir (mlx-lm or PEFT) into the model in model_dir and
 * writes a complete model directory to out_dir, as mlx_lm.fuse does: each adapted weight is
 * dequantized, W + scale·(A·B)ᵀ is added (DoRA: rows rescaled by m / ||W'||), and the result
 * re-quantized from scratch with that layer's bits and group size, unless params->dequantize.
 * Other tensors are copied unchanged; config.json keeps its quantization dict (both keys removed
 * with dequantize); tokenizer and generation files are copied. out_dir must not exist or be
 * empty; everything is written to "out_dir.tmp.<pid>" and renamed at the end, so out_dir is
 * complete or absent. params may be NULL. Errors: those of loam_modeldir_open and of adapter
 * loading (LOAM_E_FORMAT / LOAM_E_UNSUPPORTED naming the file and tensor), LOAM_E_UNSUPPORTED
 * for a lora_bias adapter or a non-affine quantization, LOAM_E_INVAL when out_dir is not empty,
 * LOAM_E_IO / LOAM_E_NOMEM. Runs on all cores (OpenMP). */
LOAM_API loam_status loam_fuse(const char *model_dir, const char *adapter_dir,
                               const char *out_dir, const loam_fuse_params *params,
                               loam_err *err);

// ---- engine: continuous batching (issues 5, 7, 8) ---------------------------------------------

/* An engine owns one session of a model and a worker thread that advances every active request
 * in the same forward step (continuous batching): requests join between steps, long prompts
 * are prefilled in chunks of n_batch rows beside the decoding streams, and requests wait in a
 * bounded queue while every slot is busy. Each request may name its own adapter.
 * Thread-safety: every engine function may be called from any thread. Callbacks run on the
 * engine's thread; they must be quick and may call only loam_engine_cancel. */
typedef struct loam_engine loam_engine;

typedef struct loam_engine_params {
    int32_t n_parallel; /* requests decoded at once (slots) */
    int32_t n_ctx;      /* tokens per request: prompt + completion */
    int32_t n_batch;    /* most prompt rows per step (chunked prefill) */
    int32_t max_queue;  /* requests that may wait for a slot; more get LOAM_E_BUSY */
    int32_t n_threads;  /* <= 0: all cores */
} loam_engine_params;

/* Defaults: n_parallel 4, n_ctx 4096, n_batch 512, max_queue 64, n_threads 0. */
LOAM_API loam_engine_params loam_engine_params_default(void);

/* Creates the engine and its session (KV pool of n_ctx × n_parallel tokens) and starts its
 * thread. The model must have a tokenizer and must outlive the engine. */
LOAM_API loam_status loam_engine_new(loam_engine **out, loam_model *model,
                                     const loam_engine_params *params, loam_err *err);
/* Cancels every request (each gets on_done with LOAM_FINISH_CANCELLED), stops the thread and
 * frees the engine. NULL is a no-op. */
LOAM_API void loam_engine_free(loam_engine *e);
/* Tokens per request (prompt + completion). */
LOAM_API int32_t loam_engine_n_ctx(const loam_engine *e);

typedef enum loam_finish {
    LOAM_FINISH_STOP = 0,  /* end-of-sequence token or a stop string */
    LOAM_FINISH_LENGTH,    /* max_tokens reached or the context is full */
    LOAM_FINISH_CANCELLED, /* loam_engine_cancel, a callback returned false, or shutdown */
    LOAM_FINISH_ERROR      /* the forward pass failed; see loam_request_result.error */
} loam_finish;

/* One generated token. text holds the newly released text: whole UTF-8 characters, with any
 * tail that could still become a stop string held back (it may be empty). Pointers are valid
 * only during the callback. */
typedef struct loam_token_event {
    int32_t token;
    float logprob; /* log-probability of token under the sampling distribution */
    const char *text;
    size_t text_len;
    int32_t n_top; /* top_logprobs entries (descending), when the request asked for them */
    const int32_t *top_ids;
    const float *top_logprobs;
} loam_token_event;

/* The end of a request. text is the last released text (held-back tail), valid during the
 * callback only. */
typedef struct loam_request_result {
    loam_finish finish;
    const char *text;
    size_t text_len;
    int32_t prompt_tokens;
    int32_t completion_tokens; /* tokens generated (an end-of-sequence token not counted) */
    double queue_seconds;      /* submit to first step */
    double prompt_seconds;     /* first step to first token */
    double gen_seconds;        /* first token to the end */
    loam_status status;
    const char *error; /* "" unless finish is LOAM_FINISH_ERROR */
} loam_request_result;

typedef struct loam_request_params {
    const int32_t *prompt; /* token ids, copied at submit */
    size_t n_prompt;
    int32_t adapter;    /* loam_model_adapter_id(), or -1 for the base model */
    int32_t max_tokens; /* tokens to generate at most */
    loam_sampler_params sampling;
    const char *const *stop; /* stop strings (copied); the text stops before the match */
    size_t n_stop;
    bool want_logprobs;   /* fill loam_token_event.logprob */
    int32_t top_logprobs; /* 0..20 most likely tokens per step into the event */
    bool ignore_eos;      /* keep going past end-of-sequence tokens */
    /* Called for every generated token; return false to stop (LOAM_FINISH_CANCELLED). */
    bool (*on_token)(void *user, const loam_token_event *ev);
    /* Called exactly once per submitted request, whatever happens. */
    void (*on_done)(void *user, const loam_request_result *res);
    void *user;
} loam_request_params;

/* Defaults: adapter -1, max_tokens 256, sampling loam_sampler_params_default(), no stops. */
LOAM_API loam_request_params loam_request_params_default(void);

/* Queues a request; *id (may be NULL) receives its id for loam_engine_cancel. LOAM_E_BUSY when
 * the queue is full, LOAM_E_RANGE when the prompt does not fit n_ctx or holds a bad token id,
 * LOAM_E_INVAL for bad parameters. On success on_done will be called exactly once (possibly
 * before this returns, when max_tokens is 0); on failure it is never called. */
LOAM_API loam_status loam_engine_submit(loam_engine *e, const loam_request_params *p,
                                        uint64_t *id, loam_err *err);
/* Asks request id to stop; it ends with LOAM_FINISH_CANCELLED at the next step (its slot is
 * freed). Unknown or finished ids are ignored. */
LOAM_API void loam_engine_cancel(loam_engine *e, uint64_t id);
/* Cancels every queued and running request. */
LOAM_API void loam_engine_cancel_all(loam_engine *e);

typedef struct loam_engine_stats {
    int32_t queued;          /* waiting for a slot */
    int32_t active;          /* in a slot */
    int32_t last_batch_rows; /* rows of the last forward step */
    uint64_t steps_total;
    uint64_t prompt_tokens_total;
    uint64_t generated_tokens_total;
    double tokens_per_second; /* generated, over the last few seconds */
} loam_engine_stats;

LOAM_API void loam_engine_get_stats(const loam_engine *e, loam_engine_stats *out);

// ---- generation, the one-call API (issues 5, 8) -----------------------------------------------

/* Streams text as it is generated: completion `index` produced `text` (whole UTF-8
 * characters, stop strings already removed). Return false to stop that completion. Called on
 * the engine's thread. */
typedef bool (*loam_text_fn)(void *user, int32_t index, const char *text, size_t len);

typedef struct loam_generate_params {
    int32_t n;                    /* completions of the same prompt, decoded together */
    int32_t max_tokens;           /* per completion */
    loam_sampler_params sampling; /* completion i uses seed sampling.seed + i */
    const char *adapter;          /* name of a loaded adapter, or NULL for the base model */
    const char *const *stop;      /* stop strings (borrowed for the call) */
    size_t n_stop;
    int32_t n_ctx;     /* tokens per completion (prompt + output); default 2048 */
    int32_t n_threads; /* <= 0: all cores */
    loam_text_fn on_text; /* optional streaming callback */
    void *user;
} loam_generate_params;

/* Defaults: n 1, max_tokens 256, sampling loam_sampler_params_default(), n_ctx 2048. */
LOAM_API loam_generate_params loam_generate_params_default(void);

typedef struct loam_completion {
    char *text; /* NUL-terminated UTF-8 */
    size_t text_len;
    loam_finish finish;
    int32_t n_tokens;
} loam_completion;

typedef struct loam_usage {
    int32_t prompt_tokens;
    int32_t completion_tokens; /* over all completions */
    double prompt_seconds;     /* prefill time */
    double gen_seconds;        /* first token to last */
} loam_usage;

/* Generates params->n completions of prompt (tokenized with the tokenizer's special tokens, as
 * Hugging Face does by default). On success *out is an array of n completions: release it with
 * loam_completions_free(*out, n). usage may be NULL. Thread-safe: any number of threads may
 * generate from one model at once (each call has its own session). */
LOAM_API loam_status loam_generate(loam_model *m, const char *prompt,
                                   const loam_generate_params *params, loam_completion **out,
                                   loam_usage *usage, loam_err *err);
/* Like loam_generate for a conversation: messages_json is an OpenAI-style array of
 * {"role", "content"} rendered with the model's chat template (generation prompt added);
 * template_kwargs_json (may be NULL) passes variables such as {"enable_thinking": false}. */
LOAM_API loam_status loam_chat(loam_model *m, const char *messages_json,
                               const char *template_kwargs_json,
                               const loam_generate_params *params, loam_completion **out,
                               loam_usage *usage, loam_err *err);
LOAM_API void loam_completions_free(loam_completion *c, int32_t n);

// ---- server (issue 7) -------------------------------------------------------------------------

/* An OpenAI-compatible HTTP server (libmicrohttpd) over one engine: POST /v1/chat/completions
 * and /v1/completions (streamed as server-sent events or not), GET /v1/models, /health,
 * /metrics. "model" names an adapter loaded into the model (loam_model_load_adapter) or the
 * base (model_name, or omitted). See docs/API.md for the request fields. */
typedef struct loam_server loam_server;

typedef struct loam_server_params {
    const char *host;          /* IPv4 address to bind; default "127.0.0.1" (loopback) */
    int32_t port;              /* default 8080; 0 picks a free port (see loam_server_port) */
    const char *api_key;       /* NULL or "": no auth; else "Authorization: Bearer KEY" */
    const char *model_name;    /* the base model's id in /v1/models; default "loam" */
    int32_t n_parallel;        /* sequences decoded together; default 4 */
    int32_t n_ctx;             /* tokens per request; default 4096 */
    int32_t max_queue;         /* waiting requests beyond the slots; default 64 (then 429) */
    int32_t n_threads;         /* <= 0: all cores */
    int32_t max_tokens_default; /* when a request gives no max_tokens; default 512 */
    size_t max_body_bytes;     /* larger bodies get 413; default 4 MiB */
    int32_t max_connections;   /* default 256 */
} loam_server_params;

LOAM_API loam_server_params loam_server_params_default(void);
/* Starts serving on background threads. The model (with its adapters loaded) is borrowed and
 * must outlive the server. */
LOAM_API loam_status loam_server_start(loam_server **out, loam_model *model,
                                       const loam_server_params *params, loam_err *err);
/* The port actually bound. */
LOAM_API int32_t loam_server_port(const loam_server *srv);
/* Graceful shutdown: stops accepting (new requests get 503), lets in-flight requests finish for
 * grace_seconds, then cancels the rest: each of those gets 503 "shutting_down" (or, streamed,
 * an error event and [DONE]) rather than a cut-short answer; then stops. Call once, from any
 * thread but the server's. */
LOAM_API void loam_server_stop(loam_server *srv, double grace_seconds);
/* Stops (if needed) and frees. NULL is a no-op. */
LOAM_API void loam_server_free(loam_server *srv);

#ifdef __cplusplus
}
#endif
#endif /* LOAM_H */
