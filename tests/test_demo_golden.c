/* test_demo_golden.c: loam's greedy decoding of the demo model (models/demo, 4-bit base) with
 * and without its voice adapter equals the PyTorch reference token for token
 * (tests/data/demo/golden.json, made by tools/demo/reference.py: transformers float32 on the
 * dequantized 4-bit weights, the LoRA delta in float32, 48 greedy tokens per prompt, an
 * end-of-sequence token not treated as a stop).
 *
 * Two paths:
 * - the scalar float32 reference path must reproduce every token of every prompt;
 * - the fast path (int8 activations) must agree on every step until the first step whose
 *   reference margin between the two best logits is below 0.05: there an activation rounding
 *   error of ~1e-2 in the logits may legitimately pick the other token (the margins are in the
 *   fixture).
 */
#include "loam.h"
#include "test.h"

#include <cJSON.h>

static cJSON *g_golden;
static loam_model *g_model;

static bool load(void) {
    FILE *f = fopen(LOAM_TEST_DIR "/data/demo/golden.json", "rb");
    if (!f) return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    g_golden = cJSON_Parse(buf);
    loam_err err = {0};
    if (!g_golden || loam_model_open(&g_model, LOAM_TEST_DIR "/../models/demo", NULL, &err) != LOAM_OK ||
        loam_model_load_adapter(g_model, "voice", LOAM_TEST_DIR "/../models/demo/adapter", &err) !=
            LOAM_OK) {
        fprintf(stderr, "demo golden: %s\n", err.msg);
        return false;
    }
    return true;
}

/* Greedy-decodes n_new tokens after the prompt; returns how many matched `want` before the
 * first difference (n_new when all did). */
static int greedy_match(bool reference, int adapter, const cJSON *ids, const cJSON *want,
                        int n_new) {
    loam_session *s = NULL;
    loam_session_params sp = loam_session_params_default();
    sp.n_ctx = 512;
    sp.reference = reference;
    loam_err err = {0};
    if (loam_session_new(&s, g_model, &sp, &err) != LOAM_OK) {
        fprintf(stderr, "session: %s\n", err.msg);
        return -1;
    }
    int n_prompt = cJSON_GetArraySize(ids);
    loam_batch_entry e[512];
    for (int i = 0; i < n_prompt && i < 512; i++)
        e[i] = (loam_batch_entry){.seq = 0, .pos = i, .token = cJSON_GetArrayItem(ids, i)->valueint,
                                  .adapter = adapter, .want_logits = i == n_prompt - 1};
    int matched = 0, pos = n_prompt;
    loam_status st = loam_session_decode(s, e, (size_t)n_prompt, &err);
    for (int t = 0; t < n_new && st == LOAM_OK; t++) {
        const float *lg = loam_session_logits(s, 0);
        loam_model_info info;
        loam_model_get_info(g_model, &info);
        int best = 0;
        for (int v = 1; v < info.n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        if (best != cJSON_GetArrayItem(want, t)->valueint) break;
        matched++;
        loam_batch_entry next = {.seq = 0, .pos = pos++, .token = best, .adapter = adapter,
                                 .want_logits = true};
        st = loam_session_decode(s, &next, 1, &err);
    }
    if (st != LOAM_OK) fprintf(stderr, "decode: %s\n", err.msg);
    loam_session_free(s);
    return matched;
}

static int first_small_margin(const cJSON *margins, double below) {
    int n = cJSON_GetArraySize(margins);
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(margins, i)->valuedouble < below) return i;
    return n;
}

static void check_path(bool reference) {
    int voice = loam_model_adapter_id(g_model, "voice");
    const cJSON *p;
    int prompts = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(g_golden, "prompts")) {
        const cJSON *ids = cJSON_GetObjectItem(p, "ids");
        for (int lora = 0; lora < 2; lora++) {
            const cJSON *want = cJSON_GetObjectItem(p, lora ? "greedy_lora" : "greedy_base");
            const cJSON *margin = cJSON_GetObjectItem(p, lora ? "margin_lora" : "margin_base");
            int n_new = cJSON_GetArraySize(want);
            int need = reference ? n_new : first_small_margin(margin, 0.05);
            int got = greedy_match(reference, lora ? voice : -1, ids, want, need);
            if (got < need)
                fprintf(stderr, "  prompt %d %s: %d of %d greedy tokens match (%s path)\n",
                        prompts, lora ? "voice" : "base", got, need,
                        reference ? "reference" : "fast");
            CHECK(got >= need);
        }
        prompts++;
    }
    CHECK(prompts >= 4);
}

static void test_reference_path(void) { check_path(true); }
static void test_fast_path(void) { check_path(false); }

static void run_tests(void) {
    if (!load()) {
        CHECK(!"the demo model and tests/data/demo/golden.json load");
        t_failed++;
        return;
    }
    TEST(test_reference_path);
    TEST(test_fast_path);
    loam_model_close(g_model);
    cJSON_Delete(g_golden);
}
