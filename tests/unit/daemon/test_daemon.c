/*
 * transportsd's hub, built from configs: the demo is the guide's setup, a
 * config's models, shares and subscriptions are what the hub holds (seen
 * through the public API and through connections, as a client would see
 * them), files are read with their errors, and the command-line options
 * reach the hub.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "support.h"
#include "transports.h"

#define EXAMPLES_DIR TP_CASES_DIR "/../../examples"

/* Every test in a directory of its own: the demo stores in transports.db. */
TestSuite(daemon, .init = tpt_chdir_temp, .fini = tpt_chdir_back);

static tp__daemon *
built(const char *text, const tp__daemon_options *opt)
{
    tp__derror err;
    memset(&err, 0, sizeof err);
    tp__daemon *d = tp__daemon_from_text(text, "test.json", opt, &err);
    cr_assert_not_null(d, "refused: %s", err.message);
    return d;
}

static void
assert_json(char *got, const char *want)
{
    cr_assert_not_null(got, "no value, want %s", want);
    cr_assert(tpt_json_text_eq(got, want), "got %s, want %s", got, want);
    free(got);
}

/* open_conn opens a connection for a tenant and returns its first messages. */
static tp_conn *
open_conn(tp_hub *hub, const char *tenant, json_t **msgs)
{
    tp_error err;
    tp_conn *c = tp_conn_open(hub, tenant, 0, &err);
    cr_assert_not_null(c, "%s", err.message);
    *msgs = tpt_drain(c);
    return c;
}

/* snapshot returns the snapshot of (scope, id) in msgs, or NULL. Borrowed. */
static json_t *
snapshot(json_t *msgs, const char *scope, const char *id)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "type")), "snapshot") == 0 &&
            strcmp(json_string_value(json_object_get(m, "scope")), scope) == 0 &&
            strcmp(json_string_value(json_object_get(m, "id")), id) == 0)
            return m;
    }
    return NULL;
}

static const char *
access_of(json_t *msgs, const char *scope, const char *id)
{
    json_t *s = snapshot(msgs, scope, id);
    return s ? json_string_value(json_object_get(s, "access")) : NULL;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* write_with_ts sends a shared write stamped ts and returns the messages the
 * writer gets back. */
static json_t *
write_with_ts(tp_conn *c, const char *sid, const char *body, int64_t ts, int ref)
{
    char text[512];
    snprintf(text, sizeof text,
             "{\"type\":\"write\",\"ref\":%d,\"scope\":\"shared\",\"id\":\"%s\","
             "\"patch\":{\"body\":\"%s\"},\"ts\":{\"wall\":%lld,\"count\":0}}",
             ref, sid, body, (long long)ts);
    cr_assert_eq(tpt_feed(c, text), TP_OK);
    return tpt_drain(c);
}

/* ---- The demo ---- */

Test(daemon, demo_is_the_guide)
{
    tp__derror err;
    tp__daemon *d = tp__daemon_demo(NULL, &err);
    cr_assert_not_null(d, "%s", err.message);
    tp_hub *hub = d->hub;

    /* Private notes, isolated per tenant, defaults filled in. */
    assert_json(tp_session_get(tp_hub_tenant(hub, "alice"), "notes"),
                "{\"title\":\"Alice notes\",\"body\":\"\"}");
    assert_json(tp_session_get(tp_hub_tenant(hub, "bob"), "notes"),
                "{\"title\":\"Bob notes\",\"body\":\"\"}");
    assert_json(tp_hub_get_shared(hub, "roadmap"), "{\"title\":\"Roadmap\",\"body\":\"\"}");
    cr_assert_eq(tp_session_rev(tp_hub_tenant(hub, "alice"), "notes"), 1);
    cr_assert_eq(tp_hub_shared_rev(hub, "roadmap"), 1);

    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    cr_assert_eq(st.tenants, 2);
    cr_assert_eq(st.models_private, 2);
    cr_assert_eq(st.models_shared, 1);

    /* What each tenant sees: alice writes the roadmap, bob reads it. */
    json_t *am, *bm;
    tp_conn *a = open_conn(hub, "alice", &am);
    tp_conn *b = open_conn(hub, "bob", &bm);
    json_t *hello = tpt_find(am, "hello");
    cr_assert_not_null(hello);
    cr_assert_eq(json_integer_value(json_object_get(hello, "tick_ms")), 50);
    cr_assert_str_eq(access_of(am, "shared", "roadmap"), "write");
    cr_assert_str_eq(access_of(bm, "shared", "roadmap"), "read");
    cr_assert_str_eq(access_of(am, "private", "notes"), "write");
    cr_assert_str_eq(
        json_string_value(json_object_get(snapshot(am, "shared", "roadmap"), "schema")),
        "Document");
    json_decref(am);
    json_decref(bm);

    cr_assert_eq(tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\","
                             "\"id\":\"roadmap\",\"patch\":{\"body\":\"bob\"}}"),
                 TP_OK);
    json_t *got = tpt_drain(b);
    json_t *e = tpt_find(got, "error");
    cr_assert_not_null(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "forbidden");
    json_decref(got);

    /* lww-map: a write stamped earlier loses its field whatever the arrival order. */
    int64_t now = now_ms();
    json_decref(write_with_ts(a, "roadmap", "later", now + 30000, 1));
    json_decref(write_with_ts(a, "roadmap", "earlier", now + 20000, 2));
    assert_json(tp_hub_get_shared(hub, "roadmap"), "{\"title\":\"Roadmap\",\"body\":\"later\"}");

    tp_conn_close(a);
    tp_conn_close(b);
    tp__daemon_free(d);
}

