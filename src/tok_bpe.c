/* tok_bpe.c: the BPE model of tokenizer.json (HF models/bpe/model.rs and word.rs).
 *
 * Vocab: piece string -> id, an open-addressing hash table (linear probing) over entries whose
 * strings live in the tokenizer's pool. A repeated key overwrites the earlier id, as a JSON object
 * read into a hash map does. Merges: (left id, right id) -> (rank, merged id), a second table with
 * 64-bit keys; merge number i has rank i, and a repeated pair keeps the last rank.
 *
 * One word (a pre-tokenized piece) is tokenized as HF's merge_word + merge_all:
 *  1. Each character becomes a symbol: the vocab id of the character (with
 *     continuing_subword_prefix before every character but the first and end_of_word_suffix after
 *     the last). A character not in the vocab becomes, with byte_fallback, one <0xXX> symbol per
 *     byte of that string when all of them exist; otherwise, with an unk_token, an unk symbol
 *     (consecutive unks fused into one when fuse_unk); otherwise it is dropped.
 *  2. Every adjacent pair with a merge goes into a min-heap keyed (rank, position). The top entry
 *     is applied when its left symbol is alive, has a right neighbour, and that pair still merges
 *     into the same id (entries go stale as neighbours merge; they are skipped, never removed).
 *     The merged symbol replaces the left one, the right one dies, and the new pairs with the
 *     left and right neighbours are pushed. Symbols form a doubly linked list over an array, so a
 *     word of n characters costs O(n log n).
 *  With ignore_merges, a word that is itself in the vocab is that one token (checked first).
 *
 * Word cache. Tokenizing the same word again gives the same ids, so words up to
 * LOAM__TOK_CACHE_MAX_WORD bytes are cached: LOAM__TOK_CACHE_SHARDS shards picked by hash, each a
 * fixed table + arena behind its own mutex (a loaded tokenizer is shared read-only by many
 * threads; the lock makes the cache the one mutable part safe). A full shard is cleared
 * wholesale: bounded memory, no eviction bookkeeping.
 */
#include "tokenizer.h"

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 = none */
    int32_t alive;
} sym;

typedef struct hent { /* heap entry: key = rank << 32 | position */
    uint64_t key;
    int32_t new_id;
} hent;

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n)
        memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 29);
}

static size_t table_size(size_t n) { /* power of two, load factor <= 2/3 */
    size_t s = 16;
    while (s < n + n / 2 + 1)
        s *= 2;
    return s;
}

// ---- vocab ------------------------------------------------------------------------------------

loam_status loam__tok_bpe_init_vocab(loam_tokenizer *tok, size_t n_entries, loam_err *err) {
    loam__tok_bpe *b = &tok->bpe;
    size_t slots = table_size(n_entries);
    if (slots > UINT32_MAX / 2 || n_entries > INT32_MAX)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: model.vocab is too large");
    b->entries = loam__malloc((n_entries ? n_entries : 1) * sizeof *b->entries);
    b->vslots = loam__malloc(slots * sizeof *b->vslots);
    if (!b->entries || !b->vslots)
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < slots; i++)
        b->vslots[i] = (loam__tok_vslot){0, -1};
    b->vmask = (uint32_t)(slots - 1);
    b->n_entries = 0;
    return LOAM_OK;
}

static loam__tok_vslot *vfind(const loam_tokenizer *tok, const char *s, size_t n, uint64_t h) {
    const loam__tok_bpe *b = &tok->bpe;
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & b->vmask;; i = (i + 1) & b->vmask) {
        loam__tok_vslot *v = &b->vslots[i];
        if (v->entry < 0)
            return v;
        const loam__tok_ventry *e = &b->entries[v->entry];
        if (v->hash == tag && e->s.len == n && memcmp(tok->pool + e->s.off, s, n) == 0)
            return v;
    }
}

loam_status loam__tok_bpe_add_vocab(loam_tokenizer *tok, loam__tok_span s, int32_t id,
                                    loam_err *err) {
    loam__tok_bpe *b = &tok->bpe;
    const char *str = loam__tok_str(tok, s);
    uint64_t h = hash_bytes(str, s.len);
    loam__tok_vslot *v = vfind(tok, str, s.len, h);
    if (v->entry >= 0) {
        b->entries[v->entry].id = id;
        return LOAM_OK;
    }
    if (b->n_entries + 1 > (size_t)b->vmask * 2 / 3)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: model.vocab grew while loading");
    b->entries[b->n_entries] = (loam__tok_ventry){s, id};
    *v = (loam__tok_vslot){(uint32_t)(h >> 32), (int32_t)b->n_entries};
    b->n_entries++;
    return LOAM_OK;
}

