/*
 * PROTOCOL.md through the connection handle, without sockets: every error
 * code, batches both ways, ping, resume, exactly-once writes, limits, and
 * rev continuity.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support.h"
#include "transports.h"
#include "util/buf.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"                                      \
    "\"title\":{\"type\":\"string\",\"maxLength\":20},"                                            \
    "\"body\":{\"type\":\"string\",\"default\":\"\"},"                                             \
    "\"n\":{\"type\":\"integer\",\"minimum\":0}},"                                                 \
    "\"required\":[\"title\"]}"

static tp_hub *hub;
static tp_schema *doc;
static int64_t now = 1700000000000;
static tp_conn *a, *a2, *b;

static void
open_all(void)
{
    a = tp_conn_open(hub, "alice", 0, NULL);
    a2 = tp_conn_open(hub, "alice", 0, NULL);
    b = tp_conn_open(hub, "bob", 0, NULL);
    tpt_drain_all(hub);
}

static void
setup_with(tp_limits limits)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.limits = limits;
    hub = tp_hub_new(&cfg, NULL);
    doc = tp_schema_new(DOC, NULL);
    cr_assert_not_null(doc);
    tp_error err;
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "n", doc, "{\"title\":\"a\"}", &err));
    cr_assert_not_null(
        tp_session_host_as(tp_hub_tenant(hub, "bob"), "n", doc, "{\"title\":\"b\"}", &err));
    cr_assert_not_null(tp_hub_share_as(hub, "ro", doc, "{\"title\":\"ro\"}", NULL, &err));
    cr_assert_not_null(tp_hub_share_as(hub, "rw", doc, "{\"title\":\"rw\"}", NULL, &err));
    tp_hub_subscribe(hub, "alice", "ro", TP_READ);
    tp_hub_subscribe(hub, "alice", "rw", TP_WRITE);
    tp_hub_subscribe(hub, "bob", "rw", TP_WRITE);
    open_all();
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
    tp_conn_close(a);
    tp_conn_close(a2);
    tp_conn_close(b);
    tp_hub_free(hub);
    tp_schema_free(doc);
}

TestSuite(proto, .init = setup, .fini = teardown);

/* Feeds text to c and returns the single message c got back. */
static json_t *
reply(tp_conn *c, const char *text)
{
    tpt_feed(c, text);
    json_t *m = tpt_drain(c);
    cr_assert_eq(json_array_size(m), 1, "one reply to %s, got %zu", text, json_array_size(m));
    json_t *r = json_incref(json_array_get(m, 0));
    json_decref(m);
    return r;
}

/* Sends n writes of shared model rw from c, each setting n to a new value. */
static void
write_rw(tp_conn *c, int n)
{
    static int next = 1;
    for (int i = 0; i < n; i++, next++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"shared\",\"id\":\"rw\","
                 "\"patch\":{\"n\":%d}}",
                 next, next);
        cr_assert_eq(tpt_feed(c, w), TP_OK);
    }
}

static const char *
str(const json_t *msg, const char *key)
{
    const char *s = json_string_value(json_object_get(msg, key));
    return s ? s : "";
}

static void
assert_error(tp_conn *c, const char *text, const char *code, const char *field)
{
    json_t *r = reply(c, text);
    cr_assert_str_eq(str(r, "type"), "error", "for %s", text);
    cr_assert_str_eq(str(r, "code"), code, "for %s: %s", text, str(r, "message"));
    cr_assert(strstr(str(r, "message"), field) != NULL, "message \"%s\" names \"%s\"",
              str(r, "message"), field);
    json_decref(r);
}

/* Nothing changed anywhere: every model at rev 1, nobody else got anything. */
static void
assert_untouched(void)
{
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "n"), 1);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "bob"), "n"), 1);
    cr_assert_eq(tp_hub_shared_rev(hub, "ro"), 1);
    cr_assert_eq(tp_hub_shared_rev(hub, "rw"), 1);
    cr_assert_eq(tpt_drain_all(hub), 0, "no other connection got a message");
}

Test(proto, bad_request)
{
    assert_error(a, "{\"type\":", "bad_request", "not JSON");
    assert_error(a, "42", "bad_request", "(root)");
    assert_error(a, "{\"ref\":1}", "bad_request", "type");
    assert_error(a, "{\"type\":\"fly\",\"ref\":3}", "bad_request", "fly");
    assert_error(a, "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"n\",\"patch\":{}}",
                 "bad_request", "ref");
    assert_error(
        a, "{\"type\":\"write\",\"ref\":\"1\",\"scope\":\"private\",\"id\":\"n\",\"patch\":{}}",
        "bad_request", "ref");
    assert_error(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"public\",\"id\":\"n\",\"patch\":{}}",
                 "bad_request", "scope");
    assert_error(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":7,\"patch\":{}}",
                 "bad_request", "id");
    assert_error(a,
                 "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\",\"patch\":[1]}",
                 "bad_request", "patch");
    assert_error(
        a,
        "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\",\"patch\":{},\"ts\":5}",
        "bad_request", "ts");
    assert_error(a, "{\"type\":\"ping\"}", "bad_request", "ref");
    assert_error(a, "{\"type\":\"resume\",\"models\":{}}", "bad_request", "models");
    assert_error(a, "{\"type\":\"resume\",\"models\":[{\"scope\":\"private\",\"id\":\"n\"}]}",
                 "bad_request", "models[0].rev");
    assert_error(a, "{\"type\":\"ping\",\"ref\":1,\"client\":\"\"}", "bad_request", "client");
    assert_error(a, "{\"type\":\"write\",\"type\":\"write\"}", "bad_request", "not JSON");
    /* The ref of a refused message is echoed when it has one. */
    json_t *r = reply(a, "{\"type\":\"fly\",\"ref\":3}");
    cr_assert_eq(json_integer_value(json_object_get(r, "ref")), 3);
    json_decref(r);
    assert_untouched();
}

