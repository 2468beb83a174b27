/* sampler.c: next-token sampling as mlx-lm does it, and stop strings on the decoded stream.
 *
 * The pipeline (FORMATS.md §7.1-§7.3; the contract is in loam.h under "sampling"):
 *
 *   raw logits --logit_bias--> --repetition--> --presence--> --frequency-->   (in place)
 *     --log-softmax--> lp                                                     (in place)
 *     temperature == 0: argmax(lp)
 *     else: survivors = top_p ∘ min_p ∘ XTC ∘ top_k of lp (untempered), draw ∝ exp(lp / T)
 *
 * Filters without sorting. Rank every token by (lp descending, id ascending): a strict total
 * order. Each filter keeps a prefix of that order:
 *   top_p  keeps rank i iff the mass of ranks < i is below top_p   (prefix length L_p)
 *   min_p  keeps lp >= lp_max + log(min_p), at least min_keep      (prefix max(L_m, min_keep))
 *   top_k  keeps the first k                                       (prefix k)
 * and the survivors of the chain are the first min(...) ranks (a later filter that "keeps" a
 * token an earlier one removed leaves it at -inf, as in mlx). L_m is a count, found in one
 * pass. Only top_p needs the order itself: the candidate prefix is grown (64, then 512 ranks)
 * by quickselect on the remaining ids plus a heapsort of the new block, so a peaked
 * distribution costs O(n_vocab); past 512 ranks the rest of the prefix is found by a
 * quickselect that follows the mass (mass_prefix), still O(n_vocab) expected, without sorting
 * it (a flat 152k draw with top_p 0.95: 25.6 ms with the old full sort, 3.3 ms now).
 * Without top_p the first `bound` ids are selected unsorted (or all ids are used as they are).
 * XTC removes a prefix of the order except its last token (and the special tokens), so it runs
 * between min_p and top_k: it counts the survivors above its threshold (L, one pass), selects
 * and sorts those L, removes them but the last, and top_k then takes the first k of what is
 * left (the sorted part first, then a selection from the unsorted rest).
 *
 * The draw: u = uniform [0,1) * Σ w, w_i = exp((lp_i - lp_max) / T) accumulated in double over
 * the survivors in a fixed order; the first survivor whose running sum exceeds u wins.
 * Equivalent in distribution to mlx's Gumbel-max categorical; not the same stream.
 *
 * Random numbers: xoshiro256** (Blackman & Vigna, 2018), state from four splitmix64 outputs
 * of the seed; doubles from the top 53 bits. Defined entirely by integer arithmetic, hence
 * portable.
 *
 * Stop matcher: see the contract in loam.h. Invariant: buf[emit_from, len) is text received
 * but not yet released; it never contains a complete stop string.
 */
#define _POSIX_C_SOURCE 200809L
#include "loam_internal.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <time.h>
#include <unistd.h>

// ---- random numbers ---------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t st[4]) {
    uint64_t result = rotl64(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl64(st[3], 45);
    return result;
}

/* uniform in [0, 1) with 53 random bits */
static double xoshiro_double(uint64_t st[4]) {
    return (double)(xoshiro_next(st) >> 11) * 0x1.0p-53;
}

// ---- the sampler object -----------------------------------------------------------------------

struct loam_sampler {
    loam_sampler_params p; /* p.logit_bias points at bias below */
    loam_logit_bias *bias; /* (n_logit_bias) own copy */
    int32_t *xtc_special;  /* (n_xtc_special_tokens) own copy */
    int32_t n_vocab;
    uint64_t seed;
    uint64_t rng[4];
    int32_t *hist;    /* (hist_cap) ring of accepted tokens */
    int32_t hist_cap; /* max of the active windows, >= 1 */
    int64_t n_hist;   /* tokens accepted since reset (ring holds the last min(n, cap)) */
    int32_t *idx;     /* (n_vocab) candidate ids, in rank order for the kept prefix */
    uint8_t *mark;    /* (n_vocab) all zero between calls: distinct-token marks */
    float *w;         /* (n_vocab) the draw's weights, computed once per draw */
    double *csum;     /* (n_chunks(n_vocab)) per-chunk sums of the passes below */
    float *cmax;      /* (n_chunks(n_vocab)) per-chunk maxima */
    int64_t *carg;    /* (n_chunks(n_vocab)) their first index */
};