int32_t loam__tok_bpe_lookup(const loam_tokenizer *tok, const char *s, size_t n) {
    if (!tok->bpe.vslots)
        return -1;
    const loam__tok_vslot *v = vfind(tok, s, n, hash_bytes(s, n));
    return v->entry < 0 ? -1 : tok->bpe.entries[v->entry].id;
}

// ---- merges -----------------------------------------------------------------------------------

loam_status loam__tok_bpe_init_merges(loam_tokenizer *tok, size_t n_merges, loam_err *err) {
    loam__tok_bpe *b = &tok->bpe;
    size_t slots = table_size(n_merges);
    if (n_merges > UINT32_MAX / 4)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer.json: model.merges is too large");
    b->mslots = loam__malloc(slots * sizeof *b->mslots);
    if (!b->mslots)
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < slots; i++)
        b->mslots[i].key = LOAM__TOK_MKEY_EMPTY;
    b->mmask = slots - 1;
    b->n_merges = 0;
    return LOAM_OK;
}

static loam__tok_mslot *mfind(const loam__tok_bpe *b, uint64_t key) {
    for (uint64_t i = hash_pair(key) & b->mmask;; i = (i + 1) & b->mmask) {
        loam__tok_mslot *m = &b->mslots[i];
        if (m->key == key || m->key == LOAM__TOK_MKEY_EMPTY)
            return m;
    }
}

int loam__tok_bpe_merge_get(const loam__tok_bpe *b, int32_t x, int32_t y, uint32_t *rank,
                            int32_t *new_id) {
    const loam__tok_mslot *m = mfind(b, (uint64_t)(uint32_t)x << 32 | (uint32_t)y);
    if (m->key == LOAM__TOK_MKEY_EMPTY)
        return 0;
    *rank = m->rank;
    *new_id = m->new_id;
    return 1;
}

loam_status loam__tok_bpe_add_merge(loam_tokenizer *tok, uint32_t rank, const char *a, size_t na,
                                    const char *b, size_t nb, loam_err *err) {
    loam__tok_bpe *bpe = &tok->bpe;
    int32_t ia = loam__tok_bpe_lookup(tok, a, na), ib = loam__tok_bpe_lookup(tok, b, nb);
    if (ia < 0 || ib < 0)
        return loam__fail(
            err, LOAM_E_FORMAT, "tokenizer.json: merge %u: piece '%.*s' is not in the vocab", rank,
            (int)(ia < 0 ? (na < 60 ? na : 60) : (nb < 60 ? nb : 60)), ia < 0 ? a : b);
    /* the merged piece is a + b without b's continuing_subword_prefix (HF slices it off) */
    size_t cut = bpe->prefix.len;
    if (nb < cut)
        return loam__fail(err, LOAM_E_FORMAT,
                          "tokenizer.json: merge %u: '%.*s' is shorter than the subword prefix",
                          rank, (int)(nb < 60 ? nb : 60), b);
    char small[256];
    size_t nm = na + nb - cut;
    char *buf = nm <= sizeof small ? small : loam__malloc(nm);
    if (!buf)
        return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
    memcpy(buf, a, na);
    memcpy(buf + na, b + cut, nb - cut);
    int32_t id = loam__tok_bpe_lookup(tok, buf, nm);
    if (buf != small)
        loam__free(buf);
    if (id < 0)
        return loam__fail(err, LOAM_E_FORMAT,
                          "tokenizer.json: merge %u: '%.*s' + '%.*s' is not in the vocab", rank,
                          (int)(na < 40 ? na : 40), a, (int)(nb < 40 ? nb : 40), b);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    loam__tok_mslot *m = mfind(bpe, key);
    if (m->key == LOAM__TOK_MKEY_EMPTY) {
        if (bpe->n_merges + 1 > bpe->mmask * 2 / 3)
            return loam__fail(err, LOAM_E_FORMAT,
                              "tokenizer.json: model.merges grew while loading");
        bpe->n_merges++;
    }
    *m = (loam__tok_mslot){key, rank, id};
    return LOAM_OK;
}

