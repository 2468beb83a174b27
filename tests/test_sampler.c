/* test_sampler.c: the sampler against the definitions of FORMATS.md §7 and a naive twin.
 *
 * The twin (ref_filter) does what mlx-lm's code does, literally: sort the whole vocabulary,
 * mask with -inf filter by filter, then softmax(lp / T). The sampler's survivors must be exactly
 * the twin's, on hand cases (with ties) and on random 152k vocabularies; empirical frequencies
 * from a fixed seed must pass a chi-square test against the twin's distribution. The sampler is
 * included as source to reach its file-local helpers.
 * XTC's twin is mlx-lm's apply_xtc read literally: probs = softmax of the masked log-probs,
 * mask = probs > min(probs where probs > threshold), special tokens unmasked; top_k then keeps
 * the k highest of what is left.
 */
#include "../src/sampler.c"

#include "test.h"

// ---- the naive twin ---------------------------------------------------------------------------

static const double *g_cmp_v;
static int cmp_rank(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_cmp_v[x] > g_cmp_v[y])
        return -1;
    if (g_cmp_v[x] < g_cmp_v[y])
        return 1;
    return x < y ? -1 : x > y;
}

/* lp: log-probabilities (double). Writes the final distribution (0 for removed tokens) into
 * prob and returns the number of survivors. XTC (when p->xtc_probability > 0) is applied when
 * xtc_coin <= p->xtc_probability. */
static int64_t ref_filter_xtc(const double *lp, int64_t n, const loam_sampler_params *p,
                              double xtc_coin, double *prob) {
    double *m = malloc((size_t)n * sizeof *m);
    int32_t *order = malloc((size_t)n * sizeof *order);
    for (int64_t i = 0; i < n; i++) {
        m[i] = lp[i];
        order[i] = (int32_t)i;
    }
    g_cmp_v = lp;
    qsort(order, (size_t)n, sizeof *order, cmp_rank);
    if (p->top_p > 0 && p->top_p < 1) { /* mass of strictly higher ranks < top_p */
        double before = 0;
        for (int64_t r = 0; r < n; r++) {
            if (!(before < p->top_p))
                m[order[r]] = -INFINITY;
            before += exp(lp[order[r]]);
        }
    }
    if (p->min_p > 0) {
        float thr = (float)lp[order[0]] + (float)log(p->min_p); /* float32, as mlx */
        for (int64_t r = 0; r < n; r++)
            if (r >= p->min_tokens_to_keep && lp[order[r]] < thr)
                m[order[r]] = -INFINITY;
    }
    if (p->xtc_probability > 0 && xtc_coin <= p->xtc_probability) {
        double mx = -INFINITY, tot = 0, lo = INFINITY;
        for (int64_t i = 0; i < n; i++)
            mx = m[i] > mx ? m[i] : mx;
        double *q = malloc((size_t)n * sizeof *q);
        for (int64_t i = 0; i < n; i++)
            tot += q[i] = exp(m[i] - mx);
        for (int64_t i = 0; i < n; i++) {
            q[i] /= tot;
            if (q[i] > p->xtc_threshold && q[i] < lo)
                lo = q[i];
        }
        for (int64_t i = 0; i < n; i++) {
            bool special = false;
            for (size_t j = 0; j < p->n_xtc_special_tokens; j++)
                special |= p->xtc_special_tokens[j] == i;
            if (q[i] > lo && !special)
                m[i] = -INFINITY;
        }
        free(q);
    }
    if (p->top_k > 0) { /* the k highest of what is left, in rank order */
        int64_t seen = 0;
        for (int64_t r = 0; r < n; r++)
            if (m[order[r]] != -INFINITY && ++seen > p->top_k)
                m[order[r]] = -INFINITY;
    }
    double mx = -INFINITY, tot = 0;
    for (int64_t i = 0; i < n; i++)
        mx = m[i] > mx ? m[i] : mx;
    for (int64_t i = 0; i < n; i++)
        tot += prob[i] = exp((m[i] - mx) / p->temperature);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        prob[i] /= tot;
        kept += m[i] != -INFINITY;
    }
    free(m);
    free(order);
    return kept;
}

static int64_t ref_filter(const double *lp, int64_t n, const loam_sampler_params *p, double *prob) {
    return ref_filter_xtc(lp, n, p, 1.0, prob);
}

static void log_softmax_d(const float *z, int64_t n, double *lp) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int64_t i = 0; i < n; i++)
        s += exp(z[i] - mx);
    for (int64_t i = 0; i < n; i++)
        lp[i] = z[i] - mx - log(s);
}

static loam_sampler *mk(loam_sampler_params p, int32_t n_vocab) {
    loam_sampler *s = NULL;
    loam_err e = {0};
    CHECK_OK(loam_sampler_new(&s, &p, n_vocab, &e), e);
    return s;
}

/* The sampler's survivor set for logits z as a 0/1 mask, with the XTC coin xtc_coin; returns
 * the count. */
static int64_t sampler_kept_xtc(loam_sampler *s, const float *z, double xtc_coin, uint8_t *mask) {
    int64_t n = s->n_vocab;
    float *lp = malloc((size_t)n * sizeof *lp);
    memcpy(lp, z, (size_t)n * sizeof *lp);
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        mx = lp[i] > mx ? lp[i] : mx;
    for (int64_t i = 0; i < n; i++)
        sum += expf(lp[i] - (float)mx);
    float lse = (float)mx + (float)log(sum), lpmax = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        lp[i] -= lse;
        lpmax = lp[i] > lpmax ? lp[i] : lpmax;
    }
    bool all;
    const bool xtc = s->p.xtc_probability > 0;
    int64_t keep = survivors(s, lp, lpmax, !xtc, &all);
    if (xtc)
        keep = xtc_then_top_k(s, lp, lpmax, keep, &all, xtc_coin);
    memset(mask, 0, (size_t)n);
    for (int64_t r = 0; r < keep; r++)
        mask[all ? r : s->idx[r]] = 1;
    free(lp);
    return keep;
}

