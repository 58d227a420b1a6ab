/*
 * transportsd's config file: every refusal, with the exact line the user
 * sees (after "transportsd: "), and the settings a good file gives. No
 * sockets: the config is checked and the hub built, nothing is bound.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "support.h"
#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Document\",\"type\":\"object\",\"properties\":{"                                 \
    "\"title\":{\"type\":\"string\"},\"body\":{\"type\":\"string\",\"default\":\"\"}},"            \
    "\"required\":[\"title\"]}"

/* A config with the schema Document and what the test adds after it. */
#define WITH_DOC(rest) "{\"schemas\":{\"Document\":" DOC "}" rest "}"

/* Every test in a directory of its own: a config may name a database file. */
TestSuite(config, .init = tpt_chdir_temp, .fini = tpt_chdir_back);

/* refused checks that text is refused, with exactly want as the message. */
static void
refused(const char *text, const char *want)
{
    tp__derror err;
    memset(&err, 0, sizeof err);
    tp__daemon *d = tp__daemon_from_text(text, "demo.json", NULL, &err);
    if (d != NULL) {
        tp__daemon_free(d);
        cr_assert_fail("accepted, expected \"%s\": %s", want, text);
    }
    cr_assert_str_eq(err.message, want, "got  %s\nwant %s\nfor  %s", err.message, want, text);
}

static tp__daemon *
built(const char *text)
{
    tp__derror err;
    memset(&err, 0, sizeof err);
    tp__daemon *d = tp__daemon_from_text(text, "demo.json", NULL, &err);
    cr_assert_not_null(d, "refused: %s", err.message);
    return d;
}

/* ---- The document itself ---- */

Test(config, parse_errors_give_line_and_column)
{
    refused("{\n  \"schemas\": {},\n  \"listen\": 8080,,\n}",
            "demo.json:3:18: string or '}' expected near ','");
    refused("", "demo.json:1:0: '[' or '{' expected near end of file");
    refused("{\"schemas\": {}, \"schemas\": {}}",
            "demo.json:1:25: duplicate object key near '\"schemas\"'");
}

Test(config, the_root_must_be_an_object)
{
    refused("[1, 2]", "demo.json: expected a JSON object, got array");
}

Test(config, schemas_are_required)
{
    refused("{}", "demo.json: schemas: required: an object of {name: JSON Schema}");
    refused("{\"schemas\": []}", "demo.json: schemas: expected an object, got array");
    refused("{\"schemas\": {\"Doc\": \"x\"}}",
            "demo.json: schemas.Doc: expected a JSON Schema object, got string");
    refused("{\"schemas\": {\"\": {}}}", "demo.json: schemas[\"\"]: a schema name cannot be empty");
}

Test(config, unknown_keys_are_refused_everywhere)
{
    refused("{\"schemas\": {}, \"listne\": \"127.0.0.1:1\"}", "demo.json: listne: unknown key");
    refused(WITH_DOC(",\"limits\":{\"max_conns\":3}"), "demo.json: limits.max_conns: unknown key");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"path\",\"secret\":\"x\"}"),
            "demo.json: auth.secret: unknown key");
    refused(WITH_DOC(",\"storage\":{\"redis\":\"x\"}"), "demo.json: storage.redis: unknown key");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"modles\":{}}}"),
            "demo.json: tenants.alice.modles: unknown key");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":{\"schema\":\"Document\","
                     "\"valeu\":{}}}}}"),
            "demo.json: tenants.alice.models.notes.valeu: unknown key");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"id\":\"x\"}}"),
            "demo.json: shared.roadmap.id: unknown key");
}

Test(config, paths_quote_keys_that_are_not_plain)
{
    refused(
        WITH_DOC(",\"tenants\":{\"acme.com\":{\"models\":{\"my notes\":{\"schema\":\"Doc\"}}}}"),
        "demo.json: tenants[\"acme.com\"].models[\"my notes\"].schema: no schema \"Doc\" in "
        "schemas");
}

/* ---- listen, route, auth ---- */

Test(config, listen_must_be_host_and_port)
{
    refused(WITH_DOC(",\"listen\":8080"), "demo.json: listen: expected a string, got integer");
    refused(WITH_DOC(",\"listen\":\"8080\""),
            "demo.json: listen: expected HOST:PORT, got \"8080\"");
    refused(WITH_DOC(",\"listen\":\":8080\""),
            "demo.json: listen: expected HOST:PORT, got \":8080\"");
    refused(WITH_DOC(",\"listen\":\"localhost:http\""),
            "demo.json: listen: expected HOST:PORT with a numeric port, got \"localhost:http\"");
    refused(WITH_DOC(",\"listen\":\"127.0.0.1:65536\""),
            "demo.json: listen: port 65536 is out of range (0 to 65535)");
    refused(WITH_DOC(",\"listen\":\"127.0.0.1:\""),
            "demo.json: listen: expected HOST:PORT with a numeric port, got \"127.0.0.1:\"");
    refused(WITH_DOC(",\"listen\":\"my host:80\""),
            "demo.json: listen: bad host name in \"my host:80\"");
    refused(WITH_DOC(",\"listen\":\"[::g]:80\""),
            "demo.json: listen: bad IPv6 address in \"[::g]:80\"");
}

