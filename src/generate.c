/* generate.c: the one-call API. loam_generate / loam_chat run n completions of one prompt on a
 * private engine (n slots, so the n sequences share every weight read) and hand back the
 * texts, finish reasons and usage figures; an optional callback streams the text as it comes
 * and can stop a completion early.
 */
#include "loam_internal.h"

#include <pthread.h>

typedef struct gen_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t n, n_done;
    loam_completion *out;
    size_t *cap;
    const loam_generate_params *p;
    int32_t prompt_tokens;
    double prompt_seconds, gen_seconds;
    bool oom;
    loam_status error_status;
    char error[256];
} gen_state;

typedef struct gen_ref {
    gen_state *g;
    int32_t index;
} gen_ref;

static bool append(gen_state *g, int32_t i, const char *text, size_t len) {
    loam_completion *c = &g->out[i];
    if (c->text_len + len + 1 > g->cap[i]) {
        size_t cap = g->cap[i] ? g->cap[i] : 256;
        while (cap < c->text_len + len + 1) cap *= 2;
        char *t = loam__realloc(c->text, cap);
        if (!t) return false;
        c->text = t;
        g->cap[i] = cap;
    }
    memcpy(c->text + c->text_len, text, len);
    c->text_len += len;
    c->text[c->text_len] = '\0';
    return true;
}

static bool gen_on_token(void *user, const loam_token_event *ev) {
    gen_ref *r = user;
    gen_state *g = r->g;
    bool keep = true;
    if (ev->text_len > 0) {
        pthread_mutex_lock(&g->mu);
        if (!append(g, r->index, ev->text, ev->text_len)) g->oom = true;
        pthread_mutex_unlock(&g->mu);
        if (g->p->on_text) keep = g->p->on_text(g->p->user, r->index, ev->text, ev->text_len);
    }
    return keep && !g->oom;
}

