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

/* ---- A group's plan: ops a later op of the same commit makes pointless ---- */

/* A store that counts the writes it is given and passes them on. */
typedef struct counting {
    struct tp_store base;
    tp_store *inner;
    long puts, del_belows;
} counting;

static int
c_begin(tp_store *s, tp_error *err)
{
    return ((counting *)s)->inner->ops->begin(((counting *)s)->inner, err);
}
static int
c_put(tp_store *s, const tp__rec *r, tp_error *err)
{
    ((counting *)s)->puts++;
    return ((counting *)s)->inner->ops->put(((counting *)s)->inner, r, err);
}
static int
c_del(tp_store *s, tp__rec_kind k, const char *k1, const char *k2, int64_t n, tp_error *err)
{
    return ((counting *)s)->inner->ops->del(((counting *)s)->inner, k, k1, k2, n, err);
}
static int
c_del_below(tp_store *s, tp__rec_kind k, const char *k1, const char *k2, int64_t n, tp_error *err)
{
    ((counting *)s)->del_belows++;
    return ((counting *)s)->inner->ops->del_below(((counting *)s)->inner, k, k1, k2, n, err);
}
static int
c_del_key(tp_store *s, tp__rec_kind k, const char *k1, const char *k2, tp_error *err)
{
    return ((counting *)s)->inner->ops->del_key(((counting *)s)->inner, k, k1, k2, err);
}
static int
c_commit(tp_store *s, tp_error *err)
{
    return ((counting *)s)->inner->ops->commit(((counting *)s)->inner, err);
}
static void
c_rollback(tp_store *s)
{
    ((counting *)s)->inner->ops->rollback(((counting *)s)->inner);
}
static const tp__store_ops counting_ops = {"counting", c_begin,  c_put,      c_del, c_del_below,
                                           c_del_key,  c_commit, c_rollback, NULL,  NULL};

/* Everything a store holds, one line per record, in scan order. */
static int
dump_rec(const tp__rec *r, void *user)
{
    tp__sb *sb = user;
    char head[128];
    int n =
        snprintf(head, sizeof head, "%d|%s|%s|%lld|", (int)r->kind, r->k1, r->k2, (long long)r->n);
    tp__sb_append(sb, head, (size_t)n);
    tp__sb_append(sb, r->body, r->body_len);
    tp__sb_append(sb, "\n", 1);
    return 0;
}

static char *
dump_store(tp_store *st)
{
    tp__sb sb;
    tp__sb_init(&sb, 256);
    tp_error err;
    for (int k = 0; k < TP__REC_KINDS; k++)
        cr_assert_eq(st->ops->scan(st, (tp__rec_kind)k, NULL, NULL, dump_rec, &sb, &err), TP_OK);
    tp__sb_append(&sb, "", 1);
    char *s = strdup(sb.buf->data);
    tp__sb_free(&sb);
    return s;
}

/* Commits txns (numbered from 2) in one store commit on a counting store
 * over `inner`: an empty transaction 1 is held in flight by the gate while
 * they queue behind it. Returns the committer's skipped count. */
