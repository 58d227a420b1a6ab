/*
 * The client's protocol side (sans-IO) against a real hub in this process,
 * without sockets: the test carries the frames both ways, and decides which
 * to drop, delay or cut, so every interleaving is deterministic (a fake
 * clock and a seeded random generator).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "support.h"
#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"                                      \
    "\"title\":{\"type\":\"string\",\"maxLength\":20},"                                            \
    "\"body\":{\"type\":\"string\",\"default\":\"\"},"                                             \
    "\"n\":{\"type\":\"integer\",\"minimum\":0}},"                                                 \
    "\"required\":[\"title\"]}"

#define MAP                                                                                        \
    "{\"title\":\"Map\",\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}"

static tp_hub *hub;
static tp_schema *doc, *map;
static int64_t now = 1700000000000;

/* What a client's callbacks saw. */
typedef struct rec {
    int snapshots, patches, acks, errors, removed, access, states;
    int64_t error_ref;
    int error_code;
    char error_scope[16], error_id[16];
    char *error_value; /* the view the error callback got (malloc'd), or NULL */
    tp_client_state last_state;
    int presence;            /* presence callbacks */
    char presence_last[256]; /* "scope/id conn state" of the last one */
    int check_view;          /* the patch callback compares its value with tp_client_get */
    int write_in_cb;         /* the patch callback writes once (the recursive lock) */
} rec;

/* A client and the hub's end of its connection. */
typedef struct peer {
    tp_client *cl;
    tp_conn *conn; /* NULL while disconnected */
    const char *tenant;
    rec r;
    int sent_resume;  /* a frame sent to the hub held a `resume` */
    int drop_next_in; /* drop this many frames coming from the hub */
} peer;

#define MAXP 8
static peer peers[MAXP];
static int npeers;

static void
on_snapshot(void *user, const char *scope, const char *id, int64_t rev, tp_access access,
            const json_t *value)
{
    (void)scope, (void)id, (void)rev, (void)access;
    peer *p = user;
    cr_assert(json_is_object(value));
    p->r.snapshots++;
}

static void
on_patch(void *user, const char *scope, const char *id, int64_t from, int64_t rev,
         const json_t *patch, const char *origin, const json_t *value)
{
    peer *p = user;
    p->r.patches++;
    cr_assert_gt(rev, from);
    cr_assert(json_is_object(patch));
    cr_assert_not_null(origin);
    if (p->r.check_view) {
        int64_t held;
        char *got = tp_client_get(p->cl, scope, id, &held, NULL);
        char *want = json_dumps(value, JSON_COMPACT);
        cr_assert(tpt_json_text_eq(got, want), "callback value %s, client has %s", want, got);
        cr_assert_eq(held, rev);
        free(want);
        tp_free(got);
    }
    if (p->r.write_in_cb && strcmp(scope, "shared") == 0) {
        p->r.write_in_cb = 0;
        cr_assert_gt(tp_client_write(p->cl, scope, id, "{\"body\":\"from a callback\"}", NULL), 0);
    }
}

static void
on_access(void *user, const char *scope, const char *id, tp_access access)
{
    (void)scope, (void)id, (void)access;
    ((peer *)user)->r.access++;
}

static void
on_removed(void *user, const char *scope, const char *id)
{
    peer *p = user;
    p->r.removed++;
    cr_assert_null(tp_client_get(p->cl, scope, id, NULL, NULL), "removed before the callback");
}

static void
on_ack(void *user, int64_t ref, const char *scope, const char *id, int64_t rev)
{
    (void)scope, (void)id;
    cr_assert_gt(ref, 0);
    cr_assert_gt(rev, 0);
    ((peer *)user)->r.acks++;
}

static void
on_error(void *user, int64_t ref, const char *scope, const char *id, int code, const char *message,
         const json_t *value)
{
    peer *p = user;
    cr_assert_not_null(message);
    p->r.errors++;
    p->r.error_ref = ref;
    p->r.error_code = code;
    snprintf(p->r.error_scope, sizeof p->r.error_scope, "%s", scope ? scope : "");
    snprintf(p->r.error_id, sizeof p->r.error_id, "%s", id ? id : "");
    free(p->r.error_value);
    p->r.error_value = value ? json_dumps(value, JSON_COMPACT) : NULL;
}

static void
on_state(void *user, tp_client_state state, const char *why)
{
    (void)why;
    peer *p = user;
    p->r.states++;
    p->r.last_state = state;
}

static void
on_presence(void *user, const char *scope, const char *id, const char *conn, const json_t *state)
{
    peer *p = user;
    cr_assert(state == NULL || json_is_object(state));
    char *st = state != NULL ? json_dumps(state, JSON_COMPACT) : NULL;
    p->r.presence++;
    snprintf(p->r.presence_last, sizeof p->r.presence_last, "%s/%s %s %s", scope, id, conn,
             st != NULL ? st : "null");
    free(st);
}

static peer *
add_peer(const char *tenant, const char *token, int token_in_query)
{
    cr_assert_lt(npeers, MAXP);
    peer *p = &peers[npeers++];
    memset(p, 0, sizeof *p);
    p->tenant = tenant;
    tp_client_options o = {0};
    o.token = token;
    o.token_in_query = token_in_query;
    o.cb = (tp_client_callbacks){on_snapshot, on_patch, on_access, on_removed, on_ack,
                                 on_error,    on_state, p,         on_presence};
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:8080/ws/%s", tenant);
    tp_error err;
    p->cl = tp_client_new(url, &o, &err);
    cr_assert_not_null(p->cl, "%s", err.message);
    return p;
}

/* Connects as a transport would: the URL says whether the hub waits for a resume. */
static void
connect_peer(peer *p)
{
    char *url = tp_client_url(p->cl);
    cr_assert_not_null(url);
    int flags = strstr(url, "resume=1") != NULL ? TP_CONN_RESUME : 0;
    tp_free(url);
    tp_error err;
    p->conn = tp_conn_open(hub, p->tenant, flags, &err);
    cr_assert_not_null(p->conn, "%s", err.message);
    tp_conn_set_user(p->conn, p);
    tp_client_opened(p->cl);
    cr_assert_eq(tp_client_get_state(p->cl), TP_CLIENT_SYNCING);
}

/* Cuts a connection with whatever was in flight both ways. */
static void
cut_peer(peer *p)
{
    tp_conn_close(p->conn);
    p->conn = NULL;
    tp_client_closed(p->cl, 1006, NULL);
}

/* Carries one frame from the client to the hub; returns 0 when none. */
static int
step_out(peer *p)
{
    size_t len;
    const char *f = tp_client_next_frame(p->cl, &len);
    if (f == NULL)
        return 0;
    cr_assert_eq(strlen(f), len);
    if (f[0] == '[')
        cr_assert_leq(len, 64 * 1024);
    if (strstr(f, "\"type\":\"resume\"") != NULL)
        p->sent_resume++;
    if (p->conn != NULL)
        cr_assert_eq(tp_conn_feed(p->conn, f, len), TP_OK, "the hub refused %.200s", f);
    return 1;
}

/* Carries one frame from the hub to the client; returns 0 when none. */
static int
step_in(peer *p)
{
    if (p->conn == NULL)
        return 0;
    size_t len;
    const char *f = tp_conn_next_frame(p->conn, &len);
    if (f == NULL)
        return 0;
    if (p->drop_next_in > 0) {
        p->drop_next_in--;
        return 1;
    }
    int rc = tp_client_feed(p->cl, f, len);
    cr_assert_eq(rc, TP_OK, "the client refused (%d) %.300s", rc, f);
    return 1;
}