Test(config, listen_accepts_names_ipv4_and_ipv6)
{
    const char *good[] = {WITH_DOC(",\"listen\":\"localhost:0\""),
                          WITH_DOC(",\"listen\":\"0.0.0.0:65535\",\"auth\":{\"allow_"
                                   "unauthenticated\":true}"),
                          WITH_DOC(",\"listen\":\"[::1]:8080\"")};
    for (size_t i = 0; i < 3; i++)
        tp__daemon_free(built(good[i]));
}

Test(config, the_route_is_checked)
{
    refused(WITH_DOC(",\"route\":\"ws/{tenant}\""), "demo.json: route: must start with '/'");
    refused(WITH_DOC(",\"route\":\"/ws/{}\""),
            "demo.json: route: a parameter without a name in \"/ws/{}\"");
    refused(WITH_DOC(",\"route\":\"/ws/{org}\""),
            "demo.json: route: \"/ws/{org}\" has no {tenant} segment, which auth.mode \"path\" "
            "needs");
    refused(WITH_DOC(",\"route\":[]"), "demo.json: route: expected a string, got array");
}

Test(config, auth_modes)
{
    refused(WITH_DOC(",\"auth\":{\"mode\":\"jwt\"}"),
            "demo.json: auth.keys: auth.mode \"jwt\" needs a non-empty array of keys");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"jwt\",\"keys\":[]}"),
            "demo.json: auth.keys: auth.mode \"jwt\" needs a non-empty array of keys");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"oauth\"}"),
            "demo.json: auth.mode: expected \"path\" or \"jwt\", got \"oauth\"");
    refused(WITH_DOC(",\"auth\":\"path\""), "demo.json: auth: expected an object, got string");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"path\",\"leeway_s\":3}"),
            "demo.json: auth.leeway_s: only for auth.mode \"jwt\"");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"jwt\",\"leeway_s\":4000,\"keys\":[{}]}"),
            "demo.json: auth.leeway_s: expected an integer from 0 to 3600");
    refused(WITH_DOC(",\"auth\":{\"allow_unauthenticated\":1}"),
            "demo.json: auth.allow_unauthenticated: expected true or false, got integer");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"jwt\",\"allow_unauthenticated\":true,"
                     "\"keys\":[{\"alg\":\"HS256\",\"secret_env\":\"X\"}]}"),
            "demo.json: auth.allow_unauthenticated: only for auth.mode \"path\"");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"jwt\",\"keys\":[{\"alg\":\"HS256\","
                     "\"secret_env\":\"TP_TEST_UNSET_SECRET\"}]}"),
            "demo.json: auth.keys[0].secret_env: TP_TEST_UNSET_SECRET is not set");
    refused(WITH_DOC(",\"auth\":{\"mode\":\"jwt\",\"unknown\":1,\"keys\":[]}"),
            "demo.json: auth.unknown: unknown key");
    tp__daemon_free(built(WITH_DOC(",\"auth\":{\"mode\":\"path\"}")));
    tp__daemon_free(built(WITH_DOC(",\"auth\":{}")));
}

Test(config, jwt_mode_builds_a_verifier)
{
    setenv("TP_TEST_HS256", "0123456789abcdef0123456789abcdef", 1);
    tp__daemon *d = built(WITH_DOC(",\"route\":\"/sync\",\"auth\":{\"mode\":\"jwt\","
                                   "\"leeway_s\":10,\"keys\":[{\"alg\":\"HS256\","
                                   "\"secret_env\":\"TP_TEST_HS256\"}]}"));
    cr_assert(d->cfg.auth_jwt);
    cr_assert_not_null(d->keys);
    cr_assert_not_null(d->cfg.hub.verify);
    cr_assert_eq(d->rules.leeway_s, 10);
    cr_assert_not_null(d->warn_origins, "no origins allowlist: a warning at start");
    cr_assert_null(d->warn_unauthenticated);
    /* A token that is not one is refused through the hub's verifier. */
    tp_credential cred;
    tp_error err = {0, ""};
    cr_assert_eq(d->cfg.hub.verify("a.b.c", 5, 1700000000000, &cred, &err, d->cfg.hub.verify_user),
                 TP_EFORBIDDEN);
    cr_assert(strncmp(err.message, "token ", 6) == 0, "%s", err.message);
    tp__daemon_free(d);
    d = built(WITH_DOC(",\"origins\":[\"https://a.example\"],\"auth\":{\"mode\":\"jwt\","
                       "\"keys\":[{\"alg\":\"HS256\",\"secret_env\":\"TP_TEST_HS256\"}]}"));
    cr_assert_null(d->warn_origins);
    tp__daemon_free(d);
}