Test(proto, not_found_and_forbidden)
{
    assert_error(a,
                 "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"zz\",\"patch\":{}}",
                 "not_found", "id");
    /* Another tenant's private model and an unsubscribed shared one look
     * exactly like models that do not exist. */
    tp_session_host_as(tp_hub_tenant(hub, "bob"), "only-bob", doc, "{\"title\":\"b\"}", NULL);
    tpt_drain_all(hub);
    json_t *r1 = reply(
        a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"only-bob\",\"patch\":{}}");
    json_t *r2 = reply(
        a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"nothing\",\"patch\":{}}");
    cr_assert_str_eq(str(r1, "code"), "not_found");
    cr_assert_str_eq(str(r2, "code"), "not_found");
    json_decref(r1);
    json_decref(r2);
    assert_error(b,
                 "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"ro\",\"patch\":{"
                 "\"body\":\"x\"}}",
                 "not_found", "id");
    assert_error(a,
                 "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"ro\",\"patch\":{"
                 "\"body\":\"x\"}}",
                 "forbidden", "id");
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "bob"), "only-bob"), 1);
    assert_untouched();
}

Test(proto, invalid_names_the_field_and_changes_nothing)
{
    assert_error(
        a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":-1}}",
        "invalid", "n: -1 is less than the minimum 0");
    assert_error(a,
                 "{\"type\":\"write\",\"ref\":2,\"scope\":\"private\",\"id\":\"n\",\"patch\":{"
                 "\"title\":null}}",
                 "invalid", "title");
    assert_error(
        a,
        "{\"type\":\"write\",\"ref\":3,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{\"body\":5}}",
        "invalid", "body: expected string");
    /* One bad member refuses the whole write, good members included. */
    assert_error(a,
                 "{\"type\":\"write\",\"ref\":4,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{"
                 "\"body\":\"ok\",\"n\":\"x\"}}",
                 "invalid", "n:");
    char *v = tp_hub_get_shared(hub, "rw");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"rw\",\"body\":\"\"}"), "%s", v);
    free(v);
    assert_untouched();
}

Test(proto, too_large_closes_with_1009)
{
    teardown();
    tp_limits l = {0};
    l.max_message_bytes = 100;
    setup_with(l);
    char big[200];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"type\":\"ping\",\"ref\":1}", 23);
    cr_assert_eq(tp_conn_feed(a, big, sizeof big), TP_ECLOSED);
    cr_assert_eq(tp_conn_close_code(a), 1009);
    json_t *m = tpt_drain(a);
    cr_assert_str_eq(str(tpt_find(m, "error"), "code"), "too_large");
    json_decref(m);
    cr_assert_eq(tpt_feed(a, "{\"type\":\"ping\",\"ref\":1}"), TP_ECLOSED, "closed for good");
    assert_untouched();
}

Test(proto, rate_limited_is_not_recorded)
{
    teardown();
    tp_limits l = {0};
    l.writes_per_second = 2;
    setup_with(l);
    tpt_feed(a, "{\"type\":\"ping\",\"ref\":0,\"client\":\"k1\"}");
    json_decref(tpt_drain(a));
    const char *w1 =
        "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":1}}";
    const char *w2 =
        "{\"type\":\"write\",\"ref\":2,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":2}}";
    const char *w3 =
        "{\"type\":\"write\",\"ref\":3,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":3}}";
    json_t *r = reply(a, w1);
    cr_assert_str_eq(str(r, "type"), "ack");
    json_decref(r);
    r = reply(a, w2);
    cr_assert_str_eq(str(r, "type"), "ack");
    json_decref(r);
    assert_error(a, w3, "rate_limited", "ref");
    /* Half a second later a token is back: the same ref is applied now. */
    now += 500;
    r = reply(a, w3);
    cr_assert_str_eq(str(r, "type"), "ack", "%s", str(r, "message"));
    cr_assert_eq(json_integer_value(json_object_get(r, "rev")), 4);
    json_decref(r);
}

