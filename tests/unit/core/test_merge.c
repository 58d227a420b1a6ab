/*
 * Merge strategies: last write wins, the lww-map CRDT (convergence whatever
 * the arrival order, tombstones, clock skew), and custom strategies.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "transports.h"

#define MAP                                                                                        \
    "{\"title\":\"Map\",\"type\":\"object\",\"properties\":{"                                      \
    "\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"},\"c\":{\"type\":\"integer\"},"      \
    "\"d\":{\"type\":\"object\"}}}"

static int64_t now = 1700000000000;

static tp_hub *
new_hub(void)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    return tp_hub_new(&cfg, NULL);
}

static const char *
str(const json_t *msg, const char *key)
{
    const char *s = json_string_value(json_object_get(msg, key));
    return s ? s : "";
}

/* One write of the property test: its patch and ts, from one of 3 tenants. */
typedef struct pw {
    int tenant;
    char text[256];
} pw;

/* Applies the writes in the given order to a fresh hub; returns the value. */
static char *
run_order(tp_schema *schema, const pw *writes, const int *order, int n)
{
    tp_hub *hub = new_hub();
    cr_assert_not_null(tp_hub_share_as(hub, "m", schema, "{\"a\":0}", &tp_lww_map_crdt, NULL));
    const char *tenants[3] = {"t0", "t1", "t2"};
    tp_conn *conns[3];
    for (int t = 0; t < 3; t++) {
        tp_hub_subscribe(hub, tenants[t], "m", TP_WRITE);
        conns[t] = tp_conn_open(hub, tenants[t], 0, NULL);
    }
    tpt_drain_all(hub);
    for (int i = 0; i < n; i++) {
        const pw *w = &writes[order[i]];
        cr_assert_eq(tpt_feed(conns[w->tenant], w->text), TP_OK);
        json_t *m = tpt_drain(conns[w->tenant]);
        cr_assert_not_null(tpt_find(m, "ack"), "write %s was not acked", w->text);
        json_decref(m);
        tpt_drain_all(hub);
    }
    char *v = tp_hub_get_shared(hub, "m");
    for (int t = 0; t < 3; t++)
        tp_conn_close(conns[t]);
    tp_hub_free(hub);
    return v;
}

