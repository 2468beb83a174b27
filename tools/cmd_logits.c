/* cmd_logits.c: `loam logits -m DIR [-a DIR] --ids 1,2,3 -o OUT.npy`: raw float32 logits for
 * every position of a token list, as a NumPy .npy file.
 *
 * Row i of the [n_ids, n_vocab] array holds the logits after ids[0..i] (the prediction of
 * token i+1), as loam computes them for one sequence. The ids run through one session in pieces
 * of up to 64 positions whose logits are written as they come, so memory stays at 64 rows.
 *
 * .npy format version 1.0: the 6 bytes "\x93NUMPY", version bytes 1 0, a little-endian uint16
 * header length, then an ASCII Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (N, V), }
 * padded with spaces and ended by '\n' so the data starts at a multiple of 64 bytes; then the
 * float32 data in C order, little-endian.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define CMD "logits"
#define PIECE 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: loam logits -m DIR [-a DIR] --ids 1,2,3 -o OUT.npy [-t THREADS] [--reference]\n"
            "\n"
            "Writes float32 logits [n_ids, n_vocab] for every position of the id list as a .npy\n"
            "file (row i: the logits after ids[0..i]).\n"
            "\n"
            "  -m DIR        model directory (config.json + model*.safetensors)\n"
            "  -a DIR        LoRA adapter directory (mlx-lm or PEFT), applied at run time\n"
            "  --ids LIST    comma-separated token ids\n"
            "  -o FILE       output .npy file\n"
            "  -t N          threads (default: all cores)\n"
            "  --reference   use the scalar float32 reference path (slow)\n");
}

/* Parses "1,2,3" into a new array (free()). Returns the count, or -1 on a bad list. */
static long parse_ids(const char *s, int32_t **out) {
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *bigger = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!bigger) {
                free(ids);
                return -1;
            }
            ids = bigger;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) { /* trailing comma */
            free(ids);
            return -1;
        }
    }
    if (n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    return (long)n;
}

static int write_npy_header(FILE *f, long rows, long cols) {
    char dict[128];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%ld, %ld), }",
                     rows, cols);
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)n, f) != (size_t)n) return -1;
    for (size_t i = 0; i < pad; i++)
        if (fputc(' ', f) == EOF) return -1;
    return fputc('\n', f) == EOF ? -1 : 0;
}

/* float32 rows in little-endian byte order, whatever the host */
static int write_rows(FILE *f, const float *x, size_t n) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe == 1) return fwrite(x, sizeof(float), n, f) == n ? 0 : -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        if (fwrite(b, 1, 4, f) != 4) return -1;
    }
    return 0;
}

int loam_cmd_logits(int argc, char **argv) {
    const char *model_dir = NULL, *adapter_dir = NULL, *ids_arg = NULL, *out_path = NULL;
    long long threads = 0;
    bool reference = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        bool has_val = i + 1 < argc;
        if (strcmp(a, "-m") == 0 && has_val) model_dir = argv[++i];
        else if (strcmp(a, "-a") == 0 && has_val) adapter_dir = argv[++i];
        else if (strcmp(a, "--ids") == 0 && has_val) ids_arg = argv[++i];
        else if (strcmp(a, "-o") == 0 && has_val) out_path = argv[++i];
        else if (strcmp(a, "-t") == 0 && has_val) {
            if (cli_parse_i64(argv[++i], &threads) || threads < 1 || threads > 1024)
                return cli_usage_error(CMD, "-t wants a thread count, got '%s'", argv[i]);
        } else if (strcmp(a, "--reference") == 0) reference = true;
        else return cli_usage_error(CMD, "unknown or incomplete option '%s'", a);
    }
    if (!model_dir) model_dir = cli_default_model_dir();
    if (!model_dir) return cli_usage_error(CMD, "no model: pass -m DIR");
    if (!ids_arg) return cli_usage_error(CMD, "no token ids: pass --ids 1,2,3");
    if (!out_path) return cli_usage_error(CMD, "no output file: pass -o OUT.npy");
    int32_t *ids = NULL;
    long n_ids = parse_ids(ids_arg, &ids);
    if (n_ids < 0) return cli_usage_error(CMD, "--ids wants comma-separated ids, got '%s'", ids_arg);

    int rc = 1;
    loam_err e;
    loam_model *m = NULL;
    loam_session *s = NULL;
    FILE *f = NULL;
    bool created = false;
    loam_batch_entry *ent = NULL;
    loam_model_params mp = loam_model_params_default();
    mp.n_threads = (int32_t)threads;
    if (loam_model_open(&m, model_dir, &mp, &e) != LOAM_OK) {
        cli_error(CMD, "%s", e.msg);
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
    loam_model_info info;
    loam_model_get_info(m, &info);
    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = (int32_t)n_ids;
    sp.n_logits = PIECE;
    sp.n_batch = PIECE;
    sp.reference = reference;
    if (n_ids > INT32_MAX || loam_session_new(&s, m, &sp, &e) != LOAM_OK) {
        cli_error(CMD, "%s", n_ids > INT32_MAX ? "too many ids" : e.msg);
        goto done;
    }
    ent = malloc(PIECE * sizeof *ent);
    f = fopen(out_path, "wb");
    created = f != NULL;
    if (!ent || !f) {
        cli_error(CMD, "cannot write %s", out_path);
        goto done;
    }
    if (write_npy_header(f, n_ids, info.n_vocab) != 0) {
        cli_error(CMD, "cannot write %s", out_path);
        goto done;
    }
    for (long p0 = 0; p0 < n_ids; p0 += PIECE) {
        long n = n_ids - p0 < PIECE ? n_ids - p0 : PIECE;
        for (long i = 0; i < n; i++)
            ent[i] = (loam_batch_entry){0, (int32_t)(p0 + i), ids[p0 + i], adapter, true};
        if (loam_session_decode(s, ent, (size_t)n, &e) != LOAM_OK) {
            cli_error(CMD, "%s", e.msg);
            goto done;
        }
        for (long i = 0; i < n; i++)
            if (write_rows(f, loam_session_logits(s, (size_t)i), (size_t)info.n_vocab) != 0) {
                cli_error(CMD, "cannot write %s", out_path);
                goto done;
            }
    }
    if (fclose(f) != 0) {
        f = NULL;
        cli_error(CMD, "cannot write %s", out_path);
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f) fclose(f);
    if (rc != 0 && created) remove(out_path);
    free(ent);
    free(ids);
    loam_session_free(s);
    loam_model_close(m);
    return rc;
}