static uint64_t
commit_as_one_group(tp_store *inner, tp__txn **txns, int n, counting *cs)
{
    *cs = (counting){{&counting_ops, NULL}, inner, 0, 0};
    tp_error err;
    tp__committer *c = tp__committer_new(&cs->base, &err);
    cr_assert_not_null(c, "%s", err.message);
    tp__committer_gate(c, 1);
    tp__committer_push(c, tp__txn_new(1));
    for (int i = 0; i < 5000 && tp__committer_attempts(c) == 0; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    cr_assert_eq(tp__committer_attempts(c), 1, "the empty transaction is in flight");
    uint64_t last = 1;
    for (int i = 0; i < n; i++) {
        last = tp__txn_seq(txns[i]);
        tp__committer_push(c, txns[i]);
    }
    tp__committer_gate(c, 0);
    cr_assert_eq(tp__committer_wait(c, last, 0, &err), TP_OK, "%s", err.message);
    uint64_t commits, failures, group;
    tp__committer_stats(c, &commits, &failures, &group);
    cr_assert_eq(commits, 2, "the %d transactions went in one store commit", n);
    uint64_t skipped = tp__committer_skipped(c);
    tp__committer_free(c);
    return skipped;
}

Test(commit, a_record_put_by_every_transaction_of_a_group_is_written_once)
{
    tp__txn *txns[3];
    tp_error err;
    for (int i = 0; i < 3; i++) {
        char body[16];
        snprintf(body, sizeof body, "{\"rev\":%d}", i + 1);
        txns[i] = tp__txn_new((uint64_t)i + 2);
        tp__rec model = {TP__REC_MODEL, "alice", "p", 0, body, strlen(body)};
        tp__rec hist = {TP__REC_HIST, "alice", "p", i + 1, body, strlen(body)};
        cr_assert_eq(tp__txn_put(txns[i], &model, &err), TP_OK);
        cr_assert_eq(tp__txn_put(txns[i], &hist, &err), TP_OK);
        cr_assert_eq(tp__txn_del_below(txns[i], TP__REC_OUTCOME, "alice", "c1", i + 1, &err),
                     TP_OK);
    }
    counting cs;
    uint64_t skipped = commit_as_one_group(store, txns, 3, &cs);
    cr_assert_eq(cs.puts, 4, "one model record and three patches, not %ld puts", cs.puts);
    cr_assert_eq(cs.del_belows, 1, "the last del_below covers the others");
    cr_assert_eq(skipped, 4);
    char *got = dump_store(store);
    cr_assert_not_null(strstr(got, "|alice|p|0|{\"rev\":3}\n"), "the last put wins: %s", got);
    free(got);
}

/* Random groups of puts and deletes on a few keys: one store commit with
 * the plan must leave the store exactly as the transactions applied one
 * commit each, with no plan. */
Test(commit, a_planned_group_stores_what_the_transactions_one_by_one_store)
{
    unsigned seed = 20261207;
    /* Few keys, so that ops on one key meet within a group. */
    const char *k1s[] = {"a", "b"}, *k2s[] = {"p", "q"};
    const tp__rec_kind kinds[] = {TP__REC_HIST, TP__REC_OUTCOME};
    for (int round = 0; round < 500; round++) {
        tp_store *ref = tp_store_memory(), *got = tp_store_memory();
        int ntx = 1 + (int)(rand_r(&seed) % 6);
        tp__txn *txns[6];
        tp_error err;
        cr_assert_eq(ref->ops->begin(ref, &err), TP_OK);
        for (int i = 0; i < ntx; i++) {
            txns[i] = tp__txn_new((uint64_t)i + 2);
            int nops = (int)(rand_r(&seed) % 16);
            for (int k = 0; k < nops; k++) {
                tp__rec_kind kind = kinds[rand_r(&seed) % 2];
                const char *k1 = k1s[rand_r(&seed) % 8 == 0], *k2 = k2s[rand_r(&seed) % 2];
                int64_t n = rand_r(&seed) % 5;
                char body[32];
                snprintf(body, sizeof body, "r%d-t%d-o%d", round, i, k);
                switch (rand_r(&seed) % 5) {
                case 0:
                case 1: {
                    tp__rec r = {kind, k1, k2, n, body, strlen(body)};
                    cr_assert_eq(tp__txn_put(txns[i], &r, &err), TP_OK);
                    cr_assert_eq(ref->ops->put(ref, &r, &err), TP_OK);
                    break;
                }
                case 2:
                    cr_assert_eq(tp__txn_del(txns[i], kind, k1, k2, n, &err), TP_OK);
                    cr_assert_eq(ref->ops->del(ref, kind, k1, k2, n, &err), TP_OK);
                    break;
                case 3:
                    cr_assert_eq(tp__txn_del_below(txns[i], kind, k1, k2, n, &err), TP_OK);
                    cr_assert_eq(ref->ops->del_below(ref, kind, k1, k2, n, &err), TP_OK);
                    break;
                default: {
                    const char *kk = rand_r(&seed) % 2 ? k2 : NULL;
                    cr_assert_eq(tp__txn_del_key(txns[i], kind, k1, kk, &err), TP_OK);
                    cr_assert_eq(ref->ops->del_key(ref, kind, k1, kk, &err), TP_OK);
                    break;
                }
                }
            }
        }
        cr_assert_eq(ref->ops->commit(ref, &err), TP_OK);
        counting cs;
        commit_as_one_group(got, txns, ntx, &cs);
        char *want = dump_store(ref), *have = dump_store(got);
        cr_assert_str_eq(have, want, "round %d", round);
        free(want);
        free(have);
        tp_store_free(ref);
        tp_store_free(got);
    }
}
