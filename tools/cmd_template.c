/* cmd_template.c: `loam template -m DIR --messages FILE.json [--tools FILE.json]
 * [--no-generation-prompt] [--var NAME=JSON]...`: renders the model's chat template for a
 * conversation and prints the prompt exactly (no newline is added), as transformers'
 * apply_chat_template(messages, tools=..., add_generation_prompt=True, tokenize=False, **vars)
 * would.
 *
 * The template is DIR/chat_template.jinja when that file exists (transformers gives it
 * priority), else "chat_template" of DIR/tokenizer_config.json, whose special tokens become
 * variables too. --messages holds a JSON array of messages, or an object {"messages": [...],
 * "tools": [...]}; --tools (a JSON array) takes precedence over the object's tools. Each
 * --var NAME=JSON adds a template variable (e.g. --var enable_thinking=false).
 *
 * Exit status: 0 ok; 1 when a file cannot be read or is malformed, or the template fails (one
 * stderr line naming the file and, for template errors, template:LINE:COL); 2 for usage errors.
 * Uses only loam.h, cJSON (to check --var values) and libc.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "template"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: loam template -m DIR --messages FILE.json [--tools FILE.json]\n"
        "                     [--no-generation-prompt] [--var NAME=JSON]...\n"
        "\n"
        "Renders DIR's chat template (chat_template.jinja, or tokenizer_config.json's\n"
        "chat_template) for the conversation in FILE.json and prints the prompt exactly.\n"
        "\n"
        "  -m, --model DIR          model directory\n"
        "  --messages FILE.json     JSON array of messages, or {\"messages\": [...], \"tools\": "
        "[...]}\n"
        "  --tools FILE.json        JSON array of tool definitions (OpenAI format)\n"
        "  --no-generation-prompt   do not open an assistant turn at the end\n"
        "  --var NAME=JSON          extra template variable, e.g. --var enable_thinking=false\n");
}

/* Reads a whole file; NULL with errno set on failure. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (n + 1 < cap)
            break;
        char *nb = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
        errno = EIO;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Appends s to the growing buffer *buf (NUL-terminated); 0 on success. */
static int append(char **buf, size_t *len, const char *s, size_t n) {
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb)
        return -1;
    memcpy(nb + *len, s, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
    return 0;
}

/* Appends a JSON string literal of s. */
static int append_json_string(char **buf, size_t *len, const char *s, size_t n) {
    if (append(buf, len, "\"", 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            if (append(buf, len, esc, 2))
                return -1;
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            if (append(buf, len, esc, 6))
                return -1;
        } else if (append(buf, len, s + i, 1)) {
            return -1;
        }
    }
    return append(buf, len, "\"", 1);
}

