/* cli.h: what the command files of the loam binary share. Commands use the public API only
 * (loam.h), print to the user, and return an exit status: 0 success, 1 failure of the work
 * (bad file, bad model), 2 bad command line. Errors are one line on stderr:
 * "loam CMD: message". */
#ifndef LOAM_CLI_H
#define LOAM_CLI_H

#include "loam.h"

#include <stdio.h>

/* One entry per subcommand; main() in loam.c dispatches on the name. */
typedef int (*loam_cmd_fn)(int argc, char **argv);

/* Prints "loam CMD: <formatted>\n" on stderr. Returns 1 (or use cli_usage_error for 2). */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "loam CMD: <formatted>\n(see 'loam CMD --help')" as one line; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv[i] is -h or --help. */
int cli_is_help(const char *arg);
/* Parses a whole decimal integer / float; returns 0 on success. */
int cli_parse_i64(const char *s, long long *out);
int cli_parse_f64(const char *s, double *out);
/* Seconds on a monotonic clock. */
double cli_now(void);
/* A progress bar on stderr for a loam_progress_fn (user: a cli_bar, t0 = cli_now() at the
 * start): "\rloam CMD: [####......]  42%  1.23 / 4.56 GB  7 s", redrawn at most every 0.1 s,
 * a newline when done. Always returns true (never cancels). */
typedef struct cli_bar {
    const char *cmd;
    double t0, last;
} cli_bar;
bool cli_bar_progress(void *user, uint64_t done, uint64_t total);
/* Default model directory (the demo model shipped in the repository) or NULL when none. */
const char *cli_default_model_dir(void);

/* Writes a random mlx-lm LoRA adapter of rank `rank` on all seven projections of the last
 * n_layers blocks of a model shaped like info into dir (created if needed), with the given
 * scale (tools/synth_lora.c). Returns 0, or -1 with a message in msg. */
int cli_synth_lora(const loam_model_info *info, const char *dir, int rank, int n_layers,
                   float scale, char *msg, size_t cap);

/* Subcommands (tools/cmd_*.c). Declared weak so a command lands with its own file. */
#define LOAM_COMMAND_LIST(X)                                                                       \
    X(generate, "write text with a model and optional LoRA adapter")                              \
    X(chat, "interactive chat using the model's chat template")                                   \
    X(serve, "OpenAI-compatible HTTP server with continuous batching")                            \
    X(quantize, "convert a Hugging Face model to MLX affine quantized format")                    \
    X(fuse, "merge a LoRA adapter into the base weights (like mlx_lm.fuse)")                      \
    X(inspect, "tensors, dtypes, shapes, quantization and config of a file or directory")         \
    X(tokenize, "encode text with a model's tokenizer")                                           \
    X(template, "render a model's chat template for a list of messages")                          \
    X(logits, "raw float32 logits for every position of a token list")                            \
    X(perplexity, "perplexity of a text file under a model (and adapter)")                        \
    X(synth, "write a model directory with random weights and real shapes")                       \
    X(bench, "llama-bench style speed table: prompt and generation tokens/s")

#define LOAM_X_(name, help) int loam_cmd_##name(int argc, char **argv) __attribute__((weak));
LOAM_COMMAND_LIST(LOAM_X_)
#undef LOAM_X_

#endif
