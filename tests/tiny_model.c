/* tiny_model.c: `tiny-model DIR [--nan]` writes the tiny test model of tiny_model.h (random
 * weights, byte-level tokenizer, ChatML template, an adapter in DIR/adapter) for the CLI and
 * server tests; --nan makes every logit NaN (every generation fails: the error paths). */
#include "tiny_model.h"

int main(int argc, char **argv) {
    int nan = argc == 3 && strcmp(argv[2], "--nan") == 0;
    if (argc != 2 && !nan) {
        fprintf(stderr, "usage: tiny-model DIR [--nan]\n");
        return 2;
    }
    if (tiny_model_write_ex(argv[1], nan) != 0) {
        fprintf(stderr, "tiny-model: cannot write %s\n", argv[1]);
        return 1;
    }
    return 0;
}
