/* test_backend_cuda.c: the CUDA backend against Hugging Face transformers, on a GPU.
 * Built by `make CUDA=1 cuda-test` (not part of `make test`: CI has no GPU; CI compiles it);
 * run from the repository root (fixtures are read from tests/data/models) on the GPU machine.
 *
 * For every reference fixture of tests/data/models whose weights the CUDA backend takes (MLX
 * 4-bit group 64, bf16 scales) and for each of its cases (base, mlx-lm adapter, PEFT adapter):
 * loam's logits at every position, computed on the GPU, against the transformers float32
 * logits of tools/reference (logits_<case>.f32), relative L2 error per position below
 * TOL_FAST = 3e-2, the fast-path bound of tests/test_model.c (int8 activations before every
 * matmul; the GPU quantizes in blocks of 32, the CPU in groups of 64, so the GPU error is the
 * smaller one; measured figures are printed). Three ways of running the same tokens:
 *   1. the whole prompt in one decode call (the prefill path: matmuls in runs of 8 rows),
 *   2. one token per call (the decode path),
 *   3. the three cases as three sequences in one call, interleaved token by token (rows of
 *      different adapters in one step, each sequence with its own block table);
 *   4. the three sequences advanced together one token per call (decode steps of 3 rows in 3
 *      adapter groups: the backend records the step as a CUDA graph once and replays it).
 * Ways 2 and 4 run on recorded graphs after their first step; 1 and 3 (over 64 rows) directly.
 * Fixtures in other formats must be refused at session creation with LOAM_E_UNSUPPORTED and a
 * message naming the tensor.
 */
#define _POSIX_C_SOURCE 200809L
#include "../../src/loam_internal.h"

#include "../test.h"

#include <cJSON.h>
#include <dirent.h>
#include <sys/stat.h>

#define TOL_FAST 3e-2

/* a whole file, NUL-terminated (loam__free), or NULL */
static char *slurp(const char *path, size_t *len) {
    char *text = NULL;
    size_t n = 0;
    loam_err e;
    if (loam__read_file(path, &text, &n, &e) != LOAM_OK) return NULL;
    if (len) *len = n;
    return text;
}

