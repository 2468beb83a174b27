/* http.c: `loam serve`, an OpenAI-compatible HTTP server on libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a
 * handler may block: a non-streamed request waits for its completions, a streamed one blocks
 * in the content reader until the engine has produced the next chunk. The engine (engine.c)
 * runs its own thread and advances every active sequence in one forward step; its callbacks
 * only append to a job under the job's mutex and signal the waiting connection thread.
 *
 * Routes: POST /v1/chat/completions, POST /v1/completions (also without /v1), GET /v1/models,
 * GET /health, GET /metrics (Prometheus text), OPTIONS (CORS preflight). Anything else: 404.
 * Auth: with an API key, every /v1/ route needs "Authorization: Bearer KEY" (401 otherwise).
 * Limits: bodies over max_body_bytes get 413; a full queue gets 429 with Retry-After.
 *
 * Lifetime of a job (one request, n choices): one reference for the connection and one per
 * engine request; the last release frees it. A client that disconnects is noticed (hang-up on
 * its socket while waiting, or a failed write) and its engine requests are cancelled, which
 * frees their slots at the next engine step. When some of a request's n choices are queued and
 * the next one is refused (queue full), the queued ones are cancelled and waited for before
 * the 429 goes out.
 *
 * Errors after the response started: a streamed choice that fails, or that the server cancels
 * at shutdown, ends the stream with an OpenAI error event (data: {"error": {...}}) and then
 * [DONE]; a non-streamed one gets 500 (failure) or 503 (shutdown) instead of a cut-short 200.
 *
 * Shutdown: loam_server_stop() stops accepting (MHD_quiesce_daemon), lets in-flight requests
 * finish for a grace period, cancels the rest (again every 20 ms, so a handler that was between
 * its `stopping` check and its submit is cancelled too), waits up to 5 s for their handlers,
 * then stops the daemon, which closes whatever connection is left (a client that stopped
 * reading). in_flight counts every generation handler from before its `stopping` check until
 * its response is done (a stream: until libmicrohttpd frees it), so the check and the count
 * cannot miss each other.
 */
#define _GNU_SOURCE
#include "server.h"

#include <cJSON.h>
#include <microhttpd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

// ---- server state -----------------------------------------------------------------------------

struct loam_server {
    struct MHD_Daemon *daemon;
    loam_model *model;
    const loam_tokenizer *tok;
    loam_engine *engine;
    loam_server_params params;
    char *model_name;
    char *api_key;
    int32_t n_vocab;
    int32_t n_ctx;
    uint16_t port;
    atomic_bool stopping;
    atomic_int in_flight;
    /* metrics */
    atomic_ulong n_requests[6]; /* by route: chat, completions, models, health, metrics, other */
    atomic_ulong n_errors_4xx, n_errors_5xx;
    atomic_ulong prompt_tokens_total, completion_tokens_total;
    pthread_mutex_t metrics_mu;
    double ttft_sum;
    uint64_t ttft_count;
    double started_at;
};

enum { R_CHAT, R_COMPLETIONS, R_MODELS, R_HEALTH, R_METRICS, R_OTHER };

// ---- jobs -------------------------------------------------------------------------------------

/* A chunk of SSE text waiting to be written. */
typedef struct sse_chunk {
    struct sse_chunk *next;
    size_t len, off;
    char data[];
} sse_chunk;

typedef struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    loam_server *srv;
    loam__oai_req req;
    loam__resp_meta meta;
    char id[48];
    int32_t n;
    loam__choice choices[LOAM__OAI_MAX_N];
    uint64_t engine_ids[LOAM__OAI_MAX_N];
    bool sent_first[LOAM__OAI_MAX_N];
    int32_t n_done;
    int32_t completion_tokens;
    bool cancelled; /* by this request's side: its client left, or a sibling choice was refused */
    bool aborted;   /* cancelled by the server (shutdown) */
    bool failed;
    bool error_sent; /* streams: the error event is queued */
    char fail_msg[256];
    double t_submit;
    bool ttft_recorded;
    /* streaming */
    sse_chunk *head, *tail;
    bool stream_finished; /* [DONE] queued */
    int fd;               /* client socket (for hang-up checks) */
} job;

typedef struct choice_ref {
    job *j;
    int32_t index;
} choice_ref;

static void job_release(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    for (int32_t i = 0; i < j->n; i++) loam__choice_clear(&j->choices[i]);
    for (sse_chunk *c = j->head; c;) {
        sse_chunk *nx = c->next;
        loam__free(c);
        c = nx;
    }
    loam__oai_req_clear(&j->req);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    loam__free(j);
}

