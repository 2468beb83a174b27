/* bench_modeldir.c: how long opening a large sharded model directory takes.
 *
 *   build/bench/bench_modeldir [--shard-gb G] [--dir DIR]
 *
 * Writes a Qwen3-8B-shaped mlx-lm directory (4-bit, group 64, bf16 scales: 907 tensors, 4.6 GB)
 * with the safetensors writer, lazy tensors filled with a byte pattern, split greedily into
 * shards of at most G GB (default 1.7, giving 3 shards) plus model.safetensors.index.json and
 * config.json, in a fresh directory under DIR (default $TMPDIR or /tmp), and deletes it all at
 * the end. Then it times loam_modeldir_open plus a walk that looks every tensor up by name and
 * checks its shape (opening maps and validates the headers; no tensor byte is read):
 *   - cold: after posix_fadvise(DONTNEED) has dropped the shards from the page cache;
 *   - warm: best and median of 20 opens.
 * Also reported: the writer's throughput (fill + write + fsync). Needs 5 GB free in DIR (else
 * it says so and exits 0 without measuring).
 *
 * Validation first: the opened directory must hold exactly the tensors written, each with its
 * shape, and the first and last byte of a few tensors must match the fill pattern.
 */
#define _POSIX_C_SOURCE 200809L
#include "loam.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

enum { N_LAYER = 36, HIDDEN = 4096, KV = 1024, FF = 12288, VOCAB = 151936, HEAD_DIM = 128,
       GROUP = 64, BITS = 4 };

typedef struct spec {
    char name[96];
    loam_dtype dtype;
    int32_t n_dims;
    int64_t shape[2];
    uint64_t n_bytes;
    int shard;
} spec;

static spec g_t[1024];
static int g_n;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void add(const char *name, loam_dtype dt, int32_t nd, int64_t d0, int64_t d1) {
    spec *s = &g_t[g_n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->dtype = dt;
    s->n_dims = nd;
    s->shape[0] = d0;
    s->shape[1] = d1;
    uint64_t el = (uint64_t)d0 * (uint64_t)(nd > 1 ? d1 : 1);
    s->n_bytes = el * (uint64_t)loam_dtype_bits(dt) / 8;
}

/* a quantized Linear [out, in]: weight U32, scales and biases BF16 */
static void add_qlinear(const char *mod, int64_t out, int64_t in) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", mod);
    add(n, LOAM_DTYPE_U32, 2, out, in * BITS / 32);
    snprintf(n, sizeof n, "%s.scales", mod);
    add(n, LOAM_DTYPE_BF16, 2, out, in / GROUP);
    snprintf(n, sizeof n, "%s.biases", mod);
    add(n, LOAM_DTYPE_BF16, 2, out, in / GROUP);
}

static void build_specs(void) {
    add_qlinear("model.embed_tokens", VOCAB, HIDDEN);
    char m[96];
    for (int l = 0; l < N_LAYER; l++) {
        const struct {
            const char *p;
            int64_t out, in;
        } lin[] = {{"self_attn.q_proj", HIDDEN, HIDDEN}, {"self_attn.k_proj", KV, HIDDEN},
                   {"self_attn.v_proj", KV, HIDDEN},     {"self_attn.o_proj", HIDDEN, HIDDEN},
                   {"mlp.gate_proj", FF, HIDDEN},        {"mlp.up_proj", FF, HIDDEN},
                   {"mlp.down_proj", HIDDEN, FF}};
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
            snprintf(m, sizeof m, "model.layers.%d.%s", l, lin[i].p);
            add_qlinear(m, lin[i].out, lin[i].in);
        }
        snprintf(m, sizeof m, "model.layers.%d.self_attn.q_norm.weight", l);
        add(m, LOAM_DTYPE_BF16, 1, HEAD_DIM, 0);
        snprintf(m, sizeof m, "model.layers.%d.self_attn.k_norm.weight", l);
        add(m, LOAM_DTYPE_BF16, 1, HEAD_DIM, 0);
        snprintf(m, sizeof m, "model.layers.%d.input_layernorm.weight", l);
        add(m, LOAM_DTYPE_BF16, 1, HIDDEN, 0);
        snprintf(m, sizeof m, "model.layers.%d.post_attention_layernorm.weight", l);
        add(m, LOAM_DTYPE_BF16, 1, HIDDEN, 0);
    }
    add("model.norm.weight", LOAM_DTYPE_BF16, 1, HIDDEN, 0);
    add_qlinear("lm_head", VOCAB, HIDDEN);
}

static uint8_t pattern(int tensor, uint64_t i) {
    return (uint8_t)(tensor * 131 + i * 7 + (i >> 12));
}