Test(config, path_mode_off_loopback_needs_allow_unauthenticated)
{
    const char *off[] = {"0.0.0.0:80", "[::]:80", "10.1.2.3:80", "example.com:80",
                         "[2001:db8::1]:80"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        char text[2048], want[512];
        snprintf(text, sizeof text, WITH_DOC(",\"listen\":\"%s\""), off[i]);
        snprintf(want, sizeof want,
                 "demo.json: listen: %s is not a loopback address and auth.mode is \"path\": "
                 "anyone who reaches it could connect as any tenant; use auth.mode \"jwt\", or "
                 "set auth.allow_unauthenticated to true",
                 off[i]);
        refused(text, want);
    }
    const char *on[] = {"127.0.0.1:0", "127.9.9.9:0", "[::1]:0", "localhost:0"};
    for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
        char text[2048];
        snprintf(text, sizeof text, WITH_DOC(",\"listen\":\"%s\""), on[i]);
        tp__daemon *d = built(text);
        cr_assert_null(d->warn_unauthenticated);
        tp__daemon_free(d);
    }
    tp__daemon *d = built(WITH_DOC(",\"listen\":\"0.0.0.0:80\",\"auth\":{\"allow_"
                                   "unauthenticated\":true}"));
    cr_assert_not_null(d->warn_unauthenticated, "allowed, and warned at every start");
    tp__daemon_free(d);
}

Test(config, tls_and_metrics_token)
{
    refused(WITH_DOC(",\"tls\":{\"cert_file\":\"a.crt\"}"), "demo.json: tls.key_file: required");
    refused(WITH_DOC(",\"tls\":{\"cert_file\":\"\",\"key_file\":\"k\"}"),
            "demo.json: tls.cert_file: expected a file name");
    refused(WITH_DOC(",\"tls\":{\"cert_file\":\"a\",\"key_file\":\"b\",\"x\":1}"),
            "demo.json: tls.x: unknown key");
    refused(WITH_DOC(",\"metrics_token_env\":\"TP_TEST_UNSET_METRICS\""),
            "demo.json: metrics_token_env: the environment variable TP_TEST_UNSET_METRICS is "
            "not set");
    setenv("TP_TEST_SHORT_METRICS", "short", 1);
    refused(WITH_DOC(",\"metrics_token_env\":\"TP_TEST_SHORT_METRICS\""),
            "demo.json: metrics_token_env: the environment variable TP_TEST_SHORT_METRICS holds "
            "fewer than 16 bytes (too easy to guess)");
    setenv("TP_TEST_METRICS", "0123456789abcdef", 1);
    tp__daemon *d =
        built(WITH_DOC(",\"metrics_token_env\":\"TP_TEST_METRICS\","
                       "\"tls\":{\"cert_file\":\"/etc/x.crt\",\"key_file\":\"k.key\"}"));
    cr_assert_str_eq(d->cfg.server.metrics_token, "0123456789abcdef");
    cr_assert_str_eq(d->cfg.server.tls_cert_file, "/etc/x.crt");
    cr_assert_str_eq(d->cfg.server.tls_key_file, "k.key");
    tp__daemon_free(d);
}

/* ---- storage, admin_token_env, origins ---- */

