/* session.c: sessions and the decode driver (public API of loam.h "sessions").
 *
 * A decode call is a list of entries (sequence, position, token, adapter, want_logits). It is
 * checked as a whole before anything changes (positions contiguous per sequence, adapters
 * consistent per sequence and loaded, capacity), then the sequences grow in the KV block
 * tables and the entries run in steps of at most n_batch rows. In each step the rows are
 * stably sorted by adapter id, so every adapter's rows are one contiguous range (the LoRA term
 * runs once per range while the base matmul covers all rows); outputs keep entry order.
 *
 * Adapter lifetime: a sequence binds its adapter with its first token (the model counts the
 * binding, so the adapter cannot be unloaded under it) and releases it on seq_reset or free.
 */
#include "backend.h"
#ifdef LOAM_CUDA
#include "cuda/loam_cuda.h"
#endif

#include <omp.h>

struct loam_session {
    loam_model *m;
    loam_session_params p;
    const loam__backend *be;
    void *bs;                        /* backend state */
    loam__kv kv;
    int32_t *seq_adapter;            /* (n_seq_max) adapter id of a non-empty sequence, or -1 */
    const loam__adapter **seq_ptr;   /* (n_seq_max) its adapter, NULL for the base model */
    int32_t *seq_add;                /* (n_seq_max) validation: tokens this call adds */
    int32_t *seq_bind;               /* (n_seq_max) validation: adapter bound by this call */
    int32_t *row_token, *row_pos, *row_seq, *row_entry, *row_of, *out_rows; /* (n_batch) */
    loam__group *groups;             /* (n_batch) */
    float *logits;                   /* (n_logits, n_vocab) */
    size_t n_logits_last;
};

#define NO_BIND (-2)

loam_session_params loam_session_params_default(void) {
    loam_session_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 4096;
    p.n_seq_max = 1;
    p.n_batch = 512;
    p.n_logits = 0;
    p.n_threads = 0;
    p.reference = false;
    return p;
}

const char *loam_session_backend(const loam_session *s) {
    return s ? s->be->name : NULL;
}

loam_status loam_cuda_device_info(char *name, size_t cap, double *copy_bytes_per_s,
                                  loam_err *err) {
#ifdef LOAM_CUDA
    loam_status st = loam__cuda_device_name(name, cap, err);
    return st != LOAM_OK ? st : loam__cuda_copy_bandwidth(copy_bytes_per_s, err);
#else
    (void)name, (void)cap, (void)copy_bytes_per_s;
    return loam__fail(err, LOAM_E_UNSUPPORTED, "this libloam was built without CUDA (make CUDA=1)");
#endif
}

void loam_session_free(loam_session *s) {
    if (!s) return;
    if (s->kv.len)
        for (int32_t q = 0; q < s->p.n_seq_max; q++) loam_session_seq_reset(s, q);
    if (s->bs) s->be->session_free(s->bs);
    loam__kv_free(&s->kv);
    loam__free(s->seq_adapter);
    loam__free(s->seq_ptr);
    loam__free(s->seq_add);
    loam__free(s->seq_bind);
    loam__free(s->row_token);
    loam__free(s->row_pos);
    loam__free(s->row_seq);
    loam__free(s->row_entry);
    loam__free(s->row_of);
    loam__free(s->out_rows);
    loam__free(s->groups);
    loam__free(s->logits);
    loam__free(s);
}

