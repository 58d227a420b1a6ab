/*
 * A hub on a store, freed and made again on the same store: everything the
 * first one acknowledged is what the second one holds (issue 5). The memory
 * backend stands in for SQLite here (tests/unit/store/test_store.c checks
 * both backends keep records alike); its failure injection makes commits
 * fail to show that frames are held and nothing is lost.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/hub.h"
#include "core/model.h"
#include "core/notes.h"
#include "core/schema.h"
#include "core/session.h"
#include "store/store.h"
#include "support.h"
#include "transports.h"
#include "util/prp.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"                                      \
    "\"title\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}},\"required\":[\"title\"]}"
#define MAP                                                                                        \
    "{\"title\":\"Map\",\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}"

static tp_store *store;
static tp_schema *doc, *map;
static int64_t now = 1700000000000;

/* A custom strategy: keeps the greatest n ever written. */
static json_t *
max_merge(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
          tp_error *err)
{
    (void)user, (void)origin, (void)err;
    json_t *out = json_deep_copy(current);
    json_int_t have = json_integer_value(json_object_get(current, "n"));
    json_int_t want = json_integer_value(json_object_get(patch, "n"));
    json_object_set_new(out, "n", json_integer(want > have ? want : have));
    return out;
}
static const tp_merge keep_max = {"keep-max", max_merge, NULL};
static const tp_merge *const merges[] = {&keep_max, NULL};

static tp_hub *
open_hub(void)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.store = store;
    cfg.merges = merges;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    return hub;
}

static void
setup(void)
{
    store = tp_store_memory();
    cr_assert_not_null(store);
    tp_error err;
    doc = tp_schema_new(DOC, &err);
    map = tp_schema_new(MAP, &err);
    cr_assert(doc && map);
}

static void
teardown(void)
{
    tp_schema_free(doc);
    tp_schema_free(map);
    tp_store_free(store);
}

TestSuite(restore, .init = setup, .fini = teardown);

static void
assert_json_text(char *got, const char *want)
{
    cr_assert_not_null(got);
    cr_assert(tpt_json_text_eq(got, want), "got %s, want %s", got, want);
    free(got);
}

static json_t *
reply(tp_conn *c, const char *text)
{
    cr_assert_eq(tpt_feed(c, text), TP_OK);
    json_t *m = tpt_drain(c);
    cr_assert_geq(json_array_size(m), 1);
    json_t *last = json_incref(json_array_get(m, json_array_size(m) - 1));
    json_decref(m);
    return last;
}

/* reply, or with strict 0 (store failures injected) the last message if
 * any: the answer may be held until a commit succeeds. */
static json_t *
say(tp_conn *c, const char *text, int strict)
{
    if (strict)
        return reply(c, text);
    cr_assert_eq(tpt_feed(c, text), TP_OK);
    json_t *m = tpt_drain(c);
    json_t *last = json_incref(json_array_get(m, json_array_size(m) - 1));
    json_decref(m);
    return last;
}

/* Every model's value and rev, as one JSON text: what must survive. */
static char *
state(tp_hub *hub)
{
    json_t *o = json_object();
    const char *sids[] = {"doc", "map", "max", NULL};
    for (int i = 0; sids[i]; i++) {
        char *v = tp_hub_get_shared(hub, sids[i]);
        json_object_set_new(o, sids[i],
                            json_pack("{s:o,s:I}", "value",
                                      v ? json_loads(v, 0, NULL) : json_null(), "rev",
                                      (json_int_t)tp_hub_shared_rev(hub, sids[i])));
        free(v);
    }
    const char *tenants[] = {"alice", "bob", NULL};
    for (int i = 0; tenants[i]; i++)
        for (int k = 1; k <= 3; k++) {
            char id[8], key[32];
            snprintf(id, sizeof id, "%d", k);
            snprintf(key, sizeof key, "%s/%s", tenants[i], id);
            tp_session *s = tp_hub_tenant(hub, tenants[i]);
            char *v = tp_session_get(s, id);
            json_object_set_new(o, key,
                                json_pack("{s:o,s:I}", "value",
                                          v ? json_loads(v, 0, NULL) : json_null(), "rev",
                                          (json_int_t)tp_session_rev(s, id)));
            free(v);
        }
    char *text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return text;
}

/* A scripted mix on every kind of model; returns bob's last ack. strict:
 * every write must be acked (no store failure is injected). */
/*
 * A host call that the hub refuses while the store fails (a change refused
 * with TP_EINTERNAL, a tenant that cannot be loaded) is made again once a
 * commit succeeds; with strict, it must succeed at once. Memory never goes
 * back, so a refused call changed nothing and may simply be repeated.
 */