/* Carries frames both ways until nobody has anything to say. */
static void
pump(void)
{
    for (int busy = 1; busy;) {
        busy = 0;
        while (tp_hub_next_ready(hub) != NULL)
            ; /* every connection is visited below anyway */
        for (int i = 0; i < npeers; i++) {
            while (step_out(&peers[i]))
                busy = 1;
            while (step_in(&peers[i]))
                busy = 1;
        }
    }
}

static void
setup_with(tp_limits limits)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.limits = limits;
    hub = tp_hub_new(&cfg, NULL);
    cr_assert_not_null(hub);
    doc = tp_schema_new(DOC, NULL);
    map = tp_schema_new(MAP, NULL);
    cr_assert_not_null(doc);
    cr_assert_not_null(map);
    tp_error err;
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"a\"}", &err));
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "bob"), "n", doc, "{\"title\":\"b\"}", &err));
    cr_assert_not_null(tp_hub_share_as(hub, "ro", doc, "{\"title\":\"ro\"}", NULL, &err));
    cr_assert_not_null(tp_hub_share_as(hub, "rw", doc, "{\"title\":\"rw\"}", NULL, &err));
    cr_assert_not_null(tp_hub_share_as(hub, "map", map, "{}", &tp_lww_map_crdt, &err));
    tp_hub_subscribe(hub, "alice", "ro", TP_READ);
    tp_hub_subscribe(hub, "alice", "rw", TP_WRITE);
    tp_hub_subscribe(hub, "bob", "rw", TP_WRITE);
    tp_hub_subscribe(hub, "alice", "map", TP_WRITE);
    tp_hub_subscribe(hub, "bob", "map", TP_WRITE);
    npeers = 0;
}

static void
setup(void)
{
    tp_limits l = {0};
    setup_with(l);
}

static void
teardown(void)
{
    for (int i = 0; i < npeers; i++) {
        tp_conn_close(peers[i].conn);
        tp_client_free(peers[i].cl);
        free(peers[i].r.error_value);
    }
    npeers = 0;
    tp_hub_free(hub);
    tp_schema_free(doc);
    tp_schema_free(map);
}

TestSuite(client, .init = setup, .fini = teardown);

/* The hub's value and rev of a model a tenant sees. */
static char *
hub_value(const char *tenant, const char *scope, const char *id, int64_t *rev)
{
    if (strcmp(scope, "private") == 0) {
        tp_session *s = tp_hub_tenant(hub, tenant);
        *rev = tp_session_rev(s, id);
        return tp_session_get(s, id);
    }
    *rev = tp_hub_shared_rev(hub, id);
    return tp_hub_get_shared(hub, id);
}

/* Every replica of p equals the hub's model at the same rev, and p holds
 * exactly `count` models. */
static void
assert_equal_to_hub(peer *p, size_t count)
{
    char *models = tp_client_models(p->cl);
    json_t *list = json_loads(models, 0, NULL);
    cr_assert(json_is_array(list), "%s", models);
    cr_assert_eq(json_array_size(list), count, "models %s", models);
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        const char *scope = json_string_value(json_object_get(m, "scope"));
        const char *id = json_string_value(json_object_get(m, "id"));
        int64_t rev = -1, hrev = -1;
        char *mine = tp_client_get(p->cl, scope, id, &rev, NULL);
        char *theirs = hub_value(p->tenant, scope, id, &hrev);
        cr_assert(tpt_json_text_eq(mine, theirs), "%s %s/%s: client %s, hub %s", p->tenant, scope,
                  id, mine, theirs);
        cr_assert_eq(rev, hrev, "%s %s/%s: client rev %lld, hub %lld", p->tenant, scope, id,
                     (long long)rev, (long long)hrev);
        cr_assert_eq(json_integer_value(json_object_get(m, "rev")), rev);
        tp_free(mine);
        free(theirs);
    }
    json_decref(list);
    tp_free(models);
}

static json_t *
view_json(peer *p, const char *scope, const char *id, int64_t *rev)
{
    char *text = tp_client_get(p->cl, scope, id, rev, NULL);
    cr_assert_not_null(text, "no %s/%s", scope, id);
    json_t *v = json_loads(text, 0, NULL);
    tp_free(text);
    return v;
}

static json_int_t
view_int(peer *p, const char *scope, const char *id, const char *field)
{
    json_t *v = view_json(p, scope, id, NULL);
    json_int_t n = json_integer_value(json_object_get(v, field));
    json_decref(v);
    return n;
}

/* ---- Sync ---- */

Test(client, initial_sync_equals_the_hub)
{
    peer *a = add_peer("alice", NULL, 0), *b = add_peer("bob", NULL, 0);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_IDLE);
    char *url = tp_client_url(a->cl);
    cr_assert_str_eq(url, "ws://127.0.0.1:8080/ws/alice", "no resume=1 before any rev");
    tp_free(url);
    connect_peer(a);
    connect_peer(b);
    pump();
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_LIVE);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_SYNCED, 0), TP_OK);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_IDLE, 0), TP_OK);
    assert_equal_to_hub(a, 4);
    assert_equal_to_hub(b, 3);
    cr_assert_eq(a->r.snapshots, 4);
    tp_access acc = 0;
    char *v = tp_client_get(a->cl, "shared", "ro", NULL, &acc);
    cr_assert_eq(acc, TP_READ);
    tp_free(v);
    cr_assert_null(tp_client_get(b->cl, "shared", "ro", NULL, NULL));
    /* Once it holds revs, the URL asks for a resume. */
    url = tp_client_url(a->cl);
    cr_assert_str_eq(url, "ws://127.0.0.1:8080/ws/alice?resume=1");
    tp_free(url);
    char *models = tp_client_models(a->cl);
    cr_assert(tpt_json_text_eq(models,
                               "[{\"scope\":\"private\",\"id\":\"n\",\"rev\":1,\"access\":"
                               "\"write\"},{\"scope\":\"shared\",\"id\":\"map\",\"rev\":1,"
                               "\"access\":\"write\"},{\"scope\":\"shared\",\"id\":\"ro\","
                               "\"rev\":1,\"access\":\"read\"},{\"scope\":\"shared\",\"id\":"
                               "\"rw\",\"rev\":1,\"access\":\"write\"}]"),
              "%s", models);
    tp_free(models);
}

/* ---- Writes ---- */

Test(client, optimistic_view_then_confirmed)
{
    peer *a = add_peer("alice", NULL, 0), *a2 = add_peer("alice", NULL, 0);
    connect_peer(a);
    connect_peer(a2);
    pump();
    int64_t rev;
    int64_t r1 = tp_client_write(a->cl, "private", "n", "{\"body\":\"x\",\"n\":1}", NULL);
    int64_t r2 = tp_client_write(a->cl, "shared", "rw", "{\"n\":7}", NULL);
    int64_t r3 = tp_client_write(a->cl, "private", "n", "{\"n\":2}", NULL);
    cr_assert_eq(r1, 1);
    cr_assert_eq(r2, 2, "refs increase per client");
    cr_assert_eq(r3, 3);
    cr_assert_eq(tp_client_pending(a->cl), 3);
    json_t *v = view_json(a, "private", "n", &rev);
    cr_assert_str_eq(json_string_value(json_object_get(v, "body")), "x", "applied at once");
    cr_assert_eq(json_integer_value(json_object_get(v, "n")), 2, "pending writes in order");
    cr_assert_eq(rev, 1, "rev is the confirmed one");
    json_decref(v);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_IDLE, 10), TP_EINTERNAL, "writes pending");
    pump();
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_eq(a->r.acks, 3);
    cr_assert_eq(a->r.errors, 0);
    v = view_json(a, "private", "n", &rev);
    cr_assert_eq(rev, 3);
    cr_assert_eq(json_integer_value(json_object_get(v, "n")), 2);
    json_decref(v);
    cr_assert_eq(view_int(a, "shared", "rw", "n"), 7);
    assert_equal_to_hub(a, 4);
    assert_equal_to_hub(a2, 4);
    cr_assert_eq(a2->r.patches, 3, "the other connection got the patches");
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_IDLE, 0), TP_OK);
}

