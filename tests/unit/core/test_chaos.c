/*
 * The failing allocator (jansson's test_chaos, applied to the whole core):
 * a scripted session runs with the N-th allocation failing, for every N
 * until the script runs through. Nothing may crash or leak (the sanitizer
 * build checks leaks), and whatever the hub reports must hold: a model's
 * rev and value agree with what its connections were told.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support.h"
#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"$defs\":{\"Item\":{\"type\":\"object\","             \
    "\"properties\":{\"qty\":{\"type\":\"integer\",\"minimum\":1,\"default\":1}}}},"               \
    "\"properties\":{\"title\":{\"type\":\"string\"},\"body\":{\"type\":\"string\","               \
    "\"default\":\"\"},\"n\":{\"type\":\"integer\"},"                                              \
    "\"items\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/Item\"}}},"                       \
    "\"required\":[\"title\"]}"

static int64_t now = 1700000000000;

static const char *writes[] = {
    "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"body\":\"x\"}}",
    "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"lww\",\"patch\":{\"n\":2,"
    "\"items\":[{}]}}",
    "{\"type\":\"write\",\"ref\":3,\"scope\":\"shared\",\"id\":\"map\",\"patch\":{\"n\":3},"
    "\"ts\":{\"wall\":1700000000001,\"count\":0}}",
    "[{\"type\":\"ping\",\"ref\":4},{\"type\":\"write\",\"ref\":5,\"scope\":\"shared\",\"id\":"
    "\"map\","
    "\"patch\":{\"body\":null,\"title\":\"t\"}}]",
    "{\"type\":\"write\",\"ref\":6,\"scope\":\"shared\",\"id\":\"lww\",\"patch\":{\"n\":\"bad\"}}",
    "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"lww\",\"patch\":{\"n\":2}}",
    "not json",
};

/* Runs the script; returns 1 when every step succeeded. */
static int
script(void)
{
    int ok = 1;
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.tick_ms = 50; /* presence waits for the tick (tp_hub_sync), leaves too */
    tp_hub *hub = tp_hub_new(&cfg, NULL);
    if (hub == NULL)
        return 0;
    tp_schema *doc = tp_schema_new(DOC, NULL);
    ok &= doc != NULL;
    if (doc != NULL) {
        ok &= tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"a\"}",
                                 NULL) != NULL;
        ok &= tp_hub_share_as(hub, "lww", doc, "{\"title\":\"l\"}", NULL, NULL) != NULL;
        ok &= tp_hub_share_as(hub, "map", doc, "{\"title\":\"m\"}", &tp_lww_map_crdt, NULL) != NULL;
    }
    ok &= tp_hub_subscribe(hub, "alice", "lww", TP_WRITE) == TP_OK;
    ok &= tp_hub_subscribe(hub, "alice", "map", TP_WRITE) == TP_OK;
    ok &= tp_hub_subscribe(hub, "bob", "map", TP_READ) == TP_OK;
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *a2 = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    tp_conn *b = tp_conn_open(hub, "bob", 0, NULL);
    ok &= a != NULL && a2 != NULL && b != NULL;
    if (a != NULL) {
        ok &= tpt_feed(a, "{\"type\":\"ping\",\"ref\":0,\"client\":\"k\"}") == TP_OK;
        for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
            ok &= tpt_feed(a, writes[i]) == TP_OK;
    }
    if (a2 != NULL)
        ok &= tpt_feed(a2, "{\"type\":\"resume\",\"client\":\"k\",\"models\":["
                           "{\"scope\":\"shared\",\"id\":\"lww\",\"rev\":1},"
                           "{\"scope\":\"private\",\"id\":\"gone\",\"rev\":1}]}") == TP_OK;
    /* Presence (issue 17): states on a shared and a private model, a
     * leave, a snapshot for a connection opened later, the host's view. */
    if (a != NULL && b != NULL) {
        ok &= tpt_feed(a, "{\"type\":\"presence\",\"scope\":\"shared\",\"id\":\"map\","
                          "\"state\":{\"name\":\"A\",\"at\":[1,2]}}") == TP_OK;
        ok &= tpt_feed(a, "{\"type\":\"presence\",\"scope\":\"private\",\"id\":\"n\","
                          "\"state\":{\"name\":\"A\"}}") == TP_OK;
        ok &= tpt_feed(b, "{\"type\":\"presence\",\"scope\":\"shared\",\"id\":\"map\","
                          "\"state\":{\"name\":\"B\"}}") == TP_OK;
        ok &= tpt_feed(b, "{\"type\":\"presence\",\"scope\":\"shared\",\"id\":\"map\","
                          "\"state\":null}") == TP_OK;
        char *p = tp_hub_presence(hub, NULL, "map");
        ok &= p != NULL;
        tp_free(p);
    }
    tp_conn *b2 = tp_conn_open(hub, "bob", 0, NULL);
    ok &= b2 != NULL;
    tp_conn_close(b2);
    ok &= tp_hub_set_shared(hub, "map", "{\"title\":\"h\",\"n\":9}", NULL) == TP_OK;
    ok &= tp_session_set(tp_hub_tenant(hub, "alice"), "n", "{\"title\":\"h\"}", NULL) == TP_OK;
    ok &= tp_hub_sync(hub) == 2;
    tp_conn *c;
    while ((c = tp_hub_next_ready(hub)) != NULL) {
        size_t len;
        while (tp_conn_next_frame(c, &len) != NULL)
            ;
        ok &= tp_conn_close_code(c) == 0;
    }
    char *v = tp_hub_get_shared(hub, "map");
    ok &= v != NULL;
    tp_free(v);
    ok &= tp_hub_unsubscribe(hub, "bob", "map") == TP_OK;
    ok &= tp_session_delete(tp_hub_tenant(hub, "alice"), "n") == TP_OK;
    tp_conn_close(a);
    now += 50; /* a's leave of map (shown at the sync above) goes at this tick */
    tp_hub_sync(hub);
    tp_conn_close(a2);
    /* b stays open: freeing the hub must release it too. */
    (void)b;
    tp_hub_free(hub);
    tp_schema_free(doc);
    return ok;
}

