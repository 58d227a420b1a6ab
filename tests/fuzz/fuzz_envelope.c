/*
 * fuzz_envelope: the envelope scanner (src/core/envelope.c) against the
 * jansson parse it stands in for, on any input (a differential target).
 *
 * Input: one message text, as tp_conn_feed gets it. Checked:
 *   - whenever the scanner takes the text (TP__ENV_OK), jansson takes it
 *     too with the flags conn.c always used (JSON_REJECT_DUPLICATES |
 *     JSON_DECODE_ANY), and it is an object, or an array of as many
 *     objects as the scanner found messages: the scanner never accepts
 *     what jansson refuses (duplicates, bad UTF-8 or escapes, depth,
 *     trailing bytes, numbers out of range), so a refusal keeps jansson's
 *     message;
 *   - every member the hub reads (of every message) has the same value both ways: absent
 *     or present alike, strings byte for byte (with their length), integers
 *     equal, objects and arrays json_equal, the kind of the others;
 *   - when the scanner declines (TP__ENV_OTHER), the envelope it leaves is
 *     empty, and tp__env_from_json of jansson's object gives those same
 *     members (the path such a text takes).
 * The comparison reads jansson's tree with jansson's own calls, not with
 * the library's.
 */
#include <stdlib.h>
#include <string.h>

#include "core/envelope.h"
#include "fuzz_common.h"

static const char *
kind_name(tp__jv_kind k)
{
    static const char *const names[] = {"absent", "object", "array", "string", "integer",
                                        "real",   "true",   "false", "null"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static tp__jv_kind
kind_of(const json_t *v)
{
    if (v == NULL)
        return TP__JV_ABSENT;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return TP__JV_OBJECT;
    case JSON_ARRAY: return TP__JV_ARRAY;
    case JSON_STRING: return TP__JV_STRING;
    case JSON_INTEGER: return TP__JV_INTEGER;
    case JSON_REAL: return TP__JV_REAL;
    case JSON_TRUE: return TP__JV_TRUE;
    case JSON_FALSE: return TP__JV_FALSE;
    case JSON_NULL:
    default: return TP__JV_NULL;
    }
}

/* The envelope's members against the members of jansson's object. */
static void
same_members(const tp__env *env, const json_t *obj, const char *how)
{
    for (int i = 0; i < TP__M_COUNT; i++) {
        const char *name = tp__env_names[i];
        const tp__jv *jv = &env->m[i];
        const json_t *v = json_object_get(obj, name);
        TPF_CHECK(jv->kind == kind_of(v), "%s: member %s: %s, jansson says %s", how, name,
                  kind_name(jv->kind), kind_name(kind_of(v)));
        switch (jv->kind) {
        case TP__JV_STRING:
            TPF_CHECK(jv->len == json_string_length(v) &&
                          memcmp(jv->str, json_string_value(v), jv->len) == 0 &&
                          jv->str[jv->len] == '\0' && strlen(jv->str) == jv->len,
                      "%s: member %s: string \"%s\", jansson says \"%s\"", how, name, jv->str,
                      json_string_value(v));
            break;
        case TP__JV_INTEGER:
            TPF_CHECK(jv->num == json_integer_value(v), "%s: member %s: %lld, jansson says %lld",
                      how, name, (long long)jv->num, (long long)json_integer_value(v));
            break;
        case TP__JV_OBJECT:
        case TP__JV_ARRAY:
            TPF_CHECK(jv->json != NULL && json_equal(jv->json, v), "%s: member %s differs", how,
                      name);
            break;
        default: break;
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    tp__text t;
    int rc = tp__env_scan(&t, text, size);
    TPF_CHECK(rc == TP__ENV_OK || rc == TP__ENV_OTHER, "tp__env_scan returned %d", rc);
    json_error_t jerr;
    json_t *tree = json_loadb(text, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (rc == TP__ENV_OK) {
        TPF_CHECK(tree != NULL, "the scanner took a text jansson refuses: %s (column %d)",
                  jerr.text, jerr.column);
        if (t.batch) {
            TPF_CHECK(json_is_array(tree) && json_array_size(tree) == t.n,
                      "a batch of %zu messages, jansson says otherwise", t.n);
            for (size_t i = 0; i < t.n; i++) {
                TPF_CHECK(json_is_object(json_array_get(tree, i)),
                          "the scanner took a batch member that is not an object");
                same_members(&t.msgs[i], json_array_get(tree, i), "scanned");
            }
        } else {
            TPF_CHECK(t.n == 1 && json_is_object(tree),
                      "the scanner took a text that is not an object");
            same_members(&t.msgs[0], tree, "scanned");
        }
        tp__text_clear(&t);
    } else {
        TPF_CHECK(t.n == 0, "a declined scan left %zu messages", t.n);
        for (int i = 0; i < TP__M_COUNT; i++)
            TPF_CHECK(t.one.m[i].kind == TP__JV_ABSENT && t.one.owned[i] == NULL,
                      "a declined scan left member %s", tp__env_names[i]);
        if (json_is_object(tree)) {
            tp__env env;
            tp__env_from_json(&env, tree);
            same_members(&env, tree, "from_json");
        }
    }
    json_decref(tree);
    return 0;
}
