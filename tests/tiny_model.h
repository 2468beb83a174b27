/* tiny_model.h: writes a complete, tiny model directory for API tests, with the public API
 * only: a random float32 Qwen3 model (2 layers, width 64, vocabulary 272, tied embeddings), a
 * byte-level BPE tokenizer.json (the 256 byte tokens, a few merges, ChatML special tokens
 * <|im_start|> 256, <|im_end|> 257, <|endoftext|> 258), tokenizer_config.json with a ChatML
 * template, generation_config.json (eos 257 and 258), and an mlx-lm LoRA adapter directory.
 * The weights are random, so the text is gibberish, but every path of the library runs on it.
 */
#ifndef LOAM_TINY_MODEL_H
#define LOAM_TINY_MODEL_H

#include "loam.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TINY_VOCAB 272
#define TINY_EMBD 64
#define TINY_FF 128
#define TINY_LAYERS 2
#define TINY_HEADS 4
#define TINY_KV 2
#define TINY_HEAD_DIM 16

static uint64_t tiny_rng = 0x9e3779b97f4a7c15ull;
static float tiny_rand(void) { /* uniform in [-1, 1) */
    tiny_rng ^= tiny_rng << 13;
    tiny_rng ^= tiny_rng >> 7;
    tiny_rng ^= tiny_rng << 17;
    return (float)((double)(tiny_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void tiny_write_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%.500s/%.200s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* The GPT-2 byte-to-unicode alphabet of byte-level BPE, as UTF-8. */
static void tiny_byte_char(int b, char out[8]) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static void tiny_json_escape(char *dst, const char *s) {
    while (*s) {
        if (*s == '"' || *s == '\\') *dst++ = '\\';
        *dst++ = *s++;
    }
    *dst = 0;
}

static void tiny_tokenizer(const char *dir) {
    size_t cap = 1 << 16;
    char *j = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(j + n, cap - n,
                          "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
                          "{\"id\":256,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":false,"
                          "\"rstrip\":false,\"normalized\":false,\"special\":true},"
                          "{\"id\":257,\"content\":\"<|im_end|>\",\"single_word\":false,\"lstrip\":false,"
                          "\"rstrip\":false,\"normalized\":false,\"special\":true},"
                          "{\"id\":258,\"content\":\"<|endoftext|>\",\"single_word\":false,\"lstrip\":false,"
                          "\"rstrip\":false,\"normalized\":false,\"special\":true}],"
                          "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                          "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                          "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\","
                          "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
                          "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
                          "\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        char c[8], e[16];
        tiny_byte_char(b, c);
        tiny_json_escape(e, c);
        n += (size_t)snprintf(j + n, cap - n, "%s\"%s\":%d", b ? "," : "", e, b);
    }
    /* merges: "t h" -> 259, "th e" -> 260, "Ġ t" -> 261 (ids after the added tokens) */
    n += (size_t)snprintf(j + n, cap - n,
                          ",\"th\":259,\"the\":260,\"\xc4\xa0t\":261},\"merges\":[\"t h\",\"th e\",\"\xc4\xa0 t\"]}}");
    tiny_write_text(dir, "tokenizer.json", j);
    free(j);
    tiny_write_text(dir, "tokenizer_config.json",
                    "{\"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}\\n{{ "
                    "m.content }}<|im_end|>\\n{% endfor %}{% if add_generation_prompt "
                    "%}<|im_start|>assistant\\n{% endif %}\", \"eos_token\": \"<|im_end|>\", "
                    "\"pad_token\": \"<|endoftext|>\", \"bos_token\": null}");
    tiny_write_text(dir, "generation_config.json", "{\"eos_token_id\": [257, 258]}");
}

typedef struct tiny_buf {
    float *p[64];
    int n;
} tiny_buf;

static void tiny_add(loam_st_writer *w, tiny_buf *b, const char *name, int64_t rows, int64_t cols,
                     float center, float spread) {
    int64_t shape[2] = {rows, cols};
    size_t count = (size_t)(rows * (cols ? cols : 1));
    float *d = malloc(count * sizeof *d);
    for (size_t i = 0; i < count; i++) d[i] = center + spread * tiny_rand();
    b->p[b->n++] = d;
    loam_st_writer_add(w, name, LOAM_DTYPE_F32, cols ? 2 : 1, cols ? shape : &shape[0], d, NULL);
}

/* Writes the model into dir (created) and an adapter into dir/adapter. Returns 0 on success.
 * With nan_norm, the final norm's weights are NaN, so every logit is NaN and every request
 * fails at its first sampled token (the engine's error path, end to end). */
static int tiny_model_write_ex(const char *dir, int nan_norm) {
    mkdir(dir, 0755);
    char path[1024];
    tiny_write_text(dir, "config.json",
                    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\", "
                    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, "
                    "\"vocab_size\": 272, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, "
                    "\"tie_word_embeddings\": true, \"max_position_embeddings\": 1024, "
                    "\"eos_token_id\": 257, \"torch_dtype\": \"float32\"}");
    tiny_tokenizer(dir);
    loam_st_writer *w = NULL;
    if (loam_st_writer_new(&w, NULL) != LOAM_OK) return -1;
    tiny_buf b = {{0}, 0};
    tiny_add(w, &b, "model.embed_tokens.weight", TINY_VOCAB, TINY_EMBD, 0, 1.0f);
    tiny_add(w, &b, "model.norm.weight", TINY_EMBD, 0, 1, 0.1f);
    if (nan_norm)
        for (int i = 0; i < TINY_EMBD; i++) b.p[b.n - 1][i] = (float)NAN;
    for (int l = 0; l < TINY_LAYERS; l++) {
        char nm[256];
#define T(suffix, r, c, ctr, spr)                                                                  \
    snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                      \
    tiny_add(w, &b, nm, r, c, ctr, spr)
        T("input_layernorm.weight", TINY_EMBD, 0, 1, 0.1f);
        T("post_attention_layernorm.weight", TINY_EMBD, 0, 1, 0.1f);
        T("self_attn.q_proj.weight", TINY_HEADS * TINY_HEAD_DIM, TINY_EMBD, 0, 0.2f);
        T("self_attn.k_proj.weight", TINY_KV * TINY_HEAD_DIM, TINY_EMBD, 0, 0.2f);
        T("self_attn.v_proj.weight", TINY_KV * TINY_HEAD_DIM, TINY_EMBD, 0, 0.2f);
        T("self_attn.o_proj.weight", TINY_EMBD, TINY_HEADS * TINY_HEAD_DIM, 0, 0.2f);
        T("self_attn.q_norm.weight", TINY_HEAD_DIM, 0, 1, 0.1f);
        T("self_attn.k_norm.weight", TINY_HEAD_DIM, 0, 1, 0.1f);
        T("mlp.gate_proj.weight", TINY_FF, TINY_EMBD, 0, 0.2f);
        T("mlp.up_proj.weight", TINY_FF, TINY_EMBD, 0, 0.2f);
        T("mlp.down_proj.weight", TINY_EMBD, TINY_FF, 0, 0.2f);
#undef T
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    loam_st_writer_set_metadata(w, "format", "pt", NULL);
    loam_status s = loam_st_writer_write(w, path, NULL);
    loam_st_writer_free(w);
    for (int i = 0; i < b.n; i++) free(b.p[i]);
    if (s != LOAM_OK) return -1;

    /* adapter: rank 4 on q_proj and down_proj of both layers, mlx-lm format */
    char adir[512];
    snprintf(adir, sizeof adir, "%.400s/adapter", dir);
    mkdir(adir, 0755);
    tiny_write_text(adir, "adapter_config.json",
                    "{\"fine_tune_type\": \"lora\", \"num_layers\": 2, \"lora_parameters\": "
                    "{\"rank\": 4, \"scale\": 4.0, \"dropout\": 0.0, \"keys\": "
                    "[\"self_attn.q_proj\", \"mlp.down_proj\"]}}");
    if (loam_st_writer_new(&w, NULL) != LOAM_OK) return -1;
    b.n = 0;
    for (int l = 0; l < TINY_LAYERS; l++) {
        char nm[256];
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.lora_a", l);
        tiny_add(w, &b, nm, TINY_EMBD, 4, 0, 0.3f);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.lora_b", l);
        tiny_add(w, &b, nm, 4, TINY_HEADS * TINY_HEAD_DIM, 0, 0.3f);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.lora_a", l);
        tiny_add(w, &b, nm, TINY_FF, 4, 0, 0.3f);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.lora_b", l);
        tiny_add(w, &b, nm, 4, TINY_EMBD, 0, 0.3f);
    }
    snprintf(path, sizeof path, "%s/adapters.safetensors", adir);
    s = loam_st_writer_write(w, path, NULL);
    loam_st_writer_free(w);
    for (int i = 0; i < b.n; i++) free(b.p[i]);
    return s == LOAM_OK ? 0 : -1;
}

static inline int tiny_model_write(const char *dir) { return tiny_model_write_ex(dir, 0); }

#endif /* LOAM_TINY_MODEL_H */
