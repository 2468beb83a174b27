/* oai.h: the OpenAI request subset loam serves, parsed and validated into plain C, and the
 * OpenAI-shaped error body. Pure functions (no I/O), so every rule is unit-tested.
 *
 * Requests (FORMATS.md §7.5): POST /v1/chat/completions and /v1/completions bodies.
 * Validation errors carry the HTTP status (400 for bad JSON, wrong types, out-of-range values,
 * unknown model; the caller adds 401/404/413/429 itself), an OpenAI error `type`
 * ("invalid_request_error"), the offending `param` and a message.
 */
#ifndef LOAM_SERVER_OAI_H
#define LOAM_SERVER_OAI_H

#include "../loam_internal.h"

typedef enum loam__oai_kind { LOAM__OAI_CHAT = 0, LOAM__OAI_COMPLETION = 1 } loam__oai_kind;

#define LOAM__OAI_MAX_STOP 4
#define LOAM__OAI_MAX_BIAS 300
#define LOAM__OAI_MAX_N 16

typedef struct loam__oai_req {
    loam__oai_kind kind;
    char *model;         /* as requested (echoed in responses); NULL when absent */
    char *messages_json; /* chat: messages, content parts joined to strings (JSON array) */
    char *tools_json;    /* chat: "tools" array as JSON, or NULL */
    char *kwargs_json;   /* chat: chat_template_kwargs object as JSON, or NULL */
    char *prompt;        /* completion: the prompt text */
    int32_t max_tokens;  /* -1 when not given */
    double temperature, top_p, min_p, xtc_probability, xtc_threshold;
    int32_t top_k;
    double repetition_penalty, presence_penalty, frequency_penalty;
    int32_t penalty_window;
    bool has_seed;
    uint64_t seed;
    int32_t n_bias;
    loam_logit_bias bias[LOAM__OAI_MAX_BIAS];
    int32_t n_stop;
    char *stop[LOAM__OAI_MAX_STOP];
    int32_t n;
    bool stream, include_usage;
    bool logprobs;
    int32_t top_logprobs; /* 0..20 */
    bool ignore_eos;      /* extension (vLLM, llama.cpp): generate past end-of-sequence */
} loam__oai_req;

typedef struct loam__oai_error {
    int http_status;
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* may be NULL */
    char param[64];   /* empty when none */
    char message[320];
} loam__oai_error;

/* Parses body (len bytes, need not be NUL-terminated) as a request of the given kind.
 * On success fills *req (release with loam__oai_req_clear) and returns true; on failure fills
 * *e and returns false. n_vocab bounds logit_bias ids. */
bool loam__oai_parse(loam__oai_kind kind, const char *body, size_t len, int32_t n_vocab,
                     loam__oai_req *req, loam__oai_error *e);
void loam__oai_req_clear(loam__oai_req *req);

/* Sets *e (printf-style message). */
void loam__oai_set_error(loam__oai_error *e, int http_status, const char *type, const char *code,
                         const char *param, const char *fmt, ...) LOAM__PRINTF(6, 7);
/* {"error": {"message", "type", "param", "code"}} as a heap string (loam__free). */
char *loam__oai_error_json(const loam__oai_error *e);

#endif /* LOAM_SERVER_OAI_H */