Test(config, storage_is_memory_or_sqlite)
{
    tp__daemon *d = built(WITH_DOC(",\"storage\":{\"sqlite\":\"t.db\"}"));
    cr_assert_str_eq(d->cfg.sqlite, "t.db");
    cr_assert_eq(d->cfg.synchronous, TP_SYNC_FULL, "the safe level by default");
    cr_assert_not_null(d->store);
    tp__daemon_free(d);
    cr_assert_eq(access("t.db", F_OK), 0, "the database file is made");
    d = built(WITH_DOC(",\"storage\":{\"sqlite\":\"n.db\",\"synchronous\":\"normal\"}"));
    cr_assert_eq(d->cfg.synchronous, TP_SYNC_NORMAL);
    tp__daemon_free(d);
    refused(WITH_DOC(",\"storage\":{\"sqlite\":\"x.db\",\"synchronous\":\"always\"}"),
            "demo.json: storage.synchronous: expected \"full\", \"normal\" or \"off\", got "
            "\"always\"");
    refused(WITH_DOC(",\"storage\":{\"memory\":true,\"synchronous\":\"off\"}"),
            "demo.json: storage.synchronous: only with \"sqlite\"");
    refused(WITH_DOC(",\"storage\":{\"memory\":true,\"evict_idle_ms\":5}"),
            "demo.json: storage.evict_idle_ms: only with \"sqlite\"");
    refused(WITH_DOC(",\"storage\":{\"sqlite\":\"x.db\",\"evict_idle_ms\":0}"),
            "demo.json: storage.evict_idle_ms: 0 is out of range (1 to 86400000)");
    refused(WITH_DOC(",\"storage\":{\"sqlite\":\"x.db\",\"memory_budget_mb\":\"1G\"}"),
            "demo.json: storage.memory_budget_mb: expected an integer, got string");
    d = built(WITH_DOC(",\"storage\":{\"sqlite\":\"e.db\",\"evict_idle_ms\":500,"
                       "\"memory_budget_mb\":64}"));
    cr_assert_eq(d->cfg.hub.evict_idle_ms, 500);
    cr_assert_eq(d->cfg.hub.memory_budget, (size_t)64 << 20);
    tp__daemon_free(d);
    refused(WITH_DOC(",\"storage\":{\"sqlite\":\"\"}"),
            "demo.json: storage.sqlite: expected a file name, got \"\"");
    refused(WITH_DOC(",\"storage\":{\"sqlite\":\"no/such/dir/x.db\"}"),
            "demo.json: storage.sqlite: sqlite: open \"no/such/dir/x.db\": unable to open database "
            "file");
    refused(WITH_DOC(",\"storage\":{\"sqlite\":1}"),
            "demo.json: storage.sqlite: expected a string, got integer");
    refused(WITH_DOC(",\"storage\":{\"memory\":false}"),
            "demo.json: storage.memory: expected true, got false");
    refused(WITH_DOC(",\"storage\":{}"),
            "demo.json: storage: expected one of {\"memory\": true} or {\"sqlite\": PATH}");
    refused(WITH_DOC(",\"storage\":{\"memory\":true,\"sqlite\":\"x.db\"}"),
            "demo.json: storage: expected one of {\"memory\": true} or {\"sqlite\": PATH}");
    tp__daemon_free(built(WITH_DOC(",\"storage\":{\"memory\":true}")));
}

/* ---- cluster ---- */

#define CLUSTER(members) WITH_DOC(",\"cluster\":{" members "}")

Test(config, cluster_needs_redis_and_node_and_no_storage)
{
    tp__daemon *d = built(CLUSTER("\"redis\":\"redis://127.0.0.1:6379/0\",\"node\":\"n1\""));
    cr_assert_str_eq(d->cfg.cluster_redis, "redis://127.0.0.1:6379/0");
    cr_assert_str_eq(d->cfg.cluster_node, "n1");
    cr_assert_eq(d->cfg.cluster_history, 256, "the log's default keep");
    cr_assert_eq(d->cfg.cluster_connect_timeout_ms, 10000);
    cr_assert_null(d->cfg.sqlite, "a cluster node has no database");
    cr_assert_null(d->store);
    tp__daemon_free(d);
    cr_assert_neq(access("transports.db", F_OK), 0, "nothing on disk (no default database)");
    d = built(CLUSTER("\"redis\":\"redis://u:p%40ss@10.0.0.1:7000\",\"node\":\"a.B_c-9\","
                      "\"history\":1000,\"connect_timeout_ms\":2500"));
    cr_assert_eq(d->cfg.cluster_history, 1000);
    cr_assert_eq(d->cfg.cluster_connect_timeout_ms, 2500);
    tp__daemon_free(d);

    refused(WITH_DOC(",\"cluster\":\"redis://x\""),
            "demo.json: cluster: expected an object, got string");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n1\",\"nodes\":3"),
            "demo.json: cluster.nodes: unknown key");
    refused(CLUSTER("\"node\":\"n1\""),
            "demo.json: cluster.redis: required: the Redis every node shares "
            "(redis://HOST:PORT/DB)");
    refused(CLUSTER("\"redis\":6379,\"node\":\"n1\""),
            "demo.json: cluster.redis: expected a string, got integer");
    refused(CLUSTER("\"redis\":\"http://h:6379\",\"node\":\"n1\""),
            "demo.json: cluster.redis: redis url: scheme: expected redis:// or unix://");
    refused(CLUSTER("\"redis\":\"rediss://u:secret@h:6379\",\"node\":\"n1\""),
            "demo.json: cluster.redis: redis url: scheme: expected redis:// or unix://");
    refused(CLUSTER("\"redis\":\"redis://h:99999\",\"node\":\"n1\""),
            "demo.json: cluster.redis: redis url: port: '99999' is not a number from 1 to 65535");
    refused(CLUSTER("\"redis\":\"redis://:@h\",\"node\":\"n1\""),
            "demo.json: cluster.redis: redis url: password: empty");
    refused(CLUSTER("\"redis\":\"redis://h\""),
            "demo.json: cluster.node: required: this node's name, unique in the cluster (1 to 64 "
            "of A-Z a-z 0-9 . _ -)");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"\""),
            "demo.json: cluster.node: expected 1 to 64 of A-Z a-z 0-9 . _ -, got \"\"");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n 1\""),
            "demo.json: cluster.node: expected 1 to 64 of A-Z a-z 0-9 . _ -, got \"n 1\"");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n:1\""),
            "demo.json: cluster.node: expected 1 to 64 of A-Z a-z 0-9 . _ -, got \"n:1\"");
    /* 65 bytes: one over. */
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":"
                    "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\""),
            "demo.json: cluster.node: expected 1 to 64 of A-Z a-z 0-9 . _ -, got "
            "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\"");
    tp__daemon_free(
        built(CLUSTER("\"redis\":\"redis://h\",\"node\":"
                      "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\"")));
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n1\",\"history\":0"),
            "demo.json: cluster.history: 0 is out of range (1 to 100000)");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n1\",\"history\":100001"),
            "demo.json: cluster.history: 100001 is out of range (1 to 100000)");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n1\",\"connect_timeout_ms\":\"1s\""),
            "demo.json: cluster.connect_timeout_ms: expected an integer, got string");
    refused(CLUSTER("\"redis\":\"redis://h\",\"node\":\"n1\",\"connect_timeout_ms\":99"),
            "demo.json: cluster.connect_timeout_ms: 99 is out of range (100 to 600000)");
    refused(WITH_DOC(",\"cluster\":{\"redis\":\"redis://h\",\"node\":\"n1\"},"
                     "\"storage\":{\"sqlite\":\"x.db\"}"),
            "demo.json: storage: not with \"cluster\": Redis is a cluster's store, and a node "
            "keeps nothing on disk (remove \"storage\")");
    refused(WITH_DOC(",\"cluster\":{\"redis\":\"redis://h\",\"node\":\"n1\"},"
                     "\"storage\":{\"memory\":true}"),
            "demo.json: storage: not with \"cluster\": Redis is a cluster's store, and a node "
            "keeps nothing on disk (remove \"storage\")");
    cr_assert_neq(access("x.db", F_OK), 0);
}