loam_status loam_session_new(loam_session **out, loam_model *m, const loam_session_params *params,
                             loam_err *err) {
    *out = NULL;
    if (!m) return loam__fail(err, LOAM_E_INVAL, "session: no model");
    loam_session_params p = params ? *params : loam_session_params_default();
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24))
        return loam__fail(err, LOAM_E_INVAL, "session: n_ctx %d out of range [1, %d]", p.n_ctx,
                          1 << 24);
    if (p.n_seq_max < 1 || p.n_seq_max > (1 << 16))
        return loam__fail(err, LOAM_E_INVAL, "session: n_seq_max %d out of range [1, %d]",
                          p.n_seq_max, 1 << 16);
    if (p.n_batch < 1 || p.n_batch > (1 << 16))
        return loam__fail(err, LOAM_E_INVAL, "session: n_batch %d out of range [1, %d]",
                          p.n_batch, 1 << 16);
    if (p.n_logits <= 0) p.n_logits = p.n_seq_max;
    if (p.n_logits > (1 << 20))
        return loam__fail(err, LOAM_E_INVAL, "session: n_logits %d out of range", p.n_logits);
    if (p.n_threads <= 0) p.n_threads = m->n_threads;
    if (p.n_threads <= 0) p.n_threads = omp_get_max_threads(); /* all cores, or OMP_NUM_THREADS */

    uint64_t logits_floats;
    if (loam__mul_u64((uint64_t)p.n_logits, (uint64_t)m->cfg.n_vocab, &logits_floats) ||
        logits_floats > SIZE_MAX / sizeof(float))
        return loam__fail(err, LOAM_E_NOMEM, "session: n_logits %d x n_vocab is too large",
                          p.n_logits);

    const loam__backend *be = &loam__backend_cpu;
    if (m->device == LOAM_DEVICE_CUDA && !p.reference) {
#ifdef LOAM_CUDA
        be = &loam__backend_cuda;
#else
        return loam__fail(err, LOAM_E_UNSUPPORTED,
                          "session: the model asks for CUDA (LOAM_DEVICE=cuda), but this libloam "
                          "was built without it (make CUDA=1)");
#endif
    }
    loam_session *s = loam__calloc(1, sizeof *s);
    if (!s) return loam__fail(err, LOAM_E_NOMEM, "session: out of memory");
    s->m = m;
    s->p = p;
    s->be = be;
    loam_status st = loam__kv_init(&s->kv, p.n_ctx, p.n_seq_max, err);
    if (st != LOAM_OK) goto fail;
    size_t nq = (size_t)p.n_seq_max, nb = (size_t)p.n_batch;
    s->seq_adapter = loam__malloc(nq * sizeof(int32_t));
    s->seq_ptr = loam__calloc(nq, sizeof(*s->seq_ptr));
    s->seq_add = loam__calloc(nq, sizeof(int32_t));
    s->seq_bind = loam__malloc(nq * sizeof(int32_t));
    s->row_token = loam__malloc(nb * sizeof(int32_t));
    s->row_pos = loam__malloc(nb * sizeof(int32_t));
    s->row_seq = loam__malloc(nb * sizeof(int32_t));
    s->row_entry = loam__malloc(nb * sizeof(int32_t));
    s->row_of = loam__malloc(nb * sizeof(int32_t));
    s->out_rows = loam__malloc(nb * sizeof(int32_t));
    s->groups = loam__malloc(nb * sizeof(loam__group));
    s->logits = loam__malloc((size_t)logits_floats * sizeof(float));
    if (!s->seq_adapter || !s->seq_ptr || !s->seq_add || !s->seq_bind || !s->row_token ||
        !s->row_pos || !s->row_seq || !s->row_entry || !s->row_of || !s->out_rows ||
        !s->groups || !s->logits) {
        st = loam__fail(err, LOAM_E_NOMEM, "session: out of memory (%d logits rows)",
                        p.n_logits);
        goto fail;
    }
    for (size_t q = 0; q < nq; q++) {
        s->seq_adapter[q] = -1;
        s->seq_bind[q] = NO_BIND;
    }
    loam__backend_shape shape = {p.n_batch,     s->kv.n_blocks, p.n_ctx,
                                 p.n_threads,   p.reference,    p.n_seq_max};
    st = s->be->session_new(&s->bs, m, &shape, err);
    if (st != LOAM_OK) goto fail;
    *out = s;
    return LOAM_OK;