Test(proto, ping_and_batches)
{
    json_t *r = reply(a, "{\"type\":\"ping\",\"ref\":42}");
    cr_assert_str_eq(str(r, "type"), "pong");
    cr_assert_eq(json_integer_value(json_object_get(r, "ref")), 42);
    json_decref(r);
    /* A batch is handled in order; each message is answered on its own and
     * the answers leave in one frame. */
    tpt_feed(
        a,
        "[{\"type\":\"ping\",\"ref\":1},"
        "{\"type\":\"write\",\"ref\":2,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":5}},"
        "7,"
        "{\"type\":\"write\",\"ref\":3,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":6}}]");
    size_t len;
    const char *frame = tp_conn_next_frame(a, &len);
    cr_assert_not_null(frame);
    cr_assert_eq(frame[0], '[', "the answers are batched into one frame");
    json_t *m = json_loadb(frame, len, 0, NULL);
    cr_assert_eq(json_array_size(m), 4);
    cr_assert_str_eq(str(json_array_get(m, 0), "type"), "pong");
    cr_assert_str_eq(str(json_array_get(m, 1), "type"), "ack");
    cr_assert_str_eq(str(json_array_get(m, 2), "type"), "error");
    cr_assert(strstr(str(json_array_get(m, 2), "message"), "[2]") != NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(m, 3), "rev")), 3);
    json_decref(m);
    cr_assert_null(tp_conn_next_frame(a, &len));
    /* The other connection gets both patches, in order. */
    m = tpt_drain(a2);
    cr_assert_eq(tpt_count(m, "patch"), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(m, 1), "from")), 2);
    json_decref(m);
}

Test(proto, batch_frames_stay_under_64k)
{
    /* 200 writes of ~1 KB: the other connection's patches need several frames. */
    char body[1100];
    memset(body, 'x', 1000);
    body[1000] = '\0';
    for (int i = 0; i < 200; i++) {
        char w[1200];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\",\"patch\":{"
                 "\"body\":\"%s%d\"}}",
                 i + 1, body, i);
        tpt_feed(a, w);
    }
    json_decref(tpt_drain(a));
    size_t len, frames = 0, msgs = 0;
    const char *f;
    int64_t expect_from = 1;
    while ((f = tp_conn_next_frame(a2, &len)) != NULL) {
        cr_assert_leq(len, 65536);
        json_t *v = json_loadb(f, len, 0, NULL);
        cr_assert(json_is_array(v));
        size_t i;
        json_t *p;
        json_array_foreach(v, i, p)
        {
            cr_assert_eq(json_integer_value(json_object_get(p, "from")), expect_from);
            expect_from++;
        }
        msgs += json_array_size(v);
        frames++;
        json_decref(v);
    }
    cr_assert_eq(msgs, 200);
    cr_assert_gt(frames, 2);
}

Test(proto, outbox_over_the_limit_closes_with_1013)
{
    teardown();
    tp_limits l = {0};
    l.max_outbox_bytes = 4096;
    setup_with(l);
    for (int i = 0; i < 100; i++) {
        write_rw(a, 1);
        json_decref(tpt_drain(a)); /* a keeps up; b never reads */
    }
    cr_assert_eq(tp_conn_close_code(b), 1013);
    cr_assert_eq(tp_conn_outbox_bytes(b), 0, "what it held is dropped");
    cr_assert_eq(tp_conn_close_code(a), 0, "the writer is unaffected");
    cr_assert_eq(tp_hub_shared_rev(hub, "rw"), 101);
}

/* A value of n bytes for the model's body: {"title":"t","body":"xxx..."}. */
static char *
big_value(size_t n)
{
    char *v = malloc(n + 64);
    int h = snprintf(v, 64, "{\"title\":\"t\",\"body\":\"");
    memset(v + h, 'x', n);
    snprintf(v + h + n, 8, "\"}");
    return v;
}

Test(proto, the_initial_sync_does_not_count_against_the_outbox_limit)
{
    /* Snapshots a client asked for by connecting are not "falling behind":
     * a tenant whose models outweigh the outbox limit can still connect. */
    teardown();
    tp_limits l = {0};
    l.max_outbox_bytes = 4096;
    setup_with(l);
    tp_session *alice = tp_hub_tenant(hub, "alice");
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "big%d", i);
        char *v = big_value(3000);
        cr_assert_not_null(tp_session_host_as(alice, id, doc, v, NULL));
        free(v);
    }
    tpt_drain_all(hub);
    tp_conn *c = tp_conn_open(hub, "alice", 0, NULL);
    cr_assert_gt(tp_conn_outbox_bytes(c), 12000);
    cr_assert_eq(tp_conn_close_code(c), 0);
    /* A patch on top, while the snapshots are still waiting, is within
     * the limit: it alone counts. */
    write_rw(b, 1);
    cr_assert_eq(tp_conn_close_code(c), 0);
    json_t *m = tpt_drain(c);
    cr_assert_eq(tpt_count(m, "snapshot"), 7);
    cr_assert_eq(tpt_count(m, "patch"), 1);
    json_decref(m);
    /* The same with resume=1: the first resume's answers are the sync. */
    tp_conn *r = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    cr_assert_eq(tpt_feed(r, "{\"type\":\"resume\",\"models\":[]}"), TP_OK);
    cr_assert_eq(tp_conn_close_code(r), 0);
    m = tpt_drain(r);
    cr_assert_eq(tpt_count(m, "snapshot"), 7);
    json_decref(m);
    /* A later resume on a live connection counts like anything else. */
    for (int i = 0; i < 3 && tp_conn_close_code(r) == 0; i++)
        tpt_feed(r, "{\"type\":\"resume\",\"models\":[{\"scope\":\"private\",\"id\":\"big0\","
                    "\"rev\":0},{\"scope\":\"private\",\"id\":\"big1\",\"rev\":0}]}");
    cr_assert_eq(tp_conn_close_code(r), 1013);
    tp_conn_close(c);
    tp_conn_close(r);
}