Test(client, schema_refusal_is_rolled_back)
{
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    int64_t ok = tp_client_write(a->cl, "private", "n", "{\"n\":5}", NULL);
    int64_t bad = tp_client_write(a->cl, "private", "n", "{\"n\":-1,\"body\":\"bad\"}", NULL);
    cr_assert_gt(bad, ok);
    cr_assert_eq(view_int(a, "private", "n", "n"), -1, "optimistic, before the server says no");
    pump();
    cr_assert_eq(a->r.errors, 1);
    cr_assert_eq(a->r.error_ref, bad);
    cr_assert_eq(a->r.error_code, TP_EINVALID);
    cr_assert_str_eq(a->r.error_scope, "private");
    cr_assert_str_eq(a->r.error_id, "n");
    cr_assert(tpt_json_text_eq(a->r.error_value, "{\"title\":\"a\",\"body\":\"\",\"n\":5}"),
              "the error callback sees the view without the write: %s", a->r.error_value);
    cr_assert_eq(view_int(a, "private", "n", "n"), 5);
    cr_assert_eq(tp_client_pending(a->cl), 0);
    assert_equal_to_hub(a, 4);
}

Test(client, local_refusals)
{
    peer *a = add_peer("alice", NULL, 0);
    tp_error err;
    cr_assert_eq(tp_client_write(a->cl, "private", "n", "{}", &err), TP_ENOTFOUND,
                 "nothing held before the sync");
    connect_peer(a);
    pump();
    cr_assert_eq(tp_client_write(a->cl, "shared", "ro", "{\"n\":1}", &err), TP_EFORBIDDEN);
    cr_assert(strstr(err.message, "ro") != NULL && strstr(err.message, "shared") != NULL, "%s",
              err.message);
    cr_assert_eq(tp_client_write(a->cl, "shared", "nope", "{\"n\":1}", &err), TP_ENOTFOUND);
    cr_assert(strstr(err.message, "nope") != NULL, "%s", err.message);
    cr_assert_eq(tp_client_write(a->cl, "other", "n", "{}", &err), TP_ENOTFOUND);
    cr_assert_eq(tp_client_write(a->cl, "private", "n", "[1]", &err), TP_EBADREQUEST);
    cr_assert_eq(tp_client_write(a->cl, "private", "n", "{\"n\":", &err), TP_EBADREQUEST);
    cr_assert_eq(tp_client_write(a->cl, "private", "n", "{\"n\":1,\"n\":2}", &err), TP_EBADREQUEST);
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_null(tp_client_next_frame(a->cl, NULL), "nothing sent");
    /* Refs are never reused: a refused call takes none. */
    cr_assert_eq(tp_client_write(a->cl, "private", "n", "{\"n\":1}", &err), 1);
}

Test(client, forbidden_over_the_wire_is_rolled_back)
{
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    /* The host makes ro writable: the client learns it with `access`. */
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "ro", TP_WRITE), TP_OK);
    pump();
    cr_assert_eq(a->r.access, 1);
    tp_access acc = 0;
    tp_free(tp_client_get(a->cl, "shared", "ro", NULL, &acc));
    cr_assert_eq(acc, TP_WRITE);
    /* It writes, and the host takes the access back before the write arrives. */
    int64_t ref = tp_client_write(a->cl, "shared", "ro", "{\"title\":\"mine\"}", NULL);
    cr_assert_gt(ref, 0);
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "ro", TP_READ), TP_OK);
    pump();
    cr_assert_eq(a->r.access, 2);
    cr_assert_eq(a->r.errors, 1);
    cr_assert_eq(a->r.error_ref, ref);
    cr_assert_eq(a->r.error_code, TP_EFORBIDDEN);
    json_t *v = view_json(a, "shared", "ro", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(v, "title")), "ro", "rolled back");
    json_decref(v);
    cr_assert_eq(tp_client_write(a->cl, "shared", "ro", "{}", NULL), TP_EFORBIDDEN);
    assert_equal_to_hub(a, 4);
}

/* ---- Many clients ---- */

static unsigned rng = 12345;

static unsigned
rnd(unsigned n)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) % n;
}

/* One random write of p: its private model, rw (lww) or map (lww-map). */
static void
random_write(peer *p)
{
    char patch[96];
    const char *scope = "shared", *id;
    switch (rnd(3)) {
    case 0:
        scope = "private";
        id = "n";
        snprintf(patch, sizeof patch, "{\"n\":%u,\"body\":\"%s%u\"}", rnd(50), p->tenant, rnd(9));
        break;
    case 1:
        id = "rw";
        if (rnd(8) == 0)
            snprintf(patch, sizeof patch, "{\"n\":-%u}", 1 + rnd(5)); /* invalid: refused */
        else
            snprintf(patch, sizeof patch, "{\"n\":%u,\"body\":null}", rnd(100));
        break;
    default:
        id = "map";
        if (rnd(4) == 0)
            snprintf(patch, sizeof patch, "{\"k%u\":null}", rnd(6));
        else
            snprintf(patch, sizeof patch, "{\"k%u\":%u,\"j%u\":%u}", rnd(6), rnd(1000), rnd(6),
                     rnd(1000));
    }
    tp_error err;
    char *held = tp_client_get(p->cl, scope, id, NULL, NULL);
    int64_t ref = tp_client_write(p->cl, scope, id, patch, &err);
    if (held == NULL) /* not synced yet */
        cr_assert_eq(ref, TP_ENOTFOUND);
    else
        cr_assert_gt(ref, 0, "%s %s/%s %s: %s", p->tenant, scope, id, patch, err.message);
    tp_free(held);
}

static void
assert_all_equal(void)
{
    for (int i = 0; i < npeers; i++) {
        cr_assert_eq(tp_client_pending(peers[i].cl), 0, "peer %d has pending writes", i);
        cr_assert_eq(tp_client_get_state(peers[i].cl), TP_CLIENT_LIVE);
        assert_equal_to_hub(&peers[i], strcmp(peers[i].tenant, "alice") == 0 ? 4 : 3);
    }
}

Test(client, many_clients_random_interleavings)
{
    for (unsigned seed = 1; seed <= 6; seed++) {
        rng = seed;
        for (int i = 0; i < 8; i++) {
            peer *p = add_peer(i % 2 ? "bob" : "alice", NULL, 0);
            p->r.check_view = 1;
        }
        for (int i = 0; i < 8; i++)
            connect_peer(&peers[i]);
        for (int step = 0; step < 3000; step++) {
            peer *p = &peers[rnd(8)];
            now += rnd(3);
            switch (rnd(4)) {
            case 0: random_write(p); break;
            case 1: step_out(p); break;
            default: step_in(p); break;
            }
        }
        pump();
        assert_all_equal();
        int errors = 0;
        for (int i = 0; i < 8; i++)
            errors += peers[i].r.errors;
        cr_assert_gt(errors, 0, "some writes were refused by the schema");
        cr_assert_gt(tp_hub_shared_rev(hub, "rw"), 50);
        cr_assert_gt(tp_hub_shared_rev(hub, "map"), 50);
        cr_assert_gt(tp_session_rev(tp_hub_tenant(hub, "bob"), "n"), 20);
        /* Next seed on a fresh hub. */
        teardown();
        setup();
    }
}