Test(config, admin_token_env_is_a_variable_name)
{
    refused(WITH_DOC(",\"admin_token_env\":true"),
            "demo.json: admin_token_env: expected a string, got boolean");
    refused(WITH_DOC(",\"admin_token_env\":\"\""),
            "demo.json: admin_token_env: \"\" is not an environment variable name");
    refused(WITH_DOC(",\"admin_token_env\":\"1TOKEN\""),
            "demo.json: admin_token_env: \"1TOKEN\" is not an environment variable name");
    refused(WITH_DOC(",\"admin_token_env\":\"MY-TOKEN\""),
            "demo.json: admin_token_env: \"MY-TOKEN\" is not an environment variable name");
    tp__daemon *d = built(WITH_DOC(",\"admin_token_env\":\"TRANSPORTS_ADMIN_TOKEN\""));
    cr_assert_str_eq(d->cfg.admin_token_env, "TRANSPORTS_ADMIN_TOKEN");
    tp__daemon_free(d);
}

Test(config, origins_are_a_list_of_strings)
{
    refused(WITH_DOC(",\"origins\":\"https://a.example\""),
            "demo.json: origins: expected an array of strings, got string");
    refused(WITH_DOC(",\"origins\":[]"),
            "demo.json: origins: empty: leave origins out to allow any origin");
    refused(WITH_DOC(",\"origins\":[\"https://a.example\",3]"),
            "demo.json: origins[1]: expected a string, got integer");
    refused(WITH_DOC(",\"origins\":[\"\"]"), "demo.json: origins[0]: an origin cannot be empty");
    refused(WITH_DOC(",\"origins\":[\"https://a.example x\"]"),
            "demo.json: origins[0]: an origin holds no spaces or control characters");
    tp__daemon *d =
        built(WITH_DOC(",\"origins\":[\"https://a.example\",\"http://localhost:3000\"]"));
    const char *const *o = d->cfg.server.origins;
    cr_assert_not_null(o);
    cr_assert_str_eq(o[0], "https://a.example");
    cr_assert_str_eq(o[1], "http://localhost:3000");
    cr_assert_null(o[2]);
    tp__daemon_free(d);
    /* Without origins, any origin: the server gets NULL. */
    d = built(WITH_DOC(""));
    cr_assert_null(d->cfg.server.origins);
    tp__daemon_free(d);
}

/* ---- Numbers ---- */