#define HOST(strict, ok)                                                                           \
    do {                                                                                           \
        if (!(ok)) {                                                                               \
            cr_assert(!(strict), "refused with no store failure: " #ok);                           \
            cr_assert_eq(tp_hub_commit(hub, NULL), TP_OK, "the store works again");                \
            cr_assert(ok, "after a commit succeeded: " #ok);                                       \
        }                                                                                          \
    } while (0)

static json_t *
script_run(tp_hub *hub, int strict)
{
    tp_error err;
    tp_session *alice = NULL;
    HOST(strict, (alice = tp_hub_tenant(hub, "alice")) != NULL);
    const char *id = NULL;
    HOST(strict, (id = tp_session_host(alice, doc, "{\"title\":\"a1\"}", &err)) != NULL);
    cr_assert_str_eq(id, "1");
    HOST(strict, (id = tp_session_host(alice, doc, "{\"title\":\"a2\"}", &err)) != NULL);
    cr_assert_str_eq(id, "2");
    HOST(strict, (id = tp_session_host(alice, doc, "{\"title\":\"a3\"}", &err)) != NULL);
    cr_assert_str_eq(id, "3");
    HOST(strict, tp_session_delete(alice, "2") == TP_OK);
    HOST(strict, tp_hub_share_as(hub, "doc", doc, "{\"title\":\"shared\"}", NULL, &err) != NULL);
    HOST(strict, tp_hub_share_as(hub, "map", map, "{}", &tp_lww_map_crdt, &err) != NULL);
    HOST(strict,
         tp_hub_share_as(hub, "max", doc, "{\"title\":\"m\",\"n\":1}", &keep_max, &err) != NULL);
    HOST(strict, tp_hub_share_as(hub, "tmp", doc, "{\"title\":\"t\"}", NULL, &err) != NULL);
    HOST(strict, tp_hub_subscribe(hub, "bob", "doc", TP_WRITE) == TP_OK);
    HOST(strict, tp_hub_subscribe(hub, "bob", "map", TP_WRITE) == TP_OK);
    HOST(strict, tp_hub_subscribe(hub, "bob", "max", TP_WRITE) == TP_OK);
    HOST(strict, tp_hub_subscribe(hub, "alice", "map", TP_READ) == TP_OK);
    HOST(strict, tp_hub_subscribe(hub, "alice", "tmp", TP_READ) == TP_OK);
    HOST(strict, tp_hub_unshare(hub, "tmp") == TP_OK);

    tp_conn *b = NULL;
    HOST(strict, (b = tp_conn_open(hub, "bob", 0, &err)) != NULL);
    json_decref(tpt_drain(b));
    json_decref(say(b, "{\"type\":\"ping\",\"ref\":0,\"client\":\"bob-phone\"}", strict));
    json_t *last = NULL;
    for (int i = 1; i <= 20; i++) {
        char w[256];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"shared\",\"id\":\"%s\",\"patch\":"
                 "{\"%s\":%d}}",
                 i,
                 i % 3 == 0   ? "map"
                 : i % 3 == 1 ? "doc"
                              : "max",
                 i % 3 == 0   ? (i % 2 ? "x" : "y")
                 : i % 3 == 1 ? "title"
                              : "n",
                 i);
        if (i % 3 == 1) /* doc's title is a string */
            snprintf(w, sizeof w,
                     "{\"type\":\"write\",\"ref\":%d,\"scope\":\"shared\",\"id\":\"doc\","
                     "\"patch\":{\"title\":\"t%d\"}}",
                     i, i);
        json_decref(last);
        last = say(b, w, strict);
        if (strict)
            cr_assert_str_eq(json_string_value(json_object_get(last, "type")), "ack", "write %d",
                             i);
        now += 7;
    }
    /* A deletion in the lww-map: a tombstone. */
    json_decref(last);
    last = say(b,
               "{\"type\":\"write\",\"ref\":21,\"scope\":\"shared\",\"id\":\"map\",\"patch\":"
               "{\"x\":null}}",
               strict);
    if (strict)
        cr_assert_str_eq(json_string_value(json_object_get(last, "type")), "ack");
    /* A refused write is remembered as refused. */
    json_t *refused = say(b,
                          "{\"type\":\"write\",\"ref\":22,\"scope\":\"shared\",\"id\":\"doc\","
                          "\"patch\":{\"title\":5}}",
                          strict);
    cr_assert(!strict || refused != NULL);
    if (refused != NULL)
        cr_assert_str_eq(json_string_value(json_object_get(refused, "type")), "error");
    json_decref(refused);
    /* Host-side changes. */
    HOST(strict, tp_session_set(alice, "3", "{\"title\":\"a3 v2\",\"n\":3}", &err) == TP_OK);
    HOST(strict, tp_hub_set_shared(hub, "doc", "{\"title\":\"host\"}", &err) == TP_OK);
    int published = tp_hub_sync(hub);
    cr_assert(!strict || published >= 2);
    HOST(strict, tp_hub_subscribe(hub, "bob", "doc", TP_READ) == TP_OK); /* an access change */
    tpt_drain_all(hub);
    tp_conn_close(b);
    return last;
}

static json_t *
script(tp_hub *hub)
{
    return script_run(hub, 1);
}

Test(restore, a_new_hub_on_the_store_holds_what_the_last_acknowledged)
{
    tp_hub *hub = open_hub();
    cr_assert_eq(tp_hub_restored(hub), 0, "an empty store");
    json_t *last = script(hub);
    char *before = state(hub);
    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    cr_assert_gt(st.commits, 0);
    tp_hub_free(hub);

    hub = open_hub();
    cr_assert_eq(tp_hub_restored(hub), 1);
    char *after = state(hub);
    cr_assert_str_eq(after, before, "every model, value and rev");
    free(after);
    free(before);
    cr_assert_eq(tp_hub_shared_rev(hub, "tmp"), TP_ENOTFOUND, "unshared stays unshared");
    cr_assert_null(tp_session_get(tp_hub_tenant(hub, "alice"), "2"), "deleted stays deleted");
    /* The next assigned ids go on from where they were. */
    tp_error err;
    cr_assert_str_eq(tp_session_host(tp_hub_tenant(hub, "alice"), doc, "{\"title\":\"a4\"}", &err),
                     "4");
    cr_assert_str_eq(tp_hub_share(hub, doc, "{\"title\":\"s\"}", NULL, &err), "s1");

    /* Subscriptions and access: bob sees doc (read, changed), map, max. */
    tp_conn *b = tp_conn_open(hub, "bob", 0, &err);
    json_t *m = tpt_drain(b);
    cr_assert_eq(tpt_count(m, "snapshot"), 3);
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *e = json_array_get(m, i);
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id && strcmp(id, "doc") == 0)
            cr_assert_str_eq(json_string_value(json_object_get(e, "access")), "read");
    }
    json_decref(m);

    /* Exactly once: bob's phone resends its last write and gets the same ack. */
    json_decref(reply(b, "{\"type\":\"ping\",\"ref\":0,\"client\":\"bob-phone\"}"));
    json_t *again = reply(b, "{\"type\":\"write\",\"ref\":21,\"scope\":\"shared\",\"id\":\"map\","
                             "\"patch\":{\"x\":null}}");
    cr_assert(json_equal(again, last), "the stored outcome, not a second application");
    json_decref(again);
    json_decref(last);
    again = reply(b, "{\"type\":\"write\",\"ref\":22,\"scope\":\"shared\",\"id\":\"doc\","
                     "\"patch\":{\"title\":5}}");
    cr_assert_str_eq(json_string_value(json_object_get(again, "code")), "invalid");
    json_decref(again);

    /* lww-map: x's tombstone keeps its stamp; a write stamped before it loses. */
    json_t *r = reply(b, "{\"type\":\"write\",\"ref\":23,\"scope\":\"shared\",\"id\":\"map\","
                         "\"patch\":{\"x\":99},\"ts\":{\"wall\":1,\"count\":0}}");
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "ack");
    json_decref(r);
    char *v = tp_hub_get_shared(hub, "map");
    cr_assert_null(strstr(v, "\"x\""), "the old write lost to the stored tombstone: %s", v);
    free(v);
    /* The custom strategy is back, by name: a smaller n does not win. */
    json_decref(reply(b, "{\"type\":\"write\",\"ref\":24,\"scope\":\"shared\",\"id\":\"max\","
                         "\"patch\":{\"n\":0}}"));
    v = tp_hub_get_shared(hub, "max");
    cr_assert_not_null(strstr(v, "\"n\":20"), "%s", v);
    free(v);
    tp_conn_close(b);
    tp_hub_free(hub);
}

