/* test_api.c: the public API as an application uses it (loam.h only): models with their
 * tokenizer and EOS ids, adapters loaded and unloaded, the one-call generation API, the engine
 * (continuous batching, queue, cancel), and their error paths, on a tiny model written by
 * tests/tiny_model.h. Also fault injection: every allocation of loam_model_open failing in
 * turn gives an error, never a crash or a leak. */
#include "loam.h"
#include "test.h"
#include "tiny_model.h"

#include <pthread.h>
#include <unistd.h>

static char g_dir[256];
static loam_model *g_model;

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/loam_test_api_%ld", (long)getpid());
    if (tiny_model_write(g_dir) != 0) {
        fprintf(stderr, "cannot write the tiny model into %s\n", g_dir);
        exit(1);
    }
    loam_err err = {0};
    if (loam_model_open(&g_model, g_dir, NULL, &err) != LOAM_OK) {
        fprintf(stderr, "cannot open the tiny model: %s\n", err.msg);
        exit(1);
    }
}

static loam_generate_params greedy(int32_t max_tokens) {
    loam_generate_params p = loam_generate_params_default();
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0;
    p.n_threads = 1;
    return p;
}

static void test_model_text(void) {
    const loam_tokenizer *tok = loam_model_tokenizer(g_model);
    CHECK(tok != NULL);
    int32_t eos[8];
    CHECK_EQ_I64(loam_model_eos_ids(g_model, eos, 8), 2);
    CHECK_EQ_I64(eos[0], 257);
    CHECK_EQ_I64(eos[1], 258);
    char *prompt = NULL;
    loam_err err = {0};
    CHECK_OK(loam_tok_apply_chat_template(tok, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL,
                                          NULL, true, &prompt, &err),
             err);
    CHECK_STR(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    loam_free(prompt);
}

static void test_open_errors(void) {
    loam_model *m = (loam_model *)1;
    loam_err err = {0};
    CHECK(loam_model_open(&m, "/nonexistent/model", NULL, &err) != LOAM_OK);
    CHECK(m == NULL);
    CHECK(strstr(err.msg, "/nonexistent/model") != NULL);
    CHECK_EQ_I64(loam_model_open(&m, NULL, NULL, &err), LOAM_E_INVAL);
    loam_model_close(NULL);
    /* devices: an unknown one is refused at open; the default session backend is the CPU */
    loam_model_params mp = loam_model_params_default();
    mp.device = (loam_device)7;
    CHECK_EQ_I64(loam_model_open(&m, g_dir, &mp, &err), LOAM_E_INVAL);
    CHECK(strstr(err.msg, "device 7") != NULL);
    loam_session *s = NULL;
    CHECK_OK(loam_session_new(&s, g_model, NULL, &err), err);
    CHECK_STR(loam_session_backend(s), getenv("LOAM_DEVICE") ? loam_session_backend(s) : "cpu");
    loam_session_free(s);
    CHECK(loam_session_backend(NULL) == NULL);
}

static void test_generate_greedy(void) {
    loam_generate_params p = greedy(24);
    loam_completion *a = NULL, *b = NULL;
    loam_usage u;
    loam_err err = {0};
    CHECK_OK(loam_generate(g_model, "the cat", &p, &a, &u, &err), err);
    CHECK_OK(loam_generate(g_model, "the cat", &p, &b, NULL, &err), err);
    if (a && b) {
        CHECK_STR(a[0].text, b[0].text);
        CHECK(a[0].n_tokens <= 24);
        CHECK(a[0].finish == LOAM_FINISH_LENGTH || a[0].finish == LOAM_FINISH_STOP);
        CHECK(u.prompt_tokens > 0);
        CHECK_EQ_I64(u.completion_tokens, a[0].n_tokens);
    }
    loam_completions_free(a, 1);
    loam_completions_free(b, 1);
}

typedef struct {
    char buf[4096];
    size_t len;
    int calls;
    int stop_after;
} collect;

static bool collect_text(void *user, int32_t index, const char *text, size_t len) {
    collect *c = user;
    (void)index;
    if (c->len + len < sizeof c->buf) {
        memcpy(c->buf + c->len, text, len);
        c->len += len;
        c->buf[c->len] = 0;
    }
    c->calls++;
    return c->stop_after == 0 || c->calls < c->stop_after;
}

static void test_streaming_and_stop(void) {
    loam_generate_params p = greedy(40);
    collect c;
    memset(&c, 0, sizeof c);
    p.on_text = collect_text;
    p.user = &c;
    loam_completion *a = NULL;
    loam_err err = {0};
    CHECK_OK(loam_generate(g_model, "hello", &p, &a, NULL, &err), err);
    if (!a) return;
    CHECK_STR(c.buf, a[0].text);
    /* a stop string cut out of the greedy text */
    if (a[0].text_len >= 6) {
        char stop[4];
        memcpy(stop, a[0].text + 3, 3);
        stop[3] = 0;
        const char *stops[1] = {stop};
        loam_generate_params q = greedy(40);
        q.stop = stops;
        q.n_stop = 1;
        loam_completion *s = NULL;
        CHECK_OK(loam_generate(g_model, "hello", &q, &s, NULL, &err), err);
        if (s) {
            size_t cut = (size_t)(strstr(a[0].text, stop) - a[0].text);
            CHECK_EQ_I64(s[0].text_len, cut);
            CHECK(strncmp(s[0].text, a[0].text, cut) == 0);
            CHECK_EQ_I64(s[0].finish, LOAM_FINISH_STOP);
        }
        loam_completions_free(s, 1);
    }
    /* a callback that stops early */
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    loam_completion *e = NULL;
    CHECK_OK(loam_generate(g_model, "hello", &p, &e, NULL, &err), err);
    if (e) {
        CHECK_EQ_I64(e[0].finish, LOAM_FINISH_CANCELLED);
        CHECK(e[0].text_len <= a[0].text_len);
    }
    loam_completions_free(e, 1);
    loam_completions_free(a, 1);
}

static void test_n_and_seed(void) {
    loam_generate_params p = loam_generate_params_default();
    p.n = 3;
    p.max_tokens = 16;
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 99;
    p.n_threads = 1;
    loam_completion *a = NULL, *b = NULL;
    loam_err err = {0};
    CHECK_OK(loam_generate(g_model, "the", &p, &a, NULL, &err), err);
    CHECK_OK(loam_generate(g_model, "the", &p, &b, NULL, &err), err);
    if (a && b) {
        for (int i = 0; i < 3; i++) CHECK_STR(a[i].text, b[i].text);
        CHECK(strcmp(a[0].text, a[1].text) != 0 || strcmp(a[1].text, a[2].text) != 0);
    }
    /* completion 1 of n=3 equals a lone completion with seed + 1 */
    loam_generate_params one = p;
    one.n = 1;
    one.sampling.seed = 100;
    loam_completion *c = NULL;
    CHECK_OK(loam_generate(g_model, "the", &one, &c, NULL, &err), err);
    if (a && c) CHECK_STR(c[0].text, a[1].text);
    loam_completions_free(a, 3);
    loam_completions_free(b, 3);
    loam_completions_free(c, 1);
}

static void test_chat(void) {
    loam_generate_params p = greedy(8);
    loam_completion *a = NULL;
    loam_err err = {0};
    CHECK_OK(loam_chat(g_model, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, &p, &a, NULL,
                       &err),
             err);
    loam_completions_free(a, 1);
    CHECK(loam_chat(g_model, "not json", NULL, &p, &a, NULL, &err) != LOAM_OK);
    CHECK(a == NULL);
}

static void test_adapters(void) {
    char adir[512];
    snprintf(adir, sizeof adir, "%s/adapter", g_dir);
    loam_err err = {0};
    CHECK_OK(loam_model_load_adapter(g_model, "voice", adir, &err), err);
    CHECK(loam_model_load_adapter(g_model, "voice", adir, &err) != LOAM_OK); /* duplicate */
    CHECK(loam_model_load_adapter(g_model, "bad", "/nonexistent", &err) != LOAM_OK);
    int32_t id = loam_model_adapter_id(g_model, "voice");
    CHECK(id >= 0);
    char name[64];
    CHECK(loam_model_adapter_name(g_model, id, name, sizeof name));
    CHECK_STR(name, "voice");
    CHECK(!loam_model_adapter_name(g_model, 63, name, sizeof name));
    loam_generate_params p = greedy(16);
    loam_completion *base = NULL, *lora = NULL;
    CHECK_OK(loam_generate(g_model, "the cat", &p, &base, NULL, &err), err);
    p.adapter = "voice";
    CHECK_OK(loam_generate(g_model, "the cat", &p, &lora, NULL, &err), err);
    if (base && lora) CHECK(strcmp(base[0].text, lora[0].text) != 0);
    loam_completions_free(base, 1);
    loam_completions_free(lora, 1);
    p.adapter = "nope";
    CHECK_EQ_I64(loam_generate(g_model, "the", &p, &lora, NULL, &err), LOAM_E_NOTFOUND);

    /* unloading an adapter a sequence still uses is refused */
    loam_session *s = NULL;
    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = 64;
    CHECK_OK(loam_session_new(&s, g_model, &sp, &err), err);
    loam_batch_entry e = {.seq = 0, .pos = 0, .token = 5, .adapter = id, .want_logits = true};
    CHECK_OK(loam_session_decode(s, &e, 1, &err), err);
    CHECK_EQ_I64(loam_model_unload_adapter(g_model, "voice", &err), LOAM_E_BUSY);
    loam_session_seq_reset(s, 0);
    CHECK_OK(loam_model_unload_adapter(g_model, "voice", &err), err);
    CHECK_EQ_I64(loam_model_unload_adapter(g_model, "voice", &err), LOAM_E_NOTFOUND);
    loam_session_free(s);
    CHECK_OK(loam_model_load_adapter(g_model, "voice", adir, &err), err);
}

static void test_generate_errors(void) {
    loam_generate_params p = greedy(4);
    loam_completion *a = (loam_completion *)1;
    loam_err err = {0};
    CHECK_EQ_I64(loam_generate(g_model, NULL, &p, &a, NULL, &err), LOAM_E_INVAL);
    CHECK(a == NULL);
    p.n = 0;
    CHECK_EQ_I64(loam_generate(g_model, "x", &p, &a, NULL, &err), LOAM_E_INVAL);
    p.n = 1;
    CHECK(loam_generate(g_model, "", &p, &a, NULL, &err) != LOAM_OK); /* empty prompt */
    p.sampling.top_p = 7; /* out of range: the sampler names the field */
    CHECK_EQ_I64(loam_generate(g_model, "x", &p, &a, NULL, &err), LOAM_E_INVAL);
    CHECK(strstr(err.msg, "top_p") != NULL);
}

// ---- engine -----------------------------------------------------------------------------------

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    loam_finish finish;
    char text[2048];
    size_t len;
    int tokens;
    bool text_null; /* on_done got a NULL text (the contract says it never does) */
} waiter;

