/* tiny_model.c: `tiny-model DIR` writes the tiny test model of tiny_model.h (random weights,
 * byte-level tokenizer, ChatML template, an adapter in DIR/adapter) for the CLI and server
 * tests. */
#include "tiny_model.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tiny-model DIR\n");
        return 2;
    }
    if (tiny_model_write(argv[1]) != 0) {
        fprintf(stderr, "tiny-model: cannot write %s\n", argv[1]);
        return 1;
    }
    return 0;
}
