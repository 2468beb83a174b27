/* resp.c: OpenAI response bodies, built with cJSON from plain structs (see server.h).
 *
 * Shapes (what the official clients parse):
 *   chat.completion        {id, object, created, model, system_fingerprint, choices: [{index,
 *                           message: {role: "assistant", content}, logprobs, finish_reason}],
 *                           usage: {prompt_tokens, completion_tokens, total_tokens}}
 *   text_completion        {id, object, created, model, choices: [{index, text, logprobs,
 *                           finish_reason}], usage}
 *   chat.completion.chunk  {id, object, created, model, choices: [{index, delta: {role?,
 *                           content?}, logprobs: null, finish_reason}]}
 *   text_completion chunks {id, object: "text_completion", created, model, choices: [{index,
 *                           text, logprobs: null, finish_reason}]}
 *   logprobs (chat)        {content: [{token, logprob, bytes, top_logprobs: [{token, logprob,
 *                           bytes}]}]}; (completions) {tokens, token_logprobs, top_logprobs,
 *                           text_offset}
 */
#include "server.h"

#include <cJSON.h>

bool loam__choice_append(loam__choice *c, const char *text, size_t len) {
    if (c->text_len + len + 1 > c->text_cap) {
        size_t cap = c->text_cap ? c->text_cap : 256;
        while (cap < c->text_len + len + 1) cap *= 2;
        char *p = loam__realloc(c->text, cap);
        if (!p) return false;
        c->text = p;
        c->text_cap = cap;
    }
    memcpy(c->text + c->text_len, text, len);
    c->text_len += len;
    c->text[c->text_len] = '\0';
    return true;
}

void loam__choice_clear(loam__choice *c) {
    loam__free(c->text);
    for (int32_t i = 0; i < c->n_lp; i++) loam__free(c->lp_token_text ? c->lp_token_text[i] : NULL);
    loam__free(c->lp_token_text);
    loam__free(c->lp_token);
    loam__free(c->lp_logprob);
    loam__free(c->lp_top_ids);
    loam__free(c->lp_top_vals);
    if (c->lp_top_text)
        for (int64_t i = 0; i < (int64_t)c->n_lp * c->top_n; i++) loam__free(c->lp_top_text[i]);
    loam__free(c->lp_top_text);
    memset(c, 0, sizeof *c);
}

static char *finish_print(cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) return NULL;
    char *out = loam__strdup(s);
    cJSON_free(s);
    return out;
}

static cJSON *base_object(const loam__resp_meta *m, const char *object) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", m->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)m->created);
    cJSON_AddStringToObject(root, "model", m->model);
    cJSON_AddStringToObject(root, "system_fingerprint", "loam-0.1.0");
    return root;
}

static void add_usage(cJSON *root, int32_t prompt, int32_t completion) {
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
}

static cJSON *bytes_array(const char *s) {
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

static cJSON *logprobs_chat(const loam__resp_meta *m, const loam__choice *c) {
    cJSON *lp = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(lp, "content");
    for (int32_t i = 0; i < c->n_lp; i++) {
        cJSON *e = cJSON_CreateObject();
        const char *tt = c->lp_token_text[i] ? c->lp_token_text[i] : "";
        cJSON_AddStringToObject(e, "token", tt);
        cJSON_AddNumberToObject(e, "logprob", c->lp_logprob[i]);
        cJSON_AddItemToObject(e, "bytes", bytes_array(tt));
        cJSON *tops = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int32_t j = 0; j < m->top_logprobs; j++) {
            size_t k = (size_t)i * (size_t)m->top_logprobs + (size_t)j;
            const char *t = c->lp_top_text[k] ? c->lp_top_text[k] : "";
            cJSON *te = cJSON_CreateObject();
            cJSON_AddStringToObject(te, "token", t);
            cJSON_AddNumberToObject(te, "logprob", c->lp_top_vals[k]);
            cJSON_AddItemToObject(te, "bytes", bytes_array(t));
            cJSON_AddItemToArray(tops, te);
        }
        cJSON_AddItemToArray(content, e);
    }
    return lp;
}

static cJSON *logprobs_completion(const loam__resp_meta *m, const loam__choice *c) {
    cJSON *lp = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *vals = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(lp, "text_offset");
    size_t off = 0;
    for (int32_t i = 0; i < c->n_lp; i++) {
        const char *tt = c->lp_token_text[i] ? c->lp_token_text[i] : "";
        cJSON_AddItemToArray(tokens, cJSON_CreateString(tt));
        cJSON_AddItemToArray(vals, cJSON_CreateNumber(c->lp_logprob[i]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += strlen(tt);
        cJSON *t = cJSON_CreateObject();
        for (int32_t j = 0; j < m->top_logprobs; j++) {
            size_t k = (size_t)i * (size_t)m->top_logprobs + (size_t)j;
            const char *name = c->lp_top_text[k] ? c->lp_top_text[k] : "";
            if (!cJSON_GetObjectItemCaseSensitive(t, name))
                cJSON_AddNumberToObject(t, name, c->lp_top_vals[k]);
        }
        cJSON_AddItemToArray(tops, t);
    }
    return lp;
}

char *loam__resp_full(const loam__resp_meta *m, const loam__choice *choices, int32_t n) {
    bool chat = m->kind == LOAM__OAI_CHAT;
    cJSON *root = base_object(m, chat ? "chat.completion" : "text_completion");
    cJSON *arr = cJSON_AddArrayToObject(root, "choices");
    int32_t completion = 0;
    for (int32_t i = 0; i < n; i++) {
        const loam__choice *c = &choices[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        const char *text = c->text ? c->text : "";
        if (chat) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", text);
        } else {
            cJSON_AddStringToObject(ch, "text", text);
        }
        if (m->logprobs) cJSON_AddItemToObject(ch, "logprobs", chat ? logprobs_chat(m, c) : logprobs_completion(m, c));
        else cJSON_AddNullToObject(ch, "logprobs");
        if (c->finish) cJSON_AddStringToObject(ch, "finish_reason", c->finish);
        else cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(arr, ch);
        completion += c->completion_tokens;
    }
    add_usage(root, m->prompt_tokens, completion);
    return finish_print(root);
}

static char *sse_wrap(char *json) {
    if (!json) return NULL;
    size_t n = strlen(json);
    char *out = loam__malloc(n + 9);
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, json, n);
        memcpy(out + 6 + n, "\n\n", 3);
    }
    loam__free(json);
    return out;
}

char *loam__resp_chunk(const loam__resp_meta *m, int32_t index, const char *text, size_t len,
                       bool first, const char *finish) {
    bool chat = m->kind == LOAM__OAI_CHAT;
    cJSON *root = base_object(m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *arr = cJSON_AddArrayToObject(root, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", index);
    char *t = loam__strndup(text ? text : "", text ? len : 0);
    if (chat) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (first) cJSON_AddStringToObject(delta, "role", "assistant");
        if (!finish || len > 0) cJSON_AddStringToObject(delta, "content", t ? t : "");
    } else {
        cJSON_AddStringToObject(ch, "text", t ? t : "");
    }
    loam__free(t);
    cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(arr, ch);
    return sse_wrap(finish_print(root));
}

char *loam__resp_usage_chunk(const loam__resp_meta *m, int32_t completion_tokens) {
    bool chat = m->kind == LOAM__OAI_CHAT;
    cJSON *root = base_object(m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddArrayToObject(root, "choices");
    add_usage(root, m->prompt_tokens, completion_tokens);
    return sse_wrap(finish_print(root));
}
