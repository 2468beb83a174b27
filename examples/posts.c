/* posts.c: write three posts with a model and its voice adapter, in three API calls.
 *
 *   cc posts.c $(pkg-config --cflags --libs loam) -o posts
 *   ./posts MODEL_DIR ADAPTER_DIR
 */
#include <loam.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR ADAPTER_DIR\n", argv[0]);
        return 2;
    }
    loam_model *model = NULL;
    loam_completion *posts = NULL;
    loam_err err = {0};
    loam_generate_params p = loam_generate_params_default();
    p.n = 3;
    p.max_tokens = 200;
    p.sampling.temperature = 0.8f;
    p.sampling.top_p = 0.9f;
    p.adapter = "voice";

    if (loam_model_open(&model, argv[1], NULL, &err) != LOAM_OK ||
        loam_model_load_adapter(model, "voice", argv[2], &err) != LOAM_OK ||
        loam_chat(model, "[{\"role\": \"user\", \"content\": \"Write a post.\"}]", NULL, &p, &posts,
                  NULL, &err) != LOAM_OK) {
        fprintf(stderr, "posts: %s\n", err.msg);
        loam_model_close(model);
        return 1;
    }
    for (int i = 0; i < p.n; i++) printf("--- post %d ---\n%s\n", i + 1, posts[i].text);
    loam_completions_free(posts, p.n);
    loam_model_close(model);
    return 0;
}