int loam_cmd_template(int argc, char **argv) {
    const char *model = NULL, *messages_path = NULL, *tools_path = NULL;
    bool gen = true;
    char *extra = NULL; /* {"NAME": JSON, ...} built from --var */
    size_t extra_len = 0;
    int rc = 2;
    char *cfg = NULL, *override = NULL, *messages = NULL, *tools = NULL, *out = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            rc = 0;
            goto done;
        }
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!has_value)
                goto missing_value;
            model = argv[++i];
        } else if (!strcmp(a, "--messages")) {
            if (!has_value)
                goto missing_value;
            messages_path = argv[++i];
        } else if (!strcmp(a, "--tools")) {
            if (!has_value)
                goto missing_value;
            tools_path = argv[++i];
        } else if (!strcmp(a, "--no-generation-prompt")) {
            gen = false;
        } else if (!strcmp(a, "--var")) {
            if (!has_value)
                goto missing_value;
            const char *v = argv[++i];
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                rc = cli_usage_error(CMD, "--var wants NAME=JSON, got '%s'", v);
                goto done;
            }
            cJSON *check = cJSON_Parse(eq + 1);
            if (!check) {
                rc = cli_usage_error(CMD,
                                     "--var %.*s: the value is not valid JSON (strings need "
                                     "quotes: NAME='\"text\"')",
                                     (int)(eq - v), v);
                goto done;
            }
            cJSON_Delete(check);
            if (append(&extra, &extra_len, extra_len ? "," : "{", 1) ||
                append_json_string(&extra, &extra_len, v, (size_t)(eq - v)) ||
                append(&extra, &extra_len, ":", 1) ||
                append(&extra, &extra_len, eq + 1, strlen(eq + 1))) {
                rc = cli_error(CMD, "out of memory");
                goto done;
            }
        } else {
            rc = cli_usage_error(CMD, "unknown argument '%s'", a);
            goto done;
        }
        continue;
    missing_value:
        rc = cli_usage_error(CMD, "%s needs a value", a);
        goto done;
    }
    if (!model) {
        rc = cli_usage_error(CMD, "missing -m DIR");
        goto done;
    }
    if (!messages_path) {
        rc = cli_usage_error(CMD, "missing --messages FILE.json");
        goto done;
    }
    if (extra && append(&extra, &extra_len, "}", 1)) {
        rc = cli_error(CMD, "out of memory");
        goto done;
    }

    rc = 1;
    char *cfg_path = path_join(model, "tokenizer_config.json");
    char *jinja_path = path_join(model, "chat_template.jinja");
    if (!cfg_path || !jinja_path) {
        free(cfg_path);
        free(jinja_path);
        cli_error(CMD, "out of memory");
        goto done;
    }
    size_t cfg_len = 0;
    cfg = read_all(cfg_path, &cfg_len);
    struct stat sb;
    bool have_jinja = stat(jinja_path, &sb) == 0 && S_ISREG(sb.st_mode);
    if (have_jinja && !(override = read_all(jinja_path, NULL))) {
        cli_error(CMD, "%s: %s", jinja_path, strerror(errno));
        free(cfg_path);
        free(jinja_path);
        goto done;
    }
    if (!cfg) {
        if (!have_jinja) {
            cli_error(CMD, "%s: %s", cfg_path, strerror(errno));
            free(cfg_path);
            free(jinja_path);
            goto done;
        }
        cfg = strdup("{}"); /* a chat_template.jinja alone is enough */
        cfg_len = 2;
    }
    const char *tpl_name = have_jinja ? jinja_path : cfg_path;
    if (!(messages = read_all(messages_path, NULL))) {
        cli_error(CMD, "%s: %s", messages_path, strerror(errno));
    } else if (tools_path && !(tools = read_all(tools_path, NULL))) {
        cli_error(CMD, "%s: %s", tools_path, strerror(errno));
    } else {
        loam_err e = {0};
        size_t n = 0;
        loam_status st =
            loam_chat_apply(cfg, cfg_len, override, messages, tools, extra, gen, &out, &n, &e);
        if (st == LOAM_OK) {
            if (fwrite(out, 1, n, stdout) != n || fflush(stdout) != 0)
                cli_error(CMD, "writing the output: %s", strerror(errno));
            else
                rc = 0;
        } else {
            /* name the file the problem is in, instead of the library's prefix */
            static const struct {
                const char *prefix;
                int which;
            } k_where[] = {{"chat template messages: ", 1},
                           {"chat template tools: ", 2},
                           {"chat template extra variables: ", 3},
                           {"tokenizer_config.json: ", 4}};
            const char *where = tpl_name, *msg = e.msg;
            for (size_t k = 0; k < sizeof k_where / sizeof k_where[0]; k++) {
                size_t pl = strlen(k_where[k].prefix);
                if (strncmp(msg, k_where[k].prefix, pl))
                    continue;
                msg += pl;
                where = k_where[k].which == 1   ? messages_path
                        : k_where[k].which == 2 ? tools_path
                        : k_where[k].which == 3 ? "--var"
                                                : cfg_path;
            }
            for (char *p = e.msg; *p; p++)
                if ((unsigned char)*p < 0x20)
                    *p = ' ';
            cli_error(CMD, "%s: %s", where, msg);
        }
    }
    free(cfg_path);
    free(jinja_path);
done:
    free(extra);
    free(cfg);
    free(override);
    free(messages);
    free(tools);
    loam_free(out);
    return rc;
}
