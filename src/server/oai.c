/* oai.c: parse and validate OpenAI chat/completions request bodies (see oai.h).
 *
 * Rules, field by field (types are strict: a string where a number belongs is a 400 naming
 * the field, as OpenAI does):
 *   model               string (optional)
 *   messages            chat only, non-empty array of {role, content}; role one of system,
 *                       developer (treated as system), user, assistant, tool; content a string,
 *                       null (assistant with tool_calls), or an array of {"type":"text","text"}
 *                       parts, joined; tool_calls[].function.arguments given as a JSON string
 *                       is parsed into an object so templates can render it (as mlx-lm does)
 *   prompt              completions only: a string (or an array of exactly one string)
 *   max_tokens / max_completion_tokens   integer >= 0
 *   temperature 0..2, top_p 0..1, min_p 0..1, top_k >= 0 integer
 *   xtc_probability 0..1, xtc_threshold 0..0.5 (mlx-lm's XTC; its default threshold 0.1)
 *   repetition_penalty > 0, presence_penalty and frequency_penalty -2..2, *_context_size >= 0
 *   logit_bias          object {"token id": bias -100..100}, ids < n_vocab
 *   seed                integer (any sign; used modulo 2^64)
 *   stop                string or array of at most 4 non-empty strings
 *   n                   integer 1..16
 *   stream, logprobs    booleans; stream_options.include_usage boolean
 *   ignore_eos          boolean, an extension that vLLM and llama.cpp's server also accept:
 *                       keep generating past end-of-sequence tokens (for benchmarks)
 *   top_logprobs        integer 0..20 (needs logprobs)
 *   tools               array (chat); chat_template_kwargs object (chat)
 * Unknown fields are ignored (clients send many).
 */
#include "oai.h"

#include <cJSON.h>
#include <math.h>

void loam__oai_set_error(loam__oai_error *e, int http_status, const char *type, const char *code,
                         const char *param, const char *fmt, ...) {
    e->http_status = http_status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *loam__oai_error_json(const loam__oai_error *e) {
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) return NULL;
    char *out = loam__strdup(s);
    cJSON_free(s);
    return out;
}

void loam__oai_req_clear(loam__oai_req *req) {
    loam__free(req->model);
    loam__free(req->messages_json);
    loam__free(req->tools_json);
    loam__free(req->kwargs_json);
    loam__free(req->prompt);
    for (int i = 0; i < req->n_stop; i++) loam__free(req->stop[i]);
    memset(req, 0, sizeof *req);
}

#define BAD(param, ...)                                                                            \
    do {                                                                                           \
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__);            \
        goto fail;                                                                                 \
    } while (0)

static char *dup_print(const cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) return NULL;
    char *out = loam__strdup(s);
    cJSON_free(s);
    return out;
}

/* number field: absent -> keep *out; wrong type or outside [lo, hi] -> error */
static bool get_number(const cJSON *root, const char *name, double lo, double hi, double *out,
                       loam__oai_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, name, "'%s' must be a number",
                            name);
        return false;
    }
    if (v->valuedouble < lo || v->valuedouble > hi) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, name,
                            "'%s' must be between %g and %g, got %g", name, lo, hi,
                            v->valuedouble);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

static bool get_int(const cJSON *root, const char *name, double lo, double hi, int32_t *out,
                    loam__oai_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, name,
                            "'%s' must be an integer", name);
        return false;
    }
    if (v->valuedouble < lo || v->valuedouble > hi) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, name,
                            "'%s' must be between %.0f and %.0f, got %.0f", name, lo, hi,
                            v->valuedouble);
        return false;
    }
    *out = (int32_t)v->valuedouble;
    return true;
}

static bool get_bool(const cJSON *root, const char *name, bool *out, loam__oai_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsBool(v)) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, name,
                            "'%s' must be a boolean", name);
        return false;
    }
    *out = cJSON_IsTrue(v) != 0;
    return true;
}

