/* fuzz_template.c: libFuzzer target for the chat-template interpreter. The input is template
 * source; it is parsed and, when it parses, rendered against a fixed context shaped like a real
 * chat (messages with tool calls, tools, special tokens, enable_thinking), with small limits so
 * every input finishes quickly. Whatever the bytes, parsing and rendering must return a status:
 * no crash, no sanitizer report, no hang, no leak.
 *
 * Built by `make fuzz` and run time-bounded by tools/check.d/fuzz.sh; by hand:
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc fuzz/fuzz_template.c \
 *         src/jinja_*.c src/chat_template.c src/status.c -lutf8proc -lm -o fuzz_template
 *   ./fuzz_template fuzz/corpus/template
 */
#include "jinja.h"

#include <stddef.h>
#include <stdint.h>

static const char k_context[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in Paris? é 😀\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nhm\\n</think>\\n\\nok\", "
    "\"reasoning_content\": null,"
    "  \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
    "\"arguments\": {\"city\": \"Paris\", \"n\": 1.5}}}]},"
    " {\"role\": \"tool\", \"content\": \"21 C\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
    "\"parameters\": {\"type\": \"object\","
    "  \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}],"
    " \"add_generation_prompt\": true, \"enable_thinking\": false, \"bos_token\": \"<s>\", "
    "\"eos_token\": \"</s>\","
    " \"n\": 3, \"f\": 0.5, \"nothing\": null, \"flags\": [true, false]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jinja_template t;
    loam_err err;
    if (loam__jinja_parse(&t, (const char *)data, size, &err) != LOAM_OK)
        return 0;
    jinja_arena a = {0};
    jinja_value ctx;
    char why[160];
    if (loam__jinja_json_parse(&a, k_context, sizeof k_context - 1, &ctx, why, sizeof why) == 0 &&
        ctx.type == JV_DICT) {
        jinja_config cfg;
        loam__jinja_default_config(&cfg);
        cfg.max_output_bytes = 1 << 20;
        cfg.max_arena_bytes = 64 << 20;
        cfg.max_loop_iters = 20000;
        cfg.max_steps = 2000000;
        cfg.now = 1722000000;
        char *out = NULL;
        if (loam__jinja_render(&t, &a, ctx.u.d, &cfg, &out, NULL, &err) == LOAM_OK)
            loam_free(out);
    }
    loam__jinja_arena_free(&a);
    loam__jinja_arena_free(&t.arena);
    return 0;
}