/* The passes over the vocabulary (max, Σexp, the draw's weights) run over fixed chunks of
 * CHUNK entries whose partial results are combined in chunk order: the result is the same
 * for any number of threads (and threads are used only for large vocabularies, outside
 * another parallel region: the engine samples its requests in parallel already). */
#define CHUNK 8192
static int64_t n_chunks(int64_t n) {
    return (n + CHUNK - 1) / CHUNK;
}

loam_sampler_params loam_sampler_params_default(void) {
    loam_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.min_tokens_to_keep = 1;
    p.top_k = 0;
    p.xtc_probability = 0.0f;
    p.xtc_threshold = 0.1f;
    p.xtc_special_tokens = NULL;
    p.n_xtc_special_tokens = 0;
    p.repetition_penalty = 0.0f;
    p.repetition_window = 20;
    p.presence_penalty = 0.0f;
    p.presence_window = 20;
    p.frequency_penalty = 0.0f;
    p.frequency_window = 20;
    p.logit_bias = NULL;
    p.n_logit_bias = 0;
    p.seed = LOAM_SEED_RANDOM;
    return p;
}

static void seed_rng(loam_sampler *s) {
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

/* windows bound what the ring must hold; 1 << 20 accepted tokens is beyond any context */
#define MAX_WINDOW (1 << 20)

loam_status loam_sampler_new(loam_sampler **out, const loam_sampler_params *params, int32_t n_vocab,
                             loam_err *err) {
    *out = NULL;
    loam_sampler_params p = params ? *params : loam_sampler_params_default();
    if (n_vocab < 1)
        return loam__fail(err, LOAM_E_INVAL, "sampler: n_vocab %d < 1", n_vocab);
    if (!(p.temperature >= 0.0f) || isinf(p.temperature))
        return loam__fail(err, LOAM_E_INVAL, "sampler: temperature %g must be finite and >= 0",
                          (double)p.temperature);
    if (!(p.top_p >= 0.0f && p.top_p <= 1.0f))
        return loam__fail(err, LOAM_E_INVAL, "sampler: top_p %g must be in [0, 1]",
                          (double)p.top_p);
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        return loam__fail(err, LOAM_E_INVAL, "sampler: min_p %g must be in [0, 1]",
                          (double)p.min_p);
    if (p.min_tokens_to_keep < 1)
        return loam__fail(err, LOAM_E_INVAL, "sampler: min_tokens_to_keep %d must be >= 1",
                          p.min_tokens_to_keep);
    if (p.top_k < 0)
        return loam__fail(err, LOAM_E_INVAL, "sampler: top_k %d must be >= 0", p.top_k);
    if (!(p.xtc_probability >= 0.0f && p.xtc_probability <= 1.0f))
        return loam__fail(err, LOAM_E_INVAL, "sampler: xtc_probability %g must be in [0, 1]",
                          (double)p.xtc_probability);
    if (!(p.xtc_threshold >= 0.0f && p.xtc_threshold <= 0.5f))
        return loam__fail(err, LOAM_E_INVAL, "sampler: xtc_threshold %g must be in [0, 0.5]",
                          (double)p.xtc_threshold);
    if (p.n_xtc_special_tokens && !p.xtc_special_tokens)
        return loam__fail(err, LOAM_E_INVAL,
                          "sampler: xtc_special_tokens is NULL but n_xtc_special_tokens is %zu",
                          p.n_xtc_special_tokens);
    for (size_t i = 0; i < p.n_xtc_special_tokens; i++)
        if (p.xtc_special_tokens[i] < 0 || p.xtc_special_tokens[i] >= n_vocab)
            return loam__fail(err, LOAM_E_RANGE,
                              "sampler: xtc_special_tokens[%zu] = %d outside [0, %d)", i,
                              p.xtc_special_tokens[i], n_vocab);
    if (!(p.repetition_penalty >= 0.0f) || isinf(p.repetition_penalty))
        return loam__fail(err, LOAM_E_INVAL,
                          "sampler: repetition_penalty %g must be finite and >= 0",
                          (double)p.repetition_penalty);
    if (!isfinite(p.presence_penalty))
        return loam__fail(err, LOAM_E_INVAL, "sampler: presence_penalty must be finite");
    if (!isfinite(p.frequency_penalty))
        return loam__fail(err, LOAM_E_INVAL, "sampler: frequency_penalty must be finite");
    const struct {
        const char *name;
        int32_t w;
        bool active;
    } windows[3] = {
        {"repetition_window", p.repetition_window, p.repetition_penalty != 0.0f},
        {"presence_window", p.presence_window, p.presence_penalty != 0.0f},
        {"frequency_window", p.frequency_window, p.frequency_penalty != 0.0f},
    };
    int32_t cap = 1;
    for (int i = 0; i < 3; i++) {
        if (windows[i].w < 1 || windows[i].w > MAX_WINDOW)
            return loam__fail(err, LOAM_E_INVAL, "sampler: %s %d must be in [1, %d]",
                              windows[i].name, windows[i].w, MAX_WINDOW);
        if (windows[i].active && windows[i].w > cap)
            cap = windows[i].w;
    }
    if (p.n_logit_bias && !p.logit_bias)
        return loam__fail(err, LOAM_E_INVAL, "sampler: logit_bias is NULL but n_logit_bias is %zu",
                          p.n_logit_bias);
    for (size_t i = 0; i < p.n_logit_bias; i++) {
        const loam_logit_bias *b = &p.logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return loam__fail(err, LOAM_E_RANGE, "sampler: logit_bias token %d outside [0, %d)",
                              b->token, n_vocab);
        if (isnan(b->bias) || (isinf(b->bias) && b->bias > 0))
            return loam__fail(err, LOAM_E_INVAL,
                              "sampler: logit_bias of token %d must be finite or -inf", b->token);
    }

    loam_sampler *s = loam__calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    s->n_vocab = n_vocab;
    s->hist_cap = cap;
    s->hist = loam__malloc((size_t)cap * sizeof *s->hist);
    s->idx = loam__malloc((size_t)n_vocab * sizeof *s->idx);
    s->mark = loam__calloc((size_t)n_vocab, 1);
    s->w = loam__malloc((size_t)n_vocab * sizeof *s->w);
    s->csum = loam__malloc((size_t)n_chunks(n_vocab) * sizeof *s->csum);
    s->cmax = loam__malloc((size_t)n_chunks(n_vocab) * sizeof *s->cmax);
    s->carg = loam__malloc((size_t)n_chunks(n_vocab) * sizeof *s->carg);
    if (p.n_logit_bias)
        s->bias = loam__malloc(p.n_logit_bias * sizeof *s->bias);
    if (p.n_xtc_special_tokens)
        s->xtc_special = loam__malloc(p.n_xtc_special_tokens * sizeof *s->xtc_special);
    if (!s->hist || !s->idx || !s->mark || !s->w || !s->csum || !s->cmax || !s->carg ||
        (p.n_logit_bias && !s->bias) ||
        (p.n_xtc_special_tokens && !s->xtc_special))
        goto nomem;
    if (p.n_logit_bias)
        memcpy(s->bias, p.logit_bias, p.n_logit_bias * sizeof *s->bias);
    p.logit_bias = s->bias;
    if (p.n_xtc_special_tokens)
        memcpy(s->xtc_special, p.xtc_special_tokens,
               p.n_xtc_special_tokens * sizeof *s->xtc_special);
    p.xtc_special_tokens = s->xtc_special;
    s->p = p;
    if (p.seed == LOAM_SEED_RANDOM) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32;
        x ^= (uint64_t)(uintptr_t)s;
        s->seed = splitmix64(&x);
        if (s->seed == LOAM_SEED_RANDOM)
            s->seed = 0; /* keep "the seed in use" reusable */
    } else {
        s->seed = p.seed;
    }
    seed_rng(s);
    *out = s;
    return LOAM_OK;
nomem:
    loam_sampler_free(s);
    return loam__fail(err, LOAM_E_NOMEM, "sampler: out of memory for a vocabulary of %d", n_vocab);
}