Test(proto, one_message_over_the_outbox_limit_reaches_a_prompt_reader)
{
    teardown();
    tp_limits l = {0};
    l.max_outbox_bytes = 4096;
    setup_with(l);
    char *w = malloc(9000);
    char *v = big_value(6000);
    snprintf(w, 9000,
             "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":%s}", v);
    cr_assert_eq(tpt_feed(a, w), TP_OK);
    free(w);
    free(v);
    /* b's outbox was empty: the patch alone is not falling behind; nor is
     * the writer, with the patch and its ack. */
    cr_assert_eq(tp_conn_close_code(b), 0);
    cr_assert_eq(tp_conn_close_code(a), 0);
    json_t *m = tpt_drain(b);
    cr_assert_eq(tpt_count(m, "patch"), 1);
    json_decref(m);
}

Test(proto, a_tenant_key_must_be_utf8)
{
    tp_error err;
    cr_assert_null(tp_conn_open(hub, "\xff", 0, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_str_eq(err.message, "tenant: must be 1 to 256 bytes of UTF-8");
    cr_assert_null(tp_hub_tenant(hub, "a\xc3"));
}

Test(proto, write_that_changes_nothing_is_acked_without_patch)
{
    json_t *r = reply(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\","
                         "\"patch\":{\"title\":\"a\"}}");
    cr_assert_str_eq(str(r, "type"), "ack");
    cr_assert_eq(json_integer_value(json_object_get(r, "rev")), 1);
    cr_assert_null(json_object_get(r, "from"));
    json_decref(r);
    r = reply(a, "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{"
                 "\"zz\":null}}");
    cr_assert_str_eq(str(r, "type"), "ack", "shared: no patch, just the ack");
    json_decref(r);
    assert_untouched();
}

static json_t *
resume(const char *query)
{
    tp_conn *c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    json_t *m = tpt_drain(c);
    cr_assert_eq(json_array_size(m), 1, "only hello before the resume");
    json_decref(m);
    tpt_feed(c, query);
    m = tpt_drain(c);
    tp_conn_close(c);
    return m;
}

Test(proto, resume_sends_missed_patches_snapshots_and_removed)
{
    write_rw(b, 3);
    tpt_drain_all(hub);
    json_t *m = resume("{\"type\":\"resume\",\"models\":["
                       "{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":2},"
                       "{\"scope\":\"private\",\"id\":\"n\",\"rev\":1},"
                       "{\"scope\":\"private\",\"id\":\"gone\",\"rev\":4}]}");
    /* rw: the two patches since rev 2; n: up to date; gone: removed; ro:
     * not listed, so a snapshot; then synced. */
    cr_assert_eq(json_array_size(m), 5, "%zu messages", json_array_size(m));
    cr_assert_str_eq(str(json_array_get(m, 0), "type"), "patch");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(m, 0), "from")), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(m, 1), "rev")), 4);
    cr_assert_str_eq(str(json_array_get(m, 2), "type"), "removed");
    cr_assert_str_eq(str(json_array_get(m, 2), "id"), "gone");
    cr_assert_str_eq(str(json_array_get(m, 3), "type"), "snapshot");
    cr_assert_str_eq(str(json_array_get(m, 3), "id"), "ro");
    cr_assert_str_eq(str(json_array_get(m, 4), "type"), "synced");
    json_decref(m);
}

Test(proto, resume_falls_back_to_snapshot)
{
    teardown();
    tp_limits l = {0};
    l.history_patches = 4;
    setup_with(l);
    write_rw(b, 10);
    tpt_drain_all(hub);
    /* rev 3 is older than the 4 patches kept: a snapshot. */
    json_t *m =
        resume("{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":3}]}");
    cr_assert_str_eq(str(json_array_get(m, 0), "type"), "snapshot");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(m, 0), "rev")), 11);
    json_decref(m);
    /* rev 7 is kept: the 4 patches. */
    m = resume("{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":7}]}");
    cr_assert_eq(tpt_count(m, "patch"), 4);
    json_decref(m);
    /* A rev from the future (a server that lost state): a snapshot. */
    m = resume(
        "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":99}]}");
    cr_assert_str_eq(str(json_array_get(m, 0), "type"), "snapshot");
    json_decref(m);
    /* The access changed after the client's rev: a snapshot with the new access. */
    tp_hub_subscribe(hub, "alice", "rw", TP_READ);
    tpt_drain_all(hub);
    m = resume(
        "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":11}]}");
    cr_assert_str_eq(str(json_array_get(m, 0), "type"), "snapshot");
    cr_assert_str_eq(str(json_array_get(m, 0), "access"), "read");
    json_decref(m);
}

