/*
 * The differential cases of tests/cases/pydantic/: pydantic's own verdicts
 * on instances of 47 models (generate.py), and the values that check.py
 * read back from this library and validated in pydantic. Replayed here
 * through the public API, as the daemon runs it, with no pydantic:
 *   - every "valid" instance is hosted (tp_session_host) and reads back as
 *     the committed "readback"; written as a merge patch over the first
 *     valid instance by a connection, it is acked and reads back as
 *     "patched" (or refused when that is null);
 *   - every "invalid" instance (pydantic refuses it) and "stricter" one
 *     (pydantic accepts it only by rewriting it) is refused, with the
 *     committed message naming the field;
 *   - every "absent" instance (a null that means absent) is acked and
 *     reads back as "readback".
 * tests/cases/pydantic/README.md says how the files are made.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "transports.h"

static json_t *
read_case(const char *dir)
{
    char path[1024];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/case.json", dir);
    json_t *c = json_load_file(path, 0, &jerr);
    cr_assert_not_null(c, "%s: %s", path, jerr.text);
    return c;
}

static json_t *
read_back(tp_session *s, const char *id)
{
    char *text = tp_session_get(s, id);
    cr_assert_not_null(text);
    json_t *v = json_loads(text, 0, NULL);
    cr_assert_not_null(v, "%s", text);
    free(text);
    return v;
}

static void
assert_same(const char *dir, const char *what, size_t i, const json_t *want, const json_t *got)
{
    if (json_equal(want, got))
        return;
    char *w = json_dumps(want, JSON_SORT_KEYS), *g = json_dumps(got, JSON_SORT_KEYS);
    cr_assert_fail("%s %s[%zu]: read back %s, want %s", dir, what, i, g, w);
}

/* Writes patch to the private model id through a connection: TP_OK when
 * acked, else the error frame's message in msg. */
static int
write_patch(tp_hub *hub, const char *id, const json_t *patch, char *msg, size_t cap)
{
    tp_error err;
    tp_conn *c = tp_conn_open(hub, "t", 0, &err);
    cr_assert_not_null(c, "%s", err.message);
    json_t *w = json_pack("{s:s, s:s, s:s, s:i, s:O}", "type", "write", "scope", "private", "id",
                          id, "ref", 1, "patch", patch);
    char *text = json_dumps(w, JSON_COMPACT);
    tp_conn_feed(c, text, strlen(text));
    free(text);
    json_decref(w);
    int rc = -1;
    const char *frame;
    size_t len;
    snprintf(msg, cap, "no answer");
    while ((frame = tp_conn_next_frame(c, &len)) != NULL) {
        json_t *f = json_loadb(frame, len, 0, NULL);
        json_t *list = json_is_array(f) ? json_incref(f) : json_pack("[O]", f);
        size_t k;
        json_t *m;
        json_array_foreach(list, k, m)
        {
            const char *type = json_string_value(json_object_get(m, "type"));
            if (json_integer_value(json_object_get(m, "ref")) != 1 || type == NULL)
                continue;
            if (strcmp(type, "ack") == 0) {
                rc = TP_OK;
            } else if (strcmp(type, "error") == 0) {
                snprintf(msg, cap, "%s", json_string_value(json_object_get(m, "message")));
                rc = -1;
            }
        }
        json_decref(list);
        json_decref(f);
    }
    tp_conn_close(c);
    return rc;
}

static size_t totals[5]; /* valid, invalid, stricter, absent, patched */

