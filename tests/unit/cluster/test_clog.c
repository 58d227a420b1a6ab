/* A model's change log in Redis (src/cluster/clog.c) against real redis-servers on loopback
 * (tests/support/redisd.c: AOF with appendfsync always). */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/clog.h"
#include "cluster/redis.h"
#include "redisd.h"

/* ---- The loop, the links, what the callbacks saw ------------------------------------- */

static uv_loop_t loop;
static char base[512];
static tpt_redisd servers[3];
static tp__redis *links[2];
static tp__clog *logs[2];
static int ups[2];

#define MAXMSG 1024
typedef struct msg {
    int link;
    char channel[128];
    size_t channel_len;
    char data[256];
    size_t len;
} msg;
static msg msgs[MAXMSG];
static int nmsg;

static void
setup(void)
{
    memset(servers, 0, sizeof servers);
    memset(links, 0, sizeof links);
    memset(logs, 0, sizeof logs);
    memset(ups, 0, sizeof ups);
    nmsg = 0;
    uv_loop_init(&loop);
    tpt_tempdir(base, sizeof base);
    cr_assert(base[0], "no temporary directory");
}

static void
teardown(void)
{
    for (int i = 0; i < 2; i++) {
        tp__clog_free(logs[i]);
        tp__redis_free(links[i]);
    }
    for (int i = 0; i < 3; i++)
        tpt_redisd_stop(&servers[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "a handle is left open on the loop");
    tpt_rm_rf(base);
}

TestSuite(clog, .init = setup, .fini = teardown, .timeout = 60);

static void
on_state(tp__redis_event ev, const char *reason, uint32_t retry_ms, void *user)
{
    (void)reason;
    (void)retry_ms;
    int i = (int)(intptr_t)user;
    if (ev == TP__REDIS_UP)
        ups[i] = 1;
    if (ev == TP__REDIS_DOWN)
        ups[i] = 0;
}

static void
on_message(const char *ch, size_t chlen, const char *data, size_t len, void *user)
{
    if (nmsg >= MAXMSG)
        return;
    msg *m = &msgs[nmsg++];
    m->link = (int)(intptr_t)user;
    m->channel_len = chlen < sizeof m->channel ? chlen : sizeof m->channel;
    memcpy(m->channel, ch, m->channel_len);
    m->len = len < sizeof m->data ? len : sizeof m->data;
    memcpy(m->data, data, m->len);
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

/* open_link makes link i to port and its log, and waits until it is up. */
static tp__clog *
open_link(int i, int port)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    tp__redis_config cfg = {.url = url,
                            .on_state = on_state,
                            .on_message = on_message,
                            .backoff_min_ms = 20,
                            .backoff_max_ms = 100,
                            .user = (void *)(intptr_t)i};
    tp_error err = {0};
    links[i] = tp__redis_new(&loop, &cfg, &err);
    cr_assert(links[i], "tp__redis_new: %s", err.message);
    logs[i] = tp__clog_new(links[i], &err);
    cr_assert(logs[i], "tp__clog_new: %s", err.message);
    cr_assert(run_until(&ups[i], 1, 8000), "link %d never came up", i);
    return logs[i];
}

/* ---- Calls, run to their answer ------------------------------------------------------ */

typedef struct ares {
    int done, conflict, code;
    int64_t rev;
    char msg[256];
    char was[64]; /* conflict 2: the outcome recorded ("" when none came) */
} ares;

static void
on_append(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err,
          void *user)
{
    ares *a = user;
    a->done++;
    a->conflict = conflict;
    snprintf(a->was, sizeof a->was, "%.*s", (int)was_len, was ? was : "");
    a->rev = rev;
    a->code = err ? err->code : 0;
    if (err)
        snprintf(a->msg, sizeof a->msg, "%s", err->message);
}

static ares
append(tp__clog *c, const char *owner, const char *id, int64_t base_rev, const char *entry,
       const char *record, uint32_t keep, const char *client, int64_t ref)
{
    tp__clog_append_req q = {.owner = owner,
                             .id = id,
                             .base_rev = base_rev,
                             .entry = entry,
                             .entry_len = strlen(entry),
                             .record = record,
                             .record_len = strlen(record),
                             .keep = keep,
                             .writer = {client, ref}};
    ares a = {0};
    tp_error err = {0};
    cr_assert_eq(tp__clog_append(c, &q, on_append, &a, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&a.done, 1, 5000), "append never answered");
    cr_assert_eq(a.done, 1);
    return a;
}

#define MAXENT 64
typedef struct rres {
    int done, code;
    tp__clog_state state;
    int64_t rev;
    char record[256];
    size_t n;
    struct {
        int64_t rev, ref;
        char kind;
        char entry[64], client[72];
    } e[MAXENT];
    char msg[256];
} rres;

static void
on_read(const tp__clog_read_result *res, const tp_error *err, void *user)
{
    rres *r = user;
    r->done++;
    r->code = err ? err->code : 0;
    if (err) {
        cr_expect_null(res);
        snprintf(r->msg, sizeof r->msg, "%s", err->message);
        return;
    }
    r->state = res->state;
    r->rev = res->rev;
    snprintf(r->record, sizeof r->record, "%.*s", (int)res->record_len,
             res->record ? res->record : "");
    r->n = res->n;
    for (size_t i = 0; i < res->n && i < MAXENT; i++) {
        r->e[i].rev = res->entries[i].rev;
        r->e[i].kind = res->entries[i].kind;
        r->e[i].ref = res->entries[i].ref;
        /* binary: copied whole (NULs included), then terminated */
        size_t n = res->entries[i].entry_len < 63 ? res->entries[i].entry_len : 63;
        memcpy(r->e[i].entry, res->entries[i].entry, n);
        r->e[i].entry[n] = '\0';
        snprintf(r->e[i].client, 72, "%.*s", (int)res->entries[i].client_len,
                 res->entries[i].client);
    }
}

static rres *
read_log(tp__clog *c, const char *owner, const char *id, int64_t after, uint32_t max)
{
    static rres r;
    memset(&r, 0, sizeof r);
    tp_error err = {0};
    int rc = after < 0 ? tp__clog_snapshot(c, owner, id, on_read, &r, &err)
                       : tp__clog_read(c, owner, id, after, max, on_read, &r, &err);
    cr_assert_eq(rc, TP_OK, "%s", err.message);
    cr_assert(run_until(&r.done, 1, 5000), "read never answered");
    cr_assert_eq(r.code, 0, "%s", r.msg);
    return &r;
}

typedef struct ores {
    int done, code, found;
    int64_t highest;
    uint64_t forgotten;
    size_t n;
    int64_t refs[16];
    char bytes[16][32];
    int64_t wrev, wcur, woldest;
} ores;

static void
on_outcomes(const tp__clog_outcomes *res, const tp_error *err, void *user)
{
    ores *o = user;
    o->done++;
    o->code = err ? err->code : 0;
    if (err)
        return;
    o->found = res->found;
    o->highest = res->highest;
    o->forgotten = res->forgotten;
    o->n = res->n;
    for (size_t i = 0; i < res->n && i < 16; i++) {
        o->refs[i] = res->items[i].ref;
        snprintf(o->bytes[i], 32, "%.*s", (int)res->items[i].len, res->items[i].bytes);
    }
}

static ores
outcomes(tp__clog *c, const char *tenant, const char *client)
{
    ores o = {0};
    tp_error err = {0};
    cr_assert_eq(tp__clog_outcomes_get(c, tenant, client, on_outcomes, &o, &err), TP_OK, "%s",
                 err.message);
    cr_assert(run_until(&o.done, 1, 5000));
    cr_assert_eq(o.code, 0);
    return o;
}

static void
on_done(const tp_error *err, void *user)
{
    ares *a = user;
    a->done++;
    a->code = err ? err->code : 0;
}

static void
on_writer(int64_t rev, int64_t cur, int64_t oldest, const tp_error *err, void *user)
{
    ores *o = user;
    o->done++;
    o->code = err ? err->code : 0;
    o->wrev = rev;
    o->wcur = cur;
    o->woldest = oldest;
}

static ores
writer_in_log(tp__clog *c, const char *owner, const char *id, const char *client, int64_t ref)
{
    ores o = {0};
    tp_error err = {0};
    tp__clog_writer w = {client, ref};
    cr_assert_eq(tp__clog_writer_in_log(c, owner, id, &w, on_writer, &o, &err), TP_OK, "%s",
                 err.message);
    cr_assert(run_until(&o.done, 1, 5000));
    cr_assert_eq(o.code, 0);
    return o;
}

static redisReply *
sync_cmd(int port, const char *fmt, const char *a, size_t alen)
{
    redisContext *ctx = tpt_redis_sync(port);
    cr_assert(ctx, "no sync connection to %d", port);
    redisReply *rep = redisCommand(ctx, fmt, a, alen);
    redisFree(ctx);
    cr_assert(rep, "no reply from %d", port);
    return rep;
}

static long long
sync_int(int port, const char *fmt, const char *key)
{
    redisReply *rep = sync_cmd(port, fmt, key, strlen(key));
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

/* ---- Names, bounds, decoding (no server needed) -------------------------------------- */

Test(clog, names_and_bounds)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tpt_free_port(0));
    tp__redis_config cfg = {.url = url};
    links[0] = tp__redis_new(&loop, &cfg, NULL);
    cr_assert(links[0]);
    tp__clog *c = logs[0] = tp__clog_new(links[0], NULL);
    cr_assert(c);

    /* The layout: a private model and its tenant's clients under {tenant}; a shared model
     * under {shared:id}; braces and '%' escaped so the tag is exactly the name. */
    char ch[TP__CLOG_NAME_MAX];
    size_t n;
    cr_assert_eq(tp__clog_channel("alice", "notes", ch, sizeof ch, &n, NULL), TP_OK);
    cr_expect_eq(n, strlen("tp:{alice}:m:notes"));
    cr_expect_eq(memcmp(ch, "tp:{alice}:m:notes", n), 0);
    cr_assert_eq(tp__clog_channel("", "board", ch, sizeof ch, &n, NULL), TP_OK);
    cr_expect_eq(memcmp(ch, "tp:{shared:board}:m", n), 0, "%.*s", (int)n, ch);
    cr_assert_eq(tp__clog_channel("a}b{%", "x{y}", ch, sizeof ch, &n, NULL), TP_OK);
    cr_expect_eq(memcmp(ch, "tp:{a%7Db%7B%25}:m:x{y}", n), 0, "%.*s", (int)n, ch);
    cr_expect_eq(tp__redis_keyslot(ch, n), tp__redis_keyslot("a%7Db%7B%25", 11));
    cr_assert_eq(tp__clog_channel("", "a}b", ch, sizeof ch, &n, NULL), TP_OK);
    cr_expect_eq(memcmp(ch, "tp:{shared:a%7Db}:m", n), 0, "%.*s", (int)n, ch);
    /* The longest names fit TP__CLOG_NAME_MAX; a short buffer is refused. */
    char longest[TP__CLOG_KEY_MAX + 1];
    memset(longest, '{', TP__CLOG_KEY_MAX);
    longest[TP__CLOG_KEY_MAX] = '\0';
    cr_expect_eq(tp__clog_channel(longest, longest, ch, sizeof ch, &n, NULL), TP_OK);
    cr_expect_eq(tp__clog_channel("alice", "notes", ch, 5, &n, NULL), TP_ETOOLARGE);

    /* Every bound refused at the call, the field named, no callback. */
    char toolong[TP__CLOG_KEY_MAX + 2];
    memset(toolong, 'x', sizeof toolong - 1);
    toolong[sizeof toolong - 1] = '\0';
    char client65[66];
    memset(client65, 'c', 65);
    client65[65] = '\0';
    static char big[TP__CLOG_ENTRY_MAX + 1];
    ares never = {0};
    struct {
        tp__clog_append_req q;
        int code;
        const char *field;
    } bad[] = {
        {{.owner = toolong, .id = "m", .keep = 1}, TP_EARG, "owner"},
        {{.owner = NULL, .id = "m", .keep = 1}, TP_EARG, "owner"},
        {{.owner = "t", .id = "", .keep = 1}, TP_EARG, "id"},
        {{.owner = "t", .id = toolong, .keep = 1}, TP_EARG, "id"},
        {{.owner = "t", .id = "m", .keep = 0}, TP_EARG, "keep"},
        {{.owner = "t", .id = "m", .keep = TP__CLOG_KEEP_MAX + 1}, TP_EARG, "keep"},
        {{.owner = "t", .id = "m", .keep = 1, .base_rev = -1}, TP_EARG, "base_rev"},
        {{.owner = "t", .id = "m", .keep = 1, .base_rev = TP__CLOG_REV_MAX}, TP_EARG, "base_rev"},
        {{.owner = "t", .id = "m", .keep = 1, .entry = big, .entry_len = sizeof big},
         TP_ETOOLARGE,
         "entry"},
        {{.owner = "t", .id = "m", .keep = 1, .entry_len = 3}, TP_EARG, "entry"},
        {{.owner = "t",
          .id = "m",
          .keep = 1,
          .record_len = TP__CLOG_RECORD_MAX + 1u,
          .record = big},
         TP_ETOOLARGE,
         "record"},
        {{.owner = "t", .id = "m", .keep = 1, .writer = {client65, 1}}, TP_EARG, "writer.client"},
        {{.owner = "", .id = "m", .keep = 1, .writer = {"k", 1}, .outcome = "x", .outcome_keep = 1},
         TP_EARG,
         "outcome"},
        {{.owner = "t", .id = "m", .keep = 1, .outcome = "x", .outcome_keep = 1},
         TP_EARG,
         "writer.client"},
        {{.owner = "t",
          .id = "m",
          .keep = 1,
          .writer = {"k", 1},
          .outcome = "x",
          .outcome_keep = 0},
         TP_EARG,
         "outcome_keep"},
        {{.owner = "t",
          .id = "m",
          .keep = 1,
          .writer = {"k", 1},
          .outcome = big,
          .outcome_len = TP__CLOG_OUTCOME_MAX + 1,
          .outcome_keep = 1},
         TP_ETOOLARGE,
         "outcome"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tp_error err = {0};
        cr_expect_eq(tp__clog_append(c, &bad[i].q, on_append, &never, &err), bad[i].code,
                     "case %zu: %s", i, err.message);
        cr_expect(strstr(err.message, bad[i].field), "case %zu: '%s' does not name %s", i,
                  err.message, bad[i].field);
    }
    tp_error err = {0};
    cr_expect_eq(tp__clog_read(c, "t", "m", 0, 0, on_read, &never, &err), TP_EARG);
    cr_expect(strstr(err.message, "max_entries"), "%s", err.message);
    cr_expect_eq(tp__clog_read(c, "t", "m", -3, 10, on_read, &never, &err), TP_EARG);
    cr_expect(strstr(err.message, "after_rev"), "%s", err.message);
    cr_expect_eq(tp__clog_outcome_put(c, "t", client65, 1, "x", 1, 4, on_done, &never, &err),
                 TP_EARG);
    cr_expect(strstr(err.message, "client"), "%s", err.message);
    cr_expect_eq(tp__clog_outcome_put(c, "t", "k", 1, "x", 1, TP__CLOG_OUTCOMES_MAX + 1, on_done,
                                      &never, &err),
                 TP_EARG);
    cr_expect(strstr(err.message, "keep"), "%s", err.message);
    cr_expect_eq(tp__clog_outcomes_get(c, "", "k", on_outcomes, &never, &err), TP_EARG);
    cr_expect(strstr(err.message, "tenant"), "%s", err.message);
    tp__clog_writer nobody = {NULL, 0};
    cr_expect_eq(tp__clog_writer_in_log(c, "", "m", &nobody, on_writer, &never, &err), TP_EARG);
    cr_expect(strstr(err.message, "writer.client"), "%s", err.message);
    cr_expect_eq(tp__clog_snapshot(c, "t", "", on_read, &never, &err), TP_EARG);
    cr_expect(strstr(err.message, "id"), "%s", err.message);
    run_ms(30);
    cr_expect_eq(never.done, 0, "a refused call ran its callback");
    tp__clog_stats st;
    tp__clog_stats_get(c, &st);
    cr_expect_eq(st.calls, 0);

    /* Decoding: a good element, and broken ones refused with the place named. */
    tp__clog_entry e;
    const char good[] = "1a42:\x05k7Qx2-9:{\"type\":\"patch\"}";
    cr_assert_eq(tp__clog_decode(good, sizeof good - 1, &e, &err), TP_OK, "%s", err.message);
    cr_expect_eq(e.rev, 42);
    cr_expect_eq(e.kind, 'a');
    cr_expect_eq(e.client_len, 5);
    cr_expect_eq(memcmp(e.client, "k7Qx2", 5), 0);
    cr_expect_eq(e.ref, -9);
    cr_expect_eq(e.entry_len, strlen("{\"type\":\"patch\"}"));
    const char host[] = "1d7:\x00:";
    cr_assert_eq(tp__clog_decode(host, sizeof host - 1, &e, &err), TP_OK, "%s", err.message);
    cr_expect_eq(e.kind, 'd');
    cr_expect_eq(e.client_len, 0);
    cr_expect_eq(e.entry_len, 0);
    static const struct {
        const char *d;
        size_t n;
        const char *where;
    } broken[] = {
#define B(x, w) {x, sizeof(x) - 1, w}
        B("2a1:\x00:x", "version"),
        B("1x1:\x00:x", "kind"),
        B("1a0:\x00:x", "rev"),
        B("1a-1:\x00:", "rev"),
        B("1a1:\x09"
          "ab1:",
          "client"),
        B("1a1:\x02"
          "ab:",
          "ref"),
        B("1a1:\x02"
          "abx:",
          "ref"),
        B("1a1:\x00", "writer"),
        B("1a1:\x01"
          "k12",
          "':'"),
        B("1a", "version"),
#undef B
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        memset(&err, 0, sizeof err);
        cr_expect_eq(tp__clog_decode(broken[i].d, broken[i].n, &e, &err), TP_EINVALID, "case %zu",
                     i);
        cr_expect(strstr(err.message, broken[i].where) || !strcmp(broken[i].where, "version"),
                  "case %zu: '%s' does not name %s", i, err.message, broken[i].where);
    }
}

/* ---- One server ---------------------------------------------------------------------- */

static int
start1(void)
{
    cr_assert_eq(tpt_redisd_start(&servers[0], base, 0, 0), 0, "redis-server did not start");
    return servers[0].port;
}

Test(clog, create_append_conflict_delete)
{
    int port = start1();
    tp__clog *c = open_link(0, port);

    ares a = append(c, "alice", "notes", 0, "p1", "r1", 10, "k7", 1);
    cr_expect_eq(a.code, 0, "%s", a.msg);
    cr_expect_eq(a.conflict, 0);
    cr_expect_eq(a.rev, 1);
    a = append(c, "alice", "notes", 0, "px", "rx", 10, "k7", 2);
    cr_expect(a.conflict && a.rev == 1, "create over a model: conflict at 1, got %d %" PRId64,
              a.conflict, a.rev);
    a = append(c, "alice", "notes", 1, "p2", "r2", 10, NULL, 0);
    cr_expect(!a.conflict && a.rev == 2);
    a = append(c, "alice", "notes", 1, "py", "ry", 10, "k7", 3);
    cr_expect(a.conflict && a.rev == 2, "stale base: conflict at 2");
    a = append(c, "alice", "notes", 5, "pz", "rz", 10, "k7", 3);
    cr_expect(a.conflict && a.rev == 2, "base ahead: conflict at 2");
    /* The conflicts wrote nothing: the snapshot and the log are those of rev 2. */
    rres *r = read_log(c, "alice", "notes", -1, 0);
    cr_expect_eq(r->state, TP__CLOG_SNAPSHOT);
    cr_expect_eq(r->rev, 2);
    cr_expect_str_eq(r->record, "r2");
    r = read_log(c, "alice", "notes", 0, 100);
    cr_assert_eq(r->state, TP__CLOG_ENTRIES);
    cr_assert_eq(r->n, 2);
    cr_expect_eq(r->e[0].rev, 1);
    cr_expect_str_eq(r->e[0].entry, "p1");
    cr_expect_str_eq(r->e[0].client, "k7");
    cr_expect_eq(r->e[0].ref, 1);
    cr_expect_eq(r->e[1].rev, 2);
    cr_expect_str_eq(r->e[1].entry, "p2");
    cr_expect_str_eq(r->e[1].client, "", "a host change has no writer");
    r = read_log(c, "alice", "notes", 2, 100);
    cr_expect(r->state == TP__CLOG_ENTRIES && r->n == 0 && r->rev == 2, "up to date");
    /* bob's "notes" is another model; a shared "notes" too. */
    r = read_log(c, "bob", "notes", 0, 100);
    cr_expect_eq(r->state, TP__CLOG_ABSENT);
    r = read_log(c, "", "notes", -1, 0);
    cr_expect_eq(r->state, TP__CLOG_ABSENT);

    /* Deletion: a tombstone at rev 3; the rev stays, so a new model goes on from it. */
    tp_error err = {0};
    tp__clog_writer w = {"k7", 9};
    ares d = {0};
    cr_assert_eq(tp__clog_delete(c, "alice", "notes", 1, &w, on_append, &d, &err), TP_OK);
    cr_assert(run_until(&d.done, 1, 5000));
    cr_expect(d.conflict && d.rev == 2, "a stale deletion is a conflict");
    memset(&d, 0, sizeof d);
    cr_assert_eq(tp__clog_delete(c, "alice", "notes", 2, &w, on_append, &d, &err), TP_OK);
    cr_assert(run_until(&d.done, 1, 5000));
    cr_expect(!d.conflict && d.rev == 3);
    r = read_log(c, "alice", "notes", -1, 0);
    cr_expect(r->state == TP__CLOG_DELETED && r->rev == 3);
    r = read_log(c, "alice", "notes", 2, 100);
    cr_assert(r->state == TP__CLOG_ENTRIES && r->n == 1);
    cr_expect(r->e[0].kind == 'd' && r->e[0].rev == 3 && r->e[0].ref == 9);
    r = read_log(c, "alice", "notes", 1, 100);
    cr_expect(r->state == TP__CLOG_DELETED && r->rev == 3, "history before a deletion is gone");
    a = append(c, "alice", "notes", 0, "n1", "n1", 10, NULL, 0);
    cr_expect(a.conflict && a.rev == 3, "create over a tombstone needs its rev");
    a = append(c, "alice", "notes", 3, "n1", "n1", 10, NULL, 0);
    cr_expect(!a.conflict && a.rev == 4);
    r = read_log(c, "alice", "notes", 2, 100);
    cr_assert(r->state == TP__CLOG_ENTRIES && r->n == 2);
    cr_expect(r->e[0].kind == 'd' && r->e[1].kind == 'a' && r->e[1].rev == 4);

    /* Binary-safe bytes, and names with braces. */
    const char bin[] = "a\0b\xff:1a";
    tp__clog_append_req q = {.owner = "t}{",
                             .id = "{x}",
                             .entry = bin,
                             .entry_len = sizeof bin - 1,
                             .record = bin,
                             .record_len = sizeof bin - 1,
                             .keep = 4};
    ares b = {0};
    cr_assert_eq(tp__clog_append(c, &q, on_append, &b, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&b.done, 1, 5000));
    cr_expect(!b.conflict && b.rev == 1, "%s", b.msg);
    r = read_log(c, "t}{", "{x}", 0, 10);
    cr_assert(r->state == TP__CLOG_ENTRIES && r->n == 1);
    cr_expect_eq(memcmp(r->e[0].entry, "a\0b\xff:1a", 8), 0);

    tp__clog_stats st;
    tp__clog_stats_get(c, &st);
    cr_expect_eq(st.appends, 10);
    cr_expect_eq(st.conflicts, 5);
    cr_expect_eq(st.failed, 0);
}

Test(clog, trim_and_snapshot)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    for (int i = 0; i < 10; i++) {
        char e[16], rec[16];
        snprintf(e, sizeof e, "p%d", i + 1);
        snprintf(rec, sizeof rec, "r%d", i + 1);
        ares a = append(c, "alice", "m", i, e, rec, 3, "k", i + 1);
        cr_assert(!a.conflict && a.rev == i + 1);
    }
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{alice}:l:m"), 3, "the log keeps 3");
    rres *r = read_log(c, "alice", "m", 7, 100);
    cr_assert_eq(r->state, TP__CLOG_ENTRIES);
    cr_assert_eq(r->n, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(r->e[i].rev, 8 + i);
        char e[16];
        snprintf(e, sizeof e, "p%d", 8 + i);
        cr_expect_str_eq(r->e[i].entry, e);
        cr_expect_eq(r->e[i].ref, 8 + i);
    }
    r = read_log(c, "alice", "m", 6, 100);
    cr_expect(r->state == TP__CLOG_SNAPSHOT && r->rev == 10, "past the trimmed point");
    cr_expect_str_eq(r->record, "r10");
    cr_expect_eq(r->n, 0);
    r = read_log(c, "alice", "m", 7, 2);
    cr_expect(r->state == TP__CLOG_SNAPSHOT && r->rev == 10, "more than max_entries");
    r = read_log(c, "alice", "m", 12, 100);
    cr_expect(r->state == TP__CLOG_SNAPSHOT && r->rev == 10, "a reader ahead of the model");
    r = read_log(c, "alice", "m", 9, 1);
    cr_expect(r->state == TP__CLOG_ENTRIES && r->n == 1 && r->e[0].rev == 10);
    /* keep grows back: the log keeps more from now on. */
    ares a = append(c, "alice", "m", 10, "p11", "r11", 100, NULL, 0);
    cr_assert(!a.conflict);
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{alice}:l:m"), 4);
}

