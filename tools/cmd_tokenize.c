/* cmd_tokenize.c: `loam tokenize`: encode text with a model's tokenizer and show the ids and
 * pieces; `--bench` measures single-thread encode throughput. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *k_usage =
    "usage: loam tokenize (-m DIR | --tokenizer FILE) [--json] [--no-special] [--file F | TEXT]\n"
    "       loam tokenize (-m DIR | --tokenizer FILE) --bench --file F [--repeat N]\n"
    "\n"
    "Encodes TEXT (or the bytes of file F) with the tokenizer of model directory DIR\n"
    "(DIR/tokenizer.json) or with tokenizer.json FILE. Without -m and --tokenizer, the demo model\n"
    "shipped in the repository is used.\n"
    "\n"
    "Output, one line per token: ID<TAB>PIECE. PIECE is the token string as stored in\n"
    "tokenizer.json, not decoded: byte-level vocabularies (Qwen, Llama 3) show a space as 'G'\n"
    "with a dot (U+0120) and a newline as 'C' with a dot (U+010A); SentencePiece-style ones show\n"
    "a space as U+2581. Backslash and control characters are escaped (\\\\ \\n \\t \\r \\xNN).\n"
    "\n"
    "options:\n"
    "  -m, --model DIR       model directory holding tokenizer.json\n"
    "  --tokenizer FILE      a tokenizer.json file\n"
    "  --json                print only the ids, as one JSON array\n"
    "  --no-special          do not apply the post-processor (no BOS or template tokens);\n"
    "                        special tokens written in the text are still recognised\n"
    "  --file F              encode the contents of F instead of TEXT\n"
    "  --bench               time encoding F (one call on the whole text, then one call per\n"
    "                        line as Python's splitlines cuts them; best of --repeat runs,\n"
    "                        default 3) and print MB/s by wall time and by this thread's\n"
    "                        CPU time (steadier on a busy machine)\n"
    "  -h, --help            this text\n"
    "\n"
    "Invalid UTF-8 in the input is encoded as U+FFFD. Exit status: 0 ok, 1 bad tokenizer or\n"
    "input file, 2 bad command line.\n";

static int read_all(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
        if (n == cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Encodes with a growing buffer (the "needed size" protocol). */
static loam_status encode(const loam_tokenizer *tok, const char *text, size_t len, bool special,
                          int32_t **ids, size_t *cap, size_t *n, loam_err *err) {
    for (;;) {
        loam_status st = loam_tok_encode(tok, text, len, special, *ids, *cap, n, err);
        if (st || *n <= *cap)
            return st;
        int32_t *p = realloc(*ids, *n * sizeof *p);
        if (!p)
            return LOAM_E_NOMEM;
        *ids = p;
        *cap = *n;
    }
}

static void print_piece(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", stdout);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p == '\t')
            fputs("\\t", stdout);
        else if (*p == '\r')
            fputs("\\r", stdout);
        else if (*p < 0x20 || *p == 0x7F)
            printf("\\x%02X", *p);
        else
            putchar(*p);
    }
}

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall time and this thread's CPU time (the CPU time stays meaningful on a busy machine). */
typedef struct {
    double wall, cpu;
} stamp;

static stamp now(void) {
    return (stamp){clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_THREAD_CPUTIME_ID)};
}

static void keep_best(stamp t0, stamp *best) {
    stamp t1 = now();
    if (t1.wall - t0.wall < best->wall)
        best->wall = t1.wall - t0.wall;
    if (t1.cpu - t0.cpu < best->cpu)
        best->cpu = t1.cpu - t0.cpu;
}

/* End of the line starting at `start`, its terminator included, by the rules of Python's
 * str.splitlines(keepends=True): \n, \r, \r\n, \v, \f, \x1c-\x1e, U+0085, U+2028, U+2029. */
static size_t line_end(const char *s, size_t n, size_t start) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = start; i < n; i++) {
        unsigned char c = u[i];
        if (c == '\r')
            return i + 1 < n && u[i + 1] == '\n' ? i + 2 : i + 1;
        if (c == '\n' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e))
            return i + 1;
        if (c == 0xC2 && i + 1 < n && u[i + 1] == 0x85)
            return i + 2;
        if (c == 0xE2 && i + 2 < n && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9))
            return i + 3;
    }
    return n;
}

