/* stream_chat.c: a streaming chat. Each line of standard input is a user message; the answer
 * is printed as it is generated. The callback stops a reply early when it grows past a limit.
 *
 *   cc stream_chat.c $(pkg-config --cflags --libs loam) -o stream_chat
 *   echo "Hello" | ./stream_chat MODEL_DIR
 */
#include <loam.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t printed;
    size_t limit;
} stream_state;

static bool on_text(void *user, int32_t index, const char *text, size_t len) {
    stream_state *st = user;
    (void)index;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    st->printed += len;
    return st->printed < st->limit; /* false stops this reply */
}

/* JSON string escaping for the message text */
static void append_json_string(char *dst, size_t cap, const char *s) {
    size_t n = strlen(dst);
    if (n + 2 >= cap) return;
    dst[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { dst[n++] = '\\'; dst[n++] = (char)c; }
        else if (c < 0x20) n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", c);
        else dst[n++] = (char)c;
    }
    dst[n++] = '"';
    dst[n] = '\0';
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    loam_model *model = NULL;
    loam_err err = {0};
    if (loam_model_open(&model, argv[1], NULL, &err) != LOAM_OK) {
        fprintf(stderr, "stream_chat: %s\n", err.msg);
        return 1;
    }
    stream_state st = {0, 2000};
    loam_generate_params p = loam_generate_params_default();
    p.max_tokens = 64;
    p.sampling.temperature = 0; /* greedy: the same answer every run */
    p.on_text = on_text;
    p.user = &st;
    char line[1024], messages[4096];
    int rc = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        snprintf(messages, sizeof messages, "[{\"role\": \"user\", \"content\": ");
        append_json_string(messages, sizeof messages - 2, line);
        strcat(messages, "}]");
        st.printed = 0;
        loam_completion *reply = NULL;
        loam_usage usage;
        if (loam_chat(model, messages, NULL, &p, &reply, &usage, &err) != LOAM_OK) {
            fprintf(stderr, "stream_chat: %s\n", err.msg);
            rc = 1;
            break;
        }
        printf("\n[%d prompt tokens, %d generated]\n", usage.prompt_tokens,
               usage.completion_tokens);
        loam_completions_free(reply, 1);
    }
    loam_model_close(model);
    return rc;
}
