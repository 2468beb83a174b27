/* two_adapters.c: one loaded model serving two adapters from two threads at once. The model
 * (weights, tokenizer, adapters) is shared read-only; each loam_generate call has its own
 * session, so the threads need no locking of their own.
 *
 *   cc two_adapters.c $(pkg-config --cflags --libs loam) -lpthread -o two_adapters
 *   ./two_adapters MODEL_DIR ADAPTER_A ADAPTER_B
 */
#include <loam.h>
#include <pthread.h>
#include <stdio.h>

typedef struct {
    loam_model *model;
    const char *adapter; /* name of a loaded adapter, or NULL for the base model */
    loam_completion *out;
    loam_status status;
    loam_err err;
} job;

static void *run(void *arg) {
    job *j = arg;
    loam_generate_params p = loam_generate_params_default();
    p.adapter = j->adapter;
    p.max_tokens = 32;
    p.sampling.temperature = 0.7f;
    p.sampling.seed = 42;
    j->status = loam_generate(j->model, "Once upon a time", &p, &j->out, NULL, &j->err);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR ADAPTER_A ADAPTER_B\n", argv[0]);
        return 2;
    }
    loam_model *model = NULL;
    loam_err err = {0};
    if (loam_model_open(&model, argv[1], NULL, &err) != LOAM_OK ||
        loam_model_load_adapter(model, "a", argv[2], &err) != LOAM_OK ||
        loam_model_load_adapter(model, "b", argv[3], &err) != LOAM_OK) {
        fprintf(stderr, "two_adapters: %s\n", err.msg);
        loam_model_close(model);
        return 1;
    }
    job jobs[2] = {{model, "a", NULL, LOAM_OK, {0}}, {model, "b", NULL, LOAM_OK, {0}}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, run, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (jobs[i].status != LOAM_OK) {
            fprintf(stderr, "two_adapters: adapter %s: %s\n", jobs[i].adapter, jobs[i].err.msg);
            rc = 1;
            continue;
        }
        printf("[%s] %s\n", jobs[i].adapter, jobs[i].out[0].text);
        loam_completions_free(jobs[i].out, 1);
    }
    loam_model_close(model);
    return rc;
}
