/*
 * The hub through its C API and the connection handle: the guide's
 * walk-through end to end (alice and bob, the read-only roadmap, shared
 * writes), private models, shares, subscriptions and host-side writes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "support.h"
#include "transports.h"

#define DOCUMENT                                                                                   \
    "{\"title\":\"Document\",\"type\":\"object\",\"properties\":{"                                 \
    "\"title\":{\"title\":\"Title\",\"type\":\"string\"},"                                         \
    "\"body\":{\"default\":\"\",\"title\":\"Body\",\"type\":\"string\"}},"                         \
    "\"required\":[\"title\"]}"

static tp_hub *hub;
static tp_schema *doc;
static int64_t now = 1700000000000;

static void
setup(void)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    tp_error err;
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    doc = tp_schema_new(DOCUMENT, &err);
    cr_assert_not_null(doc, "%s", err.message);
}

static void
teardown(void)
{
    tp_hub_free(hub);
    tp_schema_free(doc);
}

TestSuite(hub, .init = setup, .fini = teardown);

static void
assert_json(const char *got, const char *want)
{
    cr_assert_not_null(got);
    cr_assert(tpt_json_text_eq(got, want), "got %s, want %s", got, want);
}

static void
assert_jv(const json_t *got, const char *want)
{
    json_t *w = json_loads(want, 0, NULL);
    char *g = json_dumps(got, JSON_ENCODE_ANY);
    cr_assert(json_equal(got, w), "got %s, want %s", g, want);
    free(g);
    json_decref(w);
}

/* The guide: "Host private tenant models". */
Test(hub, private_models_are_isolated_per_tenant)
{
    tp_error err;
    const char *a =
        tp_session_host(tp_hub_tenant(hub, "alice"), doc, "{\"title\":\"Alice notes\"}", &err);
    const char *b =
        tp_session_host(tp_hub_tenant(hub, "bob"), doc, "{\"title\":\"Bob notes\"}", &err);
    cr_assert_not_null(a, "%s", err.message);
    cr_assert_not_null(b, "%s", err.message);
    /* Private ids overlap between tenants: each has its own id space. */
    cr_assert_str_eq(a, "1");
    cr_assert_str_eq(b, "1");
    char *va = tp_session_get(tp_hub_tenant(hub, "alice"), "1");
    char *vb = tp_session_get(tp_hub_tenant(hub, "bob"), "1");
    /* Defaults are filled in when a model is hosted. */
    assert_json(va, "{\"title\":\"Alice notes\",\"body\":\"\"}");
    assert_json(vb, "{\"title\":\"Bob notes\",\"body\":\"\"}");
    free(va);
    free(vb);

    tp_conn *alice = tp_conn_open(hub, "alice", 0, &err);
    json_t *msgs = tpt_drain(alice);
    cr_assert_eq(json_array_size(msgs), 3, "hello, one snapshot, synced");
    json_t *hello = json_array_get(msgs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(hello, "type")), "hello");
    cr_assert_eq(json_integer_value(json_object_get(hello, "protocol")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(hello, "tenant")), "alice");
    cr_assert_str_eq(json_string_value(json_object_get(hello, "conn")), tp_conn_id(alice));
    json_t *snap = json_array_get(msgs, 1);
    cr_assert_str_eq(json_string_value(json_object_get(snap, "type")), "snapshot");
    cr_assert_str_eq(json_string_value(json_object_get(snap, "scope")), "private");
    cr_assert_str_eq(json_string_value(json_object_get(snap, "schema")), "Document");
    cr_assert_str_eq(json_string_value(json_object_get(snap, "access")), "write");
    cr_assert_eq(json_integer_value(json_object_get(snap, "rev")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(snap, "value"), "title")),
                     "Alice notes", "alice sees only her own notes");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 2), "type")), "synced");
    json_decref(msgs);
    tp_conn_close(alice);
}