void loam_sampler_free(loam_sampler *s) {
    if (!s)
        return;
    loam__free(s->bias);
    loam__free(s->xtc_special);
    loam__free(s->hist);
    loam__free(s->idx);
    loam__free(s->mark);
    loam__free(s->w);
    loam__free(s->csum);
    loam__free(s->cmax);
    loam__free(s->carg);
    loam__free(s);
}

void loam_sampler_reset(loam_sampler *s) {
    s->n_hist = 0;
    seed_rng(s);
}

uint64_t loam_sampler_seed(const loam_sampler *s) {
    return s->seed;
}

void loam_sampler_accept(loam_sampler *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab)
        return;
    s->hist[s->n_hist % s->hist_cap] = token;
    s->n_hist++;
}

// ---- logit processors -------------------------------------------------------------------------

/* The i-th most recent of the last w accepted tokens, i in [0, min(w, n_hist)). */
static inline int32_t hist_back(const loam_sampler *s, int64_t i) {
    return s->hist[(s->n_hist - 1 - i) % s->hist_cap];
}

static int64_t window_len(const loam_sampler *s, int32_t w) {
    int64_t n = s->n_hist < s->hist_cap ? s->n_hist : s->hist_cap;
    return n < w ? n : w;
}

static void apply_processors(loam_sampler *s, float *logits) {
    const loam_sampler_params *p = &s->p;
    for (size_t i = 0; i < p->n_logit_bias; i++)
        logits[p->logit_bias[i].token] += p->logit_bias[i].bias;
    if (p->repetition_penalty != 0.0f) {
        int64_t n = window_len(s, p->repetition_window);
        for (int64_t i = 0; i < n; i++) {
            int32_t t = hist_back(s, i);
            if (s->mark[t])
                continue;
            s->mark[t] = 1;
            float v = logits[t];
            logits[t] = v < 0.0f ? v * p->repetition_penalty : v / p->repetition_penalty;
        }
        for (int64_t i = 0; i < n; i++)
            s->mark[hist_back(s, i)] = 0;
    }
    if (p->presence_penalty != 0.0f) {
        int64_t n = window_len(s, p->presence_window);
        for (int64_t i = 0; i < n; i++) {
            int32_t t = hist_back(s, i);
            if (s->mark[t])
                continue;
            s->mark[t] = 1;
            logits[t] -= p->presence_penalty;
        }
        for (int64_t i = 0; i < n; i++)
            s->mark[hist_back(s, i)] = 0;
    }
    if (p->frequency_penalty != 0.0f) {
        int64_t n = window_len(s, p->frequency_window);
        for (int64_t i = 0; i < n; i++)
            logits[hist_back(s, i)] -= p->frequency_penalty;
    }
}

