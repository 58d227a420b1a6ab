/*
 * The envelope scanner (core/envelope.h): what it takes and what it leaves
 * to jansson, and, through tp_conn_feed, that a refused text still gets
 * jansson's own message.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/envelope.h"
#include "support.h"
#include "transports.h"

#define M(t, name) (&(t)->msgs[0].m[TP__M_##name])

static int
scan(tp__text *env, const char *text)
{
    return tp__env_scan(env, text, strlen(text));
}

static void
assert_declined(const char *text)
{
    tp__text env;
    cr_assert_eq(tp__env_scan(&env, text, strlen(text)), TP__ENV_OTHER, "taken: %s", text);
    cr_assert_eq(env.n, 0, "%s", text);
    for (int i = 0; i < TP__M_COUNT; i++)
        cr_assert_eq(env.one.m[i].kind, TP__JV_ABSENT, "%s: member %s left", text,
                     tp__env_names[i]);
}

Test(envelope, a_write_is_read_without_a_tree)
{
    tp__text env;
    cr_assert_eq(scan(&env, "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"doc\",\"ref\":7,"
                            "\"patch\":{\"a\":1700000000000000000}}"),
                 TP__ENV_OK);
    cr_assert_str_eq(M(&env, type)->str, "write");
    cr_assert_eq(M(&env, type)->len, 5);
    cr_assert_str_eq(M(&env, scope)->str, "private");
    cr_assert_str_eq(M(&env, id)->str, "doc");
    cr_assert_eq(M(&env, ref)->kind, TP__JV_INTEGER);
    cr_assert_eq(M(&env, ref)->num, 7);
    cr_assert_eq(M(&env, patch)->kind, TP__JV_OBJECT);
    cr_assert_eq(json_integer_value(json_object_get(M(&env, patch)->json, "a")),
                 1700000000000000000);
    cr_assert_eq(M(&env, ts)->kind, TP__JV_ABSENT);
    cr_assert_eq(M(&env, client)->kind, TP__JV_ABSENT);
    tp__text_clear(&env);
}

Test(envelope, whitespace_literals_and_the_integer_range)
{
    tp__text env;
    cr_assert_eq(scan(&env, " \t\r\n{ \"ref\" : -9223372036854775808 ,\"id\":true,"
                            "\"scope\":false,\"client\":null,\"token\":-0 } \n"),
                 TP__ENV_OK);
    cr_assert_eq(M(&env, ref)->num, INT64_MIN);
    cr_assert_eq(M(&env, id)->kind, TP__JV_TRUE);
    cr_assert_eq(M(&env, scope)->kind, TP__JV_FALSE);
    cr_assert_eq(M(&env, client)->kind, TP__JV_NULL);
    cr_assert_eq(M(&env, token)->kind, TP__JV_INTEGER);
    cr_assert_eq(M(&env, token)->num, 0);
    tp__text_clear(&env);
    cr_assert_eq(scan(&env, "{\"ref\":9223372036854775807}"), TP__ENV_OK);
    cr_assert_eq(M(&env, ref)->num, INT64_MAX);
    tp__text_clear(&env);
    cr_assert_eq(scan(&env, "{}"), TP__ENV_OK);
    tp__text_clear(&env);
}

Test(envelope, utf8_is_kept_byte_for_byte)
{
    tp__text env;
    const char *text = "{\"client\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}";
    cr_assert_eq(scan(&env, text), TP__ENV_OK);
    cr_assert_str_eq(M(&env, client)->str, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
    cr_assert_eq(M(&env, client)->len, 13);
    tp__text_clear(&env);
}

Test(envelope, a_long_message_takes_one_allocation_for_its_strings)
{
    char text[1200];
    char tok[1000];
    memset(tok, 'a', sizeof tok - 1);
    tok[sizeof tok - 1] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"auth\",\"token\":\"%s\",\"ref\":3}", tok);
    tp__text env;
    cr_assert_eq(scan(&env, text), TP__ENV_OK);
    cr_assert_eq(M(&env, token)->len, sizeof tok - 1);
    cr_assert_str_eq(M(&env, token)->str, tok);
    cr_assert_str_eq(M(&env, type)->str, "auth");
    tp__text_clear(&env);
}

Test(envelope, what_jansson_refuses_is_left_to_it)
{
    assert_declined("");
    assert_declined("{");
    assert_declined("{\"type\":\"ping\"");
    assert_declined("{\"type\":\"ping\",}");
    assert_declined("{\"type\":\"ping\" \"ref\":1}");
    assert_declined("{\"type\":\"ping\"} x"); /* trailing garbage */
    assert_declined("{\"type\":\"ping\"}}");  /* trailing garbage */
    tp__text env;
    cr_assert_eq(tp__env_scan(&env, "{\"type\":\"ping\"}\0", 16), TP__ENV_OTHER); /* a NUL */
    cr_assert_eq(tp__env_scan(&env, "{\"type\":\"pi\0g\"}", 15), TP__ENV_OTHER);
    assert_declined("{\"type\":\"a\",\"type\":\"b\"}"); /* duplicate member */
    assert_declined("{\"patch\":{\"a\":1,\"a\":2}}");   /* duplicate inside a value */
    assert_declined("{\"ref\":9223372036854775808}");   /* too big */
    assert_declined("{\"ref\":-9223372036854775809}");  /* too big negative */
    assert_declined("{\"ref\":01}");
    assert_declined("{\"ref\":-}");
    assert_declined("{\"ref\":1.}");
    assert_declined("{\"ref\":tru}");
    assert_declined("{\"ref\":truex}");
    assert_declined("{\"patch\":{\"x\":1e400}}");                 /* real out of range */
    assert_declined("{\"patch\":{\"x\":123456789012345678901}}"); /* integer out of range */
    assert_declined("{\"client\":\"\xc0\xaf\"}");                 /* overlong */
    assert_declined("{\"client\":\"\xe0\x80\xaf\"}");             /* overlong */
    assert_declined("{\"client\":\"\xed\xa0\x80\"}");             /* a surrogate */
    assert_declined("{\"client\":\"\xf4\x90\x80\x80\"}");         /* above U+10FFFF */
    assert_declined("{\"client\":\"\xc3\"}");                     /* cut short */
    assert_declined("{\"client\":\"\xff\"}");
    assert_declined("{\"client\":\"a\x01\"}"); /* a control character */
    assert_declined("{\"client\":\"a\\u0000\"}");
    assert_declined("{\"client\":\"\\ud800\"}");
    assert_declined("{\"client\":\"\\x\"}");
    assert_declined("{\"patch\":{\"s\":\"\xff\"}}");
    assert_declined("{\"patch\":{\"s\":\"\\u0000\"}}");
    assert_declined("{\"patch\":{\"s\":\"\\\"}]\"}"); /* an escaped quote, then unterminated */
}

