/* json.h: strict JSON parsing on top of cJSON (internal).
 *
 * cJSON is lax where hostile files can exploit it: it does not validate UTF-8, treats every
 * byte <= 0x20 as whitespace, skips a UTF-8 byte order mark, accepts "+1", "01", "1." and
 * "\uZZZZ" (which it decodes as NUL), keeps duplicate object keys, and turns "\u0000" into a
 * string terminator. loam__json_parse() closes those gaps before and after cJSON runs, so
 * every module reads JSON (safetensors headers, config.json, index files, tokenizer files)
 * under the same RFC 8259 rules. Numbers still come back as cJSON doubles: callers that need
 * integers check them with loam__json_uint().
 */
#ifndef LOAM_JSON_H
#define LOAM_JSON_H

#include "loam_internal.h"

#include <cJSON.h>

/* Parses text[0..len) (need not be NUL-terminated) as one JSON value, surrounded by optional
 * JSON whitespace (space, tab, LF, CR). Rejects, in this order: invalid UTF-8 (overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences); lexical errors (raw control
 * characters, bad escapes, "\u0000", numbers outside the RFC 8259 grammar, bare words); what
 * cJSON rejects (structure, nesting deeper than 1000); duplicate keys in any object.
 * `what` starts every message ("model.safetensors: header", "config.json").
 * On success *out owns the tree (cJSON_Delete); on failure *out is NULL and the status is
 * LOAM_E_FORMAT (LOAM_E_NOMEM when allocation failed). The tree lives on cJSON's own heap:
 * its allocation hooks are process-global, so the library does not redirect them. */
loam_status loam__json_parse(const char *text, size_t len, const char *what, cJSON **out,
                             loam_err *err);

/* True when the bytes are valid UTF-8; *bad_at gets the offset of the first bad byte. */
int loam__utf8_valid(const uint8_t *s, size_t n, size_t *bad_at);

/* Reads a JSON number that must be a non-negative integer below 2^53 (exactly representable in
 * the double cJSON stores). Returns 0 and sets *out, or -1 when v is not such a number. */
int loam__json_uint(const cJSON *v, uint64_t *out);

#define LOAM__JSON_MAX_INT ((uint64_t)1 << 53)

#endif /* LOAM_JSON_H */