/* Queues an SSE string (takes ownership of s). Caller holds j->mu. */
static void job_push_locked(job *j, char *s) {
    if (!s) return;
    size_t n = strlen(s);
    sse_chunk *c = loam__malloc(sizeof *c + n);
    if (c) {
        c->next = NULL;
        c->len = n;
        c->off = 0;
        memcpy(c->data, s, n);
        if (j->tail) j->tail->next = c;
        else j->head = c;
        j->tail = c;
    }
    loam__free(s);
    pthread_cond_broadcast(&j->cv);
}

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static void job_cancel_all(job *j) {
    for (int32_t i = 0; i < j->n; i++)
        if (j->engine_ids[i]) loam_engine_cancel(j->srv->engine, j->engine_ids[i]);
}

/* "data: {error}\n\n" as a heap string (NULL on out of memory). */
static char *sse_error_event(const loam__oai_error *e) {
    char *body = loam__oai_error_json(e);
    if (!body) return NULL;
    size_t n = strlen(body);
    char *s = loam__malloc(n + 9);
    if (s) {
        memcpy(s, "data: ", 6);
        memcpy(s + 6, body, n);
        memcpy(s + 6 + n, "\n\n", 3);
    }
    loam__free(body);
    return s;
}

// ---- engine callbacks (engine thread) ---------------------------------------------------------

static char *token_text(const loam_tokenizer *tok, int32_t id) {
    char buf[256];
    size_t n = 0;
    if (loam_tok_decode(tok, &id, 1, false, buf, sizeof buf - 1, &n, NULL) != LOAM_OK ||
        n >= sizeof buf)
        n = 0;
    return loam__strndup(buf, n);
}

static bool record_logprobs(job *j, loam__choice *c, const loam_token_event *ev) {
    int32_t top = j->req.top_logprobs;
    if (c->n_lp == c->cap_lp) {
        int32_t cap = c->cap_lp ? c->cap_lp * 2 : 64;
        int32_t *tok = loam__realloc(c->lp_token, (size_t)cap * sizeof *tok);
        if (tok) c->lp_token = tok;
        float *lp = loam__realloc(c->lp_logprob, (size_t)cap * sizeof *lp);
        if (lp) c->lp_logprob = lp;
        char **tt = loam__realloc(c->lp_token_text, (size_t)cap * sizeof *tt);
        if (tt) c->lp_token_text = tt;
        float *tv = loam__realloc(c->lp_top_vals, (size_t)cap * (size_t)(top ? top : 1) * sizeof *tv);
        if (tv) c->lp_top_vals = tv;
        char **tx = loam__realloc(c->lp_top_text, (size_t)cap * (size_t)(top ? top : 1) * sizeof *tx);
        if (tx) c->lp_top_text = tx;
        if (!tok || !lp || !tt || !tv || !tx) return false;
        c->cap_lp = cap;
        c->top_n = top;
    }
    int32_t i = c->n_lp;
    c->lp_token[i] = ev->token;
    c->lp_logprob[i] = ev->logprob;
    c->lp_token_text[i] = token_text(j->srv->tok, ev->token);
    for (int32_t k = 0; k < top; k++) {
        size_t at = (size_t)i * (size_t)top + (size_t)k;
        if (k < ev->n_top) {
            c->lp_top_vals[at] = ev->top_logprobs[k];
            c->lp_top_text[at] = token_text(j->srv->tok, ev->top_ids[k]);
        } else {
            c->lp_top_vals[at] = -INFINITY;
            c->lp_top_text[at] = NULL;
        }
    }
    c->n_lp++;
    return true;
}

static bool on_token(void *user, const loam_token_event *ev) {
    choice_ref *r = user;
    job *j = r->j;
    loam_server *srv = j->srv;
    pthread_mutex_lock(&j->mu);
    loam__choice *c = &j->choices[r->index];
    c->completion_tokens++;
    if (!j->ttft_recorded) {
        j->ttft_recorded = true;
        double ttft = loam__now() - j->t_submit;
        pthread_mutex_lock(&srv->metrics_mu);
        srv->ttft_sum += ttft;
        srv->ttft_count++;
        pthread_mutex_unlock(&srv->metrics_mu);
    }
    if (j->req.logprobs) record_logprobs(j, c, ev);
    if (j->req.stream) {
        if (ev->text_len > 0 || !j->sent_first[r->index]) {
            job_push_locked(j, loam__resp_chunk(&j->meta, r->index, ev->text, ev->text_len,
                                                !j->sent_first[r->index], NULL));
            j->sent_first[r->index] = true;
        }
    } else if (ev->text_len > 0) {
        loam__choice_append(c, ev->text, ev->text_len);
    }
    bool keep = !j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return keep;
}