Test(envelope, what_jansson_takes_but_the_scanner_does_not_is_left_to_it)
{
    assert_declined("5");
    assert_declined("\"write\"");
    assert_declined("{\"type\":\"ping\",\"other\":1}"); /* a member the hub does not read */
    assert_declined("{\"typ\\u0065\":\"ping\"}");       /* escapes */
    assert_declined("{\"type\":\"pi\\u006eg\"}");
    assert_declined("{\"ref\":1.0}"); /* reals */
    assert_declined("{\"ref\":1e3}");
    /* Deeper than the scanner goes: jansson judges the depth (2048). */
    char deep[1300];
    size_t n = (size_t)snprintf(deep, sizeof deep, "{\"patch\":");
    for (int i = 0; i < 600; i++)
        deep[n++] = '[';
    for (int i = 0; i < 600; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_declined(deep);
}

Test(envelope, a_batch_is_read_message_by_message)
{
    tp__text t;
    cr_assert_eq(scan(&t, " [ {\"type\":\"ping\",\"ref\":1} , {\"type\":\"write\",\"ref\":2,"
                          "\"patch\":{\"a\":[1]}},{}] "),
                 TP__ENV_OK);
    cr_assert_eq(t.batch, 1);
    cr_assert_eq(t.n, 3);
    cr_assert_str_eq(t.msgs[0].m[TP__M_type].str, "ping");
    cr_assert_eq(t.msgs[0].m[TP__M_ref].num, 1);
    cr_assert_str_eq(t.msgs[1].m[TP__M_type].str, "write");
    cr_assert_eq(t.msgs[1].m[TP__M_patch].kind, TP__JV_OBJECT);
    cr_assert_eq(t.msgs[2].m[TP__M_type].kind, TP__JV_ABSENT);
    tp__text_clear(&t);
    cr_assert_eq(scan(&t, "[]"), TP__ENV_OK);
    cr_assert_eq(t.batch, 1);
    cr_assert_eq(t.n, 0);
    tp__text_clear(&t);
    /* More messages than the first allocation holds: the array grows. */
    char big[4096];
    size_t n = 0;
    big[n++] = '[';
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s{\"ref\":%d,\"id\":\"m%d\"}",
                              i ? "," : "", i, i);
    big[n++] = ']';
    big[n] = '\0';
    cr_assert_eq(scan(&t, big), TP__ENV_OK);
    cr_assert_eq(t.n, 100);
    for (int i = 0; i < 100; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        cr_assert_eq(t.msgs[i].m[TP__M_ref].num, i);
        cr_assert_str_eq(t.msgs[i].m[TP__M_id].str, id);
    }
    tp__text_clear(&t);
    /* What the hub refuses by index, and what jansson refuses, are jansson's. */
    assert_declined("[1]");
    assert_declined("[{},5]");
    assert_declined("[{},[]]");
    assert_declined("[{}");
    assert_declined("[{},]");
    assert_declined("[{}] x");
    assert_declined("[{\"ref\":1,\"ref\":1}]");
    assert_declined("[{\"ref\":1},{\"patch\":{\"a\":1e999}}]");
}

Test(envelope, nested_values_end_where_jansson_says)
{
    tp__text env;
    cr_assert_eq(scan(&env, "{\"patch\":{\"s\":\"}]\\\"{\",\"t\":[\"]\"]},\"id\":\"x\"}"),
                 TP__ENV_OK);
    cr_assert_str_eq(json_string_value(json_object_get(M(&env, patch)->json, "s")), "}]\"{");
    cr_assert_str_eq(M(&env, id)->str, "x");
    tp__text_clear(&env);
    cr_assert_eq(scan(&env, "{\"models\":[{\"scope\":\"private\",\"id\":\"d\",\"rev\":2}]}"),
                 TP__ENV_OK);
    cr_assert_eq(M(&env, models)->kind, TP__JV_ARRAY);
    cr_assert_eq(json_array_size(M(&env, models)->json), 1);
    tp__text_clear(&env);
}

/* ---- Through a connection: refusals keep jansson's message ---- */

static int64_t now = 1700000000000;

static void
assert_not_json(tp_conn *c, const char *text)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    cr_assert_null(v, "%s", text);
    char want[300];
    snprintf(want, sizeof want, "message: not JSON: %s (column %d)", jerr.text, jerr.column);
    tpt_feed(c, text);
    json_t *msgs = tpt_drain(c);
    cr_assert_eq(json_array_size(msgs), 1, "%s", text);
    json_t *e = json_array_get(msgs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "type")), "error");
    cr_assert_null(json_object_get(e, "ref"));
    cr_assert_str_eq(json_string_value(json_object_get(e, "message")), want, "%s", text);
    json_decref(msgs);
}