static int bench(const loam_tokenizer *tok, const char *path, const char *text, size_t len,
                 long long repeat) {
    int32_t *ids = NULL;
    size_t cap = 0, n = 0, n_lines = 0;
    loam_err err;
    stamp best_whole = {1e30, 1e30}, best_lines = {1e30, 1e30};
    size_t tokens_whole = 0, tokens_lines = 0;
    for (long long r = 0; r < repeat; r++) {
        stamp t0 = now();
        if (encode(tok, text, len, false, &ids, &cap, &n, &err))
            goto fail;
        keep_best(t0, &best_whole);
        tokens_whole = n;
        t0 = now();
        size_t total = 0, start = 0;
        n_lines = 0;
        while (start < len) {
            size_t end = line_end(text, len, start);
            if (encode(tok, text + start, end - start, false, &ids, &cap, &n, &err))
                goto fail;
            total += n;
            n_lines++;
            start = end;
        }
        keep_best(t0, &best_lines);
        tokens_lines = total;
    }
    printf("file: %s (%zu bytes, %zu lines)\n", path, len, n_lines);
    const char *names[2] = {"whole text", "per line"};
    stamp best[2] = {best_whole, best_lines};
    size_t tokens[2] = {tokens_whole, tokens_lines};
    for (int k = 0; k < 2; k++)
        printf(
            "%-10s  %zu tokens  wall %.3f s = %.2f MB/s  cpu %.3f s = %.2f MB/s, %.0f tokens/s\n",
            names[k], tokens[k], best[k].wall, (double)len / best[k].wall / 1e6, best[k].cpu,
            (double)len / best[k].cpu / 1e6, (double)tokens[k] / best[k].cpu);
    free(ids);
    return 0;
fail:
    free(ids);
    return cli_error("tokenize", "%s", err.msg);
}

int loam_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tok_file = NULL, *file = NULL, *text = NULL;
    int json = 0, special = 1, do_bench = 0;
    long long repeat = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (cli_is_help(a)) {
            fputs(k_usage, stdout);
            return 0;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (!has_val)
                return cli_usage_error("tokenize", "%s needs a directory", a);
            model = argv[++i];
        } else if (strcmp(a, "--tokenizer") == 0) {
            if (!has_val)
                return cli_usage_error("tokenize", "%s needs a file", a);
            tok_file = argv[++i];
        } else if (strcmp(a, "--file") == 0) {
            if (!has_val)
                return cli_usage_error("tokenize", "%s needs a file", a);
            file = argv[++i];
        } else if (strcmp(a, "--repeat") == 0) {
            if (!has_val || cli_parse_i64(argv[i + 1], &repeat) || repeat < 1 || repeat > 1000)
                return cli_usage_error("tokenize", "--repeat needs a count from 1 to 1000");
            i++;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--no-special") == 0) {
            special = 0;
        } else if (strcmp(a, "--bench") == 0) {
            do_bench = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("tokenize", "unknown option '%s'", a);
        } else if (text) {
            return cli_usage_error("tokenize", "give one TEXT argument (quote it)");
        } else {
            text = a;
        }
    }
    if (model && tok_file)
        return cli_usage_error("tokenize", "give -m or --tokenizer, not both");
    if (file && text)
        return cli_usage_error("tokenize", "give --file or TEXT, not both");
    if (do_bench && !file)
        return cli_usage_error("tokenize", "--bench needs --file");
    if (!file && !text)
        return cli_usage_error("tokenize", "nothing to encode: give TEXT or --file");
    if (!model && !tok_file)
        model = cli_default_model_dir();
    if (!model && !tok_file)
        return cli_usage_error("tokenize", "no tokenizer: give -m DIR or --tokenizer FILE");

    loam_err err;
    loam_tokenizer *tok;
    loam_status st = model ? loam_tokenizer_open_dir(&tok, model, &err)
                           : loam_tokenizer_open(&tok, tok_file, &err);
    if (st)
        return cli_error("tokenize", "%s", err.msg);
    char *buf = NULL;
    size_t len = text ? strlen(text) : 0;
    if (file && read_all(file, &buf, &len)) {
        loam_tokenizer_close(tok);
        return cli_error("tokenize", "cannot read %s", file);
    }
    const char *in = file ? buf : text;
    int rc = 0;
    if (do_bench) {
        rc = bench(tok, file, in, len, repeat);
    } else {
        int32_t *ids = NULL;
        size_t cap = 0, n = 0;
        if ((st = encode(tok, in, len, special, &ids, &cap, &n, &err))) {
            rc = cli_error("tokenize", "%s", st == LOAM_E_NOMEM ? "out of memory" : err.msg);
        } else if (json) {
            putchar('[');
            for (size_t i = 0; i < n; i++)
                printf(i ? ",%d" : "%d", ids[i]);
            puts("]");
        } else {
            for (size_t i = 0; i < n; i++) {
                const char *piece = loam_tok_piece(tok, ids[i]);
                printf("%d\t", ids[i]);
                print_piece(piece ? piece : "");
                putchar('\n');
            }
        }
        free(ids);
    }
    free(buf);
    loam_tokenizer_close(tok);
    if (!rc && fflush(stdout) != 0)
        rc = cli_error("tokenize", "cannot write the output");
    return rc;
}
