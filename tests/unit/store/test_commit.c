/*
 * The commit thread (core/commit.c, issue 16): a hub driven like the
 * server drives it (a wake registered, the journal sealed at the end of
 * each "iteration", durability collected when the committer wakes us),
 * with the committer's test gate holding a store commit in flight. Frames
 * that reveal a change wait for its transaction; the loop thread goes on
 * meanwhile; transactions queued behind one in flight go in one store
 * commit; a failure holds frames and refuses writes until a retry works;
 * freeing the hub stores what is queued; a read of the store waits for the
 * transaction in flight and sees it.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "core/commit.h"
#include "core/hub.h"
#include "core/notes.h"
#include "store/store.h"
#include "support.h"
#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"                                      \
    "\"title\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}},\"required\":[\"title\"]}"

static tp_store *store;
static tp_schema *doc;

/* The loop's wake: the committer signals it from its thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int wakes;

static void
on_wake(void *user)
{
    (void)user;
    pthread_mutex_lock(&mu);
    wakes++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Waits (at most 5 s) until the committer woke us n times in all. */
static void
await_wakes(int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&mu);
    while (wakes < n)
        cr_assert_eq(pthread_cond_timedwait(&cv, &mu, &until), 0, "the committer never woke us");
    pthread_mutex_unlock(&mu);
}

static void
setup(void)
{
    store = tp_store_memory();
    tp_error err;
    doc = tp_schema_new(DOC, &err);
    cr_assert(store && doc);
    wakes = 0;
}

static void
teardown(void)
{
    tp_schema_free(doc);
    tp_store_free(store);
}

TestSuite(commit, .init = setup, .fini = teardown);

static tp_hub *
open_hub(int async)
{
    tp_hub_config cfg = {0};
    cfg.store = store;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    if (async)
        tp__hub_set_wake(hub, on_wake, NULL);
    return hub;
}

/* Every frame a connection may send now, without committing anything. */
static json_t *
frames(tp_conn *c)
{
    return tpt_drain(c);
}

static const char *
type_of(json_t *msgs, size_t i)
{
    return json_string_value(json_object_get(json_array_get(msgs, i), "type"));
}

/* A hub with alice's private model "p" and bob's "q", stored. */
static tp_hub *
two_tenants(tp_conn **a, tp_conn **b)
{
    tp_hub *hub = open_hub(1);
    tp_error err;
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "p", doc, "{\"title\":\"p\"}", &err));
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "bob"), "q", doc, "{\"title\":\"q\"}", &err));
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    *a = tp_conn_open(hub, "alice", 0, &err);
    *b = tp_conn_open(hub, "bob", 0, &err);
    cr_assert(*a && *b);
    tp_hub_commit(hub, NULL); /* their hellos */
    json_decref(frames(*a));
    json_decref(frames(*b));
    return hub;
}

Test(commit, an_ack_waits_for_its_commit_while_the_loop_serves_others)
{
    tp_conn *a, *b;
    tp_hub *hub = two_tenants(&a, &b);
    uint64_t attempts = tp__committer_attempts(hub->committer);
    tp__committer_gate(hub->committer, 1);

    /* Iteration 1: alice writes; the iteration ends (sealed). */
    tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"p\","
                "\"patch\":{\"n\":1}}");
    tp__hub_seal(hub, NULL);
    json_t *m = frames(a);
    cr_assert_eq(json_array_size(m), 0, "no ack before the commit returns");
    json_decref(m);
    /* The committer took it and is stuck in the store commit. */
    for (int i = 0; i < 500 && tp__committer_attempts(hub->committer) == attempts; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    cr_assert_eq(tp__committer_attempts(hub->committer), attempts + 1, "a commit is in flight");

    /* Iteration 2, meanwhile: bob's ping is answered at once, and his
     * write is applied in memory (its ack waits for its own commit). */
    tpt_feed(b, "{\"type\":\"ping\",\"ref\":9}");
    tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"q\","
                "\"patch\":{\"n\":2}}");
    tp__hub_seal(hub, NULL);
    m = frames(b);
    cr_assert_eq(json_array_size(m), 1, "only the pong");
    cr_assert_str_eq(type_of(m, 0), "pong");
    json_decref(m);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "bob"), "q"), 2, "bob's write is applied");
    m = frames(a);
    cr_assert_eq(json_array_size(m), 0, "alice's ack still waits");
    json_decref(m);

    /* The store commit returns: the acks leave once the loop collects. */
    pthread_mutex_lock(&mu);
    int w0 = wakes;
    pthread_mutex_unlock(&mu);
    tp__committer_gate(hub->committer, 0);
    await_wakes(w0 + 1);
    for (int i = 0; i < 2000 && tp__hub_released(hub) < hub->epoch - 1; i++) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        tp__hub_collect(hub);
    }
    m = frames(a);
    cr_assert_eq(json_array_size(m), 1);
    cr_assert_str_eq(type_of(m, 0), "ack");
    json_decref(m);
    m = frames(b);
    cr_assert_eq(json_array_size(m), 1);
    cr_assert_str_eq(type_of(m, 0), "ack");
    json_decref(m);
    tp_conn_close(a);
    tp_conn_close(b);
    tp_hub_free(hub);
}