Test(hub, host_as_given_ids_and_conflicts)
{
    tp_error err;
    tp_session *s = tp_hub_tenant(hub, "alice");
    cr_assert_str_eq(tp_session_host_as(s, "notes", doc, "{\"title\":\"x\"}", &err), "notes");
    cr_assert_null(tp_session_host_as(s, "notes", doc, "{\"title\":\"y\"}", &err));
    cr_assert_eq(err.code, TP_EEXIST);
    cr_assert(strstr(err.message, "id:") != NULL, "%s", err.message);
    /* Assigned ids skip those given by the caller. */
    tp_session_host_as(s, "1", doc, "{\"title\":\"one\"}", &err);
    cr_assert_str_eq(tp_session_host(s, doc, "{\"title\":\"two\"}", &err), "2");
}

Test(hub, host_refuses_invalid_values_with_the_field)
{
    tp_error err;
    tp_session *s = tp_hub_tenant(hub, "alice");
    cr_assert_null(tp_session_host(s, doc, "{\"title\":5}", &err));
    cr_assert_eq(err.code, TP_EINVALID);
    cr_assert_str_eq(err.message, "title: expected string, got number");
    cr_assert_null(tp_session_host(s, doc, "{}", &err));
    cr_assert_eq(err.code, TP_EINVALID);
    cr_assert(strstr(err.message, "title") != NULL, "%s", err.message);
    cr_assert_null(tp_session_host(s, doc, "{\"title\":", &err));
    cr_assert_eq(err.code, TP_EBADREQUEST);
    cr_assert_null(tp_hub_tenant(hub, ""), "an empty tenant key is refused");
}

/* The guide: "A private edit is echoed only to other Alice connections." */
Test(hub, private_write_echo_rules)
{
    tp_error err;
    tp_session_host_as(tp_hub_tenant(hub, "alice"), "notes", doc, "{\"title\":\"A\"}", &err);
    tp_session_host_as(tp_hub_tenant(hub, "bob"), "notes", doc, "{\"title\":\"B\"}", &err);
    tp_conn *a1 = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *a2 = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *b1 = tp_conn_open(hub, "bob", 0, NULL);
    json_decref(tpt_drain(a1));
    json_decref(tpt_drain(a2));
    json_decref(tpt_drain(b1));

    cr_assert_eq(tpt_feed(a1, "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"notes\","
                              "\"ref\":1,\"patch\":{\"body\":\"hello\"}}"),
                 TP_OK);
    json_t *m1 = tpt_drain(a1), *m2 = tpt_drain(a2), *mb = tpt_drain(b1);
    /* The writer gets an ack with from, and no patch. */
    cr_assert_eq(json_array_size(m1), 1);
    json_t *ack = tpt_find(m1, "ack");
    cr_assert_not_null(ack);
    cr_assert_eq(json_integer_value(json_object_get(ack, "ref")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ack, "from")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ack, "rev")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(ack, "scope")), "private");
    cr_assert_str_eq(json_string_value(json_object_get(ack, "id")), "notes");
    /* The other alice connection gets the patch. */
    cr_assert_eq(json_array_size(m2), 1);
    json_t *p = tpt_find(m2, "patch");
    cr_assert_not_null(p);
    cr_assert_eq(json_integer_value(json_object_get(p, "from")), 1);
    cr_assert_eq(json_integer_value(json_object_get(p, "rev")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(p, "origin")), tp_conn_id(a1));
    assert_jv(json_object_get(p, "patch"), "{\"body\":\"hello\"}");
    /* No other tenant learns anything. */
    cr_assert_eq(json_array_size(mb), 0);
    char *v = tp_session_get(tp_hub_tenant(hub, "bob"), "notes");
    assert_json(v, "{\"title\":\"B\",\"body\":\"\"}");
    free(v);
    json_decref(m1);
    json_decref(m2);
    json_decref(mb);
    tp_conn_close(a1);
    tp_conn_close(a2);
    tp_conn_close(b1);
}