static int64_t sampler_kept(loam_sampler *s, const float *z, uint8_t *mask) {
    return sampler_kept_xtc(s, z, 0.0, mask);
}

// ---- tests ------------------------------------------------------------------------------------

static void test_defaults_and_validation(void) {
    loam_sampler_params p = loam_sampler_params_default();
    CHECK(p.temperature == 0.0f && p.top_p == 1.0f && p.min_p == 0.0f && p.top_k == 0);
    CHECK_EQ_I64(p.repetition_window, 20);
    CHECK_EQ_I64(p.presence_window, 20);
    CHECK_EQ_I64(p.frequency_window, 20);
    CHECK_EQ_I64(p.min_tokens_to_keep, 1);
    CHECK(p.seed == LOAM_SEED_RANDOM);
    CHECK(p.xtc_probability == 0.0f && p.xtc_threshold == 0.1f && p.n_xtc_special_tokens == 0);

    loam_sampler *s = (loam_sampler *)1;
    loam_err e;
#define BAD(stmt, want, needle)                                                                    \
    do {                                                                                           \
        loam_sampler_params q = loam_sampler_params_default();                                     \
        stmt;                                                                                      \
        CHECK_EQ_I64(loam_sampler_new(&s, &q, 100, &e), want);                                     \
        CHECK(s == NULL);                                                                          \
        CHECK(strstr(e.msg, needle) != NULL);                                                      \
    } while (0)
    BAD(q.temperature = -1, LOAM_E_INVAL, "temperature");
    BAD(q.temperature = NAN, LOAM_E_INVAL, "temperature");
    BAD(q.top_p = 1.5f, LOAM_E_INVAL, "top_p");
    BAD(q.min_p = -0.1f, LOAM_E_INVAL, "min_p");
    BAD(q.min_tokens_to_keep = 0, LOAM_E_INVAL, "min_tokens_to_keep");
    BAD(q.top_k = -2, LOAM_E_INVAL, "top_k");
    BAD(q.repetition_penalty = -1, LOAM_E_INVAL, "repetition_penalty");
    BAD(q.presence_penalty = INFINITY, LOAM_E_INVAL, "presence_penalty");
    BAD(q.frequency_penalty = NAN, LOAM_E_INVAL, "frequency_penalty");
    BAD(q.repetition_window = 0, LOAM_E_INVAL, "repetition_window");
    BAD(q.frequency_window = (1 << 20) + 1, LOAM_E_INVAL, "frequency_window");
    loam_logit_bias bad_tok = {100, 1.0f}, bad_val = {3, INFINITY};
    BAD((q.logit_bias = &bad_tok, q.n_logit_bias = 1), LOAM_E_RANGE, "token 100");
    BAD((q.logit_bias = &bad_val, q.n_logit_bias = 1), LOAM_E_INVAL, "token 3");
    BAD(q.n_logit_bias = 2, LOAM_E_INVAL, "logit_bias is NULL");
    BAD(q.xtc_probability = 1.5f, LOAM_E_INVAL, "xtc_probability");
    BAD(q.xtc_threshold = 0.6f, LOAM_E_INVAL, "xtc_threshold");
    BAD(q.xtc_threshold = NAN, LOAM_E_INVAL, "xtc_threshold");
    int32_t bad_special = 100;
    BAD((q.xtc_special_tokens = &bad_special, q.n_xtc_special_tokens = 1), LOAM_E_RANGE,
        "xtc_special_tokens[0] = 100");
    BAD(q.n_xtc_special_tokens = 1, LOAM_E_INVAL, "xtc_special_tokens is NULL");
#undef BAD
    loam_sampler_params q = loam_sampler_params_default();
    CHECK_EQ_I64(loam_sampler_new(&s, &q, 0, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "n_vocab") != NULL);
    /* allocation failure is an error, not a crash, and leaks nothing */
    uint64_t before = loam_debug_bytes_in_use();
    for (uint64_t k = 1; k <= 4; k++) {
        loam_debug_fail_alloc_after(k);
        CHECK_EQ_I64(loam_sampler_new(&s, &q, 1000, &e), LOAM_E_NOMEM);
        loam_debug_fail_alloc_after(0);
    }
    CHECK_EQ_I64(loam_debug_bytes_in_use(), before);
    loam_sampler_free(NULL);
}

static void test_rng_reference(void) {
    /* splitmix64 from state 0 (published first value), then xoshiro256** streams pinned from an
     * independent big-integer implementation: the generator is defined by these numbers. */
    uint64_t x = 0;
    CHECK(splitmix64(&x) == 0xe220a8397b1dcdafull);
    loam_sampler_params p = loam_sampler_params_default();
    p.seed = 0;
    loam_sampler *s = mk(p, 4);
    CHECK(xoshiro_next(s->rng) == 0x99ec5f36cb75f2b4ull);
    CHECK(xoshiro_next(s->rng) == 0xbf6e1f784956452aull);
    CHECK(xoshiro_next(s->rng) == 0x1a5f849d4933e6e0ull);
    loam_sampler_free(s);
    p.seed = 42;
    s = mk(p, 4);
    CHECK(loam_sampler_seed(s) == 42);
    CHECK(xoshiro_next(s->rng) == 0x15780b2e0c2ec716ull);
    CHECK(xoshiro_next(s->rng) == 0x6104d9866d113a7eull);
    loam_sampler_reset(s);
    CHECK(xoshiro_next(s->rng) == 0x15780b2e0c2ec716ull);
    loam_sampler_free(s);
    /* an unset seed draws one and reports it; reusing it reproduces the stream */
    p.seed = LOAM_SEED_RANDOM;
    s = mk(p, 4);
    uint64_t used = loam_sampler_seed(s), first = xoshiro_next(s->rng);
    CHECK(used != LOAM_SEED_RANDOM);
    loam_sampler_free(s);
    p.seed = used;
    s = mk(p, 4);
    CHECK(xoshiro_next(s->rng) == first);
    loam_sampler_free(s);
}