/* ---- Two links racing ---------------------------------------------------------------- */

#define ROUNDS 150

typedef struct racer {
    tp__clog *c;
    int who;
    int64_t base;
    int wins, conflicts, done, inflight;
    int64_t won[2 * ROUNDS + 8];
    int bad;
    ares last;
} racer;

static int64_t winner_of[4 * ROUNDS + 8]; /* rev -> 1 + racer */

static void race_send(racer *r);

static void
on_race(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err, void *user)
{
    (void)was, (void)was_len;
    racer *r = user;
    r->inflight--;
    if (err) {
        r->bad++;
        return;
    }
    if (conflict) {
        r->conflicts++;
        if (rev <= r->base)
            r->bad++; /* a conflict must name a rev past the base it refused */
        r->base = rev;
    } else {
        if (rev != r->base + 1 || winner_of[rev])
            r->bad++; /* a rev given twice */
        winner_of[rev] = 1 + r->who;
        r->won[r->wins++] = rev;
        r->base = rev;
    }
    if (r->wins < ROUNDS)
        race_send(r);
    else
        r->done = 1;
}

static void
race_send(racer *r)
{
    char e[32];
    snprintf(e, sizeof e, "from %d at %" PRId64, r->who, r->base);
    tp__clog_append_req q = {.owner = "",
                             .id = "race",
                             .base_rev = r->base,
                             .entry = e,
                             .entry_len = strlen(e),
                             .record = e,
                             .record_len = strlen(e),
                             .keep = 4 * ROUNDS,
                             .writer = {r->who ? "B" : "A", r->wins}};
    tp_error err = {0};
    if (tp__clog_append(r->c, &q, on_race, r, &err) < 0)
        r->bad++;
    else
        r->inflight++;
}