static void gen_on_done(void *user, const loam_request_result *res) {
    gen_ref *r = user;
    gen_state *g = r->g;
    if (res->text_len > 0 && g->p->on_text)
        g->p->on_text(g->p->user, r->index, res->text, res->text_len);
    pthread_mutex_lock(&g->mu);
    if (res->text_len > 0 && !append(g, r->index, res->text, res->text_len)) g->oom = true;
    loam_completion *c = &g->out[r->index];
    if (!c->text && !append(g, r->index, "", 0)) g->oom = true; /* "" for an empty completion */
    c->finish = res->finish;
    c->n_tokens = res->completion_tokens;
    g->prompt_tokens = res->prompt_tokens;
    if (res->prompt_seconds > g->prompt_seconds) g->prompt_seconds = res->prompt_seconds;
    if (res->gen_seconds > g->gen_seconds) g->gen_seconds = res->gen_seconds;
    if (res->finish == LOAM_FINISH_ERROR && g->error_status == LOAM_OK) {
        g->error_status = res->status != LOAM_OK ? res->status : LOAM_E_INVAL;
        snprintf(g->error, sizeof g->error, "%s", res->error);
    }
    g->n_done++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

loam_generate_params loam_generate_params_default(void) {
    loam_generate_params p;
    memset(&p, 0, sizeof p);
    p.n = 1;
    p.max_tokens = 256;
    p.sampling = loam_sampler_params_default();
    p.n_ctx = 2048;
    return p;
}

void loam_completions_free(loam_completion *c, int32_t n) {
    if (!c) return;
    for (int32_t i = 0; i < n; i++) loam__free(c[i].text);
    loam__free(c);
}

static loam_status run(loam_model *m, const int32_t *ids, size_t n_ids,
                       const loam_generate_params *p, loam_completion **out, loam_usage *usage,
                       loam_err *err) {
    int32_t adapter = -1;
    if (p->adapter && p->adapter[0]) {
        adapter = loam_model_adapter_id(m, p->adapter);
        if (adapter < 0)
            return loam__fail(err, LOAM_E_NOTFOUND, "generate: no adapter named '%s' is loaded",
                              p->adapter);
    }
    if (p->n < 1 || p->n > 256)
        return loam__fail(err, LOAM_E_INVAL, "generate: n = %d not in [1, 256]", p->n);
    loam_engine_params ep = loam_engine_params_default();
    ep.n_parallel = p->n;
    ep.n_ctx = p->n_ctx > 0 ? p->n_ctx : 2048;
    if ((int64_t)n_ids + 1 > ep.n_ctx) ep.n_ctx = (int32_t)n_ids + 1;
    ep.max_queue = 0;
    ep.n_threads = p->n_threads;
    gen_state g;
    memset(&g, 0, sizeof g);
    g.n = p->n;
    g.p = p;
    g.out = loam__calloc((size_t)p->n, sizeof *g.out);
    g.cap = loam__calloc((size_t)p->n, sizeof *g.cap);
    gen_ref *refs = loam__calloc((size_t)p->n, sizeof *refs);
    loam_engine *e = NULL;
    loam_status s;
    if (!g.out || !g.cap || !refs) {
        s = loam__fail(err, LOAM_E_NOMEM, "generate: out of memory");
        goto done;
    }
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    if ((s = loam_engine_new(&e, m, &ep, err)) != LOAM_OK) goto done_sync;
    int32_t submitted = 0;
    for (int32_t i = 0; i < p->n; i++) {
        refs[i] = (gen_ref){&g, i};
        loam_request_params rp = loam_request_params_default();
        rp.prompt = ids;
        rp.n_prompt = n_ids;
        rp.adapter = adapter;
        rp.max_tokens = p->max_tokens;
        rp.sampling = p->sampling;
        if (p->sampling.seed != LOAM_SEED_RANDOM) /* completion i: its own stream */
            rp.sampling.seed = p->sampling.seed + (uint64_t)i;
        rp.stop = p->stop;
        rp.n_stop = p->n_stop;
        rp.on_token = gen_on_token;
        rp.on_done = gen_on_done;
        rp.user = &refs[i];
        if ((s = loam_engine_submit(e, &rp, NULL, err)) != LOAM_OK) break;
        submitted++;
    }
    pthread_mutex_lock(&g.mu);
    while (g.n_done < submitted) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    for (int32_t i = 0; i < p->n && !g.oom; i++) /* an empty completion is "", never NULL */
        if (!g.out[i].text && !(g.out[i].text = loam__strdup(""))) g.oom = true;
    if (s == LOAM_OK && g.oom) s = loam__fail(err, LOAM_E_NOMEM, "generate: out of memory");
    if (s == LOAM_OK && g.error_status != LOAM_OK)
        s = loam__fail(err, g.error_status, "generate: %s", g.error);
    if (usage) {
        memset(usage, 0, sizeof *usage);
        usage->prompt_tokens = (int32_t)n_ids;
        for (int32_t i = 0; i < p->n; i++) usage->completion_tokens += g.out[i].n_tokens;
        usage->prompt_seconds = g.prompt_seconds;
        usage->gen_seconds = g.gen_seconds;
    }
done_sync:
    loam_engine_free(e);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
done:
    loam__free(refs);
    loam__free(g.cap);
    if (s != LOAM_OK) {
        loam_completions_free(g.out, p->n);
        g.out = NULL;
    }
    *out = g.out;
    return s;
}

static loam_status encode_all(const loam_tokenizer *tok, const char *text, bool add_special,
                              int32_t **ids, size_t *n, loam_err *err) {
    size_t len = strlen(text), cap = len + 16;
    *ids = loam__malloc(cap * sizeof **ids);
    if (!*ids) return loam__fail(err, LOAM_E_NOMEM, "generate: out of memory");
    loam_status s = loam_tok_encode(tok, text, len, add_special, *ids, cap, n, err);
    if (s == LOAM_OK && *n > cap) { /* cannot happen for byte-level BPE; handled anyway */
        loam__free(*ids);
        cap = *n;
        *ids = loam__malloc(cap * sizeof **ids);
        if (!*ids) return loam__fail(err, LOAM_E_NOMEM, "generate: out of memory");
        s = loam_tok_encode(tok, text, len, add_special, *ids, cap, n, err);
    }
    if (s == LOAM_OK && *n == 0)
        s = loam__fail(err, LOAM_E_INVAL, "generate: the prompt is empty after tokenization");
    if (s != LOAM_OK) {
        loam__free(*ids);
        *ids = NULL;
    }
    return s;
}

loam_status loam_generate(loam_model *m, const char *prompt, const loam_generate_params *params,
                          loam_completion **out, loam_usage *usage, loam_err *err) {
    *out = NULL;
    loam_generate_params p = params ? *params : loam_generate_params_default();
    const loam_tokenizer *tok = loam_model_tokenizer(m);
    if (!tok) return loam__fail(err, LOAM_E_INVAL, "generate: the model has no tokenizer");
    if (!prompt) return loam__fail(err, LOAM_E_INVAL, "generate: prompt is NULL");
    int32_t *ids = NULL;
    size_t n = 0;
    loam_status s = encode_all(tok, prompt, true, &ids, &n, err);
    if (s != LOAM_OK) return s;
    s = run(m, ids, n, &p, out, usage, err);
    loam__free(ids);
    return s;
}

loam_status loam_chat(loam_model *m, const char *messages_json, const char *template_kwargs_json,
                      const loam_generate_params *params, loam_completion **out,
                      loam_usage *usage, loam_err *err) {
    *out = NULL;
    loam_generate_params p = params ? *params : loam_generate_params_default();
    const loam_tokenizer *tok = loam_model_tokenizer(m);
    if (!tok) return loam__fail(err, LOAM_E_INVAL, "chat: the model has no tokenizer");
    if (!messages_json) return loam__fail(err, LOAM_E_INVAL, "chat: messages is NULL");
    char *prompt = NULL;
    loam_status s = loam_tok_apply_chat_template(tok, messages_json, NULL, template_kwargs_json,
                                                 true, &prompt, err);
    if (s != LOAM_OK) return s;
    int32_t *ids = NULL;
    size_t n = 0;
    s = encode_all(tok, prompt, false, &ids, &n, err);
    loam__free(prompt);
    if (s != LOAM_OK) return s;
    s = run(m, ids, n, &p, out, usage, err);
    loam__free(ids);
    return s;
}