static void test_greedy(void) {
    loam_sampler_params p = loam_sampler_params_default();
    p.top_k = 1; /* ignored at temperature 0 */
    p.top_p = 0.1f;
    loam_sampler *s = mk(p, 6);
    float z[6] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 2.9f};
    double lp[6];
    log_softmax_d(z, 6, lp);
    float logprob = 0;
    CHECK_EQ_I64(loam_sampler_sample(s, z, &logprob), 1); /* tie 1 vs 3: lowest id */
    CHECK_CLOSE(logprob, lp[1], 1e-6);
    double total = 0;
    for (int i = 0; i < 6; i++) {
        CHECK_CLOSE(z[i], lp[i], 1e-6); /* logits now hold the log-softmax */
        total += exp(z[i]);
    }
    CHECK_CLOSE(total, 1.0, 1e-6);
    loam_sampler_free(s);
    s = mk(p, 3);
    /* NaN counts as -inf; all -inf gives -1 */
    float y[3] = {NAN, -1.0f, NAN};
    CHECK_EQ_I64(loam_sampler_sample(s, y, NULL), 1);
    float w[3] = {-INFINITY, NAN, -INFINITY};
    CHECK_EQ_I64(loam_sampler_sample(s, w, &logprob), -1);
    CHECK(isinf(logprob) && logprob < 0);
    float inf[3] = {0.0f, INFINITY, 1.0f};
    CHECK_EQ_I64(loam_sampler_sample(s, inf, NULL), 1);
    loam_sampler_free(s);
    /* a temperature whose inverse overflows float behaves as greedy */
    p.temperature = 1e-39f;
    p.top_k = 0;
    p.top_p = 1.0f;
    s = mk(p, 3);
    float tiny[3] = {0.5f, 2.0f, 1.0f};
    CHECK_EQ_I64(loam_sampler_sample(s, tiny, NULL), 1);
    loam_sampler_free(s);
}

/* Exact survivor sets on hand cases, ties included. */
/* A hand case on 5 tokens: the sampler's survivors (with XTC coin `coin`) are `kept` (0/1 per
 * id), and so are the naive twin's. */
static void check_hand(const loam_sampler_params *p, const float *z, double coin, const char *kept,
                       const char *label, size_t c) {
    loam_sampler *s = mk(*p, 5);
    uint8_t mask[5];
    sampler_kept_xtc(s, z, coin, mask);
    char got[6] = {0};
    for (int i = 0; i < 5; i++)
        got[i] = mask[i] ? '1' : '0';
    if (strcmp(got, kept) != 0)
        fprintf(stderr, "%s %zu: kept %s, want %s\n", label, c, got, kept);
    CHECK_STR(got, kept);
    double lp[5], prob[5];
    log_softmax_d(z, 5, lp);
    ref_filter_xtc(lp, 5, p, coin, prob);
    for (int i = 0; i < 5; i++)
        CHECK((prob[i] > 0) == (kept[i] == '1'));
    loam_sampler_free(s);
}

static void test_filters_hand(void) {
    /* probabilities 0.4, 0.2, 0.2, 0.1, 0.1 at ids 3, 0, 4, 1, 2: rank order 3, 0, 4, 1, 2 */
    const double pr[5] = {0.2, 0.1, 0.1, 0.4, 0.2};
    float z[5];
    for (int i = 0; i < 5; i++)
        z[i] = (float)log(pr[i]);
    struct {
        float top_p, min_p;
        int32_t top_k, min_keep;
        const char *kept; /* 0/1 per id */
    } cases[] = {
        {0.39f, 0, 0, 1, "00010"},    /* the top rank alone holds 0.4 */
        {0.45f, 0, 0, 1, "10010"},    /* needs 3 and 0 (tie with 4 at 0.2: lower id first) */
        {0.61f, 0, 0, 1, "10011"},    /* 3, 0, 4 */
        {0.79f, 0, 0, 1, "10011"},    /* mass before rank 3 is 0.8 */
        {0.85f, 0, 0, 1, "11011"},    /* 3, 0, 4, 1 (tie with 2: lower id) */
        {1.0f, 0, 2, 1, "10010"},     /* top_k 2 */
        {1.0f, 0, 3, 1, "10011"},     /* top_k 3: 4 after 0 in the tie */
        {1.0f, 0.45f, 0, 1, "10011"}, /* p >= 0.45 * 0.4 keeps the tied 0.2s */
        {1.0f, 0.55f, 0, 1, "00010"},
        {1.0f, 0.55f, 0, 2, "10010"}, /* min_tokens_to_keep 2 */
        {1.0f, 1.0f, 0, 1, "00010"},
        {0.61f, 0.4f, 2, 1, "10010"}, /* chain: top_p 3 ranks, min_p all 5, top_k 2 */
        {0.3f, 0, 4, 3, "00010"},     /* min_tokens_to_keep does not revive top_p's removals */
        {0, 0, 0, 1, "11111"},        /* top_p 0 is off */
        {1.0f, 0, 7, 1, "11111"},     /* k >= vocabulary keeps all */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        loam_sampler_params p = loam_sampler_params_default();
        p.temperature = 1.0f;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k;
        p.min_tokens_to_keep = cases[c].min_keep;
        check_hand(&p, z, 1.0, cases[c].kept, "case", c);
    }
}