Test(clog, two_links_race, .timeout = 90)
{
    int port = start1();
    memset(winner_of, 0, sizeof winner_of);
    racer rs[2] = {{.c = open_link(0, port), .who = 0}, {.c = open_link(1, port), .who = 1}};

    /* Lockstep first: both send at the same base before either answer comes: exactly one
     * wins each rev, the other is told the rev it lost to. */
    for (int round = 0; round < 40; round++) {
        int64_t b = rs[0].base > rs[1].base ? rs[0].base : rs[1].base;
        ares x[2] = {{0}, {0}};
        for (int i = 0; i < 2; i++) {
            tp__clog_append_req q = {.owner = "",
                                     .id = "race",
                                     .base_rev = b,
                                     .entry = i ? "B" : "A",
                                     .entry_len = 1,
                                     .record = "r",
                                     .record_len = 1,
                                     .keep = 4 * ROUNDS};
            cr_assert_eq(tp__clog_append(rs[i].c, &q, on_append, &x[i], NULL), TP_OK);
        }
        int both = 0;
        while (both < 2) {
            run_until(&x[0].done, 1, 3000);
            run_until(&x[1].done, 1, 3000);
            both = x[0].done + x[1].done;
            cr_assert_eq(both, 2, "a lockstep append never answered");
        }
        cr_expect_eq(x[0].conflict + x[1].conflict, 1, "round %d: one winner", round);
        cr_expect(x[0].rev == b + 1 && x[1].rev == b + 1,
                  "round %d: the winner got %" PRId64 "+1, the loser that as current", round, b);
        rs[0].base = rs[1].base = b + 1;
    }

    /* Then free running: each link resends from its callbacks, interleaved on one loop,
     * catching up from the conflict's rev, until each has won ROUNDS revs. */
    int64_t start = rs[0].base;
    for (int i = 0; i < 2; i++)
        race_send(&rs[i]);
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + 60000;
    while (!(rs[0].done && rs[1].done) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(rs[0].done && rs[1].done, "the race did not finish: %d and %d wins", rs[0].wins,
              rs[1].wins);
    cr_expect_eq(rs[0].bad + rs[1].bad, 0, "a rev reused, a wrong conflict or an error");
    cr_expect_gt(rs[0].conflicts + rs[1].conflicts, 0, "the links never collided");
    /* Every rev from start+1 to the last won exactly once. */
    int64_t last = start + 2 * ROUNDS;
    for (int64_t v = start + 1; v <= last; v++)
        cr_expect_neq(winner_of[v], 0, "rev %" PRId64 " was never given", v);
    /* The log is in rev order and each rev carries its winner's entry. */
    redisReply *rep = sync_cmd(port, "LRANGE %b 0 -1", "tp:{shared:race}:l", 18);
    cr_assert_eq(rep->type, REDIS_REPLY_ARRAY);
    cr_assert_eq((int64_t)rep->elements, last, "one entry per rev");
    for (size_t i = 0; i < rep->elements; i++) {
        tp__clog_entry e;
        cr_assert_eq(tp__clog_decode(rep->element[i]->str, rep->element[i]->len, &e, NULL), TP_OK);
        cr_expect_eq(e.rev, (int64_t)i + 1, "log order is rev order");
        if (e.rev > start) {
            char want[24];
            snprintf(want, sizeof want, "from %d", (int)winner_of[e.rev] - 1);
            cr_expect_eq(memcmp(e.entry, want, strlen(want)), 0, "rev %" PRId64, e.rev);
        }
    }
    freeReplyObject(rep);
}

/* ---- Exactly once -------------------------------------------------------------------- */

static ares append_outcome_in(tp__clog *c, const char *owner, const char *id, int64_t b,
                              const char *tenant, const char *client, int64_t ref,
                              const char *outcome, uint32_t okeep, int here);

static ares
append_outcome(tp__clog *c, const char *owner, const char *id, int64_t b, const char *client,
               int64_t ref, const char *outcome, uint32_t okeep)
{
    return append_outcome_in(c, owner, id, b, NULL, client, ref, outcome, okeep, 0);
}

/* As append_outcome, for a shared model's writer of tenant, its outcome in the model's slot
 * (here: outcome_here). */
static ares
append_outcome_in(tp__clog *c, const char *owner, const char *id, int64_t b, const char *tenant,
                  const char *client, int64_t ref, const char *outcome, uint32_t okeep, int here)
{
    tp__clog_append_req q = {.owner = owner,
                             .id = id,
                             .base_rev = b,
                             .entry = "patch",
                             .entry_len = 5,
                             .record = "rec",
                             .record_len = 3,
                             .keep = 16,
                             .writer = {client, ref},
                             .outcome = outcome,
                             .outcome_len = strlen(outcome),
                             .outcome_keep = okeep,
                             .tenant = tenant,
                             .outcome_here = here};
    ares a = {0};
    tp_error err = {0};
    cr_assert_eq(tp__clog_append(c, &q, on_append, &a, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&a.done, 1, 5000));
    return a;
}

Test(clog, private_outcome_atomic)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    tp__clog *sub = open_link(1, port);
    tp_error err = {0};
    cr_assert_eq(tp__clog_subscribe(sub, "alice", "notes", &err), TP_OK);

    /* Five writes of one client, outcomes kept 3; refs beyond Lua's doubles stay exact. */
    int64_t refs[5] = {-5, 3, 9007199254740993LL, INT64_MAX - 1, INT64_MAX};
    for (int i = 0; i < 5; i++) {
        char o[32];
        snprintf(o, sizeof o, "ack%d", i);
        ares a = append_outcome(c, "alice", "notes", i, "k7", refs[i], o, 3);
        cr_assert(!a.conflict && a.rev == i + 1, "%s", a.msg);
    }
    ores o = outcomes(c, "alice", "k7");
    cr_expect(o.found);
    cr_expect_eq(o.highest, INT64_MAX);
    cr_expect_eq(o.forgotten, 2);
    cr_assert_eq(o.n, 3);
    cr_expect_eq(o.refs[0], 9007199254740993LL);
    cr_expect_str_eq(o.bytes[0], "ack2");
    cr_expect_eq(o.refs[2], INT64_MAX);
    cr_expect_str_eq(o.bytes[2], "ack4");
    o = outcomes(c, "alice", "nobody");
    cr_expect(!o.found && o.n == 0);
    o = outcomes(c, "bob", "k7");
    cr_expect(!o.found, "two tenants' clients with one id are two clients");
    /* The highest stays the highest when a lower ref is recorded later. */
    ares a = append_outcome(c, "alice", "notes", 5, "k7", -7, "late", 3);
    cr_assert(!a.conflict);
    o = outcomes(c, "alice", "k7");
    cr_expect_eq(o.highest, INT64_MAX);
    cr_expect_eq(o.refs[0], -7);

    /* A conflict records no outcome. */
    a = append_outcome(c, "alice", "notes", 2, "k8", 1, "nope", 3);
    cr_expect(a.conflict && a.rev == 6);
    cr_expect(!outcomes(c, "alice", "k8").found);

    /* A script that fails (the client's key is a string) changes nothing: not the rev, the
     * record, the log, nor does it publish. */
    run_ms(100);
    int before = nmsg;
    redisReply *rep = sync_cmd(port, "SET %b oops", "tp:{alice}:c:k9", 15);
    freeReplyObject(rep);
    a = append_outcome(c, "alice", "notes", 6, "k9", 1, "ack", 3);
    cr_expect_eq(a.code, TP_EINTERNAL, "a failing script is an error");
    cr_expect(strstr(a.msg, "WRONGTYPE"), "%s", a.msg);
    rres *r = read_log(c, "alice", "notes", -1, 0);
    cr_expect_eq(r->rev, 6, "the failed append moved the rev");
    cr_expect_str_eq(r->record, "rec");
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{alice}:l:notes"), 6);
    cr_expect_eq(sync_int(port, "EXISTS %b", "tp:{alice}:q:k9"), 0);
    /* A successful append after it is published: and it is the only new message. */
    a = append_outcome(c, "alice", "notes", 6, "k7", 100, "ok", 3);
    cr_assert(!a.conflict && a.rev == 7);
    int want = before + 1;
    run_until(&nmsg, want, 3000);
    run_ms(50);
    cr_expect_eq(nmsg, want, "the failed append published");
    tp__clog_entry e;
    cr_assert_eq(tp__clog_decode(msgs[nmsg - 1].data, msgs[nmsg - 1].len, &e, NULL), TP_OK);
    cr_expect_eq(e.rev, 7);
    cr_expect_eq(e.ref, 100);
    tp__clog_stats st;
    tp__clog_stats_get(c, &st);
    cr_expect_eq(st.failed, 1);
    /* The same write appended again (a resend through another node): its ref has an outcome,
     * so nothing is written, whatever the base, and the answer says so (conflict 2). */
    a = append_outcome(c, "alice", "notes", 7, "k7", 100, "ok again", 3);
    cr_expect(a.conflict == 2 && a.rev == 7, "conflict %d rev %lld", a.conflict, (long long)a.rev);
    cr_expect_str_eq(a.was, "ok", "the answer carries the outcome recorded first");
    a = append_outcome(c, "alice", "notes", 3, "k7", 100, "ok again", 3);
    cr_expect(a.conflict == 2 && a.rev == 7, "a stale base: still 2, not a conflict");
    r = read_log(c, "alice", "notes", -1, 0);
    cr_expect_eq(r->rev, 7);
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{alice}:l:notes"), 7);
    o = outcomes(c, "alice", "k7");
    cr_expect_eq(o.n, 3);
    int found = 0;
    for (size_t i = 0; i < o.n; i++)
        if (o.refs[i] == 100) {
            found = 1;
            cr_expect_str_eq(o.bytes[i], "ok", "the first outcome stays");
        }
    cr_expect(found, "ref 100's outcome");
}