static void on_done(void *user, const loam_request_result *res) {
    choice_ref *r = user;
    job *j = r->j;
    loam_server *srv = j->srv;
    pthread_mutex_lock(&j->mu);
    loam__choice *c = &j->choices[r->index];
    c->finish = res->finish == LOAM_FINISH_LENGTH ? "length" : "stop";
    if (res->finish == LOAM_FINISH_ERROR && !j->failed) {
        j->failed = true;
        snprintf(j->fail_msg, sizeof j->fail_msg, "%s", res->error);
    }
    /* a cancel this request did not ask for came from loam_server_stop */
    if (res->finish == LOAM_FINISH_CANCELLED && !j->cancelled) j->aborted = true;
    atomic_fetch_add(&srv->completion_tokens_total, (unsigned long)res->completion_tokens);
    j->completion_tokens += res->completion_tokens;
    bool ended = res->finish == LOAM_FINISH_STOP || res->finish == LOAM_FINISH_LENGTH;
    if (j->req.stream && ended) {
        if (res->text_len > 0)
            job_push_locked(j, loam__resp_chunk(&j->meta, r->index, res->text, res->text_len,
                                                !j->sent_first[r->index], NULL));
        j->sent_first[r->index] = true;
        job_push_locked(j, loam__resp_chunk(&j->meta, r->index, NULL, 0, false, c->finish));
    } else if (j->req.stream && (j->failed || j->aborted) && !j->error_sent) {
        j->error_sent = true;
        loam__oai_error e;
        if (j->failed)
            loam__oai_set_error(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                                j->fail_msg);
        else
            loam__oai_set_error(&e, 503, "server_error", "shutting_down", NULL,
                                "the server stopped before the request finished");
        job_push_locked(j, sse_error_event(&e));
    } else if (!j->req.stream && res->text_len > 0) {
        loam__choice_append(c, res->text, res->text_len);
    }
    j->n_done++;
    if (j->n_done == j->n && j->req.stream) {
        if (j->req.include_usage)
            job_push_locked(j, loam__resp_usage_chunk(&j->meta, j->completion_tokens));
        job_push_locked(j, loam__strdup("data: [DONE]\n\n"));
        j->stream_finished = true;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    loam__free(r);
    job_release(j);
}

// ---- responses --------------------------------------------------------------------------------

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *ctype,
                                 const char *body, const char *retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(loam_server *srv, struct MHD_Connection *c,
                                  const loam__oai_error *e) {
    if (e->http_status >= 500) atomic_fetch_add(&srv->n_errors_5xx, 1);
    else atomic_fetch_add(&srv->n_errors_4xx, 1);
    char *body = loam__oai_error_json(e);
    enum MHD_Result r = send_text(c, (unsigned)e->http_status, "application/json",
                                  body ? body : "{}", e->http_status == 429 ? "1" : NULL);
    loam__free(body);
    return r;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    enum MHD_Result r = send_text(c, status, "application/json", s ? s : "{}", NULL);
    cJSON_free(s);
    return r;
}

// ---- GET routes -------------------------------------------------------------------------------

static enum MHD_Result handle_models(loam_server *srv, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    int64_t created = (int64_t)time(NULL);
    for (int32_t id = -1; id < 64; id++) {
        char name[128];
        if (id < 0) snprintf(name, sizeof name, "%s", srv->model_name);
        else if (!loam_model_adapter_name(srv->model, id, name, sizeof name)) continue;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)created);
        cJSON_AddStringToObject(m, "owned_by", id < 0 ? "loam" : "loam-adapter");
        if (id >= 0) cJSON_AddStringToObject(m, "parent", srv->model_name);
        cJSON_AddItemToArray(data, m);
    }
    return send_json(c, 200, root);
}

