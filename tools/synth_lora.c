/* synth_lora.c: writes a random LoRA adapter in mlx-lm format for a model's shapes, for
 * benchmarks (`loam bench --lora-rank R`).
 *
 * Layout (FORMATS.md §3.1, §3.2): DIR/adapters.safetensors holds, for each of the last
 * n_layers blocks and each of the seven projections (q, k, v, o, gate, up, down),
 * "model.layers.N.<module>.lora_a" float32 [in, rank] and ".lora_b" float32 [rank, out];
 * DIR/adapter_config.json says {"fine_tune_type": "lora", "num_layers": n_layers,
 * "lora_parameters": {"rank", "scale", "dropout", "keys"}}. Values are uniform random (lora_a
 * in ±1/sqrt(in), lora_b in ±0.01), so the adapter changes the logits a little, as a trained
 * one does, and costs exactly what a trained one costs.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const k_paths[7] = {"self_attn.q_proj", "self_attn.k_proj",
                                       "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};

typedef struct fill_ctx {
    uint64_t seed;
    float amp;
} fill_ctx;

static loam_status fill_uniform(void *user, void *dst, uint64_t n_bytes, loam_err *err) {
    (void)err;
    fill_ctx *c = user;
    uint64_t x = c->seed;
    unsigned char *b = dst;
    for (uint64_t i = 0; i < n_bytes / 4; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float v = c->amp * (float)((double)(x >> 11) / 4503599627370496.0 - 1.0);
        memcpy(b + i * 4, &v, 4); /* little-endian hosts only, like every loam target */
    }
    return LOAM_OK;
}

int cli_synth_lora(const loam_model_info *info, const char *dir, int rank, int n_layers,
                   float scale, char *msg, size_t cap) {
    if (rank < 1 || n_layers < 1 || n_layers > info->n_layer) {
        snprintf(msg, cap, "rank must be >= 1 and layers in [1, %d]", info->n_layer);
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(msg, cap, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    int64_t q = (int64_t)info->n_head * info->head_dim, kv = (int64_t)info->n_head_kv * info->head_dim;
    int64_t in[7] = {info->n_embd, info->n_embd, info->n_embd, q, info->n_embd, info->n_embd,
                     info->n_ff};
    int64_t out[7] = {q, kv, kv, info->n_embd, info->n_ff, info->n_ff, info->n_embd};
    loam_err e;
    loam_st_writer *w = NULL;
    fill_ctx *ctx = calloc((size_t)n_layers * 14, sizeof *ctx);
    int rc = -1;
    if (!ctx || loam_st_writer_new(&w, &e) != LOAM_OK) {
        snprintf(msg, cap, "out of memory");
        goto done;
    }
    int k = 0;
    for (int l = info->n_layer - n_layers; l < info->n_layer; l++)
        for (int m = 0; m < 7; m++)
            for (int ab = 0; ab < 2; ab++, k++) {
                char name[128];
                snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, k_paths[m],
                         ab ? "lora_b" : "lora_a");
                int64_t shape[2] = {ab ? rank : in[m], ab ? out[m] : rank};
                ctx[k].seed = 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
                ctx[k].amp = ab ? 0.01f : 1.0f / sqrtf((float)in[m]);
                if (loam_st_writer_add_lazy(w, name, LOAM_DTYPE_F32, 2, shape, fill_uniform,
                                            &ctx[k], &e) != LOAM_OK) {
                    snprintf(msg, cap, "%s", e.msg);
                    goto done;
                }
            }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapters.safetensors", dir);
    if (loam_st_writer_write(w, path, &e) != LOAM_OK) {
        snprintf(msg, cap, "%s", e.msg);
        goto done;
    }
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(msg, cap, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    fprintf(f,
            "{\n  \"fine_tune_type\": \"lora\",\n  \"num_layers\": %d,\n  \"lora_parameters\": "
            "{\"rank\": %d, \"scale\": %g, \"dropout\": 0.0, \"keys\": [",
            n_layers, rank, (double)scale);
    for (int m = 0; m < 7; m++) fprintf(f, "%s\"%s\"", m ? ", " : "", k_paths[m]);
    fprintf(f, "]}\n}\n");
    if (fclose(f) != 0) {
        snprintf(msg, cap, "cannot write %s", path);
        goto done;
    }
    rc = 0;
done:
    loam_st_writer_free(w);
    free(ctx);
    return rc;
}
