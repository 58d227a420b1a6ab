/* The Redis link (src/cluster/redis.c) against real redis-servers on loopback: each test
 * starts its own (tests/support/redisd.c). */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis.h"
#include "redisd.h"

/* ---- The loop and what the callbacks saw --------------------------------------------- */

#define MAXEV 256
#define MAXCALLS 4096

typedef struct seen {
    int up;
    int events[MAXEV];
    uint32_t retry_ms[MAXEV];
    char reasons[MAXEV][160];
    int nev;
    int resubscribed;
    int main_retries; /* TP__REDIS_RETRY of the main connection */
    char messages[64][64];
    int nmsg;
    /* per command slot: calls, last error code, last integer or string */
    int calls[MAXCALLS];
    int code[MAXCALLS];
    long long integer[MAXCALLS];
    char str[MAXCALLS][64];
    size_t strlen_[MAXCALLS];
    int order[MAXCALLS];
    int norder;
    tp__redis *free_me; /* freed from inside the next reply callback */
} seen;

static seen S;
static uv_loop_t loop;
static char base[512];
static tpt_redisd servers[6];

static void
setup(void)
{
    memset(&S, 0, sizeof S);
    memset(servers, 0, sizeof servers);
    uv_loop_init(&loop);
    tpt_tempdir(base, sizeof base);
    cr_assert(base[0], "no temporary directory");
}

/* Links a failed assertion left behind: freed before the loop is run empty. */
static tp__redis *live[4];

static void
drop(tp__redis *r)
{
    for (int i = 0; i < 4; i++)
        if (live[i] == r)
            live[i] = NULL;
    tp__redis_free(r);
}

static void
teardown(void)
{
    for (int i = 0; i < 4; i++)
        if (live[i])
            tp__redis_free(live[i]);
    memset(live, 0, sizeof live);
    for (int i = 0; i < 6; i++)
        tpt_redisd_stop(&servers[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "a handle is left open on the loop");
    tpt_rm_rf(base);
}

static void
on_state(tp__redis_event ev, const char *reason, uint32_t retry_ms, void *user)
{
    (void)user;
    if (ev == TP__REDIS_UP)
        S.up = 1;
    if (ev == TP__REDIS_DOWN)
        S.up = 0;
    if (ev == TP__REDIS_RETRY && reason && !strstr(reason, "pub/sub"))
        S.main_retries++;
    if (S.nev < MAXEV) {
        S.events[S.nev] = (int)ev;
        S.retry_ms[S.nev] = retry_ms;
        snprintf(S.reasons[S.nev], sizeof S.reasons[0], "%s", reason ? reason : "");
        S.nev++;
    }
}

static void
on_message(const char *ch, size_t chlen, const char *data, size_t len, void *user)
{
    (void)user;
    if (S.nmsg < 64)
        snprintf(S.messages[S.nmsg++], 64, "%.*s=%.*s", (int)chlen, ch, (int)len, data);
}

static void
on_resubscribed(void *user)
{
    (void)user;
    S.resubscribed++;
}

static void
on_reply(const redisReply *reply, const tp_error *err, void *user)
{
    int i = (int)(intptr_t)user;
    S.calls[i]++;
    if (S.norder < MAXCALLS)
        S.order[S.norder++] = i;
    if (err) {
        cr_assert(!reply);
        S.code[i] = err->code;
        snprintf(S.str[i], sizeof S.str[0], "%.63s", err->message);
    } else {
        S.code[i] = 0;
        S.integer[i] = reply->integer;
        if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
            reply->type == REDIS_REPLY_ERROR) {
            size_t n = reply->len < sizeof S.str[0] - 1 ? reply->len : sizeof S.str[0] - 1;
            memcpy(S.str[i], reply->str, n);
            S.str[i][n] = '\0';
            S.strlen_[i] = reply->len;
        }
        if (reply->type == REDIS_REPLY_ERROR)
            S.code[i] = 1; /* a Redis error reply, not the link's */
    }
    if (S.free_me) {
        tp__redis *r = S.free_me;
        S.free_me = NULL;
        drop(r);
    }
}

/* Runs the loop until *flag reaches want or ms pass; returns whether it did. */
static int
run_until(const int *flag, int want, int ms)
{
    return tpt_uv_run_until(&loop, flag, want, ms);
}

static void
run_ms(int ms)
{
    int never = 0;
    run_until(&never, 1, ms);
}

static tp__redis *
link_to(const char *url, tp__redis_config *extra)
{
    tp__redis_config cfg = {0};
    if (extra)
        cfg = *extra;
    cfg.url = url;
    cfg.on_state = on_state;
    cfg.on_message = on_message;
    cfg.on_resubscribed = on_resubscribed;
    tp_error err = {0};
    tp__redis *r = tp__redis_new(&loop, &cfg, &err);
    cr_assert(r, "tp__redis_new: %s", err.message);
    for (int i = 0; i < 4; i++)
        if (!live[i]) {
            live[i] = r;
            break;
        }
    return r;
}

static int
cmd(tp__redis *r, int slot, const char *a0, const char *a1, const char *a2, const char *a3)
{
    const char *argv[4] = {a0, a1, a2, a3};
    size_t argvlen[4];
    int argc = 0;
    while (argc < 4 && argv[argc]) {
        argvlen[argc] = strlen(argv[argc]);
        argc++;
    }
    tp_error err = {0};
    /* argv[1] is the key, but PUBLISH has none (any master carries it). */
    int key = argc > 1 && strcmp(a0, "PUBLISH") != 0 ? 1 : -1;
    return tp__redis_command(r, argc, argv, argvlen, key, on_reply, (void *)(intptr_t)slot, &err);
}