static enum MHD_Result handle_metrics(loam_server *srv, struct MHD_Connection *c) {
    loam_engine_stats st;
    loam_engine_get_stats(srv->engine, &st);
    pthread_mutex_lock(&srv->metrics_mu);
    double ttft_sum = srv->ttft_sum;
    uint64_t ttft_count = srv->ttft_count;
    pthread_mutex_unlock(&srv->metrics_mu);
    uint64_t heap_bytes = loam_debug_bytes_in_use(); /* read before this handler allocates */
    static const char *const routes[] = {"chat_completions", "completions", "models",
                                         "health", "metrics", "other"};
    char *buf = loam__malloc(8192);
    if (!buf) return MHD_NO;
    size_t at = 0, cap = 8192;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        int k_ = snprintf(buf + at, cap - at, __VA_ARGS__);                                        \
        if (k_ > 0 && (size_t)k_ < cap - at) at += (size_t)k_;                                     \
    } while (0)
    EMIT("# HELP loam_requests_total HTTP requests received, by route.\n"
         "# TYPE loam_requests_total counter\n");
    for (int i = 0; i < 6; i++)
        EMIT("loam_requests_total{route=\"%s\"} %lu\n", routes[i],
             atomic_load(&srv->n_requests[i]));
    EMIT("# HELP loam_request_errors_total Error responses by class.\n"
         "# TYPE loam_request_errors_total counter\n"
         "loam_request_errors_total{class=\"4xx\"} %lu\nloam_request_errors_total{class=\"5xx\"} "
         "%lu\n",
         atomic_load(&srv->n_errors_4xx), atomic_load(&srv->n_errors_5xx));
    EMIT("# HELP loam_prompt_tokens_total Prompt tokens processed.\n"
         "# TYPE loam_prompt_tokens_total counter\nloam_prompt_tokens_total %lu\n",
         atomic_load(&srv->prompt_tokens_total));
    EMIT("# HELP loam_generated_tokens_total Tokens generated.\n"
         "# TYPE loam_generated_tokens_total counter\nloam_generated_tokens_total %llu\n",
         (unsigned long long)st.generated_tokens_total);
    EMIT("# HELP loam_queue_depth Requests waiting for a slot.\n"
         "# TYPE loam_queue_depth gauge\nloam_queue_depth %d\n",
         st.queued);
    EMIT("# HELP loam_active_sequences Sequences being decoded.\n"
         "# TYPE loam_active_sequences gauge\nloam_active_sequences %d\n",
         st.active);
    EMIT("# HELP loam_batch_size Rows in the last forward step.\n"
         "# TYPE loam_batch_size gauge\nloam_batch_size %d\n",
         st.last_batch_rows);
    EMIT("# HELP loam_steps_total Forward steps run.\n"
         "# TYPE loam_steps_total counter\nloam_steps_total %llu\n",
         (unsigned long long)st.steps_total);
    EMIT("# HELP loam_time_to_first_token_seconds Time from request to first token.\n"
         "# TYPE loam_time_to_first_token_seconds summary\n"
         "loam_time_to_first_token_seconds_sum %.6f\nloam_time_to_first_token_seconds_count "
         "%llu\n",
         ttft_sum, (unsigned long long)ttft_count);
    EMIT("# HELP loam_heap_bytes Bytes the library has allocated and not freed (its own "
         "allocator; excludes libmicrohttpd and the C library).\n# TYPE loam_heap_bytes gauge\n"
         "loam_heap_bytes %llu\n",
         (unsigned long long)heap_bytes);
    EMIT("# HELP loam_generation_tokens_per_second Generated tokens per second over the last "
         "few seconds.\n# TYPE loam_generation_tokens_per_second gauge\n"
         "loam_generation_tokens_per_second %.3f\n",
         st.tokens_per_second);
#undef EMIT
    enum MHD_Result r = send_text(c, 200, "text/plain; version=0.0.4", buf, NULL);
    loam__free(buf);
    return r;
}

// ---- completions ------------------------------------------------------------------------------

