/* chat_template.c: the public chat-template API (loam.h, "chat templates"): parse once, render
 * many times from any thread, and loam_chat_apply(), which does what transformers'
 * apply_chat_template(tokenize=False) does with a tokenizer_config.json.
 *
 * loam_tok_apply_chat_template() is the same with the tokenizer_config.json text a tokenizer
 * opened from a model directory keeps (src/tokenizer.h).
 *
 * The interpreter itself is in jinja_lex.c and jinja_parse.c (source -> AST), jinja_eval.c (AST ->
 * text), jinja_builtins.c (filters, tests, methods, globals), jinja_str.c (strings) and
 * jinja_value.c (values, JSON); jinja.h describes the semantics they follow.
 *
 * apply_chat_template, as transformers (4.4x) does it:
 *   template  = config["chat_template"]; a list of {"name","template"} picks "tool_use" when
 *               tools are given and present, else "default"
 *   variables = special_tokens_map (bos/eos/unk/sep/pad/cls/mask tokens that are set, as
 *               strings; additional_special_tokens as a list of strings), then the caller's
 *               extra kwargs, then messages=, tools= (None when absent), documents=None,
 *               add_generation_prompt=
 *   output    = template.render(**variables), no trailing newline added or removed.
 */
#include "jinja.h"
#include "tokenizer.h"

struct loam_chat_template {
    jinja_template t;
};

void loam__jinja_default_config(jinja_config *c) {
    c->max_output_bytes = (uint64_t)16 << 20;
    c->max_arena_bytes = (uint64_t)256 << 20;
    c->max_loop_iters = 1000000;
    c->max_steps = 50000000;
    c->max_call_depth = 64;
    c->now = 0;
}

loam_status loam_chat_template_new(loam_chat_template **out, const char *source, size_t len,
                                   loam_err *err) {
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "loam_chat_template_new: out is NULL");
    *out = NULL;
    if (!source && len)
        return loam__fail(err, LOAM_E_INVAL, "loam_chat_template_new: source is NULL");
    loam_chat_template *t = loam__malloc(sizeof *t);
    if (!t)
        return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
    loam_status st = loam__jinja_parse(&t->t, source ? source : "", len, err);
    if (st != LOAM_OK) {
        loam__free(t);
        return st;
    }
    *out = t;
    return LOAM_OK;
}

void loam_chat_template_free(loam_chat_template *t) {
    if (!t)
        return;
    loam__jinja_arena_free(&t->t.arena);
    loam__free(t);
}

/* Renders with a globals dict already built in arena `a` (freed by the caller). */
static loam_status render_with(const loam_chat_template *t, jinja_arena *a, jinja_dict *globals,
                               char **out, size_t *out_len, loam_err *err) {
    jinja_config cfg;
    loam__jinja_default_config(&cfg);
    return loam__jinja_render(&t->t, a, globals, &cfg, out, out_len, err);
}

loam_status loam_chat_template_render(const loam_chat_template *t, const char *context_json,
                                      char **out, size_t *out_len, loam_err *err) {
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "loam_chat_template_render: out is NULL");
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!t)
        return loam__fail(err, LOAM_E_INVAL, "loam_chat_template_render: template is NULL");
    jinja_arena a = {0};
    jinja_value ctx;
    char why[160];
    loam_status st;
    if (!context_json) {
        jinja_dict *d = loam__jinja_dict_new(&a);
        if (!d)
            return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
        ctx = jv_dict(d);
    } else {
        int rc =
            loam__jinja_json_parse(&a, context_json, strlen(context_json), &ctx, why, sizeof why);
        if (rc) {
            loam__jinja_arena_free(&a);
            return loam__fail(err, rc == -2 ? LOAM_E_NOMEM : LOAM_E_INVAL, "template context: %s",
                              why);
        }
    }
    if (ctx.type != JV_DICT) {
        loam__jinja_arena_free(&a);
        return loam__fail(err, LOAM_E_INVAL, "template context: must be a JSON object");
    }
    st = render_with(t, &a, ctx.u.d, out, out_len, err);
    loam__jinja_arena_free(&a);
    return st;
}

// ---- apply_chat_template ----------------------------------------------------------------------