fail:
    loam_session_free(s);
    return st;
}

void loam_session_seq_reset(loam_session *s, int32_t seq) {
    if (!s || seq < 0 || seq >= s->p.n_seq_max) return;
    if (s->kv.len[seq] > 0 && s->seq_adapter[seq] >= 0)
        loam__model_adapter_release(s->m, s->seq_adapter[seq]);
    s->seq_adapter[seq] = -1;
    s->seq_ptr[seq] = NULL;
    loam__kv_reset(&s->kv, seq);
}

loam_status loam_session_seq_truncate(loam_session *s, int32_t seq, int32_t len, loam_err *err) {
    if (!s) return loam__fail(err, LOAM_E_INVAL, "truncate: no session");
    if (seq < 0 || seq >= s->p.n_seq_max)
        return loam__fail(err, LOAM_E_RANGE, "truncate: sequence %d out of range [0, %d)", seq,
                          s->p.n_seq_max);
    if (len < 0 || len > s->kv.len[seq])
        return loam__fail(err, LOAM_E_RANGE, "truncate: sequence %d holds %d tokens, cannot keep "
                          "%d", seq, s->kv.len[seq], len);
    if (len == 0) loam_session_seq_reset(s, seq);
    else loam__kv_truncate(&s->kv, seq, len);
    return LOAM_OK;
}

int32_t loam_session_seq_len(const loam_session *s, int32_t seq) {
    if (!s || seq < 0 || seq >= s->p.n_seq_max) return -1;
    return s->kv.len[seq];
}

int64_t loam_session_n_tokens(const loam_session *s) { return s ? s->kv.n_tokens : 0; }

const float *loam_session_logits(const loam_session *s, size_t i) {
    if (!s || i >= s->n_logits_last) return NULL;
    return s->logits + i * (size_t)s->m->cfg.n_vocab;
}

size_t loam_session_n_logits(const loam_session *s) { return s ? s->n_logits_last : 0; }

// ---- decode -----------------------------------------------------------------------------------

/* Undoes the validation scratch of entries [0, n). */
static void clear_scratch(loam_session *s, const loam_batch_entry *e, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int32_t q = e[i].seq;
        if (q >= 0 && q < s->p.n_seq_max) {
            s->seq_add[q] = 0;
            s->seq_bind[q] = NO_BIND;
        }
    }
}