typedef struct span {
    int from, to;
} span;

static int
all_called(const void *arg)
{
    const span *sp = arg;
    for (int i = sp->from; i < sp->to; i++)
        if (S.calls[i] == 0)
            return 0;
    return 1;
}

static int
wait_calls(int from, int to, int ms)
{
    span sp = {from, to};
    return tpt_uv_run_while(&loop, all_called, &sp, ms);
}

static void
start1(const char *const *extra)
{
    if (extra)
        for (int i = 0; extra[i] && i < 8; i++)
            servers[0].extra[i] = extra[i];
    cr_assert_eq(tpt_redisd_start(&servers[0], base, 0, 0), 0, "redis-server did not start");
}

static char url[128];
static const char *
url_of(int port, const char *tail)
{
    snprintf(url, sizeof url, "redis://127.0.0.1:%d%s", port, tail ? tail : "");
    return url;
}

TestSuite(redis, .init = setup, .fini = teardown, .timeout = 60);

/* ---- Addresses and slots ------------------------------------------------------------- */

Test(redis, url_parse)
{
    tp__redis_url u;
    tp_error err;
    cr_assert_eq(tp__redis_url_parse("redis://h.example:7000/3", &u, &err), TP_OK);
    cr_expect_str_eq(u.host, "h.example");
    cr_expect_eq(u.port, 7000);
    cr_expect_eq(u.db, 3);
    cr_expect_eq(u.has_password, 0);
    cr_assert_eq(tp__redis_url_parse("redis://:p%40ss@127.0.0.1", &u, &err), TP_OK);
    cr_expect_str_eq(u.password, "p@ss");
    cr_expect_str_eq(u.user, "");
    cr_expect_eq(u.port, 6379);
    cr_assert_eq(tp__redis_url_parse("redis://bob:pw@[::1]:6380/", &u, &err), TP_OK);
    cr_expect_str_eq(u.host, "::1");
    cr_expect_str_eq(u.user, "bob");
    cr_expect_eq(u.port, 6380);
    cr_assert_eq(tp__redis_url_parse("unix:///run/redis.sock", &u, &err), TP_OK);
    cr_expect_str_eq(u.path, "/run/redis.sock");

    static const struct {
        const char *url, *field;
    } bad[] = {
        {"http://127.0.0.1", "scheme"},
        {"redis://127.0.0.1:0", "port"},
        {"redis://127.0.0.1:70000", "port"},
        {"redis://127.0.0.1:12ab", "port"},
        {"redis://:6379", "host"},
        {"redis://127.0.0.1/x", "db"},
        {"redis://127.0.0.1/1?timeout=3", "query"},
        {"redis://pw@127.0.0.1", "password"},
        {"redis://:@127.0.0.1", "password"},
        {"redis://:a%zz@127.0.0.1", "password"},
        {"redis://[::1:6379", "host"},
        {"unix://relative.sock", "path"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        cr_expect_eq(tp__redis_url_parse(bad[i].url, &u, &err), TP_EARG, "%s", bad[i].url);
        cr_expect(strstr(err.message, bad[i].field), "%s: '%s' does not name %s", bad[i].url,
                  err.message, bad[i].field);
    }
    /* And through tp__redis_new: NULL, the field named, nothing left on the loop. */
    tp__redis_config cfg = {.url = "redis://127.0.0.1:99999"};
    memset(&err, 0, sizeof err);
    cr_expect_null(tp__redis_new(&loop, &cfg, &err));
    cr_expect_eq(err.code, TP_EARG);
    cr_expect(strstr(err.message, "port"), "%s", err.message);
}

Test(redis, keyslot_spec_vectors)
{
    /* The cluster specification's CRC16 check value and examples. */
    cr_expect_eq(tp__redis_keyslot("123456789", 9), 0x31C3 & 16383);
    cr_expect_eq(tp__redis_keyslot("foo", 3), 12182);
    cr_expect_eq(tp__redis_keyslot("bar", 3), 5061);
    cr_expect_eq(tp__redis_keyslot("{user1000}.following", 20),
                 tp__redis_keyslot("{user1000}.followers", 20));
    cr_expect_eq(tp__redis_keyslot("{user1000}.following", 20), tp__redis_keyslot("user1000", 8));
    /* Empty tag: the whole key; the first '{' and the first '}' after it count. */
    cr_expect_neq(tp__redis_keyslot("foo{}{bar}", 10), tp__redis_keyslot("bar", 3));
    cr_expect_eq(tp__redis_keyslot("foo{{bar}}zap", 13), tp__redis_keyslot("{bar", 4));
    cr_expect_eq(tp__redis_keyslot("foo{bar}{zap}", 13), tp__redis_keyslot("bar", 3));
    cr_expect_eq(tp__redis_keyslot("", 0), 0);
}

/* ---- One server ---------------------------------------------------------------------- */

Test(redis, commands_pipelined_in_order)
{
    start1(NULL);
    tp__redis *r = link_to(url_of(servers[0].port, NULL), NULL);
    cr_assert(run_until(&S.up, 1, 3000), "the link never came up");
    cr_expect(tp__redis_is_up(r));
    /* 1000 INCRs issued in one go: all in flight at once, replies 1..1000 in order. */
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(cmd(r, i, "INCR", "counter", NULL, NULL), TP_OK);
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.inflight, 1000);
    cr_assert(wait_calls(0, 1000, 5000));
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(S.calls[i], 1);
        cr_assert_eq(S.integer[i], i + 1, "reply %d is %lld", i, S.integer[i]);
        cr_assert_eq(S.order[i], i);
    }
    /* Binary safe: a value with NUL and CR LF bytes goes and comes back whole. */
    const char val[] = "a\0b\r\nc";
    const char *argv[3] = {"SET", "bin", val};
    size_t argvlen[3] = {3, 3, sizeof val - 1};
    cr_assert_eq(tp__redis_command(r, 3, argv, argvlen, 1, on_reply, (void *)1000, NULL), TP_OK);
    cr_assert_eq(cmd(r, 1001, "GET", "bin", NULL, NULL), TP_OK);
    cr_assert(wait_calls(1000, 1002, 3000));
    cr_expect_eq(S.strlen_[1001], sizeof val - 1);
    cr_expect_eq(memcmp(S.str[1001], val, sizeof val - 1), 0);
    /* A Redis error reply is a reply, not the link's error. */
    cr_assert_eq(cmd(r, 1002, "INCR", "bin", NULL, NULL), TP_OK);
    cr_assert(wait_calls(1002, 1003, 3000));
    cr_expect_eq(S.code[1002], 1);
    cr_expect(strstr(S.str[1002], "ERR"), "%s", S.str[1002]);
    drop(r);
}