/* XTC on the hand distribution of test_filters_hand (ranks 3, 0, 4, 1, 2 with 0.4, 0.2, 0.2,
 * 0.1, 0.1). */
static void test_xtc_hand(void) {
    const double pr[5] = {0.2, 0.1, 0.1, 0.4, 0.2};
    float z[5];
    for (int i = 0; i < 5; i++)
        z[i] = (float)log(pr[i]);
    int32_t special3 = 3, special0 = 0;
    struct {
        float thr, top_p;
        int32_t top_k;
        const int32_t *special;
        double coin;
        const char *kept;
    } cases[] = {
        {0.15f, 1.0f, 0, NULL, 0.0, "11101"},  /* above: 3, 0, 4; least likely 0.2: 3 goes */
        {0.3f, 1.0f, 0, NULL, 0.0, "11111"},   /* only 3 above: nothing removed */
        {0.05f, 1.0f, 0, NULL, 0.0, "01100"},  /* all above, least 0.1: 3, 0, 4 go */
        {0.0f, 1.0f, 0, NULL, 0.0, "01100"},   /* threshold 0 likewise */
        {0.5f, 1.0f, 0, NULL, 0.0, "11111"},   /* none above */
        {0.15f, 1.0f, 0, &special3, 0.0, "11111"},
        {0.05f, 1.0f, 0, &special0, 0.0, "11100"}, /* 0 stays, 3 and 4 go */
        {0.15f, 1.0f, 2, NULL, 0.0, "10001"},  /* then top_k 2 of 0, 4, 1, 2 */
        {0.15f, 1.0f, 0, NULL, 0.6, "11111"},  /* the coin says no (probability 0.5) */
        {0.15f, 1.0f, 2, NULL, 0.6, "10010"},  /* ... and top_k alone */
        {0.2f, 0.61f, 0, NULL, 0.0, "10001"},  /* renormalized over top_p's 3: 0.5, 0.25, 0.25 */
        {0.3f, 0.61f, 0, NULL, 0.0, "10011"},  /* only 3 (0.5) above */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        loam_sampler_params p = loam_sampler_params_default();
        p.temperature = 1.0f;
        p.top_p = cases[c].top_p;
        p.top_k = cases[c].top_k;
        p.xtc_probability = 0.5f;
        p.xtc_threshold = cases[c].thr;
        p.xtc_special_tokens = cases[c].special;
        p.n_xtc_special_tokens = cases[c].special ? 1 : 0;
        check_hand(&p, z, cases[c].coin, cases[c].kept, "xtc case", c);
    }
}

static uint64_t lcg_state = 12345;
static double lcg_uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}

/* The float log-softmax the sampler computes (as its own lse), widened to double. */
static void float_logprobs(const float *z, int32_t n, double *lp) {
    double mx = -INFINITY, sum = 0;
    for (int32_t i = 0; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int32_t i = 0; i < n; i++)
        sum += expf(z[i] - (float)mx);
    float lse = (float)mx + (float)log(sum);
    for (int32_t i = 0; i < n; i++)
        lp[i] = (double)(z[i] - lse);
}

/* Random 152k vocabularies: the partial-selection survivors equal the full-sort twin's. */
static void test_filters_large(void) {
    const int32_t n = 151936;
    float *z = malloc((size_t)n * sizeof *z);
    double *lp = malloc((size_t)n * sizeof *lp), *prob = malloc((size_t)n * sizeof *prob);
    uint8_t *mask = malloc((size_t)n);
    struct {
        float top_p, min_p;
        int32_t top_k;
        double spread; /* logit scale: small = flat distribution */
    } cases[] = {
        {0.9f, 0, 0, 8.0},    {0.95f, 0, 20, 3.0}, {0.5f, 0.05f, 0, 6.0}, {1.0f, 0, 40, 2.0},
        {1.0f, 0.1f, 0, 5.0}, {0.999f, 0, 0, 0.5}, /* flat: the prefix grows to most of it */
        {0.7f, 0, 1000, 0.3},
    };
    /* XTC cases: a few dozen tokens are made likely (bumps) so that several pass the threshold */
    struct {
        float top_p, min_p, thr;
        int32_t top_k;
    } xcases[] = {
        {1.0f, 0, 0.02f, 0}, {0.9f, 0, 0.03f, 0}, {1.0f, 0.01f, 0.01f, 30},
        {0.95f, 0, 0.1f, 5}, {1.0f, 0, 0.0f, 0},
    };
    int32_t special[3] = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int32_t i = 0; i < n; i++) {
            /* a few repeated values make ties */
            double g = lcg_uniform();
            z[i] = (float)(cases[c].spread * (g < 0.01 ? 0.5 : g * g * g));
        }
        loam_sampler_params p = loam_sampler_params_default();
        p.temperature = 0.8f;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k;
        loam_sampler *s = mk(p, n);
        int64_t keep = sampler_kept(s, z, mask);
        float_logprobs(z, n, lp); /* the twin sees the sampler's float log-probabilities */
        int64_t want = ref_filter(lp, n, &p, prob);
        CHECK_EQ_I64(keep, want);
        int64_t diff = 0;
        for (int32_t i = 0; i < n; i++)
            diff += (mask[i] != 0) != (prob[i] > 0);
        CHECK_EQ_I64(diff, 0);
        loam_sampler_free(s);
    }
    for (size_t c = 0; c < sizeof xcases / sizeof xcases[0]; c++) {
        for (int32_t i = 0; i < n; i++) {
            double g = lcg_uniform();
            z[i] = (float)(4.0 * g * g * g);
        }
        for (int b = 0; b < 40; b++) { /* bumps, some tied */
            int32_t at = (int32_t)(lcg_uniform() * n);
            z[at] = (float)(12.0 + (b % 7) * 0.25);
            if (b < 3)
                special[b] = at;
        }
        loam_sampler_params p = loam_sampler_params_default();
        p.temperature = 0.8f;
        p.top_p = xcases[c].top_p;
        p.min_p = xcases[c].min_p;
        p.top_k = xcases[c].top_k;
        p.xtc_probability = 1.0f;
        p.xtc_threshold = xcases[c].thr;
        if (c % 2) {
            p.xtc_special_tokens = special;
            p.n_xtc_special_tokens = 3;
        }
        loam_sampler *s = mk(p, n);
        int64_t keep = sampler_kept_xtc(s, z, 0.5, mask);
        float_logprobs(z, n, lp);
        int64_t want = ref_filter_xtc(lp, n, &p, 0.5, prob);
        /* XTC removed something (the case is not vacuous) */
        loam_sampler_params q = p;
        q.xtc_probability = 0;
        double *prob0 = malloc((size_t)n * sizeof *prob0);
        int64_t without = ref_filter(lp, n, &q, prob0);
        free(prob0);
        if (xcases[c].top_k == 0 && !(want < without))
            fprintf(stderr, "xtc large case %zu: %lld kept with XTC, %lld without\n", c,
                    (long long)want, (long long)without);
        if (xcases[c].top_k == 0)
            CHECK(want < without);
        CHECK_EQ_I64(keep, want);
        int64_t diff = 0;
        for (int32_t i = 0; i < n; i++)
            diff += (mask[i] != 0) != (prob[i] > 0);
        CHECK_EQ_I64(diff, 0);
        loam_sampler_free(s);
    }
    free(z);
    free(lp);
    free(prob);
    free(mask);
}