// ---- rank order, selection, sorting -----------------------------------------------------------

/* a ranks before b: higher value, then lower id */
static inline bool ranks_before(const float *v, int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
}

static inline void swap_i32(int32_t *a, int32_t *b) {
    int32_t t = *a;
    *a = *b;
    *b = t;
}

/* Heap whose root is the lowest-ranked element: popping it to the end sorts in rank order. */
static void sift_down(const float *v, int32_t *x, int64_t n, int64_t i) {
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && ranks_before(v, x[c], x[c + 1]))
            c++;
        if (!ranks_before(v, x[i], x[c]))
            return;
        swap_i32(&x[i], &x[c]);
        i = c;
    }
}

/* Sorts x[0, n) in rank order (heapsort: in place, O(n log n), deterministic). */
static void sort_rank(const float *v, int32_t *x, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        sift_down(v, x, n, i);
    for (int64_t end = n - 1; end > 0; end--) {
        swap_i32(&x[0], &x[end]);
        sift_down(v, x, end, 0);
    }
}

/* The median (by rank) of x[lo], x[mid], x[hi-1], moved to x[hi-1] and returned: the pivot of
 * a partition of x[lo, hi-1). */
static int32_t pivot_to_end(const float *v, int32_t *x, int64_t lo, int64_t hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ranks_before(v, x[mid], x[lo]))
        swap_i32(&x[mid], &x[lo]);
    if (ranks_before(v, x[hi - 1], x[lo]))
        swap_i32(&x[hi - 1], &x[lo]);
    if (ranks_before(v, x[mid], x[hi - 1]))
        swap_i32(&x[mid], &x[hi - 1]);
    return x[hi - 1];
}

/* Rearranges x[0, n) so that x[0, k) are the k highest-ranked (in no particular order).
 * Quickselect with a median-of-three pivot; after 2·log2(n) rounds without converging it sorts
 * the remaining range instead (introselect), so the worst case stays O(n log n). */
static void select_top(const float *v, int32_t *x, int64_t n, int64_t k) {
    if (k <= 0 || k >= n)
        return;
    int64_t lo = 0, hi = n; /* the boundary k lies in [lo, hi) */
    int budget = 2;
    for (int64_t t = n; t > 1; t >>= 1)
        budget += 2;
    while (hi - lo > 1) {
        if (budget-- == 0) {
            sort_rank(v, x + lo, hi - lo);
            return;
        }
        int32_t pivot = pivot_to_end(v, x, lo, hi);
        int64_t store = lo;
        for (int64_t i = lo; i < hi - 1; i++)
            if (ranks_before(v, x[i], pivot))
                swap_i32(&x[i], &x[store++]);
        swap_i32(&x[store], &x[hi - 1]); /* x[lo, store) rank before the pivot at store */
        if (store == k || store + 1 == k)
            return;
        if (store > k)
            hi = store;
        else
            lo = store + 1;
    }
}