typedef struct mres {
    int done, conflict, code;
    int64_t rev;
    size_t dup;
    char was[64];
} mres;

static void
on_many(int conflict, int64_t rev, size_t dup, const char *was, size_t was_len, const tp_error *err,
        void *user)
{
    mres *a = user;
    a->done++;
    a->conflict = conflict;
    a->rev = rev;
    a->dup = dup;
    a->code = err ? err->code : 0;
    snprintf(a->was, sizeof a->was, "%.*s", (int)was_len, was ? was : "");
}

/* n changes of alice/notes from base, writer k7 with refs ref0, ref0 + 1, ...; entries
 * "e<ref>", outcomes "o<ref>", the record "r<last ref>". */
static mres
append_n(tp__clog *c, int64_t from, size_t n, int64_t ref0)
{
    tp__clog_append_req q[8];
    char ent[8][32], out[8][32], rec[32];
    snprintf(rec, sizeof rec, "r%lld", (long long)(ref0 + (int64_t)n - 1));
    for (size_t i = 0; i < n; i++) {
        snprintf(ent[i], sizeof ent[i], "e%lld", (long long)(ref0 + (int64_t)i));
        snprintf(out[i], sizeof out[i], "o%lld", (long long)(ref0 + (int64_t)i));
        q[i] = (tp__clog_append_req){.owner = "alice",
                                     .id = "notes",
                                     .base_rev = from + (int64_t)i,
                                     .entry = ent[i],
                                     .entry_len = strlen(ent[i]),
                                     .record = rec,
                                     .record_len = strlen(rec),
                                     .keep = 16,
                                     .writer = {"k7", ref0 + (int64_t)i},
                                     .outcome = out[i],
                                     .outcome_len = strlen(out[i]),
                                     .outcome_keep = 8};
    }
    mres a = {0};
    tp_error err = {0};
    cr_assert_eq(tp__clog_append_many(c, q, n, on_many, &a, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&a.done, 1, 5000), "append_many never answered");
    return a;
}

Test(clog, append_many_batch)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    tp__clog *sub = open_link(1, port);
    tp_error err = {0};
    cr_assert_eq(tp__clog_subscribe(sub, "alice", "notes", &err), TP_OK);
    run_ms(100);
    int before = nmsg;
    /* Three changes in one script: revs 1 to 3, each published, each outcome kept. */
    mres a = append_n(c, 0, 3, 10);
    cr_assert(a.conflict == 0 && a.rev == 3, "conflict %d rev %lld", a.conflict, (long long)a.rev);
    rres *r = read_log(c, "alice", "notes", 0, 16);
    cr_assert_eq(r->n, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(r->e[i].rev, i + 1);
        cr_expect_eq(r->e[i].ref, 10 + i);
        char want[16];
        snprintf(want, sizeof want, "e%d", 10 + i);
        cr_expect_str_eq(r->e[i].entry, want);
    }
    r = read_log(c, "alice", "notes", -1, 0);
    cr_expect_str_eq(r->record, "r12", "the record is the last change's");
    ores o = outcomes(c, "alice", "k7");
    cr_expect_eq(o.n, 3);
    cr_expect_eq(o.highest, 12);
    run_until(&nmsg, before + 3, 3000);
    cr_assert_eq(nmsg, before + 3, "one message per change");
    for (int i = 0; i < 3; i++) {
        tp__clog_entry en;
        cr_assert_eq(tp__clog_decode(msgs[before + i].data, msgs[before + i].len, &en, NULL),
                     TP_OK);
        cr_expect_eq(en.rev, i + 1, "published in rev order");
    }
    /* A stale base: nothing written. */
    a = append_n(c, 1, 2, 20);
    cr_expect(a.conflict == 1 && a.rev == 3, "conflict %d rev %lld", a.conflict, (long long)a.rev);
    /* The second change's ref has an outcome already: dup 1, its outcome, nothing written. */
    a = append_n(c, 3, 3, 11);
    cr_expect(a.conflict == 2 && a.dup == 0, "conflict %d dup %zu", a.conflict, a.dup);
    a = append_n(c, 3, 3, 9);
    cr_expect(a.conflict == 2 && a.dup == 1, "conflict %d dup %zu", a.conflict, a.dup);
    cr_expect_str_eq(a.was, "o10");
    r = read_log(c, "alice", "notes", -1, 0);
    cr_expect_eq(r->rev, 3);
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{alice}:l:notes"), 3);
    /* Bounds: none, or more than TP__CLOG_BATCH_MAX, refused at once. */
    mres z = {0};
    tp__clog_append_req one = {.owner = "alice", .id = "notes", .keep = 1};
    cr_expect_eq(tp__clog_append_many(c, &one, 0, on_many, &z, &err), TP_EARG);
    cr_expect_eq(tp__clog_append_many(c, &one, TP__CLOG_BATCH_MAX + 1, on_many, &z, &err), TP_EARG);
    cr_expect(strstr(err.message, "changes"), "%s", err.message);
}

Test(clog, shared_outcome_in_the_models_slot)
{
    /* A shared model's writer on a Redis Cluster: a copy of its outcome in the model's slot,
     * in the same script, so that a resend through any node finds it (the keys' layout is
     * the same on one Redis). */
    int port = start1();
    tp__clog *c = open_link(0, port);
    ares a = append_outcome_in(c, "", "board", 0, "a:b", "c", 5, "ack5", 8, 1);
    cr_assert(!a.conflict && a.rev == 1, "%s", a.msg);
    const char *key = "tp:{shared:board}:c:3:a:b:c";
    cr_expect_eq(sync_int(port, "HEXISTS %b o5", key), 1, "the outcome is in the model's slot");
    int64_t ttl = sync_int(port, "PTTL %b", key);
    cr_expect(ttl > 0 && ttl <= TP__CLOG_HERE_TTL_MS, "expires: %lld", (long long)ttl);
    cr_expect_eq(sync_int(port, "EXISTS %b", "tp:{a:b}:c:c"), 0,
                 "not in the client's own record: tp__clog_outcome_put does that");
    /* Resent through another node: nothing written, the first outcome comes back. */
    a = append_outcome_in(c, "", "board", 1, "a:b", "c", 5, "ack5 again", 8, 1);
    cr_expect(a.conflict == 2 && a.rev == 1, "conflict %d rev %lld", a.conflict, (long long)a.rev);
    cr_expect_str_eq(a.was, "ack5");
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{shared:board}:l"), 1);
    /* Tenant "a" with client "b:c" is another writer (the tenant's length is in the key). */
    a = append_outcome_in(c, "", "board", 1, "a", "b:c", 5, "other", 8, 1);
    cr_expect(!a.conflict && a.rev == 2, "conflict %d: %s", a.conflict, a.was);
    /* No tenant: refused, nothing sent. */
    tp__clog_append_req q = {.owner = "",
                             .id = "board",
                             .base_rev = 2,
                             .entry = "e",
                             .entry_len = 1,
                             .record = "r",
                             .record_len = 1,
                             .keep = 4,
                             .writer = {"c", 6},
                             .outcome = "x",
                             .outcome_len = 1,
                             .outcome_keep = 8,
                             .outcome_here = 1};
    tp_error err = {0};
    cr_expect_eq(tp__clog_append(c, &q, on_append, &a, &err), TP_EARG);
    cr_expect(strstr(err.message, "tenant"), "%s", err.message);
}

Test(clog, shared_writer_in_log)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    for (int i = 0; i < 6; i++) {
        ares a = append(c, "", "board", i, "p", "r", 4, i % 2 ? "k7" : "k8", 10 + i);
        cr_assert(!a.conflict && a.rev == i + 1);
    }
    /* The log keeps revs 3..6: k7's refs 13 (rev 4) and 15 (rev 6), k8's 12 and 14. */
    ores o = writer_in_log(c, "", "board", "k7", 15);
    cr_expect_eq(o.wrev, 6);
    cr_expect_eq(o.wcur, 6);
    cr_expect_eq(o.woldest, 3);
    cr_expect_eq(writer_in_log(c, "", "board", "k8", 12).wrev, 3);
    cr_expect_eq(writer_in_log(c, "", "board", "k7", 1).wrev, 0, "a ref never written");
    cr_expect_eq(writer_in_log(c, "", "board", "k7", 151).wrev, 0, "a longer ref");
    cr_expect_eq(writer_in_log(c, "", "board", "k", 15).wrev, 0, "a prefix of the client id");
    o = writer_in_log(c, "", "board", "k7", 11);
    cr_expect_eq(o.wrev, 0, "trimmed away: not found...");
    cr_expect_eq(o.woldest, 3, "...and the caller sees the log starts past it");
    o = writer_in_log(c, "", "nothing", "k7", 11);
    cr_expect(o.wrev == 0 && o.wcur == 0 && o.woldest == 0);

    /* The outcome in its own call, under the client's tenant. */
    ares d = {0};
    tp_error err = {0};
    cr_assert_eq(tp__clog_outcome_put(c, "alice", "k7", 15, "ack15", 5, 8, on_done, &d, &err),
                 TP_OK);
    cr_assert(run_until(&d.done, 1, 5000));
    cr_expect_eq(d.code, 0);
    memset(&d, 0, sizeof d);
    cr_assert_eq(tp__clog_outcome_put(c, "alice", "k7", 15, "ack15b", 6, 8, on_done, &d, &err),
                 TP_OK);
    cr_assert(run_until(&d.done, 1, 5000));
    o = outcomes(c, "alice", "k7");
    cr_expect(o.found && o.n == 1 && o.highest == 15 && o.forgotten == 0,
              "recording a ref again replaces it");
    cr_expect_str_eq(o.bytes[0], "ack15b");
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{alice}:q:k7"), 1);

    /* On one Redis (not a cluster), a shared write's outcome goes in the append's script,
     * under the writer's tenant: the change and its outcome are stored together. */
    tp__clog_append_req q = {.owner = "",
                             .id = "board",
                             .base_rev = 6,
                             .entry = "p7",
                             .entry_len = 2,
                             .record = "r7",
                             .record_len = 2,
                             .keep = 4,
                             .writer = {"k9", 21},
                             .tenant = "bob",
                             .outcome = "ack21",
                             .outcome_len = 5,
                             .outcome_keep = 8};
    ares a = {0};
    cr_assert_eq(tp__clog_append(c, &q, on_append, &a, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&a.done, 1, 5000));
    cr_expect(!a.conflict && a.rev == 7);
    o = outcomes(c, "bob", "k9");
    cr_expect(o.found && o.n == 1 && o.highest == 21);
    cr_expect_str_eq(o.bytes[0], "ack21");
    /* A conflict records nothing. */
    q.writer.ref = 22;
    memset(&a, 0, sizeof a);
    cr_assert_eq(tp__clog_append(c, &q, on_append, &a, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&a.done, 1, 5000));
    cr_expect(a.conflict && a.rev == 7);
    o = outcomes(c, "bob", "k9");
    cr_expect(o.n == 1 && o.highest == 21);
    /* Without the tenant it cannot be placed. */
    q.tenant = NULL;
    q.base_rev = 7;
    cr_expect_eq(tp__clog_append(c, &q, on_append, &a, &err), TP_EARG);
    cr_expect(strstr(err.message, "outcome") != NULL, "%s", err.message);
}

/* ---- Pub/sub ------------------------------------------------------------------------- */