/* Draws 200000 tokens from s on the logits z0 [12] and checks them against the mixture
 * w·pa + (1 - w)·pb: every reported logprob is log pa or log pb of its token, a token of
 * probability 0 never comes, and the counts pass a chi-square test (df = cells - 1 <= 11; the
 * bound df + 6·sqrt(2·df) + 10 is beyond the 0.9999 quantile, 35.6 at df 11). */
static void check_draws(loam_sampler *s, const float *z0, const double *pa, const double *pb,
                        double w, const char *what) {
    enum { N = 12 };
    const int draws = 200000;
    int64_t count[N] = {0};
    int bad_logprob = 0;
    for (int d = 0; d < draws; d++) {
        float z[N], logprob;
        memcpy(z, z0, sizeof z);
        int32_t t = loam_sampler_sample(s, z, &logprob);
        if (t < 0 || t >= N) {
            CHECK(0);
            return;
        }
        count[t]++;
        bool ok = (pa[t] > 0 && fabs(logprob - log(pa[t])) <= 1e-5) ||
                  (pb[t] > 0 && fabs(logprob - log(pb[t])) <= 1e-5);
        bad_logprob += !ok;
    }
    CHECK_EQ_I64(bad_logprob, 0);
    double chi2 = 0;
    int cells = 0;
    for (int i = 0; i < N; i++) {
        double e = (w * pa[i] + (1 - w) * pb[i]) * draws;
        if (e == 0) {
            CHECK_EQ_I64(count[i], 0);
            continue;
        }
        cells++;
        chi2 += ((double)count[i] - e) * ((double)count[i] - e) / e;
    }
    double df = cells - 1;
    if (!(chi2 < df + 6 * sqrt(2 * df) + 10))
        fprintf(stderr, "%s: chi2 %.2f with %g degrees of freedom\n", what, chi2, df);
    CHECK(chi2 < df + 6 * sqrt(2 * df) + 10);
}

/* With xtc_probability 0.5, draws follow the even mixture of the distributions with and without
 * XTC (one coin per draw), and the reported logprob is that of the distribution drawn from. */
static void test_xtc_distribution(void) {
    const int n = 12;
    float z0[12];
    for (int i = 0; i < n; i++)
        z0[i] = (float)(0.37 * i - 0.05 * i * i + (i == 7 ? 1.0 : 0.0));
    loam_sampler_params p = loam_sampler_params_default();
    p.temperature = 0.9f;
    p.xtc_probability = 0.5f;
    p.xtc_threshold = 0.09f;
    p.seed = 77;
    loam_sampler *s = mk(p, n);
    double lp[12], with[12], without[12];
    log_softmax_d(z0, n, lp);
    ref_filter_xtc(lp, n, &p, 0.0, with);
    ref_filter_xtc(lp, n, &p, 1.0, without);
    int removed = 0;
    for (int i = 0; i < n; i++)
        removed += with[i] == 0 && without[i] > 0;
    CHECK(removed >= 1);
    check_draws(s, z0, with, without, 0.5, "xtc mixture");
    loam_sampler_free(s);
}

/* Empirical frequencies with a fixed seed against the exact filtered distribution. */
static void test_distribution(void) {
    const int n = 12;
    float z0[12];
    for (int i = 0; i < n; i++)
        z0[i] = (float)(0.37 * i - 0.05 * i * i + (i == 7 ? 1.0 : 0.0));
    struct {
        float temp, top_p, min_p;
        int32_t top_k;
    } cases[] = {
        {1.0f, 1.0f, 0, 0},      {0.7f, 0.9f, 0, 0}, {1.5f, 1.0f, 0.2f, 0},
        {0.5f, 0.95f, 0.05f, 6}, {2.0f, 1.0f, 0, 4},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        loam_sampler_params p = loam_sampler_params_default();
        p.temperature = cases[c].temp;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k;
        p.seed = 1234 + c;
        loam_sampler *s = mk(p, n);
        double lp[12], prob[12];
        log_softmax_d(z0, n, lp);
        ref_filter(lp, n, &p, prob);
        char what[32];
        snprintf(what, sizeof what, "case %zu", c);
        check_draws(s, z0, prob, prob, 1.0, what);
        loam_sampler_free(s);
    }
}