/* x[0, n): candidates that all rank after a kept prefix of mass acc; pm[id] = exp(lp[id]).
 * Rearranges x so that x[0, L) are the next L ranks (in no particular order), L the number top_p
 * keeps: rank i is kept while the mass of the ranks before it is below top_p. Expected O(n):
 * quickselect that follows the mass instead of a count (a median-of-three pivot splits the
 * range; if what ranks before the pivot still leaves room below top_p, all of it and the pivot
 * are kept and the search goes on after them, else it goes on inside it); small ranges, and
 * ranges that fail to shrink for 2·log2(n) rounds, are sorted and walked. */
static int64_t mass_prefix(const float *lp, const float *pm, int32_t *x, int64_t n,
                           double top_p, double acc) {
    int64_t lo = 0, hi = n; /* x[0, lo) kept; the boundary lies in [lo, hi] */
    int budget = 2;
    for (int64_t t = n; t > 1; t >>= 1)
        budget += 2;
    while (hi - lo > 32 && budget-- > 0) {
        if (acc >= top_p)
            return lo;
        int32_t pivot = pivot_to_end(lp, x, lo, hi);
        int64_t store = lo;
        double before = 0.0;
        for (int64_t i = lo; i < hi - 1; i++)
            if (ranks_before(lp, x[i], pivot)) {
                before += (double)pm[x[i]];
                swap_i32(&x[i], &x[store++]);
            }
        swap_i32(&x[store], &x[hi - 1]); /* x[lo, store) rank before the pivot at store */
        if (acc + before < top_p) { /* all of them, and the pivot (mass before it < top_p) */
            acc += before + (double)pm[pivot];
            lo = store + 1;
        } else {
            hi = store;
        }
    }
    sort_rank(lp, x + lo, hi - lo);
    for (int64_t r = lo; r < hi; r++) {
        if (acc >= top_p)
            return r;
        acc += (double)pm[x[r]];
    }
    return hi;
}

// ---- sampling ---------------------------------------------------------------------------------

/* The survivors of top_p, min_p and (with_top_k) top_k on lp [n_vocab]: returns their number
 * `keep`; they are s->idx[0, keep) (a fixed order for given logits, not necessarily rank order),
 * or, when *all is set, every id. */
static int64_t survivors(loam_sampler *s, const float *lp, float lpmax, bool with_top_k,
                         bool *all) {
    const loam_sampler_params *p = &s->p;
    const int64_t n = s->n_vocab;
    int64_t bound = n;
    if (with_top_k && p->top_k > 0 && p->top_k < bound)
        bound = p->top_k;
    if (p->min_p > 0.0f) {
        float thr = lpmax + (float)log((double)p->min_p);
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++)
            cnt += lp[i] >= thr;
        if (cnt < p->min_tokens_to_keep)
            cnt = p->min_tokens_to_keep;
        if (cnt < bound)
            bound = cnt;
    }
    const bool top_p = p->top_p > 0.0f && p->top_p < 1.0f;
    *all = bound == n && !top_p;
    if (*all)
        return n;
    for (int64_t i = 0; i < n; i++)
        s->idx[i] = (int32_t)i;
    if (!top_p) {
        select_top(lp, s->idx, n, bound);
        return bound;
    }
    /* grow a sorted prefix until it holds top_p of the mass or reaches bound (a peaked
     * distribution ends here within 64 or 512 ranks) */
    double mass = 0.0;
    int64_t have = 0, want = bound < 64 ? bound : 64;
    for (int round = 0; round < 2; round++) {
        select_top(lp, s->idx + have, n - have, want - have);
        sort_rank(lp, s->idx + have, want - have);
        for (int64_t r = have; r < want; r++) {
            if (mass >= (double)p->top_p)
                return r;
            mass += (double)expf(lp[s->idx[r]]);
        }
        if (want == bound)
            return bound;
        have = want;
        want = want * 8 < bound ? want * 8 : bound;
    }
    /* a flat one: the rest of the prefix by mass partitioning, unsorted */
    for (int64_t r = have; r < n; r++)
        s->w[s->idx[r]] = expf(lp[s->idx[r]]);
    int64_t more = mass_prefix(lp, s->w, s->idx + have, n - have, (double)p->top_p, mass);
    if (have + more <= bound)
        return have + more;
    select_top(lp, s->idx + have, more, bound - have);
    return bound;
}

