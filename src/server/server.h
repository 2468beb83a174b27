/* server.h: internal pieces of the HTTP server shared between its files.
 *
 * sse.c/json building: the OpenAI response bodies (chat.completion, text_completion, their
 * streamed chunks, usage) are built by resp.c from plain structs, so they are unit-tested
 * without sockets.
 */
#ifndef LOAM_SERVER_H
#define LOAM_SERVER_H

#include "oai.h"

/* One finished or in-progress choice of a response. */
typedef struct loam__choice {
    int32_t index;
    char *text; /* heap, grows as text arrives */
    size_t text_len, text_cap;
    const char *finish; /* "stop", "length", or NULL while running */
    int32_t completion_tokens;
    /* logprobs: one entry per generated token (when requested) */
    int32_t n_lp, cap_lp;
    int32_t top_n;         /* entries per position in the lp_top_* arrays */
    int32_t *lp_token;
    float *lp_logprob;
    int32_t *lp_top_ids;   /* (n_lp, top_n) */
    float *lp_top_vals;    /* (n_lp, top_n) */
    char **lp_token_text;  /* decoded piece per entry */
    char **lp_top_text;    /* (n_lp, top_n) */
} loam__choice;

/* Appends text to a choice (grows the buffer). false on out of memory. */
bool loam__choice_append(loam__choice *c, const char *text, size_t len);
void loam__choice_clear(loam__choice *c);

typedef struct loam__resp_meta {
    const char *id;      /* "chatcmpl-..." / "cmpl-..." */
    const char *model;   /* echoed model name */
    int64_t created;     /* unix seconds */
    loam__oai_kind kind;
    int32_t prompt_tokens;
    int32_t top_logprobs;
    bool logprobs;
} loam__resp_meta;

/* Whole non-streamed response body (heap string, loam__free). */
char *loam__resp_full(const loam__resp_meta *meta, const loam__choice *choices, int32_t n);
/* One SSE event "data: {chunk}\n\n" for a text delta of choice `index` (first: also sends the
 * assistant role for chat), or a finish chunk when finish != NULL. Heap string. */
char *loam__resp_chunk(const loam__resp_meta *meta, int32_t index, const char *text, size_t len,
                       bool first, const char *finish);
/* The usage chunk (choices: []) sent when stream_options.include_usage is set. */
char *loam__resp_usage_chunk(const loam__resp_meta *meta, int32_t completion_tokens);

#endif /* LOAM_SERVER_H */