Test(config, numbers_are_checked_for_type_and_range)
{
    refused(WITH_DOC(",\"autosync_ms\":-1"),
            "demo.json: autosync_ms: -1 is out of range (0 to 3600000)");
    refused(WITH_DOC(",\"autosync_ms\":3600001"),
            "demo.json: autosync_ms: 3600001 is out of range (0 to 3600000)");
    refused(WITH_DOC(",\"autosync_ms\":50.5"),
            "demo.json: autosync_ms: expected an integer, got real number");
    refused(WITH_DOC(",\"autosync_ms\":\"50\""),
            "demo.json: autosync_ms: expected an integer, got string");
    refused(WITH_DOC(",\"flush_ms\":null"), "demo.json: flush_ms: expected an integer, got null");
    refused(WITH_DOC(",\"flush_ms\":60001"),
            "demo.json: flush_ms: 60001 is out of range (0 to 60000)");
    refused(WITH_DOC(",\"limits\":[]"), "demo.json: limits: expected an object, got array");
    refused(WITH_DOC(",\"limits\":{\"max_message_bytes\":0}"),
            "demo.json: limits.max_message_bytes: 0 is out of range (1 to 1073741824)");
    refused(WITH_DOC(",\"limits\":{\"max_message_bytes\":-5}"),
            "demo.json: limits.max_message_bytes: -5 is out of range (1 to 1073741824)");
    refused(WITH_DOC(",\"limits\":{\"max_outbox_bytes\":99999999999999999}"),
            "demo.json: limits.max_outbox_bytes: 99999999999999999 is out of range (1 to "
            "1099511627776)");
    refused(WITH_DOC(",\"limits\":{\"writes_per_second\":true}"),
            "demo.json: limits.writes_per_second: expected an integer, got boolean");
    refused(WITH_DOC(",\"limits\":{\"max_connections\":1000001}"),
            "demo.json: limits.max_connections: 1000001 is out of range (1 to 1000000)");
    refused(WITH_DOC(",\"limits\":{\"ping_interval_ms\":1e3}"),
            "demo.json: limits.ping_interval_ms: expected an integer, got real number");
    /* A number too big for jansson's integer is a parse error. */
    refused(WITH_DOC(",\"autosync_ms\":99999999999999999999"),
            "demo.json:1:195: too big integer near '99999999999999999999'");
}

Test(config, defaults_match_the_design)
{
    tp__daemon *d = built(WITH_DOC(""));
    cr_assert_str_eq(d->cfg.server.listen, "127.0.0.1:8080");
    cr_assert_str_eq(d->cfg.server.route, "/ws/{tenant}");
    cr_assert_eq(d->cfg.server.autosync_ms, 50);
    cr_assert_eq(d->cfg.hub.tick_ms, 50);
    cr_assert_eq(d->cfg.server.flush_ms, 0);
    cr_assert_null(d->cfg.hub.key, "auth path: the route's {tenant}");
    /* Zero limits: the library's defaults (1 MiB, 8 MiB, 1000/s, 256 per tenant). */
    tp_limits zero = {0};
    cr_assert_eq(memcmp(&d->cfg.hub.limits, &zero, sizeof zero), 0);
    cr_assert_eq(d->cfg.server.max_connections, 0);
    cr_assert_eq(d->cfg.server.max_connections_per_tenant, 0);
    cr_assert_null(d->cfg.admin_token_env);
    tp__daemon_free(d);
}

Test(config, every_limit_lands_where_it_belongs)
{
    tp__daemon *d = built(WITH_DOC(
        ",\"autosync_ms\":0,\"flush_ms\":5,\"listen\":\"127.0.0.1:0\",\"route\":\"/t/{tenant}/ws\","
        "\"limits\":{\"max_message_bytes\":4096,\"max_outbox_bytes\":65536,"
        "\"writes_per_second\":7,\"max_connections_per_tenant\":3,\"max_connections\":9,"
        "\"handshake_timeout_ms\":1500,\"ping_interval_ms\":2000,\"ping_timeout_ms\":500,"
        "\"history_patches\":12,\"history_bytes\":3000,\"client_records\":40,"
        "\"client_record_bytes\":50000,\"max_skew_ms\":1000}"));
    const tp_limits *l = &d->cfg.hub.limits;
    cr_assert_eq(l->max_message_bytes, 4096);
    cr_assert_eq(l->max_outbox_bytes, 65536);
    cr_assert_eq(l->writes_per_second, 7);
    cr_assert_eq(l->history_patches, 12);
    cr_assert_eq(l->history_bytes, 3000);
    cr_assert_eq(l->client_records, 40);
    cr_assert_eq(l->client_record_bytes, 50000);
    cr_assert_eq(l->max_skew_ms, 1000);
    const tp_server_config *s = &d->cfg.server;
    cr_assert_eq(s->max_connections_per_tenant, 3);
    cr_assert_eq(s->max_connections, 9);
    cr_assert_eq(s->handshake_timeout_ms, 1500);
    cr_assert_eq(s->ping_interval_ms, 2000);
    cr_assert_eq(s->ping_timeout_ms, 500);
    cr_assert_eq(s->autosync_ms, 0);
    cr_assert_eq(d->cfg.hub.tick_ms, 0);
    cr_assert_eq(s->flush_ms, 5);
    cr_assert_str_eq(s->listen, "127.0.0.1:0");
    cr_assert_str_eq(s->route, "/t/{tenant}/ws");
    tp__daemon_free(d);
}