/* XTC then top_k on the survivors of top_p and min_p (s->idx[0, keep), or every id when *all),
 * given the XTC coin u: returns the new keep, with *all and s->idx updated. */
static int64_t xtc_then_top_k(loam_sampler *s, const float *lp, float lpmax, int64_t keep,
                              bool *all, double u) {
    const loam_sampler_params *p = &s->p;
    const bool apply = u <= (double)p->xtc_probability; /* mlx-lm: skipped when u > probability */
    const bool top_k = p->top_k > 0 && p->top_k < keep;
    if (!apply && !top_k)
        return keep;
    if (*all) {
        for (int64_t i = 0; i < keep; i++)
            s->idx[i] = (int32_t)i;
        *all = false;
    }
    int64_t sorted = 0; /* s->idx[0, sorted) are in rank order, ahead of the rest */
    if (apply) {
        /* probabilities renormalized over the survivors: q = w / Σw, w = exp(lp - lpmax) */
        double total = 0.0;
        for (int64_t r = 0; r < keep; r++)
            total += exp((double)(lp[s->idx[r]] - lpmax));
        const double cut = (double)p->xtc_threshold * total;
        int64_t above = 0;
        for (int64_t r = 0; r < keep; r++)
            above += exp((double)(lp[s->idx[r]] - lpmax)) > cut;
        if (above >= 2) {
            select_top(lp, s->idx, keep, above);
            sort_rank(lp, s->idx, above);
            const float lmin = lp[s->idx[above - 1]]; /* the least likely above the threshold */
            for (size_t j = 0; j < p->n_xtc_special_tokens; j++)
                s->mark[p->xtc_special_tokens[j]] = 1;
            int64_t out = 0;
            for (int64_t r = 0; r < keep; r++) {
                int32_t i = s->idx[r];
                if (r < above - 1 && lp[i] > lmin && !s->mark[i])
                    continue; /* removed: more likely than lmin's token, not special */
                s->idx[out++] = i;
            }
            for (size_t j = 0; j < p->n_xtc_special_tokens; j++)
                s->mark[p->xtc_special_tokens[j]] = 0;
            sorted = above - (keep - out);
            keep = out;
        }
    }
    if (p->top_k > 0 && p->top_k < keep) {
        if (p->top_k > sorted)
            select_top(lp, s->idx + sorted, keep - sorted, p->top_k - sorted);
        keep = p->top_k;
    }
    return keep;
}

int32_t loam_sampler_sample(loam_sampler *s, float *logits, float *logprob) {
    const loam_sampler_params *p = &s->p;
    const int64_t n = s->n_vocab;
    apply_processors(s, logits);

    /* log-softmax in place; the maximum's id is the greedy answer (lowest id on ties) */
    const int64_t nc = n_chunks(n);
    const bool par = nc > 4; /* 32k entries and up */
#pragma omp parallel for schedule(static) if (par)
    for (int64_t c = 0; c < nc; c++) {
        int64_t i1 = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n, arg = -1;
        float m = -INFINITY;
        for (int64_t i = c * CHUNK; i < i1; i++) {
            float v = logits[i];
            if (isnan(v))
                v = logits[i] = -INFINITY;
            else if (v == INFINITY)
                v = logits[i] = FLT_MAX;
            if (v > m) {
                m = v;
                arg = i;
            }
        }
        s->cmax[c] = m;
        s->carg[c] = arg;
    }
    int64_t imax = -1;
    float vmax = -INFINITY;
    for (int64_t c = 0; c < nc; c++)
        if (s->cmax[c] > vmax) {
            vmax = s->cmax[c];
            imax = s->carg[c];
        }
    if (imax < 0) { /* every logit is -inf */
        if (logprob)
            *logprob = -INFINITY;
        return -1;
    }
#pragma omp parallel for schedule(static) if (par)
    for (int64_t c = 0; c < nc; c++) {
        int64_t i1 = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        double cs = 0.0;
        for (int64_t i = c * CHUNK; i < i1; i++)
            cs += (double)expf(logits[i] - vmax);
        s->csum[c] = cs;
    }
    double sum = 0.0;
    for (int64_t c = 0; c < nc; c++)
        sum += s->csum[c];
    const float lse = vmax + (float)log(sum);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++)
        logits[i] -= lse;
    const float *lp = logits;
    const float lpmax = lp[imax];

    /* temperature 0, or so small that 1/T overflows: the limit of the draw is the argmax */
    const float inv_t = p->temperature > 0.0f ? 1.0f / p->temperature : INFINITY;
    if (isinf(inv_t)) {
        if (logprob)
            *logprob = lpmax;
        return (int32_t)imax;
    }

    bool all;
    int64_t keep;
    if (p->xtc_probability > 0.0f) {
        double coin = xoshiro_double(s->rng);
        keep = survivors(s, lp, lpmax, false, &all);
        keep = xtc_then_top_k(s, lp, lpmax, keep, &all, coin);
    } else {
        keep = survivors(s, lp, lpmax, true, &all);
    }

    /* draw from exp((lp - lpmax) / T) over the survivors: weights computed once (kept in
     * rank-slot order), summed per chunk of slots, the chunk holding u found in order, then
     * the slot inside it */
    const int64_t kc = n_chunks(keep);