Test(client, many_clients_with_cuts)
{
    rng = 99;
    for (int i = 0; i < 6; i++)
        add_peer(i % 2 ? "bob" : "alice", NULL, 0);
    for (int i = 0; i < 6; i++)
        connect_peer(&peers[i]);
    int cuts = 0;
    for (int step = 0; step < 4000; step++) {
        peer *p = &peers[rnd(6)];
        now += rnd(3);
        unsigned what = rnd(40);
        if (what == 0 && p->conn != NULL) {
            cut_peer(p);
            cuts++;
        } else if (p->conn == NULL) {
            if (what < 4)
                connect_peer(p);
            else if (what < 10)
                random_write(p); /* written while disconnected */
        } else if (what < 12) {
            random_write(p);
        } else if (what < 24) {
            step_out(p);
        } else {
            step_in(p);
        }
    }
    for (int i = 0; i < 6; i++)
        if (peers[i].conn == NULL)
            connect_peer(&peers[i]);
    pump();
    cr_assert_gt(cuts, 10);
    cr_assert_gt(tp_hub_shared_rev(hub, "rw"), 50);
    assert_all_equal();
}

/* ---- Reconnect, resume, exactly once ---- */

Test(client, reconnect_resends_and_applies_exactly_once)
{
    peer *a = add_peer("alice", NULL, 0), *w = add_peer("alice", NULL, 0);
    connect_peer(a);
    connect_peer(w);
    pump();
    char patch[64];
    /* Five writes reach the hub, which applies them; their acks are lost. */
    for (int i = 1; i <= 5; i++) {
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        cr_assert_gt(tp_client_write(a->cl, "private", "n", patch, NULL), 0);
        cr_assert_gt(tp_client_write(a->cl, "shared", "rw", patch, NULL), 0);
    }
    while (step_out(a))
        ;
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "n"), 6);
    /* Three more are queued and never leave. */
    for (int i = 6; i <= 8; i++) {
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        cr_assert_gt(tp_client_write(a->cl, "private", "n", patch, NULL), 0);
        cr_assert_gt(tp_client_write(a->cl, "shared", "rw", patch, NULL), 0);
    }
    cut_peer(a);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_WAITING);
    cr_assert_eq(a->r.last_state, TP_CLIENT_WAITING);
    cr_assert_eq(tp_client_pending(a->cl), 16, "pending writes stay");
    cr_assert_null(tp_client_next_frame(a->cl, NULL), "queued frames dropped");
    /* Two more while disconnected; another connection changes n meanwhile. */
    for (int i = 9; i <= 10; i++) {
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        cr_assert_gt(tp_client_write(a->cl, "private", "n", patch, NULL), 0);
        cr_assert_gt(tp_client_write(a->cl, "shared", "rw", patch, NULL), 0);
    }
    cr_assert_gt(tp_client_write(w->cl, "private", "n", "{\"body\":\"other\"}", NULL), 0);
    pump();
    cr_assert_eq(view_int(a, "private", "n", "n"), 10, "the view keeps its pending writes");
    /* Reconnect: resume=1, the revs and the client id, then every pending write again. */
    char *url = tp_client_url(a->cl);
    cr_assert(strstr(url, "resume=1") != NULL, "%s", url);
    tp_free(url);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_CONNECTING);
    connect_peer(a);
    size_t len;
    const char *f = tp_client_next_frame(a->cl, &len);
    cr_assert_not_null(f);
    json_t *batch = json_loads(f, 0, NULL);
    json_t *first = json_is_array(batch) ? json_array_get(batch, 0) : batch;
    cr_assert_str_eq(json_string_value(json_object_get(first, "type")), "resume");
    cr_assert_str_eq(json_string_value(json_object_get(first, "client")), tp_client_id(a->cl));
    cr_assert_eq(json_array_size(json_object_get(first, "models")), 4);
    cr_assert_eq(tp_conn_feed(a->conn, f, len), TP_OK);
    json_decref(batch);
    pump();
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_eq(a->r.errors, 0);
    /* Each write exactly once: 10 changes each, plus w's one to n. */
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "n"), 12);
    cr_assert_eq(tp_hub_shared_rev(hub, "rw"), 11);
    cr_assert_eq(view_int(a, "private", "n", "n"), 10);
    assert_equal_to_hub(a, 4);
    assert_equal_to_hub(w, 4);
    cr_assert_eq(a->r.acks, 20);
}

Test(client, resend_after_cut_before_any_ack)
{
    /* The first connection is cut before the client learned anything:
     * no revs, so no resume=1, and the ping names the client. */
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    size_t len;
    const char *f = tp_client_next_frame(a->cl, &len);
    cr_assert_not_null(f);
    json_t *ping = json_loads(f, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(ping, "type")), "ping");
    cr_assert_str_eq(json_string_value(json_object_get(ping, "client")), tp_client_id(a->cl));
    cr_assert(json_integer_value(json_object_get(ping, "ref")) < 0, "pings never take a write ref");
    json_decref(ping);
    cut_peer(a);
    char *url = tp_client_url(a->cl);
    cr_assert(strstr(url, "resume") == NULL, "%s", url);
    tp_free(url);
    connect_peer(a);
    pump();
    assert_equal_to_hub(a, 4);
}

/* ---- Rev gaps ---- */

Test(client, rev_gap_resumes_that_model)
{
    peer *a = add_peer("alice", NULL, 0), *b = add_peer("bob", NULL, 0);
    connect_peer(a);
    connect_peer(b);
    pump();
    b->r.check_view = 1;
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":1}", NULL), 0);
    pump();
    int resumes = b->sent_resume;
    /* The frame carrying the next patch to b is lost. */
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":2}", NULL), 0);
    while (step_out(a))
        ;
    b->drop_next_in = 1;
    cr_assert(step_in(b));
    int64_t rev;
    tp_free(tp_client_get(b->cl, "shared", "rw", &rev, NULL));
    cr_assert_eq(rev, 2);
    /* The next one shows the gap: b asks for rw again and ends equal. */
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":3,\"body\":\"z\"}", NULL), 0);
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":4}", NULL), 0);
    pump();
    cr_assert_eq(b->sent_resume, resumes + 1, "one resume for the gap");
    assert_equal_to_hub(b, 3);
    assert_equal_to_hub(a, 4);
    cr_assert_eq(view_int(b, "shared", "rw", "n"), 4);
}

static uint64_t
rate_limited_count(void)
{
    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    return st.writes_refused[-TP_ERATELIMITED];
}

/* Issue 11: a resume on a live connection takes a write token; refused
 * with rate_limited, it is asked again after the retry delay, and the
 * model leaves its gap. */
Test(client, a_rate_limited_gap_resume_is_asked_again_later)
{
    teardown();
    tp_limits l = {0};
    l.writes_per_second = 2;
    setup_with(l);
    peer *a = add_peer("alice", NULL, 0), *b = add_peer("bob", NULL, 0);
    connect_peer(a);
    connect_peer(b);
    pump();
    /* b spends its tokens. */
    cr_assert_gt(tp_client_write(b->cl, "private", "n", "{\"n\":1}", NULL), 0);
    cr_assert_gt(tp_client_write(b->cl, "private", "n", "{\"n\":2}", NULL), 0);
    pump();
    cr_assert_eq(tp_client_pending(b->cl), 0);
    int resumes = b->sent_resume;
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":1}", NULL), 0);
    while (step_out(a))
        ;
    b->drop_next_in = 1;
    cr_assert(step_in(b));
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":2}", NULL), 0);
    pump();
    cr_assert_eq(b->sent_resume, resumes + 1, "the gap's resume");
    cr_assert_eq(rate_limited_count(), 1, "refused: b has no token");
    int64_t rev;
    tp_free(tp_client_get(b->cl, "shared", "rw", &rev, NULL));
    cr_assert_eq(rev, 1, "still at the gap");
    int64_t at = tp__client_retry(b->cl, 1000);
    cr_assert_lt(at, INT64_MAX);
    tp__client_retry(b->cl, at - 1);
    pump();
    cr_assert_eq(b->sent_resume, resumes + 1, "not before the delay");
    now += 1000; /* b's bucket refills */
    tp__client_retry(b->cl, at);
    pump();
    cr_assert_eq(b->sent_resume, resumes + 2, "asked again");
    assert_equal_to_hub(b, 3);
    cr_assert_eq(view_int(b, "shared", "rw", "n"), 2);
}