static void
shuffle(int *order, int n, unsigned *seed)
{
    for (int i = n - 1; i > 0; i--) {
        *seed = *seed * 1103515245u + 12345u;
        int j = (int)((*seed >> 8) % (unsigned)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* Property: every permutation of a set of concurrent lww-map writes ends in
 * the same value (random sets of writes, random orders). */
Test(merge, lww_map_converges_whatever_the_order)
{
    tp_schema *schema = tp_schema_new(MAP, NULL);
    cr_assert_not_null(schema);
    unsigned seed = getenv("TP_SEED") ? (unsigned)strtoul(getenv("TP_SEED"), NULL, 10) : 20261126u;
    cr_log_info("seed %u", seed);
    const char *fields[4] = {"a", "b", "c", "d"};
    for (int round = 0; round < 60; round++) {
        pw writes[8];
        int n = 2 + round % 7;
        int counts[3] = {0, 0, 0};
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            writes[i].tenant = (int)((seed >> 4) % 3);
            /* Few distinct walls, so that writes of different tenants tie on
             * (wall, count) and the tenant breaks the tie; one client's clock
             * never gives the same reading twice. */
            int wall = (int)((seed >> 8) % 3), count = counts[writes[i].tenant]++;
            char patch[128] = "";
            size_t off = 0;
            for (int f = 0; f < 4; f++) {
                seed = seed * 1103515245u + 12345u;
                unsigned r = (seed >> 16) % 5;
                if (r >= 3)
                    continue;
                const char *val = r == 0 ? "null" : f == 3 ? "{\"x\":1}" : r == 1 ? "1" : "2";
                if (f != 3 && r == 2) {
                    char num[16];
                    snprintf(num, sizeof num, "%u", (seed >> 20) % 100);
                    off += (size_t)snprintf(patch + off, sizeof patch - off, "%s\"%s\":%s",
                                            off ? "," : "", fields[f], num);
                } else {
                    off += (size_t)snprintf(patch + off, sizeof patch - off, "%s\"%s\":%s",
                                            off ? "," : "", fields[f], val);
                }
            }
            snprintf(writes[i].text, sizeof writes[i].text,
                     "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":%d,"
                     "\"patch\":{%s},\"ts\":{\"wall\":%lld,\"count\":%d}}",
                     i + 1, patch, (long long)(now - 1000 + wall), count);
        }
        int order[8];
        for (int i = 0; i < n; i++)
            order[i] = i;
        char *first = run_order(schema, writes, order, n);
        for (int p = 0; p < 6; p++) {
            shuffle(order, n, &seed);
            char *v = run_order(schema, writes, order, n);
            cr_assert(tpt_json_text_eq(first, v), "round %d: %s != %s", round, first, v);
            free(v);
        }
        free(first);
    }
    tp_schema_free(schema);
}

Test(merge, lww_map_tombstones_and_whole_field_replacement)
{
    tp_schema *schema = tp_schema_new(MAP, NULL);
    tp_hub *hub = new_hub();
    tp_hub_share_as(hub, "m", schema, "{\"a\":1,\"d\":{\"x\":1,\"y\":2}}", &tp_lww_map_crdt, NULL);
    tp_hub_subscribe(hub, "t", "m", TP_WRITE);
    tp_conn *c = tp_conn_open(hub, "t", 0, NULL);
    json_decref(tpt_drain(c));
    /* A winning field replaces the old value whole: no nested merge. */
    tpt_feed(c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":1,"
                "\"patch\":{\"d\":{\"z\":3}},\"ts\":{\"wall\":1700000000100,\"count\":0}}");
    char *v = tp_hub_get_shared(hub, "m");
    cr_assert(tpt_json_text_eq(v, "{\"a\":1,\"d\":{\"z\":3}}"), "%s", v);
    free(v);
    json_t *m = tpt_drain(c);
    json_t *p = tpt_find(m, "patch");
    /* The published patch turns the old value into the new one. */
    json_t *old = json_loads("{\"a\":1,\"d\":{\"x\":1,\"y\":2}}", 0, NULL);
    json_t *applied = tp_merge_patch_apply(old, json_object_get(p, "patch"));
    json_t *want = json_loads("{\"a\":1,\"d\":{\"z\":3}}", 0, NULL);
    cr_assert(json_equal(applied, want));
    json_decref(old);
    json_decref(applied);
    json_decref(want);
    json_decref(m);
    /* Delete a at wall 200; an older write setting a (wall 150) arrives
     * late and loses to the tombstone. */
    tpt_feed(c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":2,"
                "\"patch\":{\"a\":null},\"ts\":{\"wall\":1700000000200,\"count\":0}}");
    tpt_feed(c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":3,"
                "\"patch\":{\"a\":7},\"ts\":{\"wall\":1700000000150,\"count\":0}}");
    m = tpt_drain(c);
    cr_assert_eq(tpt_count(m, "patch"), 1, "the late write publishes nothing");
    json_t *ack3 = json_array_get(m, 2);
    cr_assert_str_eq(str(ack3, "type"), "ack");
    cr_assert_eq(json_integer_value(json_object_get(ack3, "rev")), 3);
    json_decref(m);
    v = tp_hub_get_shared(hub, "m");
    cr_assert(tpt_json_text_eq(v, "{\"d\":{\"z\":3}}"), "%s", v);
    free(v);
    tp_conn_close(c);
    tp_hub_free(hub);
    tp_schema_free(schema);
}

Test(merge, lww_map_clamps_clocks_ahead_and_stamps_writes_without_ts)
{
    tp_schema *schema = tp_schema_new(MAP, NULL);
    tp_hub *hub = new_hub();
    tp_hub_share_as(hub, "m", schema, "{}", &tp_lww_map_crdt, NULL);
    tp_hub_subscribe(hub, "t", "m", TP_WRITE);
    tp_conn *c = tp_conn_open(hub, "t", 0, NULL);
    /* A clock a day ahead is clamped to now + 60 s. */
    tpt_feed(c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":1,"
                "\"patch\":{\"a\":1},\"ts\":{\"wall\":1700086400000,\"count\":0}}");
    /* Two minutes later a write without ts is stamped on arrival and wins. */
    now += 120000;
    tpt_feed(
        c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":2,\"patch\":{\"a\":2}}");
    char *v = tp_hub_get_shared(hub, "m");
    cr_assert(tpt_json_text_eq(v, "{\"a\":2}"), "%s", v);
    free(v);
    /* The host's writes are stamped by the server and move past every ts. */
    tp_hub_set_shared(hub, "m", "{\"a\":3,\"b\":4}", NULL);
    cr_assert_eq(tp_hub_sync(hub), 1);
    v = tp_hub_get_shared(hub, "m");
    cr_assert(tpt_json_text_eq(v, "{\"a\":3,\"b\":4}"), "%s", v);
    free(v);
    now -= 120000;
    tp_conn_close(c);
    tp_hub_free(hub);
    tp_schema_free(schema);
}

/* A custom strategy: numbers add up instead of replacing; refuses "c". */
static json_t *
adder(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
      tp_error *err)
{
    int *calls = user;
    (*calls)++;
    if (json_object_get(patch, "c") != NULL) {
        snprintf(err->message, sizeof err->message, "c: %s may not write c",
                 origin->tenant ? origin->tenant : "the host");
        err->code = TP_EREJECTED;
        return NULL;
    }
    if (json_object_get(patch, "d") != NULL)
        return json_string("not an object");
    json_t *v = json_deep_copy(current);
    const char *key;
    json_t *pv;
    json_object_foreach((json_t *)patch, key, pv)
    {
        json_int_t was = json_integer_value(json_object_get(v, key));
        json_object_set_new(v, key, json_integer(was + json_integer_value(pv)));
    }
    return v;
}

Test(merge, custom_strategy_merges_refuses_and_sees_the_origin)
{
    int calls = 0;
    tp_merge add = {"adder", adder, &calls};
    tp_schema *schema = tp_schema_new(MAP, NULL);
    tp_hub *hub = new_hub();
    tp_hub_share_as(hub, "m", schema, "{\"a\":1}", &add, NULL);
    tp_hub_subscribe(hub, "alice", "m", TP_WRITE);
    tp_conn *c = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(c));
    tpt_feed(
        c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":1,\"patch\":{\"a\":5}}");
    json_t *m = tpt_drain(c);
    json_t *p = tpt_find(m, "patch");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(p, "patch"), "a")), 6,
                 "the writer gets the merged result, not what it wrote");
    json_decref(m);
    tpt_feed(
        c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":2,\"patch\":{\"c\":1}}");
    m = tpt_drain(c);
    json_t *e = tpt_find(m, "error");
    cr_assert_str_eq(str(e, "code"), "rejected");
    cr_assert_str_eq(str(e, "message"), "c: alice may not write c");
    json_decref(m);
    tpt_feed(
        c, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":3,\"patch\":{\"d\":1}}");
    m = tpt_drain(c);
    cr_assert_str_eq(str(tpt_find(m, "error"), "code"), "internal");
    json_decref(m);
    /* The result is validated against the schema: a is an integer. */
    cr_assert_eq(tp_hub_shared_rev(hub, "m"), 2);
    cr_assert_eq(calls, 3);
    /* Host writes go through the strategy too, with origin "host". */
    tp_hub_set_shared(hub, "m", "{\"a\":10}", NULL);
    cr_assert_eq(tp_hub_sync(hub), 1);
    char *v = tp_hub_get_shared(hub, "m");
    cr_assert(tpt_json_text_eq(v, "{\"a\":16}"), "the host patch {a: 10} is added to 6: %s", v);
    free(v);
    tp_conn_close(c);
    tp_hub_free(hub);
    tp_schema_free(schema);
}