#pragma omp parallel for schedule(static) if (kc > 4)
    for (int64_t c = 0; c < kc; c++) {
        int64_t r1 = (c + 1) * CHUNK < keep ? (c + 1) * CHUNK : keep;
        double cs = 0.0;
        for (int64_t r = c * CHUNK; r < r1; r++) {
            int64_t i = all ? r : s->idx[r];
            s->w[r] = expf((lp[i] - lpmax) * inv_t);
            cs += (double)s->w[r];
        }
        s->csum[c] = cs;
    }
    double total = 0.0;
    for (int64_t c = 0; c < kc; c++)
        total += s->csum[c];
    double u = xoshiro_double(s->rng) * total;
    double acc = 0.0;
    int64_t chosen = imax, c = 0;
    while (c < kc - 1 && acc + s->csum[c] <= u) /* the chunk where the running sum passes u */
        acc += s->csum[c++];
    int64_t r1 = (c + 1) * CHUNK < keep ? (c + 1) * CHUNK : keep;
    for (int64_t r = c * CHUNK; r < r1; r++) {
        int64_t i = all ? r : s->idx[r];
        double w = (double)s->w[r];
        if (w == 0.0)
            continue;
        acc += w;
        chosen = i; /* the last positive-weight survivor if rounding leaves u unreached */
        if (acc > u)
            break;
    }
    if (logprob)
        *logprob = (lp[chosen] - lpmax) * inv_t - (float)log(total);
    return (int32_t)chosen;
}

int32_t loam_sampler_top_logprobs(const float *logprobs, int32_t n_vocab, int32_t n, int32_t *ids,
                                  float *values) {
    if (n <= 0 || n_vocab <= 0)
        return 0;
    if (n > n_vocab)
        n = n_vocab;
    int32_t have = 0; /* ids[0, have) sorted in rank order */
    for (int32_t t = 0; t < n_vocab; t++) {
        if (have == n && !ranks_before(logprobs, t, ids[n - 1]))
            continue;
        int32_t pos = have < n ? have++ : n - 1;
        while (pos > 0 && ranks_before(logprobs, t, ids[pos - 1])) {
            ids[pos] = ids[pos - 1];
            pos--;
        }
        ids[pos] = t;
    }
    for (int32_t i = 0; i < n; i++)
        values[i] = logprobs[ids[i]];
    return n;
}

// ---- stop strings -----------------------------------------------------------------------------

struct loam_stop_matcher {
    char **stops; /* (n_stops) own copies */
    size_t *lens; /* (n_stops) */
    size_t n_stops;
    char *buf; /* received text; [emit_from, len) not yet released */
    size_t cap, len, emit_from;
    bool stopped;
    int which;
};

loam_status loam_stop_matcher_new(loam_stop_matcher **out, const char *const *stops, size_t n_stops,
                                  loam_err *err) {
    *out = NULL;
    for (size_t i = 0; i < n_stops; i++)
        if (!stops[i] || !stops[i][0])
            return loam__fail(err, LOAM_E_INVAL, "stop strings: entry %zu is empty", i);
    loam_stop_matcher *m = loam__calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    m->which = -1;
    if (n_stops) {
        m->stops = loam__calloc(n_stops, sizeof *m->stops);
        m->lens = loam__calloc(n_stops, sizeof *m->lens);
        if (!m->stops || !m->lens)
            goto nomem;
        m->n_stops = n_stops;
        for (size_t i = 0; i < n_stops; i++) {
            m->lens[i] = strlen(stops[i]);
            if (!(m->stops[i] = loam__strdup(stops[i])))
                goto nomem;
        }
    }
    *out = m;
    return LOAM_OK;
nomem:
    loam_stop_matcher_free(m);
    return loam__fail(err, LOAM_E_NOMEM, "stop strings: out of memory");
}