Test(clog, pubsub_follow)
{
    int port = start1();
    tp__clog *w = open_link(0, port);
    tp__clog *f = open_link(1, port);
    tp_error err = {0};
    cr_assert_eq(tp__clog_subscribe(f, "alice", "doc", &err), TP_OK, "%s", err.message);
    cr_assert_eq(tp__clog_subscribe(f, "", "doc", &err), TP_OK);
    /* The subscription is confirmed asynchronously: append until the first message comes. */
    int64_t rev = 0;
    while (nmsg == 0 && rev < 100) {
        ares a = append(w, "alice", "doc", rev, "{\"n\":1}", "rec", 100, "k7", rev + 1);
        cr_assert(!a.conflict);
        rev = a.rev;
        run_ms(20);
    }
    cr_assert_gt(nmsg, 0, "no message ever came");
    int first = nmsg;
    /* Then every append reaches the follower in rev order, decodable without a read. */
    for (int i = 0; i < 20; i++) {
        ares a =
            append(w, "alice", "doc", rev, "{\"n\":2}", "rec", 100, i % 2 ? "k7" : NULL, 1000 + i);
        cr_assert(!a.conflict);
        rev = a.rev;
    }
    ares s = append(w, "", "doc", 0, "shared", "rec", 100, NULL, 0);
    cr_assert(!s.conflict);
    cr_assert(run_until(&nmsg, first + 21, 5000), "%d messages of %d", nmsg - first, 21);
    char ch[TP__CLOG_NAME_MAX];
    size_t chn;
    cr_assert_eq(tp__clog_channel("alice", "doc", ch, sizeof ch, &chn, NULL), TP_OK);
    int64_t prev = 0;
    for (int i = first; i < first + 20; i++) {
        tp__clog_entry e;
        cr_assert_eq(tp__clog_decode(msgs[i].data, msgs[i].len, &e, &err), TP_OK, "%s",
                     err.message);
        cr_expect(msgs[i].channel_len == chn && !memcmp(msgs[i].channel, ch, chn));
        cr_expect_eq(msgs[i].link, 1);
        if (prev)
            cr_expect_eq(e.rev, prev + 1, "in rev order");
        prev = e.rev;
        int k = i - first;
        cr_expect_eq(e.entry_len, 7);
        cr_expect_eq(memcmp(e.entry, "{\"n\":2}", 7), 0);
        cr_expect_eq(e.client_len, k % 2 ? 2u : 0u);
        if (k % 2)
            cr_expect_eq(e.ref, 1000 + k);
    }
    cr_expect_eq(prev, rev);
    tp__clog_entry e;
    cr_assert_eq(tp__clog_decode(msgs[first + 20].data, msgs[first + 20].len, &e, NULL), TP_OK);
    cr_expect(e.rev == 1 && e.entry_len == 6, "the shared model's own channel");
    cr_expect_eq(memcmp(msgs[first + 20].channel, "tp:{shared:doc}:m", 17), 0);
    /* Unsubscribed: no more messages. */
    cr_assert_eq(tp__clog_unsubscribe(f, "alice", "doc", &err), TP_OK);
    run_ms(100);
    int n = nmsg;
    ares a = append(w, "alice", "doc", rev, "x", "rec", 100, NULL, 0);
    cr_assert(!a.conflict);
    run_ms(150);
    cr_expect_eq(nmsg, n, "a message after unsubscribing");
}

/* ---- Durability ---------------------------------------------------------------------- */

#define MODELS 20
#define KILL_AT 300

typedef struct durab {
    tp__clog *c;
    int64_t acked[MODELS];
    int acks, killed, errors;
} durab;
static durab D;

static void dur_send(int m);

static void
on_dur(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err, void *user)
{
    (void)was, (void)was_len;
    int m = (int)(intptr_t)user;
    if (err) {
        D.errors++;
        return;
    }
    cr_assert(!conflict, "one writer per model never conflicts");
    D.acked[m] = rev;
    D.acks++;
    if (D.acks == KILL_AT && !D.killed) {
        /* Killed with appends still in flight on every model. */
        D.killed = 1;
        tpt_redisd_signal(&servers[0], SIGKILL);
        return;
    }
    if (!D.killed)
        dur_send(m);
}

static void
dur_send(int m)
{
    char id[16], e[32];
    snprintf(id, sizeof id, "m%d", m);
    snprintf(e, sizeof e, "patch %" PRId64, D.acked[m] + 1);
    tp__clog_append_req q = {.owner = "alice",
                             .id = id,
                             .base_rev = D.acked[m],
                             .entry = e,
                             .entry_len = strlen(e),
                             .record = e,
                             .record_len = strlen(e),
                             .keep = 1000,
                             .writer = {"k7", m * 100000 + D.acked[m] + 1},
                             .outcome = e,
                             .outcome_len = strlen(e),
                             .outcome_keep = 256};
    cr_assert_eq(tp__clog_append(D.c, &q, on_dur, (void *)(intptr_t)m, NULL), TP_OK);
}

Test(clog, sigkill_aof_keeps_acked, .timeout = 90)
{
    int port = start1();
    memset(&D, 0, sizeof D);
    D.c = open_link(0, port);
    for (int m = 0; m < MODELS; m++)
        dur_send(m);
    cr_assert(run_until(&D.killed, 1, 30000), "only %d acks", D.acks);
    run_until(&D.errors, 1, 5000);
    cr_assert_eq(tpt_redisd_restart(&servers[0]), 0, "redis-server did not restart");
    for (int m = 0; m < MODELS; m++) {
        char key[32];
        snprintf(key, sizeof key, "tp:{alice}:m:m%d", m);
        redisReply *rep = sync_cmd(port, "HGET %b rev", key, strlen(key));
        cr_assert_eq(rep->type, REDIS_REPLY_STRING, "model %d is gone", m);
        long long rev = atoll(rep->str);
        freeReplyObject(rep);
        cr_expect_geq(rev, D.acked[m], "model %d: acked %" PRId64 ", kept %lld", m, D.acked[m],
                      rev);
        snprintf(key, sizeof key, "tp:{alice}:l:m%d", m);
        cr_expect_eq(sync_int(port, "LLEN %b", key), rev, "model %d: one entry per rev", m);
    }
    /* The outcome of each model's last acked append is there too (same script, same AOF
     * record): the newest 256 outcomes are kept, and these are among the newest. */
    for (int m = 0; m < MODELS; m++) {
        char field[32];
        snprintf(field, sizeof field, "o%" PRId64, (int64_t)m * 100000 + D.acked[m]);
        redisContext *ctx = tpt_redis_sync(port);
        cr_assert(ctx);
        redisReply *rep = redisCommand(ctx, "HEXISTS tp:{alice}:c:k7 %s", field);
        redisFree(ctx);
        cr_assert(rep);
        cr_expect_eq(rep->integer, 1, "model %d: the outcome of acked rev %" PRId64 " is gone", m,
                     D.acked[m]);
        freeReplyObject(rep);
    }
}

/* ---- A Redis Cluster ----------------------------------------------------------------- */

/* owner_of returns the port of the master that holds key (the others answer MOVED). */
static int
owner_of(const char *key, size_t len)
{
    int found = 0;
    for (int i = 0; i < 3; i++) {
        redisReply *rep = sync_cmd(servers[i].port, "EXISTS %b", key, len);
        if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
            found = servers[i].port;
        freeReplyObject(rep);
    }
    return found;
}

Test(clog, cluster_three_masters, .timeout = 120)
{
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tpt_redisd_start(&servers[i], base, 0, 1), 0, "redis-server %d", i);
    cr_assert_eq(tpt_cluster_create(servers, 3, 0), 0, "the cluster did not form");
    tp__clog *c = open_link(0, servers[0].port);

    /* Tenants (private models) and shared models spread until every master has some. */
    int ports_seen[3] = {0}, nports = 0;
    for (int t = 0; t < 24; t++) {
        char tenant[16], id[16];
        snprintf(tenant, sizeof tenant, "t%d", t);
        snprintf(id, sizeof id, "s%d", t);
        const char *owner = t % 2 ? tenant : "";
        const char *mid = t % 2 ? "notes" : id;
        ares a = {0};
        for (int i = 0; i < 3; i++) {
            a = t % 2 ? append_outcome(c, owner, mid, i, "k7", i + 1, "ack", 8)
                      : append(c, owner, mid, i, "p", "r", 8, "k7", i + 1);
            cr_assert(!a.conflict && a.rev == i + 1, "%s %s: %s", owner, mid, a.msg);
        }
        rres *r = read_log(c, owner, mid, 1, 10);
        cr_expect(r->state == TP__CLOG_ENTRIES && r->n == 2 && r->e[1].rev == 3);
        char mk[TP__CLOG_NAME_MAX], lk[TP__CLOG_NAME_MAX + 8];
        size_t mn;
        cr_assert_eq(tp__clog_channel(owner, mid, mk, sizeof mk, &mn, NULL), TP_OK);
        memcpy(lk, mk, mn);
        lk[mn - (t % 2 ? strlen(mid) + 2 : 1)] = 'l'; /* ...:m:id -> ...:l:id, ...:m -> ...:l */
        int pm = owner_of(mk, mn), pl = owner_of(lk, mn);
        cr_assert_neq(pm, 0, "%.*s is on no master", (int)mn, mk);
        cr_expect_eq(pm, pl, "a model's hash and log on one master");
        cr_expect_eq(tp__redis_keyslot(mk, mn), tp__redis_keyslot(lk, mn));
        if (t % 2) {
            /* The tenant's client record shares the private model's slot. */
            char ck[64];
            int n = snprintf(ck, sizeof ck, "tp:{%s}:c:k7", tenant);
            cr_expect_eq(owner_of(ck, (size_t)n), pm, "the client's record beside the model");
            cr_expect_eq(tp__redis_keyslot(ck, (size_t)n), tp__redis_keyslot(mk, mn));
            cr_expect_eq(tp__redis_keyslot(mk, mn), tp__redis_keyslot(tenant, strlen(tenant)));
            cr_expect_eq(outcomes(c, tenant, "k7").n, 3);
        } else {
            char tag[32];
            int tn = snprintf(tag, sizeof tag, "shared:%s", id);
            cr_expect_eq(tp__redis_keyslot(mk, mn), tp__redis_keyslot(tag, (size_t)tn),
                         "a shared model's keys in the slot of {shared:id}");
            cr_expect_eq(writer_in_log(c, owner, mid, "k7", 2).wrev, 2);
        }
        int fresh = 1;
        for (int j = 0; j < nports; j++)
            fresh &= ports_seen[j] != pm;
        if (fresh && nports < 3)
            ports_seen[nports++] = pm;
    }
    cr_expect_eq(nports, 3, "the models did not spread over the three masters");

    /* A follower on another link gets what scripts publish on every master (plain PUBLISH
     * crosses the cluster bus): append until each of three models has published once. */
    tp__clog *f = open_link(1, servers[1].port);
    const char *own[3] = {"t1", "t3", ""}, *mids[3] = {"notes", "notes", "s0"};
    tp_error err = {0};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tp__clog_subscribe(f, own[i], mids[i], &err), TP_OK, "%s", err.message);
    int64_t revs[3] = {3, 3, 3};
    int got[3] = {0, 0, 0};
    for (int tries = 0; tries < 100 && !(got[0] && got[1] && got[2]); tries++) {
        for (int i = 0; i < 3; i++) {
            ares a = append(c, own[i], mids[i], revs[i], "p", "r", 8, NULL, 0);
            cr_assert(!a.conflict, "%s", a.msg);
            revs[i] = a.rev;
        }
        run_ms(20);
        for (int m = 0; m < nmsg; m++)
            for (int i = 0; i < 3; i++) {
                char ch[TP__CLOG_NAME_MAX];
                size_t chn;
                tp__clog_channel(own[i], mids[i], ch, sizeof ch, &chn, NULL);
                tp__clog_entry e;
                if (msgs[m].link == 1 && msgs[m].channel_len == chn &&
                    !memcmp(msgs[m].channel, ch, chn) &&
                    tp__clog_decode(msgs[m].data, msgs[m].len, &e, NULL) == TP_OK && e.rev > 3)
                    got[i] = 1;
            }
    }
    cr_expect(got[0] && got[1] && got[2], "published: %d %d %d", got[0], got[1], got[2]);
    /* A shared write's outcome cannot join its append on a cluster: another slot. */
    {
        tp__clog_append_req q = {.owner = "",
                                 .id = "x",
                                 .record = "r",
                                 .record_len = 1,
                                 .keep = 4,
                                 .writer = {"k9", 1},
                                 .tenant = "bob",
                                 .outcome = "a",
                                 .outcome_len = 1,
                                 .outcome_keep = 8};
        ares a = {0};
        tp_error e = {0};
        cr_expect_eq(tp__clog_append(c, &q, on_append, &a, &e), TP_EARG);
        cr_expect(strstr(e.message, "another slot") != NULL, "%s", e.message);
    }
    tp__clog_stats st;
    tp__clog_stats_get(c, &st);
    cr_expect_eq(st.redirects, 0, "every call went to its master first time");
    cr_expect_eq(st.failed, 0);
}

