/* cmd_generate.c: `loam generate` (write text) and `loam chat` (interactive). Both are thin users
 * of the public one-call API (loam_generate / loam_chat). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *k_generate_help =
    "usage: loam generate [-m DIR] [-a DIR | --no-adapter] [--prompt TEXT | --prompt-file F]\n"
    "                     [--chat] [--system TEXT] [--no-think] [-n K] [--max-tokens N]\n"
    "                     [--temperature T] [--top-p P] [--top-k K] [--min-p P]\n"
    "                     [--xtc-probability P] [--xtc-threshold T]\n"
    "                     [--repeat-penalty R] [--presence-penalty P] [--frequency-penalty P]\n"
    "                     [--seed S] [--stop S]... [--ctx N] [-t THREADS] [--quiet]\n"
    "\n"
    "Writes text with a model and, optionally, a LoRA adapter applied at run time.\n"
    "With no -m, the demo model in models/demo and its voice adapter write a post.\n"
    "\n"
    "  -m, --model DIR        model directory (config.json, model*.safetensors, tokenizer.json)\n"
    "  -a, --adapter DIR      LoRA adapter directory (mlx-lm or PEFT)\n"
    "      --no-adapter       with the demo model: use the base voice\n"
    "  -p, --prompt TEXT      the prompt (chat mode: the user message)\n"
    "      --prompt-file F    read the prompt from F\n"
    "      --chat             render the prompt with the model's chat template\n"
    "      --system TEXT      system message (implies --chat)\n"
    "      --no-think         chat templates with a thinking switch: enable_thinking=false\n"
    "  -n K                   write K completions of the same prompt (decoded together)\n"
    "      --max-tokens N     tokens per completion (default 200)\n"
    "      --temperature T    0 = greedy (default: generation_config.json, else 0.8)\n"
    "      --top-p P, --top-k K, --min-p P       filters (FORMATS.md §7.3 order)\n"
    "      --xtc-probability P, --xtc-threshold T\n"
    "                         XTC: with probability P, drop every token more likely than\n"
    "                         the least likely one above T (default 0.1), except \"\\n\" and EOS\n"
    "      --repeat-penalty R, --presence-penalty P, --frequency-penalty P\n"
    "      --seed S           same seed, same text (default: from the clock)\n"
    "      --stop S           stop before the string S (repeatable)\n"
    "      --ctx N            context per completion (default 2048)\n"
    "  -t, --threads N        CPU threads (default: all cores)\n"
    "  -q, --quiet            no statistics line on stderr\n"
    "\n"
    "The text streams to stdout; a statistics line (load time, prompt and generation tokens/s,\n"
    "peak memory) goes to stderr.\n";

typedef struct gen_opts {
    const char *model, *adapter, *prompt, *prompt_file, *system;
    bool no_adapter, chat, no_think, quiet, seed_given;
    long long n, max_tokens, top_k, ctx, threads;
    double temperature, top_p, min_p, repeat, presence, frequency, xtc_probability, xtc_threshold;
    unsigned long long seed;
    const char *stop[8];
    int n_stop;
} gen_opts;

static bool stream_cb(void *user, int32_t index, const char *text, size_t len) {
    (void)user;
    (void)index;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* sampling defaults from generation_config.json when present */
static void apply_generation_config(const char *dir, loam_sampler_params *sp) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "rb");
    sp->temperature = 0.8f;
    sp->top_p = 0.95f;
    if (!f) return;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    if (!j) return;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "temperature")) && cJSON_IsNumber(v))
        sp->temperature = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "top_p")) && cJSON_IsNumber(v))
        sp->top_p = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "top_k")) && cJSON_IsNumber(v))
        sp->top_k = (int32_t)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "min_p")) && cJSON_IsNumber(v))
        sp->min_p = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "repetition_penalty")) && cJSON_IsNumber(v))
        sp->repetition_penalty = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "do_sample")) && cJSON_IsFalse(v))
        sp->temperature = 0;
    cJSON_Delete(j);
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

static int parse_gen_opts(const char *cmd, int argc, char **argv, gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->n = 1;
    o->max_tokens = 200;
    o->top_k = -1;
    o->ctx = 2048;
    o->temperature = NAN;
    o->top_p = NAN;
    o->min_p = NAN;
    o->xtc_probability = NAN;
    o->xtc_threshold = NAN;
    o->repeat = NAN;
    o->presence = NAN;
    o->frequency = NAN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!v) return cli_usage_error(cmd, "%s needs a value", a);                                \
        i++;                                                                                       \
    } while (0)