Test(daemon, demo_settings_are_the_designs_defaults)
{
    tp__derror err;
    tp__daemon *d = tp__daemon_demo(NULL, &err);
    cr_assert_not_null(d, "%s", err.message);
    cr_assert_str_eq(d->cfg.server.listen, "127.0.0.1:8080");
    cr_assert_str_eq(d->cfg.server.route, "/ws/{tenant}");
    cr_assert_eq(d->cfg.server.autosync_ms, 50);
    cr_assert_eq(d->cfg.hub.limits.max_message_bytes, 1048576);
    cr_assert_eq(d->cfg.hub.limits.max_outbox_bytes, 8388608);
    cr_assert_eq(d->cfg.hub.limits.writes_per_second, 1000);
    cr_assert_eq(d->cfg.server.max_connections_per_tenant, 256);
    tp__daemon_free(d);
}

Test(daemon, examples_demo_json_is_the_demo)
{
    json_t *file = tpt_load_json(EXAMPLES_DIR "/demo.json");
    json_t *builtin = json_loads(tp__daemon_demo_config, JSON_REJECT_DUPLICATES, NULL);
    cr_assert_not_null(builtin);
    cr_assert(json_equal(file, builtin), "examples/demo.json differs from --demo");
    json_decref(file);
    json_decref(builtin);

    tp__derror err;
    tp__daemon *d = tp__daemon_load(EXAMPLES_DIR "/demo.json", NULL, &err);
    cr_assert_not_null(d, "%s", err.message);
    assert_json(tp_hub_get_shared(d->hub, "roadmap"), "{\"title\":\"Roadmap\",\"body\":\"\"}");
    tp__daemon_free(d);
}

/* DESIGN.md's example config, as printed there. */
static const char design_example[] =
    "{\"listen\": \"127.0.0.1:8080\", \"route\": \"/ws/{tenant}\", \"autosync_ms\": 50,"
    " \"storage\": {\"sqlite\": \"transports.db\"}, \"auth\": {\"mode\": \"path\"},"
    " \"admin_token_env\": \"TRANSPORTS_ADMIN_TOKEN\","
    " \"schemas\": {\"Document\": {\"title\": \"Document\", \"type\": \"object\","
    "   \"properties\": {\"title\": {\"type\": \"string\"}, \"body\": {\"type\": \"string\","
    "   \"default\": \"\"}}, \"required\": [\"title\"]}},"
    " \"tenants\": {\"alice\": {\"models\": {\"notes\": {\"schema\": \"Document\", \"value\":"
    "   {\"title\": \"Alice notes\"}}}}, \"bob\": {\"models\": {\"notes\": {\"schema\":"
    "   \"Document\", \"value\": {\"title\": \"Bob notes\"}}}}},"
    " \"shared\": {\"roadmap\": {\"schema\": \"Document\", \"merge\": \"lww-map\", \"value\":"
    "   {\"title\": \"Roadmap\"}, \"subscribers\": {\"alice\": \"write\", \"bob\": \"read\"}}},"
    " \"limits\": {\"max_message_bytes\": 1048576, \"max_outbox_bytes\": 8388608,"
    "   \"writes_per_second\": 1000, \"max_connections_per_tenant\": 256}}";

