/* cmd_synth.c: `loam synth --preset NAME OUT [--bits 4] [--group-size 64] [--seed N]`, a model
 * directory with random weights and the real config, names, shapes and dtypes of a known model
 * (loam_synth has the presets and what the weights look like), for benchmarks and tests;
 * with --lora-rank R also OUT/adapter, a random mlx-lm adapter (tools/synth_lora.c).
 * No tokenizer files are written. A progress bar goes to stderr when it is a terminal.
 * Exit status: 0 ok, 1 failure (one line on stderr), 2 usage. Uses only loam.h and libc.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <string.h>
#include <unistd.h>

#define CMD "synth"

static void usage(FILE *f) {
    fprintf(
        f, "usage: loam synth --preset NAME OUT [--bits 4] [--group-size 64] [--seed N] [--float]\n"
           "                  [--lora-rank R [--lora-layers L]]\n"
           "\n"
           "Writes OUT (must not exist or be empty): an mlx-lm quantized model directory with\n"
           "random weights and the exact config.json, tensor names, shapes and dtypes of the\n"
           "preset's real model. No tokenizer files.\n"
           "\n"
           "presets:");
    for (size_t i = 0; loam_synth_preset(i); i++)
        fprintf(f, " %s", loam_synth_preset(i));
    fprintf(f, "\n\n"
               "  --bits B         2, 3, 4, 5, 6 or 8 (default 4)\n"
               "  --group-size G   32, 64 or 128 (default 64)\n"
               "  --seed N         random seed (default 1); the same seed gives the same files\n"
               "  --float          unquantized bf16 weights in a Hugging Face layout instead (the\n"
               "                   input of `loam quantize`)\n"
               "  --lora-rank R    also OUT/adapter: a random mlx-lm LoRA adapter of rank R on the\n"
               "                   seven projections of the last L layers (--lora-layers, default\n"
               "                   16), as `loam bench --lora-rank` uses\n");
}

int loam_cmd_synth(int argc, char **argv) {
    loam_synth_params p = loam_synth_params_default();
    const char *preset = NULL, *out = NULL;
    int is_float = 0;
    long long lora_rank = 0, lora_layers = 16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--preset") == 0) {
            if (!v)
                return cli_usage_error(CMD, "--preset needs a name");
            preset = v;
            i++;
        } else if (strcmp(a, "--bits") == 0 || strcmp(a, "--group-size") == 0) {
            if (!v || cli_parse_i64(v, &x) != 0 || x < 1 || x > 1024)
                return cli_usage_error(CMD, "%s needs a whole number", a);
            if (a[2] == 'b')
                p.bits = (int32_t)x;
            else
                p.group_size = (int32_t)x;
            i++;
        } else if (strcmp(a, "--lora-rank") == 0 || strcmp(a, "--lora-layers") == 0) {
            if (!v || cli_parse_i64(v, &x) != 0 || x < 1 || x > 4096)
                return cli_usage_error(CMD, "%s needs a whole number in [1, 4096]", a);
            if (a[7] == 'r')
                lora_rank = x;
            else
                lora_layers = x;
            i++;
        } else if (strcmp(a, "--float") == 0) {
            is_float = 1;
        } else if (strcmp(a, "--seed") == 0) {
            if (!v || cli_parse_i64(v, &x) != 0 || x < 0)
                return cli_usage_error(CMD, "--seed needs a whole number >= 0");
            p.seed = (uint64_t)x;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(CMD, "unknown option '%s'", a);
        } else if (!out) {
            out = a;
        } else {
            return cli_usage_error(CMD, "too many arguments");
        }
    }
    if (!preset)
        return cli_usage_error(CMD, "needs --preset NAME");
    if (!out)
        return cli_usage_error(CMD, "needs the output directory");
    int known = 0;
    for (size_t i = 0; loam_synth_preset(i); i++)
        known |= strcmp(loam_synth_preset(i), preset) == 0;
    if (!known)
        return cli_usage_error(CMD, "unknown preset '%s'", preset);
    loam_err err = {LOAM_OK, ""};
    if (loam_qformat_check((loam_qformat){p.bits, p.group_size, LOAM_DTYPE_BF16}, p.group_size,
                           &err) != LOAM_OK)
        return cli_usage_error(CMD, "%s", err.msg);
    if (is_float)
        p.bits = 0;
    cli_bar b = {CMD, cli_now(), 0.0};
    if (isatty(2)) {
        p.progress = cli_bar_progress;
        p.progress_user = &b;
    }
    if (loam_synth(preset, out, &p, &err) != LOAM_OK) {
        if (isatty(2))
            fputc('\n', stderr);
        return cli_error(CMD, "%s", err.msg);
    }
    loam_modeldir *md = NULL;
    if (loam_modeldir_open(&md, out, &err) != LOAM_OK)
        return cli_error(CMD, "the result does not open: %s", err.msg);
    uint64_t bytes = 0;
    for (size_t i = 0; i < loam_modeldir_n_shards(md); i++)
        bytes += loam_st_file_bytes(loam_modeldir_shard(md, i));
    char what[64];
    if (p.bits)
        snprintf(what, sizeof what, "%d-bit group %d", (int)p.bits, (int)p.group_size);
    else
        snprintf(what, sizeof what, "bf16 (not quantized)");
    printf("%s: preset %s, %zu tensors in %zu shard%s, %.2f GB, %s, no tokenizer, %.1f s\n", out,
           preset, loam_modeldir_n_tensors(md), loam_modeldir_n_shards(md),
           loam_modeldir_n_shards(md) == 1 ? "" : "s", (double)bytes / 1e9, what, cli_now() - b.t0);
    loam_modeldir_close(md);
    if (lora_rank) {
        loam_model *m = NULL;
        loam_model_params mp = loam_model_params_default();
        mp.device = LOAM_DEVICE_CPU; /* only the shapes are needed */
        if (loam_model_open(&m, out, &mp, &err) != LOAM_OK)
            return cli_error(CMD, "the result does not open as a model: %s", err.msg);
        loam_model_info info;
        loam_model_get_info(m, &info);
        loam_model_close(m);
        char dir[4096], msg[256];
        if (snprintf(dir, sizeof dir, "%s/adapter", out) >= (int)sizeof dir)
            return cli_error(CMD, "output path too long");
        if (lora_layers > info.n_layer)
            lora_layers = info.n_layer;
        if (cli_synth_lora(&info, dir, (int)lora_rank, (int)lora_layers, 20.0f, msg, sizeof msg))
            return cli_error(CMD, "adapter: %s", msg);
        printf("%s: LoRA rank %lld on the last %lld layers (mlx-lm format)\n", dir, lora_rank,
               lora_layers);
    }
    return 0;
}