loam_status loam__tok_bpe_finish(loam_tokenizer *tok, loam_err *err) {
    loam__tok_bpe *b = &tok->bpe;
    for (int i = 0; i < 256; i++) {
        char code[8];
        snprintf(code, sizeof code, "<0x%02X>", i);
        b->byte_ids[i] = loam__tok_bpe_lookup(tok, code, 6);
    }
    for (uint32_t cp = 0; cp < 512; cp++) {
        char enc[4];
        int k = loam__utf8_encode(cp, enc);
        b->char_ids[cp] = loam__tok_bpe_lookup(tok, enc, (size_t)k);
    }
    for (int i = 0; i < LOAM__TOK_CACHE_SHARDS; i++) {
        loam__tok_cache_shard *s = &b->shards[i];
        s->slots = loam__calloc(LOAM__TOK_CACHE_SLOTS, sizeof *s->slots);
        s->arena = loam__malloc(LOAM__TOK_CACHE_ARENA);
        if (!s->slots || !s->arena) {
            loam__free(s->slots);
            loam__free(s->arena);
            s->slots = NULL;
            s->arena = NULL;
            for (int j = 0; j < i; j++)
                pthread_mutex_destroy(&b->shards[j].mu);
            for (int j = 0; j < i; j++) {
                loam__free(b->shards[j].slots);
                loam__free(b->shards[j].arena);
                b->shards[j].slots = NULL;
                b->shards[j].arena = NULL;
            }
            return loam__fail(err, LOAM_E_NOMEM, "tokenizer: out of memory");
        }
        pthread_mutex_init(&s->mu, NULL);
    }
    b->cache_ready = 1;
    return LOAM_OK;
}

void loam__tok_bpe_free(loam__tok_bpe *b) {
    if (b->cache_ready)
        for (int i = 0; i < LOAM__TOK_CACHE_SHARDS; i++) {
            pthread_mutex_destroy(&b->shards[i].mu);
            loam__free(b->shards[i].slots);
            loam__free(b->shards[i].arena);
        }
    loam__free(b->entries);
    loam__free(b->vslots);
    loam__free(b->mslots);
}

// ---- word cache ---------------------------------------------------------------------------------

static int cache_get(const loam__tok_bpe *b, const char *w, size_t n, uint64_t h,
                     loam__tok_ids *out) {
    loam__tok_cache_shard *s = (loam__tok_cache_shard *)&b->shards[h >> 60];
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = h & (LOAM__TOK_CACHE_SLOTS - 1);; i = (i + 1) & (LOAM__TOK_CACHE_SLOTS - 1)) {
        const loam__tok_cslot *c = &s->slots[i];
        if (c->key_len == 0)
            break;
        if (c->hash == h && c->key_len == n && memcmp(s->arena + c->off, w, n) == 0) {
            const char *ids = s->arena + ((c->off + n + 3) & ~3u);
            hit = 1;
            for (size_t k = 0; k < c->n_ids && hit; k++) {
                int32_t id;
                memcpy(&id, ids + 4 * k, 4);
                if (loam__tok_ids_push(out, id))
                    hit = -1;
            }
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

static void cache_put(const loam__tok_bpe *b, const char *w, size_t n, uint64_t h,
                      const int32_t *ids, size_t n_ids) {
    loam__tok_cache_shard *s = (loam__tok_cache_shard *)&b->shards[h >> 60];
    size_t need = ((n + 3) & ~(size_t)3) + 4 * n_ids + 4;
    pthread_mutex_lock(&s->mu);
    if (s->count + 1 > LOAM__TOK_CACHE_SLOTS * 3 / 4 || s->used + need > LOAM__TOK_CACHE_ARENA) {
        memset(s->slots, 0, LOAM__TOK_CACHE_SLOTS * sizeof *s->slots);
        s->used = 0;
        s->count = 0;
    }
    size_t i = h & (LOAM__TOK_CACHE_SLOTS - 1);
    for (;; i = (i + 1) & (LOAM__TOK_CACHE_SLOTS - 1)) {
        loam__tok_cslot *c = &s->slots[i];
        if (c->key_len == 0)
            break;
        if (c->hash == h && c->key_len == n && memcmp(s->arena + c->off, w, n) == 0) {
            pthread_mutex_unlock(&s->mu); /* another thread got there first */
            return;
        }
    }
    uint32_t off = (s->used + 3) & ~3u;
    memcpy(s->arena + off, w, n);
    memcpy(s->arena + ((off + n + 3) & ~(size_t)3), ids, 4 * n_ids);
    s->slots[i] = (loam__tok_cslot){h, off, (uint16_t)n, (uint16_t)n_ids};
    s->used = off + (uint32_t)need;
    s->count++;
    pthread_mutex_unlock(&s->mu);
}

// ---- one word -----------------------------------------------------------------------------------

static loam_status nomem(loam__tok_enc *c) {
    return loam__fail(c->err, LOAM_E_NOMEM, "tokenizer: out of memory");
}

static loam_status heap_push(loam__tok_enc *c, size_t *len, uint32_t rank, size_t pos,
                             int32_t new_id) {
    if (*len == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
        void *p = loam__realloc(c->heap, cap * sizeof(hent));
        if (!p)
            return nomem(c);
        c->heap = p;
        c->heap_cap = cap;
    }
    hent *h = c->heap;
    hent e = {(uint64_t)rank << 32 | (uint64_t)pos, new_id};
    size_t i = (*len)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].key <= e.key)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
    return LOAM_OK;
}

