/* core/wire.c: the messages' bytes, against what jansson writes for the
 * same message (the hub built some of them with jansson before). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/wire.h"
#include "util/alloc.h"

static void
assert_buf(tp__buf *b, const char *want)
{
    cr_assert_not_null(b);
    cr_assert_eq(b->len, strlen(want), "%s", b->data);
    cr_assert_str_eq(b->data, want);
    tp__buf_unref(b);
}

/* jansson's encoding of a value, as the reference. */
static char *
dumped(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    cr_assert_not_null(text);
    return text;
}

Test(wire, strings_are_encoded_as_jansson_does)
{
    unsigned seed = 7;
    for (int round = 0; round < 2000; round++) {
        char s[40];
        size_t n = (size_t)(round % 39);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            s[i] = (char)(1 + (seed >> 16) % 127); /* controls, quotes, backslashes, '/' */
        }
        s[n] = '\0';
        if (round % 5 == 0 && n >= 4)
            memcpy(s, "\xc3\xa9\xe2\x82", 4), s[4] = '\xac'; /* UTF-8 kept */
        char *want = dumped(json_string(s));
        tp__sb sb;
        tp__sb_init(&sb, 8);
        tp__wire_string(&sb, s, strlen(s));
        assert_buf(tp__sb_finish(&sb), want);
        free(want);
    }
}

Test(wire, error_matches_the_jansson_built_one)
{
    const char *msg = "id: no model \"a\\b\x01/\t\" in scope \"private\" \xc3\xa9";
    char *want = dumped(json_pack("{s:s,s:I,s:s,s:s}", "type", "error", "ref",
                                  (json_int_t)INT64_MIN, "code", "not_found", "message", msg));
    assert_buf(tp__wire_error(1, INT64_MIN, "not_found", msg), want);
    free(want);
    want =
        dumped(json_pack("{s:s,s:s,s:s}", "type", "error", "code", "bad_request", "message", ""));
    assert_buf(tp__wire_error(0, 5, "bad_request", ""), want);
    free(want);
}

Test(wire, removed_of_an_unknown_id_matches_the_jansson_built_one)
{
    const char *id = "x\"\\\n\x7f/\xf0\x9f\x98\x80";
    char *want = dumped(json_pack("{s:s,s:s,s:s}", "type", "removed", "scope", "shared", "id", id));
    assert_buf(tp__wire_removed_id(1, id, strlen(id)), want);
    free(want);
}

Test(wire, model_messages)
{
    size_t len;
    char *addr = tp__wire_addr(0, "d\"oc", &len);
    cr_assert_str_eq(addr, "\"scope\":\"private\",\"id\":\"d\\\"oc\"");
    cr_assert_eq(len, strlen(addr));
    tp__buf *room = tp__buf_new(TP__WIRE_ACK_ROOM(len));
    assert_buf(tp__wire_ack(room, INT64_MAX, addr, len, 9, 8),
               "{\"type\":\"ack\",\"ref\":9223372036854775807,\"scope\":\"private\",\"id\":"
               "\"d\\\"oc\",\"rev\":9,\"from\":8}");
    room = tp__buf_new(TP__WIRE_ACK_ROOM(len));
    assert_buf(tp__wire_ack(room, -1, addr, len, 9, -1),
               "{\"type\":\"ack\",\"ref\":-1,\"scope\":\"private\",\"id\":\"d\\\"oc\",\"rev\":9}");
    json_t *v = json_pack("{s:i,s:[s]}", "a", 1, "b", "x");
    assert_buf(tp__wire_snapshot(addr, len, "T\"itle", 3, TP_READ, v),
               "{\"type\":\"snapshot\",\"scope\":\"private\",\"id\":\"d\\\"oc\",\"schema\":"
               "\"T\\\"itle\",\"rev\":3,\"access\":\"read\",\"value\":{\"a\":1,\"b\":[\"x\"]}}");
    assert_buf(tp__wire_patch(addr, len, 3, v, "host"),
               "{\"type\":\"patch\",\"scope\":\"private\",\"id\":\"d\\\"oc\",\"from\":3,\"rev\":4,"
               "\"patch\":{\"a\":1,\"b\":[\"x\"]},\"origin\":\"host\"}");
    json_decref(v);
    assert_buf(tp__wire_removed(addr, len),
               "{\"type\":\"removed\",\"scope\":\"private\",\"id\":\"d\\\"oc\"}");
    assert_buf(
        tp__wire_access(addr, len, TP_WRITE),
        "{\"type\":\"access\",\"scope\":\"private\",\"id\":\"d\\\"oc\",\"access\":\"write\"}");
    tp__free(addr);
}

