/* model_text.c: what a model directory holds besides weights: the tokenizer (tokenizer.json,
 * tokenizer_config.json) and the end-of-sequence ids, plus adapter listing for callers that
 * show what is loaded.
 *
 * EOS ids, as mlx-lm resolves them (FORMATS.md §6.8): generation_config.json's eos_token_id
 * (an integer or a list) when present, else config.json's, else the tokenizer's eos_token.
 * Qwen3 therefore stops on both <|im_end|> and <|endoftext|>.
 */
#define _POSIX_C_SOURCE 200809L
#include "json.h"
#include "model.h"

#include <sys/stat.h>

static void add_eos(loam_model *m, const cJSON *v) {
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d >= 0 && d < (double)m->cfg.n_vocab && d == (double)(int32_t)d &&
            m->n_eos < LOAM__MAX_EOS) {
            for (int32_t i = 0; i < m->n_eos; i++)
                if (m->eos[i] == (int32_t)d) return;
            m->eos[m->n_eos++] = (int32_t)d;
        }
    } else if (cJSON_IsArray(v)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, v) add_eos(m, x);
    }
}

loam_status loam__model_open_text(loam_model *m, const char *dir, const cJSON *config,
                                  loam_err *err) {
    char path[4096];
    struct stat st;
    int k = snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (k > 0 && (size_t)k < sizeof path && stat(path, &st) == 0) {
        loam_status s = loam_tokenizer_open_dir(&m->tok, dir, err);
        if (s != LOAM_OK) return s;
    }
    k = snprintf(path, sizeof path, "%s/generation_config.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (k > 0 && (size_t)k < sizeof path && stat(path, &st) == 0) {
        loam_status s = loam__read_file(path, &text, &len, err);
        if (s != LOAM_OK) return s;
        cJSON *gc = NULL;
        s = loam__json_parse(text, len, "generation_config.json", &gc, err);
        loam__free(text);
        if (s != LOAM_OK) return s;
        add_eos(m, cJSON_GetObjectItemCaseSensitive(gc, "eos_token_id"));
        cJSON_Delete(gc);
    }
    if (m->n_eos == 0) add_eos(m, cJSON_GetObjectItemCaseSensitive(config, "eos_token_id"));
    if (m->n_eos == 0 && m->tok) {
        int32_t id = loam_tok_eos_id(m->tok);
        if (id >= 0) m->eos[m->n_eos++] = id;
    }
    return LOAM_OK;
}

void loam__model_close_text(loam_model *m) {
    loam_tokenizer_close(m->tok);
    m->tok = NULL;
}

const loam_tokenizer *loam_model_tokenizer(const loam_model *m) { return m ? m->tok : NULL; }

int32_t loam_model_eos_ids(const loam_model *m, int32_t *ids, int32_t cap) {
    if (!m) return 0;
    for (int32_t i = 0; i < m->n_eos && i < cap; i++) ids[i] = m->eos[i];
    return m->n_eos;
}

bool loam_model_adapter_name(const loam_model *m, int32_t id, char *buf, size_t cap) {
    if (!m || id < 0 || id >= LOAM__MAX_ADAPTERS || !buf || cap == 0) return false;
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->lock;
    pthread_mutex_lock(lock);
    bool ok = m->adapters[id].a != NULL;
    if (ok) snprintf(buf, cap, "%s", m->adapters[id].name);
    pthread_mutex_unlock(lock);
    return ok;
}