Test(proto, history_grows_to_its_limit_and_resumes_from_any_kept_rev)
{
    /* The ring starts small and doubles: 300 patches keep the last 256. */
    for (int i = 0; i < 300; i++) {
        write_rw(b, 1);
        tpt_drain_all(hub);
    }
    int64_t rev = tp_hub_shared_rev(hub, "rw");
    cr_assert_geq(rev, 301, "rev %lld", (long long)rev);
    int64_t froms[] = {rev - 1, rev - 7, rev - 100, rev - 256};
    for (size_t k = 0; k < sizeof froms / sizeof froms[0]; k++) {
        char q[200];
        snprintf(
            q, sizeof q,
            "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":%lld}]}",
            (long long)froms[k]);
        json_t *m = resume(q);
        cr_assert_eq(tpt_count(m, "patch"), (size_t)(rev - froms[k]), "from %lld",
                     (long long)froms[k]);
        int64_t at = froms[k];
        for (size_t i = 0; i < json_array_size(m); i++) {
            json_t *e = json_array_get(m, i);
            if (strcmp(str(e, "type"), "patch") != 0 || strcmp(str(e, "id"), "rw") != 0)
                continue;
            cr_assert_eq(json_integer_value(json_object_get(e, "from")), at);
            at = json_integer_value(json_object_get(e, "rev"));
        }
        cr_assert_eq(at, rev);
        json_decref(m);
    }
    char q[200];
    snprintf(q, sizeof q,
             "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":%lld}]}",
             (long long)(rev - 257));
    json_t *m = resume(q);
    cr_assert_str_eq(str(json_array_get(m, 0), "type"), "snapshot", "older than what is kept");
    json_decref(m);
}

Test(proto, first_message_not_resume_counts_as_empty_resume)
{
    tp_conn *c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(c));
    tpt_feed(c, "{\"type\":\"ping\",\"ref\":9}");
    json_t *m = tpt_drain(c);
    cr_assert_eq(tpt_count(m, "snapshot"), 3);
    cr_assert_str_eq(str(json_array_get(m, 3), "type"), "synced");
    cr_assert_str_eq(str(json_array_get(m, 4), "type"), "pong");
    json_decref(m);
    tp_conn_close(c);
}

Test(proto, exactly_once_across_reconnects)
{
    tpt_feed(a, "{\"type\":\"ping\",\"ref\":0,\"client\":\"phone-1\"}");
    json_decref(tpt_drain(a));
    const char *w =
        "{\"type\":\"write\",\"ref\":5,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{\"n\":1}}";
    tpt_feed(a, w);
    json_t *first = tpt_drain(a);
    json_t *ack1 = json_incref(tpt_find(first, "ack"));
    json_decref(first);
    tpt_drain_all(hub);
    /* The connection drops; a new one names the same client and resends. */
    tp_conn_close(a);
    a = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(a));
    tpt_feed(a, "{\"type\":\"resume\",\"client\":\"phone-1\",\"models\":[{\"scope\":\"shared\","
                "\"id\":\"rw\",\"rev\":2}]}");
    json_decref(tpt_drain(a));
    json_t *again = reply(a, w);
    cr_assert(json_equal(again, ack1), "the original outcome, again");
    cr_assert_eq(tp_hub_shared_rev(hub, "rw"), 2, "never applied twice");
    json_decref(again);
    json_decref(ack1);
    /* Refused outcomes are remembered too. */
    const char *bad =
        "{\"type\":\"write\",\"ref\":6,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{\"n\":-5}}";
    json_t *e1 = reply(a, bad);
    json_t *e2 = reply(a, bad);
    cr_assert_str_eq(str(e1, "code"), "invalid");
    cr_assert(json_equal(e1, e2));
    json_decref(e1);
    json_decref(e2);
    /* A different tenant's client with the same id is another client. */
    tpt_feed(b, "{\"type\":\"ping\",\"ref\":0,\"client\":\"phone-1\"}");
    json_decref(tpt_drain(b));
    tpt_feed(
        b, "{\"type\":\"write\",\"ref\":5,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{\"n\":7}}");
    json_t *mb = tpt_drain(b);
    json_t *r = tpt_find(mb, "ack");
    cr_assert_not_null(r, "bob's ref 5 is his own: applied");
    cr_assert_eq(json_integer_value(json_object_get(r, "rev")), 3);
    json_decref(mb);
    /* Renaming a connection's client is refused. */
    json_decref(tpt_drain(a)); /* bob's patch */
    assert_error(a, "{\"type\":\"ping\",\"ref\":1,\"client\":\"other\"}", "bad_request", "client");
}

