/*
 * fuzz_schema: loading JSON Schemas and validating values (src/core/schema.c,
 * schema_check.c, schema_pattern.c, schema_format.c), and the hub's use of
 * them (defaults, nulls, member-wise validation of writes).
 *
 * Input: a JSON Schema text, then values, each part after a line "%%"
 * (TPF_SEP). Checked:
 *   - tp_schema_new never crashes; it loads or fails with TP_ESCHEMA and a
 *     message (valid UTF-8, never empty);
 *   - tp_schema_validate answers TP_OK, TP_EINVALID or TP_EBADREQUEST
 *     (exactly when jansson cannot parse the text), with a message;
 *   - every validation ends within a second, whatever the patterns (they
 *     run under a time budget of 15 ms, twice, and PCRE2's limits);
 *   - a null object member reads as absent, but for a required member whose
 *     schema takes null (pydantic's required Optional[X]), whose null is a
 *     value: a value and the value without its other null members
 *     (tp__schema_strip_nulls) get the same verdict and the same message;
 *   - the first object value that validates is hosted (tp_session_host):
 *     hosting may refuse it only as invalid (a default that does not
 *     validate); hosted, tp_session_get returns a value that validates, has
 *     no null member but those values and holds the value (defaults only
 *     add members), and
 *     hosting that again changes nothing;
 *   - every later object value is written over the hosted one through a
 *     connection (a merge patch from the current value to it): the write is
 *     acked exactly when the whole new value validates (the hub validates
 *     only the members a write changes), with the same message when one
 *     member changes, and the model then holds exactly that value.
 * A verdict reached because a pattern check ran out of time ("took too
 * long") may differ between two validations, and is not compared.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/schema.h"
#include "fuzz_common.h"
#include "transports.h"

static void
check_message(const tp_error *err, const char *what)
{
    size_t n = strnlen(err->message, sizeof err->message);
    TPF_CHECK(n > 0 && n < sizeof err->message, "%s: no message, or not terminated", what);
    TPF_CHECK(tpf_valid_utf8(err->message, n), "%s: the message is not UTF-8: %s", what,
              err->message);
}

/* a holds b with members added to objects, at any depth. */
static int
is_sub(const json_t *a, const json_t *b)
{
    if (json_is_object(a)) {
        if (!json_is_object(b))
            return 0;
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)a, key, m)
        {
            if (!is_sub(m, json_object_get(b, key)))
                return 0;
        }
        return 1;
    }
    if (json_is_array(a)) {
        if (!json_is_array(b) || json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!is_sub(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    return b != NULL && json_equal(a, b);
}

static json_t *
get_value(tp_session *s, const char *id)
{
    char *text = tp_session_get(s, id);
    TPF_CHECK(text != NULL, "tp_session_get(%s) returned NULL", id);
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    TPF_CHECK(json_is_object(v), "tp_session_get(%s) is not an object: %s", id, text);
    free(text);
    return v;
}

typedef struct state {
    tp_hub *hub;
    tp_session *session;
    tp_schema *schema;
    const char *id; /* the hosted model, once there is one */
    json_t *current;
    tp_conn *conn;
    json_int_t ref;
} state;

/* Hosts the first valid object value. */
static void
try_host(state *st, const char *text, const json_t *stripped)
{
    tp_error err;
    const char *id = tp_session_host(st->session, st->schema, text, &err);
    if (id == NULL) {
        /* Defaults are not validated at load: filling one may break it. */
        TPF_CHECK(err.code == TP_EINVALID, "hosting a valid value: code %d (%s)", err.code,
                  err.message);
        check_message(&err, "tp_session_host");
        return;
    }
    json_t *got = get_value(st->session, id);
    char *gtext = tpf_dump(got);
    if (tp_schema_validate(st->schema, gtext, &err) != TP_OK)
        tpf_fail("a hosted value does not validate: %s: %s", err.message, gtext);
    json_t *restripped = tp__schema_strip_nulls(st->schema, NULL, got);
    TPF_CHECK(json_equal(restripped, got), "a hosted value has a null member: %s", gtext);
    json_decref(restripped);
    if (!is_sub(stripped, got)) {
        char *x = tpf_dump(stripped);
        tpf_fail("hosting lost or changed a member: %s became %s", x, gtext);
    }
    /* Filling defaults again changes nothing. */
    const char *again = tp_session_host(st->session, st->schema, gtext, &err);
    TPF_CHECK(again != NULL, "hosting a hosted value again fails: %s", err.message);
    json_t *got2 = get_value(st->session, again);
    if (!json_equal(got, got2)) {
        char *x = tpf_dump(got2);
        tpf_fail("filling defaults twice: %s, then %s", gtext, x);
    }
    json_decref(got2);
    free(gtext);

    st->id = id;
    st->current = got;
    st->conn = tp_conn_open(st->hub, "t", 0, &err);
    TPF_CHECK(st->conn != NULL, "tp_conn_open: %s", err.message);
    size_t len;
    while (tp_conn_next_frame(st->conn, &len) != NULL)
        continue;
}

/* The value a merge patch makes of the current one, member by member as
 * the hub does (tp__schema_merge, tp__schema_keeps_null). */
static json_t *
expected_value(const state *st, const json_t *patch)
{
    json_t *out = json_deep_copy(st->current);
    const char *key;
    json_t *pv;
    TPF_CHECK(out != NULL, "out of memory");
    json_object_foreach((json_t *)patch, key, pv)
    {
        if (json_is_null(pv)) {
            if (tp__schema_keeps_null(st->schema, key))
                json_object_set(out, key, json_null());
            else
                json_object_del(out, key);
            continue;
        }
        json_t *nv = tp__schema_merge(st->schema, key, json_object_get(st->current, key), pv);
        TPF_CHECK(nv != NULL && json_object_set_new(out, key, nv) == 0, "out of memory");
    }
    return out;
}

/* Writes `target` over the hosted value; the verdict must be the whole
 * value's (rc, message). */
static void
try_write(state *st, const json_t *target, int rc, const char *message)
{
    /* The patch turning the current value into target; the members it names
     * are those the write changes. */
    json_t *patch = tpf_diff(st->current, target);
    size_t changed = json_object_size(patch);
    /* A patch's null sets a required Optional[X] to null (it may not be
     * absent): the value the write makes then holds that null where target
     * has no member. It is the value the verdict is about. */
    json_t *made = expected_value(st, patch);
    char *mtext = tpf_dump(made);
    tp_error merr;
    if (!json_equal(made, target)) {
        rc = tp_schema_validate(st->schema, mtext, &merr);
        message = rc == TP_OK ? "" : merr.message;
        if (rc != TP_OK && strstr(message, "took too long") != NULL) {
            free(mtext);
            json_decref(made);
            json_decref(patch);
            return;
        }
    }
    free(mtext);
    target = made;
    json_t *msg = json_pack("{s:s,s:s,s:s,s:I,s:o}", "type", "write", "scope", "private", "id",
                            st->id, "ref", ++st->ref, "patch", patch);
    TPF_CHECK(msg != NULL, "out of memory");
    char *text = tpf_dump(msg);
    json_decref(msg);
    TPF_CHECK(tp_conn_feed(st->conn, text, strlen(text)) == TP_OK, "tp_conn_feed failed");
    free(text);
    json_t *answer = NULL;
    const char *frame;
    size_t len;
    while ((frame = tp_conn_next_frame(st->conn, &len)) != NULL) {
        json_t *v = json_loadb(frame, len, 0, NULL);
        TPF_CHECK(json_is_object(v), "an answer that is not one message: %.*s", (int)len, frame);
        TPF_CHECK(answer == NULL, "two answers to one write");
        answer = v;
    }
    TPF_CHECK(answer != NULL, "no answer to a write");
    const char *type = json_string_value(json_object_get(answer, "type"));
    const char *code = json_string_value(json_object_get(answer, "code"));
    const char *got = json_string_value(json_object_get(answer, "message"));
    char *tt = tpf_dump(target);
    /* A verdict cut by the pattern budget depends on the machine's load:
     * the two validations need not agree then. */
    bool timing = strstr(message, "took too long") != NULL ||
                  (got != NULL && strstr(got, "took too long") != NULL);
    if (type != NULL && strcmp(type, "ack") == 0) {
        if (rc != TP_OK && !timing)
            tpf_fail("a write was acked, but the value it makes is invalid (%s): %s", message, tt);
        json_t *now = get_value(st->session, st->id);
        if (!json_equal(now, target)) {
            char *x = tpf_dump(now);
            tpf_fail("after an acked write the model holds %s, not %s", x, tt);
        }
        json_decref(st->current);
        st->current = now;
    } else {
        TPF_CHECK(type != NULL && strcmp(type, "error") == 0 && code != NULL && got != NULL,
                  "a write answered with neither ack nor error");
        if (rc == TP_OK && !timing)
            tpf_fail("a write was refused (%s: %s), but the value it makes is valid: %s", code, got,
                     tt);
        TPF_CHECK(strcmp(code, "invalid") == 0, "a write refused with %s: %s", code, got);
        /* One member changed: the member's check speaks as the whole's. */
        if (changed == 1 && !timing && strcmp(got, message) != 0)
            tpf_fail("one member changed: the write says \"%s\", the whole value \"%s\": %s", got,
                     message, tt);
    }
    free(tt);
    json_decref(answer);
    json_decref(made);
}

static void
check_value(state *st, const uint8_t *data, size_t n)
{
    char *text = tpf_strndup(data, n);
    tp_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = tp_schema_validate(st->schema, text, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    TPF_CHECK(secs < 1.0, "a validation took %.2f s", secs);
    bool timed_out = rc == TP_EINVALID && strstr(err.message, "took too long") != NULL;
    TPF_CHECK(rc == TP_OK || rc == TP_EINVALID || rc == TP_EBADREQUEST,
              "tp_schema_validate: code %d", rc);
    if (rc != TP_OK)
        check_message(&err, "tp_schema_validate");
    json_t *loose = json_loads(text, JSON_DECODE_ANY, NULL);
    TPF_CHECK((loose == NULL) == (rc == TP_EBADREQUEST), "tp_schema_validate: %d on %s JSON", rc,
              loose ? "valid" : "invalid");
    json_decref(loose);
    /* The hub parses strictly (no duplicate keys). */
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (v == NULL) {
        free(text);
        return;
    }
    json_t *stripped = tp__schema_strip_nulls(st->schema, NULL, v);
    TPF_CHECK(stripped != NULL, "out of memory");
    char *stext = tpf_dump(stripped);
    tp_error err2;
    int rc2 = tp_schema_validate(st->schema, stext, &err2);
    timed_out = timed_out || (rc2 == TP_EINVALID && strstr(err2.message, "took too long") != NULL);
    if (!timed_out && (rc2 != rc || (rc != TP_OK && strcmp(err.message, err2.message) != 0)))
        tpf_fail("null members change the verdict: %d (%s) for %s, %d (%s) without them", rc,
                 rc ? err.message : "ok", text, rc2, rc2 ? err2.message : "ok");
    if (json_is_object(stripped) && !timed_out) {
        if (st->id == NULL && rc == TP_OK)
            try_host(st, text, stripped);
        else if (st->id != NULL)
            try_write(st, stripped, rc, rc == TP_OK ? "" : err.message);
    }
    free(stext);
    json_decref(stripped);
    json_decref(v);
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t n = tpf_split(data, size, &rest);
    char *text = tpf_strndup(data, n);
    tp_error err;
    tp_schema *schema = tp_schema_new(text, &err);
    free(text);
    if (schema == NULL) {
        TPF_CHECK(err.code == TP_ESCHEMA, "tp_schema_new: code %d (%s)", err.code, err.message);
        check_message(&err, "tp_schema_new");
        return 0;
    }
    const char *title = tp_schema_title(schema);
    TPF_CHECK(title != NULL && tpf_valid_utf8(title, strlen(title)), "tp_schema_title");

    state st;
    memset(&st, 0, sizeof st);
    tp_hub_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.limits.max_message_bytes = 64 * 1024 * 1024; /* no size limit gets in the way */
    cfg.limits.max_outbox_bytes = 256 * 1024 * 1024;
    cfg.limits.writes_per_second = 1000000000;
    st.hub = tp_hub_new(&cfg, &err);
    TPF_CHECK(st.hub != NULL, "tp_hub_new: %s", err.message);
    st.session = tp_hub_tenant(st.hub, "t");
    st.schema = schema;
    while (rest != NULL) {
        const uint8_t *part = rest;
        size_t left = size - (size_t)(part - data);
        n = tpf_split(part, left, &rest);
        check_value(&st, part, n);
    }
    json_decref(st.current);
    tp_conn_close(st.conn);
    tp_hub_free(st.hub);
    tp_schema_free(schema);
    return 0;
}