/* Checks every entry; on success seq_add / seq_bind describe the call. */
static loam_status validate(loam_session *s, const loam_batch_entry *e, size_t n, loam_err *err) {
    const loam__config *c = &s->m->cfg;
    size_t n_out = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t q = e[i].seq;
        if (q < 0 || q >= s->p.n_seq_max)
            return loam__fail(err, LOAM_E_RANGE, "decode: entry %zu: sequence %d out of range "
                              "[0, %d)", i, q, s->p.n_seq_max);
        if (e[i].token < 0 || e[i].token >= c->n_vocab)
            return loam__fail(err, LOAM_E_RANGE, "decode: entry %zu: token %d out of range "
                              "[0, %d)", i, e[i].token, c->n_vocab);
        int64_t expect = (int64_t)s->kv.len[q] + s->seq_add[q];
        if (e[i].pos != expect)
            return loam__fail(err, LOAM_E_INVAL,
                              "decode: entry %zu: sequence %d position %d, expected %lld "
                              "(positions must be contiguous)",
                              i, q, e[i].pos, (long long)expect);
        if (expect + 1 > s->p.n_ctx)
            return loam__fail(err, LOAM_E_RANGE, "decode: context full: sequence %d would "
                              "hold %lld tokens, n_ctx is %d", q, (long long)expect + 1,
                              s->p.n_ctx);
        int32_t bound;
        if (s->kv.len[q] > 0) bound = s->seq_adapter[q];
        else if (s->seq_add[q] > 0) bound = s->seq_bind[q];
        else {
            if (e[i].adapter < -1 || e[i].adapter >= LOAM__MAX_ADAPTERS)
                return loam__fail(err, LOAM_E_INVAL, "decode: entry %zu: adapter id %d is not "
                                  "loaded", i, e[i].adapter);
            bound = s->seq_bind[q] = e[i].adapter;
        }
        if (e[i].adapter != bound)
            return loam__fail(err, LOAM_E_INVAL,
                              "decode: entry %zu: sequence %d uses adapter %d, not %d (reset "
                              "the sequence to change it)",
                              i, q, bound, e[i].adapter);
        s->seq_add[q]++;
        if (e[i].want_logits) n_out++;
    }
    if (n_out > (size_t)s->p.n_logits)
        return loam__fail(err, LOAM_E_RANGE, "decode: %zu entries want logits, the session "
                          "keeps at most %d (n_logits)", n_out, s->p.n_logits);
    if (s->kv.n_tokens + (int64_t)n > s->p.n_ctx)
        return loam__fail(err, LOAM_E_RANGE, "decode: context full: %lld tokens held + %zu new "
                          "> n_ctx %d", (long long)s->kv.n_tokens, n, s->p.n_ctx);
    int64_t blocks = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t q = e[i].seq;
        if (s->seq_add[q] > 0 && e[i].pos == s->kv.len[q]) /* first entry of q in the call */
            blocks += loam__kv_blocks_needed(&s->kv, q, (int64_t)s->kv.len[q] + s->seq_add[q]);
    }
    if (blocks > s->kv.n_free)
        return loam__fail(err, LOAM_E_RANGE, "decode: context full: %lld KV blocks needed, %d "
                          "free", (long long)blocks, s->kv.n_free);
    return LOAM_OK;
}

/* Largest rank over the modules of a. */
static int32_t max_rank(const loam__adapter *a, int32_t n_layer) {
    int32_t r = 0;
    for (int32_t l = 0; l < n_layer; l++)
        for (int mod = 0; mod < LOAM__N_MOD; mod++) {
            const loam__lora_mod *lm = loam__adapter_mod(a, l, (loam__mod)mod);
            if (lm && lm->a && lm->r > r) r = lm->r;
        }
    return r;
}

/* Binds the adapters of sequences that start in this call. */
static loam_status bind_adapters(loam_session *s, const loam_batch_entry *e, size_t n,
                                 loam_err *err) {
    for (size_t i = 0; i < n; i++) {
        int32_t q = e[i].seq, id = s->seq_bind[q];
        if (e[i].pos != 0 || id < 0) continue;
        const loam__adapter *a = loam__model_adapter_acquire(s->m, id);
        if (a && max_rank(a, s->m->cfg.n_layer) > LOAM__LORA_RANK_MAX) {
            loam__model_adapter_release(s->m, id);
            for (size_t j = 0; j < i; j++)
                if (e[j].pos == 0 && s->seq_bind[e[j].seq] >= 0)
                    loam__model_adapter_release(s->m, s->seq_bind[e[j].seq]);
            return loam__fail(err, LOAM_E_UNSUPPORTED, "decode: adapter id %d has rank above "
                              "%d", id, LOAM__LORA_RANK_MAX);
        }
        if (!a) {
            for (size_t j = 0; j < i; j++) /* release what this call bound */
                if (e[j].pos == 0 && s->seq_bind[e[j].seq] >= 0)
                    loam__model_adapter_release(s->m, s->seq_bind[e[j].seq]);
            return loam__fail(err, LOAM_E_INVAL, "decode: entry %zu: adapter id %d is not "
                              "loaded", i, id);
        }
        s->seq_ptr[q] = a;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t q = e[i].seq;
        if (e[i].pos == 0) {
            s->seq_adapter[q] = s->seq_bind[q];
            if (s->seq_bind[q] < 0) s->seq_ptr[q] = NULL;
        }
    }
    return LOAM_OK;
}