Test(restore, resume_after_restart_gets_patches_not_snapshots)
{
    tp_hub *hub = open_hub();
    json_decref(script(hub));
    int64_t rev = tp_hub_shared_rev(hub, "map");
    tp_hub_free(hub);

    hub = open_hub();
    tp_conn *c = tp_conn_open(hub, "bob", 0, NULL);
    json_decref(tpt_drain(c));
    json_decref(reply(c, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                         "\"patch\":{\"z\":1}}"));
    tpt_drain_all(hub);
    tp_conn_close(c);
    c = tp_conn_open(hub, "bob", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(c));
    char q[256];
    snprintf(
        q, sizeof q,
        "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"map\",\"rev\":%lld}]}",
        (long long)(rev - 3));
    tpt_feed(c, q);
    json_t *m = tpt_drain(c);
    /* map: the three stored patches before the restart and the new one. */
    size_t patches = 0;
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *e = json_array_get(m, i);
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id != NULL && strcmp(id, "map") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(e, "type")), "patch");
            patches++;
        }
    }
    cr_assert_eq(patches, 4);
    json_decref(m);
    tp_conn_close(c);
    tp_hub_free(hub);
}

/* Changed from the undo semantics (a failed commit rolled memory back and
 * told the writer `internal`): now memory stays ahead, the frames wait, new
 * writes are refused, and everything is delivered and stored, once, when
 * the store recovers. */
Test(restore, a_failed_commit_holds_its_frames_and_refuses_writes_until_the_store_recovers)
{
    tp_hub *hub = open_hub();
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "map", map, "{}", &tp_lww_map_crdt, &err));
    cr_assert_eq(tp_hub_subscribe(hub, "bob", "map", TP_WRITE), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "carol", "map", TP_READ), TP_OK);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    tp_conn *b = tp_conn_open(hub, "bob", 0, &err);
    tp_conn *c = tp_conn_open(hub, "carol", 0, &err);
    json_decref(reply(b, "{\"type\":\"ping\",\"ref\":0,\"client\":\"b1\"}"));
    json_decref(tpt_drain(c));
    const char *w1 = "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                     "\"patch\":{\"a\":1}}";
    json_decref(reply(b, w1));
    cr_assert_eq(tp_hub_shared_rev(hub, "map"), 2);
    json_decref(tpt_drain(c));

    /* The next commit fails: a write, a ping and an invalid write in it. */
    cr_assert_eq(tp__store_memory_fail(store, TP__STORE_OP_COMMIT, 0, 1), TP_OK);
    const char *w2 = "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"map\","
                     "\"patch\":{\"a\":2,\"b\":2}}";
    tpt_feed(b, w2);
    tpt_feed(b, "{\"type\":\"ping\",\"ref\":7}");
    tpt_feed(b, "{\"type\":\"write\",\"ref\":3,\"scope\":\"shared\",\"id\":\"map\","
                "\"patch\":{\"a\":\"x\"}}");
    json_t *m = tpt_drain(b);
    cr_assert_eq(json_array_size(m), 0, "the patch, ack, pong and error wait behind the change");
    json_decref(m);
    m = tpt_drain(c);
    cr_assert_eq(json_array_size(m), 0, "the other subscriber sees nothing of it yet");
    json_decref(m);
    cr_assert_eq(tp_hub_shared_rev(hub, "map"), 3, "memory stays ahead: nothing is undone");
    char *v = tp_hub_get_shared(hub, "map");
    assert_json_text(v, "{\"a\":2,\"b\":2}");
    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    cr_assert_eq(st.commit_failures, 1);
    cr_assert_eq(tp__hub_store_state(hub), TP__STORE_FAILING);

    /* While failing: a new write is refused with internal naming the
     * storage failure, and that error leaves at once (nothing to wait for
     * on carol's side, who has nothing held). */
    tp_conn *c2 = tp_conn_open(hub, "carol", 0, &err);
    cr_assert_not_null(c2);
    json_decref(tpt_drain(c2));
    cr_assert_eq(tp_hub_set_shared(hub, "map", "{\"z\":1}", &err), TP_EINTERNAL);
    cr_assert_not_null(strstr(err.message, "injected"), "%s", err.message);
    cr_assert_eq(tp_hub_subscribe(hub, "dave", "map", TP_READ), TP_EINTERNAL);

    /* The store is back (a retry is just another commit): everything held
     * goes out, once, in order. */
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    cr_assert_eq(tp__hub_store_state(hub), TP__STORE_OK);
    m = tpt_drain(b);
    cr_assert_eq(json_array_size(m), 4, "patch, ack, pong, error");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "type")), "patch");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(m, 0), "rev")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 1), "type")), "ack");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 2), "type")), "pong");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 3), "code")), "invalid");
    json_decref(m);
    m = tpt_drain(c);
    cr_assert_eq(tpt_count(m, "patch"), 1);
    json_decref(m);
    /* Sent again, the write is answered with its outcome, not applied again. */
    json_t *r = reply(b, w2);
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "ack");
    json_decref(r);
    cr_assert_eq(tp_hub_shared_rev(hub, "map"), 3);
    tp_conn_close(b);
    tp_conn_close(c);
    tp_conn_close(c2);
    tp_hub_free(hub);

    hub = open_hub();
    v = tp_hub_get_shared(hub, "map");
    assert_json_text(v, "{\"a\":2,\"b\":2}");
    cr_assert_eq(tp_hub_shared_rev(hub, "map"), 3);
    tp_hub_free(hub);
}