Test(client, rev_gap_with_history_gone_gets_a_snapshot)
{
    teardown();
    tp_limits l = {0};
    l.history_patches = 1;
    setup_with(l);
    peer *a = add_peer("alice", NULL, 0), *b = add_peer("bob", NULL, 0);
    connect_peer(a);
    connect_peer(b);
    pump();
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":1}", NULL), 0);
    while (step_out(a))
        ;
    b->drop_next_in = 1;
    cr_assert(step_in(b));
    for (int i = 2; i <= 4; i++) {
        char patch[32];
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        cr_assert_gt(tp_client_write(a->cl, "shared", "rw", patch, NULL), 0);
        while (step_out(a))
            ;
    }
    int snaps = b->r.snapshots;
    pump();
    cr_assert_gt(b->r.snapshots, snaps, "the answer was a snapshot");
    assert_equal_to_hub(b, 3);
}

Test(client, private_write_ack_after_a_missed_patch_resyncs)
{
    peer *a = add_peer("alice", NULL, 0), *a2 = add_peer("alice", NULL, 0);
    connect_peer(a);
    connect_peer(a2);
    pump();
    /* a misses a2's change of n, then writes n: its ack's from is not its rev. */
    cr_assert_gt(tp_client_write(a2->cl, "private", "n", "{\"body\":\"a2\"}", NULL), 0);
    while (step_out(a2))
        ;
    a->drop_next_in = 1;
    cr_assert(step_in(a));
    cr_assert_gt(tp_client_write(a->cl, "private", "n", "{\"n\":3}", NULL), 0);
    pump();
    cr_assert_eq(tp_client_pending(a->cl), 0);
    assert_equal_to_hub(a, 4);
    assert_equal_to_hub(a2, 4);
    json_t *v = view_json(a, "private", "n", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(v, "body")), "a2");
    json_decref(v);
}

/* ---- Removed, access, new models ---- */

Test(client, removed_access_and_new_models)
{
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    /* A pending write to a model that goes away is reported once, not_found. */
    int64_t ref = tp_client_write(a->cl, "shared", "rw", "{\"n\":9}", NULL);
    cr_assert_eq(tp_hub_unsubscribe(hub, "alice", "rw"), TP_OK);
    pump();
    cr_assert_eq(a->r.removed, 1);
    cr_assert_null(tp_client_get(a->cl, "shared", "rw", NULL, NULL));
    cr_assert_eq(a->r.errors, 1, "one report for the dropped write");
    cr_assert_eq(a->r.error_ref, ref);
    cr_assert_eq(a->r.error_code, TP_ENOTFOUND);
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_eq(tp_client_write(a->cl, "shared", "rw", "{}", NULL), TP_ENOTFOUND);
    /* Subscribed again: a snapshot; access changes: `access`. */
    int snaps = a->r.snapshots;
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "rw", TP_READ), TP_OK);
    pump();
    cr_assert_eq(a->r.snapshots, snaps + 1);
    cr_assert_eq(tp_client_write(a->cl, "shared", "rw", "{}", NULL), TP_EFORBIDDEN);
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "rw", TP_WRITE), TP_OK);
    pump();
    cr_assert_eq(a->r.access, 1);
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":3}", NULL), 0);
    /* A private model hosted and deleted. */
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "x", doc, "{\"title\":\"x\"}", NULL));
    pump();
    assert_equal_to_hub(a, 5);
    cr_assert_eq(tp_session_delete(tp_hub_tenant(hub, "alice"), "x"), TP_OK);
    pump();
    cr_assert_eq(a->r.removed, 2);
    assert_equal_to_hub(a, 4);
    /* Host-side changes arrive as patches with origin "host". */
    cr_assert_eq(tp_hub_set_shared(hub, "rw", "{\"title\":\"host\"}", NULL), TP_OK);
    tp_hub_sync(hub);
    pump();
    assert_equal_to_hub(a, 4);
}

Test(client, removed_while_disconnected_is_learned_on_resume)
{
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    cut_peer(a);
    cr_assert_eq(tp_hub_unsubscribe(hub, "alice", "ro"), TP_OK);
    cr_assert_eq(tp_hub_set_shared(hub, "rw", "{\"title\":\"new\"}", NULL), TP_OK);
    tp_hub_sync(hub);
    connect_peer(a);
    pump();
    cr_assert_eq(a->r.removed, 1);
    assert_equal_to_hub(a, 3);
}

/* ---- Rate limits ---- */

Test(client, rate_limited_writes_are_resent)
{
    teardown();
    tp_limits l = {0};
    l.writes_per_second = 3;
    setup_with(l);
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    now += 5000;
    for (int i = 1; i <= 8; i++) {
        char patch[32];
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        cr_assert_gt(tp_client_write(a->cl, "shared", "rw", patch, NULL), 0);
    }
    pump();
    cr_assert_gt(tp_client_pending(a->cl), 0, "some were rate limited");
    cr_assert_eq(a->r.errors, 0, "and not rolled back");
    cr_assert_eq(view_int(a, "shared", "rw", "n"), 8);
    for (int round = 0; round < 10 && tp_client_pending(a->cl) > 0; round++) {
        now += 2000;
        tp__client_retry(a->cl, now); /* starts the delay */
        tp__client_retry(a->cl, now + TP__RETRY_MAX_MS);
        pump();
    }
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_eq(tp_hub_shared_rev(hub, "rw"), 9, "each write once");
    assert_equal_to_hub(a, 4);
    cr_assert_eq(view_int(a, "shared", "rw", "n"), 8);
}

/* Issue 11: a write refused with rate_limited was sent again at once (with
 * the next write, or when an ack made room), into the same empty bucket. It
 * now waits a delay with backoff and jitter. */