static loam_status fill(void *user, void *dst, uint64_t n, loam_err *err) {
    (void)err;
    int t = (int)(intptr_t)user;
    uint8_t *d = dst;
    for (uint64_t i = 0; i < n; i++) d[i] = pattern(t, i);
    return LOAM_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* open + look every tensor up; returns seconds, or -1 on failure */
static double open_and_walk(const char *dir, int check) {
    loam_err e;
    loam_modeldir *md = NULL;
    double t0 = now();
    if (loam_modeldir_open(&md, dir, &e) != LOAM_OK) {
        fprintf(stderr, "bench_modeldir: %s\n", e.msg);
        return -1;
    }
    int bad = loam_modeldir_n_tensors(md) != (size_t)g_n;
    for (int i = 0; i < g_n; i++) {
        loam_tensor t;
        if (loam_modeldir_find(md, g_t[i].name, &t, &e) != LOAM_OK) {
            bad++;
            continue;
        }
        if (t.dtype != g_t[i].dtype || t.n_dims != g_t[i].n_dims || t.shape[0] != g_t[i].shape[0] ||
            t.n_bytes != g_t[i].n_bytes)
            bad++;
        if (check && (i % 97 == 0 || i == g_n - 1)) {
            const uint8_t *b = t.data;
            if (b[0] != pattern(i, 0) || b[t.n_bytes - 1] != pattern(i, t.n_bytes - 1)) bad++;
        }
    }
    double dt = now() - t0;
    loam_modeldir_close(md);
    if (bad) {
        fprintf(stderr, "bench_modeldir: %d tensors do not match what was written\n", bad);
        return -1;
    }
    return dt;
}

static void drop_cache(const char *dir, int n_shards) {
    char p[1400];
    for (int s = 0; s < n_shards; s++) {
        snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards);
        int fd = open(p, O_RDONLY);
        if (fd < 0) continue;
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[1400];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv) {
    double shard_gb = 1.7;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shard-gb") && i + 1 < argc) shard_gb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) base = argv[++i];
        else {
            fprintf(stderr, "usage: bench_modeldir [--shard-gb G] [--dir DIR]\n");
            return 2;
        }
    }
    if (strlen(base) > 900) {
        fprintf(stderr, "bench_modeldir: directory name too long\n");
        return 2;
    }
    build_specs();
    uint64_t total = 0;
    for (int i = 0; i < g_n; i++) total += g_t[i].n_bytes;
    struct statvfs vfs;
    if (statvfs(base, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < total + (200u << 20)) {
        printf("bench_modeldir: skipped: needs %.1f GB free in %s\n", (double)total / 1e9, base);
        return 0;
    }
    /* greedy sharding in tensor order, as mlx-lm's make_shards */
    uint64_t cap = (uint64_t)(shard_gb * 1e9), cur = 0;
    int n_shards = 1;
    for (int i = 0; i < g_n; i++) {
        if (cur > 0 && cur + g_t[i].n_bytes > cap) {
            n_shards++;
            cur = 0;
        }
        g_t[i].shard = n_shards - 1;
        cur += g_t[i].n_bytes;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/loam_bench_modeldir_XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("bench_modeldir: mkdtemp");
        return 1;
    }
    printf("bench_modeldir: Qwen3-8B shapes, 4-bit g64: %d tensors, %.2f GB in %d shards, in %s\n",
           g_n, (double)total / 1e9, n_shards, dir);

    int rc = 1;
    double t0 = now();
    for (int s = 0; s < n_shards; s++) {
        loam_st_writer *w = NULL;
        loam_err e;
        char p[1400];
        snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards);
        if (loam_st_writer_new(&w, &e) != LOAM_OK ||
            loam_st_writer_set_metadata(w, "format", "mlx", &e) != LOAM_OK)
            goto done;
        for (int i = 0; i < g_n; i++) {
            if (g_t[i].shard != s) continue;
            if (loam_st_writer_add_lazy(w, g_t[i].name, g_t[i].dtype, g_t[i].n_dims, g_t[i].shape,
                                        fill, (void *)(intptr_t)i, &e) != LOAM_OK) {
                fprintf(stderr, "bench_modeldir: %s\n", e.msg);
                loam_st_writer_free(w);
                goto done;
            }
        }
        loam_status st = loam_st_writer_write(w, p, &e);
        loam_st_writer_free(w);
        if (st != LOAM_OK) {
            fprintf(stderr, "bench_modeldir: %s\n", e.msg);
            goto done;
        }
    }
    double t_write = now() - t0;
    {
        char p[1400];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        FILE *f = fopen(p, "w");
        if (!f) goto done;
        fprintf(f, "{\"metadata\":{\"total_size\":%llu},\"weight_map\":{",
                (unsigned long long)total);
        for (int i = 0; i < g_n; i++)
            fprintf(f, "%s\"%s\":\"model-%05d-of-%05d.safetensors\"", i ? "," : "", g_t[i].name,
                    g_t[i].shard + 1, n_shards);
        fprintf(f, "}}\n");
        fclose(f);
        snprintf(p, sizeof p, "%s/config.json", dir);
        f = fopen(p, "w");
        if (!f) goto done;
        fprintf(f, "{\"model_type\":\"qwen3\",\"num_hidden_layers\":%d,\"hidden_size\":%d,"
                   "\"quantization\":{\"group_size\":%d,\"bits\":%d,\"mode\":\"affine\"}}\n",
                N_LAYER, HIDDEN, GROUP, BITS);
        fclose(f);
    }
    printf("  write (lazy fill + write + fsync): %.1f s, %.2f GB/s\n", t_write,
           (double)total / 1e9 / t_write);

    if (open_and_walk(dir, 1) < 0) goto done; /* validation: contents as written */
    drop_cache(dir, n_shards);
    double cold = open_and_walk(dir, 0);
    if (cold < 0) goto done;
    enum { N_WARM = 20 };
    double warm[N_WARM];
    for (int r = 0; r < N_WARM; r++) {
        warm[r] = open_and_walk(dir, 0);
        if (warm[r] < 0) goto done;
    }
    qsort(warm, N_WARM, sizeof warm[0], cmp_double);
    printf("  loam_modeldir_open + lookup of all %d tensors: cold %.2f ms, warm best %.2f ms, "
           "median %.2f ms\n",
           g_n, cold * 1e3, warm[0] * 1e3, warm[N_WARM / 2] * 1e3);
    rc = 0;
done:
    remove_dir(dir);
    if (rc) fprintf(stderr, "bench_modeldir: failed\n");
    return rc;
}