Test(restore, a_write_refused_while_the_store_fails_is_answered_at_once)
{
    tp_hub *hub = open_hub();
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "map", map, "{}", &tp_lww_map_crdt, &err));
    cr_assert_eq(tp_hub_subscribe(hub, "bob", "map", TP_WRITE), TP_OK);
    tp_session *alice = tp_hub_tenant(hub, "alice");
    cr_assert_not_null(tp_session_host_as(alice, "p", doc, "{\"title\":\"p\"}", &err));
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    tp_conn *b = tp_conn_open(hub, "bob", 0, &err);
    json_decref(reply(b, "{\"type\":\"ping\",\"ref\":0,\"client\":\"b1\"}"));
    /* Every commit fails from now on; alice's change (bob sees nothing of
     * it) is the one that cannot be stored. */
    cr_assert_eq(tp__store_memory_fail(store, TP__STORE_OP_COMMIT, 0, -1), TP_OK);
    cr_assert_eq(tp_session_set(alice, "p", "{\"title\":\"q\"}", &err), TP_OK);
    tp_hub_sync(hub);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_EINTERNAL);
    json_t *r = reply(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                         "\"patch\":{\"a\":1}}");
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(r, "code")), "internal");
    cr_assert_not_null(strstr(json_string_value(json_object_get(r, "message")), "storage"));
    json_decref(r);
    cr_assert_eq(tp_hub_shared_rev(hub, "map"), 1, "not applied");
    /* A ping is answered too: it reveals nothing. */
    r = reply(b, "{\"type\":\"ping\",\"ref\":5}");
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "pong");
    json_decref(r);
    /* The store is back: the write sent again is applied, once. */
    cr_assert_eq(tp__store_memory_fail(store, 0, 0, 0), TP_OK);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    r = reply(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                 "\"patch\":{\"a\":1}}");
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "ack");
    json_decref(r);
    cr_assert_eq(tp_hub_shared_rev(hub, "map"), 2);
    tp_conn_close(b);
    tp_hub_free(hub);
    hub = open_hub();
    char *v = tp_session_get(tp_hub_tenant(hub, "alice"), "p");
    assert_json_text(v, "{\"title\":\"q\"}");
    tp_hub_free(hub);
}

Test(restore, host_changes_outlive_a_failed_commit)
{
    tp_hub *hub = open_hub();
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "doc", doc, "{\"title\":\"v1\"}", NULL, &err));
    tp_session *alice = tp_hub_tenant(hub, "alice");
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    cr_assert_eq(tp__store_memory_fail(store, TP__STORE_OP_COMMIT, 0, 1), TP_OK);
    cr_assert_eq(tp_hub_set_shared(hub, "doc", "{\"title\":\"v2\"}", &err), TP_OK);
    cr_assert_eq(tp_hub_sync(hub), 1);
    cr_assert_not_null(tp_session_host_as(alice, "n", doc, "{\"title\":\"n\"}", &err));
    cr_assert_eq(tp_hub_commit(hub, &err), TP_EINTERNAL);
    cr_assert_not_null(strstr(err.message, "injected"), "%s", err.message);
    /* Nothing undone: the published value and the hosted model stay. */
    cr_assert_eq(tp_hub_shared_rev(hub, "doc"), 2);
    char *v = tp_hub_get_shared(hub, "doc");
    assert_json_text(v, "{\"title\":\"v2\"}");
    cr_assert_null(tp_session_host_as(alice, "m", doc, "{\"title\":\"m\"}", &err),
                   "refused while the store fails");
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    tp_hub_free(hub);
    hub = open_hub();
    cr_assert_eq(tp_hub_shared_rev(hub, "doc"), 2);
    v = tp_session_get(tp_hub_tenant(hub, "alice"), "n");
    assert_json_text(v, "{\"title\":\"n\"}");
    tp_hub_free(hub);
}

/* The scripted mix with the k-th store call failing, for every k: nothing
 * crashes or leaks, and what a new hub restores equals what the failed-on
 * hub held at its end (memory equal to disk). */
Test(restore, a_failure_at_every_store_call_leaves_memory_equal_to_disk)
{
    long calls = 0;
    for (long k = 0;; k++) {
        tp_store_free(store);
        store = tp_store_memory();
        cr_assert_eq(tp__store_memory_fail(store, TP__STORE_OP_ALL & ~TP__STORE_OP_SCAN, k, 1),
                     TP_OK);
        tp_hub *hub = open_hub();
        json_decref(script_run(hub, 0));
        tp_hub_sync(hub); /* host values undone by a failure are pending again */
        cr_assert_eq(tp_hub_commit(hub, NULL), TP_OK, "the store works again");
        char *before = state(hub);
        tp_hub_stats st;
        tp_hub_get_stats(hub, &st);
        tp_hub_free(hub);
        hub = open_hub();
        char *after = state(hub);
        cr_assert_str_eq(after, before, "failure at store call %ld", k);
        free(before);
        free(after);
        tp_hub_free(hub);
        calls = k;
        if (st.commit_failures == 0)
            break; /* k is past the last call: every call has failed once */
    }
    cr_assert_gt(calls, 20, "the script makes %ld store calls", calls);
}