/* ---- Life cycle ---------------------------------------------------------------------- */

static int freed_cb_calls;

static void
on_append_free(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err,
               void *user)
{
    (void)was, (void)was_len;
    (void)conflict;
    (void)rev;
    (void)err;
    (void)user;
    freed_cb_calls++;
    /* Freed from inside its own callback, with another call still in flight. */
    tp__clog_free(logs[0]);
    logs[0] = NULL;
}

Test(clog, free_with_calls_in_flight)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    ares a = {0};
    freed_cb_calls = 0;
    tp__clog_append_req q = {.owner = "t", .id = "m", .entry = "e", .entry_len = 1, .keep = 4};
    cr_assert_eq(tp__clog_append(c, &q, on_append_free, NULL, NULL), TP_OK);
    q.base_rev = 1;
    cr_assert_eq(tp__clog_append(c, &q, on_append, &a, NULL), TP_OK);
    run_until(&freed_cb_calls, 1, 5000);
    run_ms(100);
    cr_expect_eq(freed_cb_calls, 1);
    cr_expect_eq(a.done, 0, "a callback ran after tp__clog_free");
    /* The second append ran in Redis all the same (it was sent). */
    cr_expect_eq(sync_int(port, "LLEN %b", "tp:{t}:l:m"), 2);

    /* Freed with calls in flight and never answered before the link goes: no callback. */
    c = logs[0] = tp__clog_new(links[0], NULL);
    cr_assert(c);
    memset(&a, 0, sizeof a);
    q.base_rev = 2;
    cr_assert_eq(tp__clog_append(c, &q, on_append, &a, NULL), TP_OK);
    tp__clog_free(c);
    logs[0] = NULL;
    tp__redis_free(links[0]);
    links[0] = NULL;
    run_ms(50);
    cr_expect_eq(a.done, 0);
}

/* ---- The catalog --------------------------------------------------------------------- */

typedef struct cres {
    int done, conflict, code;
    int64_t version;
    char msg[256];
} cres;

static void
on_catalog(int conflict, int64_t version, const tp_error *err, void *user)
{
    cres *a = user;
    a->done++;
    a->conflict = conflict;
    a->version = version;
    a->code = err ? err->code : 0;
    if (err)
        snprintf(a->msg, sizeof a->msg, "%s", err->message);
}

/* cat_put runs a put to its answer. */
static cres
cat_put(tp__clog *c, int64_t expect, const char *op, size_t op_len, const tp__clog_item *items,
        size_t n)
{
    cres a = {0};
    tp_error err = {0};
    cr_assert_eq(tp__clog_catalog_put(c, expect, op, op_len, items, n, on_catalog, &a, &err), TP_OK,
                 "%s", err.message);
    cr_assert(run_until(&a.done, 1, 10000), "catalog_put never answered");
    cr_assert_eq(a.done, 1);
    return a;
}

/* cat_refused asserts that a put is refused at once with code, err naming what, and that it
 * sent nothing and will never call back. */
static void
cat_refused(tp__clog *c, int64_t expect, const char *op, size_t op_len, const tp__clog_item *items,
            size_t n, int code, const char *what)
{
    tp__clog_stats before, after;
    tp__clog_stats_get(c, &before);
    cres a = {0};
    tp_error err = {0};
    cr_expect_eq(tp__clog_catalog_put(c, expect, op, op_len, items, n, on_catalog, &a, &err), code,
                 "expected %d for %s: %s", code, what, err.message);
    cr_expect_eq(err.code, code);
    cr_expect(strstr(err.message, what) != NULL, "'%s' does not name %s", err.message, what);
    tp__clog_stats_get(c, &after);
    cr_expect_eq(after.calls, before.calls, "a refused put was sent");
    run_ms(10);
    cr_expect_eq(a.done, 0, "a refused put called back");
}

#define MAXITEMS 64
typedef struct lres {
    int done, code;
    int64_t version;
    size_t n;
    struct {
        char f[64], b[64];
        size_t fl, bl;
    } it[MAXITEMS];
    char msg[256];
} lres;

static void
on_load(const tp__clog_catalog *res, const tp_error *err, void *user)
{
    lres *l = user;
    l->done++;
    l->code = err ? err->code : 0;
    if (err) {
        cr_expect_null(res);
        snprintf(l->msg, sizeof l->msg, "%s", err->message);
        return;
    }
    l->version = res->version;
    l->n = res->n;
    for (size_t i = 0; i < res->n && i < MAXITEMS; i++) {
        const tp__clog_item *it = &res->items[i];
        cr_expect(it->field && it->body, "a loaded item without its field or body");
        l->it[i].fl = it->field_len;
        l->it[i].bl = it->body_len;
        memcpy(l->it[i].f, it->field, it->field_len < 64 ? it->field_len : 64);
        memcpy(l->it[i].b, it->body, it->body_len < 64 ? it->body_len : 64);
    }
}

static lres *
cat_load(tp__clog *c)
{
    static lres l;
    memset(&l, 0, sizeof l);
    tp_error err = {0};
    cr_assert_eq(tp__clog_catalog_load(c, on_load, &l, &err), TP_OK, "%s", err.message);
    cr_assert(run_until(&l.done, 1, 10000), "catalog_load never answered");
    cr_assert_eq(l.done, 1);
    return &l;
}

/* body_of returns the loaded body of field (bytes, len fl) into *bl, or NULL when absent. */
static const char *
body_of(const lres *l, const char *f, size_t fl, size_t *bl)
{
    for (size_t i = 0; i < l->n && i < MAXITEMS; i++)
        if (l->it[i].fl == fl && !memcmp(l->it[i].f, f, fl)) {
            *bl = l->it[i].bl;
            return l->it[i].b;
        }
    return NULL;
}

static int
has_body(const lres *l, const char *f, size_t fl, const char *b, size_t bl)
{
    size_t n;
    const char *got = body_of(l, f, fl, &n);
    return got && n == bl && !memcmp(got, b, bl);
}

#define S(s) s, sizeof s - 1
#define ITEM(f, b) ((tp__clog_item){S(f), S(b)})
#define DEL(f) ((tp__clog_item){S(f), NULL, 0})

/* catalog_bytes reads the catalog's byte counter as Redis holds it. */
static long long
catalog_bytes(int port)
{
    redisReply *rep = sync_cmd(port, "GET %b", S("tp:{%catalog}:bytes"));
    long long v = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : -1;
    freeReplyObject(rep);
    return v;
}

Test(clog, catalog_put_load)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    lres *l = cat_load(c);
    cr_expect(l->code == 0 && l->version == 0 && l->n == 0, "a fresh catalog: %s", l->msg);

    /* Binary fields and bodies (NUL bytes inside) and an empty body round-trip. */
    tp__clog_item it[3] = {ITEM("m:alice/notes", "{\"k\":1}"), ITEM("s\0x", "b\0\0y"),
                           ITEM("schema:a", "")};
    cres a = cat_put(c, 0, S("create"), it, 3);
    cr_expect(a.code == 0 && a.conflict == 0 && a.version == 1, "%s", a.msg);
    l = cat_load(c);
    cr_expect_eq(l->version, 1);
    cr_expect_eq(l->n, 3);
    cr_expect(has_body(l, S("m:alice/notes"), S("{\"k\":1}")));
    cr_expect(has_body(l, S("s\0x"), S("b\0\0y")), "binary field and body");
    cr_expect(has_body(l, S("schema:a"), S("")), "an empty body is a body");
    cr_expect_eq(sync_int(port, "HLEN %b", "tp:{%catalog}:items"), 3);
    cr_expect_eq(catalog_bytes(port), 13 + 7 + 3 + 4 + 8 + 0);

    /* Deletes remove fields; sets add and replace, in one version. */
    tp__clog_item up[3] = {DEL("m:alice/notes"), ITEM("m:bob/x", "B"), ITEM("s\0x", "new")};
    a = cat_put(c, 1, S("update"), up, 3);
    cr_expect(!a.code && !a.conflict && a.version == 2, "%s", a.msg);
    l = cat_load(c);
    cr_expect(l->version == 2 && l->n == 3);
    size_t bl;
    cr_expect_null(body_of(l, S("m:alice/notes"), &bl), "a deleted field is still there");
    cr_expect(has_body(l, S("m:bob/x"), S("B")));
    cr_expect(has_body(l, S("s\0x"), S("new")));

    /* An expect that does not match (behind, ahead) writes nothing and tells the version. */
    tp__clog_item z[2] = {ITEM("zzz", "1"), DEL("m:bob/x")};
    a = cat_put(c, 1, S("stale"), z, 2);
    cr_expect(!a.code && a.conflict == 1 && a.version == 2, "%d %" PRId64, a.conflict, a.version);
    a = cat_put(c, 7, S("ahead"), z, 2);
    cr_expect(!a.code && a.conflict == 1 && a.version == 2);
    l = cat_load(c);
    cr_expect(l->version == 2 && l->n == 3);
    cr_expect_null(body_of(l, S("zzz"), &bl), "a conflicting put wrote");
    cr_expect(has_body(l, S("m:bob/x"), S("B")), "a conflicting put deleted");

    /* No condition, no item (an event): the version moves, the items do not. */
    a = cat_put(c, -1, S("event"), NULL, 0);
    cr_expect(!a.code && !a.conflict && a.version == 3);
    /* A field set, deleted and set again in one put: the last wins; deleting an absent
     * field is no error. The byte counter follows exactly. */
    tp__clog_item d[4] = {ITEM("d", "1"), DEL("d"), ITEM("d", "22"), DEL("never")};
    a = cat_put(c, 3, S(""), d, 4);
    cr_expect(!a.code && !a.conflict && a.version == 4, "%s", a.msg);
    l = cat_load(c);
    cr_expect(l->version == 4 && l->n == 4);
    cr_expect(has_body(l, S("d"), S("22")));
    long long sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += (long long)(l->it[i].fl + l->it[i].bl);
    cr_expect_eq(catalog_bytes(port), sum, "the byte counter drifted");
    redisReply *rep = sync_cmd(port, "GET %b", S("tp:{%catalog}:v"));
    cr_expect(rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, "4"));
    freeReplyObject(rep);

    /* After a SCRIPT FLUSH (as after a restart) the link answers NOSCRIPT with EVAL, once per
     * script. */
    tp__clog_stats st0;
    tp__clog_stats_get(c, &st0);
    freeReplyObject(sync_cmd(port, "SCRIPT FLUSH", "", 0));
    a = cat_put(c, 4, S("after a flush"), NULL, 0);
    cr_expect(!a.code && !a.conflict && a.version == 5, "%s", a.msg);
    l = cat_load(c);
    cr_expect(l->version == 5 && l->n == 4, "%s", l->msg);
    tp__clog_stats st;
    tp__clog_stats_get(c, &st);
    cr_expect_eq(st.noscript - st0.noscript, 2, "one NOSCRIPT for each of the two scripts");
    cr_expect_eq(st.catalog_puts, 7);
    cr_expect_eq(st.catalog_conflicts, 2);
    cr_expect_eq(st.catalog_loads, 6);
    cr_expect_eq(st.failed, 0);
    cr_expect_eq(st.calls, 13);
}

/* Two nodes seed (expect 0) and then update (expect the version both read) at the same time,
 * both puts sent before either is answered: each time exactly one wins. */
