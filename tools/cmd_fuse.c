/* cmd_fuse.c: `loam fuse -m MODEL_DIR -a ADAPTER_DIR OUT_DIR [--dequantize]`, merge a LoRA or
 * DoRA adapter into a model's weights and write a new model directory (loam_fuse, which does
 * what mlx_lm.fuse does: FORMATS.md §3.7).
 *
 * Merging is for export. loam applies adapters at run time in full precision (`-a` on generate,
 * chat, serve); a fused quantized model re-rounds every adapted weight to the base's bit width,
 * which `loam perplexity` on both shows. Progress goes to stderr when it is a terminal.
 * Exit status: 0 done, 1 the work failed (one line on stderr naming the file or tensor), 2 bad
 * command line.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <string.h>
#include <unistd.h>

#define CMD "fuse"

static void usage(FILE *f) {
    fprintf(f, "usage: loam fuse -m MODEL_DIR -a ADAPTER_DIR OUT_DIR [--dequantize]\n"
               "\n"
               "Merges a LoRA/DoRA adapter (mlx-lm or PEFT) into the model's weights and writes a\n"
               "complete model directory to OUT_DIR (which must not exist, or be empty), like\n"
               "mlx_lm.fuse: each adapted weight is dequantized, W + scale*(A*B)^T added, and the\n"
               "result quantized again with the same bits and group size.\n"
               "\n"
               "options:\n"
               "  -m, --model DIR     base model directory\n"
               "  -a, --adapter DIR   adapter directory (adapters.safetensors or\n"
               "                      adapter_model.safetensors, with adapter_config.json)\n"
               "  --dequantize        write every weight in float (the scale dtype) and drop the\n"
               "                      quantization from config.json\n"
               "  -h, --help          this text\n"
               "\n"
               "You rarely need this: loam applies adapters at run time (-a on generate, chat,\n"
               "serve) without re-rounding the base weights.\n");
}

static void on_progress(void *user, uint64_t done, uint64_t total) {
    (void)user;
    fprintf(stderr, "\rloam fuse: %llu/%llu tensors", (unsigned long long)done,
            (unsigned long long)total);
    if (done == total)
        fputc('\n', stderr);
}

int loam_cmd_fuse(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    loam_fuse_params p = loam_fuse_params_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-a") ||
            !strcmp(a, "--adapter")) {
            if (i + 1 >= argc)
                return cli_usage_error(CMD, "%s needs a directory", a);
            const char **dst = (!strcmp(a, "-m") || !strcmp(a, "--model")) ? &model : &adapter;
            if (*dst)
                return cli_usage_error(CMD, "%s given twice", a);
            *dst = argv[++i];
        } else if (!strcmp(a, "--dequantize")) {
            p.dequantize = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(CMD, "unknown option '%s'", a);
        } else if (out) {
            return cli_usage_error(CMD, "one OUT_DIR only ('%s' and '%s')", out, a);
        } else {
            out = a;
        }
    }
    if (!model)
        return cli_usage_error(CMD, "missing -m MODEL_DIR");
    if (!adapter)
        return cli_usage_error(CMD, "missing -a ADAPTER_DIR");
    if (!out)
        return cli_usage_error(CMD, "missing OUT_DIR");
    if (isatty(STDERR_FILENO))
        p.progress = on_progress;
    loam_err err = {0};
    loam_status s = loam_fuse(model, adapter, out, &p, &err);
    if (s != LOAM_OK)
        return cli_error(CMD, "%s", err.msg);
    printf("fused %s into %s: %s%s\n", adapter, model, out, p.dequantize ? " (dequantized)" : "");
    return 0;
}
