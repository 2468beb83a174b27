/* fuzz_safetensors.c: libFuzzer target for the safetensors reader (src/safetensors.c,
 * src/json.c). Every input is opened with loam_st_open_memory; when it validates, every tensor
 * is walked: each byte of its data is read (so ASan sees any view outside the input), its name
 * is looked up again and must give the same view, its size must equal elements * bits / 8, and
 * the tensors must tile the data section in order. Any crash, sanitizer report or broken
 * invariant (abort) is a finding. Seeds: fuzz/corpus/safetensors/, tokens: fuzz/safetensors.dict.
 * Build and run: make fuzz && build-fuzz/fuzz/fuzz_safetensors fuzz/corpus/safetensors
 */
#include "loam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_safetensors: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loam_st *st = NULL;
    loam_err err;
    if (loam_st_open_memory(&st, data, size, "fuzz", &err) != LOAM_OK) {
        require(st == NULL && err.code != LOAM_OK && err.msg[0] != '\0', "failure reported");
        return 0;
    }
    const uint8_t *expect = data + 8 + loam_st_header_bytes(st);
    volatile uint8_t sink = 0;
    size_t n = loam_st_n_tensors(st);
    for (size_t i = 0; i < n; i++) {
        loam_tensor t, u;
        require(loam_st_tensor(st, i, &t) == LOAM_OK, "tensor(i)");
        require(t.n_dims >= 0 && t.n_dims <= LOAM_MAX_DIMS, "n_dims");
        uint64_t elems = 1;
        for (int32_t d = 0; d < t.n_dims; d++) elems *= (uint64_t)t.shape[d];
        require(elems == t.n_elements, "n_elements");
        require(t.n_elements * (uint64_t)loam_dtype_bits(t.dtype) / 8 == t.n_bytes, "n_bytes");
        require((const uint8_t *)t.data == expect, "tiling");
        const uint8_t *b = t.data;
        for (uint64_t k = 0; k < t.n_bytes; k++) sink ^= b[k];
        expect += t.n_bytes;
        require(loam_st_find(st, t.name, &u, NULL) == LOAM_OK && u.data == t.data, "find");
    }
    require(expect == data + size, "coverage");
    for (size_t i = 0; i < loam_st_n_metadata(st); i++) {
        const char *k, *v;
        loam_st_metadata_at(st, i, &k, &v);
        require(k && v && loam_st_metadata(st, k) != NULL, "metadata");
    }
    (void)sink;
    loam_st_close(st);
    return 0;
}