Test(redis, auth_and_select)
{
    const char *extra[] = {"--requirepass", "s3cret", NULL};
    start1(extra);
    char u[160];
    /* A wrong password: the link stays down, each attempt says why. */
    snprintf(u, sizeof u, "redis://:wrong@127.0.0.1:%d", servers[0].port);
    tp__redis_config fast = {.backoff_min_ms = 10, .backoff_max_ms = 40};
    tp__redis *r = link_to(u, &fast);
    int want = 2;
    cr_assert(run_until(&S.nev, want, 3000));
    cr_expect_eq(S.up, 0);
    cr_expect_eq(S.events[0], TP__REDIS_RETRY);
    cr_expect(strstr(S.reasons[0], "AUTH"), "%s", S.reasons[0]);
    cr_expect_eq(cmd(r, 0, "GET", "x", NULL, NULL) != TP_OK ||
                     (wait_calls(0, 1, 3000) && S.code[0] == TP_ECLOSED),
                 1);
    drop(r);
    run_ms(20);
    memset(&S, 0, sizeof S);
    /* The right one, and db 3. */
    snprintf(u, sizeof u, "redis://:s3cret@127.0.0.1:%d/3", servers[0].port);
    r = link_to(u, NULL);
    cr_assert(run_until(&S.up, 1, 3000), "the link never came up");
    cr_assert_eq(cmd(r, 0, "SET", "x", "in-db-3", NULL), TP_OK);
    cr_assert(wait_calls(0, 1, 3000));
    cr_expect_eq(S.code[0], 0, "%s", S.str[0]);
    redisContext *c = tpt_redis_sync(servers[0].port);
    cr_assert(c);
    redisReply *rep = redisCommand(c, "AUTH s3cret");
    freeReplyObject(rep);
    rep = redisCommand(c, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(c, "GET x");
    cr_assert(rep && rep->type == REDIS_REPLY_STRING);
    cr_expect_str_eq(rep->str, "in-db-3");
    freeReplyObject(rep);
    rep = redisCommand(c, "SELECT 0");
    freeReplyObject(rep);
    rep = redisCommand(c, "EXISTS x");
    cr_expect_eq(rep->integer, 0);
    freeReplyObject(rep);
    redisFree(c);
    drop(r);
}

Test(redis, unix_socket)
{
    char sock[600], u[640];
    snprintf(sock, sizeof sock, "%s/r.sock", base);
    const char *extra[] = {"--unixsocket", sock, NULL};
    start1(extra);
    snprintf(u, sizeof u, "unix://%s", sock);
    tp__redis *r = link_to(u, NULL);
    cr_assert(run_until(&S.up, 1, 3000), "the link never came up");
    cr_assert_eq(cmd(r, 0, "SET", "over", "unix", NULL), TP_OK);
    cr_assert_eq(cmd(r, 1, "GET", "over", NULL, NULL), TP_OK);
    cr_assert(wait_calls(0, 2, 3000));
    cr_expect_str_eq(S.str[1], "unix");
    drop(r);
}

Test(redis, script_evalsha_and_noscript)
{
    start1(NULL);
    tp__redis *r = link_to(url_of(servers[0].port, NULL), NULL);
    cr_assert(run_until(&S.up, 1, 3000));
    const char lua[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    tp__redis_script *s = tp__redis_script_new(r, lua, sizeof lua - 1, NULL);
    cr_assert(s);
    /* Our SHA-1 is Redis's. */
    cr_assert_eq(cmd(r, 0, "SCRIPT", "LOAD", lua, NULL), TP_OK);
    cr_assert(wait_calls(0, 1, 3000));
    cr_expect_str_eq(S.str[0], tp__redis_script_sha(s));
    cr_assert_eq(cmd(r, 1, "SCRIPT", "FLUSH", NULL, NULL), TP_OK);
    cr_assert(wait_calls(1, 2, 3000));

    const char *keys[2] = {"{t}:n", "{t}:m"};
    size_t keylens[2] = {5, 5};
    const char *args[1] = {"5"};
    size_t arglens[1] = {1};
    /* The cache is empty: EVALSHA meets NOSCRIPT, EVAL runs it, the caller sees 5. */
    cr_assert_eq(
        tp__redis_script_call(r, s, 1, keys, keylens, 1, args, arglens, on_reply, (void *)2, NULL),
        TP_OK);
    cr_assert(wait_calls(2, 3, 3000));
    cr_expect_eq(S.code[2], 0, "%s", S.str[2]);
    cr_expect_eq(S.integer[2], 5);
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.noscript, 1);
    /* Cached now: EVALSHA alone. */
    cr_assert_eq(
        tp__redis_script_call(r, s, 2, keys, keylens, 1, args, arglens, on_reply, (void *)3, NULL),
        TP_OK);
    cr_assert(wait_calls(3, 4, 3000));
    cr_expect_eq(S.integer[3], 10);
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.noscript, 1);
    /* SCRIPT FLUSH again: transparent again. */
    cr_assert_eq(cmd(r, 4, "SCRIPT", "FLUSH", NULL, NULL), TP_OK);
    cr_assert_eq(
        tp__redis_script_call(r, s, 1, keys, keylens, 1, args, arglens, on_reply, (void *)5, NULL),
        TP_OK);
    cr_assert(wait_calls(4, 6, 3000));
    cr_expect_eq(S.integer[5], 15);
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.noscript, 2);
    /* Keys in two slots: taken on one Redis (a cluster refuses them: cluster_three_masters). */
    cr_expect(tp__redis_standalone(r));
    const char *two[2] = {"{a}:x", "{b}:x"};
    size_t twolen[2] = {5, 5};
    tp_error err = {0};
    cr_expect_eq(
        tp__redis_script_call(r, s, 2, two, twolen, 1, args, arglens, on_reply, (void *)6, &err),
        TP_OK, "%s", err.message);
    cr_assert(wait_calls(6, 7, 3000));
    drop(r);
}