#define INT_OPT(field)                                                                             \
    do {                                                                                           \
        NEED_VALUE();                                                                              \
        if (cli_parse_i64(v, &o->field)) return cli_usage_error(cmd, "%s: not an integer: %s", a, v); \
    } while (0)
#define F64_OPT(field)                                                                             \
    do {                                                                                           \
        NEED_VALUE();                                                                              \
        if (cli_parse_f64(v, &o->field)) return cli_usage_error(cmd, "%s: not a number: %s", a, v); \
    } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); o->model = v; }
        else if (!strcmp(a, "-a") || !strcmp(a, "--adapter")) { NEED_VALUE(); o->adapter = v; }
        else if (!strcmp(a, "--no-adapter")) o->no_adapter = true;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEED_VALUE(); o->prompt = v; }
        else if (!strcmp(a, "--prompt-file")) { NEED_VALUE(); o->prompt_file = v; }
        else if (!strcmp(a, "--chat")) o->chat = true;
        else if (!strcmp(a, "--system")) { NEED_VALUE(); o->system = v; o->chat = true; }
        else if (!strcmp(a, "--no-think")) o->no_think = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "-n")) INT_OPT(n);
        else if (!strcmp(a, "--max-tokens")) INT_OPT(max_tokens);
        else if (!strcmp(a, "--top-k")) INT_OPT(top_k);
        else if (!strcmp(a, "--ctx")) INT_OPT(ctx);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT_OPT(threads);
        else if (!strcmp(a, "--temperature") || !strcmp(a, "--temp")) F64_OPT(temperature);
        else if (!strcmp(a, "--top-p")) F64_OPT(top_p);
        else if (!strcmp(a, "--min-p")) F64_OPT(min_p);
        else if (!strcmp(a, "--xtc-probability")) F64_OPT(xtc_probability);
        else if (!strcmp(a, "--xtc-threshold")) F64_OPT(xtc_threshold);
        else if (!strcmp(a, "--repeat-penalty")) F64_OPT(repeat);
        else if (!strcmp(a, "--presence-penalty")) F64_OPT(presence);
        else if (!strcmp(a, "--frequency-penalty")) F64_OPT(frequency);
        else if (!strcmp(a, "--seed")) {
            long long s;
            NEED_VALUE();
            if (cli_parse_i64(v, &s)) return cli_usage_error(cmd, "--seed: not an integer: %s", v);
            o->seed = (unsigned long long)s;
            o->seed_given = true;
        } else if (!strcmp(a, "--stop")) {
            NEED_VALUE();
            if (o->n_stop == 8) return cli_usage_error(cmd, "at most 8 --stop strings");
            if (!v[0]) return cli_usage_error(cmd, "--stop needs a non-empty string");
            o->stop[o->n_stop++] = v;
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
#undef NEED_VALUE
#undef INT_OPT
#undef F64_OPT
    }
    if (o->n < 1 || o->n > 64) return cli_usage_error(cmd, "-n must be in [1, 64]");
    if (o->max_tokens < 0) return cli_usage_error(cmd, "--max-tokens must be >= 0");
    if (o->ctx < 16) return cli_usage_error(cmd, "--ctx must be >= 16");
    if (!isnan(o->temperature) && o->temperature < 0)
        return cli_usage_error(cmd, "--temperature must be >= 0");
    if (!isnan(o->top_p) && (o->top_p < 0 || o->top_p > 1))
        return cli_usage_error(cmd, "--top-p must be in [0, 1]");
    if (!isnan(o->min_p) && (o->min_p < 0 || o->min_p > 1))
        return cli_usage_error(cmd, "--min-p must be in [0, 1]");
    if (!isnan(o->xtc_probability) && (o->xtc_probability < 0 || o->xtc_probability > 1))
        return cli_usage_error(cmd, "--xtc-probability must be in [0, 1]");
    if (!isnan(o->xtc_threshold) && (o->xtc_threshold < 0 || o->xtc_threshold > 0.5))
        return cli_usage_error(cmd, "--xtc-threshold must be in [0, 0.5]");
    if (o->prompt && o->prompt_file) return cli_usage_error(cmd, "give --prompt or --prompt-file");
    return 0;
}