/* The guide: "Share a model read-only", then "Allow shared writes". */
Test(hub, the_guides_roadmap)
{
    tp_error err;
    tp_session_host(tp_hub_tenant(hub, "alice"), doc, "{\"title\":\"Alice notes\"}", &err);
    tp_session_host(tp_hub_tenant(hub, "bob"), doc, "{\"title\":\"Bob notes\"}", &err);
    const char *sid = tp_hub_share(hub, doc, "{\"title\":\"Roadmap\"}", NULL, &err);
    cr_assert_not_null(sid, "%s", err.message);
    cr_assert_eq(tp_hub_subscribe(hub, "alice", sid, TP_READ), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "bob", sid, TP_READ), TP_OK);

    tp_conn *alice = tp_conn_open(hub, "alice", 0, NULL);
    tp_conn *bob = tp_conn_open(hub, "bob", 0, NULL);
    json_t *ma = tpt_drain(alice);
    cr_assert_eq(tpt_count(ma, "snapshot"), 2, "her notes and the roadmap");
    json_decref(ma);
    json_decref(tpt_drain(bob));

    /* Host-side writes wait for the next sync. */
    cr_assert_eq(tp_hub_set_shared(hub, sid, "{\"title\":\"Roadmap\",\"body\":\"Updated\"}", &err),
                 TP_OK);
    cr_assert_eq(tpt_drain_all(hub), 0, "nothing is published before the sync");
    cr_assert_eq(tp_hub_shared_rev(hub, sid), 1);
    cr_assert_eq(tp_hub_sync(hub), 1);
    cr_assert_eq(tp_hub_sync(hub), 0, "a second sync has nothing to publish");
    cr_assert_eq(tp_hub_shared_rev(hub, sid), 2);
    ma = tpt_drain(alice);
    json_t *mb = tpt_drain(bob);
    cr_assert_eq(json_array_size(ma), 1);
    json_t *p = tpt_find(ma, "patch");
    cr_assert_str_eq(json_string_value(json_object_get(p, "origin")), "host");
    cr_assert_str_eq(json_string_value(json_object_get(p, "scope")), "shared");
    assert_jv(json_object_get(p, "patch"), "{\"body\":\"Updated\"}");
    cr_assert(json_equal(json_array_get(ma, 0), json_array_get(mb, 0)),
              "every subscriber gets the same patch");
    json_decref(ma);
    json_decref(mb);

    /* Read-only: a write is forbidden and changes nothing. */
    char w[256];
    snprintf(w, sizeof w,
             "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"%s\",\"ref\":7,\"patch\":{\"body\":"
             "\"x\"}}",
             sid);
    tpt_feed(alice, w);
    ma = tpt_drain(alice);
    json_t *e = tpt_find(ma, "error");
    cr_assert_not_null(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "forbidden");
    cr_assert_eq(json_integer_value(json_object_get(e, "ref")), 7);
    mb = tpt_drain(bob);
    cr_assert_eq(json_array_size(mb), 0);
    json_decref(mb);
    cr_assert_eq(tp_hub_shared_rev(hub, sid), 2);
    json_decref(ma);

    /* Subscribing again with WRITE changes the access. */
    cr_assert_eq(tp_hub_subscribe(hub, "alice", sid, TP_WRITE), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "bob", sid, TP_WRITE), TP_OK);
    ma = tpt_drain(alice);
    cr_assert_eq(json_array_size(ma), 1);
    json_t *acc = tpt_find(ma, "access");
    cr_assert_not_null(acc);
    cr_assert_str_eq(json_string_value(json_object_get(acc, "access")), "write");
    json_decref(ma);
    json_decref(tpt_drain(bob));

    /* A shared write is echoed to every subscriber, the writer included,
     * and the writer also gets the ack naming the patch's rev. */
    tpt_feed(alice, w);
    ma = tpt_drain(alice);
    mb = tpt_drain(bob);
    cr_assert_eq(json_array_size(ma), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ma, 0), "type")), "patch");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ma, 1), "type")), "ack");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(ma, 1), "rev")), 3);
    cr_assert_null(json_object_get(json_array_get(ma, 1), "from"), "a shared ack has no from");
    cr_assert_eq(json_array_size(mb), 1);
    cr_assert(json_equal(json_array_get(ma, 0), json_array_get(mb, 0)));
    char *v = tp_hub_get_shared(hub, sid);
    assert_json(v, "{\"title\":\"Roadmap\",\"body\":\"x\"}");
    free(v);
    json_decref(ma);
    json_decref(mb);

    /* Unsubscribing removes the model from the tenant's view. */
    cr_assert_eq(tp_hub_unsubscribe(hub, "bob", sid), TP_OK);
    mb = tpt_drain(bob);
    cr_assert_not_null(tpt_find(mb, "removed"));
    json_decref(mb);
    snprintf(w, sizeof w,
             "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"%s\",\"ref\":8,\"patch\":{\"body\":"
             "\"y\"}}",
             sid);
    tpt_feed(bob, w);
    mb = tpt_drain(bob);
    cr_assert_str_eq(json_string_value(json_object_get(tpt_find(mb, "error"), "code")),
                     "not_found");
    json_decref(mb);
    cr_assert_eq(tp_hub_unsubscribe(hub, "bob", sid), TP_ENOTFOUND);
    tp_conn_close(alice);
    tp_conn_close(bob);
}