Test(envelope, refusals_through_a_connection_are_janssons)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub);
    tp_conn *c = tp_conn_open(hub, "alice", 0, &err);
    cr_assert_not_null(c);
    json_decref(tpt_drain(c));
    assert_not_json(c, "{\"type\":\"ping\",\"ref\":1,\"ref\":2}");
    assert_not_json(c, "{\"type\":\"ping\",\"ref\":1} x");
    assert_not_json(c, "{\"type\":\"ping\",\"ref\":99999999999999999999}");
    assert_not_json(c, "{\"type\":\"ping\",\"client\":\"\xed\xa0\x80\"}");
    assert_not_json(c, "{\"type\":\"ping\",\"client\":\"\\uDC00\"}");
    assert_not_json(c, "{\"type\":\"write\",\"ref\":1,\"patch\":{\"a\":1,\"a\":1}}");
    /* And what the scanner takes is answered as before. */
    tpt_feed(c, "{\"type\":\"ping\",\"ref\":-9223372036854775808}");
    json_t *msgs = tpt_drain(c);
    cr_assert_eq(json_array_size(msgs), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "type")), "pong");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(msgs, 0), "ref")), INT64_MIN);
    json_decref(msgs);
    tpt_feed(c, "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"nope\",\"ref\":4,"
                "\"patch\":{}}");
    msgs = tpt_drain(c);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "message")),
                     "id: no model \"nope\" in scope \"private\"");
    json_decref(msgs);
    tp_conn_close(c);
    tp_hub_free(hub);
}