/* A special token value: a string, or an AddedToken object {"content": "..."}; else none. */
static bool token_text(jinja_value v, jinja_value *out) {
    if (v.type == JV_STR) {
        *out = v;
        return true;
    }
    if (v.type == JV_DICT) {
        bool found;
        jinja_value c = loam__jinja_dict_get_cstr(v.u.d, "content", &found);
        if (found && c.type == JV_STR) {
            *out = c;
            return true;
        }
    }
    return false;
}

static loam_status parse_arg(jinja_arena *a, const char *what, const char *json, jinja_type want,
                             jinja_value *out, loam_err *err) {
    char why[160];
    int rc = loam__jinja_json_parse(a, json, strlen(json), out, why, sizeof why);
    if (rc)
        return loam__fail(err, rc == -2 ? LOAM_E_NOMEM : LOAM_E_INVAL, "chat template %s: %s", what,
                          why);
    if (out->type != want)
        return loam__fail(err, LOAM_E_INVAL, "chat template %s: must be a JSON %s", what,
                          want == JV_LIST ? "array" : "object");
    return LOAM_OK;
}

static loam_status apply_inner(jinja_arena *a, const char *config_json, size_t config_len,
                               const char *template_override, const char *messages_json,
                               const char *tools_json, const char *extra_json,
                               bool add_generation_prompt, char **out, size_t *out_len,
                               loam_err *err) {
    char why[160];
    jinja_value cfg;
    int rc = loam__jinja_json_parse(a, config_json, config_len, &cfg, why, sizeof why);
    if (rc)
        return loam__fail(err, rc == -2 ? LOAM_E_NOMEM : LOAM_E_FORMAT, "tokenizer_config.json: %s",
                          why);
    if (cfg.type != JV_DICT)
        return loam__fail(err, LOAM_E_FORMAT, "tokenizer_config.json: not a JSON object");
    jinja_value messages, tools = jv_none(), extra = jv_undef();
    int rc2 =
        loam__jinja_json_parse(a, messages_json, strlen(messages_json), &messages, why, sizeof why);
    if (rc2)
        return loam__fail(err, rc2 == -2 ? LOAM_E_NOMEM : LOAM_E_INVAL,
                          "chat template messages: %s", why);
    bool has_tools = tools_json != NULL;
    if (messages.type == JV_DICT) { /* {"messages": [...], "tools": [...]} */
        bool found;
        jinja_value t = loam__jinja_dict_get_cstr(messages.u.d, "tools", &found);
        if (found && !has_tools && t.type != JV_NONE) {
            if (t.type != JV_LIST)
                return loam__fail(err, LOAM_E_INVAL,
                                  "chat template messages: \"tools\" must be an array");
            tools = t;
            has_tools = true;
        }
        messages = loam__jinja_dict_get_cstr(messages.u.d, "messages", &found);
        if (!found)
            return loam__fail(err, LOAM_E_INVAL,
                              "chat template messages: object without \"messages\"");
    }
    if (messages.type != JV_LIST)
        return loam__fail(err, LOAM_E_INVAL, "chat template messages: must be a JSON array");
    loam_status st = LOAM_OK;
    if (tools_json)
        st = parse_arg(a, "tools", tools_json, JV_LIST, &tools, err);
    if (st == LOAM_OK && extra_json)
        st = parse_arg(a, "extra variables", extra_json, JV_DICT, &extra, err);
    if (st != LOAM_OK)
        return st;

    /* the template source */
    const char *src = template_override;
    size_t src_len = src ? strlen(src) : 0;
    if (!src) {
        bool found;
        jinja_value ct = loam__jinja_dict_get_cstr(cfg.u.d, "chat_template", &found);
        if (ct.type == JV_STR) {
            src = ct.u.s.p;
            src_len = ct.u.s.n;
        } else if (ct.type == JV_LIST) {
            jinja_value dflt = jv_undef(), tool_use = jv_undef();
            for (size_t i = 0; i < ct.u.l->n; i++) {
                jinja_value e = ct.u.l->v[i];
                if (e.type != JV_DICT)
                    continue;
                bool f1, f2;
                jinja_value name = loam__jinja_dict_get_cstr(e.u.d, "name", &f1);
                jinja_value tpl = loam__jinja_dict_get_cstr(e.u.d, "template", &f2);
                if (name.type != JV_STR || tpl.type != JV_STR)
                    continue;
                if (name.u.s.n == 7 && !memcmp(name.u.s.p, "default", 7))
                    dflt = tpl;
                if (name.u.s.n == 8 && !memcmp(name.u.s.p, "tool_use", 8))
                    tool_use = tpl;
            }
            jinja_value pick = has_tools && tool_use.type == JV_STR ? tool_use : dflt;
            if (pick.type != JV_STR)
                return loam__fail(
                    err, LOAM_E_FORMAT,
                    "tokenizer_config.json: several chat templates and none named \"default\"");
            src = pick.u.s.p;
            src_len = pick.u.s.n;
        } else {
            return loam__fail(err, LOAM_E_FORMAT, "tokenizer_config.json: no chat_template");
        }
    }

    jinja_dict *g = loam__jinja_dict_new(a);
    if (!g)
        return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
    static const char *const special[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                          "pad_token", "cls_token", "mask_token"};
    bool ok = true;
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) {
        bool found;
        jinja_value tv, v = loam__jinja_dict_get_cstr(cfg.u.d, special[k], &found);
        if (found && token_text(v, &tv) && tv.u.s.n)
            ok &= loam__jinja_dict_set(a, g, jv_str(special[k], strlen(special[k])), tv);
    }
    bool found;
    jinja_value add = loam__jinja_dict_get_cstr(cfg.u.d, "additional_special_tokens", &found);
    if (found && add.type == JV_LIST && add.u.l->n) {
        jinja_list *l = loam__jinja_list_new(a, add.u.l->n);
        if (!l)
            return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");
        for (size_t i = 0; i < add.u.l->n; i++) {
            jinja_value tv;
            if (token_text(add.u.l->v[i], &tv))
                l->v[l->n++] = tv;
        }
        ok &= loam__jinja_dict_set(a, g, jv_str("additional_special_tokens", 25), jv_list(l));
    }
    if (extra.type == JV_DICT)
        for (size_t i = 0; i < extra.u.d->n; i++)
            ok &= loam__jinja_dict_set(a, g, extra.u.d->keys[i], extra.u.d->vals[i]);
    ok &= loam__jinja_dict_set(a, g, jv_str("messages", 8), messages);
    ok &= loam__jinja_dict_set(a, g, jv_str("tools", 5), tools);
    ok &= loam__jinja_dict_set(a, g, jv_str("documents", 9), jv_none());
    ok &= loam__jinja_dict_set(a, g, jv_str("add_generation_prompt", 21),
                               jv_bool(add_generation_prompt));
    if (!ok)
        return loam__fail(err, LOAM_E_NOMEM, "template: out of memory");

    loam_chat_template *t;
    st = loam_chat_template_new(&t, src, src_len, err);
    if (st != LOAM_OK)
        return st;
    st = render_with(t, a, g, out, out_len, err);
    loam_chat_template_free(t);
    return st;
}