Test(proto, duplicate_once_the_outcome_is_forgotten)
{
    tpt_feed(a, "{\"type\":\"ping\",\"ref\":0,\"client\":\"k\"}");
    json_decref(tpt_drain(a));
    for (int i = 1; i <= 300; i++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\",\"patch\":{"
                 "\"n\":%d}}",
                 i, i);
        tpt_feed(a, w);
    }
    tpt_drain_all(hub);
    int64_t rev = tp_session_rev(tp_hub_tenant(hub, "alice"), "n");
    cr_assert_eq(rev, 301);
    /* The last 256 outcomes are remembered: ref 100 is not. */
    assert_error(
        a, "{\"type\":\"write\",\"ref\":10,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":0}}",
        "duplicate", "ref");
    json_t *r = reply(
        a,
        "{\"type\":\"write\",\"ref\":290,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"n\":0}}");
    cr_assert_str_eq(str(r, "type"), "ack");
    cr_assert_eq(json_integer_value(json_object_get(r, "rev")), 291);
    json_decref(r);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "n"), 301);
}

/* Revs continue by one per published change for every recipient. */
Test(proto, rev_continuity_under_mixed_writes)
{
    int64_t seen_a = 1, seen_b = 1;
    unsigned seed = 7;
    for (int i = 0; i < 500; i++) {
        seed = seed * 1103515245u + 12345u;
        char w[200];
        tp_conn *writer = (seed >> 16) & 1 ? a : b;
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"shared\",\"id\":\"rw\",\"patch\":{"
                 "\"n\":%u}}",
                 i + 1, (seed >> 8) % 5);
        tpt_feed(writer, w);
        if ((seed >> 20) % 7 == 0) {
            char h[64];
            snprintf(h, sizeof h, "{\"title\":\"h%d\"}", i);
            tp_hub_set_shared(hub, "rw", h, NULL);
        }
        if ((seed >> 24) % 5 == 0)
            tp_hub_sync(hub);
        tp_conn *cs[2] = {a, b};
        int64_t *seen[2] = {&seen_a, &seen_b};
        for (int k = 0; k < 2; k++) {
            json_t *m = tpt_drain(cs[k]);
            size_t j;
            json_t *p;
            json_array_foreach(m, j, p)
            {
                if (strcmp(str(p, "type"), "patch") != 0)
                    continue;
                cr_assert_eq(json_integer_value(json_object_get(p, "from")), *seen[k]);
                cr_assert_eq(json_integer_value(json_object_get(p, "rev")), *seen[k] + 1);
                *seen[k] += 1;
            }
            json_decref(m);
        }
    }
    tp_hub_sync(hub);
    tpt_drain_all(hub);
    cr_assert_eq(seen_a, seen_b);
    cr_assert_geq(tp_hub_shared_rev(hub, "rw"), seen_a);
}

Test(proto, resume_wait_ends_with_any_first_frame)
{
    const char *firsts[] = {"not json", "42", "{\"ref\":1}", "[{\"type\":\"ping\",\"ref\":1}]"};
    for (size_t i = 0; i < sizeof firsts / sizeof *firsts; i++) {
        tp_conn *c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
        json_decref(tpt_drain(c));
        tpt_feed(c, firsts[i]);
        json_t *m = tpt_drain(c);
        cr_assert_eq(tpt_count(m, "snapshot"), 3, "after %s", firsts[i]);
        cr_assert_eq(tpt_count(m, "synced"), 1);
        cr_assert_eq(tpt_count(m, "error") + tpt_count(m, "pong"), 1);
        json_decref(m);
        tp_conn_close(c);
    }
}

Test(proto, client_ids_count_characters)
{
    char id[64 * 2 + 1] = "";
    for (int i = 0; i < 64; i++)
        strcat(id, "\xc3\xa9"); /* é: 64 characters, 128 bytes */
    char ping[300];
    snprintf(ping, sizeof ping, "{\"type\":\"ping\",\"ref\":1,\"client\":\"%s\"}", id);
    json_t *r = reply(a, ping);
    cr_assert_str_eq(str(r, "type"), "pong");
    json_decref(r);
    snprintf(ping, sizeof ping, "{\"type\":\"ping\",\"ref\":1,\"client\":\"%sx\"}", id);
    assert_error(a2, ping, "bad_request", "client");
}

Test(proto, models_stay_within_the_message_limit)
{
    teardown();
    tp_limits l = {0};
    l.max_message_bytes = 4096;
    setup_with(l);
    tp_error err;
    char big[6000];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"title\":\"t\",\"body\":\"", 21);
    memcpy(big + sizeof big - 3, "\"}", 3);
    cr_assert_null(tp_hub_share(hub, doc, big, NULL, &err));
    cr_assert_eq(err.code, TP_EINVALID);
    cr_assert(strstr(err.message, "bytes") != NULL, "%s", err.message);
    /* Writes that would grow the model past the limit are refused. */
    char w[4000];
    char chunk[3501];
    memset(chunk, 'y', sizeof chunk - 1);
    chunk[sizeof chunk - 1] = '\0';
    snprintf(w, sizeof w,
             "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"body\":"
             "\"%.2000s\"}}",
             chunk);
    json_t *r = reply(a, w);
    cr_assert_str_eq(str(r, "type"), "ack", "a 2000-byte body fits: %s", str(r, "message"));
    json_decref(r);
    json_decref(tpt_drain(a2));
    snprintf(w, sizeof w,
             "{\"type\":\"write\",\"ref\":2,\"scope\":\"private\",\"id\":\"n\",\"patch\":{\"body\":"
             "\"%s\"}}",
             chunk);
    assert_error(a, w, "invalid", "bytes, over the limit");
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "n"), 2);
}

