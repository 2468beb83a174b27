/* cmd_perplexity.c: `loam perplexity -m DIR [-a DIR] FILE [--ctx N]`: how well a model (and
 * adapter) predicts a text, e.g. to compare runtime LoRA with a fused model.
 *
 * The file is encoded with the model's tokenizer (with its post-processor, so a BOS is added
 * when the tokenizer adds one) and cut into consecutive windows of --ctx tokens (the last one
 * may be shorter). Each window is decoded from an empty context as one sequence; token i of the
 * window (i >= 1) is scored by the negative log-likelihood the model gave it after tokens
 * 0..i-1:  nll_i = logsumexp(logits_{i-1}) - logits_{i-1}[token_i], computed in double.
 * Printed: tokens, scored predictions, mean NLL (nats per token) and perplexity exp(mean NLL),
 * one line per window as it completes on stderr, the total on stdout (or one JSON object).
 * Logits come in pieces of 64 positions, so memory is 64 rows of logits whatever --ctx is.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CMD "perplexity"
#define PIECE 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: loam perplexity -m DIR [-a DIR] FILE [--ctx N] [-t THREADS] [--reference]\n"
            "                       [--json]\n"
            "\n"
            "Perplexity of the text in FILE under the model (and adapter): the file is encoded\n"
            "with the model's tokenizer, cut into windows of N tokens, and every token after the\n"
            "first of its window is scored.\n"
            "\n"
            "  -m DIR        model directory (with tokenizer.json)\n"
            "  -a DIR        LoRA adapter directory, applied at run time\n"
            "  --ctx N       window length in tokens (default 512)\n"
            "  -t N          threads (default: all cores)\n"
            "  --reference   use the scalar float32 reference path (slow)\n"
            "  --json        print one JSON object\n");
}

/* -log softmax(logits)[target], in double */
static double nll(const float *logits, int32_t n_vocab, int32_t target) {
    double mx = logits[0];
    for (int32_t i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - mx);
    return mx + log(sum) - (double)logits[target];
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

int loam_cmd_perplexity(int argc, char **argv) {
    const char *model_dir = NULL, *adapter_dir = NULL, *file = NULL;
    long long ctx = 512, threads = 0;
    bool reference = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        bool has_val = i + 1 < argc;
        if (strcmp(a, "-m") == 0 && has_val) model_dir = argv[++i];
        else if (strcmp(a, "-a") == 0 && has_val) adapter_dir = argv[++i];
        else if (strcmp(a, "--ctx") == 0 && has_val) {
            if (cli_parse_i64(argv[++i], &ctx) || ctx < 2 || ctx > (1 << 24))
                return cli_usage_error(CMD, "--ctx wants a window of at least 2 tokens, got '%s'",
                                       argv[i]);
        } else if (strcmp(a, "-t") == 0 && has_val) {
            if (cli_parse_i64(argv[++i], &threads) || threads < 1 || threads > 1024)
                return cli_usage_error(CMD, "-t wants a thread count, got '%s'", argv[i]);
        } else if (strcmp(a, "--reference") == 0) reference = true;
        else if (strcmp(a, "--json") == 0) json = true;
        else if (a[0] == '-' && a[1]) return cli_usage_error(CMD, "unknown or incomplete option '%s'", a);
        else if (!file) file = a;
        else return cli_usage_error(CMD, "more than one FILE ('%s')", a);
    }
    if (!model_dir) model_dir = cli_default_model_dir();
    if (!model_dir) return cli_usage_error(CMD, "no model: pass -m DIR");
    if (!file) return cli_usage_error(CMD, "no text file given");

    int rc = 1;
    loam_err e;
    loam_model *m = NULL;
    loam_session *s = NULL;
    int32_t *ids = NULL;
    loam_batch_entry *ent = NULL;
    size_t text_len = 0, n_ids = 0;
    char *text = read_all(file, &text_len);
    if (!text) {
        cli_error(CMD, "cannot read %s", file);
        goto done;
    }
    loam_model_params mp = loam_model_params_default();
    mp.n_threads = (int32_t)threads;
    if (loam_model_open(&m, model_dir, &mp, &e) != LOAM_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    const loam_tokenizer *tok = loam_model_tokenizer(m);
    if (!tok) {
        cli_error(CMD, "%s has no tokenizer.json", model_dir);
        goto done;
    }
    int32_t adapter = -1;
    if (adapter_dir) {
        if (loam_model_load_adapter(m, "adapter", adapter_dir, &e) != LOAM_OK) {
            cli_error(CMD, "%s", e.msg);
            goto done;
        }
        adapter = loam_model_adapter_id(m, "adapter");
    }
    if (loam_tok_encode(tok, text, text_len, true, NULL, 0, &n_ids, &e) != LOAM_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    if (!ids || loam_tok_encode(tok, text, text_len, true, ids, n_ids, &n_ids, &e) != LOAM_OK) {
        cli_error(CMD, "%s", ids ? e.msg : "out of memory");
        goto done;
    }
    if (n_ids < 2) {
        cli_error(CMD, "%s holds %zu token(s); at least 2 are needed", file, n_ids);
        goto done;
    }
    loam_model_info info;
    loam_model_get_info(m, &info);
    if ((size_t)ctx > n_ids) ctx = (long long)n_ids;
    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = (int32_t)ctx;
    sp.n_batch = PIECE;
    sp.n_logits = PIECE;
    sp.n_threads = (int32_t)threads;
    sp.reference = reference;
    ent = malloc(PIECE * sizeof *ent);
    if (!ent || loam_session_new(&s, m, &sp, &e) != LOAM_OK) {
        cli_error(CMD, "%s", ent ? e.msg : "out of memory");
        goto done;
    }
    double total = 0.0;
    size_t scored = 0, window = 0;
    for (size_t w0 = 0; w0 < n_ids; w0 += (size_t)ctx, window++) {
        size_t wn = n_ids - w0 < (size_t)ctx ? n_ids - w0 : (size_t)ctx;
        if (wn < 2) break; /* a lone last token has nothing to be predicted from */
        loam_session_seq_reset(s, 0);
        double wsum = 0.0;
        /* positions [p0, p0+n) of the window; the logits of position i score token i+1 */
        for (size_t p0 = 0; p0 + 1 < wn; p0 += PIECE) {
            size_t n = wn - 1 - p0 < PIECE ? wn - 1 - p0 : PIECE;
            for (size_t i = 0; i < n; i++)
                ent[i] = (loam_batch_entry){0, (int32_t)(p0 + i), ids[w0 + p0 + i], adapter, true};
            if (loam_session_decode(s, ent, n, &e) != LOAM_OK) {
                cli_error(CMD, "%s", e.msg);
                goto done;
            }
            for (size_t i = 0; i < n; i++) {
                int32_t target = ids[w0 + p0 + i + 1];
                if (target < 0 || target >= info.n_vocab) {
                    cli_error(CMD, "token id %d is outside the model's vocabulary", target);
                    goto done;
                }
                wsum += nll(loam_session_logits(s, i), info.n_vocab, target);
            }
        }
        total += wsum;
        scored += wn - 1;
        if (!json)
            fprintf(stderr, "window %zu: %zu tokens, NLL %.4f, perplexity %.4f\n", window + 1, wn,
                    wsum / (double)(wn - 1), exp(wsum / (double)(wn - 1)));
    }
    double mean = total / (double)scored;
    if (json)
        printf("{\"tokens\": %zu, \"scored\": %zu, \"windows\": %zu, \"ctx\": %lld, \"nll\": %.6f, "
               "\"perplexity\": %.6f}\n",
               n_ids, scored, window, ctx, mean, exp(mean));
    else
        printf("tokens %zu, scored %zu in %zu window(s) of %lld, NLL %.4f, perplexity %.4f\n",
               n_ids, scored, window, ctx, mean, exp(mean));
    rc = 0;
done:
    free(ent);
    free(ids);
    free(text);
    loam_session_free(s);
    loam_model_close(m);
    return rc;
}
