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
