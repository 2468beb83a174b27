/* loam.c: the one loam binary. `loam CMD [args]` runs tools/cmd_CMD.c; `loam --help` lists the
 * commands this build has. The only file with main(). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


typedef struct {
    const char *name;
    const char *help;
    loam_cmd_fn fn;
} command;

static const command k_commands[] = {
#define LOAM_X_(name, help) {#name, help, loam_cmd_##name},
    LOAM_COMMAND_LIST(LOAM_X_)
#undef LOAM_X_
};

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loam %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loam %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'loam %s --help')\n", cmd);
    va_end(ap);
    return 2;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool cli_bar_progress(void *user, uint64_t done, uint64_t total) {
    cli_bar *b = (cli_bar *)user;
    double t = cli_now();
    if (done < total && t - b->last < 0.1)
        return true;
    b->last = t;
    int width = 30, fill = total ? (int)((double)done / (double)total * width) : width;
    char cells[64];
    for (int i = 0; i < width; i++)
        cells[i] = i < fill ? '#' : '.';
    cells[width] = '\0';
    fprintf(stderr, "\rloam %s: [%s] %3.0f%%  %.2f / %.2f GB  %.0f s", b->cmd, cells,
            total ? 100.0 * (double)done / (double)total : 100.0, (double)done / 1e9,
            (double)total / 1e9, t - b->t0);
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
    return true;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

int cli_parse_i64(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

int cli_parse_f64(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

const char *cli_default_model_dir(void) {
    static char path[4096];
    const char *env = getenv("LOAM_DEMO_DIR");
    if (env && *env) return env;
    /* the binary lives in <repo>/build/loam; the demo in <repo>/models/demo */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return NULL;
        *slash = '\0';
        int k = snprintf(path, sizeof path, "%.4000s/models/demo", exe);
        if (k < 0 || (size_t)k >= sizeof path) return NULL;
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return path;
    }
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: loam COMMAND [ARGS]   (loam COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (k_commands[i].fn) fprintf(f, "  %-11s %s\n", k_commands[i].name, k_commands[i].help);
    fprintf(f, "\noptions:\n  -h, --help  this text\n  --version   print the version\n");
    fprintf(f, "\nenvironment:\n  LOAM_DEVICE=cuda  run models on an NVIDIA GPU (a build made with "
               "`make CUDA=1`;\n                    MLX 4-bit group-64 models); default: the CPU\n"
               "  GOMP_SPINCOUNT    OpenMP barrier spinning; loam sets 10000 when neither it nor\n"
               "                    OMP_WAIT_POLICY is given (fast beside other busy processes)\n");
}

/* OpenMP threads that wait at a barrier spin GOMP_SPINCOUNT times before sleeping; libgomp's
 * default (300000) makes a 2-thread decode 500x slower when other processes hold the cores
 * (3.7 against 1935 tok/s on the demo model with two CPU hogs on the 2-core build machine) and
 * 10000 costs nothing on an idle machine (bench/RESULTS.md). libgomp reads it when it loads,
 * before main, so when neither it nor OMP_WAIT_POLICY is set, loam sets it and runs itself
 * again (once: the variable is then set). LOAM_NO_REEXEC=1 skips this. */
static void tune_openmp_wait(char **argv) {
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY") || getenv("LOAM_NO_REEXEC")) return;
    /* only when /proc/self/exe is this program by name (not a wrapper such as valgrind) */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || !argv[0]) return;
    self[n] = '\0';
    const char *b1 = strrchr(self, '/'), *b2 = strrchr(argv[0], '/');
    if (strcmp(b1 ? b1 + 1 : self, b2 ? b2 + 1 : argv[0]) != 0) return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv(self, argv); /* returns only on failure: go on as we are */
}

int main(int argc, char **argv) {
    tune_openmp_wait(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("loam %s\n", loam_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (k_commands[i].fn && strcmp(argv[1], k_commands[i].name) == 0)
            return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "loam: unknown command '%s' (see 'loam --help')\n", argv[1]);
    return 2;
}