/* A client away while a model was deleted and another hosted under the
 * same id, or while its tenant was unsubscribed and subscribed again, may
 * list the old revs: it gets a snapshot, never patches of the new model. */
Test(proto, resume_after_an_id_or_subscription_was_reused)
{
    tp_session *s = tp_hub_tenant(hub, "alice");
    cr_assert_eq(tp_session_delete(s, "n"), TP_OK);
    cr_assert_not_null(tp_session_host_as(s, "n", doc, "{\"title\":\"again\"}", NULL));
    cr_assert_eq(tp_hub_unsubscribe(hub, "alice", "rw"), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "rw", TP_WRITE), TP_OK);
    cr_assert_eq(tp_hub_unshare(hub, "ro"), TP_OK);
    cr_assert_not_null(tp_hub_share_as(hub, "ro", doc, "{\"title\":\"ro2\"}", NULL, NULL));
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "ro", TP_READ), TP_OK);
    tpt_drain_all(hub);
    json_t *m = resume("{\"type\":\"resume\",\"models\":["
                       "{\"scope\":\"private\",\"id\":\"n\",\"rev\":1},"
                       "{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":1},"
                       "{\"scope\":\"shared\",\"id\":\"ro\",\"rev\":1}]}");
    cr_assert_eq(tpt_count(m, "snapshot"), 3, "every listed model: a snapshot");
    cr_assert_str_eq(str(json_object_get(json_array_get(m, 0), "value"), "title"), "again");
    json_decref(m);
    /* A first subscription is not an access change: nothing to send. */
    tp_hub_subscribe(hub, "carol", "rw", TP_WRITE);
    tp_conn *c = tp_conn_open(hub, "carol", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(c));
    tpt_feed(c,
             "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":1}]}");
    m = tpt_drain(c);
    cr_assert_eq(json_array_size(m), 1, "just synced");
    json_decref(m);
    tp_conn_close(c);
}

/* Issue 11: one resume listing the same model many times made the hub
 * encode (and queue) its snapshot once per entry. Each model is answered
 * once, by its first entry; an id the tenant cannot see gets one removed. */
Test(proto, resume_answers_each_listed_model_once)
{
    tp_session *alice = tp_hub_tenant(hub, "alice");
    char *v = big_value(300000);
    cr_assert_not_null(tp_session_host_as(alice, "big", doc, v, NULL));
    free(v);
    tpt_drain_all(hub);
    tp__sb q;
    tp__sb_init(&q, 16384);
    tp__sb_puts(&q, "{\"type\":\"resume\",\"models\":[");
    for (int i = 0; i < 250; i++) {
        static const char *const e[] = {"{\"scope\":\"private\",\"id\":\"big\",\"rev\":0}",
                                        "{\"scope\":\"shared\",\"id\":\"ro\",\"rev\":0}",
                                        "{\"scope\":\"private\",\"id\":\"nope\",\"rev\":1}",
                                        "{\"scope\":\"shared\",\"id\":\"nope\",\"rev\":1}",
                                        "{\"scope\":\"private\",\"id\":\"big\",\"rev\":1}"};
        if (i > 0)
            tp__sb_puts(&q, ",");
        tp__sb_puts(&q, e[i % 5]);
    }
    tp__sb_puts(&q, "]}");
    tp__buf *text = tp__sb_finish(&q);
    tp_conn *c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(c));
    cr_assert_eq(tpt_feed(c, text->data), TP_OK);
    tp__buf_unref(text);
    size_t bytes = tp_conn_outbox_bytes(c);
    cr_assert_lt(bytes, 310000, "one snapshot of big, not 100: %zu bytes queued", bytes);
    json_t *m = tpt_drain(c);
    /* big and ro once (listed), then n and rw (not listed), then synced. */
    cr_assert_eq(tpt_count(m, "snapshot"), 4);
    cr_assert_eq(tpt_count(m, "removed"), 2, "one per scope for nope");
    cr_assert_eq(tpt_count(m, "synced"), 1);
    json_decref(m);
    tp_conn_close(c);
}

/* Issue 11: a resume may list the models the tenant can see and up to
 * 256 it no longer sees; more is refused before any work. */