Test(commit, transactions_queued_behind_one_in_flight_go_in_one_store_commit)
{
    tp_conn *a, *b;
    tp_hub *hub = two_tenants(&a, &b);
    uint64_t commits0, failures, group;
    tp__committer_stats(hub->committer, &commits0, &failures, &group);
    uint64_t attempts = tp__committer_attempts(hub->committer);
    tp__committer_gate(hub->committer, 1);
    tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"p\","
                "\"patch\":{\"n\":1}}");
    tp__hub_seal(hub, NULL);
    for (int i = 0; i < 500 && tp__committer_attempts(hub->committer) == attempts; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    /* Three more iterations, each with a write, while the first is stuck. */
    for (int k = 2; k <= 4; k++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"q\","
                 "\"patch\":{\"n\":%d}}",
                 k, k);
        tpt_feed(b, w);
        tp__hub_seal(hub, NULL);
    }
    uint64_t last = hub->epoch - 1;
    tp__committer_gate(hub->committer, 0);
    for (int i = 0; i < 2000 && tp__committer_durable(hub->committer) < last; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    tp__hub_collect(hub);
    uint64_t commits;
    tp__committer_stats(hub->committer, &commits, &failures, &group);
    cr_assert_eq(commits - commits0, 2, "the one in flight, then the three queued together");
    cr_assert_eq(group, 3);
    json_t *m = frames(b);
    cr_assert_eq(tpt_count(m, "ack"), 3);
    json_decref(m);
    tp_conn_close(a);
    tp_conn_close(b);
    tp_hub_free(hub);
    hub = open_hub(0);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "bob"), "q"), 4);
    tp_hub_free(hub);
}

Test(commit, a_failure_holds_frames_until_a_retry_stores_everything_once)
{
    tp_conn *a, *b;
    tp_hub *hub = two_tenants(&a, &b);
    cr_assert_eq(tp__store_memory_fail(store, TP__STORE_OP_COMMIT, 0, 1), TP_OK);
    pthread_mutex_lock(&mu);
    int w0 = wakes;
    pthread_mutex_unlock(&mu);
    tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"p\","
                "\"patch\":{\"n\":1}}");
    tp__hub_seal(hub, NULL);
    await_wakes(w0 + 1);
    tp__hub_collect(hub);
    cr_assert_eq(tp__hub_store_state(hub), TP__STORE_FAILING);
    cr_assert_eq(tp__hub_commit_pending(hub), 1, "the transaction waits for a retry");
    json_t *m = frames(a);
    cr_assert_eq(json_array_size(m), 0, "the ack is held");
    json_decref(m);
    /* Bob, with nothing held: his write is refused, at once. */
    tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"q\","
                "\"patch\":{\"n\":2}}");
    tp__hub_seal(hub, NULL);
    m = frames(b);
    cr_assert_eq(json_array_size(m), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "code")), "internal");
    json_decref(m);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "bob"), "q"), 1, "not applied");
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "p"), 2, "memory stays ahead");
    /* The retry (the server's timer) works: the ack goes, once. */
    tp__hub_commit_retry(hub);
    await_wakes(w0 + 2);
    tp__hub_collect(hub);
    cr_assert_eq(tp__hub_store_state(hub), TP__STORE_OK);
    m = frames(a);
    cr_assert_eq(json_array_size(m), 1);
    cr_assert_str_eq(type_of(m, 0), "ack");
    json_decref(m);
    tp_conn_close(a);
    tp_conn_close(b);
    tp_hub_free(hub);
    hub = open_hub(0);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "p"), 2);
    tp_hub_free(hub);
}

static void *
open_gate_later(void *arg)
{
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    tp__committer_gate(arg, 0);
    return NULL;
}