Test(wire, connection_messages)
{
    assert_buf(tp__wire_hello("\"t\\\"0\"", "c0123456789abcdef", 50, 1048576),
               "{\"type\":\"hello\",\"protocol\":1,\"tenant\":\"t\\\"0\",\"conn\":"
               "\"c0123456789abcdef\",\"tick_ms\":50,\"max_message_bytes\":1048576}");
    assert_buf(tp__wire_synced(), "{\"type\":\"synced\"}");
    assert_buf(tp__wire_pong(INT64_MIN), "{\"type\":\"pong\",\"ref\":-9223372036854775808}");
    assert_buf(tp__wire_auth_ack(1, 0), "{\"type\":\"ack\",\"ref\":0}");
    assert_buf(tp__wire_auth_ack(0, 7), "{\"type\":\"ack\"}");
}

/* A random value: objects (members set, replaced and deleted, keys with
 * escapes, a NUL), arrays, strings, integers to the extremes, reals. */
static json_t *
random_value(unsigned *seed, int depth)
{
    *seed = *seed * 1103515245u + 12345u;
    unsigned r = (*seed >> 16) % (depth > 4 ? 6 : 8);
    static const double reals[] = {
        0.0, -0.0, 1.0, 0.1, -2.5, 1e300, 1e-7, 5e-324, 123456789012345678.0, 1.0 / 3, 1e21, -1e22};
    static const json_int_t ints[] = {0, -1, 7, INT64_MAX, INT64_MIN, 1000000000000000000LL};
    static const char *strs[] = {"", "a", "\"q\\/\x01\x1f\n\t", "\xc3\xa9\xe2\x82\xac", "x y"};
    switch (r) {
    case 0: return json_integer(ints[(*seed >> 8) % 6] ^ (json_int_t)(*seed % 4)); /* no overflow */
    case 1: return json_real(reals[(*seed >> 8) % 12]);
    case 2: return json_string(strs[(*seed >> 8) % 5]);
    case 3: return json_stringn("n\0ul", 4);
    case 4:
        return (*seed >> 8) % 3 == 0   ? json_true()
               : (*seed >> 8) % 3 == 1 ? json_false()
                                       : json_null();
    case 5: return json_object();
    case 6: {
        json_t *a = json_array();
        unsigned n = (*seed >> 8) % 5;
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(a, random_value(seed, depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        unsigned n = (*seed >> 8) % 6;
        for (unsigned i = 0; i < n; i++) {
            char key[16];
            snprintf(key, sizeof key, "%c\"k%u", "ab\t/"[i % 4], (*seed >> 4) % 4);
            json_object_set_new(o, key, random_value(seed, depth + 1));
        }
        json_object_setn_new(o, "z\0z", 3, json_integer(depth));
        if (n > 1)
            json_object_del(o, "a\"k0"); /* jansson's order after a deletion */
        return o;
    }
    }
}

Test(wire, values_are_encoded_byte_for_byte_as_jansson_does)
{
    unsigned seed = 11;
    for (int round = 0; round < 3000; round++) {
        json_t *v = random_value(&seed, 0);
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        cr_assert_not_null(want);
        tp__sb sb;
        tp__sb_init(&sb, 4);
        tp__wire_value(&sb, v);
        tp__buf *b = tp__sb_finish(&sb);
        cr_assert_not_null(b);
        /* want is NUL-terminated text; a NUL inside is escaped (\u0000). */
        cr_assert_eq(b->len, strlen(want), "round %d: %s against %s", round, b->data, want);
        cr_assert_str_eq(b->data, want, "round %d", round);
        tp__buf_unref(b);
        free(want);
        json_decref(v);
    }
}