Test(merge, builtins_called_directly)
{
    json_t *cur = json_loads("{\"a\":1,\"d\":{\"x\":1}}", 0, NULL);
    json_t *patch = json_loads("{\"a\":null,\"d\":{\"y\":2}}", 0, NULL);
    tp_origin o = {NULL, "host"};
    json_t *lww = tp_last_write_wins.merge(NULL, cur, patch, &o, NULL);
    json_t *map = tp_lww_map_crdt.merge(NULL, cur, patch, &o, NULL);
    json_t *want_lww = json_loads("{\"d\":{\"x\":1,\"y\":2}}", 0, NULL);
    json_t *want_map = json_loads("{\"d\":{\"y\":2}}", 0, NULL);
    cr_assert(json_equal(lww, want_lww));
    cr_assert(json_equal(map, want_map), "lww-map replaces a field whole");
    cr_assert_str_eq(tp_last_write_wins.name, "lww");
    cr_assert_str_eq(tp_lww_map_crdt.name, "lww-map");
    json_decref(cur);
    json_decref(patch);
    json_decref(lww);
    json_decref(map);
    json_decref(want_lww);
    json_decref(want_map);
}

Test(merge, lww_map_tombstones_are_bounded)
{
    tp_schema *any = tp_schema_new("{\"title\":\"Any\",\"type\":\"object\"}", NULL);
    tp_hub *hub = new_hub();
    tp_hub_share_as(hub, "m", any, "{}", &tp_lww_map_crdt, NULL);
    tp_hub_subscribe(hub, "t", "m", TP_WRITE);
    tp_conn *c = tp_conn_open(hub, "t", 0, NULL);
    json_decref(tpt_drain(c));
    /* Invented fields, deleted at once: each leaves a tombstone. */
    int refused = 0;
    for (int i = 0; i < 4200; i++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"m\",\"ref\":%d,"
                 "\"patch\":{\"f%d\":null}}",
                 i + 1, i);
        tpt_feed(c, w);
        json_t *m = tpt_drain(c);
        json_t *e = tpt_find(m, "error");
        if (e != NULL) {
            cr_assert_str_eq(str(e, "code"), "invalid");
            cr_assert(strstr(str(e, "message"), "too many fields") != NULL);
            refused++;
        }
        json_decref(m);
        now += 1; /* new stamps, never a tie */
    }
    cr_assert_eq(refused, 4200 - 4096);
    tp_conn_close(c);
    tp_hub_free(hub);
    tp_schema_free(any);
}
