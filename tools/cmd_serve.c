/* cmd_serve.c: `loam serve`, the OpenAI-compatible server (loam_server_* of the public API).
 * Loads the model and its adapters once, serves until SIGINT/SIGTERM, then shuts down
 * gracefully and exits 0. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char *k_help =
    "usage: loam serve -m DIR [-a NAME=DIR]... [--host 127.0.0.1] [--port 8080]\n"
    "                  [--parallel N] [--ctx N] [--max-queue N] [--max-tokens N]\n"
    "                  [--api-key KEY | --api-key-file F] [--name NAME] [-t THREADS]\n"
    "                  [--grace SECONDS]\n"
    "\n"
    "Serves the model with an OpenAI-compatible HTTP API (loopback by default):\n"
    "  POST /v1/chat/completions, POST /v1/completions (streamed with \"stream\": true),\n"
    "  GET /v1/models, GET /health, GET /metrics (Prometheus text).\n"
    "A request's \"model\" picks an adapter by NAME; the base model's name (see --name) or no\n"
    "\"model\" means no adapter. All active requests advance in one forward step (continuous\n"
    "batching), whatever adapter each uses.\n"
    "\n"
    "  -m, --model DIR        model directory\n"
    "  -a, --adapter NAME=DIR load a LoRA adapter under NAME (repeatable)\n"
    "      --host ADDR        IPv4 address to listen on (default 127.0.0.1)\n"
    "      --port N           TCP port (default 8080; 0 = any free port)\n"
    "      --parallel N       sequences decoded together (default 4)\n"
    "      --ctx N            tokens per request, prompt + completion (default 4096)\n"
    "      --max-queue N      requests waiting for a slot before 429 (default 64)\n"
    "      --max-tokens N     default max_tokens of a request (default 512)\n"
    "      --api-key KEY      require \"Authorization: Bearer KEY\" on /v1/ routes\n"
    "      --api-key-file F   read the key from the first line of F\n"
    "      --name NAME        the base model's id in /v1/models (default: the directory name)\n"
    "  -t, --threads N        CPU threads (default: all cores)\n"
    "      --grace SECONDS    on SIGINT/SIGTERM, let running requests finish this long before\n"
    "                         cancelling them (they then get 503 or a stream error event;\n"
    "                         default 10)\n";

int loam_cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    const char *model = NULL, *key = NULL, *key_file = NULL, *name = NULL;
    const char *adapters[64];
    int n_adapters = 0;
    loam_server_params sp = loam_server_params_default();
    double grace = 10.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (cli_is_help(a)) {
            fputs(k_help, stdout);
            return 0;
        }
        if (!v) return cli_usage_error(cmd, "unknown option or missing value: '%s'", a);
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-a") || !strcmp(a, "--adapter")) {
            if (n_adapters == 64) return cli_usage_error(cmd, "at most 64 adapters");
            if (!strchr(v, '=') || v[0] == '=')
                return cli_usage_error(cmd, "--adapter wants NAME=DIR, got '%s'", v);
            adapters[n_adapters++] = v;
        } else if (!strcmp(a, "--host")) sp.host = v;
        else if (!strcmp(a, "--api-key")) key = v;
        else if (!strcmp(a, "--api-key-file")) key_file = v;
        else if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--grace")) {
            if (cli_parse_f64(v, &grace) || !(grace >= 0 && grace <= 86400))
                return cli_usage_error(cmd, "--grace wants seconds in [0, 86400], got '%s'", v);
        } else if (cli_parse_i64(v, &x)) return cli_usage_error(cmd, "%s: not an integer: %s", a, v);
        else if (x < INT32_MIN || x > INT32_MAX)
            return cli_usage_error(cmd, "%s: %s is out of range", a, v);
        else if (!strcmp(a, "--port")) sp.port = (int32_t)x;
        else if (!strcmp(a, "--parallel")) sp.n_parallel = (int32_t)x;
        else if (!strcmp(a, "--ctx")) sp.n_ctx = (int32_t)x;
        else if (!strcmp(a, "--max-queue")) sp.max_queue = (int32_t)x;
        else if (!strcmp(a, "--max-tokens")) sp.max_tokens_default = (int32_t)x;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) sp.n_threads = (int32_t)x;
        else return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!model) model = cli_default_model_dir();
    if (!model) return cli_usage_error(cmd, "-m DIR is required");
    if (sp.port < 0 || sp.port > 65535) return cli_usage_error(cmd, "--port out of range");
    if (sp.n_parallel < 1 || sp.n_parallel > 256) return cli_usage_error(cmd, "--parallel must be in [1, 256]");
    if (sp.n_ctx < 16) return cli_usage_error(cmd, "--ctx must be >= 16");
    if (sp.max_queue < 0) return cli_usage_error(cmd, "--max-queue must be >= 0");
    char keybuf[512];
    if (key && key_file) return cli_usage_error(cmd, "give --api-key or --api-key-file");
    if (key_file) {
        FILE *f = fopen(key_file, "r");
        if (!f || !fgets(keybuf, sizeof keybuf, f)) {
            if (f) fclose(f);
            return cli_error(cmd, "%s: cannot read the API key", key_file);
        }
        fclose(f);
        keybuf[strcspn(keybuf, "\r\n")] = '\0';
        if (!keybuf[0]) return cli_error(cmd, "%s: the API key is empty", key_file);
        key = keybuf;
    }
    sp.api_key = key;
    char namebuf[256];
    if (!name) {
        const char *slash = strrchr(model, '/');
        const char *base = slash && slash[1] ? slash + 1 : model;
        snprintf(namebuf, sizeof namebuf, "%s", base);
        name = namebuf;
    }
    sp.model_name = name;

    /* block the signals in every thread; the main thread waits for them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    loam_err err = {0};
    loam_model *m = NULL;
    if (loam_model_open(&m, model, NULL, &err) != LOAM_OK) return cli_error(cmd, "%s", err.msg);
    for (int i = 0; i < n_adapters; i++) {
        char nm[128];
        const char *eq = strchr(adapters[i], '=');
        size_t nl = (size_t)(eq - adapters[i]);
        if (nl >= sizeof nm) nl = sizeof nm - 1;
        memcpy(nm, adapters[i], nl);
        nm[nl] = '\0';
        if (!strcmp(nm, name)) {
            loam_model_close(m);
            return cli_usage_error(cmd, "adapter name '%s' is the base model's name", nm);
        }
        if (loam_model_load_adapter(m, nm, eq + 1, &err) != LOAM_OK) {
            loam_model_close(m);
            return cli_error(cmd, "%s", err.msg);
        }
    }
    loam_server *srv = NULL;
    if (loam_server_start(&srv, m, &sp, &err) != LOAM_OK) {
        loam_model_close(m);
        return cli_error(cmd, "%s", err.msg);
    }
    fprintf(stderr, "loam serve: listening on http://%s:%d (model '%s', %d adapter%s, %d slots)\n",
            sp.host, loam_server_port(srv), name, n_adapters, n_adapters == 1 ? "" : "s",
            sp.n_parallel);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "loam serve: %s received, finishing in-flight requests\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    loam_server_stop(srv, grace);
    loam_server_free(srv);
    loam_model_close(m);
    fprintf(stderr, "loam serve: stopped\n");
    return 0;
}
