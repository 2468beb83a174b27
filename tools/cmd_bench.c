/* cmd_bench.c: `loam bench`: a llama-bench style speed table for one model (and adapter).
 *
 * Tests, each run `-r` times after one untimed warm-up, reported as mean ± sample standard
 * deviation of tokens/s over the repetitions:
 *   ppN     one N-token prompt decoded in a single call (chunked in steps of N rows), only the
 *           last position asks for logits (llama-bench's pp)
 *   tgN     N tokens decoded one call at a time from an empty context, logits every step
 *           (llama-bench's tg). With an adapter, repetitions alternate between the base model
 *           and the adapter in the same session, and the adapter's cost is reported as the
 *           mean ± sd of the paired slowdowns 1 - tps(adapter) / tps(base).
 *   tgN@dD  the same after a context of D tokens (-d; llama-bench's depth), prefilled once
 *           untimed; each repetition cuts the sequence back to D tokens
 *   bB tgS  B sequences decoded together for S steps, one entry per sequence per step: the
 *           batched decode sweep (total generated tokens/s)
 * In the same run it measures the memory read bandwidth of this machine with the same thread
 * count (best of 5 passes summing a 512 MiB buffer) and states each decode figure as a ratio
 * to the bandwidth ceiling: a step must read every weight byte once (loam_model_info
 * step_bytes), so one sequence cannot decode faster than bandwidth / step_bytes tokens/s, and B
 * sequences sharing each step not faster than B times that.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "bench"
#define MAX_BATCHES 16 /* result names: "tg1048576@d1048576 +lora" fits 32 */
#define MAX_REPS 100

static void usage(FILE *f) {
    fprintf(f,
            "usage: loam bench -m DIR [-a DIR] [-p 512] [-n 128] [-d 0] [-t THREADS] [--batch 1,4,16]\n"
            "                  [--batch-steps 32] [-r 3] [--lora-rank R [--lora-layers L]]\n"
            "                  [--backend cpu|cuda] [--json]\n"
            "\n"
            "Speed of prompt processing (ppN), generation (tgN) and batched generation of B\n"
            "sequences (bB), with the memory read bandwidth measured in the same run.\n"
            "\n"
            "  -m DIR           model directory\n"
            "  -a DIR           LoRA adapter applied to every sequence\n"
            "  -p N             prompt length (0 skips pp)\n"
            "  -n N             generated tokens (0 skips tg)\n"
            "  -d D             run tg after a context of D tokens (prefilled untimed)\n"
            "  -t N             threads (default: all cores)\n"
            "  --batch LIST     batch sizes of the sweep, e.g. 1,4,16 (empty string skips it)\n"
            "  --batch-steps S  decode steps per sweep run (default 32)\n"
            "  -r N             repetitions (default 3)\n"
            "  --lora-rank R    apply a random rank-R adapter (all seven projections of the\n"
            "                   last L layers, default 16), written to a temporary directory\n"
            "                   in $TMPDIR (default /tmp) and removed at the end\n"
            "  --lora-layers L  layers of that adapter\n"
            "  --backend B      cpu or cuda (a build made with `make CUDA=1`); default: the\n"
            "                   LOAM_DEVICE environment variable, else cpu\n"
            "  --json           print one JSON object instead of the table\n");
}

/* Best-of-5 read bandwidth in bytes/s of n_threads threads summing a 512 MiB buffer. */
static double read_bandwidth(int n_threads) {
    size_t n = (size_t)512 << 20, words = n / sizeof(uint64_t);
    uint64_t *buf = malloc(n);
    if (!buf) return 0.0;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    double best = 0.0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 5; pass++) {
        uint64_t total = 0;
        double t0 = cli_now();
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(+ : total)
        for (size_t i = 0; i < words; i++) total += buf[i];
        double dt = cli_now() - t0;
        sink += total;
        if (dt > 0 && (double)n / dt > best) best = (double)n / dt;
    }
    (void)sink;
    free(buf);
    return best;
}