Test(redis, server_killed_and_restarted)
{
    start1(NULL);
    tp__redis_config cfg = {.backoff_min_ms = 50, .backoff_max_ms = 400};
    tp__redis *r = link_to(url_of(servers[0].port, NULL), &cfg);
    cr_assert(run_until(&S.up, 1, 3000));
    cr_assert_eq(tp__redis_subscribe(r, "news", 4, NULL), TP_OK);
    run_ms(100);
    cr_assert_eq(cmd(r, 0, "PUBLISH", "news", "one", NULL), TP_OK);
    cr_assert(wait_calls(0, 1, 3000));
    cr_expect_eq(S.integer[0], 1, "one subscriber");
    cr_assert(run_until(&S.nmsg, 1, 3000));
    cr_expect_str_eq(S.messages[0], "news=one");

    /* Acked writes, then a command that blocks the connection (BLPOP) with 200 more behind
     * it: all in flight when the server dies. */
    for (int i = 1; i <= 50; i++)
        cr_assert_eq(cmd(r, i, "INCR", "acked", NULL, NULL), TP_OK);
    cr_assert(wait_calls(1, 51, 3000));
    cr_assert_eq(cmd(r, 51, "BLPOP", "nothing", "0", NULL), TP_OK);
    for (int i = 52; i < 252; i++)
        cr_assert_eq(cmd(r, i, "INCR", "lost", NULL, NULL), TP_OK);
    run_ms(100);
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.inflight, 201);
    int before = S.nev;
    tpt_redisd_signal(&servers[0], SIGKILL);

    /* Each in-flight command fails once; the link goes down first. */
    cr_assert(wait_calls(51, 252, 3000));
    for (int i = 51; i < 252; i++) {
        cr_assert_eq(S.calls[i], 1, "command %d called %d times", i, S.calls[i]);
        cr_assert_eq(S.code[i], TP_ECLOSED, "command %d: %s", i, S.str[i]);
    }
    cr_expect_eq(S.up, 0);
    int downs = 0;
    for (int i = before; i < S.nev; i++)
        downs += S.events[i] == TP__REDIS_DOWN;
    cr_expect_eq(downs, 1);
    /* While down (the first attempt is 25 to 50 ms away), a command fails at once, with the
     * reason. */
    tp_error err = {0};
    const char *argv[2] = {"GET", "acked"};
    size_t argvlen[2] = {3, 5};
    int rc = tp__redis_command(r, 2, argv, argvlen, 1, on_reply, (void *)300, &err);
    cr_expect_eq(rc, TP_ECLOSED, "%d: %s", rc, err.message);
    cr_expect(strstr(err.message, "down"), "%s", err.message);

    /* Attempts after 25-50, 50-100, 100-200, then 200-400 ms: doubling, capped, jittered.
     * (The pub/sub connection's attempts have a sequence of their own.) */
    S.main_retries = 0;
    for (int i = before; i < S.nev; i++)
        S.main_retries += S.events[i] == TP__REDIS_RETRY && !strstr(S.reasons[i], "pub/sub");
    cr_assert(run_until(&S.main_retries, 7, 5000));
    int k = 0;
    for (int i = before; i < S.nev; i++) {
        if (S.events[i] != TP__REDIS_RETRY || strstr(S.reasons[i], "pub/sub"))
            continue;
        uint32_t step = 50u << (k < 3 ? k : 3);
        cr_expect(S.retry_ms[i] >= step / 2 && S.retry_ms[i] <= step,
                  "attempt %d waits %u ms, not %u to %u", k, S.retry_ms[i], step / 2, step);
        cr_expect(S.retry_ms[i] <= 400);
        k++;
    }
    cr_expect_geq(k, 7);

    /* Back on the same port from its AOF: up again, the acked writes there, subscriptions
     * back (and the owner told). */
    cr_assert_eq(tpt_redisd_restart(&servers[0]), 0);
    cr_assert(run_until(&S.up, 1, 3000), "not up after the restart");
    cr_assert(run_until(&S.resubscribed, 1, 3000), "not told of the resubscription");
    cr_expect_eq(S.resubscribed, 1);
    cr_assert_eq(cmd(r, 301, "GET", "acked", NULL, NULL), TP_OK);
    cr_assert(wait_calls(301, 302, 3000));
    cr_expect_str_eq(S.str[301], "50");
    cr_assert_eq(cmd(r, 302, "PUBLISH", "news", "two", NULL), TP_OK);
    cr_assert(run_until(&S.nmsg, 2, 3000));
    cr_expect_str_eq(S.messages[1], "news=two");
    tp__redis_stats_get(r, &st);
    cr_expect_geq(st.reconnects, 2, "link and pub/sub: %llu", (unsigned long long)st.reconnects);
    cr_expect_eq(st.failed, 201);
    /* Unsubscribed: no more messages. */
    cr_assert_eq(tp__redis_unsubscribe(r, "news", 4, NULL), TP_OK);
    cr_expect_eq(tp__redis_unsubscribe(r, "news", 4, NULL), TP_ENOTFOUND);
    run_ms(50);
    cr_assert_eq(cmd(r, 303, "PUBLISH", "news", "three", NULL), TP_OK);
    cr_assert(wait_calls(303, 304, 3000));
    cr_expect_eq(S.integer[303], 0);
    drop(r);
}

