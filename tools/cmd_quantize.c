/* cmd_quantize.c: `loam quantize SRC DST [--bits 4] [--group-size 64] [--dtype bf16|f16|f32]`,
 * a Hugging Face model directory to an mlx-lm quantized one, as `mlx_lm.convert -q`
 * (loam_convert_quantize has the details). A progress bar goes to stderr when it is a
 * terminal; the last line on stdout sums up what was written. Exit status: 0 ok, 1 when the
 * conversion failed (one line on stderr), 2 for usage errors. Uses only loam.h and libc.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <string.h>
#include <unistd.h>

#define CMD "quantize"

static void usage(FILE *f) {
    fprintf(f, "usage: loam quantize SRC DST [--bits 4] [--group-size 64] [--dtype bf16|f16|f32]\n"
               "                     [--threads N]\n"
               "\n"
               "Converts the Hugging Face model directory SRC (F32/F16/BF16 safetensors) into an\n"
               "mlx-lm quantized directory DST, as `mlx_lm.convert -q` does: MLX affine\n"
               "quantization of every Linear and embedding weight, float tensors cast to --dtype,\n"
               "shards of at most 5 GiB with an index, config.json with the quantization fields,\n"
               "tokenizer and generation files copied. DST must not exist or be empty.\n"
               "\n"
               "  --bits B         2, 3, 4, 5, 6 or 8 (default 4)\n"
               "  --group-size G   32, 64 or 128 (default 64)\n"
               "  --dtype T        scales, biases and float tensors (default: config.json\n"
               "                   torch_dtype, else bf16)\n"
               "  --threads N      quantization threads (default: all cores)\n");
}

static int parse_int(const char *opt, const char *v, long long lo, long long hi, int32_t *out) {
    long long x;
    if (!v || cli_parse_i64(v, &x) != 0 || x < lo || x > hi)
        return cli_usage_error(CMD, "%s needs a whole number in [%lld, %lld]", opt, lo, hi);
    *out = (int32_t)x;
    return 0;
}

int loam_cmd_quantize(int argc, char **argv) {
    loam_convert_params p = loam_convert_params_default();
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--bits") == 0) {
            rc = parse_int(a, v, 2, 8, &p.bits);
            i++;
        } else if (strcmp(a, "--group-size") == 0) {
            rc = parse_int(a, v, 32, 128, &p.group_size);
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            rc = parse_int(a, v, 1, 4096, &p.n_threads);
            i++;
        } else if (strcmp(a, "--dtype") == 0) {
            if (!v)
                return cli_usage_error(CMD, "--dtype needs bf16, f16 or f32");
            if (strcmp(v, "bf16") == 0 || strcmp(v, "bfloat16") == 0)
                p.dtype = LOAM_DTYPE_BF16;
            else if (strcmp(v, "f16") == 0 || strcmp(v, "float16") == 0)
                p.dtype = LOAM_DTYPE_F16;
            else if (strcmp(v, "f32") == 0 || strcmp(v, "float32") == 0)
                p.dtype = LOAM_DTYPE_F32;
            else
                return cli_usage_error(CMD, "--dtype '%s': use bf16, f16 or f32", v);
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(CMD, "unknown option '%s'", a);
        } else if (n_pos < 2) {
            pos[n_pos++] = a;
        } else {
            return cli_usage_error(CMD, "too many arguments");
        }
        if (rc)
            return rc;
    }
    if (n_pos != 2)
        return cli_usage_error(CMD, "needs SRC and DST");
    loam_err err = {LOAM_OK, ""};
    if (loam_qformat_check((loam_qformat){p.bits, p.group_size, LOAM_DTYPE_BF16}, p.group_size,
                           &err) != LOAM_OK)
        return cli_usage_error(CMD, "%s", err.msg);
    cli_bar b = {CMD, cli_now(), 0.0};
    if (isatty(2)) {
        p.progress = cli_bar_progress;
        p.progress_user = &b;
    }
    if (loam_convert_quantize(pos[0], pos[1], &p, &err) != LOAM_OK) {
        if (isatty(2))
            fputc('\n', stderr);
        return cli_error(CMD, "%s", err.msg);
    }
    loam_modeldir *md = NULL;
    if (loam_modeldir_open(&md, pos[1], &err) != LOAM_OK)
        return cli_error(CMD, "the result does not open: %s", err.msg);
    uint64_t bytes = 0;
    for (size_t i = 0; i < loam_modeldir_n_shards(md); i++)
        bytes += loam_st_file_bytes(loam_modeldir_shard(md, i));
    printf("%s: %zu tensors in %zu shard%s, %.2f GB, %d-bit group %d, %.1f s\n", pos[1],
           loam_modeldir_n_tensors(md), loam_modeldir_n_shards(md),
           loam_modeldir_n_shards(md) == 1 ? "" : "s", (double)bytes / 1e9, (int)p.bits,
           (int)p.group_size, cli_now() - b.t0);
    loam_modeldir_close(md);
    return 0;
}