/* Normalises one message in place: content parts joined, arguments parsed. */
static bool normalise_message(cJSON *m, int i, loam__oai_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d]", i);
    if (!cJSON_IsObject(m)) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                            "messages[%d] must be an object", i);
        return false;
    }
    cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsString(role)) {
        snprintf(param, sizeof param, "messages[%d].role", i);
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                            "messages[%d].role must be a string", i);
        return false;
    }
    const char *r = role->valuestring;
    if (strcmp(r, "developer") == 0) {
        cJSON_SetValuestring(role, "system");
    } else if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
               strcmp(r, "tool")) {
        snprintf(param, sizeof param, "messages[%d].role", i);
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                            "messages[%d].role '%.40s' is not one of system, developer, user, "
                            "assistant, tool",
                            i, r);
        return false;
    }
    cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (content && cJSON_IsArray(content)) {
        size_t total = 0;
        const cJSON *part;
        cJSON_ArrayForEach(part, content) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsObject(part) || !cJSON_IsString(type) ||
                strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
                loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                                    "messages[%d].content parts must be {\"type\": \"text\", "
                                    "\"text\": string}; other part types are not supported",
                                    i);
                return false;
            }
            total += strlen(text->valuestring);
        }
        char *joined = loam__malloc(total + 1);
        if (!joined) {
            loam__oai_set_error(e, 500, "server_error", NULL, param, "out of memory");
            return false;
        }
        size_t at = 0;
        cJSON_ArrayForEach(part, content) {
            const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
            size_t n = strlen(t);
            memcpy(joined + at, t, n);
            at += n;
        }
        joined[at] = '\0';
        cJSON_ReplaceItemInObjectCaseSensitive(m, "content", cJSON_CreateString(joined));
        loam__free(joined);
    } else if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                            "messages[%d].content must be a string, an array of text parts or "
                            "null",
                            i);
        return false;
    } else if (!content || cJSON_IsNull(content)) {
        if (!cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) {
            loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                                "messages[%d].content is required", i);
            return false;
        }
    }
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (calls) {
        if (!cJSON_IsArray(calls)) {
            snprintf(param, sizeof param, "messages[%d].tool_calls", i);
            loam__oai_set_error(e, 400, "invalid_request_error", NULL, param,
                                "messages[%d].tool_calls must be an array", i);
            return false;
        }
        cJSON *call;
        cJSON_ArrayForEach(call, calls) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            cJSON *args = fn ? cJSON_GetObjectItemCaseSensitive(fn, "arguments") : NULL;
            if (cJSON_IsString(args)) {
                cJSON *parsed = cJSON_Parse(args->valuestring);
                if (parsed) cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
            }
        }
    }
    return true;
}