Test(hub, pending_host_change_is_published_before_a_client_write)
{
    tp_error err;
    const char *sid = tp_hub_share_as(hub, "r", doc, "{\"title\":\"R\"}", &tp_lww_map_crdt, &err);
    cr_assert_not_null(sid, "%s", err.message);
    tp_hub_subscribe(hub, "alice", sid, TP_WRITE);
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(a));
    tp_hub_set_shared(hub, sid, "{\"title\":\"R2\"}", &err);
    char *v = tp_hub_get_shared(hub, sid);
    assert_json(v, "{\"title\":\"R2\",\"body\":\"\"}");
    free(v);
    tpt_feed(a, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"r\",\"ref\":1,\"patch\":{"
                "\"body\":\"b\"}}");
    json_t *m = tpt_drain(a);
    cr_assert_eq(json_array_size(m), 3, "host patch, the write's patch, the ack");
    json_t *p1 = json_array_get(m, 0), *p2 = json_array_get(m, 1);
    cr_assert_str_eq(json_string_value(json_object_get(p1, "origin")), "host");
    cr_assert_eq(json_integer_value(json_object_get(p1, "from")), 1);
    cr_assert_eq(json_integer_value(json_object_get(p1, "rev")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(p2, "origin")), tp_conn_id(a));
    cr_assert_eq(json_integer_value(json_object_get(p2, "from")), 2);
    cr_assert_eq(json_integer_value(json_object_get(p2, "rev")), 3);
    cr_assert_eq(tp_hub_sync(hub), 0, "the pending change was already published");
    json_decref(m);
    tp_conn_close(a);
}

Test(hub, private_host_set_waits_for_sync)
{
    tp_error err;
    tp_session *s = tp_hub_tenant(hub, "alice");
    tp_session_host_as(s, "n", doc, "{\"title\":\"a\"}", &err);
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(a));
    cr_assert_eq(tp_session_set(s, "n", "{\"title\":\"b\",\"body\":\"c\"}", &err), TP_OK);
    cr_assert_eq(tp_session_rev(s, "n"), 1);
    cr_assert_eq(tp_session_set(s, "n", "{\"body\":\"c\"}", &err), TP_EINVALID,
                 "validated when set");
    cr_assert_eq(tp_session_set(s, "zz", "{\"title\":\"b\"}", &err), TP_ENOTFOUND);
    cr_assert_eq(tp_hub_sync(hub), 1);
    json_t *m = tpt_drain(a);
    json_t *p = tpt_find(m, "patch");
    cr_assert_not_null(p);
    assert_jv(json_object_get(p, "patch"), "{\"title\":\"b\",\"body\":\"c\"}");
    cr_assert_eq(tp_session_rev(s, "n"), 2);
    json_decref(m);
    tp_conn_close(a);
}

