/* test_server_oai.c: OpenAI request validation and response shapes (no sockets). */
#include "../src/server/server.h"
#include "test.h"

#include <cJSON.h>

static bool parse(loam__oai_kind k, const char *body, loam__oai_req *r, loam__oai_error *e) {
    return loam__oai_parse(k, body, strlen(body), 1000, r, e);
}

static void test_chat_minimal(void) {
    loam__oai_req r;
    loam__oai_error e;
    CHECK(parse(LOAM__OAI_CHAT, "{\"model\":\"voice\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &e));
    CHECK_STR(r.model, "voice");
    CHECK_STR(r.messages_json, "[{\"role\":\"user\",\"content\":\"hi\"}]");
    CHECK_EQ_I64(r.n, 1);
    CHECK_EQ_I64(r.max_tokens, -1);
    CHECK(isnan(r.temperature));
    CHECK(!r.stream);
    loam__oai_req_clear(&r);
}

static void test_chat_parts_and_tools(void) {
    loam__oai_req r;
    loam__oai_error e;
    const char *body =
        "{\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"x\\\": 1}\"}}]}],\"tools\":[{\"type\":\"function\"}],"
        "\"chat_template_kwargs\":{\"enable_thinking\":false},\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"stop\":[\"\\n\\n\",\"END\"],\"n\":3,"
        "\"seed\":42,\"logit_bias\":{\"5\":-100,\"7\":2.5},\"logprobs\":true,\"top_logprobs\":2,"
        "\"ignore_eos\":true}";
    CHECK(parse(LOAM__OAI_CHAT, body, &r, &e));
    cJSON *m = cJSON_Parse(r.messages_json);
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "role")->valuestring, "system");
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "content")->valuestring, "ab");
    cJSON *args = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1), "tool_calls"), 0), "function"), "arguments");
    CHECK(cJSON_IsObject(args));
    cJSON_Delete(m);
    CHECK_STR(r.tools_json, "[{\"type\":\"function\"}]");
    CHECK_STR(r.kwargs_json, "{\"enable_thinking\":false}");
    CHECK(r.stream && r.include_usage && r.logprobs && r.ignore_eos);
    CHECK_EQ_I64(r.top_logprobs, 2);
    CHECK_EQ_I64(r.n_stop, 2);
    CHECK_STR(r.stop[1], "END");
    CHECK_EQ_I64(r.n, 3);
    CHECK(r.has_seed && r.seed == 42);
    CHECK_EQ_I64(r.n_bias, 2);
    CHECK_EQ_I64(r.bias[1].token, 7);
    CHECK_CLOSE(r.bias[0].bias, -100, 0);
    loam__oai_req_clear(&r);
}

static void test_completion(void) {
    loam__oai_req r;
    loam__oai_error e;
    CHECK(parse(LOAM__OAI_COMPLETION, "{\"prompt\":[\"Once\"],\"max_tokens\":5,\"temperature\":0,\"top_k\":3}", &r, &e));
    CHECK_STR(r.prompt, "Once");
    CHECK_EQ_I64(r.max_tokens, 5);
    CHECK_CLOSE(r.temperature, 0, 0);
    CHECK_EQ_I64(r.top_k, 3);
    loam__oai_req_clear(&r);
    CHECK(parse(LOAM__OAI_COMPLETION, "{\"prompt\":\"x\",\"max_completion_tokens\":9}", &r, &e));
    CHECK_EQ_I64(r.max_tokens, 9);
    CHECK(isnan(r.xtc_probability) && isnan(r.xtc_threshold)); /* unset: the sampler defaults */
    loam__oai_req_clear(&r);
    CHECK(parse(LOAM__OAI_COMPLETION, "{\"prompt\":\"x\",\"xtc_probability\":0.5,\"xtc_threshold\":0.2}", &r, &e));
    CHECK_CLOSE(r.xtc_probability, 0.5, 0);
    CHECK_CLOSE(r.xtc_threshold, 0.2, 0);
    loam__oai_req_clear(&r);
}

static void expect_error(loam__oai_kind k, const char *body, const char *param) {
    loam__oai_req r;
    loam__oai_error e;
    bool ok = parse(k, body, &r, &e);
    CHECK(!ok);
    if (!ok) {
        CHECK_EQ_I64(e.http_status, 400);
        CHECK_STR(e.param, param);
        CHECK(e.message[0] != '\0');
    } else {
        fprintf(stderr, "  accepted: %s\n", body);
        loam__oai_req_clear(&r);
    }
}