static double rel_l2(const float *a, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int has_dir(const char *dir, const char *sub) {
    char p[2200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static double g_worst = 0;

/* one fixture: returns 1 if it ran on the GPU, 0 if it was refused as unsupported */
static int run_fixture(const char *dir, const char *name) {
    char path[2200];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    char *text = slurp(path, NULL);
    CHECK(text != NULL);
    if (!text) return 0;
    cJSON *ref = cJSON_Parse(text);
    loam__free(text);
    const cJSON *ids_j = cJSON_GetObjectItem(ref, "ids");
    const int32_t n_ids = cJSON_GetArraySize(ids_j);
    const int32_t n_vocab = cJSON_GetObjectItem(ref, "vocab_size")->valueint;
    int32_t *ids = malloc((size_t)n_ids * sizeof *ids);
    for (int32_t i = 0; i < n_ids; i++) ids[i] = cJSON_GetArrayItem(ids_j, i)->valueint;
    cJSON_Delete(ref);

    loam_model_params mp = loam_model_params_default();
    mp.device = LOAM_DEVICE_CUDA;
    loam_model *m = NULL;
    loam_err e = {0};
    CHECK_OK(loam_model_open(&m, dir, &mp, &e), e);
    if (!m) {
        free(ids);
        return 0;
    }
    const char *cases[3] = {"base", "mlx", "peft"};
    int32_t adapter[3] = {-1, -1, -1};
    bool have[3] = {true, false, false};
    for (int c = 1; c < 3; c++) {
        char sub[32];
        snprintf(sub, sizeof sub, "adapter_%s", cases[c]);
        if (!has_dir(dir, sub)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, sub);
        CHECK_OK(loam_model_load_adapter(m, cases[c], path, &e), e);
        adapter[c] = loam_model_adapter_id(m, cases[c]);
        have[c] = adapter[c] >= 0;
    }
    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = 256;
    sp.n_seq_max = 3;
    sp.n_batch = 64;
    sp.n_logits = 3 * n_ids;
    loam_session *s = NULL;
    loam_status st = loam_session_new(&s, m, &sp, &e);
    if (st == LOAM_E_UNSUPPORTED) {
        printf("  %-28s refused: %s\n", name, e.msg);
        CHECK(strstr(e.msg, "model.") != NULL || strstr(e.msg, "lm_head") != NULL);
        loam_model_close(m);
        free(ids);
        return 0;
    }
    CHECK_OK(st, e);
    float *want[3] = {0}, *got = malloc((size_t)n_ids * n_vocab * sizeof(float));
    for (int c = 0; c < 3; c++) {
        if (!have[c]) continue;
        snprintf(path, sizeof path, "%s/logits_%s.f32", dir, cases[c]);
        size_t len = 0;
        want[c] = (float *)slurp(path, &len);
        CHECK(want[c] && len == (size_t)n_ids * n_vocab * sizeof(float));
    }
    loam_batch_entry *ent = malloc((size_t)3 * n_ids * sizeof *ent);
    double worst[4][3] = {{0}};
    for (int c = 0; c < 3 && s; c++) {
        if (!have[c] || !want[c]) continue;
        /* 1. one call */
        loam_session_seq_reset(s, 0);
        for (int32_t i = 0; i < n_ids; i++)
            ent[i] = (loam_batch_entry){0, i, ids[i], adapter[c], true};
        CHECK_OK(loam_session_decode(s, ent, (size_t)n_ids, &e), e);
        for (int32_t i = 0; i < n_ids; i++) {
            const float *l = loam_session_logits(s, (size_t)i);
            double d = l ? rel_l2(l, want[c] + (int64_t)i * n_vocab, n_vocab) : 1.0;
            worst[0][c] = d > worst[0][c] ? d : worst[0][c];
        }
        /* 2. one token per call */
        loam_session_seq_reset(s, 0);
        for (int32_t i = 0; i < n_ids; i++) {
            loam_batch_entry one = {0, i, ids[i], adapter[c], true};
            CHECK_OK(loam_session_decode(s, &one, 1, &e), e);
            const float *l = loam_session_logits(s, 0);
            double d = l ? rel_l2(l, want[c] + (int64_t)i * n_vocab, n_vocab) : 1.0;
            worst[1][c] = d > worst[1][c] ? d : worst[1][c];
        }
        loam_session_seq_reset(s, 0);
    }
    /* 3. every case at once, interleaved */
    size_t n = 0;
    for (int32_t i = 0; i < n_ids; i++)
        for (int c = 0; c < 3; c++)
            if (have[c] && want[c]) ent[n++] = (loam_batch_entry){c, i, ids[i], adapter[c], true};
    if (s) {
        CHECK_OK(loam_session_decode(s, ent, n, &e), e);
        for (size_t j = 0; j < n; j++) {
            const float *l = loam_session_logits(s, j);
            int c = ent[j].seq;
            double d = l ? rel_l2(l, want[c] + (int64_t)ent[j].pos * n_vocab, n_vocab) : 1.0;
            worst[2][c] = d > worst[2][c] ? d : worst[2][c];
        }
    }
    /* 4. together, one token per call */
    for (int c = 0; c < 3 && s; c++) loam_session_seq_reset(s, c);
    for (int32_t i = 0; i < n_ids && s; i++) {
        n = 0;
        for (int c = 0; c < 3; c++)
            if (have[c] && want[c]) ent[n++] = (loam_batch_entry){c, i, ids[i], adapter[c], true};
        CHECK_OK(loam_session_decode(s, ent, n, &e), e);
        for (size_t j = 0; j < n; j++) {
            const float *l = loam_session_logits(s, j);
            int c = ent[j].seq;
            double d = l ? rel_l2(l, want[c] + (int64_t)i * n_vocab, n_vocab) : 1.0;
            worst[3][c] = d > worst[3][c] ? d : worst[3][c];
        }
    }
    for (int c = 0; c < 3; c++) {
        if (!have[c] || !want[c]) continue;
        printf("  %-28s %-4s  rel L2 vs transformers: one call %.2e, per token %.2e, "
               "interleaved %.2e, together per token %.2e\n",
               name, cases[c], worst[0][c], worst[1][c], worst[2][c], worst[3][c]);
        for (int w = 0; w < 4; w++) {
            CHECK(worst[w][c] < TOL_FAST);
            g_worst = worst[w][c] > g_worst ? worst[w][c] : g_worst;
        }
    }
    for (int c = 0; c < 3; c++) loam__free(want[c]);
    free(got);
    free(ent);
    free(ids);
    loam_session_free(s);
    loam_model_close(m);
    return 1;
}

static void test_fixtures(void) {
    const char *root = LOAM_TEST_DIR "/data/models";
    DIR *d = opendir(root);
    CHECK(d != NULL);
    if (!d) return;
    char *names[64];
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) && n < 64)
        if (ent->d_name[0] != '.') names[n++] = strdup(ent->d_name);
    closedir(d);
    int ran = 0;
    for (int i = 0; i < n; i++) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        ran += run_fixture(dir, names[i]);
        free(names[i]);
    }
    printf("fixtures run on the GPU: %d (worst rel L2 %.2e, bound %.0e)\n", ran, g_worst,
           TOL_FAST);
    CHECK(ran >= 3); /* qwen3_q4_g64_tied, qwen2_q4_g64_tied, llama3_q4_g64 */
}

static void run_tests(void) {
    TEST(test_fixtures);
}