void loam_stop_matcher_free(loam_stop_matcher *m) {
    if (!m)
        return;
    for (size_t i = 0; m->stops && i < m->n_stops; i++)
        loam__free(m->stops[i]);
    loam__free(m->stops);
    loam__free(m->lens);
    loam__free(m->buf);
    loam__free(m);
}

void loam_stop_matcher_reset(loam_stop_matcher *m) {
    m->len = m->emit_from = 0;
    m->stopped = false;
    m->which = -1;
}

int loam_stop_matcher_which(const loam_stop_matcher *m) {
    return m->which;
}

/* Bytes at the end of t[0, n) that start a UTF-8 sequence not yet complete (0 if none). */
static size_t utf8_incomplete_tail(const unsigned char *t, size_t n) {
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = t[n - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: keep looking for the lead */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

loam_status loam_stop_matcher_push(loam_stop_matcher *m, const char *text, size_t len,
                                   const char **out, size_t *out_len, bool *stopped,
                                   loam_err *err) {
    *out = "";
    *out_len = 0;
    if (stopped)
        *stopped = m->stopped;
    if (m->stopped)
        return LOAM_OK;
    /* drop what the previous call released, then append */
    size_t held = m->len - m->emit_from;
    if (held)
        memmove(m->buf, m->buf + m->emit_from, held);
    m->len = held;
    m->emit_from = 0;
    uint64_t need;
    if (loam__add_u64(held, len, &need) || need > SIZE_MAX - 1)
        return loam__fail(err, LOAM_E_NOMEM, "stop strings: text too long");
    if (need > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? (size_t)need : cap * 2;
        char *nb = loam__realloc(m->buf, cap);
        if (!nb)
            return loam__fail(err, LOAM_E_NOMEM, "stop strings: out of memory");
        m->buf = nb;
        m->cap = cap;
    }
    if (!m->buf)
        return LOAM_OK; /* nothing received yet, nothing pushed */
    if (len)
        memcpy(m->buf + m->len, text, len);
    m->len += len;

    /* earliest end of a complete stop string; held text had none, so it must end in the new
     * part: search only starts that allow that */
    size_t best_end = SIZE_MAX, best_start = 0;
    int best = -1;
    for (size_t k = 0; k < m->n_stops; k++) {
        size_t L = m->lens[k];
        if (L > m->len)
            continue;
        size_t first = held + 1 > L ? held + 1 - L : 0;
        for (size_t st = first; st + L <= m->len; st++) {
            if (st + L > best_end)
                break;
            if (memcmp(m->buf + st, m->stops[k], L) == 0) {
                if (st + L < best_end || (st + L == best_end && st < best_start)) {
                    best_end = st + L;
                    best_start = st;
                    best = (int)k;
                }
                break;
            }
        }
    }
    if (best >= 0) {
        m->stopped = true;
        m->which = best;
        *out = m->buf;
        *out_len = best_start;
        m->emit_from = m->len; /* nothing more to release */
        if (stopped)
            *stopped = true;
        return LOAM_OK;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t hold = 0;
    for (size_t k = 0; k < m->n_stops; k++) {
        size_t L = m->lens[k];
        size_t maxh = L - 1 < m->len ? L - 1 : m->len;
        for (size_t h = maxh; h > hold; h--)
            if (memcmp(m->buf + m->len - h, m->stops[k], h) == 0) {
                hold = h;
                break;
            }
    }
    size_t u = utf8_incomplete_tail((const unsigned char *)m->buf, m->len);
    if (u > hold)
        hold = u;
    *out = m->buf;
    *out_len = m->len - hold;
    m->emit_from = m->len - hold;
    return LOAM_OK;
}

void loam_stop_matcher_finish(loam_stop_matcher *m, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (m->stopped || !m->buf)
        return;
    *out = m->buf + m->emit_from;
    *out_len = m->len - m->emit_from;
    m->emit_from = m->len;
}