Test(clog, catalog_seeders_race)
{
    int port = start1();
    tp__clog *c[2] = {open_link(0, port), open_link(1, port)};
    int wins[2] = {0, 0};
    for (int round = 0; round < 20; round++) {
        char f[16], b[2][8];
        snprintf(f, sizeof f, "r%d", round);
        cres a[2] = {{0}, {0}};
        for (int i = 0; i < 2; i++) {
            snprintf(b[i], sizeof b[i], "n%d", i);
            tp__clog_item it = {f, strlen(f), b[i], 2};
            cr_assert_eq(
                tp__clog_catalog_put(c[i], round, S("seed"), &it, 1, on_catalog, &a[i], NULL),
                TP_OK);
        }
        int both = 0;
        while (!(a[0].done && a[1].done) && both++ < 500)
            run_ms(10);
        cr_assert(a[0].done == 1 && a[1].done == 1, "round %d: an answer is missing", round);
        cr_assert(!a[0].code && !a[1].code, "%s %s", a[0].msg, a[1].msg);
        cr_expect_eq(a[0].conflict + a[1].conflict, 1, "round %d: not exactly one winner", round);
        cr_expect(a[0].version == round + 1 && a[1].version == round + 1,
                  "the loser is told the winner's version");
        int w = a[0].conflict ? 1 : 0;
        wins[w]++;
        lres *l = cat_load(c[1 - w]);
        cr_expect_eq(l->version, round + 1);
        cr_expect_eq(l->n, (size_t)round + 1);
        cr_expect(has_body(l, f, strlen(f), b[w], 2), "round %d: not the winner's body", round);
    }
    cr_expect_eq(wins[0] + wins[1], 20);
}

/* A follower on another link gets "<v>\n<op>" for every put, in version order. */
Test(clog, catalog_pubsub)
{
    int port = start1();
    tp__clog *w = open_link(0, port);
    tp__clog *f = open_link(1, port);
    tp_error err = {0};
    cr_assert_eq(tp__clog_catalog_subscribe(f, 1, &err), TP_OK, "%s", err.message);
    /* The subscription is confirmed asynchronously: put until the first message comes. */
    int64_t v = 0;
    while (nmsg == 0 && v < 100) {
        cres a = cat_put(w, v, S("warm"), NULL, 0);
        cr_assert(!a.conflict && !a.code);
        v = a.version;
        run_ms(20);
    }
    cr_assert_gt(nmsg, 0, "no message ever came");
    int first = nmsg;
    for (int i = 0; i < 20; i++) {
        char op[16];
        int n = snprintf(op, sizeof op, "op%c%d", 0, i);
        tp__clog_item it = {S("f"), op, (size_t)n};
        cres a = cat_put(w, i % 2 ? -1 : v, op, (size_t)n, &it, 1);
        cr_assert(!a.conflict && !a.code && a.version == v + 1, "%s", a.msg);
        v = a.version;
    }
    /* A conflict publishes nothing. */
    cres a = cat_put(w, 1, S("never"), NULL, 0);
    cr_assert_eq(a.conflict, 1);
    cr_assert(run_until(&nmsg, first + 20, 5000), "%d messages of 20", nmsg - first);
    run_ms(50);
    cr_expect_eq(nmsg, first + 20, "a message too many");
    for (int i = 0; i < 20; i++) {
        const msg *m = &msgs[first + i];
        cr_expect_eq(m->link, 1);
        cr_expect(m->channel_len == strlen(TP__CLOG_CATALOG_CHANNEL) &&
                  !memcmp(m->channel, TP__CLOG_CATALOG_CHANNEL, m->channel_len));
        int64_t mv;
        const char *op;
        size_t opn;
        cr_assert_eq(tp__clog_catalog_decode(m->data, m->len, &mv, &op, &opn, &err), TP_OK, "%s",
                     err.message);
        cr_expect_eq(mv, v - 19 + i, "in version order");
        char want[16];
        int n = snprintf(want, sizeof want, "op%c%d", 0, i);
        cr_expect(opn == (size_t)n && !memcmp(op, want, opn), "message %d: the op bytes", i);
    }
    /* Stopped following: no more messages. */
    cr_assert_eq(tp__clog_catalog_subscribe(f, 0, &err), TP_OK, "%s", err.message);
    run_ms(100);
    int n = nmsg;
    a = cat_put(w, -1, S("after"), NULL, 0);
    cr_assert(!a.conflict);
    run_ms(150);
    cr_expect_eq(nmsg, n, "a message after unsubscribing");
}

Test(clog, catalog_decode)
{
    int64_t v;
    const char *op;
    size_t n;
    tp_error err = {0};
    cr_expect_eq(tp__clog_catalog_decode(S("1\n"), &v, &op, &n, &err), TP_OK, "%s", err.message);
    cr_expect(v == 1 && n == 0);
    const char m[] = "42\nab\0c";
    cr_expect_eq(tp__clog_catalog_decode(m, sizeof m - 1, &v, &op, &n, &err), TP_OK);
    cr_expect(v == 42 && n == 4 && op == m + 3 && !memcmp(op, "ab\0c", 4));
    cr_expect_eq(tp__clog_catalog_decode(S("9007199254740991\nx"), &v, &op, &n, NULL), TP_OK);
    cr_expect_eq(v, 9007199254740991LL);
    static const struct {
        const char *d;
        size_t len;
        const char *where;
    } bad[] = {
        {S(""), "'\\n'"},         {S("1"), "'\\n'"},        {S("12345678901234567\n"), "'\\n'"},
        {S("\nop"), "version"},   {S("x\nop"), "version"},  {S("0\nop"), "version"},
        {S("01\nop"), "version"}, {S("-1\nop"), "version"}, {S("+1\nop"), "version"},
        {S("1 \nop"), "version"}, {S("1x\nop"), "version"}, {S("9007199254740992\nx"), "version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        v = 7;
        cr_expect_eq(tp__clog_catalog_decode(bad[i].d, bad[i].len, &v, &op, &n, &err), TP_EINVALID,
                     "case %zu accepted", i);
        cr_expect(strstr(err.message, bad[i].where) != NULL, "case %zu: '%s'", i, err.message);
        cr_expect(v == 0 && op == NULL && n == 0, "case %zu: outputs left set", i);
    }
    /* An op longer than any put may publish. */
    size_t big = 2 + TP__CLOG_OP_MAX + 1;
    char *d = malloc(big);
    cr_assert(d);
    memset(d, 'o', big);
    d[0] = '5';
    d[1] = '\n';
    cr_expect_eq(tp__clog_catalog_decode(d, big, &v, &op, &n, &err), TP_EINVALID);
    cr_expect(strstr(err.message, "op") != NULL, "%s", err.message);
    cr_expect_eq(tp__clog_catalog_decode(d, big - 1, &v, &op, &n, &err), TP_OK, "%s", err.message);
    cr_expect(v == 5 && n == TP__CLOG_OP_MAX);
    free(d);
}

Test(clog, catalog_bounds)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    tp__clog *f = open_link(1, port);
    cr_assert_eq(tp__clog_catalog_subscribe(f, 1, NULL), TP_OK);
    cres a = cat_put(c, 0, S("seed"), (tp__clog_item[]){ITEM("a", "1")}, 1);
    cr_assert(!a.conflict && a.version == 1);

    /* Every bound, one past it: refused at once, naming the field; nothing sent. */
    char *big = calloc(1, TP__CLOG_OP_MAX + 1);
    cr_assert(big);
    tp__clog_item it[2] = {ITEM("ok", "1"), ITEM("ok2", "2")};
    it[1].field_len = 0;
    cat_refused(c, -1, S("op"), it, 2, TP_EARG, "items[1].field");
    it[1].field = NULL;
    it[1].field_len = 3;
    cat_refused(c, -1, S("op"), it, 2, TP_EARG, "items[1].field");
    it[1] = (tp__clog_item){big, TP__CLOG_FIELD_MAX + 1, "b", 1};
    cat_refused(c, -1, S("op"), it, 2, TP_ETOOLARGE, "items[1].field");
    it[1] = (tp__clog_item){"f", 1, big, TP__CLOG_BODY_MAX + 1};
    cat_refused(c, -1, S("op"), it, 2, TP_ETOOLARGE, "items[1].body");
    cat_refused(c, -1, big, TP__CLOG_OP_MAX + 1, NULL, 0, TP_ETOOLARGE, "op");
    cat_refused(c, -1, NULL, 3, NULL, 0, TP_EARG, "op");
    cat_refused(c, -1, S("op"), NULL, 2, TP_EARG, "items");
    cat_refused(c, -2, S("op"), NULL, 0, TP_EARG, "expect");
    cat_refused(c, TP__CLOG_REV_MAX, S("op"), NULL, 0, TP_EARG, "expect");
    static tp__clog_item many[TP__CLOG_PUT_ITEMS_MAX + 1];
    for (size_t i = 0; i <= TP__CLOG_PUT_ITEMS_MAX; i++)
        many[i] = (tp__clog_item){"m", 1, "", 0};
    cat_refused(c, -1, S("op"), many, TP__CLOG_PUT_ITEMS_MAX + 1, TP_ETOOLARGE, "items");
    /* Nine bodies of 1 MiB, each within its bound, are more than one put may carry. */
    tp__clog_item nine[9];
    for (int i = 0; i < 9; i++)
        nine[i] = (tp__clog_item){&"012345678"[i], 1, big, TP__CLOG_BODY_MAX};
    cat_refused(c, -1, S("op"), nine, 9, TP_ETOOLARGE, "op, fields and bodies");
    {
        tp_error err = {0};
        cres x = {0};
        cr_expect_eq(tp__clog_catalog_put(c, -1, S("op"), NULL, 0, NULL, &x, &err), TP_EARG);
        cr_expect(strstr(err.message, "callback") != NULL, "%s", err.message);
        lres l = {0};
        cr_expect_eq(tp__clog_catalog_load(c, NULL, &l, &err), TP_EARG);
    }
    lres *l = cat_load(c);
    cr_expect(l->version == 1 && l->n == 1, "a refused put wrote: v%" PRId64, l->version);

    /* At each bound exactly: accepted. */
    it[0] = (tp__clog_item){big, TP__CLOG_FIELD_MAX, "f", 1};
    it[1] = (tp__clog_item){"b", 1, big, TP__CLOG_BODY_MAX};
    a = cat_put(c, 1, big, TP__CLOG_OP_MAX, it, 2);
    cr_expect(!a.code && a.version == 2, "%s", a.msg);
    a = cat_put(c, -1, S("many"), many, TP__CLOG_PUT_ITEMS_MAX);
    cr_expect(!a.code && a.version == 3, "%s", a.msg);
    l = cat_load(c);
    cr_expect(l->version == 3 && l->n == 4);
    size_t bl;
    cr_expect(body_of(l, "b", 1, &bl) && bl == TP__CLOG_BODY_MAX);
    free(big);

    /* The whole catalog's bounds (lowered here: the maxima are 100 000 items and 32 MiB):
     * a put that would grow it past them writes nothing, publishes nothing, and fails with
     * TP_ETOOLARGE; one that shrinks it goes through. */
    tp_error err = {0};
    cr_expect_eq(tp__clog_catalog_bound(c, 0, 100, &err), TP_EARG);
    cr_expect(strstr(err.message, "items bound") != NULL, "%s", err.message);
    cr_expect_eq(tp__clog_catalog_bound(c, 4, TP__CLOG_CATALOG_BYTES_MAX + 1u, &err), TP_EARG);
    cr_expect(strstr(err.message, "bytes bound") != NULL, "%s", err.message);
    a = cat_put(c, -1, S("shrink"), (tp__clog_item[]){DEL("b"), DEL("m")}, 2);
    cr_assert(!a.code && a.version == 4, "%s", a.msg);
    l = cat_load(c);
    cr_assert_eq(l->n, 2);
    long long bytes = catalog_bytes(port); /* "a" "1" and the 2048-byte field with "f" */
    cr_expect_eq(bytes, 2 + TP__CLOG_FIELD_MAX + 1);
    cr_assert_eq(tp__clog_catalog_bound(c, 3, (uint32_t)bytes + 10, &err), TP_OK, "%s",
                 err.message);
    a = cat_put(c, -1, S("third"), (tp__clog_item[]){ITEM("c", "3")}, 1);
    cr_expect(!a.code && a.version == 5, "up to the bound: %s", a.msg);
    int n0 = nmsg;
    a = cat_put(c, -1, S("fourth"), (tp__clog_item[]){ITEM("d", "4")}, 1);
    cr_expect_eq(a.code, TP_ETOOLARGE, "past the items bound: %d %s", a.code, a.msg);
    cr_expect(strstr(a.msg, "full") != NULL, "%s", a.msg);
    /* Replacing one and adding one in one put keeps the count: accepted. */
    a = cat_put(c, -1, S("swap"), (tp__clog_item[]){DEL("c"), ITEM("d", "4")}, 2);
    cr_expect(!a.code && a.version == 6, "%s", a.msg);
    a = cat_put(c, -1, S("fat"), (tp__clog_item[]){ITEM("d", "0123456789ab")}, 1);
    cr_expect_eq(a.code, TP_ETOOLARGE, "past the bytes bound: %s", a.msg);
    l = cat_load(c);
    cr_expect(l->version == 6 && l->n == 3 && has_body(l, S("d"), S("4")), "a full put wrote");
    /* Bounds lowered below what the catalog holds: shrinking still works, growing does not. */
    cr_assert_eq(tp__clog_catalog_bound(c, 1, 1, NULL), TP_OK);
    a = cat_put(c, -1, S("grow"), (tp__clog_item[]){ITEM("e", "5")}, 1);
    cr_expect_eq(a.code, TP_ETOOLARGE);
    a = cat_put(c, -1, S("less"), (tp__clog_item[]){DEL("d")}, 1);
    cr_expect(!a.code && a.version == 7, "%s", a.msg);
    /* Published: "swap" and "less", never a refused put. */
    cr_expect(run_until(&nmsg, n0 + 1, 5000));
    run_ms(100);
    int swap = 0, less = 0;
    for (int i = 0; i < nmsg; i++) {
        int64_t mv;
        const char *op;
        size_t opn;
        cr_assert_eq(tp__clog_catalog_decode(msgs[i].data, msgs[i].len, &mv, &op, &opn, NULL),
                     TP_OK);
        swap += mv == 6 && opn == 4 && !memcmp(op, "swap", 4);
        less += mv == 7 && opn == 4 && !memcmp(op, "less", 4);
        cr_expect(mv <= 7, "a refused put published");
    }
    cr_expect(swap == 1 && less == 1, "swap %d less %d", swap, less);
    tp__clog_stats st;
    tp__clog_stats_get(c, &st);
    cr_expect_eq(st.failed, 3, "the three full puts");
}

