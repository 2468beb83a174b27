/* bench_template.c: how long chat-template work takes per request: parsing a real template and
 * rendering conversations of growing length with it.
 *
 *   build/bench/bench_template [tokenizer_config.json]
 *   (default: tests/.cache/tokenizer-qwen3/package/models/tokenizer_config.json, see
 *    tests/fetch-data.sh)
 *
 * Build: cc -O2 -Iinclude bench/bench_template.c build/libloam.a \
 *          $(pkg-config --libs libcjson libpcre2-8 libutf8proc libmicrohttpd) -fopenmp -lm
 * -lpthread \ -o build/bench/bench_template
 *
 * Measured (best and median of N runs each):
 *   - parse: loam_chat_template_new on the config's chat_template;
 *   - render: loam_chat_template_render of a parsed template for a conversation with a system
 *     prompt, tools (2 definitions), a tool call and its result, then K user/assistant turns
 *     (K = 1, 10, 100, 1000), i.e. what a server does per request once the template is cached;
 *   - apply: loam_chat_apply for the K = 10 conversation (config JSON parse + template parse +
 *     render: the cost without caching).
 * Validation first: every rendering starts with "<|im_start|>system" and grows with K.
 */
#define _POSIX_C_SOURCE 200809L
#include "loam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    return b;
}

/* The chat_template string of a tokenizer_config.json, extracted with the library itself:
 * rendering "{{ chat_template }}" over the config gives the template text. */
static char *template_of(const char *cfg) {
    loam_chat_template *t;
    loam_err e;
    char *out = NULL;
    if (loam_chat_template_new(&t, "{{ chat_template }}", 19, &e) != LOAM_OK)
        return NULL;
    if (loam_chat_template_render(t, cfg, &out, NULL, &e) != LOAM_OK)
        fprintf(stderr, "%s\n", e.msg);
    loam_chat_template_free(t);
    return out;
}

static char *conversation(int turns, bool as_context) {
    size_t cap = 4096 + (size_t)turns * 400, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(
        b + n, cap - n,
        "%s[{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"},"
        "{\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
        "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\", "
        "\"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
        "{\"role\": \"tool\", \"content\": \"21 C, sunny\"}",
        as_context ? "{\"messages\": " : "");
    for (int k = 0; k < turns; k++)
        n += (size_t)snprintf(b + n, cap - n,
                              ",{\"role\": \"user\", \"content\": \"Question number %d: tell me "
                              "something about the number %d, please.\"}"
                              ",{\"role\": \"assistant\", \"content\": \"<think>\\nThinking about "
                              "%d.\\n</think>\\n\\nThe number %d is a fine number.\"}",
                              k, k, k, k);
    n += (size_t)snprintf(b + n, cap - n, "]");
    if (as_context)
        snprintf(b + n, cap - n,
                 ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                 "\"description\": \"Weather in a city\", \"parameters\": {\"type\": \"object\", "
                 "\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}},"
                 "{\"type\": \"function\", \"function\": {\"name\": \"search\", \"description\": "
                 "\"Web search\", \"parameters\": {\"type\": \"object\", \"properties\": {\"q\": "
                 "{\"type\": \"string\"}}}}}],"
                 " \"add_generation_prompt\": true, \"eos_token\": \"<|im_end|>\"}");
    return b;
}

static void report(const char *what, double *t, int n, size_t out_bytes) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    printf("%-34s best %9.1f us   median %9.1f us", what, t[0] * 1e6, t[n / 2] * 1e6);
    if (out_bytes)
        printf("   %8zu bytes out  (%.0f MB/s)", out_bytes, (double)out_bytes / t[n / 2] / 1e6);
    printf("\n");
}

int main(int argc, char **argv) {
    const char *path =
        argc > 1 ? argv[1] : "tests/.cache/tokenizer-qwen3/package/models/tokenizer_config.json";
    size_t cfg_len;
    char *cfg = slurp(path, &cfg_len);
    if (!cfg) {
        fprintf(stderr, "bench_template: cannot read %s (run tests/fetch-data.sh)\n", path);
        return 1;
    }
    char *src = template_of(cfg);
    if (!src)
        return 1;
    loam_err e;
    enum { N = 200 };
    double t[N];
    loam_chat_template *tpl = NULL;
    for (int i = 0; i < N; i++) {
        loam_chat_template *x;
        double t0 = now_s();
        if (loam_chat_template_new(&x, src, strlen(src), &e) != LOAM_OK) {
            fprintf(stderr, "parse: %s\n", e.msg);
            return 1;
        }
        t[i] = now_s() - t0;
        if (tpl)
            loam_chat_template_free(x);
        else
            tpl = x;
    }
    printf("template: %s (%zu bytes)\n", path, strlen(src));
    report("parse", t, N, 0);
    size_t prev = 0;
    static const int turns[] = {1, 10, 100, 1000};
    for (size_t k = 0; k < sizeof turns / sizeof turns[0]; k++) {
        char *ctx = conversation(turns[k], true);
        int runs = turns[k] >= 1000 ? 20 : N;
        size_t out_len = 0;
        for (int i = 0; i < runs; i++) {
            char *out;
            double t0 = now_s();
            if (loam_chat_template_render(tpl, ctx, &out, &out_len, &e) != LOAM_OK) {
                fprintf(stderr, "render: %s\n", e.msg);
                return 1;
            }
            t[i] = now_s() - t0;
            if (strncmp(out, "<|im_start|>system", 18) != 0 || out_len <= prev) {
                fprintf(stderr, "render: unexpected output\n");
                return 1;
            }
            loam_free(out);
        }
        prev = out_len;
        char what[64];
        snprintf(what, sizeof what, "render, %d turns (%d messages)", turns[k], 4 + 2 * turns[k]);
        report(what, t, runs, out_len);
        free(ctx);
    }
    char *msgs = conversation(10, false);
    for (int i = 0; i < N; i++) {
        char *out;
        double t0 = now_s();
        if (loam_chat_apply(cfg, cfg_len, NULL, msgs, NULL, NULL, true, &out, NULL, &e) !=
            LOAM_OK) {
            fprintf(stderr, "apply: %s\n", e.msg);
            return 1;
        }
        t[i] = now_s() - t0;
        loam_free(out);
    }
    report("apply (config + parse + render, 10)", t, N, 0);
    free(msgs);
    loam_chat_template_free(tpl);
    loam_free(src);
    free(cfg);
    return 0;
}
