/*
 * The client's token source, sans-IO against a hub with a verifier: the
 * source is asked before each connection, and once the renewal is due the
 * client sends `auth` with a fresh token, which moves the connection's
 * expiry; the `ack` that answers it is taken quietly. And the unverified
 * reading of a JWT's exp.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "support.h"
#include "transports.h"

static int64_t hub_now = 1700000000000;
static int fetches;
static int64_t next_exp;

/* "ok:<tenant>:<expires_at_ms>" is accepted for that tenant. */
static int
verify(const char *token, size_t len, int64_t now_ms, tp_credential *out, tp_error *err, void *user)
{
    (void)now_ms, (void)user;
    char t[128];
    if (len >= sizeof t || len < 3 || strncmp(token, "ok:", 3) != 0) {
        snprintf(err->message, sizeof err->message, "token malformed");
        return TP_EFORBIDDEN;
    }
    memcpy(t, token, len);
    t[len] = '\0';
    char *colon = strchr(t + 3, ':');
    cr_assert_not_null(colon);
    *colon = '\0';
    snprintf(out->tenant, sizeof out->tenant, "%s", t + 3);
    out->expires_at_ms = strtoll(colon + 1, NULL, 10);
    return TP_OK;
}

static int
source(void *user, char *buf, size_t size, int64_t *expires_at_ms)
{
    (void)user;
    fetches++;
    snprintf(buf, size, "ok:alice:%lld", (long long)next_exp);
    *expires_at_ms = next_exp;
    return 0;
}

static int64_t
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Carries frames both ways until neither side has any. */
static void
shuttle(tp_client *c, tp_conn *conn)
{
    for (int moved = 1; moved;) {
        moved = 0;
        const char *f;
        size_t n;
        while ((f = tp_conn_next_frame(conn, &n)) != NULL) {
            cr_assert_geq(tp_client_feed(c, f, n), 0, "the client took %.*s", (int)n, f);
            moved = 1;
        }
        while ((f = tp_client_next_frame(c, &n)) != NULL) {
            tp_conn_feed(conn, f, n);
            moved = 1;
        }
    }
}

Test(token, the_source_renews_over_a_live_connection)
{
    tp_hub_config hc = {0};
    hc.clock = tpt_clock;
    hc.clock_user = &hub_now;
    hc.verify = verify;
    tp_error err;
    tp_hub *hub = tp_hub_new(&hc, &err);
    cr_assert_not_null(hub, "%s", err.message);

    tp_client_options o = {0};
    o.token_fn = source;
    o.token_refresh_ms = 30000;
    next_exp = wall_now() + 60000; /* a minute left: renewed 30 s before */
    tp_client *c = tp_client_new("ws://127.0.0.1:1/ws/alice", &o, &err);
    cr_assert_not_null(c, "%s", err.message);
    char *url = tp_client_url(c);
    cr_assert_eq(fetches, 1, "asked before connecting");
    cr_assert_null(strstr(url, "token"), "a header, not the query: %s", url);
    tp_free(url);
    cr_assert(strncmp(c->token, "ok:alice:", 9) == 0, "%s", c->token);

    tp_conn *conn = tp_conn_open(hub, "alice", 0, &err);
    cr_assert_not_null(conn);
    tp_conn_set_expiry(conn, next_exp);
    tp_client_opened(c);
    shuttle(c, conn);

    int64_t mono = 1000000;
    int64_t due = tp__client_token_tick(c, mono);
    cr_assert_neq(due, INT64_MAX, "a renewal is scheduled");
    cr_assert_eq(fetches, 1, "not yet");
    int64_t old_exp = next_exp;
    next_exp += 3600000;
    /* At the due time (far ahead of mono: the client computed it at
     * connect, from its own monotonic clock), the source is asked again. */
    tp__client_token_tick(c, INT64_MAX / 2);
    cr_assert_eq(fetches, 2);
    shuttle(c, conn);
    cr_assert_eq(tp_conn_expiry(conn), next_exp, "the hub took the fresh token");
    cr_assert_neq(tp_conn_expiry(conn), old_exp);
    cr_assert_eq(tp_conn_close_code(conn), 0);
    cr_assert_eq(tp_client_get_state(c), TP_CLIENT_LIVE);

    tp_client_closed(c, 1000, NULL);
    tp_conn_close(conn);
    tp_client_free(c);
    tp_hub_free(hub);
}

static char *
jwt_with(const char *claims_b64)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "eyJhbGciOiJIUzI1NiJ9.%s.c2ln", claims_b64);
    return buf;
}

Test(token, jwt_exp_is_read_unverified)
{
    /* {"sub":"a","exp":1700000000} */
    cr_assert_eq(tp__jwt_exp_ms(jwt_with("eyJzdWIiOiJhIiwiZXhwIjoxNzAwMDAwMDAwfQ")),
                 1700000000000LL);
    /* {"exp":1700000000.5} */
    cr_assert_eq(tp__jwt_exp_ms(jwt_with("eyJleHAiOjE3MDAwMDAwMDAuNX0")), 1700000000500LL);
    /* {"sub":"a"}: no exp */
    cr_assert_eq(tp__jwt_exp_ms(jwt_with("eyJzdWIiOiJhIn0")), 0);
    /* {"exp":"soon"} */
    cr_assert_eq(tp__jwt_exp_ms(jwt_with("eyJleHAiOiJzb29uIn0")), 0);
    cr_assert_eq(tp__jwt_exp_ms("not a token"), 0);
    cr_assert_eq(tp__jwt_exp_ms("a.b"), 0);
    cr_assert_eq(tp__jwt_exp_ms("a.!!!.c"), 0);
    cr_assert_eq(tp__jwt_exp_ms("a..c"), 0);
}