/* Runs entries [c0, c0+m) as one step; their outputs go to logits rows from out_base, and
 * their number is added to *n_out_total. */
static loam_status run_step(loam_session *s, const loam_batch_entry *e, size_t c0, int32_t m,
                            size_t out_base, size_t *n_out_total, loam_err *err) {
    /* stable insertion sort of the rows by adapter id (runs are usually already sorted) */
    for (int32_t r = 0; r < m; r++) {
        int32_t key = e[c0 + (size_t)r].adapter, j = r;
        while (j > 0 && e[c0 + (size_t)s->row_entry[j - 1]].adapter > key) {
            s->row_entry[j] = s->row_entry[j - 1];
            j--;
        }
        s->row_entry[j] = r;
    }
    int32_t n_groups = 0;
    for (int32_t r = 0; r < m; r++) {
        const loam_batch_entry *x = &e[c0 + (size_t)s->row_entry[r]];
        s->row_token[r] = x->token;
        s->row_pos[r] = x->pos;
        s->row_seq[r] = x->seq;
        s->row_of[s->row_entry[r]] = r;
        if (n_groups == 0 || e[c0 + (size_t)s->row_entry[r - 1]].adapter != x->adapter) {
            s->groups[n_groups].a = s->seq_ptr[x->seq];
            s->groups[n_groups].row0 = r;
            s->groups[n_groups].n = 0;
            n_groups++;
        }
        s->groups[n_groups - 1].n++;
    }
    int32_t n_out = 0;
    for (int32_t i = 0; i < m; i++)
        if (e[c0 + (size_t)i].want_logits) s->out_rows[n_out++] = s->row_of[i];
    loam__step st = {
        .n_rows = m,
        .token = s->row_token,
        .pos = s->row_pos,
        .seq = s->row_seq,
        .kv = &s->kv,
        .n_groups = n_groups,
        .groups = s->groups,
        .n_out = n_out,
        .out_rows = s->out_rows,
        .logits = s->logits + out_base * (size_t)s->m->cfg.n_vocab,
    };
    loam__forward_step(s->be, s->bs, &st, s->m->cfg.n_layer);
    *n_out_total += (size_t)n_out;
    return s->be->step_status ? s->be->step_status(s->bs, err) : LOAM_OK;
}

loam_status loam_session_decode(loam_session *s, const loam_batch_entry *entries, size_t n,
                                loam_err *err) {
    if (!s) return loam__fail(err, LOAM_E_INVAL, "decode: no session");
    s->n_logits_last = 0;
    if (n == 0) return LOAM_OK;
    if (!entries) return loam__fail(err, LOAM_E_INVAL, "decode: no entries");
    if (n > (size_t)s->p.n_ctx)
        return loam__fail(err, LOAM_E_RANGE, "decode: context full: %zu entries > n_ctx %d", n,
                          s->p.n_ctx);
    loam_status st = validate(s, entries, n, err);
    if (st == LOAM_OK) st = bind_adapters(s, entries, n, err);
    if (st != LOAM_OK) {
        clear_scratch(s, entries, n);
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t q = entries[i].seq;
        if (s->seq_add[q] > 0) {
            bool ok = loam__kv_grow(&s->kv, q, s->kv.len[q] + s->seq_add[q]);
            LOAM_CHECK(ok); /* capacity was checked by validate() */
            s->seq_add[q] = 0;
            s->seq_bind[q] = NO_BIND;
        }
    }
    size_t out = 0;
    for (size_t c0 = 0; c0 < n; c0 += (size_t)s->p.n_batch) {
        size_t m = n - c0 < (size_t)s->p.n_batch ? n - c0 : (size_t)s->p.n_batch;
        if ((st = run_step(s, entries, c0, (int32_t)m, out, &out, err)) != LOAM_OK) return st;
    }
    s->n_logits_last = out;
    return LOAM_OK;
}