Test(redis, command_timeout_drops_a_hung_server)
{
    start1(NULL);
    tp__redis_config cfg = {.command_timeout_ms = 300, .backoff_min_ms = 20, .backoff_max_ms = 100};
    tp__redis *r = link_to(url_of(servers[0].port, NULL), &cfg);
    cr_assert(run_until(&S.up, 1, 3000));
    tpt_redisd_signal(&servers[0], SIGSTOP);
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    cr_assert_eq(cmd(r, 0, "SET", "k", "v", NULL), TP_OK);
    cr_assert(wait_calls(0, 1, 3000));
    uint64_t waited = uv_now(&loop) - t0;
    cr_expect_eq(S.code[0], TP_ECLOSED, "%s", S.str[0]);
    cr_expect(strstr(S.str[0], "no reply"), "%s", S.str[0]);
    cr_expect(waited >= 300 && waited < 1500, "failed after %llu ms", (unsigned long long)waited);
    tpt_redisd_signal(&servers[0], SIGCONT);
    cr_assert(run_until(&S.up, 1, 3000));
    cr_assert_eq(cmd(r, 1, "GET", "k", NULL, NULL), TP_OK);
    cr_assert(wait_calls(1, 2, 3000));
    cr_expect_eq(S.code[1], 0);
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_geq(st.timeouts, 1);
    drop(r);
}

Test(redis, inflight_bound)
{
    start1(NULL);
    tp__redis_config cfg = {.max_inflight = 10};
    tp__redis *r = link_to(url_of(servers[0].port, NULL), &cfg);
    cr_assert(run_until(&S.up, 1, 3000));
    for (int i = 0; i < 10; i++)
        cr_assert_eq(cmd(r, i, "INCR", "n", NULL, NULL), TP_OK);
    tp_error err = {0};
    const char *argv[2] = {"INCR", "n"};
    size_t argvlen[2] = {4, 1};
    cr_expect_eq(tp__redis_command(r, 2, argv, argvlen, 1, on_reply, (void *)10, &err),
                 TP_ETOOLARGE);
    cr_expect(strstr(err.message, "max_inflight"), "%s", err.message);
    cr_assert(wait_calls(0, 10, 3000));
    run_ms(20);
    cr_expect_eq(S.calls[10], 0, "a refused command's callback ran");
    cr_assert_eq(cmd(r, 10, "INCR", "n", NULL, NULL), TP_OK);
    cr_assert(wait_calls(10, 11, 3000));
    cr_expect_eq(S.integer[10], 11);
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.refused, 1);
    drop(r);
}

Test(redis, free_inside_a_callback)
{
    start1(NULL);
    tp__redis *r = link_to(url_of(servers[0].port, NULL), NULL);
    cr_assert(run_until(&S.up, 1, 3000));
    cr_assert_eq(tp__redis_subscribe(r, "c", 1, NULL), TP_OK);
    cr_assert_eq(cmd(r, 0, "BLPOP", "nothing", "1", NULL), TP_OK); /* keeps the rest waiting */
    for (int i = 1; i < 20; i++)
        cr_assert_eq(cmd(r, i, "INCR", "n", NULL, NULL), TP_OK);
    S.free_me = r; /* the first reply frees the link from inside its callback */
    cr_assert(wait_calls(0, 20, 5000));
    for (int i = 0; i < 20; i++)
        cr_expect_eq(S.calls[i], 1, "command %d: %d calls", i, S.calls[i]);
    for (int i = 1; i < 20; i++)
        cr_expect_eq(S.code[i], TP_ECLOSED, "command %d: %s", i, S.str[i]);
    run_ms(20);
    /* teardown runs the loop empty: the memory goes with the close callbacks (ASan). */
}