Test(commit, freeing_the_hub_stores_the_queued_transactions)
{
    tp_hub *hub = open_hub(1);
    tp_error err;
    tp_session *s = tp_hub_tenant(hub, "alice");
    cr_assert_not_null(tp_session_host_as(s, "p", doc, "{\"title\":\"p\"}", &err));
    tp__hub_seal(hub, NULL);
    tp__committer_gate(hub->committer, 1);
    for (int k = 1; k <= 3; k++) {
        char v[64];
        snprintf(v, sizeof v, "{\"title\":\"p\",\"n\":%d}", k);
        cr_assert_eq(tp_session_set(s, "p", v, &err), TP_OK);
        tp_hub_sync(hub);
        tp__hub_seal(hub, NULL);
    }
    cr_assert_lt(tp__committer_durable(hub->committer), hub->epoch - 1, "still queued");
    pthread_t t;
    pthread_create(&t, NULL, open_gate_later, hub->committer);
    tp_hub_free(hub); /* waits for the queue, then joins the thread */
    pthread_join(t, NULL);
    hub = open_hub(0);
    char *v = tp_session_get(tp_hub_tenant(hub, "alice"), "p");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"p\",\"n\":3}"), "%s", v);
    free(v);
    tp_hub_free(hub);
}

/* A scan's callback: keeps alice's model record. */
static int
grab(const tp__rec *r, void *user)
{
    if (strcmp(r->k2, "p") == 0)
        snprintf(user, 256, "%.*s", (int)r->body_len, r->body);
    return 0;
}

Test(commit, a_read_of_the_store_waits_for_the_transaction_in_flight)
{
    tp_hub *hub = open_hub(1);
    tp_error err;
    tp_session *s = tp_hub_tenant(hub, "alice");
    cr_assert_not_null(tp_session_host_as(s, "p", doc, "{\"title\":\"old\"}", &err));
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    tp__committer_gate(hub->committer, 1);
    cr_assert_eq(tp_session_set(s, "p", "{\"title\":\"new\"}", &err), TP_OK);
    tp_hub_sync(hub);
    tp__hub_seal(hub, NULL); /* in flight, stuck */
    pthread_t t;
    pthread_create(&t, NULL, open_gate_later, hub->committer);
    /* What a tenant's lazy load does: it sees the change in flight. */
    cr_assert_eq(tp__store_read_begin(hub, &err), TP_OK, "%s", err.message);
    char body[256] = "";
    cr_assert_eq(store->ops->scan(store, TP__REC_MODEL, "alice", NULL, grab, body, &err), TP_OK);
    tp__store_read_end(hub);
    pthread_join(t, NULL);
    cr_assert_not_null(strstr(body, "\"new\""), "%s", body);
    tp_hub_free(hub);
}

Test(commit, an_evicted_tenant_is_loaded_with_every_change_made_since)
{
    int64_t now = 1700000000000;
    tp_hub_config cfg = {0};
    cfg.store = store;
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.evict_idle_ms = 1;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    tp__hub_set_wake(hub, on_wake, NULL);
    cr_assert_not_null(tp_hub_share_as(hub, "doc", doc, "{\"title\":\"s\"}", NULL, &err));
    cr_assert_eq(tp_hub_subscribe(hub, "carol", "doc", TP_READ), TP_OK);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    now += 10;
    tp__hub_collect(hub);
    cr_assert_geq(tp_hub_evict(hub), 1, "carol leaves memory");
    /* Carol's access changes while she is out of memory: loaded for it,
     * changed, and the change is in flight when she is evicted... */
    tp__committer_gate(hub->committer, 1);
    cr_assert_eq(tp_hub_subscribe(hub, "carol", "doc", TP_WRITE), TP_OK);
    tp__hub_seal(hub, NULL);
    now += 10;
    cr_assert_eq(tp_hub_evict(hub), 0, "not before her change is durable");
    tp__committer_gate(hub->committer, 0);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    now += 10;
    cr_assert_geq(tp_hub_evict(hub), 1);
    tp_conn *c = tp_conn_open(hub, "carol", 0, &err); /* loaded again */
    cr_assert_not_null(c);
    tp_hub_commit(hub, NULL);
    json_t *m = frames(c);
    json_t *snap = tpt_find(m, "snapshot");
    cr_assert_not_null(snap);
    cr_assert_str_eq(json_string_value(json_object_get(snap, "access")), "write");
    json_decref(m);
    tp_conn_close(c);
    tp_hub_free(hub);
}