Test(restore, a_missing_custom_merge_is_named)
{
    tp_hub *hub = open_hub();
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "max", doc, "{\"title\":\"m\"}", &keep_max, &err));
    tp_hub_free(hub);
    tp_hub_config cfg = {0};
    cfg.store = store;
    cr_assert_null(tp_hub_new(&cfg, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_not_null(strstr(err.message, "keep-max"), "%s", err.message);
    cr_assert_null(store->hub, "the store is free again");
}

Test(restore, one_store_serves_one_hub)
{
    tp_hub *hub = open_hub();
    tp_hub_config cfg = {0};
    cfg.store = store;
    tp_error err;
    cr_assert_null(tp_hub_new(&cfg, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_not_null(strstr(err.message, "store"));
    tp_hub_free(hub);
}

Test(restore, deleted_and_released_records_leave_the_store)
{
    tp_hub *hub = open_hub();
    tp_error err;
    tp_session *alice = tp_hub_tenant(hub, "alice");
    cr_assert_not_null(tp_session_host_as(alice, "x", doc, "{\"title\":\"x\"}", &err));
    /* A tenant only a connection made, with a client record: released with it. */
    tp_conn *c = tp_conn_open(hub, "passer-by", 0, &err);
    json_decref(reply(c, "{\"type\":\"ping\",\"ref\":0,\"client\":\"p\"}"));
    tpt_drain_all(hub);
    tp_conn_close(c);
    cr_assert_eq(tp_session_delete(alice, "x"), TP_OK);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    cr_assert_eq(tp__store_memory_count(store, TP__REC_MODEL), 0);
    cr_assert_eq(tp__store_memory_count(store, TP__REC_CLIENT), 0);
    cr_assert_eq(tp__store_memory_count(store, TP__REC_HIST), 0);
    tp_hub_free(hub);
}

/* ---- Tenants leave memory and come back ---- */

static tp_hub *
open_hub_evicting(unsigned idle_ms, size_t budget)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.store = store;
    cfg.merges = merges;
    cfg.evict_idle_ms = idle_ms;
    cfg.memory_budget = budget;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    return hub;
}

Test(restore, idle_tenants_are_evicted_and_loaded_again)
{
    tp_hub *hub = open_hub_evicting(1000, 0);
    json_t *last = script(hub);
    char *before = state(hub);
    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    cr_assert_geq(st.models_private, 2);

    cr_assert_eq(tp_hub_evict(hub), 0, "nobody has been idle long enough");
    tp_conn *keep = tp_conn_open(hub, "carol", 0, NULL); /* connected: stays */
    json_decref(tpt_drain(keep));
    now += 1001;
    cr_assert_eq(tp_hub_evict(hub), 2, "alice (pinned: emptied) and bob (freed)");
    tp_hub_get_stats(hub, &st);
    cr_assert_eq(st.models_private, 0);
    cr_assert_eq(st.evictions, 2);
    /* Every model reads the same: alice's come back when the host asks. */
    char *after = state(hub);
    cr_assert_str_eq(after, before);
    free(after);
    tp_hub_get_stats(hub, &st);
    cr_assert_geq(st.loads, 2);

    /* bob comes back on connecting: subscriptions, access, client record. */
    now += 1001;
    cr_assert_geq(tp_hub_evict(hub), 1);
    tp_conn *b = tp_conn_open(hub, "bob", 0, NULL);
    json_t *m = tpt_drain(b);
    cr_assert_eq(tpt_count(m, "snapshot"), 3);
    json_decref(m);
    json_decref(reply(b, "{\"type\":\"ping\",\"ref\":0,\"client\":\"bob-phone\"}"));
    json_t *again = reply(b, "{\"type\":\"write\",\"ref\":21,\"scope\":\"shared\",\"id\":\"map\","
                             "\"patch\":{\"x\":null}}");
    cr_assert(json_equal(again, last), "exactly once across an eviction");
    json_decref(again);
    json_decref(last);
    /* lww-map stamps name bob after his session was freed: still sound. */
    json_t *r = reply(b, "{\"type\":\"write\",\"ref\":30,\"scope\":\"shared\",\"id\":\"map\","
                         "\"patch\":{\"y\":1},\"ts\":{\"wall\":1,\"count\":0}}");
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "ack");
    json_decref(r);
    tp_conn_close(b);
    tp_conn_close(keep);
    free(before);
    tp_hub_free(hub);
}

Test(restore, over_the_budget_the_least_recently_used_go_first)
{
    tp_hub *hub = open_hub_evicting(3600 * 1000, 1);
    tp_error err;
    for (int i = 0; i < 5; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d", i);
        tp_session *s = tp_hub_tenant(hub, t);
        cr_assert_not_null(tp_session_host_as(s, "doc", doc, "{\"title\":\"x\"}", &err));
        now += 10;
    }
    tp_conn *c = tp_conn_open(hub, "t0", 0, NULL);
    json_decref(tpt_drain(c));
    cr_assert_eq(tp_hub_evict(hub), 4, "all but the connected one, idle or not");
    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    cr_assert_eq(st.models_private, 1);
    cr_assert_gt(st.resident_bytes, 0);
    char *v = tp_session_get(tp_hub_tenant(hub, "t3"), "doc");
    assert_json_text(v, "{\"title\":\"x\"}");
    tp_conn_close(c);
    tp_hub_free(hub);
}

Test(restore, unshared_while_evicted_is_gone_when_loaded)
{
    tp_hub *hub = open_hub_evicting(1, 0);
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "doc", doc, "{\"title\":\"d\"}", NULL, &err));
    cr_assert_eq(tp_hub_subscribe(hub, "dave", "doc", TP_READ), TP_OK);
    now += 10;
    cr_assert_eq(tp_hub_evict(hub), 1);
    cr_assert_eq(tp_hub_unshare(hub, "doc"), TP_OK);
    tp_conn *c = tp_conn_open(hub, "dave", 0, NULL);
    json_t *m = tpt_drain(c);
    cr_assert_eq(tpt_count(m, "snapshot"), 0);
    json_decref(m);
    tp_conn_close(c);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    cr_assert_eq(tp__store_memory_count(store, TP__REC_SUB), 0, "its record went too");
    tp_hub_free(hub);
}