Test(config, per_address_limits_and_unfinished_messages)
{
    tp__daemon *d = built(WITH_DOC(",\"limits\":{\"max_connections_per_address\":5,"
                                   "\"max_pending_handshakes_per_address\":6,"
                                   "\"message_timeout_ms\":700,"
                                   "\"max_unfinished_bytes\":1099511627776}"));
    const tp_server_config *s = &d->cfg.server;
    cr_assert_eq(s->max_connections_per_address, 5);
    cr_assert_eq(s->max_pending_handshakes_per_address, 6);
    cr_assert_eq(s->message_timeout_ms, 700);
    cr_assert_eq(s->max_unfinished_bytes, (size_t)1 << 40);
    cr_assert_null(s->trusted_proxies);
    cr_assert_null(s->client_address_header);
    tp__daemon_free(d);
    refused(WITH_DOC(",\"limits\":{\"max_connections_per_address\":0}"),
            "demo.json: limits.max_connections_per_address: 0 is out of range (1 to 1000000)");
    refused(WITH_DOC(",\"limits\":{\"message_timeout_ms\":\"1s\"}"),
            "demo.json: limits.message_timeout_ms: expected an integer, got string");
    refused(WITH_DOC(",\"limits\":{\"max_unfinished_bytes\":1099511627777}"),
            "demo.json: limits.max_unfinished_bytes: 1099511627777 is out of range (1 to "
            "1099511627776)");
}

Test(config, trusted_proxies_and_the_client_address_header)
{
    tp__daemon *d = built(WITH_DOC(",\"trusted_proxies\":[\"10.0.0.0/8\",\"::1\"],"
                                   "\"client_address_header\":\"X-Forwarded-For\""));
    const tp_server_config *s = &d->cfg.server;
    cr_assert_str_eq(s->trusted_proxies[0], "10.0.0.0/8");
    cr_assert_str_eq(s->trusted_proxies[1], "::1");
    cr_assert_null(s->trusted_proxies[2]);
    cr_assert_str_eq(s->client_address_header, "X-Forwarded-For");
    tp__daemon_free(d);
    refused(WITH_DOC(",\"trusted_proxies\":[\"10.0.0.0/8\"]"),
            "demo.json: trusted_proxies: needs client_address_header (the header the proxies "
            "write)");
    refused(WITH_DOC(",\"client_address_header\":\"X-Real-IP\""),
            "demo.json: client_address_header: needs trusted_proxies (whose header alone is "
            "believed)");
    refused(WITH_DOC(",\"trusted_proxies\":[],\"client_address_header\":\"X-Real-IP\""),
            "demo.json: trusted_proxies: empty: leave trusted_proxies out when there is no proxy");
    refused(WITH_DOC(",\"trusted_proxies\":[\"10.0.0.0/33\"],\"client_address_header\":\"X\""),
            "demo.json: trusted_proxies[0]: \"10.0.0.0/33\" is not an IP address or a CIDR "
            "block (\"10.0.0.0/8\")");
    refused(WITH_DOC(",\"trusted_proxies\":[\"::1\"],\"client_address_header\":\"X F\""),
            "demo.json: client_address_header: \"X F\" is not a header name");
}

/* ---- Schemas and models ---- */

Test(config, schema_load_errors_come_from_the_library)
{
    refused(
        "{\"schemas\":{\"Doc\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"int\"}}}}}",
        "demo.json: schemas.Doc: properties.n.type: unknown type \"int\"");
}

Test(config, models_name_a_known_schema)
{
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":{\"value\":{}}}}}"),
            "demo.json: tenants.alice.models.notes: \"schema\" is required");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":{\"schema\":\"Doc\"}}}}"),
            "demo.json: tenants.alice.models.notes.schema: no schema \"Doc\" in schemas");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":{\"schema\":1}}}}"),
            "demo.json: tenants.alice.models.notes.schema: expected a string, got integer");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Doc\"}}"),
            "demo.json: shared.roadmap.schema: no schema \"Doc\" in schemas");
}

Test(config, values_are_validated_against_their_schema)
{
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":{\"schema\":\"Document\","
                     "\"value\":{\"title\":3}}}}}"),
            "demo.json: tenants.alice.models.notes.value: title: expected string, got number");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":{\"schema\":\"Document\"}}}}"),
            "demo.json: tenants.alice.models.notes.value: title: required field is missing");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"value\":{\"title\":\"R\","
                     "\"body\":[]}}}"),
            "demo.json: shared.roadmap.value: body: expected string, got array");
    refused(WITH_DOC(",\"limits\":{\"max_message_bytes\":400},\"shared\":{\"big\":{\"schema\":"
                     "\"Document\",\"value\":{\"title\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "\"}}}"),
            "demo.json: shared.big.value: (root): the value would take 290 bytes, over the "
            "limit of 200");
}