Test(proto, resume_listing_more_models_than_visible_is_refused)
{
    tp__sb q;
    tp__sb_init(&q, 16384);
    tp__sb_puts(&q, "{\"type\":\"resume\",\"ref\":7,\"models\":[");
    for (int i = 0; i < 3 + 256 + 1; i++) {
        if (i > 0)
            tp__sb_puts(&q, ",");
        tp__sb_puts(&q, "{\"scope\":\"private\",\"id\":\"x");
        tp__sb_int(&q, i);
        tp__sb_puts(&q, "\",\"rev\":1}");
    }
    tp__sb_puts(&q, "]}");
    tp__buf *text = tp__sb_finish(&q);
    tp_conn *c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(c));
    cr_assert_eq(tpt_feed(c, text->data), TP_OK);
    json_t *m = tpt_drain(c);
    json_t *e = json_array_get(m, 0);
    cr_assert_str_eq(str(e, "type"), "error");
    cr_assert_str_eq(str(e, "code"), "bad_request");
    cr_assert_eq(json_integer_value(json_object_get(e, "ref")), 7);
    cr_assert_str_eq(
        str(e, "message"),
        "models: 260 entries, more than the 3 models this tenant can see and 256 more");
    /* Then an empty resume: every snapshot, synced, no removed. */
    cr_assert_eq(tpt_count(m, "removed"), 0);
    cr_assert_eq(tpt_count(m, "snapshot"), 3);
    cr_assert_eq(tpt_count(m, "synced"), 1);
    json_decref(m);
    /* On a live connection: the error alone. */
    cr_assert_eq(tpt_feed(a, text->data), TP_OK);
    m = tpt_drain(a);
    cr_assert_eq(json_array_size(m), 1);
    cr_assert_str_eq(str(json_array_get(m, 0), "code"), "bad_request");
    json_decref(m);
    tp__buf_unref(text);
    tp_conn_close(c);
}

/* Issue 11: a resume on a live connection takes a token from the writes'
 * budget: a client cannot make the hub encode snapshots in a loop. */
Test(proto, later_resumes_are_rate_limited)
{
    teardown();
    tp_limits l = {0};
    l.writes_per_second = 5;
    setup_with(l);
    const char *q =
        "{\"type\":\"resume\",\"ref\":3,\"models\":[{\"scope\":\"private\",\"id\":\"n\","
        "\"rev\":0}]}";
    size_t snaps = 0, limited = 0;
    for (int i = 0; i < 20; i++) {
        tpt_feed(a, q);
        json_t *m = tpt_drain(a);
        snaps += tpt_count(m, "snapshot");
        json_t *e = tpt_find(m, "error");
        if (e != NULL) {
            cr_assert_str_eq(str(e, "code"), "rate_limited");
            cr_assert_eq(json_integer_value(json_object_get(e, "ref")), 3);
            limited++;
        }
        json_decref(m);
    }
    cr_assert_eq(snaps, 5, "the burst: %zu", snaps);
    cr_assert_eq(limited, 15);
    /* Time refills the bucket. */
    now += 1000;
    json_t *m = (tpt_feed(a, q), tpt_drain(a));
    cr_assert_eq(tpt_count(m, "snapshot"), 1);
    json_decref(m);
    /* The first resume of a connection is the sync: never rate limited. */
    tp_conn *c = tp_conn_open(hub, "alice", TP_CONN_RESUME, NULL);
    json_decref(tpt_drain(c));
    for (int i = 0; i < 5; i++)
        tpt_feed(a, q);
    json_decref(tpt_drain(a));
    tpt_feed(c, q);
    m = tpt_drain(c);
    cr_assert_null(tpt_find(m, "error"));
    cr_assert_eq(tpt_count(m, "synced"), 1);
    json_decref(m);
    tp_conn_close(c);
}

/* Issue 11: a resume far behind on many small models would be answered
 * with up to history_bytes of patches each, far more than their snapshots.
 * Patches are the answer while they fit in max_outbox_bytes for the whole
 * resume (or take no more than the snapshot); then snapshots. */
Test(proto, a_resume_sends_patches_within_its_room_then_snapshots)
{
    teardown();
    tp_limits l = {0};
    l.max_outbox_bytes = 4096;
    setup_with(l);
    for (int i = 0; i < 60; i++) {
        write_rw(b, 1);
        tpt_drain_all(hub);
    }
    int64_t rev = tp_hub_shared_rev(hub, "rw");
    /* 20 patches (about 2.4 KB) fit: patches. */
    char q[300];
    snprintf(q, sizeof q,
             "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":%lld}]}",
             (long long)(rev - 20));
    json_t *m = resume(q);
    cr_assert_eq(tpt_count(m, "patch"), 20);
    json_decref(m);
    /* 60 (about 7 KB, more than the room and than the snapshot): a snapshot. */
    snprintf(q, sizeof q,
             "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":\"rw\",\"rev\":%lld}]}",
             (long long)(rev - 60));
    m = resume(q);
    cr_assert_eq(tpt_count(m, "patch"), 0);
    json_t *s = tpt_find(m, "snapshot");
    cr_assert_not_null(s);
    cr_assert_str_eq(str(s, "id"), "rw");
    cr_assert_eq(json_integer_value(json_object_get(s, "rev")), rev);
    json_decref(m);
}
