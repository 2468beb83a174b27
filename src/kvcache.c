/* kvcache.c: block allocator and per-sequence block tables of the paged KV cache.
 * See kvcache.h for the layout and the capacity argument. */
#include "kvcache.h"

static int32_t blocks_for(int64_t tokens) {
    return (int32_t)((tokens + LOAM__KV_BLOCK - 1) / LOAM__KV_BLOCK);
}

loam_status loam__kv_init(loam__kv *kv, int32_t n_ctx, int32_t n_seq, loam_err *err) {
    memset(kv, 0, sizeof *kv);
    if (n_ctx < 1 || n_seq < 1)
        return loam__fail(err, LOAM_E_INVAL, "kv cache: n_ctx %d and n_seq %d must be >= 1",
                          n_ctx, n_seq);
    int64_t stride = blocks_for(n_ctx);
    int64_t n_blocks = stride + n_seq - 1;
    if (n_blocks > INT32_MAX)
        return loam__fail(err, LOAM_E_INVAL, "kv cache: %lld blocks is too many",
                          (long long)n_blocks);
    kv->n_ctx = n_ctx;
    kv->n_seq = n_seq;
    kv->n_blocks = (int32_t)n_blocks;
    kv->table_stride = (int32_t)stride;
    kv->free_stack = loam__malloc((size_t)n_blocks * sizeof(int32_t));
    kv->len = loam__calloc((size_t)n_seq, sizeof(int32_t));
    kv->tables = loam__malloc((size_t)n_seq * (size_t)stride * sizeof(int32_t));
    if (!kv->free_stack || !kv->len || !kv->tables) {
        loam__kv_free(kv);
        return loam__fail(err, LOAM_E_NOMEM, "kv cache: out of memory for %d sequences", n_seq);
    }
    /* lowest block ids on top, so a fresh session fills the pool from its start */
    for (int32_t i = 0; i < kv->n_blocks; i++) kv->free_stack[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    return LOAM_OK;
}

void loam__kv_free(loam__kv *kv) {
    if (!kv) return;
    loam__free(kv->free_stack);
    loam__free(kv->len);
    loam__free(kv->tables);
    memset(kv, 0, sizeof *kv);
}

int32_t loam__kv_blocks_needed(const loam__kv *kv, int32_t seq, int64_t new_len) {
    int32_t have = blocks_for(kv->len[seq]);
    int32_t want = blocks_for(new_len);
    return want > have ? want - have : 0;
}

bool loam__kv_grow(loam__kv *kv, int32_t seq, int32_t new_len) {
    int32_t old_len = kv->len[seq];
    if (new_len <= old_len) return true;
    if (new_len > kv->n_ctx) return false;
    int32_t need = loam__kv_blocks_needed(kv, seq, new_len);
    if (need > kv->n_free) return false;
    int32_t *table = kv->tables + (size_t)seq * (size_t)kv->table_stride;
    for (int32_t b = blocks_for(old_len), end = blocks_for(new_len); b < end; b++)
        table[b] = kv->free_stack[--kv->n_free];
    kv->len[seq] = new_len;
    kv->n_tokens += new_len - old_len;
    return true;
}

void loam__kv_truncate(loam__kv *kv, int32_t seq, int32_t len) {
    int32_t *table = kv->tables + (size_t)seq * (size_t)kv->table_stride;
    LOAM_ASSERT(len >= 0 && len <= kv->len[seq]);
    for (int32_t b = blocks_for(kv->len[seq]) - 1; b >= blocks_for(len); b--)
        kv->free_stack[kv->n_free++] = table[b];
    kv->n_tokens -= kv->len[seq] - len;
    kv->len[seq] = len;
}

void loam__kv_reset(loam__kv *kv, int32_t seq) { loam__kv_truncate(kv, seq, 0); }