loam_status loam_chat_apply(const char *config_json, size_t config_len,
                            const char *template_override, const char *messages_json,
                            const char *tools_json, const char *extra_json,
                            bool add_generation_prompt, char **out, size_t *out_len,
                            loam_err *err) {
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "loam_chat_apply: out is NULL");
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!config_json || !messages_json)
        return loam__fail(err, LOAM_E_INVAL, "loam_chat_apply: config or messages is NULL");
    jinja_arena a = {0};
    loam_status st = apply_inner(&a, config_json, config_len, template_override, messages_json,
                                 tools_json, extra_json, add_generation_prompt, out, out_len, err);
    loam__jinja_arena_free(&a);
    return st;
}

loam_status loam_tok_apply_chat_template(const loam_tokenizer *tok, const char *messages_json,
                                         const char *tools_json, const char *extra_json,
                                         bool add_generation_prompt, char **out, loam_err *err) {
    if (!out)
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_apply_chat_template: out is NULL");
    *out = NULL;
    if (!tok)
        return loam__fail(err, LOAM_E_INVAL, "loam_tok_apply_chat_template: tokenizer is NULL");
    const char *cfg = loam__tok_config_text(tok);
    if (!cfg)
        return loam__fail(err, LOAM_E_NOTFOUND,
                          "chat template: the tokenizer has no tokenizer_config.json or "
                          "chat_template.jinja (open it with loam_tokenizer_open_dir)");
    return loam_chat_apply(cfg, strlen(cfg), loam__tok_template_text(tok), messages_json, tools_json, extra_json,
                           add_generation_prompt, out, NULL, err);
}