static hent heap_pop(hent *h, size_t *len) {
    hent top = h[0], last = h[--*len];
    size_t n = *len, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = l + 1 < n && h[l + 1].key < h[l].key ? l + 1 : l;
        if (h[m].key >= last.key)
            break;
        h[i] = h[m];
        i = m;
    }
    if (n)
        h[i] = last;
    return top;
}

static loam_status sym_add(loam__tok_enc *c, size_t *n, int32_t id) {
    if (*n == c->sym_cap) {
        size_t cap = c->sym_cap ? c->sym_cap * 2 : 64;
        void *p = loam__realloc(c->sym, cap * sizeof(sym));
        if (!p)
            return nomem(c);
        c->sym = p;
        c->sym_cap = cap;
    }
    sym *s = c->sym;
    size_t i = (*n)++;
    s[i] = (sym){id, (int32_t)i - 1, -1, 1};
    if (i > 0)
        s[i - 1].next = (int32_t)i;
    return LOAM_OK;
}

static loam_status merge_word(loam__tok_enc *c, const char *w, size_t n, loam__tok_ids *out) {
    const loam_tokenizer *t = c->tok;
    const loam__tok_bpe *b = &t->bpe;
    if (n > (size_t)INT32_MAX)
        return loam__fail(c->err, LOAM_E_RANGE, "tokenizer: word of %zu bytes is too long", n);
    size_t ns = 0;
    int32_t unk_id = -1; /* pending unk symbol */
    const char *prefix = loam__tok_str(t, b->prefix), *suffix = loam__tok_str(t, b->suffix);
    int plain = b->prefix.len == 0 && b->suffix.len == 0;
    char small[64];
    size_t i = 0;
    while (i < n) {
        size_t cl = loam__utf8_len((unsigned char)w[i]);
        if (cl > n - i)
            cl = n - i;
        int first = i == 0, last = i + cl == n;
        const char *s = w + i;
        size_t sl = cl;
        char *heapbuf = NULL;
        int32_t id = -1;
        if (plain) {
            size_t adv;
            uint32_t cp = loam__utf8_decode(s, cl, &adv);
            id = cp < 512 ? b->char_ids[cp] : loam__tok_bpe_lookup(t, s, cl);
        } else {
            size_t pl = first ? 0 : b->prefix.len, xl = last ? b->suffix.len : 0;
            sl = pl + cl + xl;
            char *buf = sl <= sizeof small ? small : (heapbuf = loam__malloc(sl));
            if (!buf)
                return nomem(c);
            memcpy(buf, prefix, pl);
            memcpy(buf + pl, w + i, cl);
            memcpy(buf + pl + cl, suffix, xl);
            s = buf;
            id = loam__tok_bpe_lookup(t, s, sl);
        }
        loam_status st = LOAM_OK;
        if (id >= 0) {
            if (unk_id >= 0)
                st = sym_add(c, &ns, unk_id);
            unk_id = -1;
            if (!st)
                st = sym_add(c, &ns, id);
        } else {
            int done = 0;
            if (b->byte_fallback) {
                size_t k = 0;
                while (k < sl && b->byte_ids[(unsigned char)s[k]] >= 0)
                    k++;
                if (k == sl) {
                    for (k = 0; k < sl && !st; k++)
                        st = sym_add(c, &ns, b->byte_ids[(unsigned char)s[k]]);
                    done = 1;
                }
            }
            if (!done && b->unk.off != LOAM__TOK_NO_SPAN) {
                int32_t u = loam__tok_bpe_lookup(t, loam__tok_str(t, b->unk), b->unk.len);
                if (u < 0) {
                    loam__free(heapbuf);
                    return loam__fail(c->err, LOAM_E_FORMAT,
                                      "tokenizer.json: unk_token '%.60s' is not in the vocab",
                                      loam__tok_str(t, b->unk));
                }
                if (unk_id >= 0 && !b->fuse_unk)
                    st = sym_add(c, &ns, unk_id);
                unk_id = u;
            }
        }
        loam__free(heapbuf);
        if (st)
            return st;
        i += cl;
    }
    if (unk_id >= 0 && sym_add(c, &ns, unk_id))
        return nomem(c);

    sym *sy = c->sym;
    size_t hl = 0;
    uint32_t rank;
    int32_t nid;
    for (size_t k = 0; k + 1 < ns; k++)
        if (loam__tok_bpe_merge_get(b, sy[k].id, sy[k + 1].id, &rank, &nid))
            if (heap_push(c, &hl, rank, k, nid))
                return nomem(c);
    while (hl > 0) {
        hent top = heap_pop(c->heap, &hl);
        size_t pos = (size_t)(uint32_t)top.key;
        sy = c->sym;
        if (!sy[pos].alive || sy[pos].next < 0)
            continue;
        size_t nx = (size_t)sy[pos].next;
        if (!loam__tok_bpe_merge_get(b, sy[pos].id, sy[nx].id, &rank, &nid) || nid != top.new_id)
            continue;
        sy[pos].id = top.new_id;
        sy[pos].next = sy[nx].next;
        sy[nx].alive = 0;
        if (sy[nx].next >= 0)
            sy[sy[nx].next].prev = (int32_t)pos;
        if (sy[pos].prev >= 0) {
            size_t pv = (size_t)sy[pos].prev;
            if (loam__tok_bpe_merge_get(b, sy[pv].id, sy[pos].id, &rank, &nid) &&
                heap_push(c, &hl, rank, pv, nid))
                return nomem(c);
        }
        if (sy[pos].next >= 0) {
            size_t nn = (size_t)sy[pos].next;
            if (loam__tok_bpe_merge_get(b, sy[pos].id, sy[nn].id, &rank, &nid) &&
                heap_push(c, &hl, rank, pos, nid))
                return nomem(c);
        }
    }
    sy = c->sym;
    for (size_t k = 0; k < ns; k++)
        if (sy[k].alive && loam__tok_ids_push(out, sy[k].id))
            return nomem(c);
    return LOAM_OK;
}