Test(config, tenants_and_models_are_objects_with_bounded_keys)
{
    refused(WITH_DOC(",\"tenants\":[]"), "demo.json: tenants: expected an object, got array");
    refused(WITH_DOC(",\"tenants\":{\"alice\":[]}"),
            "demo.json: tenants.alice: expected an object, got array");
    refused(WITH_DOC(",\"tenants\":{\"\":{}}"),
            "demo.json: tenants[\"\"]: a tenant key must be 1 to 256 bytes long");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":[]}}"),
            "demo.json: tenants.alice.models: expected an object, got array");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"notes\":\"Document\"}}}"),
            "demo.json: tenants.alice.models.notes: expected an object, got string");
    refused(WITH_DOC(",\"tenants\":{\"alice\":{\"models\":{\"\":{\"schema\":\"Document\"}}}}"),
            "demo.json: tenants.alice.models[\"\"]: a model id must be 1 to 256 bytes long");

    char long_key[300];
    memset(long_key, 'k', 257);
    long_key[257] = '\0';
    char text[1024], want[1024];
    snprintf(text, sizeof text, WITH_DOC(",\"tenants\":{\"%s\":{}}"), long_key);
    snprintf(want, sizeof want, "demo.json: tenants.%s: a tenant key must be 1 to 256 bytes long",
             long_key);
    refused(text, want);
    long_key[256] = '\0'; /* 256 bytes is allowed */
    snprintf(text, sizeof text, WITH_DOC(",\"tenants\":{\"%s\":{}}"), long_key);
    tp__daemon *d = built(text);
    cr_assert_not_null(tp_hub_tenant(d->hub, long_key));
    tp__daemon_free(d);
}

Test(config, shared_models_merges_and_subscribers)
{
    refused(WITH_DOC(",\"shared\":[]"), "demo.json: shared: expected an object, got array");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"merge\":\"crdt\"}}"),
            "demo.json: shared.roadmap.merge: unknown merge strategy \"crdt\" (expected \"lww\", "
            "\"lww-map\" or a name in merges)");
    /* A name in "merges" is known; a name only the other strategies hold is not. */
    refused(WITH_DOC(",\"merges\":{\"crdt\":{\"lua\":\"function merge() end\"}},"
                     "\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"merge\":\"crdx\"}}"),
            "demo.json: shared.roadmap.merge: unknown merge strategy \"crdx\" (expected \"lww\", "
            "\"lww-map\" or a name in merges)");
    refused(WITH_DOC(",\"merges\":{\"m\":{\"lua\":\"x\",\"lua_file\":\"m.lua\"}}"),
            "demo.json: merges.m: set lua (the script) or lua_file (its file), not both");
    refused(WITH_DOC(",\"merges\":{\"m\":{\"max_ms\":0,\"lua\":\"x\"}}"),
            "demo.json: merges.m.max_ms: 0 is out of range (1 to 60000)");
    refused(WITH_DOC(",\"merges\":{\"lww-map\":{\"lua\":\"x\"}}"),
            "demo.json: merges.lww-map: \"lww-map\" is a built-in strategy: pick another name");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"merge\":null}}"),
            "demo.json: shared.roadmap.merge: expected a string, got null");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"subscribers\":[]}}"),
            "demo.json: shared.roadmap.subscribers: expected an object, got array");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"subscribers\":"
                     "{\"bob\":\"admin\"}}}"),
            "demo.json: shared.roadmap.subscribers.bob: expected \"read\" or \"write\", got "
            "\"admin\"");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"subscribers\":"
                     "{\"bob\":2}}}"),
            "demo.json: shared.roadmap.subscribers.bob: expected \"read\" or \"write\", got "
            "integer");
    refused(WITH_DOC(",\"shared\":{\"roadmap\":{\"schema\":\"Document\",\"subscribers\":"
                     "{\"\":\"read\"}}}"),
            "demo.json: shared.roadmap.subscribers[\"\"]: a tenant key must be 1 to 256 bytes "
            "long");
    refused(WITH_DOC(",\"shared\":{\"\":{\"schema\":\"Document\"}}"),
            "demo.json: shared[\"\"]: a shared model id must be 1 to 256 bytes long");
}

Test(config, messages_quote_what_the_user_wrote_safely)
{
    /* A long value is cut, quotes and control characters are escaped. */
    refused(WITH_DOC(",\"auth\":{\"mode\":\"a\\\"b\\nc0123456789012345678901234567890123456789"
                     "0123456789012345678901234567890123456789\"}"),
            "demo.json: auth.mode: expected \"path\" or \"jwt\", got \"a\\\"b\\u000ac012345678901"
            "2345678901234567890123456789012345678901234...\"");
}