typedef struct result {
    char name[32];
    int n_tokens;    /* tokens per repetition */
    int batch;       /* sequences per step (1 for pp, tg) */
    double mean, sd; /* tokens/s */
    double ceiling;  /* bandwidth ceiling in tokens/s, 0 for pp */
} result;

static void summarise(result *r, const double *tps, int reps) {
    double s = 0, ss = 0;
    for (int i = 0; i < reps; i++) s += tps[i];
    r->mean = s / reps;
    for (int i = 0; i < reps; i++) ss += (tps[i] - r->mean) * (tps[i] - r->mean);
    r->sd = reps > 1 ? sqrt(ss / (reps - 1)) : 0.0;
}

static uint32_t g_lcg = 12345;
static int32_t rand_token(int32_t n_vocab) {
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return (int32_t)((g_lcg >> 8) % (uint32_t)n_vocab);
}

static void reset_all(loam_session *s, int n_seq) {
    for (int q = 0; q < n_seq; q++) loam_session_seq_reset(s, q);
}

/* One prompt of p tokens in one call. Returns seconds, < 0 on error. */
static double run_pp(loam_session *s, loam_batch_entry *ent, int p, int32_t adapter,
                     int32_t n_vocab, loam_err *e) {
    reset_all(s, 1);
    for (int i = 0; i < p; i++)
        ent[i] = (loam_batch_entry){0, i, rand_token(n_vocab), adapter, i == p - 1};
    double t0 = cli_now();
    if (loam_session_decode(s, ent, (size_t)p, e) != LOAM_OK) return -1.0;
    return cli_now() - t0;
}

/* Sequences seq0 .. seq0+batch-1, first cut back to `depth` tokens (which they must hold), then
 * `steps` decode calls of one entry per sequence. Returns seconds, < 0 on error. */
static double run_tg(loam_session *s, loam_batch_entry *ent, int seq0, int batch, int depth,
                     int steps, int32_t adapter, int32_t n_vocab, loam_err *e) {
    for (int q = 0; q < batch; q++)
        if (loam_session_seq_truncate(s, seq0 + q, depth, e) != LOAM_OK) return -1.0;
    double t0 = cli_now();
    for (int t = 0; t < steps; t++) {
        for (int q = 0; q < batch; q++)
            ent[q] = (loam_batch_entry){seq0 + q, depth + t, rand_token(n_vocab), adapter, true};
        if (loam_session_decode(s, ent, (size_t)batch, e) != LOAM_OK) return -1.0;
    }
    return cli_now() - t0;
}

/* Fills sequence seq with `depth` random tokens (untimed), for tg at a depth. */
static loam_status prefill(loam_session *s, loam_batch_entry *ent, int seq, int depth,
                           int32_t adapter, int32_t n_vocab, loam_err *e) {
    loam_session_seq_reset(s, seq);
    for (int i = 0; i < depth; i++)
        ent[i] = (loam_batch_entry){seq, i, rand_token(n_vocab), adapter, false};
    return depth ? loam_session_decode(s, ent, (size_t)depth, e) : LOAM_OK;
}

static int parse_batches(const char *s, int *out) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096 || (*end && *end != ',') || n == MAX_BATCHES) return -1;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static void human_bytes(char *buf, size_t cap, double b) {
    if (b >= 1073741824.0) snprintf(buf, cap, "%.2f GiB", b / 1073741824.0);
    else snprintf(buf, cap, "%.2f MiB", b / 1048576.0);
}