static void fill_sampling(const loam__oai_req *q, loam_sampler_params *sp) {
    *sp = loam_sampler_params_default();
    sp->temperature = isnan(q->temperature) ? 1.0f : (float)q->temperature; /* OpenAI's default */
    if (!isnan(q->top_p)) sp->top_p = (float)q->top_p;
    if (!isnan(q->min_p)) sp->min_p = (float)q->min_p;
    if (!isnan(q->xtc_probability)) sp->xtc_probability = (float)q->xtc_probability;
    if (!isnan(q->xtc_threshold)) sp->xtc_threshold = (float)q->xtc_threshold;
    if (q->top_k >= 0) sp->top_k = q->top_k;
    if (!isnan(q->repetition_penalty)) sp->repetition_penalty = (float)q->repetition_penalty;
    sp->presence_penalty = (float)q->presence_penalty;
    sp->frequency_penalty = (float)q->frequency_penalty;
    if (q->penalty_window > 0) {
        sp->repetition_window = q->penalty_window;
        sp->presence_window = q->penalty_window;
        sp->frequency_window = q->penalty_window;
    }
    sp->n_logit_bias = (size_t)q->n_bias;
    sp->logit_bias = q->bias;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->head) {
            sse_chunk *c = j->head;
            size_t n = c->len - c->off;
            if (n > max) n = max;
            memcpy(buf, c->data + c->off, n);
            c->off += n;
            if (c->off == c->len) {
                j->head = c->next;
                if (!j->head) j->tail = NULL;
                loam__free(c);
            }
            pthread_mutex_unlock(&j->mu);
            return (ssize_t)n;
        }
        if (j->stream_finished) {
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (client_gone(j->fd) || j->cancelled) {
            j->cancelled = true;
            pthread_mutex_unlock(&j->mu);
            job_cancel_all(j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
}

static void stream_free(void *cls) {
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    bool unfinished = j->n_done < j->n;
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
    if (unfinished) job_cancel_all(j);
    atomic_fetch_sub(&j->srv->in_flight, 1);
    job_release(j);
}

/* Answers one completion request. The caller counted it in srv->in_flight; *streaming becomes
 * true when a stream response took that count over (stream_free gives it back). */
static enum MHD_Result handle_generate(loam_server *srv, struct MHD_Connection *c,
                                       loam__oai_kind kind, const char *body, size_t len,
                                       bool *streaming) {
    loam__oai_error e;
    job *j = loam__calloc(1, sizeof *j);
    if (!j) return MHD_NO;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->srv = srv;
    j->fd = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) j->fd = ci->connect_fd;
    enum MHD_Result ret;
    char *prompt = NULL;
    int32_t *ids = NULL;
    loam_err err = {0};

    if (!loam__oai_parse(kind, body, len, srv->n_vocab, &j->req, &e)) goto error;
    loam__oai_req *q = &j->req;
    int32_t adapter = -1;
    if (q->model && strcmp(q->model, srv->model_name) != 0) {
        adapter = loam_model_adapter_id(srv->model, q->model);
        if (adapter < 0) {
            loam__oai_set_error(&e, 400, "invalid_request_error", "model_not_found", "model",
                                "model '%.64s' is not served here (see GET /v1/models)", q->model);
            goto error;
        }
    }
    /* prompt text -> ids */
    size_t prompt_len = 0;
    bool add_special;
    if (kind == LOAM__OAI_CHAT) {
        if (loam_tok_apply_chat_template(srv->tok, q->messages_json, q->tools_json,
                                         q->kwargs_json, true, &prompt, &err) != LOAM_OK) {
            loam__oai_set_error(&e, 400, "invalid_request_error", NULL, "messages",
                                "chat template: %s", err.msg);
            goto error;
        }
        add_special = false;
    } else {
        prompt = loam__strdup(q->prompt);
        add_special = true;
    }
    if (!prompt) goto oom;
    prompt_len = strlen(prompt);
    size_t n_ids = 0, cap = prompt_len + 16;
    ids = loam__malloc(cap * sizeof *ids);
    if (!ids) goto oom;
    if (loam_tok_encode(srv->tok, prompt, prompt_len, add_special, ids, cap, &n_ids, &err) !=
        LOAM_OK) {
        loam__oai_set_error(&e, 400, "invalid_request_error", NULL,
                            kind == LOAM__OAI_CHAT ? "messages" : "prompt", "tokenizer: %s",
                            err.msg);
        goto error;
    }
    if (n_ids == 0) {
        loam__oai_set_error(&e, 400, "invalid_request_error", NULL, "prompt",
                            "the prompt is empty after tokenization");
        goto error;
    }
    if ((int64_t)n_ids >= srv->n_ctx) {
        loam__oai_set_error(&e, 400, "invalid_request_error", "context_length_exceeded",
                            kind == LOAM__OAI_CHAT ? "messages" : "prompt",
                            "the prompt has %zu tokens; this server's context is %d tokens",
                            n_ids, srv->n_ctx);
        goto error;
    }

    snprintf(j->id, sizeof j->id, "%s-%016llx", kind == LOAM__OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)((uint64_t)time(NULL) * 2654435761u ^ (uint64_t)(uintptr_t)j));
    j->meta.id = j->id;
    j->meta.model = q->model ? q->model : srv->model_name;
    j->meta.created = (int64_t)time(NULL);
    j->meta.kind = kind;
    j->meta.prompt_tokens = (int32_t)n_ids;
    j->meta.logprobs = q->logprobs;
    j->meta.top_logprobs = q->top_logprobs;
    j->n = q->n;
    for (int32_t i = 0; i < j->n; i++) {
        j->choices[i].index = i;
        j->choices[i].top_n = q->top_logprobs;
    }
    j->t_submit = loam__now();

    loam_request_params rp = loam_request_params_default();
    rp.prompt = ids;
    rp.n_prompt = n_ids;
    rp.adapter = adapter;
    int32_t room = srv->n_ctx - (int32_t)n_ids;
    rp.max_tokens = q->max_tokens >= 0 ? q->max_tokens : srv->params.max_tokens_default;
    if (rp.max_tokens > room) rp.max_tokens = room;
    fill_sampling(q, &rp.sampling);
    rp.stop = (const char *const *)q->stop;
    rp.n_stop = (size_t)q->n_stop;
    rp.top_logprobs = q->logprobs ? (q->top_logprobs > 0 ? q->top_logprobs : 0) : 0;
    rp.want_logprobs = q->logprobs;
    rp.ignore_eos = q->ignore_eos;
    rp.on_token = on_token;
    rp.on_done = on_done;
    int32_t submitted = 0;
    for (int32_t i = 0; i < j->n; i++) {
        choice_ref *r = loam__malloc(sizeof *r);
        if (!r) {
            loam__oai_set_error(&e, 500, "server_error", NULL, NULL, "out of memory");
            break;
        }
        r->j = j;
        r->index = i;
        rp.user = r;
        /* each choice draws from its own stream: seed + index (same seed, same texts) */
        rp.sampling.seed = q->has_seed ? q->seed + (uint64_t)i : LOAM_SEED_RANDOM;
        pthread_mutex_lock(&j->mu);
        j->refs++;
        pthread_mutex_unlock(&j->mu);
        loam_status s = loam_engine_submit(srv->engine, &rp, &j->engine_ids[i], &err);
        if (s != LOAM_OK) {
            loam__free(r);
            pthread_mutex_lock(&j->mu);
            j->refs--;
            pthread_mutex_unlock(&j->mu);
            if (s == LOAM_E_BUSY)
                loam__oai_set_error(&e, 429, "rate_limit_error", "queue_full", NULL,
                                    "the server is busy (request queue full); retry shortly");
            else
                loam__oai_set_error(&e, s == LOAM_E_RANGE ? 400 : 500,
                                    s == LOAM_E_RANGE ? "invalid_request_error" : "server_error",
                                    NULL, NULL, "%s", err.msg);
            break;
        }
        submitted++;
    }
    loam__free(ids);
    ids = NULL;
    loam__free(prompt);
    prompt = NULL;
    if (submitted < j->n) {
        /* cancel what was queued, wait for their callbacks, then answer with the error */
        pthread_mutex_lock(&j->mu);
        j->cancelled = true;
        j->n = submitted;
        pthread_mutex_unlock(&j->mu);
        job_cancel_all(j);
        pthread_mutex_lock(&j->mu);
        while (j->n_done < submitted) pthread_cond_wait(&j->cv, &j->mu);
        pthread_mutex_unlock(&j->mu);
        goto error;
    }
    /* counted once every choice is in (a refused request processed no prompt) */
    atomic_fetch_add(&srv->prompt_tokens_total,
                     (unsigned long)((size_t)j->meta.prompt_tokens * (size_t)j->n));

    if (q->stream) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j, stream_free);
        if (!r) {
            pthread_mutex_lock(&j->mu);
            j->cancelled = true;
            pthread_mutex_unlock(&j->mu);
            job_cancel_all(j);
            job_release(j);
            return MHD_NO;
        }
        *streaming = true;
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r); /* the job reference now belongs to stream_free */
        return ret;
    }

    /* non-streamed: wait, watching for a client that hangs up */
    pthread_mutex_lock(&j->mu);
    while (j->n_done < j->n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (!j->cancelled && client_gone(j->fd)) {
            j->cancelled = true;
            pthread_mutex_unlock(&j->mu);
            job_cancel_all(j);
            pthread_mutex_lock(&j->mu);
        }
    }
    bool cancelled = j->cancelled, failed = j->failed, aborted = j->aborted;
    pthread_mutex_unlock(&j->mu);
    if (cancelled) {
        job_release(j);
        return MHD_NO; /* client is gone: drop the connection */
    }
    if (failed) {
        loam__oai_set_error(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                            j->fail_msg);
        goto error;
    }
    if (aborted) { /* shutdown cut it short: an error, never a truncated 200 */
        loam__oai_set_error(&e, 503, "server_error", "shutting_down", NULL,
                            "the server stopped before the request finished");
        goto error;
    }
    char *out = loam__resp_full(&j->meta, j->choices, j->n);
    ret = send_text(c, 200, "application/json", out ? out : "{}", NULL);
    loam__free(out);
    job_release(j);
    return ret;