static void
run_case(const char *dir)
{
    json_t *c = read_case(dir);
    tp_error err;
    char *schema_text = json_dumps(json_object_get(c, "schema"), JSON_COMPACT);
    tp_schema *schema = tp_schema_new(schema_text, &err);
    free(schema_text);
    cr_assert_not_null(schema, "%s: the schema does not load: %s", dir, err.message);
    tp_hub *hub = tp_hub_new(NULL, &err);
    cr_assert_not_null(hub);
    tp_session *s = tp_hub_tenant(hub, "t");
    json_t *valid = json_object_get(c, "valid");
    cr_assert(json_array_size(valid) > 0, "%s: no valid instance", dir);
    char *base = json_dumps(json_object_get(json_array_get(valid, 0), "value"), JSON_COMPACT);

    size_t i;
    json_t *inst;
    json_array_foreach(valid, i, inst)
    {
        char *text = json_dumps(json_object_get(inst, "value"), JSON_COMPACT);
        const char *id = tp_session_host(s, schema, text, &err);
        cr_assert_not_null(id, "%s valid[%zu] %s: refused: %s", dir, i, text, err.message);
        char idbuf[32];
        snprintf(idbuf, sizeof idbuf, "%s", id);
        json_t *back = read_back(s, idbuf);
        assert_same(dir, "valid", i, json_object_get(inst, "readback"), back);
        json_decref(back);
        tp_session_delete(s, idbuf);

        /* The same instance as a merge patch over the first one. */
        id = tp_session_host(s, schema, base, &err);
        cr_assert_not_null(id, "%s: the base: %s", dir, err.message);
        snprintf(idbuf, sizeof idbuf, "%s", id);
        char msg[300];
        int rc = write_patch(hub, idbuf, json_object_get(inst, "value"), msg, sizeof msg);
        const json_t *want = json_object_get(inst, "patched");
        if (json_is_null(want)) {
            cr_assert_neq(rc, TP_OK, "%s valid[%zu] as a patch: acked, committed refused", dir, i);
        } else {
            cr_assert_eq(rc, TP_OK, "%s valid[%zu] %s as a patch: %s", dir, i, text, msg);
            back = read_back(s, idbuf);
            assert_same(dir, "patched", i, want, back);
            json_decref(back);
            totals[4]++;
        }
        tp_session_delete(s, idbuf);
        free(text);
        totals[0]++;
    }
    static const char *const refused[] = {"invalid", "stricter"};
    for (size_t k = 0; k < 2; k++) {
        json_array_foreach(json_object_get(c, refused[k]), i, inst)
        {
            char *text = json_dumps(json_object_get(inst, "value"), JSON_COMPACT);
            const char *id = tp_session_host(s, schema, text, &err);
            cr_assert_null(id, "%s %s[%zu] %s: acked (pydantic: %s)", dir, refused[k], i, text,
                           json_string_value(json_object_get(inst, "pydantic")));
            cr_assert(err.code == TP_EINVALID, "%s %s[%zu]: %d %s", dir, refused[k], i, err.code,
                      err.message);
            cr_assert_str_eq(err.message, json_string_value(json_object_get(inst, "server")),
                             "%s %s[%zu] %s", dir, refused[k], i, text);
            free(text);
            totals[1 + k]++;
        }
    }
    json_array_foreach(json_object_get(c, "absent"), i, inst)
    {
        char *text = json_dumps(json_object_get(inst, "value"), JSON_COMPACT);
        const char *id = tp_session_host(s, schema, text, &err);
        cr_assert_not_null(id, "%s absent[%zu] %s: %s", dir, i, text, err.message);
        char idbuf[32];
        snprintf(idbuf, sizeof idbuf, "%s", id);
        json_t *back = read_back(s, idbuf);
        assert_same(dir, "absent", i, json_object_get(inst, "readback"), back);
        json_decref(back);
        tp_session_delete(s, idbuf);
        free(text);
        totals[3]++;
    }
    free(base);
    tp_hub_free(hub);
    tp_schema_free(schema);
    json_decref(c);
}

Test(pydantic, differential_cases)
{
    char **dirs;
    size_t n = tpt_case_dirs("pydantic", &dirs), cases = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/case.json", dirs[i]);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            fclose(f);
            run_case(dirs[i]);
            cases++;
        }
        free(dirs[i]);
    }
    free(dirs);
    cr_assert_geq(cases, 40, "only %zu models", cases);
    cr_assert_geq(totals[0], 100, "only %zu valid instances", totals[0]);
    cr_assert_geq(totals[1], 100, "only %zu invalid instances", totals[1]);
    cr_assert_geq(totals[4], totals[0] * 9 / 10, "only %zu patches acked", totals[4]);
}