Test(hub, hosting_and_subscribing_send_snapshots_to_live_connections)
{
    tp_error err;
    tp_conn *a = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(a));
    tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"a\"}", &err);
    json_t *m = tpt_drain(a);
    cr_assert_eq(tpt_count(m, "snapshot"), 1);
    json_decref(m);
    const char *sid = tp_hub_share(hub, doc, "{\"title\":\"S\"}", NULL, &err);
    cr_assert_eq(json_array_size(m = tpt_drain(a)), 0, "sharing alone shows nothing");
    json_decref(m);
    tp_hub_subscribe(hub, "alice", sid, TP_READ);
    m = tpt_drain(a);
    cr_assert_eq(tpt_count(m, "snapshot"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "access")), "read");
    json_decref(m);
    cr_assert_eq(tp_session_delete(tp_hub_tenant(hub, "alice"), "n"), TP_OK);
    cr_assert_eq(tp_hub_unshare(hub, sid), TP_OK);
    m = tpt_drain(a);
    cr_assert_eq(tpt_count(m, "removed"), 2);
    json_decref(m);
    cr_assert_null(tp_session_get(tp_hub_tenant(hub, "alice"), "n"));
    cr_assert_null(tp_hub_get_shared(hub, sid == NULL ? "x" : "s1"));
    tp_conn_close(a);
}

Test(hub, custom_key_function_and_requests)
{
    tp_request *req = tp_request_new("/ws/alice");
    tp_request_set_path_param(req, "tenant", "alice");
    tp_request_set_query(req, "token", "t1");
    tp_request_set_header(req, "X-Tenant", "carol");
    cr_assert_str_eq(tp_hub_key(hub, req), "alice", "the default key is the tenant parameter");
    cr_assert_str_eq(tp_request_header(req, "x-tenant"), "carol", "header names ignore case");
    cr_assert_str_eq(tp_request_query(req, "token"), "t1");
    cr_assert_null(tp_request_query(req, "nope"));
    tp_request_free(req);
}

#include "core/hub.h"

/* Clients cannot grow the hub by naming tenants: a session that only a
 * connection made goes with its last connection when it holds nothing. */
Test(hub, sessions_made_by_connections_alone_are_released)
{
    size_t before = hub->tenants.len;
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "ghost-%d", i);
        tp_conn *c = tp_conn_open(hub, name, 0, NULL);
        cr_assert_not_null(c);
        tpt_feed(c, "{\"type\":\"ping\",\"ref\":1,\"client\":\"k\"}");
        tp_conn_close(c);
    }
    cr_assert_eq(hub->tenants.len, before);
    /* A session the host asked for, or one with a subscription, stays. */
    tp_session *kept = tp_hub_tenant(hub, "host-made");
    tp_conn_close(tp_conn_open(hub, "host-made", 0, NULL));
    cr_assert_eq(tp_hub_tenant(hub, "host-made"), kept);
    const char *sid = tp_hub_share(hub, doc, "{\"title\":\"s\"}", NULL, NULL);
    tp_hub_subscribe(hub, "sub-only", sid, TP_READ);
    tp_conn_close(tp_conn_open(hub, "sub-only", 0, NULL));
    cr_assert_eq(hub->tenants.len, before + 2);
    /* Unsubscribed, it remembers the sid (a client away since may hold the
     * old subscription's revs), so it stays too: only the host makes those. */
    tp_hub_unsubscribe(hub, "sub-only", sid);
    cr_assert_eq(hub->tenants.len, before + 2);
}