Test(daemon, the_designs_example_is_the_demo_and_stored)
{
    tp__daemon *d = built(design_example, NULL);
    cr_assert_str_eq(d->cfg.sqlite, "transports.db");
    cr_assert_eq(d->restored, 0);
    tp__daemon_free(d);

    /* Built again on its database: restored, the config's state not made again. */
    d = built(design_example, NULL);
    cr_assert_eq(d->restored, 1);
    assert_json(tp_session_get(tp_hub_tenant(d->hub, "bob"), "notes"),
                "{\"title\":\"Bob notes\",\"body\":\"\"}");
    cr_assert_eq(tp_hub_shared_rev(d->hub, "roadmap"), 1);
    tp__daemon_free(d);

    /* Restored or not, a mistake in the config's initial state is reported. */
    json_t *bad = json_loads(design_example, 0, NULL);
    json_object_set_new(json_object_get(json_object_get(bad, "shared"), "roadmap"), "value",
                        json_pack("{s:i}", "title", 5));
    char *bad_text = json_dumps(bad, 0);
    json_decref(bad);
    tp__derror derr;
    cr_assert_null(tp__daemon_from_text(bad_text, "test.json", NULL, &derr));
    free(bad_text);
    cr_assert_str_eq(derr.message,
                     "test.json: shared.roadmap.value: title: expected string, got number");

    /* With storage in memory instead, it is the demo's state. */
    json_t *cfg = json_loads(design_example, 0, NULL);
    json_object_set_new(cfg, "storage", json_pack("{s:b}", "memory", 1));
    char *text = json_dumps(cfg, 0);
    json_decref(cfg);
    d = built(text, NULL);
    free(text);
    cr_assert_str_eq(d->cfg.admin_token_env, "TRANSPORTS_ADMIN_TOKEN");
    assert_json(tp_session_get(tp_hub_tenant(d->hub, "bob"), "notes"),
                "{\"title\":\"Bob notes\",\"body\":\"\"}");
    tp__daemon_free(d);
}

/* ---- Configs and the hub they build ---- */

#define SCHEMAS                                                                                    \
    "\"schemas\":{\"Doc\":{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"                 \
    "\"title\":{\"type\":\"string\",\"default\":\"untitled\"},"                                    \
    "\"body\":{\"type\":\"string\",\"default\":\"\"}}},"                                           \
    "\"Counter\":{\"title\":\"Counter\",\"type\":\"object\",\"properties\":{"                      \
    "\"n\":{\"type\":\"integer\",\"minimum\":0}},\"required\":[\"n\"]}}"

Test(daemon, models_are_hosted_under_their_ids_with_their_schemas)
{
    tp__daemon *d = built("{" SCHEMAS ",\"tenants\":{"
                          "\"alice\":{\"models\":{\"notes\":{\"schema\":\"Doc\"},"
                          "\"count\":{\"schema\":\"Counter\",\"value\":{\"n\":3}}}},"
                          "\"bob\":{\"models\":{\"notes\":{\"schema\":\"Doc\","
                          "\"value\":{\"title\":\"Bob\"}}}}}}",
                          NULL);
    tp_session *alice = tp_hub_tenant(d->hub, "alice");
    /* No value: the schema's defaults. */
    assert_json(tp_session_get(alice, "notes"), "{\"title\":\"untitled\",\"body\":\"\"}");
    assert_json(tp_session_get(alice, "count"), "{\"n\":3}");
    assert_json(tp_session_get(tp_hub_tenant(d->hub, "bob"), "notes"),
                "{\"title\":\"Bob\",\"body\":\"\"}");
    /* The ids are the config's keys: nothing was hosted with an assigned id. */
    cr_assert_null(tp_session_get(alice, "1"));

    /* The schema travels with the model: a write is validated against it. */
    json_t *msgs;
    tp_conn *c = open_conn(d->hub, "alice", &msgs);
    cr_assert_str_eq(
        json_string_value(json_object_get(snapshot(msgs, "private", "count"), "schema")),
        "Counter");
    json_decref(msgs);
    cr_assert_eq(tpt_feed(c, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\","
                             "\"id\":\"count\",\"patch\":{\"n\":-1}}"),
                 TP_OK);
    msgs = tpt_drain(c);
    json_t *e = tpt_find(msgs, "error");
    cr_assert_not_null(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "invalid");
    json_decref(msgs);
    tp_conn_close(c);
    tp__daemon_free(d);
}

