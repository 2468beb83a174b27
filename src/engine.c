/* engine.c: continuous batching. One engine owns one session (KV pool) of a model and a worker
 * thread that advances every active request in the same forward step.
 *
 * Scheduling, once per step:
 *   1. Cancelled requests are finished; queued requests take free slots (FIFO).
 *   2. The batch is built: first one decode token for every generating request (so streams
 *      never stall behind a long prompt), then prompt chunks of the requests still in prefill,
 *      in slot order, until n_batch rows are used (chunked prefill).
 *   3. One loam_session_decode() runs the rows; each request whose last row asked for logits
 *      samples its next token with its own sampler (its own seed: a request samples the same
 *      tokens whether it runs alone or beside others, as long as the logits agree).
 *   4. Tokens become text through a streaming detokenizer (whole UTF-8 characters only), then
 *      through the stop-string matcher, which holds back any tail that could still become a
 *      stop string; released text goes to on_token. EOS (from generation_config.json) ends a
 *      request without being emitted; max_tokens or the context end it with "length".
 *   5. Finished requests call on_done exactly once, their sequence is reset and the slot freed.
 * Requests wait in a bounded queue when every slot is busy; submit answers LOAM_E_BUSY when the
 * queue is full. Callbacks run on the engine thread and must not call back into the engine
 * except loam_engine_cancel.
 */
#define _GNU_SOURCE
#include "loam_internal.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>

#define MAX_EOS 8

typedef struct request {
    struct request *next; /* queue link */
    uint64_t id;
    int32_t slot; /* -1 while queued */
    int32_t *prompt;
    int32_t n_prompt;
    int32_t n_prefilled; /* prompt tokens already in the KV cache */
    int32_t n_generated;
    int32_t last_token;   /* next token to feed (last sampled) */
    int32_t adapter;
    int32_t max_tokens;
    bool want_logprobs;
    int32_t top_logprobs;
    bool ignore_eos;
    atomic_bool cancel;
    loam_sampler *sampler;
    loam_tok_stream *detok;
    loam_stop_matcher *stops; /* holds back text that could still become a stop string */
    bool (*on_token)(void *, const loam_token_event *);
    void (*on_done)(void *, const loam_request_result *);
    void *user;
    double t_submit, t_start, t_first;
    int32_t logits_row; /* row of this step's logits, or -1 */
} request;

/* One request's sampling in a step: its logits row in, the token and its log-probability out. */
typedef struct pick {
    request *r;
    const float *logits;
    int32_t tok;
    float logprob;
    int32_t n_top;
} pick;

struct loam_engine {
    loam_model *model;
    const loam_tokenizer *tok;
    loam_session *sess;
    loam_engine_params params;
    int32_t n_vocab;
    int32_t n_ctx_seq;
    int32_t eos[MAX_EOS];
    int32_t n_eos;
    int32_t xtc_special[MAX_EOS + 8]; /* XTC's default special tokens: "\n" then the EOS ids */
    int32_t n_xtc_special;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    request *queue_head, *queue_tail;
    int32_t n_queued;
    request **slots; /* (n_parallel) */
    int32_t n_active;
    uint64_t next_id;

    /* step buffers, sized at creation */
    loam_batch_entry *entries; /* (n_batch + n_parallel) */
    request **entry_req;       /* owner of each entry */
    float *logits;             /* (n_parallel, n_vocab) the samplers' working copies */
    int32_t *top_ids;          /* (n_parallel, 32) */
    float *top_vals;           /* (n_parallel, 32) */
    struct pick *picks;        /* (n_parallel) a step's sampling results */
    char *tail;                /* text handed to on_done */
    size_t tail_cap;

    /* statistics */
    _Atomic uint64_t steps_total, generated_total, prompt_total;
    atomic_int last_batch_rows;
    double rate_t0;
    uint64_t rate_tokens0;
    _Atomic double tokens_per_second;
};