int loam_cmd_bench(int argc, char **argv) {
    const char *model_dir = NULL, *adapter_dir = NULL, *batch_arg = "1,4,16", *backend_arg = NULL;
    long long p = 512, n = 128, threads = 0, reps = 3, batch_steps = 32, lora_rank = 0,
              lora_layers = 16, depth = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        bool has_val = i + 1 < argc;
        long long *num = NULL;
        long long lo = 0, hi = 0;
        if (strcmp(a, "-m") == 0 && has_val) model_dir = argv[++i];
        else if (strcmp(a, "-a") == 0 && has_val) adapter_dir = argv[++i];
        else if (strcmp(a, "--batch") == 0 && has_val) batch_arg = argv[++i];
        else if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--backend") == 0 && has_val) backend_arg = argv[++i];
        else if (strcmp(a, "-p") == 0 && has_val) num = &p, lo = 0, hi = 1 << 20;
        else if (strcmp(a, "-n") == 0 && has_val) num = &n, lo = 0, hi = 1 << 20;
        else if (strcmp(a, "-d") == 0 && has_val) num = &depth, lo = 0, hi = 1 << 20;
        else if (strcmp(a, "-t") == 0 && has_val) num = &threads, lo = 1, hi = 1024;
        else if (strcmp(a, "-r") == 0 && has_val) num = &reps, lo = 1, hi = MAX_REPS;
        else if (strcmp(a, "--batch-steps") == 0 && has_val) num = &batch_steps, lo = 1, hi = 1 << 16;
        else if (strcmp(a, "--lora-rank") == 0 && has_val) num = &lora_rank, lo = 1, hi = 4096;
        else if (strcmp(a, "--lora-layers") == 0 && has_val) num = &lora_layers, lo = 1, hi = 4096;
        else return cli_usage_error(CMD, "unknown or incomplete option '%s'", a);
        if (num && (cli_parse_i64(argv[++i], num) || *num < lo || *num > hi))
            return cli_usage_error(CMD, "%s wants a number in [%lld, %lld], got '%s'", a, lo, hi,
                                   argv[i]);
    }
    if (backend_arg && strcmp(backend_arg, "cpu") != 0 && strcmp(backend_arg, "cuda") != 0)
        return cli_usage_error(CMD, "--backend wants cpu or cuda, got '%s'", backend_arg);
    if (!model_dir) model_dir = cli_default_model_dir();
    if (!model_dir) return cli_usage_error(CMD, "no model: pass -m DIR");
    int batches[MAX_BATCHES], n_batches = parse_batches(batch_arg, batches);
    if (n_batches < 0)
        return cli_usage_error(CMD, "--batch wants sizes like 1,4,16, got '%s'", batch_arg);
    if (threads == 0) threads = omp_get_num_procs();
    if (adapter_dir && lora_rank)
        return cli_usage_error(CMD, "-a and --lora-rank exclude each other");

    int rc = 1;
    loam_err e;
    loam_model *m = NULL;
    loam_session *s = NULL;
    loam_batch_entry *ent = NULL;
    result res[3 + MAX_BATCHES];
    int n_res = 0;
    char synth_dir[256] = "";

    double t_load = cli_now();
    loam_model_params mp = loam_model_params_default();
    mp.n_threads = (int32_t)threads;
    if (backend_arg) mp.device = strcmp(backend_arg, "cuda") == 0 ? LOAM_DEVICE_CUDA : LOAM_DEVICE_CPU;
    if (loam_model_open(&m, model_dir, &mp, &e) != LOAM_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    t_load = cli_now() - t_load;
    loam_model_info info;
    loam_model_get_info(m, &info);
    if (lora_rank) {
        char msg[256];
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp || strlen(tmp) > sizeof synth_dir - 24) tmp = "/tmp";
        snprintf(synth_dir, sizeof synth_dir, "%s/loam-bench-lora-XXXXXX", tmp);
        if (!mkdtemp(synth_dir)) {
            synth_dir[0] = '\0';
            cli_error(CMD, "cannot create a temporary directory");
            goto done;
        }
        if (lora_layers > info.n_layer) lora_layers = info.n_layer;
        if (cli_synth_lora(&info, synth_dir, (int)lora_rank, (int)lora_layers, 20.0f, msg,
                           sizeof msg) != 0) {
            cli_error(CMD, "synthetic adapter: %s", msg);
            goto done;
        }
        adapter_dir = synth_dir;
    }
    int32_t adapter = -1;
    if (adapter_dir) {
        if (loam_model_load_adapter(m, "adapter", adapter_dir, &e) != LOAM_OK) {
            cli_error(CMD, "%s", e.msg);
            goto done;
        }
        adapter = loam_model_adapter_id(m, "adapter");
    }

    int max_b = 1;
    for (int i = 0; i < n_batches; i++) max_b = batches[i] > max_b ? batches[i] : max_b;
    /* sequences 0 and 1 hold tg's base and adapter runs (depth + n each) */
    long long ctx = p + 8 > 2 * (depth + n + 8) ? p + 8 : 2 * (depth + n + 8);
    if ((long long)max_b * (batch_steps + 8) > ctx) ctx = (long long)max_b * (batch_steps + 8);
    if (ctx > (1 << 24)) {
        cli_error(CMD, "the requested tests need %lld context tokens, too many", ctx);
        goto done;
    }
    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = (int32_t)ctx;
    sp.n_seq_max = max_b > 2 ? max_b : 2;
    long long rows = p > max_b ? p : max_b, fill = depth < 512 ? depth : 512;
    sp.n_batch = (int32_t)(rows > fill ? rows : fill);
    sp.n_logits = max_b;
    sp.n_threads = (int32_t)threads;
    if (loam_session_new(&s, m, &sp, &e) != LOAM_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    ent = malloc((size_t)(rows > depth ? rows : depth) * sizeof *ent);
    if (!ent) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    const bool gpu = strcmp(loam_session_backend(s), "cuda") == 0;
    char backend[48];
    snprintf(backend, sizeof backend, "cpu %s", loam_cpu_kernels_name());
    if (!json) fprintf(stderr, "measuring memory %s bandwidth ...\n", gpu ? "copy" : "read");
    double bw = 0.0;
    if (!gpu) {
        bw = read_bandwidth((int)threads);
    } else {
        char name[32];
        if (loam_cuda_device_info(name, sizeof name, &bw, &e) != LOAM_OK) {
            cli_error(CMD, "%s", e.msg);
            goto done;
        }
        snprintf(backend, sizeof backend, "cuda %s", name);
    }
    double ceiling1 = info.step_bytes ? bw / (double)info.step_bytes : 0.0;

    double tps[MAX_REPS];
    if (p > 0) {
        result *r = &res[n_res++];
        snprintf(r->name, sizeof r->name, "pp%lld", p);
        r->n_tokens = (int)p, r->batch = 1, r->ceiling = 0;
        if (!json) fprintf(stderr, "%s ...\n", r->name);
        for (int i = -1; i < reps; i++) {
            double dt = run_pp(s, ent, (int)p, adapter, info.n_vocab, &e);
            if (dt < 0) goto decode_failed;
            if (i >= 0) tps[i] = (double)p / dt;
        }
        summarise(r, tps, (int)reps);
    }
    double lora_cost = 0, lora_cost_sd = 0; /* paired: 1 - tps(adapter) / tps(base) */
    if (n > 0) {
        /* with an adapter, base-model and adapter repetitions alternate in the same session,
         * so drift in the machine's speed falls on both alike */
        result *r = &res[n_res++], *rb = NULL;
        double tps_base[MAX_REPS], cost[MAX_REPS];
        char dtag[24] = "";
        if (depth) snprintf(dtag, sizeof dtag, "@d%lld", depth);
        if (adapter >= 0) {
            rb = r;
            r = &res[n_res++];
            snprintf(rb->name, sizeof rb->name, "tg%lld%s base", n, dtag);
            rb->n_tokens = (int)n, rb->batch = 1, rb->ceiling = ceiling1;
        }
        snprintf(r->name, sizeof r->name, adapter >= 0 ? "tg%lld%s +lora" : "tg%lld%s", n, dtag);
        r->n_tokens = (int)n, r->batch = 1, r->ceiling = ceiling1;
        if (!json) fprintf(stderr, "tg%lld%s ...\n", n, depth ? " (prefilling the depth)" : "");
        if (prefill(s, ent, 0, (int)depth, rb ? -1 : adapter, info.n_vocab, &e) != LOAM_OK ||
            (rb && prefill(s, ent, 1, (int)depth, adapter, info.n_vocab, &e) != LOAM_OK))
            goto decode_failed;
        for (int i = -1; i < reps; i++) {
            if (rb) {
                double db = run_tg(s, ent, 0, 1, (int)depth, i < 0 ? 8 : (int)n, -1, info.n_vocab,
                                   &e);
                if (db < 0) goto decode_failed;
                if (i >= 0) tps_base[i] = (double)n / db;
            }
            double dt = run_tg(s, ent, rb ? 1 : 0, 1, (int)depth, i < 0 ? 8 : (int)n, adapter,
                               info.n_vocab, &e);
            if (dt < 0) goto decode_failed;
            if (i >= 0) tps[i] = (double)n / dt;
            if (i >= 0 && rb) cost[i] = 1.0 - tps[i] / tps_base[i];
        }
        summarise(r, tps, (int)reps);
        if (rb) {
            summarise(rb, tps_base, (int)reps);
            result c;
            summarise(&c, cost, (int)reps);
            lora_cost = c.mean, lora_cost_sd = c.sd;
        }
    }
    reset_all(s, 2); /* tg's sequences */
    for (int b = 0; b < n_batches; b++) {
        result *r = &res[n_res++];
        int B = batches[b];
        snprintf(r->name, sizeof r->name, "b%d tg%lld", B, batch_steps);
        r->n_tokens = (int)batch_steps * B, r->batch = B, r->ceiling = ceiling1 * B;
        if (!json) fprintf(stderr, "%s ...\n", r->name);
        for (int i = -1; i < reps; i++) {
            double dt = run_tg(s, ent, 0, B, 0, i < 0 ? 2 : (int)batch_steps, adapter,
                               info.n_vocab, &e);
            if (dt < 0) goto decode_failed;
            if (i >= 0) tps[i] = (double)B * (double)batch_steps / dt;
        }
        summarise(r, tps, (int)reps);
    }

    char desc[128], size[32], params[32];
    char lora[48] = "";
    if (lora_rank) snprintf(lora, sizeof lora, " +lora r%lld x%lld", lora_rank, lora_layers);
    else if (adapter_dir) snprintf(lora, sizeof lora, " +lora");
    if (info.bits)
        snprintf(desc, sizeof desc, "%s %d-bit g%d%s%s", info.arch, info.bits, info.group_size,
                 info.mixed ? " mixed" : "", lora);
    else
        snprintf(desc, sizeof desc, "%s float%s", info.arch, lora);
    human_bytes(size, sizeof size, (double)info.weight_bytes);
    if (info.n_params >= 1000000000)
        snprintf(params, sizeof params, "%.2f B", (double)info.n_params / 1e9);
    else
        snprintf(params, sizeof params, "%.2f M", (double)info.n_params / 1e6);
    if (json) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "model", desc);
        cJSON_AddStringToObject(o, "model_dir", model_dir);
        if (lora_rank) cJSON_AddStringToObject(o, "adapter", lora);
        else if (adapter_dir) cJSON_AddStringToObject(o, "adapter_dir", adapter_dir);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)info.weight_bytes);
        cJSON_AddNumberToObject(o, "step_bytes", (double)info.step_bytes);
        cJSON_AddNumberToObject(o, "n_params", (double)info.n_params);
        cJSON_AddStringToObject(o, "kernels", loam_cpu_kernels_name());
        cJSON_AddStringToObject(o, "backend", backend);
        cJSON_AddNumberToObject(o, "threads", (double)threads);
        cJSON_AddNumberToObject(o, "load_s", t_load);
        cJSON_AddNumberToObject(o, gpu ? "copy_bandwidth_gbs" : "read_bandwidth_gbs", bw / 1e9);
        cJSON_AddNumberToObject(o, "ceiling_tps", ceiling1);
        for (int i = 0; i < n_res; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "test", res[i].name);
            cJSON_AddNumberToObject(t, "batch", res[i].batch);
            cJSON_AddNumberToObject(t, "tokens", res[i].n_tokens);
            cJSON_AddNumberToObject(t, "tps", res[i].mean);
            cJSON_AddNumberToObject(t, "tps_sd", res[i].sd);
            if (res[i].ceiling > 0)
                cJSON_AddNumberToObject(t, "of_ceiling", res[i].mean / res[i].ceiling);
            cJSON_AddItemToArray(arr, t);
        }
        cJSON_AddItemToObject(o, "tests", arr);
        if (adapter >= 0 && n > 0) {
            cJSON_AddNumberToObject(o, "lora_decode_cost", lora_cost);
            cJSON_AddNumberToObject(o, "lora_decode_cost_sd", lora_cost_sd);
        }
        cJSON_AddNumberToObject(o, "repetitions", (double)reps);
        char *txt = cJSON_Print(o);
        if (txt) printf("%s\n", txt);
        free(txt);
        cJSON_Delete(o);
    } else {
        printf("| %-42s | %10s | %8s | %-14s | %7s | %-16s | %18s | %9s |\n", "model", "size",
               "params", "backend", "threads", "test", "t/s", "of ceil.");
        printf("| %.42s | %.10s | %.8s | %.14s | %.7s | %.16s | %.18s | %.9s |\n",
               "------------------------------------------", "---------:", "-------:",
               "--------------", "------:", "----------------", "-----------------:", "--------:");
        for (int i = 0; i < n_res; i++) {
            char tps_s[40], ceil_s[16] = "";
            snprintf(tps_s, sizeof tps_s, "%.2f ± %.2f", res[i].mean, res[i].sd);
            if (res[i].ceiling > 0)
                snprintf(ceil_s, sizeof ceil_s, "%.1f%%", 100.0 * res[i].mean / res[i].ceiling);
            printf("| %-42s | %10s | %8s | %-14s | %7lld | %-16s | %19s | %9s |\n", desc, size,
                   params, backend, threads, res[i].name, tps_s, ceil_s);
        }
        if (gpu)
            printf("\ndevice copy bandwidth (read + write): %.1f GB/s; one decode step reads %.2f "
                   "GB of weights, so the ceiling is %.2f tok/s per sequence; load %.2f s\n",
                   bw / 1e9, (double)info.step_bytes / 1e9, ceiling1, t_load);
        else
            printf("\nmemory read bandwidth (%lld threads): %.1f GB/s; one decode step reads %.2f "
                   "GB of weights, so the ceiling is %.2f tok/s per sequence; load %.2f s\n",
                   threads, bw / 1e9, (double)info.step_bytes / 1e9, ceiling1, t_load);
        if (adapter >= 0 && n > 0)
            printf("adapter cost in decode: %.1f%% ± %.1f%% (repetitions alternate base and "
                   "adapter)\n",
                   100.0 * lora_cost, 100.0 * lora_cost_sd);
    }
    rc = 0;
    goto done;
decode_failed:
    cli_error(CMD, "%s", e.msg);
done:
    free(ent);
    loam_session_free(s);
    loam_model_close(m);
    if (synth_dir[0]) {
        char path[320];
        snprintf(path, sizeof path, "%s/adapters.safetensors", synth_dir);
        remove(path);
        snprintf(path, sizeof path, "%s/adapter_config.json", synth_dir);
        remove(path);
        rmdir(synth_dir);
    }
    return rc;
}