Test(daemon, shares_and_subscriptions)
{
    tp__daemon *d = built("{" SCHEMAS ",\"tenants\":{\"carol\":{}},\"shared\":{"
                          "\"board\":{\"schema\":\"Doc\",\"value\":{\"title\":\"B\"},"
                          "\"subscribers\":{\"dave\":\"write\",\"erin\":\"read\"}},"
                          "\"quiet\":{\"schema\":\"Counter\",\"merge\":\"lww\","
                          "\"value\":{\"n\":0}}}}",
                          NULL);
    assert_json(tp_hub_get_shared(d->hub, "board"), "{\"title\":\"B\",\"body\":\"\"}");
    assert_json(tp_hub_get_shared(d->hub, "quiet"), "{\"n\":0}");
    tp_hub_stats st;
    tp_hub_get_stats(d->hub, &st);
    /* carol (listed without models), dave and erin (subscribers only). */
    cr_assert_eq(st.tenants, 3);
    cr_assert_eq(st.models_shared, 2);
    cr_assert_eq(st.models_private, 0);

    json_t *dm, *em, *cm;
    tp_conn *dc = open_conn(d->hub, "dave", &dm);
    tp_conn *ec = open_conn(d->hub, "erin", &em);
    tp_conn *cc = open_conn(d->hub, "carol", &cm);
    cr_assert_str_eq(access_of(dm, "shared", "board"), "write");
    cr_assert_str_eq(access_of(em, "shared", "board"), "read");
    /* Nobody subscribed to "quiet", and carol to nothing. */
    cr_assert_null(snapshot(dm, "shared", "quiet"));
    cr_assert_eq(tpt_count(cm, "snapshot"), 0);
    json_decref(dm);
    json_decref(em);
    json_decref(cm);

    /* lww (the default): arrival order, whatever the ts. */
    int64_t now = now_ms();
    json_decref(write_with_ts(dc, "board", "later", now + 30000, 1));
    json_decref(write_with_ts(dc, "board", "earlier", now + 20000, 2));
    assert_json(tp_hub_get_shared(d->hub, "board"), "{\"title\":\"B\",\"body\":\"earlier\"}");

    tp_conn_close(dc);
    tp_conn_close(ec);
    tp_conn_close(cc);
    tp__daemon_free(d);
}

Test(daemon, a_tenant_key_with_a_dot_is_a_tenant)
{
    tp__daemon *d = built("{" SCHEMAS ",\"tenants\":{\"acme.com\":{\"models\":{\"my notes\":"
                          "{\"schema\":\"Doc\"}}}}}",
                          NULL);
    assert_json(tp_session_get(tp_hub_tenant(d->hub, "acme.com"), "my notes"),
                "{\"title\":\"untitled\",\"body\":\"\"}");
    tp__daemon_free(d);
}

Test(daemon, a_failure_late_in_the_build_leaves_nothing)
{
    /* The last shared model is invalid: everything before it was built,
     * and is freed (the sanitizer build checks that nothing leaks). */
    tp__derror err;
    cr_assert_null(tp__daemon_from_text(
        "{" SCHEMAS ",\"tenants\":{\"alice\":{\"models\":{\"a\":{\"schema\":\"Doc\"}}}},"
        "\"shared\":{\"s1\":{\"schema\":\"Doc\",\"subscribers\":{\"alice\":\"write\"}},"
        "\"s2\":{\"schema\":\"Counter\",\"value\":{\"n\":-2}}}}",
        "late.json", NULL, &err));
    cr_assert_str_eq(err.message, "late.json: shared.s2.value: n: -2 is less than the minimum 0");
}