/* "c" and 16 lowercase hex digits. */
static int
is_conn_id(const char *id)
{
    if (strlen(id) != 17 || id[0] != 'c')
        return 0;
    for (int i = 1; i < 17; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

Test(restore, connection_ids_are_never_used_twice)
{
    char ids[6][24];
    for (int round = 0; round < 2; round++) {
        tp_hub *hub = open_hub();
        for (int k = 0; k < 3; k++) {
            tp_conn *c = tp_conn_open(hub, "x", 0, NULL);
            json_decref(tpt_drain(c));
            snprintf(ids[3 * round + k], sizeof ids[0], "%s", tp_conn_id(c));
            cr_assert(is_conn_id(tp_conn_id(c)), "%s", tp_conn_id(c));
            tp_conn_close(c);
        }
        tp_hub_free(hub);
    }
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(ids[i], ids[j], "an id used twice, across a restart too");
}

/* Issue 11: ids are a keyed permutation of the count (they tell nothing of
 * it), and the key is stored with the hub: a hub made again on the store,
 * even with another key in its config, goes on with the stored one. */
Test(restore, connection_ids_follow_the_stored_key)
{
    unsigned char k1[16] = {1, 2, 3}, k2[16] = {9, 9, 9};
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.store = store;
    memcpy(cfg.conn_key, k1, sizeof k1);
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    char want[24];
    uint64_t prev = 0;
    for (uint64_t n = 1; n <= 3; n++) {
        tp_conn *c = tp_conn_open(hub, "x", 0, NULL);
        snprintf(want, sizeof want, "c%016llx", (unsigned long long)tp__prp64(k1, n));
        cr_assert_str_eq(tp_conn_id(c), want);
        uint64_t v = strtoull(tp_conn_id(c) + 1, NULL, 16);
        cr_assert_neq(v, n, "the id is not the count");
        if (n > 1)
            cr_assert_neq(v, prev + 1, "nor a counter");
        prev = v;
        tp_conn_close(c);
    }
    tp_hub_free(hub);
    memcpy(cfg.conn_key, k2, sizeof k2);
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    tp_conn *c = tp_conn_open(hub, "x", 0, NULL);
    /* The next block of numbers, under the stored key k1. */
    snprintf(want, sizeof want, "c%016llx", (unsigned long long)tp__prp64(k1, 1024 + 1));
    cr_assert_str_eq(tp_conn_id(c), want);
    tp_conn_close(c);
    tp_hub_free(hub);
}

/* ---- A store that holds nonsense ---- */

static void
put_raw(tp__rec_kind kind, const char *k1, const char *k2, int64_t n, const char *body)
{
    tp__rec r = {kind, k1, k2, n, body, strlen(body)};
    tp_error err;
    cr_assert_eq(store->ops->put(store, &r, &err), TP_OK, "%s", err.message);
}

static int
grab_body(const tp__rec *r, void *user)
{
    *(json_t **)user = json_loadb(r->body, r->body_len, 0, NULL);
    return 0;
}

/* A hub stored once, with a shared model "doc" and alice's private "n". */
static void
good_store(void)
{
    tp_hub *hub = open_hub();
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "doc", doc, "{\"title\":\"d\"}", NULL, &err));
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"n\"}", &err));
    tp_hub_free(hub);
}

Test(restore, corrupt_hub_records_refuse_the_hub_with_a_message)
{
    static const struct {
        const char *k1, *k2, *body, *want;
    } bad[] = {
        {"", "doc", "{not json", "not JSON"},
        {"", "doc", "{\"schema\":\"x\",\"rev\":1,\"reborn\":0,\"value\":[]}", "expected schema"},
        {"", "doc", "{\"schema\":\"0000000000000000\",\"rev\":1,\"reborn\":0,\"value\":{}}",
         "its schema is not stored"},
        {"", "doc", "{\"schema\":\"x\",\"rev\":0,\"reborn\":0,\"value\":{}}", "expected schema"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tp_store_free(store);
        store = tp_store_memory();
        good_store();
        put_raw(TP__REC_MODEL, bad[i].k1, bad[i].k2, 0, bad[i].body);
        tp_hub_config cfg = {0};
        cfg.store = store;
        tp_error err;
        cr_assert_null(tp_hub_new(&cfg, &err), "case %zu accepted", i);
        cr_assert_not_null(strstr(err.message, bad[i].want), "case %zu: %s", i, err.message);
        cr_assert_not_null(strstr(err.message, "\"doc\""), "names the record: %s", err.message);
        cr_assert_null(store->hub, "the store is free again");
    }
    /* A schema record that is not a schema, and stamps of the wrong shape. */
    tp_store_free(store);
    store = tp_store_memory();
    good_store();
    put_raw(TP__REC_META, "schema:0000000000000001", "", 0, "[1,2]");
    tp_error err;
    tp_hub_config cfg = {0};
    cfg.store = store;
    cr_assert_null(tp_hub_new(&cfg, &err));
    tp_store_free(store);
    store = tp_store_memory();
    tp_hub *hub = open_hub();
    cr_assert_not_null(tp_hub_share_as(hub, "m", map, "{}", &tp_lww_map_crdt, &err));
    tp_conn *c = tp_conn_open(hub, "w", 0, &err);
    cr_assert_eq(tp_hub_subscribe(hub, "w", "m", TP_WRITE), TP_OK);
    json_decref(tpt_drain(c));
    json_decref(reply(c, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"m\","
                         "\"patch\":{\"x\":1}}"));
    tp_conn_close(c);
    tp_hub_free(hub);
    /* The stored record with its stamps of the wrong shape. */
    json_t *body = NULL;
    cr_assert_eq(store->ops->scan(store, TP__REC_MODEL, "", "m", grab_body, &body, &err), TP_OK);
    cr_assert_not_null(body);
    json_object_set_new(body, "stamps", json_pack("{s:[s]}", "x", "late"));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    put_raw(TP__REC_MODEL, "", "m", 0, text);
    free(text);
    cfg.store = store;
    cr_assert_null(tp_hub_new(&cfg, &err));
    cr_assert_not_null(strstr(err.message, "bad stamps"), "%s", err.message);
}

/* A tenant's records are read when it is first needed: one that is
 * corrupt refuses that tenant, not the hub nor the other tenants. */
Test(restore, a_corrupt_tenant_is_refused_alone)
{
    good_store();
    put_raw(TP__REC_OUTCOME, "alice", "phone", 1, "no ref here");
    put_raw(TP__REC_CLIENT, "alice", "phone", 0, "{\"highest\":1,\"seq\":1}");
    tp_hub *hub = open_hub();
    tp_error err;
    cr_assert_null(tp_conn_open(hub, "alice", 0, &err));
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert_not_null(strstr(err.message, "cannot be loaded"), "%s", err.message);
    tp_conn *b = tp_conn_open(hub, "bob", 0, &err);
    cr_assert_not_null(b, "%s", err.message);
    tp_conn_close(b);
    char *v = tp_hub_get_shared(hub, "doc");
    assert_json_text(v, "{\"title\":\"d\"}");
    tp_hub_free(hub);
}

/* ---- Exactly-once records are bounded in bytes (issue 11) ---- */

/* What client_record_bytes counts (docs/api.md): 64 plus the id per record,
 * 16 plus the message per outcome (stored as its ref, a space, the message). */
static int
sum_body(const tp__rec *r, void *user)
{
    if (r->kind == TP__REC_CLIENT) {
        *(size_t *)user += 64 + strlen(r->k2);
    } else {
        const char *sp = memchr(r->body, ' ', r->body_len);
        cr_assert_not_null(sp);
        *(size_t *)user += 16 + r->body_len - (size_t)(sp - r->body + 1);
    }
    return 0;
}

/* The bytes of a tenant's stored client records and outcomes. */
static size_t
stored_client_bytes(const char *tenant)
{
    size_t n = 0;
    tp_error err;
    cr_assert_eq(store->ops->scan(store, TP__REC_OUTCOME, tenant, NULL, sum_body, &n, &err), TP_OK);
    cr_assert_eq(store->ops->scan(store, TP__REC_CLIENT, tenant, NULL, sum_body, &n, &err), TP_OK);
    return n;
}

static tp_hub *
open_hub_capped(size_t client_bytes)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.store = store;
    cfg.limits.client_record_bytes = client_bytes;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    return hub;
}