loam_engine_params loam_engine_params_default(void) {
    loam_engine_params p;
    memset(&p, 0, sizeof p);
    p.n_parallel = 4;
    p.n_ctx = 4096;
    p.n_batch = 512;
    p.max_queue = 64;
    p.n_threads = 0;
    return p;
}

loam_request_params loam_request_params_default(void) {
    loam_request_params p;
    memset(&p, 0, sizeof p);
    p.adapter = -1;
    p.max_tokens = 256;
    p.sampling = loam_sampler_params_default();
    return p;
}

int32_t loam_engine_n_ctx(const loam_engine *e) { return e ? e->n_ctx_seq : 0; }

// ---- requests ---------------------------------------------------------------------------------

static void request_free(request *r) {
    if (!r) return;
    loam__free(r->prompt);
    loam_sampler_free(r->sampler);
    loam_tok_stream_free(r->detok);
    loam_stop_matcher_free(r->stops);
    loam__free(r);
}

/* Ends a request: on_done gets `pre` (text released while finishing) followed by whatever the
 * stop matcher still holds (nothing if a stop string matched or the request was cancelled). */
static void finish_with(loam_engine *e, request *r, loam_finish why, const char *error,
                        const char *pre, size_t pre_len) {
    loam_request_result res;
    memset(&res, 0, sizeof res);
    res.finish = why;
    res.text = ""; /* never NULL, even when empty */
    const char *held = NULL;
    size_t held_len = 0;
    if ((why == LOAM_FINISH_LENGTH || why == LOAM_FINISH_STOP) && r->stops)
        loam_stop_matcher_finish(r->stops, &held, &held_len);
    if (pre_len == 0) {
        if (held) res.text = held;
        res.text_len = held_len;
    } else {
        /* pre and held both live in the stop matcher's buffer; join them in e->tail, which
         * grows here (a held tail is as long as a stop string, which a request may make
         * longer than the first 16 KiB) */
        if (pre_len + held_len > e->tail_cap) {
            size_t cap = pre_len + held_len;
            char *t = loam__malloc(cap);
            if (t) {
                loam__free(e->tail);
                e->tail = t;
                e->tail_cap = cap;
            } else if (why != LOAM_FINISH_ERROR) {
                why = LOAM_FINISH_ERROR;
                error = "engine: out of memory for the final text";
            }
        }
        if (pre_len + held_len <= e->tail_cap) {
            memmove(e->tail, pre, pre_len);
            if (held_len) memcpy(e->tail + pre_len, held, held_len);
            res.text = e->tail;
            res.text_len = pre_len + held_len;
        }
    }
    if (!res.text) res.text = ""; /* callbacks always get a valid pointer */
    res.finish = why;
    res.prompt_tokens = r->n_prompt;
    res.completion_tokens = r->n_generated;
    double now = loam__now();
    res.queue_seconds = r->t_start > 0 ? r->t_start - r->t_submit : now - r->t_submit;
    res.prompt_seconds = r->t_first > 0 ? r->t_first - r->t_start : 0;
    res.gen_seconds = r->t_first > 0 ? now - r->t_first : 0;
    res.status = why == LOAM_FINISH_ERROR ? LOAM_E_INVAL : LOAM_OK;
    res.error = error ? error : "";
    if (r->slot >= 0) {
        loam_session_seq_reset(e->sess, r->slot);
        pthread_mutex_lock(&e->mu);
        e->slots[r->slot] = NULL;
        e->n_active--;
        pthread_mutex_unlock(&e->mu);
    }
    if (r->on_done) r->on_done(r->user, &res);
    request_free(r);
}

static void finish(loam_engine *e, request *r, loam_finish why, const char *error) {
    finish_with(e, r, why, error, NULL, 0);
}

// ---- the step ---------------------------------------------------------------------------------

/* Takes cancelled requests out of the queue (returned as a list linked through `next`, however
 * many there are) and gives free slots to the queued requests, in order. */
