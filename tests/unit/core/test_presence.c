/*
 * Presence through the connection handle and the hub's C API (issue 17):
 * one encoding fanned out to every viewer, the host's view and callback,
 * nothing stored. The message-by-message rules are the protocol cases'
 * (tests/cases/proto/presence-*).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support.h"
#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\"}}}"

static tp_hub *hub;
static tp_schema *doc;
static int64_t now = 1700000000000;

/* What the host callback was told, as "conn_tenant/id:state" lines. */
static char told[4096];

static void
on_presence(const tp_presence_event *ev, void *user)
{
    cr_assert_eq(user, &told);
    size_t n = strlen(told);
    snprintf(told + n, sizeof told - n, "%s%s/%s:%s;", ev->tenant ? "private " : "",
             ev->conn_tenant, ev->id, ev->state ? ev->state : "null");
}

static void
setup_tick(unsigned tick_ms, tp_store *store)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.tick_ms = tick_ms;
    cfg.store = store;
    hub = tp_hub_new(&cfg, NULL);
    cr_assert_not_null(hub);
    doc = tp_schema_new(DOC, NULL);
    cr_assert_not_null(doc);
    if (!tp_hub_restored(hub)) {
        cr_assert_not_null(tp_hub_share_as(hub, "rm", doc, "{\"title\":\"r\"}", NULL, NULL));
        cr_assert_not_null(
            tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"a\"}", NULL));
        cr_assert_eq(tp_hub_subscribe(hub, "alice", "rm", TP_WRITE), TP_OK);
        cr_assert_eq(tp_hub_subscribe(hub, "bob", "rm", TP_READ), TP_OK);
    }
    told[0] = '\0';
    tp_hub_on_presence(hub, on_presence, &told);
}

static void
teardown(void)
{
    tp_hub_free(hub);
    tp_schema_free(doc);
    hub = NULL;
}

TestSuite(presence, .fini = teardown);

static const char SET_A[] =
    "{\"type\":\"presence\",\"scope\":\"shared\",\"id\":\"rm\",\"state\":{\"cursor\":7}}";

Test(presence, one_encoding_for_every_viewer)
{
    setup_tick(0, NULL);
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *b1 = tp_conn_open(hub, "bob", 0, NULL);
    tp_conn *b2 = tp_conn_open(hub, "bob", 0, NULL);
    tpt_drain_all(hub);
    cr_assert_eq(tpt_feed(a, SET_A), TP_OK);
    size_t l1, l2;
    const char *f1 = tp_conn_next_frame(b1, &l1);
    const char *f2 = tp_conn_next_frame(b2, &l2);
    cr_assert_not_null(f1);
    cr_assert_eq(f1, f2, "both viewers hold the same bytes: encoded once");
    cr_assert_eq(l1, l2);
    cr_assert(strstr(f1, "\"type\":\"presence\"") != NULL);
    cr_assert(strstr(f1, "alice") == NULL, "no tenant key in %s", f1);
    cr_assert(strstr(f1, tp_conn_id(a)) != NULL, "the setter's conn id in %s", f1);
    cr_assert_null(tp_conn_next_frame(b1, &l1));
    cr_assert_eq(tpt_drain_all(hub), 0, "the setter gets no echo");
    tp_conn_close(a);
    tp_conn_close(b1);
    tp_conn_close(b2);
}

