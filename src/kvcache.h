/* kvcache.h: bookkeeping of the paged KV cache (the part every backend shares).
 *
 * The KV storage itself lives in the backend (host memory for the CPU, device memory for a
 * GPU); this module only decides which block holds which tokens:
 * - the pool has n_blocks blocks of LOAM__KV_BLOCK tokens each (all layers, K and V);
 * - each sequence has a block table: token t of sequence s lives in block
 *   table[s][t / LOAM__KV_BLOCK], slot t % LOAM__KV_BLOCK;
 * - free blocks sit on a stack; a sequence takes blocks as it grows and returns all of them
 *   when reset.
 * Capacity: the session holds at most n_ctx tokens over all sequences. The pool has
 * ceil(n_ctx / B) + n_seq - 1 blocks, enough for any split of n_ctx tokens over n_seq
 * sequences (each sequence wastes less than one block), so a call that passes the token check
 * always finds its blocks. Everything is allocated at init; nothing allocates afterwards.
 */
#ifndef LOAM_KVCACHE_H
#define LOAM_KVCACHE_H

#include "loam_internal.h"

/* Tokens per block. 32 keeps the waste per sequence small while a block of one KV head
 * (32 x head_dim floats, 16 KiB at head_dim 128) is long enough for streaming reads. */
#define LOAM__KV_BLOCK 32

typedef struct loam__kv {
    int32_t n_ctx;        /* token capacity over all sequences */
    int32_t n_seq;        /* sequences */
    int32_t n_blocks;     /* blocks in the pool */
    int32_t table_stride; /* entries per block table = ceil(n_ctx / B) */
    int32_t n_free;
    int64_t n_tokens;     /* tokens held over all sequences */
    int32_t *free_stack;  /* (n_blocks) free block ids, top at n_free-1 */
    int32_t *len;         /* (n_seq) tokens per sequence */
    int32_t *tables;      /* (n_seq, table_stride) block ids, valid for ceil(len/B) entries */
} loam__kv;

/* Sizes and allocates the bookkeeping for n_ctx tokens over n_seq sequences. */
loam_status loam__kv_init(loam__kv *kv, int32_t n_ctx, int32_t n_seq, loam_err *err);
void loam__kv_free(loam__kv *kv);

/* Blocks the sequence needs to grow from len(seq) to new_len tokens. */
int32_t loam__kv_blocks_needed(const loam__kv *kv, int32_t seq, int64_t new_len);

/* Grows seq to new_len tokens, taking blocks from the pool. The caller has checked capacity
 * (n_tokens and loam__kv_blocks_needed); returns false, changing nothing, if blocks ran out. */
bool loam__kv_grow(loam__kv *kv, int32_t seq, int32_t new_len);

/* Returns every block of seq to the pool; its length becomes 0. */
void loam__kv_reset(loam__kv *kv, int32_t seq);

/* Keeps the first len (<= len(seq)) tokens of seq and returns the blocks past them. */
void loam__kv_truncate(loam__kv *kv, int32_t seq, int32_t len);

/* Block table of seq (table_stride entries). */
static inline const int32_t *loam__kv_table(const loam__kv *kv, int32_t seq) {
    return kv->tables + (size_t)seq * (size_t)kv->table_stride;
}

#endif /* LOAM_KVCACHE_H */