loam_status loam__tok_bpe_word(loam__tok_enc *c, const char *w, size_t n) {
    const loam_tokenizer *t = c->tok;
    const loam__tok_bpe *b = &t->bpe;
    if (n == 0)
        return LOAM_OK;
    if (b->ignore_merges) {
        int32_t id = loam__tok_bpe_lookup(t, w, n);
        if (id >= 0)
            return loam__tok_ids_push(&c->out, id) ? nomem(c) : LOAM_OK;
    }
    int cacheable = n <= LOAM__TOK_CACHE_MAX_WORD && b->cache_ready;
    uint64_t h = 0;
    if (cacheable) {
        h = hash_bytes(w, n);
        int hit = cache_get(b, w, n, h, &c->out);
        if (hit < 0)
            return nomem(c);
        if (hit)
            return LOAM_OK;
    }
    c->word_ids.len = 0;
    loam_status st = merge_word(c, w, n, &c->word_ids);
    if (st)
        return st;
    if (cacheable)
        cache_put(b, w, n, h, c->word_ids.p, c->word_ids.len);
    for (size_t k = 0; k < c->word_ids.len; k++)
        if (loam__tok_ids_push(&c->out, c->word_ids.p[k]))
            return nomem(c);
    return LOAM_OK;
}

void loam__tok_enc_free_bpe(loam__tok_enc *c) {
    loam__free(c->sym);
    loam__free(c->heap);
    loam__free(c->word_ids.p);
}