Test(redis, free_with_commands_pending_and_never_connected)
{
    /* Nothing listens there: the link keeps trying; freeing it ends everything. */
    int port = tpt_free_port(0);
    tp__redis *r = link_to(url_of(port, NULL), NULL);
    int rc = cmd(r, 0, "GET", "x", NULL, NULL);
    cr_expect(run_until(&S.nev, 1, 3000));
    drop(r);
    if (rc == TP_OK)
        cr_expect_eq(S.calls[0], 1);
    cr_expect_eq(S.up, 0);
    cr_expect_geq(S.nev, 1);
    cr_expect_eq(S.events[0], TP__REDIS_RETRY);
}

/* ---- Redis Cluster ------------------------------------------------------------------- */

static redisReply *
sync_cmd(int port, const char *fmt, const char *a, const char *b, const char *c)
{
    redisContext *ctx = tpt_redis_sync(port);
    cr_assert(ctx, "no sync connection to %d", port);
    redisReply *rep = redisCommand(ctx, fmt, a, b, c);
    redisFree(ctx);
    cr_assert(rep, "no reply from %d", port);
    return rep;
}

/* port_of_slot reads CLUSTER SLOTS on a node: the port serving a slot. */
static int
port_of_slot(int via, int slot)
{
    redisReply *rep = sync_cmd(via, "CLUSTER SLOTS", NULL, NULL, NULL);
    int port = -1;
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (slot >= e->element[0]->integer && slot <= e->element[1]->integer)
            port = (int)e->element[2]->element[1]->integer;
    }
    freeReplyObject(rep);
    return port;
}

static void
myid(int port, char *out)
{
    redisReply *rep = sync_cmd(port, "CLUSTER MYID", NULL, NULL, NULL);
    snprintf(out, 64, "%s", rep->str);
    freeReplyObject(rep);
}