static bool w_token(void *user, const loam_token_event *ev) {
    waiter *w = user;
    pthread_mutex_lock(&w->mu);
    if (w->len + ev->text_len < sizeof w->text) {
        memcpy(w->text + w->len, ev->text, ev->text_len);
        w->len += ev->text_len;
        w->text[w->len] = 0;
    }
    w->tokens++;
    pthread_mutex_unlock(&w->mu);
    return true;
}

static void w_done(void *user, const loam_request_result *res) {
    waiter *w = user;
    pthread_mutex_lock(&w->mu);
    w->text_null = res->text == NULL;
    if (res->text && w->len + res->text_len < sizeof w->text) {
        memcpy(w->text + w->len, res->text, res->text_len);
        w->len += res->text_len;
        w->text[w->len] = 0;
    }
    w->finish = res->finish;
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void w_init(waiter *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void w_wait(waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static loam_request_params req(const int32_t *ids, size_t n, waiter *w, uint64_t seed, int max) {
    loam_request_params r = loam_request_params_default();
    r.prompt = ids;
    r.n_prompt = n;
    r.max_tokens = max;
    r.sampling.temperature = 0.9f;
    r.sampling.seed = seed;
    r.on_token = w_token;
    r.on_done = w_done;
    r.user = w;
    return r;
}

static void test_engine_batch_equals_alone(void) {
    loam_engine *e = NULL;
    loam_engine_params ep = loam_engine_params_default();
    ep.n_parallel = 4;
    ep.n_ctx = 128;
    ep.n_threads = 1;
    loam_err err = {0};
    CHECK_OK(loam_engine_new(&e, g_model, &ep, &err), err);
    if (!e) return;
    int32_t p1[] = {10, 20, 30, 40, 50}, p2[] = {7, 8, 9}, p3[] = {100, 101, 102, 103, 104, 105, 106};
    waiter alone, w[4];
    w_init(&alone);
    loam_request_params r = req(p1, 5, &alone, 1234, 30);
    CHECK_OK(loam_engine_submit(e, &r, NULL, &err), err);
    w_wait(&alone);
    for (int i = 0; i < 4; i++) w_init(&w[i]);
    loam_request_params rs[4] = {req(p2, 3, &w[0], 1, 30), req(p1, 5, &w[1], 1234, 30),
                                 req(p3, 7, &w[2], 5, 30), req(p2, 3, &w[3], 9, 12)};
    rs[2].adapter = loam_model_adapter_id(g_model, "voice");
    for (int i = 0; i < 4; i++) CHECK_OK(loam_engine_submit(e, &rs[i], NULL, &err), err);
    for (int i = 0; i < 4; i++) w_wait(&w[i]);
    CHECK_STR(w[1].text, alone.text);
    CHECK_EQ_I64(w[1].tokens, alone.tokens);
    loam_engine_stats st;
    loam_engine_get_stats(e, &st);
    CHECK(st.steps_total > 0 && st.generated_tokens_total > 0);
    CHECK_EQ_I64(st.active, 0);
    loam_engine_free(e);
}

static void test_engine_queue_cancel(void) {
    loam_engine *e = NULL;
    loam_engine_params ep = loam_engine_params_default();
    ep.n_parallel = 1;
    ep.max_queue = 1;
    ep.n_ctx = 512;
    ep.n_threads = 1;
    loam_err err = {0};
    CHECK_OK(loam_engine_new(&e, g_model, &ep, &err), err);
    if (!e) return;
    int32_t p[] = {1, 2, 3};
    waiter a, b, c;
    w_init(&a);
    w_init(&b);
    w_init(&c);
    loam_request_params ra = req(p, 3, &a, 1, 400), rb = req(p, 3, &b, 2, 400),
                        rc = req(p, 3, &c, 3, 400);
    ra.ignore_eos = rb.ignore_eos = true;
    uint64_t ia = 0, ib = 0;
    CHECK_OK(loam_engine_submit(e, &ra, &ia, &err), err);
    CHECK_OK(loam_engine_submit(e, &rb, &ib, &err), err);
    CHECK_EQ_I64(loam_engine_submit(e, &rc, NULL, &err), LOAM_E_BUSY);
    loam_engine_cancel(e, ib);
    loam_engine_cancel(e, ia);
    w_wait(&a);
    w_wait(&b);
    CHECK_EQ_I64(a.finish, LOAM_FINISH_CANCELLED);
    CHECK_EQ_I64(b.finish, LOAM_FINISH_CANCELLED);
    CHECK(!a.text_null && !b.text_null); /* cancelled requests get "" too, never NULL */
    /* bad requests */
    loam_request_params bad = req(p, 3, &c, 1, 4);
    bad.n_prompt = 0;
    CHECK_EQ_I64(loam_engine_submit(e, &bad, NULL, &err), LOAM_E_INVAL);
    int32_t big[] = {TINY_VOCAB + 5};
    bad = req(big, 1, &c, 1, 4);
    CHECK_EQ_I64(loam_engine_submit(e, &bad, NULL, &err), LOAM_E_RANGE);
    int32_t *longp = calloc(600, sizeof *longp);
    bad = req(longp, 600, &c, 1, 4);
    CHECK_EQ_I64(loam_engine_submit(e, &bad, NULL, &err), LOAM_E_RANGE);
    free(longp);
    bad = req(p, 3, &c, 1, 0); /* max_tokens 0: done at once */
    CHECK_OK(loam_engine_submit(e, &bad, NULL, &err), err);
    w_wait(&c);
    CHECK_EQ_I64(c.finish, LOAM_FINISH_LENGTH);
    /* freeing with requests in flight cancels them */
    waiter d;
    w_init(&d);
    loam_request_params rd = req(p, 3, &d, 4, 400);
    rd.ignore_eos = true;
    CHECK_OK(loam_engine_submit(e, &rd, NULL, &err), err);
    loam_engine_free(e);
    CHECK(d.done);
}

/* More requests cancelled at once than any fixed per-step buffer: every one ends exactly once
 * (the engine once collected them in a 256-entry stack array). */
static void test_engine_cancel_many(void) {
    enum { N = 600 };
    loam_engine *e = NULL;
    loam_engine_params ep = loam_engine_params_default();
    ep.n_parallel = 1;
    ep.max_queue = N;
    ep.n_ctx = 512;
    ep.n_threads = 1;
    loam_err err = {0};
    CHECK_OK(loam_engine_new(&e, g_model, &ep, &err), err);
    if (!e) return;
    int32_t p[] = {1, 2, 3};
    waiter *w = calloc(N, sizeof *w);
    int submitted = 0;
    for (int i = 0; i < N; i++) {
        w_init(&w[i]);
        loam_request_params r = req(p, 3, &w[i], (uint64_t)i, 400);
        r.ignore_eos = true;
        if (loam_engine_submit(e, &r, NULL, &err) == LOAM_OK) submitted++;
    }
    CHECK_EQ_I64(submitted, N);
    loam_engine_stats st;
    loam_engine_get_stats(e, &st);
    CHECK(st.queued >= N - 2);
    loam_engine_cancel_all(e);
    int cancelled = 0;
    for (int i = 0; i < submitted; i++) {
        w_wait(&w[i]);
        cancelled += w[i].finish == LOAM_FINISH_CANCELLED;
        CHECK(!w[i].text_null);
    }
    CHECK(cancelled >= N - 1); /* the running one may have finished first */
    loam_engine_get_stats(e, &st);
    CHECK_EQ_I64(st.queued, 0);
    CHECK_EQ_I64(st.active, 0);
    loam_engine_free(e);
    free(w);
}

/* Sizes whose product does not fit the session's int32 fields are refused, not wrapped. */
static void test_engine_params_overflow(void) {
    loam_engine *e = NULL;
    loam_err err = {0};
    loam_engine_params ep = loam_engine_params_default();
    ep.n_ctx = 1 << 29;
    ep.n_parallel = 8;
    CHECK_EQ_I64(loam_engine_new(&e, g_model, &ep, &err), LOAM_E_INVAL);
    CHECK(e == NULL && strstr(err.msg, "n_parallel") != NULL);
    ep = loam_engine_params_default();
    ep.n_batch = INT32_MAX;
    CHECK_EQ_I64(loam_engine_new(&e, g_model, &ep, &err), LOAM_E_INVAL);
    CHECK(e == NULL);
}

static void test_alloc_failures(void) {
    uint64_t base = loam_debug_bytes_in_use();
    int failures = 0, successes = 0;
    for (uint64_t n = 1; n < 400; n++) {
        loam_model *m = NULL;
        loam_err err = {0};
        loam_debug_fail_alloc_after(n);
        loam_status s = loam_model_open(&m, g_dir, NULL, &err);
        loam_debug_fail_alloc_after(0);
        if (s == LOAM_OK) {
            successes++;
            loam_model_close(m);
            break;
        }
        failures++;
        CHECK(m == NULL);
        CHECK(err.msg[0] != 0);
    }
    CHECK(failures > 5);
    CHECK_EQ_I64(successes, 1);
    CHECK_EQ_I64(loam_debug_bytes_in_use(), base);
}

static void run_tests(void) {
    setup();
    TEST(test_model_text);
    TEST(test_open_errors);
    TEST(test_generate_greedy);
    TEST(test_streaming_and_stop);
    TEST(test_n_and_seed);
    TEST(test_chat);
    TEST(test_adapters);
    TEST(test_generate_errors);
    TEST(test_engine_batch_equals_alone);
    TEST(test_engine_queue_cancel);
    TEST(test_engine_cancel_many);
    TEST(test_engine_params_overflow);
    TEST(test_alloc_failures);
    loam_model_close(g_model);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}