oom:
    loam__oai_set_error(&e, 500, "server_error", NULL, NULL, "out of memory");
error:
    loam__free(ids);
    loam__free(prompt);
    ret = send_error(srv, c, &e);
    job_release(j);
    return ret;
}

// ---- request plumbing -------------------------------------------------------------------------

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_large;
} conn_ctx;

static bool authorized(loam_server *srv, struct MHD_Connection *c) {
    if (!srv->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *k = h + 7;
    /* constant-time compare over the key's length */
    size_t a = strlen(k), b = strlen(srv->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned)(k[i < a ? i : 0] ^ srv->api_key[i]);
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    loam_server *srv = cls;
    conn_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = loam__calloc(1, sizeof *ctx);
        if (!ctx) return MHD_NO;
        *con_cls = ctx;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!ctx->too_large) {
            if (ctx->len + *upload_size > srv->params.max_body_bytes) {
                ctx->too_large = true;
            } else {
                if (ctx->len + *upload_size + 1 > ctx->cap) {
                    size_t cap = ctx->cap ? ctx->cap : 4096;
                    while (cap < ctx->len + *upload_size + 1) cap *= 2;
                    char *p = loam__realloc(ctx->body, cap);
                    if (!p) return MHD_NO;
                    ctx->body = p;
                    ctx->cap = cap;
                }
                memcpy(ctx->body + ctx->len, upload_data, *upload_size);
                ctx->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }

    loam__oai_error e;
    const char *path = url;
    if (strncmp(path, "/v1/", 4) == 0) path += 3;
    bool is_post = strcmp(method, "POST") == 0, is_get = strcmp(method, "GET") == 0;
    int route = R_OTHER;
    if (strcmp(path, "/chat/completions") == 0) route = R_CHAT;
    else if (strcmp(path, "/completions") == 0) route = R_COMPLETIONS;
    else if (strcmp(path, "/models") == 0) route = R_MODELS;
    else if (strcmp(url, "/health") == 0) route = R_HEALTH;
    else if (strcmp(url, "/metrics") == 0) route = R_METRICS;
    atomic_fetch_add(&srv->n_requests[route], 1);

    if (strcmp(method, "OPTIONS") == 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
        enum MHD_Result ret = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (route == R_HEALTH && is_get)
        return send_text(c, 200, "application/json",
                         atomic_load(&srv->stopping) ? "{\"status\":\"stopping\"}"
                                                     : "{\"status\":\"ok\"}",
                         NULL);
    if (route == R_METRICS && is_get) return handle_metrics(srv, c);
    if (route == R_OTHER || (route == R_MODELS && !is_get) ||
        ((route == R_CHAT || route == R_COMPLETIONS) && !is_post)) {
        loam__oai_set_error(&e, 404, "invalid_request_error", "not_found", NULL,
                            "no route for %.8s %.100s", method, url);
        return send_error(srv, c, &e);
    }
    if (!authorized(srv, c)) {
        loam__oai_set_error(&e, 401, "authentication_error", "invalid_api_key", NULL,
                            "missing or invalid API key (send 'Authorization: Bearer KEY')");
        return send_error(srv, c, &e);
    }
    if (route == R_MODELS) return handle_models(srv, c);
    if (ctx->too_large) {
        loam__oai_set_error(&e, 413, "invalid_request_error", "request_too_large", NULL,
                            "request body is larger than %zu bytes", srv->params.max_body_bytes);
        return send_error(srv, c, &e);
    }
    /* counted before the check: loam_server_stop sets `stopping` and then waits for the count */
    atomic_fetch_add(&srv->in_flight, 1);
    if (atomic_load(&srv->stopping)) {
        atomic_fetch_sub(&srv->in_flight, 1);
        loam__oai_set_error(&e, 503, "server_error", "shutting_down", NULL,
                            "the server is shutting down");
        return send_error(srv, c, &e);
    }
    bool streaming = false;
    enum MHD_Result ret =
        handle_generate(srv, c, route == R_CHAT ? LOAM__OAI_CHAT : LOAM__OAI_COMPLETION,
                        ctx->body ? ctx->body : "", ctx->len, &streaming);
    if (!streaming) atomic_fetch_sub(&srv->in_flight, 1);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn_ctx *ctx = *con_cls;
    if (ctx) {
        loam__free(ctx->body);
        loam__free(ctx);
        *con_cls = NULL;
    }
}

// ---- public API -------------------------------------------------------------------------------

loam_server_params loam_server_params_default(void) {
    loam_server_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1";
    p.port = 8080;
    p.n_parallel = 4;
    p.n_ctx = 4096;
    p.max_queue = 64;
    p.max_tokens_default = 512;
    p.max_body_bytes = 4u << 20;
    p.max_connections = 256;
    return p;
}

loam_status loam_server_start(loam_server **out, loam_model *model,
                              const loam_server_params *params, loam_err *err) {
    *out = NULL;
    loam_server_params p = params ? *params : loam_server_params_default();
    if (p.port < 0 || p.port > 65535)
        return loam__fail(err, LOAM_E_INVAL, "serve: port %d out of range", p.port);
    const loam_tokenizer *tok = loam_model_tokenizer(model);
    if (!tok)
        return loam__fail(err, LOAM_E_INVAL,
                          "serve: the model directory has no tokenizer.json; the server needs one");
    loam_server *srv = loam__calloc(1, sizeof *srv);
    if (!srv) return loam__fail(err, LOAM_E_NOMEM, "serve: out of memory");
    pthread_mutex_init(&srv->metrics_mu, NULL);
    srv->model = model;
    srv->tok = tok;
    srv->params = p;
    srv->n_vocab = loam_tok_n_vocab(tok);
    srv->started_at = loam__now();
    srv->model_name = loam__strdup(p.model_name ? p.model_name : "loam");
    if (p.api_key && p.api_key[0]) srv->api_key = loam__strdup(p.api_key);
    if (!srv->model_name || (p.api_key && p.api_key[0] && !srv->api_key)) {
        loam_server_free(srv);
        return loam__fail(err, LOAM_E_NOMEM, "serve: out of memory");
    }
    loam_engine_params ep = loam_engine_params_default();
    ep.n_parallel = p.n_parallel;
    ep.n_ctx = p.n_ctx;
    ep.max_queue = p.max_queue;
    ep.n_threads = p.n_threads;
    loam_status s = loam_engine_new(&srv->engine, model, &ep, err);
    if (s != LOAM_OK) {
        loam_server_free(srv);
        return s;
    }
    srv->n_ctx = loam_engine_n_ctx(srv->engine);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)p.port);
    if (inet_pton(AF_INET, p.host, &addr.sin_addr) != 1) {
        loam_server_free(srv);
        return loam__fail(err, LOAM_E_INVAL, "serve: --host '%s' is not an IPv4 address",
                          p.host);
    }
    srv->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC,
        (uint16_t)p.port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)600, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        loam_server_free(srv);
        return loam__fail(err, LOAM_E_IO, "serve: cannot listen on %s:%d (in use?)", p.host,
                          p.port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : (uint16_t)p.port;
    *out = srv;
    return LOAM_OK;
}

int32_t loam_server_port(const loam_server *srv) { return srv ? srv->port : 0; }

void loam_server_stop(loam_server *srv, double grace_seconds) {
    if (!srv || !srv->daemon) return;
    atomic_store(&srv->stopping, true);
    MHD_socket ls = MHD_quiesce_daemon(srv->daemon);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    double until = loam__now() + grace_seconds;
    while (atomic_load(&srv->in_flight) > 0 && loam__now() < until) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* cancel, again and again: a handler may submit after a cancel (see the top of the file);
     * a stream whose client stopped reading can hold its count until the daemon closes it */
    until = loam__now() + 5.0;
    do {
        loam_engine_cancel_all(srv->engine);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    } while (atomic_load(&srv->in_flight) > 0 && loam__now() < until);
    MHD_stop_daemon(srv->daemon); /* shuts the sockets down: waiting handlers see the hang-up */
    srv->daemon = NULL;
}

void loam_server_free(loam_server *srv) {
    if (!srv) return;
    if (srv->daemon) loam_server_stop(srv, 0);
    loam_engine_free(srv->engine);
    loam__free(srv->model_name);
    loam__free(srv->api_key);
    pthread_mutex_destroy(&srv->metrics_mu);
    loam__free(srv);
}