Test(client, rate_limited_writes_wait_with_backoff_and_jitter)
{
    teardown();
    tp_limits l = {0};
    l.writes_per_second = 3;
    setup_with(l);
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    now += 5000;
    for (int i = 1; i <= 8; i++) {
        char patch[32];
        snprintf(patch, sizeof patch, "{\"n\":%d}", i);
        cr_assert_gt(tp_client_write(a->cl, "shared", "rw", patch, NULL), 0);
    }
    pump();
    cr_assert_eq(rate_limited_count(), 5);
    cr_assert_eq(tp_client_pending(a->cl), 5);
    /* A new write goes alone: the held ones are not sent with it. */
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":9}", NULL), 0);
    pump();
    cr_assert_eq(rate_limited_count(), 6, "only the new write was sent");
    /* The delay starts at the transport's next look: 50 to 100 ms. */
    int64_t t0 = now;
    int64_t at = tp__client_retry(a->cl, t0);
    cr_assert(at >= t0 + TP__RETRY_MIN_MS / 2 && at <= t0 + TP__RETRY_MIN_MS, "at %lld",
              (long long)(at - t0));
    cr_assert_eq(tp__client_retry(a->cl, at - 1), at, "not before its time");
    pump();
    cr_assert_eq(rate_limited_count(), 6);
    /* Due, into a still empty bucket (the hub's clock did not move): all 6
     * refused again, and the next delay doubles: 100 to 200 ms. */
    cr_assert_eq(tp__client_retry(a->cl, at), INT64_MAX, "released");
    pump();
    cr_assert_eq(rate_limited_count(), 12);
    int64_t at2 = tp__client_retry(a->cl, at);
    cr_assert(at2 >= at + TP__RETRY_MIN_MS && at2 <= at + 2 * TP__RETRY_MIN_MS, "at2 %lld",
              (long long)(at2 - at));
    /* Jitter: clients refused together do not come back together. */
    int64_t first = -1;
    int differ = 0;
    for (int k = 0; k < 16; k++) {
        tp_client *o = tp_client_new("ws://127.0.0.1:1/ws/bob", NULL, NULL);
        cr_assert_not_null(o);
        TP__PROTO(o)->holding = 1;
        int64_t d = tp__client_retry(o, 0);
        cr_assert(d >= TP__RETRY_MIN_MS / 2 && d <= TP__RETRY_MIN_MS, "%lld", (long long)d);
        differ += first >= 0 && d != first;
        first = first < 0 ? d : first;
        tp_client_free(o);
    }
    cr_assert_gt(differ, 0, "16 clients, one delay");
    /* Time passes on the hub too: the bucket refills, the writes go. */
    now += 5000;
    tp__client_retry(a->cl, at2);
    pump();
    for (int round = 0; round < 20 && tp_client_pending(a->cl) > 0; round++) {
        now += 5000;
        int64_t due = tp__client_retry(a->cl, now);
        tp__client_retry(a->cl, due == INT64_MAX ? now : due);
        pump();
    }
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_eq(tp_hub_shared_rev(hub, "rw"), 10, "each write once");
    cr_assert_eq(view_int(a, "shared", "rw", "n"), 9);
}

/* ---- Frames ---- */

Test(client, batch_frames_both_ways)
{
    peer *a = add_peer("alice", NULL, 0);
    connect_peer(a);
    pump();
    for (int i = 0; i < 300; i++) {
        char patch[256];
        snprintf(patch, sizeof patch, "{\"body\":\"%0200d\",\"n\":%d}", i, i);
        cr_assert_gt(tp_client_write(a->cl, "private", "n", patch, NULL), 0);
    }
    size_t len;
    const char *f = tp_client_next_frame(a->cl, &len);
    cr_assert_not_null(f);
    cr_assert_eq(f[0], '[', "several writes in one frame");
    cr_assert_leq(len, 64 * 1024);
    cr_assert_gt(len, 32 * 1024);
    cr_assert_eq(tp_conn_feed(a->conn, f, len), TP_OK);
    pump();
    cr_assert_eq(tp_client_pending(a->cl), 0);
    cr_assert_eq(a->r.acks, 300);
    assert_equal_to_hub(a, 4);
    /* A batch from the "server", by hand. */
    const char *b = "[{\"type\":\"pong\",\"ref\":-1},{\"type\":\"access\",\"scope\":\"shared\","
                    "\"id\":\"ro\",\"access\":\"read\"},{\"type\":\"future\"}]";
    cr_assert_eq(tp_client_feed(a->cl, b, strlen(b)), TP_OK);
    cr_assert_eq(a->r.access, 1);
}

Test(client, bad_input_from_the_server)
{
    peer *a = add_peer("alice", NULL, 0);
    const char *ok = "{\"type\":\"pong\",\"ref\":-1}";
    cr_assert_eq(tp_client_feed(a->cl, ok, strlen(ok)), TP_ECLOSED, "not connected");
    connect_peer(a);
    pump();
    const char *bad[] = {
        "{\"type\":",
        "42",
        "\"text\"",
        "{\"ref\":1}",
        "[{\"type\":\"pong\"},7]",
        "{\"type\":\"snapshot\",\"scope\":\"private\",\"id\":\"n\",\"rev\":1}",
        "{\"type\":\"snapshot\",\"scope\":\"elsewhere\",\"id\":\"n\",\"rev\":1,"
        "\"access\":\"write\",\"value\":{}}",
        "{\"type\":\"snapshot\",\"scope\":\"private\",\"id\":\"n\",\"rev\":1,"
        "\"access\":\"all\",\"value\":{}}",
        "{\"type\":\"patch\",\"scope\":\"private\",\"id\":\"n\",\"from\":1,\"rev\":2,"
        "\"patch\":[]}",
        "{\"type\":\"patch\",\"scope\":\"private\",\"id\":\"n\",\"from\":2,\"rev\":2,"
        "\"patch\":{}}",
        "{\"type\":\"ack\",\"ref\":\"1\",\"rev\":2}",
        "{\"type\":\"error\",\"ref\":1}",
        "{\"type\":\"hello\",\"protocol\":2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(tp_client_feed(a->cl, bad[i], strlen(bad[i])), TP_EBADREQUEST, "%s", bad[i]);
    /* None of it changed the replicas. */
    assert_equal_to_hub(a, 4);
    /* An error with no ref reaches the error callback with ref 0. */
    const char *e = "{\"type\":\"error\",\"code\":\"bad_request\",\"message\":\"m\"}";
    cr_assert_eq(tp_client_feed(a->cl, e, strlen(e)), TP_OK);
    cr_assert_eq(a->r.errors, 1);
    cr_assert_eq(a->r.error_ref, 0);
    cr_assert_eq(a->r.error_code, TP_EBADREQUEST);
}

/* ---- Callbacks ---- */

Test(client, callbacks_may_call_back_in)
{
    peer *a = add_peer("alice", NULL, 0), *b = add_peer("bob", NULL, 0);
    connect_peer(a);
    connect_peer(b);
    pump();
    a->r.check_view = 1;
    a->r.write_in_cb = 1;
    cr_assert_gt(tp_client_write(b->cl, "shared", "rw", "{\"n\":1}", NULL), 0);
    pump();
    cr_assert_eq(a->r.write_in_cb, 0, "the callback wrote");
    cr_assert_eq(a->r.acks, 1);
    json_t *v = view_json(b, "shared", "rw", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(v, "body")), "from a callback");
    json_decref(v);
    assert_equal_to_hub(a, 4);
    assert_equal_to_hub(b, 3);
}

/* ---- Life cycle, URL, states ---- */