Test(redis, cluster_three_masters, .timeout = 90)
{
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tpt_redisd_start(&servers[i], base, 0, 1), 0, "redis-server %d", i);
    cr_assert_eq(tpt_cluster_create(servers, 3, 0), 0, "the cluster did not form");
    tp__redis *r = link_to(url_of(servers[0].port, NULL), NULL);
    cr_assert(run_until(&S.up, 1, 5000), "the link never came up");
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.cluster, 1);
    cr_expect_eq(st.masters, 3);

    /* The slot function is Redis's: CLUSTER KEYSLOT on 300 random keys (braces and binary
     * bytes included), pipelined. */
    redisContext *c = tpt_redis_sync(servers[0].port);
    cr_assert(c);
    static char keys[300][24];
    static size_t lens[300];
    unsigned seed = 42;
    const char alphabet[] = "ab{}{}xyz\0\xff:1";
    for (int i = 0; i < 300; i++) {
        lens[i] = 1 + rand_r(&seed) % 20;
        for (size_t j = 0; j < lens[i]; j++)
            keys[i][j] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
        const char *argv[3] = {"CLUSTER", "KEYSLOT", keys[i]};
        size_t argvlen[3] = {7, 7, lens[i]};
        redisAppendCommandArgv(c, 3, argv, argvlen);
    }
    for (int i = 0; i < 300; i++) {
        redisReply *rep;
        cr_assert_eq(redisGetReply(c, (void **)&rep), REDIS_OK);
        cr_assert_eq(rep->type, REDIS_REPLY_INTEGER);
        cr_expect_eq(tp__redis_keyslot(keys[i], lens[i]), rep->integer,
                     "key %d: ours %u, Redis's %lld", i, tp__redis_keyslot(keys[i], lens[i]),
                     rep->integer);
        freeReplyObject(rep);
    }
    redisFree(c);

    /* Keys with different hash tags on each of the three masters, written through the link,
     * found on the master that serves their slot, read back through the link. */
    char tagged[3][32];
    int ports[3] = {0, 0, 0}, found = 0;
    for (int t = 0; t < 1000 && found < 3; t++) {
        char key[32];
        snprintf(key, sizeof key, "{tenant%d}:model", t);
        int port = port_of_slot(servers[0].port, tp__redis_keyslot(key, strlen(key)));
        int fresh = 1;
        for (int j = 0; j < found; j++)
            fresh &= ports[j] != port;
        if (fresh) {
            ports[found] = port;
            snprintf(tagged[found++], sizeof tagged[0], "%s", key);
        }
    }
    cr_assert_eq(found, 3);
    for (int j = 0; j < 3; j++)
        cr_assert_eq(cmd(r, j, "SET", tagged[j], tagged[j], NULL), TP_OK);
    cr_assert(wait_calls(0, 3, 3000));
    for (int j = 0; j < 3; j++) {
        cr_expect_eq(S.code[j], 0, "%s", S.str[j]);
        redisReply *rep = sync_cmd(ports[j], "GET %s", tagged[j], NULL, NULL);
        cr_expect_eq(rep->type, REDIS_REPLY_STRING, "%s is not on %d", tagged[j], ports[j]);
        freeReplyObject(rep);
        cr_assert_eq(cmd(r, 3 + j, "GET", tagged[j], NULL, NULL), TP_OK);
    }
    cr_assert(wait_calls(3, 6, 3000));
    for (int j = 0; j < 3; j++)
        cr_expect_str_eq(S.str[3 + j], tagged[j]);
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.moved, 0, "the map routed every key first time");

    /* A script routes by its first key. */
    const char lua[] = "redis.call('SET', KEYS[2], ARGV[1]); return redis.call('GET', KEYS[1])";
    tp__redis_script *s = tp__redis_script_new(r, lua, sizeof lua - 1, NULL);
    char k2[40];
    snprintf(k2, sizeof k2, "%s:copy", tagged[1]);
    const char *sk[2] = {tagged[1], k2};
    size_t sklen[2] = {strlen(tagged[1]), strlen(k2)};
    const char *sa[1] = {"x"};
    size_t salen[1] = {1};
    cr_assert_eq(tp__redis_script_call(r, s, 2, sk, sklen, 1, sa, salen, on_reply, (void *)6, NULL),
                 TP_OK);
    cr_assert(wait_calls(6, 7, 3000));
    cr_expect_str_eq(S.str[6], tagged[1]);
    /* Keys in two slots are refused before anything is sent. */
    cr_expect(!tp__redis_standalone(r));
    const char *bad[2] = {"{a}:x", "{b}:x"};
    size_t badlen[2] = {5, 5};
    tp_error slot_err = {0};
    cr_expect_eq(
        tp__redis_script_call(r, s, 2, bad, badlen, 1, sa, salen, on_reply, (void *)9, &slot_err),
        TP_EARG);
    cr_expect(strstr(slot_err.message, "keys[1]"), "%s", slot_err.message);

    /* Plain pub/sub across the cluster: PUBLISH on any master reaches the subscriber. */
    cr_assert_eq(tp__redis_subscribe(r, "bus", 3, NULL), TP_OK);
    run_ms(200);
    cr_assert_eq(cmd(r, 7, "PUBLISH", "bus", "hello", NULL), TP_OK);
    cr_assert(run_until(&S.nmsg, 1, 3000));
    cr_expect_str_eq(S.messages[0], "bus=hello");

    /* Move the slot of tagged[0] to another master by hand: IMPORTING, MIGRATING, MIGRATE
     * the key. Mid-way, the old master answers ASK; at the end (SETSLOT NODE), MOVED. */
    const char *key = tagged[0];
    int slot = tp__redis_keyslot(key, strlen(key));
    int from = ports[0], to = ports[1], other = ports[2];
    char from_id[64], to_id[64], slotstr[16], tostr[16];
    myid(from, from_id);
    myid(to, to_id);
    snprintf(slotstr, sizeof slotstr, "%d", slot);
    snprintf(tostr, sizeof tostr, "%d", to);
    redisReply *rep = sync_cmd(to, "CLUSTER SETSLOT %s IMPORTING %s", slotstr, from_id, NULL);
    cr_assert_eq(rep->type, REDIS_REPLY_STATUS, "%s", rep->str);
    freeReplyObject(rep);
    rep = sync_cmd(from, "CLUSTER SETSLOT %s MIGRATING %s", slotstr, to_id, NULL);
    cr_assert_eq(rep->type, REDIS_REPLY_STATUS, "%s", rep->str);
    freeReplyObject(rep);
    {
        const char *argv[8] = {"MIGRATE", "127.0.0.1", tostr, "", "0", "5000", "KEYS", key};
        size_t argvlen[8];
        for (int j = 0; j < 8; j++)
            argvlen[j] = strlen(argv[j]);
        redisContext *mc = tpt_redis_sync(from);
        cr_assert(mc);
        rep = redisCommandArgv(mc, 8, argv, argvlen);
        redisFree(mc);
        cr_assert(rep && rep->type == REDIS_REPLY_STATUS, "MIGRATE: %s", rep ? rep->str : "");
        freeReplyObject(rep);
    }
    cr_assert_eq(cmd(r, 8, "GET", key, NULL, NULL), TP_OK);
    cr_assert(wait_calls(8, 9, 3000));
    cr_expect_str_eq(S.str[8], key, "through ASK: %s", S.str[8]);
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.ask, 1);
    cr_expect_eq(st.moved, 0);
    int all[3] = {to, from, other};
    for (int j = 0; j < 3; j++) {
        rep = sync_cmd(all[j], "CLUSTER SETSLOT %s NODE %s", slotstr, to_id, NULL);
        cr_assert_eq(rep->type, REDIS_REPLY_STATUS, "%s", rep->str);
        freeReplyObject(rep);
    }
    cr_assert_eq(cmd(r, 9, "GET", key, NULL, NULL), TP_OK);
    cr_assert(wait_calls(9, 10, 3000));
    cr_expect_str_eq(S.str[9], key, "through MOVED: %s", S.str[9]);
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.moved, 1);
    /* The map follows: the next command goes to the new master at once. */
    run_ms(100);
    cr_assert_eq(cmd(r, 10, "GET", key, NULL, NULL), TP_OK);
    cr_assert(wait_calls(10, 11, 3000));
    cr_expect_str_eq(S.str[10], key);
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.moved, 1);
    cr_expect_eq(st.masters, 3);

    /* One master killed: the link is down, commands for its slots fail at once, the other
     * masters still serve theirs; back on its port (nodes.conf, AOF), the link is up again
     * and the key written before is there. */
    tpt_redisd *victim = NULL;
    for (int j = 0; j < 3; j++)
        if (servers[j].port == other)
            victim = &servers[j];
    cr_assert(victim);
    tpt_redisd_signal(victim, SIGKILL);
    cr_assert(run_until(&S.nev, S.nev + 1, 3000));
    int never = 0;
    uv_update_time(&loop);
    for (uint64_t end = uv_now(&loop) + 3000; S.up && uv_now(&loop) < end;)
        run_until(&never, 1, 10);
    cr_expect_eq(S.up, 0, "still up with a master gone");
    tp_error err = {0};
    const char *argv[2] = {"GET", tagged[2]};
    size_t argvlen[2] = {3, strlen(tagged[2])};
    cr_expect_eq(tp__redis_command(r, 2, argv, argvlen, 1, on_reply, (void *)11, &err), TP_ECLOSED);
    cr_expect(strstr(err.message, "down"), "%s", err.message);
    cr_assert_eq(cmd(r, 12, "GET", tagged[1], NULL, NULL), TP_OK);
    cr_assert(wait_calls(12, 13, 3000));
    cr_expect_str_eq(S.str[12], tagged[1], "another master: %s", S.str[12]);
    cr_assert_eq(tpt_redisd_restart(victim), 0);
    cr_assert(run_until(&S.up, 1, 10000), "not up after the master came back");
    /* Connected is not joined: until it has heard from the others, the restarted master
     * answers -CLUSTERDOWN, an error reply the link passes on and its caller retries. */
    int tries = 0;
    do {
        if (tries)
            run_ms(50);
        S.calls[13] = 0;
        cr_assert_eq(cmd(r, 13, "GET", tagged[2], NULL, NULL), TP_OK);
        cr_assert(wait_calls(13, 14, 3000));
    } while (S.code[13] == 1 && strstr(S.str[13], "CLUSTERDOWN") && ++tries < 100);
    cr_expect_str_eq(S.str[13], tagged[2], "%s", S.str[13]);

    /* The master the pub/sub connection is on (the URL's) killed for good: it moves to
     * another master, subscribes again, tells the owner, and PUBLISH still reaches it. */
    int resubs = S.resubscribed, msgs = S.nmsg;
    tpt_redisd_signal(&servers[0], SIGKILL);
    cr_assert(run_until(&S.resubscribed, resubs + 1, 5000), "pub/sub did not move");
    cr_assert_eq(cmd(r, 14, "PUBLISH", "bus", "again", NULL), TP_OK);
    cr_assert(wait_calls(14, 15, 3000));
    cr_expect_eq(S.integer[14], 1, "subscribers: %lld (%s)", S.integer[14], S.str[14]);
    cr_assert(run_until(&S.nmsg, msgs + 1, 3000));
    cr_expect_str_eq(S.messages[msgs], "bus=again");
    drop(r);
}