Test(chaos, every_allocation_may_fail)
{
    tpt_alloc_install();
    tpt_fail_disarm();
    cr_assert(script(), "the script runs through with a working allocator");
    long n;
    for (n = 1; n < 100000; n++) {
        tpt_fail_after(n);
        int ok = script();
        tpt_fail_disarm();
        if (ok && tpt_alloc_count() < n)
            break; /* allocation n was never reached: every failure point was tried */
    }
    cr_log_info("%ld failure points tried", n);
    cr_assert_gt(n, 100, "the script allocates");
    cr_assert_lt(n, 100000);
    tp_set_allocator(NULL);
}

/* A write that adds and deletes members, with every allocation in turn
 * failing: it lands whole, or not at all, and a resend after the failure
 * is applied exactly once. */
Test(chaos, a_write_lands_whole_or_not_at_all)
{
    const char *schema_text = "{\"title\":\"Any\",\"type\":\"object\"}";
    const char *w = "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"m\","
                    "\"patch\":{\"a\":null,\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"f\":5,\"k1\":9}}";
    const char *before = "{\"a\":1,\"k1\":1,\"k2\":1,\"k3\":1}";
    const char *after = "{\"k1\":9,\"k2\":1,\"k3\":1,\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"f\":5}";
    tpt_alloc_install();
    long n;
    for (n = 1; n < 10000; n++) {
        tpt_fail_disarm();
        tp_hub_config cfg = {0};
        cfg.clock = tpt_clock;
        cfg.clock_user = &now;
        tp_hub *hub = tp_hub_new(&cfg, NULL);
        tp_schema *any = tp_schema_new(schema_text, NULL);
        tp_session *s = tp_hub_tenant(hub, "t");
        cr_assert_not_null(tp_session_host_as(s, "m", any, before, NULL));
        tp_conn *c = tp_conn_open(hub, "t", 0, NULL);
        tpt_feed(c, "{\"type\":\"ping\",\"ref\":0,\"client\":\"k\"}");
        tpt_drain_all(hub);

        tpt_fail_after(n);
        tpt_feed(c, w);
        tpt_fail_disarm();
        int failed = tpt_alloc_count() >= n;
        char *v = tp_session_get(s, "m");
        int64_t rev = tp_session_rev(s, "m");
        if (rev == 1)
            cr_assert(tpt_json_text_eq(v, before), "N=%ld: not applied, yet %s", n, v);
        else
            cr_assert(rev == 2 && tpt_json_text_eq(v, after), "N=%ld: rev %ld %s", n, (long)rev, v);
        free(v);
        /* The client resends (on a new connection if this one closed). */
        if (tp_conn_close_code(c) != 0) {
            tp_conn_close(c);
            c = tp_conn_open(hub, "t", 0, NULL);
            tpt_feed(c, "{\"type\":\"ping\",\"ref\":0,\"client\":\"k\"}");
        }
        tpt_drain_all(hub);
        tpt_feed(c, w);
        json_t *m = tpt_drain(c);
        json_t *ack = tpt_find(m, "ack");
        cr_assert_not_null(ack, "N=%ld: the resend is acked", n);
        cr_assert_eq(json_integer_value(json_object_get(ack, "rev")), 2);
        cr_assert_eq(tp_session_rev(s, "m"), 2, "N=%ld: applied exactly once", n);
        json_decref(m);
        tp_conn_close(c);
        tp_hub_free(hub);
        tp_schema_free(any);
        if (!failed)
            break;
    }
    cr_assert_gt(n, 10);
    tp_set_allocator(NULL);
}