static request *admit_and_cancel(loam_engine *e) {
    request *cancelled = NULL;
    pthread_mutex_lock(&e->mu);
    request **pp = &e->queue_head;
    e->queue_tail = NULL;
    while (*pp) {
        request *r = *pp;
        if (atomic_load(&r->cancel)) {
            *pp = r->next;
            e->n_queued--;
            r->next = cancelled;
            cancelled = r;
        } else {
            e->queue_tail = r;
            pp = &r->next;
        }
    }
    for (int32_t s = 0; s < e->params.n_parallel && e->queue_head; s++) {
        if (e->slots[s]) continue;
        request *r = e->queue_head;
        e->queue_head = r->next;
        if (!e->queue_head) e->queue_tail = NULL;
        e->n_queued--;
        r->next = NULL;
        r->slot = s;
        r->t_start = loam__now();
        e->slots[s] = r;
        e->n_active++;
    }
    pthread_mutex_unlock(&e->mu);
    return cancelled;
}

static void step(loam_engine *e) {
    for (request *r = admit_and_cancel(e), *next; r; r = next) {
        next = r->next;
        r->slot = -1;
        finish(e, r, LOAM_FINISH_CANCELLED, NULL);
    }
    for (int32_t s = 0; s < e->params.n_parallel; s++) {
        request *r = e->slots[s];
        if (r && atomic_load(&r->cancel)) finish(e, r, LOAM_FINISH_CANCELLED, NULL);
    }

    /* build the batch: decode rows first, then prompt chunks */
    size_t n = 0;
    int32_t budget = e->params.n_batch;
    for (int32_t s = 0; s < e->params.n_parallel; s++) {
        request *r = e->slots[s];
        if (!r) continue;
        r->logits_row = -1;
        if (r->n_prefilled < r->n_prompt) continue;
        e->entries[n] = (loam_batch_entry){.seq = s,
                                           .pos = loam_session_seq_len(e->sess, s),
                                           .token = r->last_token,
                                           .adapter = r->adapter,
                                           .want_logits = true};
        e->entry_req[n++] = r;
        budget--;
    }
    for (int32_t s = 0; s < e->params.n_parallel && budget > 0; s++) {
        request *r = e->slots[s];
        if (!r || r->n_prefilled >= r->n_prompt) continue;
        int32_t take = r->n_prompt - r->n_prefilled;
        if (take > budget) take = budget;
        int32_t pos = loam_session_seq_len(e->sess, s);
        for (int32_t k = 0; k < take; k++) {
            int32_t at = r->n_prefilled + k;
            e->entries[n] = (loam_batch_entry){.seq = s,
                                               .pos = pos + k,
                                               .token = r->prompt[at],
                                               .adapter = r->adapter,
                                               .want_logits = at == r->n_prompt - 1};
            e->entry_req[n++] = r;
        }
        r->n_prefilled += take;
        budget -= take;
        atomic_fetch_add(&e->prompt_total, (uint64_t)take);
    }
    if (n == 0) return;

    loam_err err = {0};
    loam_status st = loam_session_decode(e->sess, e->entries, n, &err);
    atomic_fetch_add(&e->steps_total, 1);
    atomic_store(&e->last_batch_rows, (int)n);
    if (st != LOAM_OK) {
        /* fail every request that had rows in this step */
        for (size_t i = 0; i < n; i++) {
            request *r = e->entry_req[i];
            if (r && r->slot >= 0 && e->slots[r->slot] == r) finish(e, r, LOAM_FINISH_ERROR, err.msg);
            for (size_t k = i + 1; k < n; k++)
                if (e->entry_req[k] == r) e->entry_req[k] = NULL;
        }
        return;
    }

    /* sample: every request of the step at once (its own sampler and seed, so the tokens do
     * not depend on the threads; on a GPU the step is a few ms and a 152k-entry draw about one
     * per request), then the tokens go out one request at a time, in order */
    size_t n_pick = 0, row = 0;
    for (size_t i = 0; i < n; i++) {
        if (!e->entries[i].want_logits) continue;
        request *r = e->entry_req[i];
        const float *lg = loam_session_logits(e->sess, row++);
        if (!r || !lg) continue;
        e->picks[n_pick++] = (pick){r, lg, -1, 0.0f, 0};
    }
    const int nt = e->params.n_threads > 0 ? e->params.n_threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (n_pick > 1)
    for (size_t j = 0; j < n_pick; j++) {
        pick *pk = &e->picks[j];
        float *buf = e->logits + j * (size_t)e->n_vocab;
        memcpy(buf, pk->logits, (size_t)e->n_vocab * sizeof *buf);
        pk->tok = loam_sampler_sample(pk->r->sampler, buf, &pk->logprob);
        if (pk->tok < 0) continue;
        if (pk->r->top_logprobs > 0) /* buf now holds the unfiltered log-probabilities */
            pk->n_top = loam_sampler_top_logprobs(buf, e->n_vocab, pk->r->top_logprobs,
                                                  e->top_ids + j * 32, e->top_vals + j * 32);
        if (pk->r->want_logprobs) pk->logprob = buf[pk->tok];
    }
    for (size_t j = 0; j < n_pick; j++) {
        request *r = e->picks[j].r;
        const int32_t tok = e->picks[j].tok;
        float logprob = e->picks[j].logprob;
        loam_token_event ev;
        memset(&ev, 0, sizeof ev);
        if (tok < 0) {
            finish(e, r, LOAM_FINISH_ERROR, "every logit is -inf or NaN");
            continue;
        }
        if (r->top_logprobs > 0) {
            ev.n_top = e->picks[j].n_top;
            ev.top_ids = e->top_ids + j * 32;
            ev.top_logprobs = e->top_vals + j * 32;
        }
        loam_sampler_accept(r->sampler, tok);
        if (r->t_first == 0) r->t_first = loam__now();
        bool is_eos = false;
        for (int32_t k = 0; k < e->n_eos && !r->ignore_eos; k++) is_eos |= tok == e->eos[k];
        if (is_eos) {
            finish(e, r, LOAM_FINISH_STOP, NULL);
            continue;
        }
        r->n_generated++;
        r->last_token = tok;
        atomic_fetch_add(&e->generated_total, 1);
        const char *piece = NULL;
        size_t tl = 0;
        bool stopped = false;
        loam_err serr;
        if (loam_tok_stream_push(r->detok, tok, &piece, &tl, &serr) != LOAM_OK ||
            loam_stop_matcher_push(r->stops, piece, tl, &ev.text, &ev.text_len, &stopped,
                                   &serr) != LOAM_OK) {
            finish(e, r, LOAM_FINISH_ERROR, serr.msg);
            continue;
        }
        if (!ev.text) ev.text = "";
        ev.token = tok;
        ev.logprob = logprob;
        bool keep = r->on_token ? r->on_token(r->user, &ev) : true;
        if (stopped) {
            finish(e, r, LOAM_FINISH_STOP, NULL);
            continue;
        }
        if (!keep) {
            finish(e, r, LOAM_FINISH_CANCELLED, NULL);
            continue;
        }
        int32_t len = loam_session_seq_len(e->sess, r->slot);
        if (r->n_generated >= r->max_tokens || len >= e->n_ctx_seq) {
            /* the detokenizer's held bytes go through the matcher before the end */
            const char *fp = NULL, *ft = NULL;
            size_t fl = 0, ftl = 0;
            if (loam_tok_stream_flush(r->detok, &fp, &fl, &serr) != LOAM_OK ||
                loam_stop_matcher_push(r->stops, fp, fl, &ft, &ftl, &stopped, &serr) != LOAM_OK)
                ftl = 0;
            finish_with(e, r, stopped ? LOAM_FINISH_STOP : LOAM_FINISH_LENGTH, NULL, ft, ftl);
        }
    }
    /* token rate over windows of at least two seconds */
    double now = loam__now();
    if (now - e->rate_t0 >= 2.0) {
        uint64_t g = atomic_load(&e->generated_total);
        atomic_store(&e->tokens_per_second, (double)(g - e->rate_tokens0) / (now - e->rate_t0));
        e->rate_t0 = now;
        e->rate_tokens0 = g;
    }
}