/* A 152k vocabulary is processed in threaded chunks: the same seed gives the same tokens and
 * log-probabilities with 1, 2 and 3 threads. */
static void test_threads_same_tokens(void) {
    const int32_t n = 151936;
    float *z0 = malloc((size_t)n * sizeof *z0), *z = malloc((size_t)n * sizeof *z);
    for (int32_t i = 0; i < n; i++)
        z0[i] = (float)(6.0 * lcg_uniform());
    const int threads[3] = {1, 2, 3};
    int32_t toks[3][40];
    float lps[3][40];
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(threads[t]);
        loam_sampler_params p = loam_sampler_params_default();
        p.temperature = 1.1f;
        p.seed = 99;
        loam_sampler *s = mk(p, n);
        for (int d = 0; d < 40; d++) {
            memcpy(z, z0, (size_t)n * sizeof *z);
            toks[t][d] = loam_sampler_sample(s, z, &lps[t][d]);
        }
        loam_sampler_free(s);
    }
    omp_set_num_threads(omp_get_num_procs());
    for (int d = 0; d < 40; d++) {
        CHECK(toks[0][d] == toks[1][d] && toks[0][d] == toks[2][d]);
        CHECK(lps[0][d] == lps[1][d] && lps[0][d] == lps[2][d]);
    }
    free(z0);
    free(z);
}

static void test_determinism(void) {
    const int32_t n = 5000;
    float *z0 = malloc((size_t)n * sizeof *z0), *z = malloc((size_t)n * sizeof *z);
    for (int32_t i = 0; i < n; i++)
        z0[i] = (float)(4.0 * lcg_uniform());
    loam_sampler_params p = loam_sampler_params_default();
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    p.seed = 7;
    p.repetition_penalty = 1.3f;
    loam_sampler *a = mk(p, n), *b = mk(p, n);
    p.seed = 8;
    loam_sampler *c = mk(p, n);
    int32_t seq[64];
    int same_ab = 1, same_ac = 1;
    for (int step = 0; step < 64; step++) {
        memcpy(z, z0, (size_t)n * sizeof *z);
        int32_t ta = loam_sampler_sample(a, z, NULL);
        memcpy(z, z0, (size_t)n * sizeof *z);
        int32_t tb = loam_sampler_sample(b, z, NULL);
        memcpy(z, z0, (size_t)n * sizeof *z);
        int32_t tc = loam_sampler_sample(c, z, NULL);
        loam_sampler_accept(a, ta);
        loam_sampler_accept(b, tb);
        loam_sampler_accept(c, tc);
        seq[step] = ta;
        same_ab &= ta == tb;
        same_ac &= ta == tc;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    /* reset replays the same sequence */
    loam_sampler_reset(a);
    int same = 1;
    for (int step = 0; step < 64; step++) {
        memcpy(z, z0, (size_t)n * sizeof *z);
        int32_t t = loam_sampler_sample(a, z, NULL);
        loam_sampler_accept(a, t);
        same &= t == seq[step];
    }
    CHECK(same);
    /* sampling does not allocate */
    uint64_t bytes = loam_debug_bytes_in_use();
    loam_debug_fail_alloc_after(1);
    memcpy(z, z0, (size_t)n * sizeof *z);
    CHECK(loam_sampler_sample(a, z, NULL) >= 0);
    loam_debug_fail_alloc_after(0);
    CHECK_EQ_I64(loam_debug_bytes_in_use(), bytes);
    loam_sampler_free(a);
    loam_sampler_free(b);
    loam_sampler_free(c);
    free(z0);
    free(z);
}

/* Processors: expected processed logits by hand, compared through the log-softmax. */
static void check_processed(loam_sampler *s, const float *z_in, const float *want, int n) {
    float z[16];
    memcpy(z, z_in, (size_t)n * sizeof *z);
    loam_sampler_sample(s, z, NULL);
    double lp[16];
    log_softmax_d(want, n, lp);
    for (int i = 0; i < n; i++)
        CHECK_CLOSE(z[i], lp[i], 1e-5);
}

static void test_penalties(void) {
    const float z[6] = {2.0f, -1.0f, 0.5f, -3.0f, 1.0f, 0.0f};
    loam_sampler_params p = loam_sampler_params_default();
    p.repetition_penalty = 2.0f;
    p.repetition_window = 4;
    loam_sampler *s = mk(p, 6);
    /* history 0 1 1 3 4 5: window 4 sees 1 3 4 5; 0 is too old; 1 appears twice, once applied */
    int32_t h[] = {0, 1, 1, 3, 4, 5};
    for (int i = 0; i < 6; i++)
        loam_sampler_accept(s, h[i]);
    loam_sampler_accept(s, 99); /* out of range: ignored */
    loam_sampler_accept(s, -1);
    {
        float want[6] = {2.0f, -2.0f, 0.5f, -6.0f, 0.5f, 0.0f};
        check_processed(s, z, want, 6);
    }
    loam_sampler_free(s);

    p = loam_sampler_params_default();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    s = mk(p, 6);
    int32_t h2[] = {2, 2, 2, 4, 0};
    for (int i = 0; i < 5; i++)
        loam_sampler_accept(s, h2[i]);
    {
        /* presence: 2, 4, 0 once each; frequency: 2 three times, 4 and 0 once */
        float want[6] = {2.0f - 0.75f, -1.0f, 0.5f - 0.5f - 0.75f, -3.0f, 1.0f - 0.75f, 0.0f};
        check_processed(s, z, want, 6);
    }
    loam_sampler_reset(s); /* forgets the history */
    check_processed(s, z, z, 6);
    loam_sampler_free(s);

    /* windows differ per penalty; repetition applies to the biased logits */
    loam_logit_bias lb[3] = {{1, 3.0f}, {1, 1.0f}, {5, -INFINITY}};
    p = loam_sampler_params_default();
    p.logit_bias = lb;
    p.n_logit_bias = 3;
    p.repetition_penalty = 4.0f;
    p.repetition_window = 1;
    p.frequency_penalty = 1.0f;
    p.frequency_window = 3;
    s = mk(p, 6);
    lb[0].bias = 100.0f; /* the sampler took a copy */
    loam_sampler_accept(s, 4);
    loam_sampler_accept(s, 4);
    loam_sampler_accept(s, 1);
    {
        /* bias: z1 = -1 + 4 = 3, z5 = -inf; repetition (window 1 = token 1): 3 / 4;
         * frequency (window 3): 4 twice, 1 once */
        float want[6] = {2.0f, 0.75f - 1.0f, 0.5f, -3.0f, 1.0f - 2.0f, -INFINITY};
        float zz[6];
        memcpy(zz, z, sizeof zz);
        loam_sampler_sample(s, zz, NULL);
        double lp[6];
        log_softmax_d(want, 6, lp);
        for (int i = 0; i < 5; i++)
            CHECK_CLOSE(zz[i], lp[i], 1e-5);
        CHECK(isinf(zz[5]) && zz[5] < 0);
    }
    loam_sampler_free(s);
    /* a banned token is never drawn */
    loam_logit_bias ban = {0, -INFINITY};
    p = loam_sampler_params_default();
    p.temperature = 1.0f;
    p.logit_bias = &ban;
    p.n_logit_bias = 1;
    p.seed = 3;
    s = mk(p, 3);
    int hits = 0;
    for (int i = 0; i < 2000; i++) {
        float zz[3] = {5.0f, 0.0f, 0.0f};
        hits += loam_sampler_sample(s, zz, NULL) == 0;
    }
    CHECK_EQ_I64(hits, 0);
    loam_sampler_free(s);
}

static void test_top_logprobs(void) {
    float lp[7] = {-2.0f, -1.0f, -3.0f, -1.0f, -0.5f, -INFINITY, -2.0f};
    int32_t ids[10];
    float v[10];
    CHECK_EQ_I64(loam_sampler_top_logprobs(lp, 7, 4, ids, v), 4);
    int32_t want[4] = {4, 1, 3, 0};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_I64(ids[i], want[i]);
        CHECK(v[i] == lp[want[i]]);
    }
    CHECK_EQ_I64(loam_sampler_top_logprobs(lp, 7, 10, ids, v), 7);
    CHECK_EQ_I64(ids[5], 2);
    CHECK_EQ_I64(ids[6], 5);
    CHECK_EQ_I64(loam_sampler_top_logprobs(lp, 7, 0, ids, v), 0);
}