/* Opens the model (and adapter, named "adapter"); fills sampling and generation params. */
static int open_model(const char *cmd, gen_opts *o, loam_model **m, loam_generate_params *gp,
                      double *load_seconds) {
    bool demo = false;
    if (!o->model) {
        o->model = cli_default_model_dir();
        if (!o->model)
            return cli_usage_error(cmd, "no -m given and the demo model (models/demo) is not "
                                        "in this tree");
        demo = true;
    }
    char demo_adapter[4200];
    if (demo && !o->adapter && !o->no_adapter) {
        snprintf(demo_adapter, sizeof demo_adapter, "%s/adapter", o->model);
        o->adapter = demo_adapter;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    loam_err err = {0};
    loam_model_params mp = loam_model_params_default();
    if (o->threads > 0) mp.n_threads = (int32_t)o->threads;
    if (loam_model_open(m, o->model, &mp, &err) != LOAM_OK) return cli_error(cmd, "%s", err.msg);
    if (o->adapter && !o->no_adapter &&
        loam_model_load_adapter(*m, "adapter", o->adapter, &err) != LOAM_OK) {
        loam_model_close(*m);
        *m = NULL;
        return cli_error(cmd, "%s", err.msg);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *load_seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    *gp = loam_generate_params_default();
    apply_generation_config(o->model, &gp->sampling);
    if (!isnan(o->temperature)) gp->sampling.temperature = (float)o->temperature;
    if (!isnan(o->top_p)) gp->sampling.top_p = (float)o->top_p;
    if (!isnan(o->min_p)) gp->sampling.min_p = (float)o->min_p;
    if (!isnan(o->xtc_probability)) gp->sampling.xtc_probability = (float)o->xtc_probability;
    if (!isnan(o->xtc_threshold)) gp->sampling.xtc_threshold = (float)o->xtc_threshold;
    if (o->top_k >= 0) gp->sampling.top_k = (int32_t)o->top_k;
    if (!isnan(o->repeat)) gp->sampling.repetition_penalty = (float)o->repeat;
    if (!isnan(o->presence)) gp->sampling.presence_penalty = (float)o->presence;
    if (!isnan(o->frequency)) gp->sampling.frequency_penalty = (float)o->frequency;
    gp->sampling.seed = o->seed_given ? o->seed
                                      : (unsigned long long)time(NULL) ^
                                            ((unsigned long long)getpid() << 32);
    gp->n = (int32_t)o->n;
    gp->max_tokens = (int32_t)o->max_tokens;
    gp->n_ctx = (int32_t)o->ctx;
    gp->n_threads = (int32_t)o->threads;
    gp->stop = o->stop;
    gp->n_stop = (size_t)o->n_stop;
    gp->adapter = o->adapter && !o->no_adapter ? "adapter" : NULL;
    return 0;
}

static void print_stats(double load_s, const loam_usage *u) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double pp = u->prompt_seconds > 0 ? u->prompt_tokens / u->prompt_seconds : 0;
    double tg = u->gen_seconds > 0 ? (u->completion_tokens > 1 ? u->completion_tokens - 1 : 0) /
                                         u->gen_seconds
                                   : 0;
    fprintf(stderr,
            "\n[load %.2f s | prompt %d tok, %.1f tok/s | generated %d tok, %.1f tok/s | peak "
            "memory %.1f MiB]\n",
            load_s, u->prompt_tokens, pp, u->completion_tokens, tg, (double)ru.ru_maxrss / 1024.0);
}

static char *messages_json(const char *system, const char *user) {
    cJSON *arr = cJSON_CreateArray();
    if (system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", system);
        cJSON_AddItemToArray(arr, m);
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", user);
    cJSON_AddItemToArray(arr, m);
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

int loam_cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(k_generate_help, stdout);
            return 0;
        }
    gen_opts o;
    int rc = parse_gen_opts(cmd, argc, argv, &o);
    if (rc) return rc;
    bool demo = o.model == NULL;
    char *prompt_buf = NULL;
    const char *prompt = o.prompt;
    if (o.prompt_file) {
        prompt_buf = read_text_file(o.prompt_file);
        if (!prompt_buf) return cli_error(cmd, "%s: cannot read the prompt file", o.prompt_file);
        prompt = prompt_buf;
    }
    if (!prompt && demo) { /* the demo writes a post when asked in its chat format */
        prompt = "Write a post.";
        o.chat = true;
    }
    if (!prompt) {
        free(prompt_buf);
        return cli_usage_error(cmd, "give --prompt TEXT or --prompt-file F");
    }
    loam_model *m = NULL;
    loam_generate_params gp;
    double load_s = 0;
    rc = open_model(cmd, &o, &m, &gp, &load_s);
    if (rc) {
        free(prompt_buf);
        return rc;
    }
    if (gp.n == 1) gp.on_text = stream_cb;
    loam_completion *out = NULL;
    loam_usage usage;
    loam_err err = {0};
    loam_status s;
    if (o.chat) {
        char *msgs = messages_json(o.system, prompt);
        s = loam_chat(m, msgs, o.no_think ? "{\"enable_thinking\":false}" : NULL, &gp, &out,
                      &usage, &err);
        cJSON_free(msgs);
    } else {
        s = loam_generate(m, prompt, &gp, &out, &usage, &err);
    }
    free(prompt_buf);
    if (s != LOAM_OK) {
        loam_model_close(m);
        return cli_error(cmd, "%s", err.msg);
    }
    if (gp.n == 1) {
        fputc('\n', stdout);
    } else {
        for (int32_t i = 0; i < gp.n; i++)
            printf("%s--- %d ---\n%s\n", i ? "\n" : "", i + 1, out[i].text ? out[i].text : "");
    }
    fflush(stdout);
    if (!o.quiet) print_stats(load_s, &usage);
    loam_completions_free(out, gp.n);
    loam_model_close(m);
    return 0;
}

// ---- chat -------------------------------------------------------------------------------------

static const char *k_chat_help =
    "usage: loam chat [-m DIR] [-a DIR | --no-adapter] [--system TEXT] [--no-think]\n"
    "                 [sampling options of loam generate]\n"
    "\n"
    "Interactive chat with the model's chat template: type a message and press Enter; an empty\n"
    "line or end of input (Ctrl-D) ends the chat. The conversation is re-rendered each turn.\n";

int loam_cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(k_chat_help, stdout);
            return 0;
        }
    gen_opts o;
    int rc = parse_gen_opts(cmd, argc, argv, &o);
    if (rc) return rc;
    if (o.n != 1) return cli_usage_error(cmd, "-n is not available in chat");
    loam_model *m = NULL;
    loam_generate_params gp;
    double load_s = 0;
    if ((rc = open_model(cmd, &o, &m, &gp, &load_s))) return rc;
    gp.on_text = stream_cb;
    cJSON *history = cJSON_CreateArray();
    if (o.system) {
        cJSON *sm = cJSON_CreateObject();
        cJSON_AddStringToObject(sm, "role", "system");
        cJSON_AddStringToObject(sm, "content", o.system);
        cJSON_AddItemToArray(history, sm);
    }
    bool tty = isatty(0);
    char line[8192];
    rc = 0;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        if (!fgets(line, sizeof line, stdin)) break;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) break;
        cJSON *um = cJSON_CreateObject();
        cJSON_AddStringToObject(um, "role", "user");
        cJSON_AddStringToObject(um, "content", line);
        cJSON_AddItemToArray(history, um);
        char *msgs = cJSON_PrintUnformatted(history);
        loam_completion *out = NULL;
        loam_usage usage;
        loam_err err = {0};
        loam_status s = loam_chat(m, msgs, o.no_think ? "{\"enable_thinking\":false}" : NULL, &gp,
                                  &out, &usage, &err);
        cJSON_free(msgs);
        if (s != LOAM_OK) {
            rc = cli_error(cmd, "%s", err.msg);
            break;
        }
        fputc('\n', stdout);
        cJSON *am = cJSON_CreateObject();
        cJSON_AddStringToObject(am, "role", "assistant");
        cJSON_AddStringToObject(am, "content", out[0].text ? out[0].text : "");
        cJSON_AddItemToArray(history, am);
        loam_completions_free(out, 1);
        gp.sampling.seed++;
        if (!o.quiet) print_stats(load_s, &usage);
    }
    cJSON_Delete(history);
    loam_model_close(m);
    return rc;
}