Test(client, url_parsing)
{
    tp__url u;
    tp_error err;
    cr_assert_eq(tp__client_parse_url("ws://h/ws/a", &u, &err), TP_OK);
    cr_assert_str_eq(u.host, "h");
    cr_assert_eq(u.port, 80);
    cr_assert_eq(u.tls, 0);
    cr_assert_str_eq(u.path, "/ws/a");
    tp__client_url_free(&u);
    cr_assert_eq(tp__client_parse_url("WSS://example.com:8443/p?q=1&r=2", &u, &err), TP_OK);
    cr_assert_str_eq(u.host, "example.com");
    cr_assert_eq(u.port, 8443);
    cr_assert_eq(u.tls, 1);
    cr_assert_str_eq(u.path, "/p?q=1&r=2");
    tp__client_url_free(&u);
    cr_assert_eq(tp__client_parse_url("wss://[::1]:9/ws/b", &u, &err), TP_OK);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 9);
    tp__client_url_free(&u);
    cr_assert_eq(tp__client_parse_url("wss://[fe80::1]", &u, &err), TP_OK);
    cr_assert_str_eq(u.host, "fe80::1");
    cr_assert_eq(u.port, 443);
    cr_assert_str_eq(u.path, "/");
    tp__client_url_free(&u);
    cr_assert_eq(tp__client_parse_url("ws://h?x=1", &u, &err), TP_OK);
    cr_assert_str_eq(u.path, "/?x=1");
    tp__client_url_free(&u);
    struct {
        const char *url, *says;
    } bad[] = {
        {"http://h/", "ws://"},
        {"ws://", "host"},
        {"ws:///x", "host"},
        {"ws://h:0/", "port"},
        {"ws://h:99999/", "port"},
        {"ws://h:x/", "port"},
        {"ws://h:/", "port"},
        {"ws://[::1/", "]"},
        {"ws://[::1]x/", "]"},
        {"ws://u@h/", "user"},
        {"ws://h/#frag", "fragment"},
        {"ws://h/a b", "space"},
        {NULL, "url"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(tp__client_parse_url(bad[i].url, &u, &err), TP_EARG, "%s", bad[i].url);
        cr_assert(strstr(err.message, bad[i].says) != NULL, "%s: %s", bad[i].url, err.message);
    }
    cr_assert_null(tp_client_new("tcp://h/", NULL, &err));
    cr_assert_eq(err.code, TP_EARG);
}

Test(client, url_token_and_options)
{
    tp_client_options o = {0};
    o.token = "a b&c/é";
    o.token_in_query = 1;
    tp_client *c = tp_client_new("ws://h:1/ws/x?v=2", &o, NULL);
    cr_assert_not_null(c);
    char *url = tp_client_url(c);
    cr_assert_str_eq(url, "ws://h:1/ws/x?v=2&token=a%20b%26c%2F%C3%A9");
    tp_free(url);
    const char *id = tp_client_id(c);
    cr_assert_eq(strlen(id), 32);
    cr_assert_eq(strspn(id, "0123456789abcdef"), 32);
    tp_client *d = tp_client_new("ws://h/", NULL, NULL);
    cr_assert_str_neq(tp_client_id(d), id, "random ids differ");
    url = tp_client_url(d);
    cr_assert_str_eq(url, "ws://h/", "no token in the query unless asked");
    tp_free(url);
    tp_client_free(d);
    tp_client_free(c);
    const char *headers[] = {"X-A: 1", NULL};
    o.client_id = "device-7";
    o.headers = headers;
    o.token_in_query = 0;
    c = tp_client_new("ws://h/", &o, NULL);
    cr_assert_str_eq(tp_client_id(c), "device-7");
    url = tp_client_url(c);
    cr_assert_str_eq(url, "ws://h/", "the token goes as a header");
    tp_free(url);
    cr_assert_str_eq(c->opt.headers[0], "X-A: 1");
    cr_assert_neq((const void *)c->opt.headers, (const void *)headers, "copied");
    cr_assert_eq(c->opt.backoff_min_ms, 250, "defaults filled in");
    tp_client_free(c);
    const char *bad_headers[] = {"no colon", NULL};
    o.headers = bad_headers;
    tp_error err;
    cr_assert_null(tp_client_new("ws://h/", &o, &err));
    cr_assert_eq(err.code, TP_EARG);
    tp_client_free(NULL);
}

Test(client, states_and_wait)
{
    peer *a = add_peer("alice", NULL, 0);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_SYNCED, 20), TP_EINTERNAL, "times out");
    connect_peer(a);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_SYNCED, 0), TP_EINTERNAL, "not yet synced");
    pump();
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_SYNCED, 1000), TP_OK);
    cr_assert_eq(a->r.last_state, TP_CLIENT_LIVE);
    tp_conn_close(a->conn);
    a->conn = NULL;
    tp_client_closed(a->cl, 403, NULL);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_REFUSED);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_IDLE, 1000), TP_ECLOSED);
    tp_client_closed(a->cl, 4403, NULL);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_REFUSED, "4403: closed by the host");
    tp_client_closed(a->cl, 4404, NULL);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_REFUSED, "4404: the tenant was deleted");
    tp_client_closed(a->cl, 503, NULL);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_WAITING, "503: try again later");
    connect_peer(a);
    pump();
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_LIVE);
    assert_equal_to_hub(a, 4);
    tp_client_stop(a->cl);
    cr_assert_eq(tp_client_get_state(a->cl), TP_CLIENT_STOPPED);
    cr_assert_eq(tp_client_wait(a->cl, TP_CLIENT_WAIT_SYNCED, 1000), TP_ECLOSED);

    tp_client_options o = {0};
    o.no_reconnect = 1;
    tp_client *c = tp_client_new("ws://h/", &o, NULL);
    tp_client_opened(c);
    tp_client_closed(c, 1001, NULL);
    cr_assert_eq(tp_client_get_state(c), TP_CLIENT_STOPPED, "no_reconnect: stopped");
    tp_client_free(c);
}

/* ---- Out of memory ---- */

/* Frames the hub sent to a peer, recorded while `recording` is set. */
static char *recorded[256];
static size_t recorded_len[256], nrecorded;

static void
record_all(peer *p)
{
    size_t len;
    const char *f;
    while ((f = tp_conn_next_frame(p->conn, &len)) != NULL) {
        cr_assert_lt(nrecorded, 256);
        recorded[nrecorded] = strndup(f, len);
        recorded_len[nrecorded++] = len;
        cr_assert_eq(tp_client_feed(p->cl, f, len), TP_OK);
    }
}

/* Plays one client's life with the n-th allocation (and every later one)
 * failing; returns whether an allocation failed. */
static int
life_failing_after(long n, size_t synced_at)
{
    tpt_alloc_install();
    tpt_fail_after(n);
    tp_client *c = tp_client_new("ws://h/ws/alice", NULL, NULL);
    if (c != NULL) {
        tp_client_opened(c);
        for (size_t i = 0; i < nrecorded; i++) {
            if (i == synced_at) {
                tp_client_write(c, "private", "n", "{\"n\":1,\"body\":\"x\"}", NULL);
                tp_client_write(c, "shared", "rw", "{\"n\":2}", NULL);
                tp_client_write(c, "private", "n", "{\"n\":-1}", NULL);
            }
            tp_client_feed(c, recorded[i], recorded_len[i]);
        }
        tp_client_write(c, "shared", "map", "{\"a\":1}", NULL);
        tp__client_ping(c);
        while (tp_client_next_frame(c, NULL) != NULL)
            ;
        tp_free(tp_client_get(c, "private", "n", NULL, NULL));
        tp_free(tp_client_models(c));
        tp_free(tp_client_url(c));
        tp_client_closed(c, 1006, "test: cut");
        tp_client_opened(c);
        while (tp_client_next_frame(c, NULL) != NULL)
            ;
    }
    tpt_fail_disarm();
    int tripped = tpt_alloc.tripped;
    tp_client_free(c);
    cr_assert_eq(tpt_alloc.live, 0, "after failing allocation %ld: %ld blocks leaked", n,
                 tpt_alloc.live);
    return tripped;
}