static void test_errors(void) {
    expect_error(LOAM__OAI_CHAT, "{", "");
    expect_error(LOAM__OAI_CHAT, "[1]", "");
    expect_error(LOAM__OAI_CHAT, "{}", "messages");
    expect_error(LOAM__OAI_CHAT, "{\"messages\":[]}", "messages");
    expect_error(LOAM__OAI_CHAT, "{\"messages\":[{\"role\":\"king\",\"content\":\"x\"}]}", "messages[0].role");
    expect_error(LOAM__OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content");
    expect_error(LOAM__OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages[0].content");
    expect_error(LOAM__OAI_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content");
    const char *okm = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
    char buf[512];
    struct { const char *field; const char *param; } bad[] = {
        {"\"temperature\":\"hot\"}", "temperature"},
        {"\"temperature\":3}", "temperature"},
        {"\"top_p\":1.5}", "top_p"},
        {"\"top_k\":1.5}", "top_k"},
        {"\"max_tokens\":-1}", "max_tokens"},
        {"\"n\":0}", "n"},
        {"\"n\":100}", "n"},
        {"\"stream\":1}", "stream"},
        {"\"ignore_eos\":\"yes\"}", "ignore_eos"},
        {"\"stop\":5}", "stop"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop"},
        {"\"logit_bias\":{\"abc\":1}}", "logit_bias"},
        {"\"logit_bias\":{\"5000\":1}}", "logit_bias"},
        {"\"logit_bias\":{\"5\":1000}}", "logit_bias"},
        {"\"seed\":1.5}", "seed"},
        {"\"top_logprobs\":3}", "top_logprobs"},
        {"\"model\":7}", "model"},
        {"\"tools\":{}}", "tools"},
        {"\"stream_options\":{\"include_usage\":\"yes\"}}", "stream_options.include_usage"},
        {"\"presence_penalty\":5}", "presence_penalty"},
        {"\"xtc_probability\":1.5}", "xtc_probability"},
        {"\"xtc_threshold\":0.6}", "xtc_threshold"},
        {"\"xtc_threshold\":\"low\"}", "xtc_threshold"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", okm, bad[i].field);
        expect_error(LOAM__OAI_CHAT, buf, bad[i].param);
    }
    expect_error(LOAM__OAI_COMPLETION, "{\"prompt\":7}", "prompt");
    expect_error(LOAM__OAI_COMPLETION, "{}", "prompt");
}

static void test_error_json(void) {
    loam__oai_error e;
    loam__oai_set_error(&e, 401, "authentication_error", "invalid_api_key", NULL, "bad key %d", 1);
    char *s = loam__oai_error_json(&e);
    CHECK_STR(s, "{\"error\":{\"message\":\"bad key 1\",\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_api_key\"}}");
    loam__free(s);
}

static void test_responses(void) {
    loam__resp_meta m = {.id = "chatcmpl-1", .model = "voice", .created = 7,
                         .kind = LOAM__OAI_CHAT, .prompt_tokens = 4};
    loam__choice c[2];
    memset(c, 0, sizeof c);
    c[0].index = 0;
    c[1].index = 1;
    CHECK(loam__choice_append(&c[0], "Hel", 3));
    CHECK(loam__choice_append(&c[0], "lo", 2));
    c[0].finish = "stop";
    c[0].completion_tokens = 2;
    c[1].finish = "length";
    c[1].completion_tokens = 5;
    char *s = loam__resp_full(&m, c, 2);
    cJSON *j = cJSON_Parse(s);
    CHECK_STR(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion");
    cJSON *ch0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(ch0, "message"), "content")->valuestring, "Hello");
    CHECK_STR(cJSON_GetObjectItem(ch0, "finish_reason")->valuestring, "stop");
    CHECK_EQ_I64(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valueint, 11);
    cJSON_Delete(j);
    loam__free(s);
    s = loam__resp_chunk(&m, 1, "x\"y", 3, true, NULL);
    CHECK(strncmp(s, "data: {", 7) == 0 && strcmp(s + strlen(s) - 2, "\n\n") == 0);
    j = cJSON_Parse(s + 6);
    cJSON *d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "delta");
    CHECK_STR(cJSON_GetObjectItem(d, "role")->valuestring, "assistant");
    CHECK_STR(cJSON_GetObjectItem(d, "content")->valuestring, "x\"y");
    cJSON_Delete(j);
    loam__free(s);
    m.kind = LOAM__OAI_COMPLETION;
    s = loam__resp_usage_chunk(&m, 9);
    j = cJSON_Parse(s + 6);
    CHECK_EQ_I64(cJSON_GetArraySize(cJSON_GetObjectItem(j, "choices")), 0);
    CHECK_EQ_I64(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "completion_tokens")->valueint, 9);
    cJSON_Delete(j);
    loam__free(s);
    loam__choice_clear(&c[0]);
    loam__choice_clear(&c[1]);
}

static void run_tests(void) {
    TEST(test_chat_minimal);
    TEST(test_chat_parts_and_tools);
    TEST(test_completion);
    TEST(test_errors);
    TEST(test_error_json);
    TEST(test_responses);
}
