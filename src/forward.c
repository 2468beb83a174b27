/* forward.c: the forward pass of one step, written once against the backend interface
 * (backend.h). Every architecture runs the same stage sequence; what differs between Qwen3,
 * Qwen2 and Llama (q/k norm, biases, RoPE scaling) is data in the model, read by the stages. */
#include "backend.h"

void loam__forward_step(const loam__backend *be, void *bs, const loam__step *st,
                        int32_t n_layer) {
    be->embed(bs, st);
    for (int32_t l = 0; l < n_layer; l++) {
        be->attn_qkv(bs, st, l);
        be->attention(bs, st, l);
        be->attn_out(bs, st, l);
        be->ffn_up(bs, st, l);
        be->ffn_down(bs, st, l);
    }
    if (st->n_out > 0) be->head(bs, st);
}