Test(presence, host_reads_presence_and_is_told_of_changes)
{
    setup_tick(50, NULL);
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *b = tp_conn_open(hub, "bob", 0, NULL);
    tpt_drain_all(hub);
    cr_assert_eq(tpt_feed(a, SET_A), TP_OK);
    cr_assert_eq(tpt_feed(a, "{\"type\":\"presence\",\"scope\":\"private\",\"id\":\"n\","
                             "\"state\":{\"sel\":1}}"),
                 TP_OK);
    char *p = tp_hub_presence(hub, NULL, "rm");
    char want[256];
    snprintf(want, sizeof want, "[{\"conn\":\"%s\",\"tenant\":\"alice\",\"state\":{\"cursor\":7}}]",
             tp_conn_id(a));
    cr_assert(tpt_json_text_eq(p, want), "got %s", p);
    tp_free(p);
    p = tp_hub_presence(hub, "alice", "n");
    cr_assert(p != NULL && strstr(p, "\"sel\":1") != NULL, "got %s", p);
    tp_free(p);
    cr_assert_null(tp_hub_presence(hub, NULL, "nope"));
    cr_assert_null(tp_hub_presence(hub, "bob", "n"));
    cr_assert_str_eq(told, "", "nothing delivered before the tick");
    tp_hub_sync(hub);
    cr_assert(strstr(told, "alice/rm:{\"cursor\":7};") != NULL, "told: %s", told);
    cr_assert(strstr(told, "private alice/n:{\"sel\":1};") != NULL, "told: %s", told);
    told[0] = '\0';
    tp_conn_close(a);
    cr_assert_str_eq(told, "", "a leave within tick_ms of the last delivery waits for the tick");
    json_t *got = tpt_drain(b);
    cr_assert_eq(tpt_count(got, "presence"), 1, "b got alice's state, not yet her leave");
    json_decref(got);
    now += 50;
    tp_hub_sync(hub);
    got = tpt_drain(b);
    cr_assert_eq(tpt_count(got, "presence"), 1);
    cr_assert(json_is_null(json_object_get(tpt_find(got, "presence"), "state")));
    json_decref(got);
    cr_assert(strstr(told, "alice/rm:null;") != NULL, "told: %s", told);
    cr_assert(strstr(told, "private alice/n:null;") != NULL, "told: %s", told);
    p = tp_hub_presence(hub, NULL, "rm");
    cr_assert_str_eq(p, "[]");
    tp_free(p);
    tp_conn_close(b);
}

Test(presence, never_stored)
{
    tp_store *st = tp_store_memory();
    setup_tick(0, st);
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *b = tp_conn_open(hub, "bob", 0, NULL);
    tpt_drain_all(hub);
    tp_hub_stats s0, s1;
    tp_hub_get_stats(hub, &s0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(tpt_feed(a, SET_A), TP_OK);
    json_t *got = tpt_drain(b);
    cr_assert_eq(tpt_count(got, "presence"), 20, "bob got every state");
    json_decref(got);
    tp_hub_get_stats(hub, &s1);
    cr_assert_eq(s1.commits, s0.commits, "presence commits nothing");
    cr_assert_eq(tp_hub_shared_rev(hub, "rm"), 1);
    tp_conn_close(a);
    tp_conn_close(b);
    tp_hub_free(hub);
    tp_schema_free(doc);
    /* The same store again: the model is there, its presence is not. */
    setup_tick(0, st);
    cr_assert(tp_hub_restored(hub));
    char *p = tp_hub_presence(hub, NULL, "rm");
    cr_assert_str_eq(p, "[]");
    tp_free(p);
    teardown();
    tp_store_free(st);
    doc = NULL;
}

/* With a small max_message_bytes, a state is bounded so that the presence
 * message around it still fits: every message the server sends does. */
Test(presence, a_small_max_message_bytes_bounds_the_state)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.limits.max_message_bytes = 1000;
    hub = tp_hub_new(&cfg, NULL);
    doc = tp_schema_new(DOC, NULL);
    cr_assert_not_null(tp_hub_share_as(hub, "rm", doc, "{\"title\":\"r\"}", NULL, NULL));
    tp_hub_subscribe(hub, "alice", "rm", TP_WRITE);
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *b = tp_conn_open(hub, "alice", 0, NULL);
    tpt_drain_all(hub);
    /* The address `"scope":"shared","id":"rm"` is 26 bytes: 1000 - 56 - 26. */
    const size_t limit = 1000 - 56 - 26;
    char msg[1100];
    for (size_t n = limit; n <= limit + 1; n++) {
        /* {"s":"abc"}: the state is 8 bytes more than its string. */
        int len = snprintf(msg, sizeof msg,
                           "{\"type\":\"presence\",\"scope\":\"shared\",\"id\":\"rm\","
                           "\"state\":{\"s\":\"%0*d\"}}",
                           (int)(n - 8), 0);
        cr_assert_lt((size_t)len, 1000);
        cr_assert_eq(tpt_feed(a, msg), TP_OK);
    }
    json_t *got = tpt_drain(a);
    cr_assert_eq(json_array_size(got), 1);
    char want[96];
    snprintf(want, sizeof want, "state: %zu bytes, over the limit of %zu", limit + 1, limit);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(got, 0), "message")), want);
    json_decref(got);
    size_t flen;
    const char *f = tp_conn_next_frame(b, &flen);
    cr_assert_not_null(f);
    cr_assert_eq(flen, 1000, "the largest state makes a message of exactly max_message_bytes");
    tp_conn_close(a);
    tp_conn_close(b);
}