// ---- stop strings -----------------------------------------------------------------------------

typedef struct {
    char text[512];
    size_t len;
    bool stopped;
} sink;

static void push(loam_stop_matcher *m, sink *k, const char *t) {
    const char *o;
    size_t n;
    bool st = false;
    loam_err e = {0};
    CHECK_OK(loam_stop_matcher_push(m, t, strlen(t), &o, &n, &st, &e), e);
    memcpy(k->text + k->len, o, n);
    k->len += n;
    k->text[k->len] = 0;
    k->stopped = st;
}

static void finish(loam_stop_matcher *m, sink *k) {
    const char *o;
    size_t n;
    loam_stop_matcher_finish(m, &o, &n);
    memcpy(k->text + k->len, o, n);
    k->len += n;
    k->text[k->len] = 0;
}

static loam_stop_matcher *mkstop(const char *const *stops, size_t n) {
    loam_stop_matcher *m = NULL;
    loam_err e = {0};
    CHECK_OK(loam_stop_matcher_new(&m, stops, n, &e), e);
    return m;
}

static void test_stop_basic(void) {
    const char *stops[] = {"</end>", "STOP"};
    loam_stop_matcher *m = mkstop(stops, 2);
    sink k = {0};
    push(m, &k, "hello ");
    CHECK_STR(k.text, "hello ");
    push(m, &k, "wor</e"); /* "</e" could start "</end>": held */
    CHECK_STR(k.text, "hello wor");
    push(m, &k, "x"); /* no longer a prefix: released */
    CHECK_STR(k.text, "hello wor</ex");
    push(m, &k, " ST");
    CHECK_STR(k.text, "hello wor</ex ");
    push(m, &k, "OP and more");
    CHECK_STR(k.text, "hello wor</ex ");
    CHECK(k.stopped);
    CHECK_EQ_I64(loam_stop_matcher_which(m), 1);
    push(m, &k, "ignored");
    finish(m, &k);
    CHECK_STR(k.text, "hello wor</ex ");
    CHECK(k.stopped);

    /* reset: fresh stream; a stop split over three pushes; the text before it in the same push */
    loam_stop_matcher_reset(m);
    memset(&k, 0, sizeof k);
    push(m, &k, "a</");
    push(m, &k, "en");
    CHECK_STR(k.text, "a");
    push(m, &k, "d>tail");
    CHECK_STR(k.text, "a");
    CHECK(k.stopped);
    CHECK_EQ_I64(loam_stop_matcher_which(m), 0);

    /* end of stream releases a held prefix */
    loam_stop_matcher_reset(m);
    memset(&k, 0, sizeof k);
    push(m, &k, "xyz</en");
    CHECK_STR(k.text, "xyz");
    finish(m, &k);
    CHECK_STR(k.text, "xyz</en");
    CHECK(!k.stopped);
    CHECK_EQ_I64(loam_stop_matcher_which(m), -1);

    /* a stop string at the very start, and an empty push */
    loam_stop_matcher_reset(m);
    memset(&k, 0, sizeof k);
    push(m, &k, "");
    push(m, &k, "STOPx");
    CHECK_STR(k.text, "");
    CHECK(k.stopped);
    loam_stop_matcher_free(m);
}