/* ---- Files ---- */

static char *
temp_file(const char *text)
{
    char *path = strdup("/tmp/tp-daemon-test-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(daemon, files_are_named_in_every_message)
{
    tp__derror err;
    cr_assert_null(tp__daemon_load("/nonexistent/transports.json", NULL, &err));
    cr_assert_str_eq(err.message,
                     "/nonexistent/transports.json: cannot open: No such file or directory");

    char *path = temp_file("{\n  \"schemas\": {}\n  \"listen\": \"x\"\n}\n");
    char want[512];
    cr_assert_null(tp__daemon_load(path, NULL, &err));
    snprintf(want, sizeof want, "%s:3:10: '}' expected near '\"listen\"'", path);
    cr_assert_str_eq(err.message, want);
    unlink(path);
    free(path);

    path = temp_file("{\"schemas\": {}, \"listen\": \"x\"}");
    cr_assert_null(tp__daemon_load(path, NULL, &err));
    snprintf(want, sizeof want, "%s: listen: expected HOST:PORT, got \"x\"", path);
    cr_assert_str_eq(err.message, want);
    unlink(path);
    free(path);

    path = temp_file("{\"schemas\": {}}");
    tp__daemon *d = tp__daemon_load(path, NULL, &err);
    cr_assert_not_null(d, "%s", err.message);
    tp__daemon_free(d);
    unlink(path);
    free(path);
}

/* ---- Options ---- */

Test(daemon, listen_option_replaces_the_configs)
{
    tp__daemon_options opt = {"127.0.0.1:0", NULL, NULL, TP_LOG_INFO, NULL};
    tp__daemon *d = built("{\"schemas\":{},\"listen\":\"0.0.0.0:9000\"}", &opt);
    cr_assert_str_eq(d->cfg.server.listen, "127.0.0.1:0");
    tp__daemon_free(d);

    /* The config's own listen is still checked. */
    tp__derror err;
    cr_assert_null(
        tp__daemon_from_text("{\"schemas\":{},\"listen\":\"nowhere\"}", "c.json", &opt, &err));
    cr_assert_str_eq(err.message, "c.json: listen: expected HOST:PORT, got \"nowhere\"");

    opt.listen = "localhost";
    cr_assert_null(tp__daemon_from_text("{\"schemas\":{}}", "c.json", &opt, &err));
    cr_assert_str_eq(err.message, "--listen: expected HOST:PORT, got \"localhost\"");
}

typedef struct captured {
    int n;
    int max_level;
    char lines[8][1100];
} captured;

static void
capture(int level, const char *line, void *user)
{
    captured *c = user;
    if (level > c->max_level)
        c->max_level = level;
    if (c->n < 8)
        snprintf(c->lines[c->n], sizeof c->lines[0], "%s", line);
    c->n++;
}

static int
refused_write_logged(int level)
{
    captured cap = {0, -1, {{0}}};
    tp__daemon_options opt = {NULL, capture, &cap, level, NULL};
    tp__derror err;
    tp__daemon *d = tp__daemon_demo(&opt, &err);
    cr_assert_not_null(d, "%s", err.message);
    json_t *msgs;
    tp_conn *b = open_conn(d->hub, "bob", &msgs);
    json_decref(msgs);
    cr_assert_eq(tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\","
                             "\"id\":\"roadmap\",\"patch\":{\"body\":\"bob\"}}"),
                 TP_OK);
    json_decref(tpt_drain(b));
    tp_conn_close(b);
    tp__daemon_free(d);
    cr_assert(cap.max_level <= level, "a line above the level was handed over");
    int found = 0;
    for (int i = 0; i < cap.n && i < 8; i++)
        found |=
            strstr(cap.lines[i], "tenant=bob") != NULL && strstr(cap.lines[i], "forbidden") != NULL;
    return found;
}

Test(daemon, the_log_option_reaches_the_hub)
{
    /* A refused write is an info event: logged at info, not at warn. */
    cr_assert(refused_write_logged(TP_LOG_INFO));
    cr_assert(!refused_write_logged(TP_LOG_WARN));
}