/* A key of the wrong type or a broken counter: the put fails before its first write. */
Test(clog, catalog_checks_before_writing)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    tp__clog *f = open_link(1, port);
    cr_assert_eq(tp__clog_catalog_subscribe(f, 1, NULL), TP_OK);
    cres a = cat_put(c, 0, S("seed"), (tp__clog_item[]){ITEM("a", "1")}, 1);
    cr_assert(!a.code && a.version == 1);
    run_ms(100);
    int n0 = nmsg;
    freeReplyObject(sync_cmd(port, "SET %b abc", S("tp:{%catalog}:v")));
    a = cat_put(c, -1, S("x"), (tp__clog_item[]){DEL("a"), ITEM("b", "2")}, 2);
    cr_expect_eq(a.code, TP_EINTERNAL);
    cr_expect(strstr(a.msg, "not a decimal") != NULL, "%s", a.msg);
    lres l = {0};
    cr_assert_eq(tp__clog_catalog_load(c, on_load, &l, NULL), TP_OK);
    cr_assert(run_until(&l.done, 1, 5000));
    cr_expect_eq(l.code, TP_EINTERNAL, "a load with a broken version");
    freeReplyObject(sync_cmd(port, "DEL %b", S("tp:{%catalog}:v")));
    freeReplyObject(sync_cmd(port, "DEL %b", S("tp:{%catalog}:bytes")));
    freeReplyObject(sync_cmd(port, "RPUSH %b 1", S("tp:{%catalog}:bytes")));
    a = cat_put(c, -1, S("x"), (tp__clog_item[]){DEL("a"), ITEM("b", "2")}, 2);
    cr_expect_eq(a.code, TP_EINTERNAL);
    cr_expect(strstr(a.msg, "WRONGTYPE") != NULL, "%s", a.msg);
    cr_expect_eq(sync_int(port, "HLEN %b", "tp:{%catalog}:items"), 1, "a failing put wrote");
    cr_expect_eq(sync_int(port, "HEXISTS %b a", "tp:{%catalog}:items"), 1);
    cr_expect_eq(sync_int(port, "EXISTS %b", "tp:{%catalog}:v"), 0);
    run_ms(100);
    cr_expect_leq(nmsg, n0 + 1);
    for (int i = 0; i < nmsg; i++) {
        int64_t mv;
        const char *op;
        size_t opn;
        cr_assert_eq(tp__clog_catalog_decode(msgs[i].data, msgs[i].len, &mv, &op, &opn, NULL),
                     TP_OK);
        cr_expect_eq(mv, 1, "a failing put published");
    }
}

Test(clog, catalog_cluster_three_masters, .timeout = 120)
{
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tpt_redisd_start(&servers[i], base, 0, 1), 0, "redis-server %d", i);
    cr_assert_eq(tpt_cluster_create(servers, 3, 0), 0, "the cluster did not form");
    /* Two nodes, each first connected to another master. */
    tp__clog *c[2] = {open_link(0, servers[0].port), open_link(1, servers[1].port)};
    /* The catalog's keys are on one master, in the slot of its tag. */
    cres a = cat_put(c[0], 0, S("seed"), (tp__clog_item[]){ITEM("t", "0")}, 1);
    cr_assert(!a.code && a.version == 1, "%s", a.msg);
    int pi = owner_of(S("tp:{%catalog}:items")), pv = owner_of(S("tp:{%catalog}:v")),
        pb = owner_of(S("tp:{%catalog}:bytes"));
    cr_expect(pi && pi == pv && pi == pb, "the catalog on one master: %d %d %d", pi, pv, pb);
    uint16_t slot = tp__redis_keyslot(S("%catalog"));
    cr_expect_eq(tp__redis_keyslot(S("tp:{%catalog}:items")), slot);
    cr_expect_eq(tp__redis_keyslot(S("tp:{%catalog}:bytes")), slot);

    /* Node 1 follows; both nodes put in turn at the version they last saw. */
    tp_error err = {0};
    cr_assert_eq(tp__clog_catalog_subscribe(c[1], 1, &err), TP_OK, "%s", err.message);
    int64_t v = 1;
    while (nmsg == 0 && v < 100) {
        a = cat_put(c[0], v, S("warm"), NULL, 0);
        cr_assert(!a.code && !a.conflict, "%s", a.msg);
        v = a.version;
        run_ms(20);
    }
    cr_assert_gt(nmsg, 0, "no message crossed the cluster");
    int first = nmsg;
    for (int i = 0; i < 10; i++) {
        char f[8];
        snprintf(f, sizeof f, "n%d", i);
        tp__clog_item it = {f, strlen(f), "x", 1};
        a = cat_put(c[i % 2], v, f, strlen(f), &it, 1);
        cr_assert(!a.code && !a.conflict && a.version == v + 1, "%s", a.msg);
        v = a.version;
        /* The other node, at a stale version, is refused. */
        a = cat_put(c[1 - i % 2], v - 1, S("late"), NULL, 0);
        cr_expect(!a.code && a.conflict == 1 && a.version == v);
    }
    cr_assert(run_until(&nmsg, first + 10, 5000), "%d messages of 10", nmsg - first);
    for (int i = 0; i < 10; i++) {
        int64_t mv;
        const char *op;
        size_t n;
        cr_assert_eq(
            tp__clog_catalog_decode(msgs[first + i].data, msgs[first + i].len, &mv, &op, &n, &err),
            TP_OK, "%s", err.message);
        cr_expect_eq(mv, v - 9 + i);
        cr_expect(n == 2 && op[0] == 'n' && op[1] == '0' + i);
    }
    lres *l0 = cat_load(c[0]);
    int64_t v0 = l0->version;
    size_t n0 = l0->n;
    lres *l1 = cat_load(c[1]);
    cr_expect(v0 == v && l1->version == v && n0 == 11 && l1->n == 11);
    for (int i = 0; i < 2; i++) {
        tp__clog_stats st;
        tp__clog_stats_get(c[i], &st);
        cr_expect_eq(st.redirects, 0, "node %d: a redirection", i);
        cr_expect_eq(st.failed, 0, "node %d: a failed call", i);
    }
}

/* The whole catalog's real maxima: filled to TP__CLOG_CATALOG_ITEMS_MAX items, one more is
 * refused; a load returns them all in one reply; then the byte bound on its own. */
Test(clog, catalog_maxima, .timeout = 120)
{
    int port = start1();
    tp__clog *c = open_link(0, port);
    enum { PER = 1000 };
    static char fields[PER][16];
    static tp__clog_item it[PER];
    int64_t v = 0;
    for (unsigned p = 0; p < TP__CLOG_CATALOG_ITEMS_MAX / PER; p++) {
        for (int i = 0; i < PER; i++) {
            int n = snprintf(fields[i], sizeof fields[i], "m%u", p * PER + (unsigned)i);
            it[i] = (tp__clog_item){fields[i], (size_t)n, "", 0};
        }
        cres a = cat_put(c, v, S("fill"), it, PER);
        cr_assert(!a.code && !a.conflict, "put %u: %s", p, a.msg);
        v = a.version;
    }
    cr_expect_eq(sync_int(port, "HLEN %b", "tp:{%catalog}:items"), TP__CLOG_CATALOG_ITEMS_MAX);
    cres a = cat_put(c, -1, S("one more"), (tp__clog_item[]){ITEM("x", "")}, 1);
    cr_expect_eq(a.code, TP_ETOOLARGE, "%s", a.msg);
    cr_expect(strstr(a.msg, "full") != NULL, "%s", a.msg);
    a = cat_put(c, -1, S("swap"), (tp__clog_item[]){DEL("m0"), ITEM("x", "")}, 2);
    cr_expect(!a.code && a.version == v + 1, "%s", a.msg);
    lres *l = cat_load(c);
    cr_expect_eq(l->code, 0, "%s", l->msg);
    cr_expect_eq(l->n, TP__CLOG_CATALOG_ITEMS_MAX);
    cr_expect_eq(l->version, v + 1);

    /* Bytes: empty the catalog, then fill it with 1 MiB bodies to the byte bound. */
    freeReplyObject(sync_cmd(port, "DEL %b", S("tp:{%catalog}:items")));
    freeReplyObject(sync_cmd(port, "DEL %b", S("tp:{%catalog}:bytes")));
    char *body = calloc(1, TP__CLOG_BODY_MAX);
    cr_assert(body);
    /* Single-byte fields with bodies of up to 1 MiB, seven a put (one put carries at most
     * 8 MiB), the last body shortened to end exactly at the bound. */
    size_t left = TP__CLOG_CATALOG_BYTES_MAX;
    int k = 0;
    while (left) {
        tp__clog_item b[7];
        int m = 0;
        for (; m < 7 && left; m++, k++) {
            size_t bl = left - 1 < TP__CLOG_BODY_MAX ? left - 1 : TP__CLOG_BODY_MAX;
            b[m] = (tp__clog_item){&"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[k], 1,
                                   body, bl};
            left -= 1 + bl;
        }
        a = cat_put(c, -1, S("fat"), b, (size_t)m);
        cr_assert(!a.code, "put %d: %s", k, a.msg);
    }
    cr_expect_eq(left, 0);
    cr_expect_eq(catalog_bytes(port), (long long)TP__CLOG_CATALOG_BYTES_MAX);
    a = cat_put(c, -1, S("one byte more"), (tp__clog_item[]){ITEM("z", "")}, 1);
    cr_expect_eq(a.code, TP_ETOOLARGE, "%s", a.msg);
    cr_expect_eq(sync_int(port, "HLEN %b", "tp:{%catalog}:items"), k);
    free(body);
}