static void test_stop_overlaps(void) {
    /* earliest end wins: "b" completes before "abc" can */
    const char *s1[] = {"abc", "b"};
    loam_stop_matcher *m = mkstop(s1, 2);
    sink k = {0};
    push(m, &k, "xab");
    CHECK_STR(k.text, "xa");
    CHECK(k.stopped);
    CHECK_EQ_I64(loam_stop_matcher_which(m), 1);
    loam_stop_matcher_free(m);
    /* same end: the longer (earlier start) wins */
    const char *s2[] = {"c", "abc"};
    m = mkstop(s2, 2);
    memset(&k, 0, sizeof k);
    push(m, &k, "zab");
    CHECK_STR(k.text, "z");
    push(m, &k, "c");
    CHECK_STR(k.text, "z");
    CHECK_EQ_I64(loam_stop_matcher_which(m), 1);
    loam_stop_matcher_free(m);
    /* self-overlapping stop: "aab" inside "aaab"; the held tail must be re-matched */
    const char *s3[] = {"aab"};
    m = mkstop(s3, 1);
    memset(&k, 0, sizeof k);
    push(m, &k, "a");
    push(m, &k, "a");
    push(m, &k, "a");
    CHECK_STR(k.text, "a");
    push(m, &k, "b!");
    CHECK_STR(k.text, "a");
    CHECK(k.stopped);
    loam_stop_matcher_free(m);
    /* a long push (grows the buffer) with the stop deep inside */
    const char *s4[] = {"\n\n"};
    m = mkstop(s4, 1);
    memset(&k, 0, sizeof k);
    char big[400];
    memset(big, 'q', sizeof big);
    big[300] = '\n';
    big[301] = '\n';
    big[399] = 0;
    push(m, &k, big);
    CHECK_EQ_I64(k.len, 300);
    CHECK(k.stopped);
    loam_stop_matcher_free(m);
}

static void test_stop_utf8(void) {
    /* "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80 arriving byte by byte */
    loam_stop_matcher *m = mkstop(NULL, 0);
    sink k = {0};
    push(m, &k, "a\xC3");
    CHECK_STR(k.text, "a");
    push(m, &k, "\xA9\xE2\x82");
    CHECK_STR(k.text, "a\xC3\xA9");
    push(m, &k, "\xAC\xF0");
    CHECK_STR(k.text, "a\xC3\xA9\xE2\x82\xAC");
    push(m, &k, "\x9F");
    push(m, &k, "\x98");
    CHECK_STR(k.text, "a\xC3\xA9\xE2\x82\xAC");
    push(m, &k, "\x80!");
    CHECK_STR(k.text, "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80!");
    /* finish releases even an incomplete sequence (the detokenizer's business then) */
    push(m, &k, "\xE2");
    finish(m, &k);
    CHECK_EQ_I64(k.len, strlen("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80!") + 1);
    loam_stop_matcher_free(m);
    /* a multi-byte stop string split inside a character */
    const char *s[] = {"\xE2\x82\xAC\xE2\x82\xAC"}; /* "€€" */
    m = mkstop(s, 1);
    memset(&k, 0, sizeof k);
    push(m, &k, "5\xE2\x82\xAC\xE2");
    CHECK_STR(k.text, "5");
    push(m, &k, "\x82");
    CHECK_STR(k.text, "5");
    push(m, &k, "\xAC rest");
    CHECK_STR(k.text, "5");
    CHECK(k.stopped);
    loam_stop_matcher_free(m);
    /* "€x" is not the stop: the first € is released whole */
    m = mkstop(s, 1);
    memset(&k, 0, sizeof k);
    push(m, &k, "\xE2\x82\xAC");
    CHECK_STR(k.text, "");
    push(m, &k, "x");
    CHECK_STR(k.text, "\xE2\x82\xAC"
                      "x");
    loam_stop_matcher_free(m);
}

static void test_stop_errors(void) {
    const char *bad[] = {"ok", ""};
    loam_stop_matcher *m = (loam_stop_matcher *)1;
    loam_err e;
    CHECK_EQ_I64(loam_stop_matcher_new(&m, bad, 2, &e), LOAM_E_INVAL);
    CHECK(m == NULL);
    CHECK(strstr(e.msg, "entry 1") != NULL);
    const char *good[] = {"a", "bb"};
    uint64_t before = loam_debug_bytes_in_use();
    for (uint64_t k = 1; k <= 5; k++) {
        loam_debug_fail_alloc_after(k);
        loam_status st = loam_stop_matcher_new(&m, good, 2, &e);
        loam_debug_fail_alloc_after(0);
        if (st == LOAM_OK) {
            loam_stop_matcher_free(m);
        } else {
            CHECK_EQ_I64(st, LOAM_E_NOMEM);
        }
    }
    CHECK_EQ_I64(loam_debug_bytes_in_use(), before);
    loam_stop_matcher_free(NULL);
}

static void run_tests(void) {
    TEST(test_defaults_and_validation);
    TEST(test_rng_reference);
    TEST(test_greedy);
    TEST(test_filters_hand);
    TEST(test_filters_large);
    TEST(test_xtc_hand);
    TEST(test_xtc_distribution);
    TEST(test_distribution);
    TEST(test_determinism);
    TEST(test_threads_same_tokens);
    TEST(test_penalties);
    TEST(test_top_logprobs);
    TEST(test_stop_basic);
    TEST(test_stop_overlaps);
    TEST(test_stop_utf8);
    TEST(test_stop_errors);
}