Test(redis, cluster_failover, .timeout = 90)
{
    /* Three masters and three replicas, a short node timeout: a master SIGKILLed is
     * replaced by its replica, and the link must find it (the map read again at each failed
     * attempt), not refuse the slots as down for ever. */
    for (int i = 0; i < 6; i++) {
        servers[i].node_timeout_ms = 1000;
        cr_assert_eq(tpt_redisd_start(&servers[i], base, 0, 1), 0, "redis-server %d", i);
    }
    cr_assert_eq(tpt_cluster_create(servers, 6, 1), 0, "the cluster did not form");
    tp__redis_config cfg = {.backoff_min_ms = 50, .backoff_max_ms = 400};
    tp__redis *r = link_to(url_of(servers[0].port, NULL), &cfg);
    cr_assert(run_until(&S.up, 1, 5000), "the link never came up");
    tp__redis_stats st;
    tp__redis_stats_get(r, &st);
    cr_expect_eq(st.masters, 3);

    /* A key on a master that is not the URL's, written there and replicated (WAIT). */
    char key[32];
    int port = -1;
    for (int t = 0; t < 1000; t++) {
        snprintf(key, sizeof key, "{f%d}:k", t);
        port = port_of_slot(servers[0].port, tp__redis_keyslot(key, strlen(key)));
        if (port != servers[0].port)
            break;
    }
    redisContext *c = tpt_redis_sync(port);
    cr_assert(c);
    redisReply *rep = redisCommand(c, "SET %s v1", key);
    freeReplyObject(rep);
    rep = redisCommand(c, "WAIT 1 5000");
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1, "not replicated");
    freeReplyObject(rep);
    redisFree(c);
    tpt_redisd *victim = NULL;
    for (int j = 0; j < 6; j++)
        if (servers[j].port == port)
            victim = &servers[j];
    cr_assert(victim);
    uint64_t maps = st.map_updates;
    tpt_redisd_signal(victim, SIGKILL);

    /* Read it through the link until the promoted replica answers (15 s at most). */
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop), end = t0 + 15000;
    int got = 0;
    for (int i = 0; !got && uv_now(&loop) < end && i < MAXCALLS; i++) {
        if (cmd(r, i, "GET", key, NULL, NULL) == TP_OK) {
            cr_assert(wait_calls(i, i + 1, 3000));
            got = S.code[i] == 0 && strcmp(S.str[i], "v1") == 0;
        }
        if (!got)
            run_ms(100);
    }
    cr_assert(got, "the link never reached the promoted replica");
    cr_expect(run_until(&S.up, 1, 3000), "not up after the failover");
    tp__redis_stats_get(r, &st);
    cr_expect_gt(st.map_updates, maps);
    cr_expect_eq(st.masters, 3);
    cr_log_info("failover followed in %llu ms", (unsigned long long)(uv_now(&loop) - t0));
    drop(r);
}