static void *worker(void *arg) {
    loam_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->quit && e->n_active == 0 && e->n_queued == 0) pthread_cond_wait(&e->cv, &e->mu);
        bool quit = e->quit;
        pthread_mutex_unlock(&e->mu);
        if (quit) break;
        step(e);
    }
    return NULL;
}

// ---- public API -------------------------------------------------------------------------------

loam_status loam_engine_new(loam_engine **out, loam_model *model, const loam_engine_params *params,
                            loam_err *err) {
    *out = NULL;
    loam_engine_params p = params ? *params : loam_engine_params_default();
    if (p.n_parallel < 1 || p.n_parallel > 256)
        return loam__fail(err, LOAM_E_INVAL, "engine: n_parallel %d not in [1, 256]", p.n_parallel);
    if (p.n_ctx < 16) return loam__fail(err, LOAM_E_INVAL, "engine: n_ctx %d below 16", p.n_ctx);
    if (p.n_batch < 1) p.n_batch = 512;
    if (p.max_queue < 0) p.max_queue = 0;
    /* the session holds n_ctx × n_parallel tokens and n_batch + n_parallel rows, both int32 */
    if ((int64_t)p.n_ctx * p.n_parallel > INT32_MAX)
        return loam__fail(err, LOAM_E_INVAL,
                          "engine: n_ctx %d × n_parallel %d tokens exceed the 2^31 - 1 the KV "
                          "pool can address", p.n_ctx, p.n_parallel);
    if ((int64_t)p.n_batch + p.n_parallel > INT32_MAX)
        return loam__fail(err, LOAM_E_INVAL, "engine: n_batch %d too large", p.n_batch);
    const loam_tokenizer *tok = loam_model_tokenizer(model);
    if (!tok)
        return loam__fail(err, LOAM_E_INVAL,
                          "engine: the model has no tokenizer (tokenizer.json in its directory)");
    loam_engine *e = loam__calloc(1, sizeof *e);
    if (!e) return loam__fail(err, LOAM_E_NOMEM, "engine: out of memory");
    e->model = model;
    e->tok = tok;
    e->params = p;
    e->n_ctx_seq = p.n_ctx;
    loam_model_info info;
    loam_model_get_info(model, &info);
    e->n_vocab = info.n_vocab;
    e->n_eos = loam_model_eos_ids(model, e->eos, MAX_EOS);
    { /* as mlx-lm's generate and server: tokenizer.encode("\n") + eos_token_ids */
        size_t nl = 0;
        loam_err ignored;
        if (loam_tok_encode(tok, "\n", 1, false, e->xtc_special, 8, &nl, &ignored) != LOAM_OK)
            nl = 0; /* a tokenizer without a newline token: only the EOS ids */
        if (nl > 8) nl = 8;
        for (int32_t k = 0; k < e->n_eos; k++) e->xtc_special[nl + (size_t)k] = e->eos[k];
        e->n_xtc_special = (int32_t)nl + e->n_eos;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->rate_t0 = loam__now();

    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = p.n_ctx * p.n_parallel;
    sp.n_seq_max = p.n_parallel;
    sp.n_batch = p.n_batch + p.n_parallel;
    sp.n_logits = p.n_parallel;
    sp.n_threads = p.n_threads;
    loam_status s = loam_session_new(&e->sess, model, &sp, err);
    if (s != LOAM_OK) goto fail;
    size_t n_entries = (size_t)p.n_batch + (size_t)p.n_parallel;
    e->slots = loam__calloc((size_t)p.n_parallel, sizeof *e->slots);
    e->entries = loam__calloc(n_entries, sizeof *e->entries);
    e->entry_req = loam__calloc(n_entries, sizeof *e->entry_req);
    /* one row of each per slot: the requests of a step sample in parallel */
    const size_t n_slots = (size_t)p.n_parallel;
    e->logits = loam__malloc(n_slots * (size_t)e->n_vocab * sizeof *e->logits);
    e->top_ids = loam__malloc(n_slots * 32 * sizeof *e->top_ids);
    e->top_vals = loam__malloc(n_slots * 32 * sizeof *e->top_vals);
    e->picks = loam__malloc(n_slots * sizeof *e->picks);
    e->tail_cap = 16384;
    e->tail = loam__malloc(e->tail_cap);
    if (!e->slots || !e->entries || !e->entry_req || !e->logits || !e->top_ids || !e->top_vals ||
        !e->picks ||
        !e->tail) {
        s = loam__fail(err, LOAM_E_NOMEM, "engine: out of memory");
        goto fail;
    }
    if (pthread_create(&e->thread, NULL, worker, e) != 0) {
        s = loam__fail(err, LOAM_E_NOMEM, "engine: cannot start the worker thread");
        goto fail;
    }
    e->thread_started = true;
    *out = e;
    return LOAM_OK;
fail:
    loam_engine_free(e);
    return s;
}

void loam_engine_free(loam_engine *e) {
    if (!e) return;
    if (e->thread_started) {
        loam_engine_cancel_all(e);
        /* let the worker finish the cancelled requests, then stop it */
        for (;;) {
            pthread_mutex_lock(&e->mu);
            bool idle = e->n_active == 0 && e->n_queued == 0;
            if (idle) e->quit = true;
            pthread_cond_broadcast(&e->cv);
            pthread_mutex_unlock(&e->mu);
            if (idle) break;
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        pthread_join(e->thread, NULL);
    }
    loam_session_free(e->sess);
    loam__free(e->slots);
    loam__free(e->entries);
    loam__free(e->entry_req);
    loam__free(e->logits);
    loam__free(e->top_ids);
    loam__free(e->top_vals);
    loam__free(e->picks);
    loam__free(e->tail);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    loam__free(e);
}

loam_status loam_engine_submit(loam_engine *e, const loam_request_params *p, uint64_t *id,
                               loam_err *err) {
    if (id) *id = 0;
    if (!e || !p || !p->prompt || p->n_prompt == 0)
        return loam__fail(err, LOAM_E_INVAL, "engine: a request needs a non-empty prompt");
    if ((int64_t)p->n_prompt >= e->n_ctx_seq)
        return loam__fail(err, LOAM_E_RANGE, "engine: prompt of %zu tokens does not fit the "
                          "context of %d tokens", p->n_prompt, e->n_ctx_seq);
    for (size_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= e->n_vocab)
            return loam__fail(err, LOAM_E_RANGE, "engine: prompt token %d at %zu not in [0, %d)",
                              p->prompt[i], i, e->n_vocab);
    if (p->max_tokens < 0)
        return loam__fail(err, LOAM_E_INVAL, "engine: max_tokens %d is negative", p->max_tokens);
    if (p->top_logprobs < 0 || p->top_logprobs > 20)
        return loam__fail(err, LOAM_E_INVAL, "engine: top_logprobs %d not in [0, 20]",
                          p->top_logprobs);
    request *r = loam__calloc(1, sizeof *r);
    if (!r) return loam__fail(err, LOAM_E_NOMEM, "engine: out of memory");
    r->slot = -1;
    r->n_prompt = (int32_t)p->n_prompt;
    r->prompt = loam__malloc(p->n_prompt * sizeof *r->prompt);
    r->adapter = p->adapter;
    r->max_tokens = p->max_tokens;
    r->want_logprobs = p->want_logprobs;
    r->top_logprobs = p->top_logprobs;
    r->ignore_eos = p->ignore_eos;
    r->on_token = p->on_token;
    r->on_done = p->on_done;
    r->user = p->user;
    r->t_submit = loam__now();
    loam_status s = LOAM_OK;
    if (!r->prompt) {
        s = loam__fail(err, LOAM_E_NOMEM, "engine: out of memory");
        goto fail;
    }
    memcpy(r->prompt, p->prompt, p->n_prompt * sizeof *r->prompt);
    loam_sampler_params sp = p->sampling;
    if (sp.xtc_probability > 0.0f && sp.n_xtc_special_tokens == 0) {
        sp.xtc_special_tokens = e->xtc_special;
        sp.n_xtc_special_tokens = (size_t)e->n_xtc_special;
    }
    if ((s = loam_sampler_new(&r->sampler, &sp, e->n_vocab, err)) != LOAM_OK) goto fail;
    if ((s = loam_tok_stream_new(e->tok, true, &r->detok, err)) != LOAM_OK) goto fail;
    if ((s = loam_stop_matcher_new(&r->stops, p->stop, p->n_stop, err)) != LOAM_OK) goto fail;
    /* the penalties see the prompt too (as mlx-lm's server does) */
    for (size_t i = 0; i < p->n_prompt; i++) loam_sampler_accept(r->sampler, p->prompt[i]);
    if (r->max_tokens == 0) { /* nothing to generate: done at once */
        r->slot = -1;
        finish(e, r, LOAM_FINISH_LENGTH, NULL);
        return LOAM_OK;
    }
    pthread_mutex_lock(&e->mu);
    int32_t free_slots = e->params.n_parallel - e->n_active;
    if (e->n_queued >= e->params.max_queue + (free_slots > 0 ? free_slots : 0)) {
        int32_t waiting = e->n_queued; /* read under the lock: the worker changes it */
        pthread_mutex_unlock(&e->mu);
        s = loam__fail(err, LOAM_E_BUSY, "engine: request queue full (%d waiting)", waiting);
        goto fail;
    }
    r->id = ++e->next_id;
    if (e->queue_tail) e->queue_tail->next = r;
    else e->queue_head = r;
    e->queue_tail = r;
    e->n_queued++;
    if (id) *id = r->id;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return LOAM_OK;
fail:
    request_free(r);
    return s;
}

void loam_engine_cancel(loam_engine *e, uint64_t id) {
    if (!e || id == 0) return;
    pthread_mutex_lock(&e->mu);
    for (request *r = e->queue_head; r; r = r->next)
        if (r->id == id) atomic_store(&r->cancel, true);
    for (int32_t s = 0; s < e->params.n_parallel; s++)
        if (e->slots[s] && e->slots[s]->id == id) atomic_store(&e->slots[s]->cancel, true);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void loam_engine_cancel_all(loam_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    for (request *r = e->queue_head; r; r = r->next) atomic_store(&r->cancel, true);
    for (int32_t s = 0; s < e->params.n_parallel; s++)
        if (e->slots[s]) atomic_store(&e->slots[s]->cancel, true);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void loam_engine_get_stats(const loam_engine *e, loam_engine_stats *out) {
    memset(out, 0, sizeof *out);
    if (!e) return;
    loam_engine *m = (loam_engine *)e;
    pthread_mutex_lock(&m->mu);
    out->queued = e->n_queued;
    out->active = e->n_active;
    pthread_mutex_unlock(&m->mu);
    out->last_batch_rows = atomic_load(&m->last_batch_rows);
    out->steps_total = atomic_load(&m->steps_total);
    out->generated_tokens_total = atomic_load(&m->generated_total);
    out->prompt_tokens_total = atomic_load(&m->prompt_total);
    out->tokens_per_second = atomic_load(&m->tokens_per_second);
}