/* n writes to alice's "n" from a connection named client, refs 1..n. */
static void
writes_as(tp_hub *hub, const char *client, int n)
{
    tp_conn *c = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(c));
    char w[200];
    snprintf(w, sizeof w, "{\"type\":\"ping\",\"ref\":0,\"client\":\"%s\"}", client);
    json_decref(reply(c, w));
    for (int i = 1; i <= n; i++) {
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\",\"patch\":"
                 "{\"n\":%d}}",
                 i, i);
        json_t *a = reply(c, w);
        cr_assert_str_eq(json_string_value(json_object_get(a, "type")), "ack");
        json_decref(a);
    }
    tpt_drain_all(hub);
    tp_conn_close(c);
}

Test(restore, a_tenant_cycling_client_ids_stays_within_its_bytes)
{
    /* 200 client ids with 50 writes each: about 0.9 MB of outcomes, kept
     * to 64 KiB; every client id after the first few evicts the oldest. */
    const size_t cap = 64 * 1024;
    tp_hub *hub = open_hub_capped(cap);
    tp_error err;
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"n\"}", &err));
    for (int k = 0; k < 200; k++) {
        char id[32];
        snprintf(id, sizeof id, "cycling-client-%d", k);
        writes_as(hub, id, 50);
        now += 1000;
    }
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    size_t stored = stored_client_bytes("alice");
    cr_assert_leq(stored, cap, "stored %zu bytes of client records", stored);
    cr_assert_gt(stored, cap / 2, "the cap is used, not emptied: %zu", stored);
    tp_hub_free(hub);
    /* Loaded again, the newest client still gets its outcomes back. */
    hub = open_hub_capped(cap);
    tp_conn *c = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(c));
    json_decref(reply(c, "{\"type\":\"ping\",\"ref\":0,\"client\":\"cycling-client-199\"}"));
    json_t *a = reply(c, "{\"type\":\"write\",\"ref\":50,\"scope\":\"private\",\"id\":\"n\","
                         "\"patch\":{\"n\":50}}");
    cr_assert_str_eq(json_string_value(json_object_get(a, "type")), "ack");
    cr_assert_eq(json_integer_value(json_object_get(a, "rev")), 200 * 50 + 1, "not applied again");
    json_decref(a);
    tp_conn_close(c);
    tp_hub_free(hub);
}

Test(restore, a_live_client_over_the_bytes_forgets_its_oldest_outcomes)
{
    /* One client held by a live connection cannot be evicted: its own
     * oldest outcomes go, and a resend of one of them is `duplicate`,
     * never applied twice. */
    tp_hub *hub = open_hub_capped(2000);
    tp_error err;
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"n\"}", &err));
    tp_conn *c = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(c));
    json_decref(reply(c, "{\"type\":\"ping\",\"ref\":0,\"client\":\"one\"}"));
    for (int i = 1; i <= 100; i++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\",\"patch\":"
                 "{\"n\":%d}}",
                 i, i);
        json_decref(reply(c, w));
    }
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
    size_t stored = stored_client_bytes("alice");
    cr_assert_leq(stored, 2000, "stored %zu", stored);
    json_t *e = reply(c, "{\"type\":\"write\",\"ref\":3,\"scope\":\"private\",\"id\":\"n\","
                         "\"patch\":{\"n\":3}}");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "duplicate");
    json_decref(e);
    e = reply(c, "{\"type\":\"write\",\"ref\":100,\"scope\":\"private\",\"id\":\"n\","
                 "\"patch\":{\"n\":100}}");
    cr_assert_str_eq(json_string_value(json_object_get(e, "type")), "ack");
    cr_assert_eq(json_integer_value(json_object_get(e, "rev")), 101);
    json_decref(e);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "n"), 101);
    tp_conn_close(c);
    tp_hub_free(hub);
}