Test(client, out_of_memory_never_crashes_nor_leaks)
{
    peer *a = add_peer("alice", NULL, 0), *a2 = add_peer("alice", NULL, 0);
    connect_peer(a);
    connect_peer(a2);
    pump();
    nrecorded = 0;
    tp_client_free(a->cl);
    a->cl = tp_client_new("ws://h/ws/alice", NULL, NULL);
    tp_conn_close(a->conn);
    a->conn = NULL;
    connect_peer(a);
    while (step_out(a))
        ;
    record_all(a);
    size_t synced_at = nrecorded;
    cr_assert_gt(tp_client_write(a->cl, "private", "n", "{\"n\":1,\"body\":\"x\"}", NULL), 0);
    cr_assert_gt(tp_client_write(a->cl, "shared", "rw", "{\"n\":2}", NULL), 0);
    cr_assert_gt(tp_client_write(a->cl, "private", "n", "{\"n\":-1}", NULL), 0);
    cr_assert_gt(tp_client_write(a2->cl, "private", "n", "{\"title\":\"t\"}", NULL), 0);
    while (step_out(a))
        ;
    while (step_out(a2))
        ;
    record_all(a);
    cr_assert_eq(tp_hub_unsubscribe(hub, "alice", "ro"), TP_OK);
    record_all(a);
    cr_assert_gt(nrecorded, synced_at);
    long n = 1;
    while (life_failing_after(n, synced_at))
        n++;
    cr_assert_gt(n, 50, "the whole life allocates: %ld", n);
    for (size_t i = 0; i < nrecorded; i++)
        free(recorded[i]);
}

/* Counts the write messages in the frames the client has to send. */
static int
take_writes(tp_client *c)
{
    int n = 0;
    size_t len;
    const char *f;
    while ((f = tp_client_next_frame(c, &len)) != NULL) {
        json_t *j = json_loadb(f, len, 0, NULL);
        cr_assert_not_null(j, "a frame that is not JSON");
        json_t *one = json_is_array(j) ? NULL : j;
        size_t k = json_is_array(j) ? json_array_size(j) : 1;
        for (size_t i = 0; i < k; i++) {
            json_t *m = one ? one : json_array_get(j, i);
            n += strcmp(json_string_value(json_object_get(m, "type")), "write") == 0;
        }
        json_decref(j);
    }
    return n;
}

Test(client, at_most_256_writes_in_flight)
{
    /* PROTOCOL.md: the server remembers a client's last 256 outcomes. With
     * more writes in flight, one sent again after a reconnect could get
     * `duplicate` although it was applied: the rest wait for answers. */
    tp_client *c = tp_client_new("ws://h/ws/alice", NULL, NULL);
    cr_assert_not_null(c);
    tp_free(tp_client_url(c));
    tp_client_opened(c);
    const char *sync = "[{\"type\":\"hello\",\"protocol\":1,\"tenant\":\"alice\",\"conn\":\"c1\","
                       "\"tick_ms\":0,\"max_message_bytes\":1048576},"
                       "{\"type\":\"snapshot\",\"scope\":\"private\",\"id\":\"n\",\"schema\":\"D\","
                       "\"rev\":1,\"access\":\"write\",\"value\":{}},{\"type\":\"synced\"}]";
    cr_assert_eq(tp_client_feed(c, sync, strlen(sync)), TP_OK);
    take_writes(c); /* the first ping */
    for (int i = 1; i <= 300; i++) {
        char p[32];
        snprintf(p, sizeof p, "{\"k%d\":%d}", i, i);
        cr_assert_gt(tp_client_write(c, "private", "n", p, NULL), 0);
    }
    cr_assert_eq(take_writes(c), TP__CLIENT_WINDOW, "the window");
    cr_assert_eq(tp_client_pending(c), 300);
    /* Ten answers make room for ten more. */
    for (int ref = 1; ref <= 10; ref++) {
        char ack[160];
        snprintf(ack, sizeof ack,
                 "{\"type\":\"ack\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\",\"rev\":%d,"
                 "\"from\":%d}",
                 ref, ref + 1, ref);
        cr_assert_eq(tp_client_feed(c, ack, strlen(ack)), TP_OK);
    }
    cr_assert_eq(take_writes(c), 10);
    /* A new connection sends the window again, oldest first. */
    tp_client_closed(c, 1006, NULL);
    tp_free(tp_client_url(c));
    tp_client_opened(c);
    cr_assert_eq(take_writes(c), TP__CLIENT_WINDOW);
    tp_client_free(c);
}

/* ---- Presence ---- */

/* The others' presence a client holds for a model, as JSON (new). */
static json_t *
others(peer *p, const char *scope, const char *id)
{
    char *t = tp_client_presence(p->cl, scope, id);
    cr_assert_not_null(t, "%s/%s held", scope, id);
    json_t *v = json_loads(t, 0, NULL);
    tp_free(t);
    return v;
}

Test(client, presence_set_seen_and_set_again_after_a_reconnect)
{
    peer *a = add_peer("alice", NULL, 0), *b = add_peer("bob", NULL, 0);
    connect_peer(a);
    connect_peer(b);
    pump();
    tp_error err;
    cr_assert_eq(tp_client_set_presence(a->cl, "shared", "rw", "{\"cursor\":3}", &err), TP_OK);
    cr_assert_eq(tp_client_set_presence(a->cl, "private", "n", "[1]", &err), TP_EBADREQUEST);
    cr_assert_eq(tp_client_set_presence(a->cl, "nope", "n", "{}", &err), TP_EARG);
    char big[5000];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"s\":\"", 6);
    memcpy(big + sizeof big - 3, "\"}", 3);
    cr_assert_eq(tp_client_set_presence(a->cl, "shared", "rw", big, &err), TP_ETOOLARGE);
    cr_assert(strstr(err.message, "state") != NULL, "%s", err.message);
    pump();
    char aid[32];
    snprintf(aid, sizeof aid, "%s", tp_conn_id(a->conn));
    char want[128];
    snprintf(want, sizeof want, "shared/rw %s {\"cursor\":3}", aid);
    cr_assert_str_eq(b->r.presence_last, want);
    json_t *o = others(b, "shared", "rw");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, aid), "cursor")), 3);
    json_decref(o);
    cr_assert_eq(a->r.presence, 0, "no echo of its own state");
    o = others(a, "shared", "rw");
    cr_assert_eq(json_object_size(o), 0);
    json_decref(o);
    cr_assert_null(tp_client_presence(a->cl, "shared", "nope"));
    /* A cut: b hears a leave; a's own table is cleared. */
    cut_peer(a);
    pump();
    snprintf(want, sizeof want, "shared/rw %s null", aid);
    cr_assert_str_eq(b->r.presence_last, want);
    o = others(b, "shared", "rw");
    cr_assert_eq(json_object_size(o), 0);
    json_decref(o);
    /* The reconnected client sets its state again, under its new conn id. */
    connect_peer(a);
    pump();
    const char *aid2 = tp_conn_id(a->conn);
    cr_assert_str_neq(aid, aid2);
    o = others(b, "shared", "rw");
    cr_assert_eq(json_object_size(o), 1);
    cr_assert_not_null(json_object_get(o, aid2), "set again after the reconnect");
    json_decref(o);
    /* b sets one: a gets it; b leaves with NULL. */
    cr_assert_eq(tp_client_set_presence(b->cl, "shared", "rw", "{\"name\":\"B\"}", NULL), TP_OK);
    pump();
    o = others(a, "shared", "rw");
    cr_assert_eq(json_object_size(o), 1);
    json_decref(o);
    cr_assert_eq(tp_client_set_presence(b->cl, "shared", "rw", NULL, NULL), TP_OK);
    pump();
    o = others(a, "shared", "rw");
    cr_assert_eq(json_object_size(o), 0);
    json_decref(o);
    /* A third client connecting gets the snapshot of a's state. */
    peer *b2 = add_peer("bob", NULL, 0);
    connect_peer(b2);
    pump();
    o = others(b2, "shared", "rw");
    cr_assert_not_null(json_object_get(o, aid2));
    json_decref(o);
    cr_assert_eq(a->r.errors + b->r.errors + b2->r.errors, 0);
}