bool loam__oai_parse(loam__oai_kind kind, const char *body, size_t len, int32_t n_vocab,
                     loam__oai_req *req, loam__oai_error *e) {
    memset(req, 0, sizeof *req);
    req->kind = kind;
    req->max_tokens = -1;
    req->temperature = NAN;
    req->top_p = NAN;
    req->min_p = NAN;
    req->xtc_probability = NAN;
    req->xtc_threshold = NAN;
    req->top_k = -1;
    req->repetition_penalty = NAN;
    req->presence_penalty = 0;
    req->frequency_penalty = 0;
    req->penalty_window = 20;
    req->n = 1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        long at = end ? (long)(end - body) : 0;
        loam__oai_set_error(e, 400, "invalid_request_error", NULL, NULL,
                            "request body is not valid JSON (error near byte %ld)", at);
        return false;
    }
    if (!cJSON_IsObject(root)) BAD(NULL, "request body must be a JSON object");

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) BAD("model", "'model' must be a string");
        req->model = loam__strdup(model->valuestring);
    }

    if (kind == LOAM__OAI_CHAT) {
        cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!msgs) BAD("messages", "'messages' is required");
        if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
            BAD("messages", "'messages' must be a non-empty array");
        int i = 0;
        cJSON *m;
        cJSON_ArrayForEach(m, msgs) {
            if (!normalise_message(m, i++, e)) goto fail;
        }
        req->messages_json = dup_print(msgs);
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
        if (tools && !cJSON_IsNull(tools)) {
            if (!cJSON_IsArray(tools)) BAD("tools", "'tools' must be an array");
            if (cJSON_GetArraySize(tools) > 0) req->tools_json = dup_print(tools);
        }
        const cJSON *kw = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs");
        if (kw && !cJSON_IsNull(kw)) {
            if (!cJSON_IsObject(kw))
                BAD("chat_template_kwargs", "'chat_template_kwargs' must be an object");
            req->kwargs_json = dup_print(kw);
        }
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (!p) BAD("prompt", "'prompt' is required");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
            cJSON_IsString(cJSON_GetArrayItem(p, 0)))
            p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p))
            BAD("prompt", "'prompt' must be a string (or an array holding one string)");
        req->prompt = loam__strdup(p->valuestring);
    }

    int32_t mt = -1;
    if (!get_int(root, "max_tokens", 0, 1e9, &mt, e)) goto fail;
    if (!get_int(root, "max_completion_tokens", 0, 1e9, &mt, e)) goto fail;
    req->max_tokens = mt;
    if (!get_number(root, "temperature", 0, 2, &req->temperature, e)) goto fail;
    if (!get_number(root, "top_p", 0, 1, &req->top_p, e)) goto fail;
    if (!get_number(root, "min_p", 0, 1, &req->min_p, e)) goto fail;
    if (!get_number(root, "xtc_probability", 0, 1, &req->xtc_probability, e)) goto fail;
    if (!get_number(root, "xtc_threshold", 0, 0.5, &req->xtc_threshold, e)) goto fail;
    if (!get_int(root, "top_k", 0, 1e9, &req->top_k, e)) goto fail;
    if (!get_number(root, "repetition_penalty", 1e-6, 100, &req->repetition_penalty, e)) goto fail;
    if (!get_number(root, "presence_penalty", -2, 2, &req->presence_penalty, e)) goto fail;
    if (!get_number(root, "frequency_penalty", -2, 2, &req->frequency_penalty, e)) goto fail;
    if (!get_int(root, "repetition_context_size", 0, 1e6, &req->penalty_window, e)) goto fail;
    if (!get_int(root, "n", 1, LOAM__OAI_MAX_N, &req->n, e)) goto fail;
    if (!get_bool(root, "stream", &req->stream, e)) goto fail;
    if (!get_bool(root, "logprobs", &req->logprobs, e)) goto fail;
    if (!get_bool(root, "ignore_eos", &req->ignore_eos, e)) goto fail;
    if (!get_int(root, "top_logprobs", 0, 20, &req->top_logprobs, e)) goto fail;
    if (req->top_logprobs > 0 && !req->logprobs)
        BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");

    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (seed && !cJSON_IsNull(seed)) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) ||
            fabs(seed->valuedouble) > 9.2e18)
            BAD("seed", "'seed' must be an integer");
        req->has_seed = true;
        req->seed = (uint64_t)(int64_t)seed->valuedouble;
    }

    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) BAD("stream_options", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &req->include_usage, e)) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            goto fail;
        }
    }

    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        if (cJSON_IsString(stop)) {
            if (stop->valuestring[0]) req->stop[req->n_stop++] = loam__strdup(stop->valuestring);
        } else if (cJSON_IsArray(stop)) {
            if (cJSON_GetArraySize(stop) > LOAM__OAI_MAX_STOP)
                BAD("stop", "'stop' may hold at most %d strings", LOAM__OAI_MAX_STOP);
            const cJSON *s;
            cJSON_ArrayForEach(s, stop) {
                if (!cJSON_IsString(s) || !s->valuestring[0])
                    BAD("stop", "'stop' entries must be non-empty strings");
                req->stop[req->n_stop++] = loam__strdup(s->valuestring);
            }
        } else {
            BAD("stop", "'stop' must be a string or an array of strings");
        }
    }

    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (bias && !cJSON_IsNull(bias)) {
        if (!cJSON_IsObject(bias)) BAD("logit_bias", "'logit_bias' must be an object");
        const cJSON *b;
        cJSON_ArrayForEach(b, bias) {
            char *endp;
            long id = strtol(b->string, &endp, 10);
            if (!b->string[0] || *endp || id < 0 || id >= n_vocab)
                BAD("logit_bias", "'logit_bias' key '%.32s' is not a token id in [0, %d)",
                    b->string, n_vocab);
            if (!cJSON_IsNumber(b) || b->valuedouble < -100 || b->valuedouble > 100)
                BAD("logit_bias", "'logit_bias' values must be numbers in [-100, 100]");
            if (req->n_bias >= LOAM__OAI_MAX_BIAS)
                BAD("logit_bias", "'logit_bias' may hold at most %d entries", LOAM__OAI_MAX_BIAS);
            req->bias[req->n_bias].token = (int32_t)id;
            req->bias[req->n_bias].bias = (float)b->valuedouble;
            req->n_bias++;
        }
    }
    cJSON_Delete(root);
    return true;
fail:
    cJSON_Delete(root);
    loam__oai_req_clear(req);
    return false;
}