static int
count_rec(const tp__rec *r, void *user)
{
    (void)r;
    (*(size_t *)user)++;
    return 0;
}

Test(restore, stored_patches_the_history_dropped_are_deleted_in_batches)
{
    /* journal.c deletes the patches the history no longer keeps once 32 of
     * them gathered: the store holds at most history_patches + 32, and what
     * is loaded again is the history as it was. */
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.store = store;
    cfg.limits.history_patches = 8;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"n\"}", &err));
    tp_conn *c = tp_conn_open(hub, "alice", 0, NULL);
    json_decref(tpt_drain(c));
    size_t most = 0;
    for (int i = 1; i <= 200; i++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\",\"patch\":"
                 "{\"n\":%d}}",
                 i, i);
        json_decref(reply(c, w));
        cr_assert_eq(tp_hub_commit(hub, &err), TP_OK);
        size_t rows = 0;
        cr_assert_eq(store->ops->scan(store, TP__REC_HIST, "alice", "n", count_rec, &rows, &err),
                     TP_OK);
        cr_assert_geq(rows, (size_t)(i < 8 ? i : 8), "the history's patches are stored: %zu", rows);
        cr_assert_leq(rows, 8 + 32, "write %d: %zu patches stored", i, rows);
        if (rows > most)
            most = rows;
    }
    cr_assert_gt(most, 8, "deleted in batches, not one by one");
    tp_conn_close(c);
    tp_hub_free(hub);
    /* Loaded again: a client 8 revs behind gets patches, one 9 behind a snapshot. */
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    for (int behind = 8; behind <= 9; behind++) {
        c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
        cr_assert_not_null(c);
        char r[160];
        snprintf(
            r, sizeof r,
            "{\"type\":\"resume\",\"models\":[{\"scope\":\"private\",\"id\":\"n\",\"rev\":%d}]}",
            201 - behind);
        json_decref(tpt_drain(c)); /* hello */
        cr_assert_eq(tpt_feed(c, r), TP_OK);
        json_t *got = tpt_drain(c);
        char *text = json_dumps(got, JSON_COMPACT);
        if (behind == 8)
            cr_assert_not_null(strstr(text, "\"patch\""), "%s", text);
        else
            cr_assert_not_null(strstr(text, "\"snapshot\""), "%s", text);
        free(text);
        json_decref(got);
        tp_conn_close(c);
    }
    tp_hub_free(hub);
}

/* A MODEL record's body as the journal encoded it with jansson (json_pack,
 * then json_dumps): what the piecewise encoding must still write. */
static char *
jansson_model_record(const tp__model *m)
{
    json_t *o = json_pack("{sssIsIsO}", "schema", tp__schema_key(m->schema), "rev",
                          (json_int_t)m->rev, "reborn", (json_int_t)m->reborn, "value", m->value);
    cr_assert_not_null(o);
    if (m->shared) {
        json_object_set_new(o, "merge", json_string(m->merge.name ? m->merge.name : ""));
        if (m->kind == TP__LWW_MAP) {
            json_t *st = json_object();
            void *v;
            for (size_t it = 0; tp__map_next(&m->stamps, &it, NULL, &v);) {
                const tp__stamp_entry *e = v;
                json_object_set_new(st, e->field,
                                    json_pack("[IIsI]", (json_int_t)e->st.wall,
                                              (json_int_t)e->st.count, e->st.tenant,
                                              (json_int_t)e->st.conn));
            }
            json_object_set_new(o, "stamps", st);
        }
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(o);
    cr_assert_not_null(text);
    return text;
}

struct records {
    tp_hub *hub;
    int n, stamped;
};

static int
compare_model_record(const tp__rec *r, void *user)
{
    struct records *c = user;
    const tp__model *m;
    if (r->k1[0] == '\0') {
        m = tp__map_get(&c->hub->shared, r->k2);
    } else {
        tp_session *s = tp__map_get(&c->hub->tenants, r->k1);
        cr_assert_not_null(s, "tenant %s", r->k1);
        m = tp__map_get(&s->models, r->k2);
    }
    cr_assert_not_null(m, "model %s/%s", r->k1, r->k2);
    char *want = jansson_model_record(m);
    cr_assert_eq(r->body_len, strlen(want), "%s/%s: %.*s against %s", r->k1, r->k2,
                 (int)r->body_len, r->body, want);
    cr_assert_eq(memcmp(r->body, want, r->body_len), 0, "%s/%s: %.*s against %s", r->k1, r->k2,
                 (int)r->body_len, r->body, want);
    c->stamped += strstr(want, "\"stamps\":{\"") != NULL;
    c->n++;
    free(want);
    return 0;
}

Test(restore, model_records_are_the_bytes_jansson_wrote_for_them)
{
    tp_hub *hub = open_hub();
    json_decref(script(hub));
    tp_error err;
    /* Every kind of JSON value, escapes, extreme integers and reals. */
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "rich", doc,
                           "{\"title\":\"q\\\"\\\\/\\u0001\\u00e9\\t\",\"n\":-9223372036854775808,"
                           "\"r\":[1.5,1e300,-0.0,0.1,true,false,null,{\"k\\n\":{},\"e\":[]}],"
                           "\"big\":9223372036854775807}",
                           &err),
        "%s", err.message);
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    struct records c = {hub, 0, 0};
    cr_assert_eq(tp__store_read_begin(hub, &err), TP_OK, "%s", err.message);
    cr_assert_eq(store->ops->scan(store, TP__REC_MODEL, NULL, NULL, compare_model_record, &c, &err),
                 TP_OK, "%s", err.message);
    tp__store_read_end(hub);
    cr_assert_geq(c.n, 6, "alice's three, doc, map, max");
    cr_assert_eq(c.stamped, 1, "the lww-map's stamps");
    tp_hub_free(hub);
}
