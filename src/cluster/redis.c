/*
 * The Redis link (redis.h, docs/internals/cluster-redis.md).
 *
 * One `node` is one hiredis async context to one address, attached to the loop by hiredis's
 * libuv adapter. A standalone server is one node (the URL's); a Redis Cluster is one node
 * per master, found by CLUSTER SLOTS, plus the URL's. Pub/sub has a node of its own.
 *
 * Exactly once: hiredis calls each command's callback once, with the reply or with NULL when
 * the context goes away (connection lost, connect failed, or freed by us), and each `cmd`
 * reaches the caller's callback from that call only, or is sent again (redirection,
 * NOSCRIPT) and waits for the next one. A node's commands in flight are kept in a list, oldest
 * first, for the command timeout.
 *
 * Freeing from inside a callback: hiredis defers its own free of a context whose callback is
 * running, and then calls the remaining callbacks with NULL; they still read the link and the
 * node. So tp__redis_free only closes: the memory goes in the close callbacks of the link's
 * libuv timers, which the loop runs after the current callback stack has returned.
 */
#include "cluster/redis.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <openssl/evp.h>

#include "util/alloc.h"
#include "util/error.h"

#define SLOTS 16384
#define MAX_REDIRECTS 5

enum { NODE_MAIN, NODE_SUB };
enum { MODE_UNKNOWN = -1, MODE_STANDALONE = 0, MODE_CLUSTER = 1 };

typedef struct node node;
typedef struct cmd cmd;

struct cmd {
    tp__redis *r;
    node *node; /* where it waits for its reply, or NULL */
    cmd *prev, *next;
    tp__redis_reply_cb cb;
    void *user;
    tp__redis_script *script; /* argv[0] and argv[1] are EVALSHA sha, or EVAL body */
    int eval;
    int redirects;
    int argc;
    const char **argv;
    size_t *argvlen;
    uint64_t sent_ms;
};

struct node {
    tp__redis *r;
    node *next;
    int kind;
    char host[256];
    int port; /* 0: the URL's unix socket */
    char name[300];
    redisAsyncContext *ac; /* NULL while down */
    int ready;             /* AUTH, SELECT and PING answered */
    int hs_pending;
    int hs_seen;
    const char *hs_names[3];
    int ever_ready;
    uint32_t attempt;  /* failures since it was last ready */
    uint64_t retry_at; /* loop time of the next attempt while down */
    uint32_t owns;     /* slots of the map it serves */
    uv_timer_t timer;  /* connect timeout while connecting, backoff while down */
    cmd *head, *tail;  /* in flight, oldest first */
    char reason[256];  /* why it was last lost */
    uint32_t subs_pending;
    int resub_notify;
};

typedef struct chan {
    char *name;
    size_t len;
} chan;

struct tp__redis_script {
    tp__redis_script *next;
    char sha[41];
    char *body;
    size_t len;
};

struct tp__redis {
    uv_loop_t *loop;
    tp__redis_config cfg;
    tp__redis_url url;
    node *nodes;
    node *seed;
    node *sub;
    int mode;
    int up;
    int refreshing, refresh_again;
    uint32_t sub_rotate;
    uv_timer_t tick;
    int closing;
    int handles_open;
    uint32_t inflight;
    uint64_t rng;
    tp__redis_stats st;
    tp__redis_script *scripts;
    chan *chans;
    size_t nchans, capchans;
    node *slots[SLOTS];
};

/* ---- Addresses ----------------------------------------------------------------------- */

static int
decode(const char *s, size_t n, char *dst, size_t cap, const char *field, tp_error *err)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? tp__hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < n ? tp__hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return tp__error_set(err, TP_EARG, "redis url: %s: bad percent escape", field);
            c = hi * 16 + lo;
            if (c == 0)
                return tp__error_set(err, TP_EARG, "redis url: %s: contains %%00", field);
            i += 2;
        }
        if (o + 1 >= cap)
            return tp__error_set(err, TP_EARG, "redis url: %s: longer than %zu bytes", field,
                                 cap - 1);
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return TP_OK;
}

static int
parse_uint(const char *s, size_t n, long max, long *out)
{
    long v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

int
tp__redis_url_parse(const char *url, tp__redis_url *out, tp_error *err)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || !*url)
        return tp__error_set(err, TP_EARG, "redis url: empty");
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        size_t n = strlen(p);
        if (p[0] != '/')
            return tp__error_set(err, TP_EARG,
                                 "redis url: path: a unix socket is unix:///absolute/path");
        if (n >= sizeof out->path)
            return tp__error_set(err, TP_EARG, "redis url: path: longer than %zu bytes",
                                 sizeof out->path - 1);
        memcpy(out->path, p, n + 1);
        out->port = 0;
        return TP_OK;
    }
    if (strncmp(url, "redis://", 8) != 0)
        /* The URL is not quoted: it may hold a password. */
        return tp__error_set(err, TP_EARG, "redis url: scheme: expected redis:// or unix://");
    const char *a = url + 8;
    const char *end = a + strcspn(a, "/?#");
    const char *at = NULL;
    for (const char *q = a; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(a, ':', (size_t)(at - a));
        if (!colon)
            return tp__error_set(err, TP_EARG,
                                 "redis url: password: user info must be [user]:password");
        int rc = decode(a, (size_t)(colon - a), out->user, sizeof out->user, "user", err);
        if (rc != TP_OK)
            return rc;
        rc = decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof out->password,
                    "password", err);
        if (rc != TP_OK)
            return rc;
        if (!out->password[0])
            return tp__error_set(err, TP_EARG, "redis url: password: empty");
        out->has_password = 1;
        a = at + 1;
    }
    const char *hs, *he, *p;
    if (*a == '[') {
        const char *close = memchr(a, ']', (size_t)(end - a));
        if (!close)
            return tp__error_set(err, TP_EARG, "redis url: host: '[' without ']'");
        hs = a + 1;
        he = close;
        p = close + 1;
    } else {
        const char *colon = memchr(a, ':', (size_t)(end - a));
        hs = a;
        he = colon ? colon : end;
        p = he;
    }
    if (he == hs)
        return tp__error_set(err, TP_EARG, "redis url: host: empty");
    if ((size_t)(he - hs) >= sizeof out->host)
        return tp__error_set(err, TP_EARG, "redis url: host: longer than %zu bytes",
                             sizeof out->host - 1);
    memcpy(out->host, hs, (size_t)(he - hs));
    out->host[he - hs] = '\0';
    if (p < end) {
        long port;
        if (*p != ':')
            return tp__error_set(err, TP_EARG, "redis url: host: unexpected '%c' after it", *p);
        if (parse_uint(p + 1, (size_t)(end - p - 1), 65535, &port) != 0 || port == 0)
            return tp__error_set(err, TP_EARG,
                                 "redis url: port: '%.*s' is not a number from 1 to 65535",
                                 (int)(end - p - 1 > 16 ? 16 : end - p - 1), p + 1);
        out->port = (int)port;
    }
    if (strpbrk(end, "?#"))
        return tp__error_set(err, TP_EARG, "redis url: query: parameters are not supported");
    if (*end == '/') {
        const char *d = end + 1;
        size_t n = strlen(d);
        long db = 0;
        if (n > 0 && parse_uint(d, n, 1000000, &db) != 0)
            return tp__error_set(err, TP_EARG,
                                 "redis url: db: '%.16s' is not a number from 0 to 1000000", d);
        out->db = (int)db;
    }
    return TP_OK;
}

uint16_t
tp__redis_keyslot(const char *key, size_t len)
{
    /* The hash tag: the bytes between the first '{' and the first '}' after it, when there
     * is at least one (the cluster specification's HASH_SLOT). */
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - open - 1);
        }
    }
    /* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection. */
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc = (uint16_t)(crc ^ ((unsigned char)key[i] << 8));
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return (uint16_t)(crc & (SLOTS - 1));
}

/* ---- Small helpers ------------------------------------------------------------------- */

static uint64_t
now_ms(tp__redis *r)
{
    return uv_now(r->loop);
}

static uint32_t
rnd(tp__redis *r)
{
    /* xorshift64: jitter only, no need for more. */
    uint64_t x = r->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->rng = x;
    return (uint32_t)(x >> 32);
}

static void
emit(tp__redis *r, tp__redis_event ev, const char *reason, uint32_t retry_ms)
{
    if (r->cfg.on_state && !r->closing)
        r->cfg.on_state(ev, reason, retry_ms, r->cfg.user);
}

static const char *
ac_reason(const redisAsyncContext *ac, const node *n)
{
    if (ac && ac->err && ac->errstr && ac->errstr[0])
        return ac->errstr;
    return n->reason[0] ? n->reason : "connection lost";
}

static void node_connect(node *n);
static void node_lost(node *n, const char *reason, int free_ac);
static void map_refresh(tp__redis *r, node *via);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- Link state ---------------------------------------------------------------------- */

static int
link_is_up(tp__redis *r)
{
    if (r->mode == MODE_STANDALONE)
        return r->seed->ready;
    if (r->mode != MODE_CLUSTER || r->st.masters == 0)
        return 0;
    for (node *n = r->nodes; n; n = n->next)
        if (n->kind == NODE_MAIN && n->owns > 0 && !n->ready)
            return 0;
    return 1;
}

static void
link_update(tp__redis *r, const char *reason)
{
    int up = link_is_up(r);
    if (up == r->up || r->closing)
        return;
    r->up = up;
    emit(r, up ? TP__REDIS_UP : TP__REDIS_DOWN, reason, 0);
}

/* ---- Commands ------------------------------------------------------------------------ */

static void
cmd_unlink(cmd *c)
{
    node *n = c->node;
    if (!n)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        n->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        n->tail = c->prev;
    c->prev = c->next = NULL;
    c->node = NULL;
}

static void cmd_done(cmd *c, const redisReply *reply, int code, const char *fmt, ...)
    TP__PRINTF(4, 5);

/* cmd_done ends a command: frees it, then calls its callback (so that the callback may do
 * anything, free the link included). */
static void
cmd_done(cmd *c, const redisReply *reply, int code, const char *fmt, ...)
{
    tp__redis *r = c->r;
    tp__redis_reply_cb cb = c->cb;
    void *user = c->user;
    tp_error e;
    tp__free(c);
    r->inflight--;
    if (!reply) {
        va_list ap;
        va_start(ap, fmt);
        e.code = code;
        vsnprintf(e.message, sizeof e.message, fmt, ap);
        va_end(ap);
        r->st.failed++;
        cb(NULL, &e, user);
    } else {
        cb(reply, NULL, user);
    }
}

static void
on_tick(uv_timer_t *t)
{
    tp__redis *r = t->data;
    if (r->closing)
        return;
    if (r->inflight == 0) {
        uv_timer_stop(&r->tick);
        return;
    }
    uint64_t now = now_ms(r);
    for (node *n = r->nodes; n && !r->closing; n = n->next) {
        if (n->head && now - n->head->sent_ms >= r->cfg.command_timeout_ms) {
            char why[96];
            snprintf(why, sizeof why, "no reply in %u ms", r->cfg.command_timeout_ms);
            r->st.timeouts++;
            node_lost(n, why, 1);
        }
    }
}

static int
cmd_send(cmd *c, node *n, int asking, tp_error *err)
{
    tp__redis *r = c->r;
    if (!n->ac) {
        uint64_t now = now_ms(r);
        return tp__error_set(err, TP_ECLOSED, "redis: %s is down (%s); next attempt in %llu ms",
                             n->name, n->reason[0] ? n->reason : "not connected",
                             (unsigned long long)(n->retry_at > now ? n->retry_at - now : 0));
    }
    if (c->script) {
        c->argv[0] = c->eval ? "EVAL" : "EVALSHA";
        c->argvlen[0] = c->eval ? 4 : 7;
        c->argv[1] = c->eval ? c->script->body : c->script->sha;
        c->argvlen[1] = c->eval ? c->script->len : 40;
    }
    if (asking && redisAsyncCommand(n->ac, NULL, NULL, "ASKING") != REDIS_OK)
        return tp__error_set(err, TP_ECLOSED, "redis: %s is closing", n->name);
    if (redisAsyncCommandArgv(n->ac, on_reply, c, c->argc, c->argv, c->argvlen) != REDIS_OK)
        return tp__error_set(err, TP_ECLOSED, "redis: %s is closing", n->name);
    c->node = n;
    c->prev = n->tail;
    c->next = NULL;
    if (n->tail)
        n->tail->next = c;
    else
        n->head = c;
    n->tail = c;
    c->sent_ms = now_ms(r);
    if (!uv_is_active((uv_handle_t *)&r->tick)) {
        uint64_t every = r->cfg.command_timeout_ms / 4;
        uv_timer_start(&r->tick, on_tick, every < 10 ? 10 : every, every < 10 ? 10 : every);
    }
    return TP_OK;
}

static node *node_get(tp__redis *r, const char *host, size_t hostlen, int port);

static void
count_masters(tp__redis *r)
{
    r->st.masters = 0;
    for (node *n = r->nodes; n; n = n->next)
        if (n->kind == NODE_MAIN && n->owns)
            r->st.masters++;
}

/* route picks the node for a slot (-1: no key). */
static node *
route(tp__redis *r, int slot)
{
    if (r->mode != MODE_CLUSTER)
        return r->seed;
    if (slot >= 0 && r->slots[slot])
        return r->slots[slot];
    if (r->seed->ac)
        return r->seed;
    for (node *n = r->nodes; n; n = n->next)
        if (n->kind == NODE_MAIN && n->ready)
            return n;
    return r->seed;
}

/* redirect follows "MOVED slot host:port" or "ASK slot host:port" from node `from`. Returns
 * 1 when the reply was one (and the command is sent again or ended), 0 when not. */
static int
redirect(cmd *c, node *from, const redisReply *reply)
{
    tp__redis *r = c->r;
    int ask = 0;
    const char *s = reply->str;
    if (reply->len > 6 && strncmp(s, "MOVED ", 6) == 0)
        s += 6;
    else if (reply->len > 4 && strncmp(s, "ASK ", 4) == 0) {
        s += 4;
        ask = 1;
    } else
        return 0;
    char *endp;
    errno = 0;
    unsigned long slot = strtoul(s, &endp, 10);
    const char *addr = endp + 1;
    const char *colon = *endp == ' ' ? strrchr(addr, ':') : NULL;
    long port;
    if (errno || slot >= SLOTS || !colon ||
        parse_uint(colon + 1, strlen(colon + 1), 65535, &port) != 0) {
        cmd_done(c, NULL, TP_EINTERNAL, "redis: unreadable redirection '%.100s'", reply->str);
        return 1;
    }
    if (++c->redirects > MAX_REDIRECTS) {
        cmd_done(c, NULL, TP_EINTERNAL, "redis: more than %d redirections, last '%.100s'",
                 MAX_REDIRECTS, reply->str);
        return 1;
    }
    /* An empty host (Redis 7 when the endpoint is unknown): the host of the node asked. */
    size_t hostlen = (size_t)(colon - addr);
    if (hostlen == 0 && from) {
        addr = from->host;
        hostlen = strlen(from->host);
    }
    node *n = node_get(r, addr, hostlen, (int)port);
    if (!n) {
        cmd_done(c, NULL, TP_ENOMEM, "redis: out of memory following '%.100s'", reply->str);
        return 1;
    }
    if (ask) {
        r->st.ask++;
    } else {
        /* The slot moved for good: point it at its new master now, and read the whole map
         * again (other slots may have moved with it). */
        r->st.moved++;
        if (r->slots[slot] != n) {
            if (r->slots[slot])
                r->slots[slot]->owns--;
            n->owns++;
            r->slots[slot] = n;
            count_masters(r);
        }
        map_refresh(r, NULL);
    }
    tp_error e;
    if (cmd_send(c, n, ask, &e) != TP_OK)
        cmd_done(c, NULL, e.code, "%s", e.message);
    return 1;
}

static void
on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    cmd *c = privdata;
    redisReply *reply = reply_;
    node *n = c->node;
    tp__redis *r = c->r;
    cmd_unlink(c);
    if (r->closing) {
        cmd_done(c, NULL, TP_ECLOSED, "redis: link freed");
        return;
    }
    if (!reply) {
        /* hiredis is freeing the context: mark the node lost before the first of its
         * commands reports, so that the callbacks see the link as it is. */
        if (n && n->ac == ac)
            node_lost(n, ac_reason(ac, n), 0);
        cmd_done(c, NULL, TP_ECLOSED, "redis: %s: %s", n ? n->name : "?",
                 n ? n->reason : "connection lost");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (redirect(c, n, reply))
            return;
        if (c->script && !c->eval && reply->len >= 8 && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* The script cache is empty (restart, SCRIPT FLUSH): EVAL runs the body and
             * caches it again. Nothing ran on NOSCRIPT, so sending again is safe. */
            tp_error e;
            c->eval = 1;
            r->st.noscript++;
            if (!n || cmd_send(c, n, 0, &e) != TP_OK)
                cmd_done(c, NULL, TP_ECLOSED, "redis: %s lost before EVAL", n ? n->name : "node");
            return;
        }
    }
    cmd_done(c, reply, TP_OK, "%s", "");
}

static cmd *
cmd_new(tp__redis *r, int argc, const char *const *argv, const size_t *argvlen, int first,
        tp_error *err)
{
    /* One block: the cmd, its argv and argvlen arrays, then the bytes of each argument.
     * Arguments before `first` are filled later (a script's EVALSHA and sha). */
    size_t bytes = sizeof(cmd) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = first; i < argc; i++) {
        if (argvlen[i] > SIZE_MAX / 2 - bytes) {
            tp__error_set(err, TP_ETOOLARGE, "redis: argument %d too large", i);
            return NULL;
        }
        bytes += argvlen[i] + 1;
    }
    cmd *c = tp__malloc(bytes);
    if (!c) {
        tp__error_set(err, TP_ENOMEM, "redis: out of memory for a command");
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->r = r;
    c->argc = argc;
    c->argv = (const char **)(c + 1);
    c->argvlen = (size_t *)(c->argv + argc);
    char *p = (char *)(c->argvlen + argc);
    for (int i = first; i < argc; i++) {
        if (argvlen[i]) /* an empty argument may come as NULL */
            memcpy(p, argv[i], argvlen[i]);
        p[argvlen[i]] = '\0';
        c->argv[i] = p;
        c->argvlen[i] = argvlen[i];
        p += argvlen[i] + 1;
    }
    return c;
}

static int
submit(tp__redis *r, cmd *c, int slot, tp__redis_reply_cb cb, void *user, tp_error *err)
{
    c->cb = cb;
    c->user = user;
    int rc = cmd_send(c, route(r, slot), 0, err);
    if (rc != TP_OK) {
        tp__free(c);
        r->st.refused++;
        return rc;
    }
    r->inflight++;
    r->st.commands++;
    return TP_OK;
}

static int
admit(tp__redis *r, tp__redis_reply_cb cb, tp_error *err)
{
    if (!r)
        return tp__error_set(err, TP_EARG, "redis: no link");
    if (r->closing)
        return tp__error_set(err, TP_ECLOSED, "redis: link freed");
    if (!cb)
        return tp__error_set(err, TP_EARG, "redis: no callback");
    if (r->inflight >= r->cfg.max_inflight) {
        r->st.refused++;
        return tp__error_set(err, TP_ETOOLARGE,
                             "redis: %u commands in flight, the most max_inflight allows",
                             r->cfg.max_inflight);
    }
    return TP_OK;
}

int
tp__redis_command(tp__redis *r, int argc, const char *const *argv, const size_t *argvlen,
                  int key_index, tp__redis_reply_cb cb, void *user, tp_error *err)
{
    int rc = admit(r, cb, err);
    if (rc != TP_OK)
        return rc;
    if (argc < 1 || !argv || !argvlen)
        return tp__error_set(err, TP_EARG, "redis: argv: no command");
    if (key_index >= argc || key_index < -1)
        return tp__error_set(err, TP_EARG, "redis: key_index: %d is not an argument", key_index);
    cmd *c = cmd_new(r, argc, argv, argvlen, 0, err);
    if (!c)
        return err ? err->code : TP_ENOMEM;
    int slot = key_index >= 0 ? tp__redis_keyslot(argv[key_index], argvlen[key_index]) : -1;
    return submit(r, c, slot, cb, user, err);
}

/* ---- Scripts ------------------------------------------------------------------------- */

tp__redis_script *
tp__redis_script_new(tp__redis *r, const char *lua, size_t len, tp_error *err)
{
    if (!r || r->closing) {
        tp__error_set(err, TP_ECLOSED, "redis: link freed");
        return NULL;
    }
    tp__redis_script *s = tp__calloc(1, sizeof *s);
    char *body = s ? tp__malloc(len + 1) : NULL;
    if (!body) {
        tp__free(s);
        tp__error_set(err, TP_ENOMEM, "redis: out of memory for a script");
        return NULL;
    }
    memcpy(body, lua, len);
    body[len] = '\0';
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(body, len, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        tp__free(body);
        tp__free(s);
        tp__error_set(err, TP_EINTERNAL, "redis: SHA-1 of a script failed");
        return NULL;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
    s->body = body;
    s->len = len;
    s->next = r->scripts;
    r->scripts = s;
    return s;
}

const char *
tp__redis_script_sha(const tp__redis_script *s)
{
    return s->sha;
}

int
tp__redis_script_call(tp__redis *r, tp__redis_script *s, int nkeys, const char *const *keys,
                      const size_t *keylens, int nargs, const char *const *args,
                      const size_t *arglens, tp__redis_reply_cb cb, void *user, tp_error *err)
{
    int rc = admit(r, cb, err);
    if (rc != TP_OK)
        return rc;
    if (!s || nkeys < 0 || nargs < 0 || (nkeys && (!keys || !keylens)) ||
        (nargs && (!args || !arglens)) || nkeys > 100000 || nargs > 100000)
        return tp__error_set(err, TP_EARG, "redis script: bad script, keys or args");
    /* All keys of one call in one slot: what a cluster requires, checked everywhere but on
     * a server known to be one Redis (a caller that uses keys of several slots there asks
     * tp__redis_standalone first), so that code that passes on one server passes on a
     * cluster. */
    int slot = -1;
    for (int i = 0; i < nkeys && r->mode != MODE_STANDALONE; i++) {
        int k = tp__redis_keyslot(keys[i], keylens[i]);
        if (slot < 0)
            slot = k;
        else if (k != slot)
            return tp__error_set(err, TP_EARG,
                                 "redis script: keys[0] (slot %d) and keys[%d] (slot %d) are "
                                 "in different slots: give them one {hash tag}",
                                 slot, i, k);
    }
    int argc = 3 + nkeys + nargs;
    const char **argv = tp__calloc((size_t)argc, sizeof *argv);
    size_t *argvlen = tp__calloc((size_t)argc, sizeof *argvlen);
    char num[24];
    if (!argv || !argvlen) {
        tp__free(argv);
        tp__free(argvlen);
        return tp__error_set(err, TP_ENOMEM, "redis: out of memory for a script call");
    }
    int numlen = snprintf(num, sizeof num, "%d", nkeys);
    argv[2] = num;
    argvlen[2] = (size_t)numlen;
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        argvlen[3 + i] = keylens[i];
    }
    for (int i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        argvlen[3 + nkeys + i] = arglens[i];
    }
    cmd *c = cmd_new(r, argc, argv, argvlen, 2, err);
    tp__free(argv);
    tp__free(argvlen);
    if (!c)
        return err ? err->code : TP_ENOMEM;
    c->script = s;
    return submit(r, c, slot, cb, user, err);
}

/* ---- Cluster slot map ---------------------------------------------------------------- */

static void
on_slots(redisAsyncContext *ac, void *reply_, void *privdata)
{
    node *via = privdata;
    tp__redis *r = via->r;
    redisReply *reply = reply_;
    r->refreshing = 0;
    if (r->closing)
        return;
    if (!reply) {
        if (via->ac == ac)
            node_lost(via, ac_reason(ac, via), 0);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (r->mode == MODE_UNKNOWN && strstr(reply->str, "cluster support disabled")) {
            r->mode = MODE_STANDALONE;
            r->st.cluster = 0;
            link_update(r, "ready");
        } else if (r->mode == MODE_UNKNOWN && via->ac == ac) {
            char why[256];
            snprintf(why, sizeof why, "CLUSTER SLOTS: %.200s", reply->str);
            node_lost(via, why, 1);
        }
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY)
        return;
    if (r->mode == MODE_UNKNOWN && via->kind == NODE_MAIN && r->url.db != 0) {
        node_lost(via, "SELECT: a Redis Cluster has db 0 only", 1);
        return;
    }
    /* Read the whole reply before touching the map: a malformed one changes nothing. */
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER || e->element[0]->integer < 0 ||
            e->element[1]->integer >= SLOTS || e->element[0]->integer > e->element[1]->integer)
            return;
    }
    for (int s = 0; s < SLOTS; s++)
        r->slots[s] = NULL;
    for (node *n = r->nodes; n; n = n->next)
        n->owns = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        redisReply *m = e->element[2];
        const char *host = m->element[0]->str;
        size_t hostlen = m->element[0]->len;
        /* An empty or "?" endpoint: the node that answered (its own address unknown). */
        if (hostlen == 0 || (hostlen == 1 && host[0] == '?')) {
            host = via->host;
            hostlen = strlen(via->host);
        }
        node *n = node_get(r, host, hostlen, (int)m->element[1]->integer);
        if (!n || r->closing)
            return;
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            r->slots[s] = n;
        n->owns += (uint32_t)(e->element[1]->integer - e->element[0]->integer + 1);
    }
    r->mode = MODE_CLUSTER;
    r->st.cluster = 1;
    r->st.map_updates++;
    count_masters(r);
    link_update(r, "cluster slot map read");
    if (r->refresh_again && !r->closing) {
        r->refresh_again = 0;
        map_refresh(r, NULL);
    }
}

/* map_refresh reads CLUSTER SLOTS on `via` (NULL: any ready master), one read at a time. */
static void
map_refresh(tp__redis *r, node *via)
{
    if (r->closing)
        return;
    if (r->refreshing) {
        r->refresh_again = 1;
        return;
    }
    if (!via) {
        for (node *n = r->nodes; n && !via; n = n->next)
            if (n->kind == NODE_MAIN && n->ready)
                via = n;
        if (!via)
            return; /* the next node to become ready reads it */
    }
    if (!via->ac || redisAsyncCommand(via->ac, on_slots, via, "CLUSTER SLOTS") != REDIS_OK)
        return;
    r->refreshing = 1;
}

/* ---- Pub/sub ------------------------------------------------------------------------- */

static void
on_sub(redisAsyncContext *ac, void *reply_, void *privdata)
{
    node *n = privdata;
    tp__redis *r = n->r;
    redisReply *reply = reply_;
    if (r->closing)
        return;
    if (!reply) {
        if (n->ac == ac)
            node_lost(n, ac_reason(ac, n), 0);
        return;
    }
    if (n->ac != ac || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        if (r->cfg.on_message)
            r->cfg.on_message(reply->element[1]->str, reply->element[1]->len,
                              reply->element[2]->str, reply->element[2]->len, r->cfg.user);
    } else if (strcmp(kind, "subscribe") == 0 && n->subs_pending > 0) {
        if (--n->subs_pending == 0 && n->resub_notify) {
            n->resub_notify = 0;
            if (r->cfg.on_resubscribed)
                r->cfg.on_resubscribed(r->cfg.user);
        }
    }
}

static int
sub_send(node *n, const char *verb, const chan *list, size_t count)
{
    size_t argc = count + 1;
    const char **argv = tp__calloc(argc, sizeof *argv);
    size_t *argvlen = tp__calloc(argc, sizeof *argvlen);
    int rc = REDIS_ERR;
    if (argv && argvlen) {
        argv[0] = verb;
        argvlen[0] = strlen(verb);
        for (size_t i = 0; i < count; i++) {
            argv[i + 1] = list[i].name;
            argvlen[i + 1] = list[i].len;
        }
        rc = redisAsyncCommandArgv(n->ac, on_sub, n, (int)argc, argv, argvlen);
    }
    tp__free(argv);
    tp__free(argvlen);
    return rc;
}

static size_t
chan_find(tp__redis *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->nchans; i++)
        if (r->chans[i].len == len && memcmp(r->chans[i].name, name, len) == 0)
            return i;
    return (size_t)-1;
}

int
tp__redis_subscribe(tp__redis *r, const char *channel, size_t len, tp_error *err)
{
    if (!r || r->closing)
        return tp__error_set(err, TP_ECLOSED, "redis: link freed");
    if (!channel || len == 0)
        return tp__error_set(err, TP_EARG, "redis subscribe: channel: empty");
    if (chan_find(r, channel, len) != (size_t)-1)
        return TP_OK;
    if (r->nchans == r->capchans) {
        size_t cap = r->capchans ? r->capchans * 2 : 8;
        chan *c = tp__reallocarray(r->chans, cap, sizeof *c);
        if (!c)
            return tp__error_set(err, TP_ENOMEM, "redis subscribe: out of memory");
        r->chans = c;
        r->capchans = cap;
    }
    char *name = tp__malloc(len + 1);
    if (!name)
        return tp__error_set(err, TP_ENOMEM, "redis subscribe: out of memory");
    memcpy(name, channel, len);
    name[len] = '\0';
    if (!r->sub) {
        node *n = tp__calloc(1, sizeof *n);
        if (!n) {
            tp__free(name);
            return tp__error_set(err, TP_ENOMEM, "redis subscribe: out of memory");
        }
        n->r = r;
        n->kind = NODE_SUB;
        memcpy(n->host, r->seed->host, sizeof n->host);
        n->port = r->seed->port;
        snprintf(n->name, sizeof n->name, "pub/sub %.280s", r->seed->name);
        uv_timer_init(r->loop, &n->timer);
        n->timer.data = n;
        r->handles_open++;
        n->next = r->nodes;
        r->nodes = n;
        r->sub = n;
        r->chans[r->nchans++] = (chan){name, len};
        node_connect(n);
        return TP_OK;
    }
    r->chans[r->nchans++] = (chan){name, len};
    /* While connecting, node_ready subscribes the whole set. */
    if (r->sub->ready && sub_send(r->sub, "SUBSCRIBE", &r->chans[r->nchans - 1], 1) != REDIS_OK)
        node_lost(r->sub, "SUBSCRIBE could not be sent", 1);
    return TP_OK;
}

int
tp__redis_unsubscribe(tp__redis *r, const char *channel, size_t len, tp_error *err)
{
    if (!r || r->closing)
        return tp__error_set(err, TP_ECLOSED, "redis: link freed");
    size_t i = chan_find(r, channel, len);
    if (i == (size_t)-1)
        return tp__error_set(err, TP_ENOTFOUND, "redis unsubscribe: channel: not subscribed");
    chan c = r->chans[i];
    r->chans[i] = r->chans[--r->nchans];
    if (r->sub && r->sub->ready)
        sub_send(r->sub, "UNSUBSCRIBE", &c, 1);
    tp__free(c.name);
    return TP_OK;
}

/* ---- Connections --------------------------------------------------------------------- */

/* hiredis 0.14.1's libuv adapter drops poll errors: libuv reports a refused connect or a
 * reset as status < 0 and stops the handle, and the adapter's callback returns, so the
 * context waits forever. Upstream fixed it ("Fix errors not propagating properly with
 * libuv.h", 9ce15c4) by handling the events it was waiting for, which find the error
 * themselves; we wrap the adapter's hooks so that every uv_poll_start uses the same fix. */
static void
poll_cb(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void
poll_restart(void *privdata)
{
    redisLibuvEvents *p = privdata;
    if (p->events)
        uv_poll_start(&p->handle, p->events, poll_cb);
}

static void
ev_add_read(void *privdata)
{
    redisLibuvAddRead(privdata);
    poll_restart(privdata);
}

static void
ev_del_read(void *privdata)
{
    redisLibuvDelRead(privdata);
    poll_restart(privdata);
}

static void
ev_add_write(void *privdata)
{
    redisLibuvAddWrite(privdata);
    poll_restart(privdata);
}

static void
ev_del_write(void *privdata)
{
    redisLibuvDelWrite(privdata);
    poll_restart(privdata);
}

static uint32_t
backoff(node *n)
{
    /* Doubling from backoff_min_ms, capped at backoff_max_ms, with "equal jitter": half the
     * delay fixed, half random, so that nodes that lost Redis together do not all come
     * back in the same millisecond, and no delay is below half its step. */
    tp__redis *r = n->r;
    uint64_t base = r->cfg.backoff_min_ms;
    for (uint32_t i = 0; i < n->attempt && base < r->cfg.backoff_max_ms; i++)
        base *= 2;
    if (base > r->cfg.backoff_max_ms)
        base = r->cfg.backoff_max_ms;
    if (n->attempt < 64)
        n->attempt++;
    uint64_t half = base / 2;
    return (uint32_t)(base - half + rnd(r) % (half + 1));
}

static void
on_retry(uv_timer_t *t)
{
    node_connect(t->data);
}

static void node_down(node *n, int was_ready);

/* node_lost ends a node's connection (free_ac: we end it; else hiredis is ending it) and
 * schedules the next attempt. Idempotent: the first call for a context wins. */
static void
node_lost(node *n, const char *reason, int free_ac)
{
    redisAsyncContext *ac = n->ac;
    if (!ac)
        return;
    n->ac = NULL;
    int was_ready = n->ready;
    n->ready = 0;
    if (reason != n->reason)
        snprintf(n->reason, sizeof n->reason, "%s", reason);
    uv_timer_stop(&n->timer);
    /* Freeing first runs every command's callback (with NULL: each fails once) while the
     * node holds the context no more, so that tp__redis_free from one of them finds nothing
     * left to free twice. */
    if (free_ac)
        redisAsyncFree(ac);
    node_down(n, was_ready);
}

static void
node_down(node *n, int was_ready)
{
    tp__redis *r = n->r;
    if (r->closing)
        return;
    char why[600];
    snprintf(why, sizeof why, "%s: %s", n->name, n->reason);
    link_update(r, why);
    if (r->closing)
        return;
    if (n->kind == NODE_SUB && r->mode == MODE_CLUSTER && r->st.masters > 0) {
        /* Plain pub/sub reaches every node of a cluster: try the next master. */
        uint32_t k = r->sub_rotate++ % r->st.masters;
        for (node *m = r->nodes; m; m = m->next) {
            if (m->kind == NODE_MAIN && m->owns && k-- == 0) {
                memcpy(n->host, m->host, sizeof n->host);
                n->port = m->port;
                snprintf(n->name, sizeof n->name, "pub/sub %.280s", m->name);
                break;
            }
        }
    }
    if (was_ready && n->kind == NODE_SUB)
        n->resub_notify = 1;
    if (r->mode == MODE_CLUSTER && n->kind == NODE_MAIN && n != r->seed && n->owns == 0) {
        /* A node that serves no slot any more (its slots failed over or moved): no need to
         * keep trying; node_get connects it again if a map or a redirection names it. */
        return;
    }
    uint32_t delay = backoff(n);
    n->retry_at = now_ms(r) + delay;
    uv_timer_start(&n->timer, on_retry, delay, 0);
    emit(r, TP__REDIS_RETRY, why, delay);
    /* A failover may move its slots to a promoted replica: read the map again after each
     * loss and each failed attempt (so at the pace of the backoff), or its slots would stay
     * refused as down for ever. */
    if (r->mode == MODE_CLUSTER && n->kind == NODE_MAIN && (was_ready || n->owns))
        map_refresh(r, NULL);
}

static void
node_ready(node *n)
{
    tp__redis *r = n->r;
    uv_timer_stop(&n->timer);
    n->ready = 1;
    if (n->ever_ready)
        r->st.reconnects++;
    n->ever_ready = 1;
    n->attempt = 0;
    n->reason[0] = '\0';
    if (n->kind == NODE_SUB) {
        n->subs_pending = (uint32_t)r->nchans;
        if (r->nchans > 0) {
            if (sub_send(n, "SUBSCRIBE", r->chans, r->nchans) != REDIS_OK)
                node_lost(n, "SUBSCRIBE could not be sent", 1);
        } else if (n->resub_notify) {
            n->resub_notify = 0;
            if (r->cfg.on_resubscribed)
                r->cfg.on_resubscribed(r->cfg.user);
        }
        return;
    }
    if (r->mode != MODE_STANDALONE)
        map_refresh(r, r->mode == MODE_UNKNOWN ? n : NULL);
    link_update(r, "ready");
}

static void
on_handshake(redisAsyncContext *ac, void *reply_, void *privdata)
{
    node *n = privdata;
    redisReply *reply = reply_;
    if (n->r->closing || n->ac != ac)
        return;
    if (!reply) {
        node_lost(n, ac_reason(ac, n), 0);
        return;
    }
    const char *what = n->hs_names[n->hs_seen < 3 ? n->hs_seen : 2];
    n->hs_seen++;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof why, "%s: %.200s", what, reply->str);
        node_lost(n, why, 1);
        return;
    }
    if (--n->hs_pending == 0)
        node_ready(n);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    node *n = ac->data;
    if (n->r->closing || n->ac != ac)
        return;
    if (status != REDIS_OK) {
        char why[256];
        snprintf(why, sizeof why, "connect: %s", ac->errstr ? ac->errstr : "failed");
        node_lost(n, why, 0); /* hiredis frees the context after this */
        return;
    }
    /* TCP keepalive (hiredis 0.14: its own 15 s interval), so that a silent peer (the
     * pub/sub connection has no command to time out) is found eventually. */
    if (n->port)
        redisEnableKeepAlive((redisContext *)&ac->c);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    node *n = ac->data;
    if (n->r->closing || n->ac != ac)
        return;
    node_lost(n, status == REDIS_OK ? "connection closed" : ac_reason(ac, n), 0);
}

static void
on_connect_timeout(uv_timer_t *t)
{
    node *n = t->data;
    char why[96];
    snprintf(why, sizeof why, "not ready in %u ms", n->r->cfg.connect_timeout_ms);
    n->r->st.timeouts++;
    node_lost(n, why, 1);
}

static void
node_connect(node *n)
{
    tp__redis *r = n->r;
    if (r->closing || n->ac)
        return;
    redisAsyncContext *ac =
        n->port ? redisAsyncConnect(n->host, n->port) : redisAsyncConnectUnix(r->url.path);
    const char *fail = NULL;
    char why[256];
    if (!ac)
        fail = "out of memory";
    else if (ac->err) {
        snprintf(why, sizeof why, "connect: %s", ac->errstr);
        fail = why;
    } else if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        fail = "cannot attach to the loop";
    } else {
        ac->ev.addRead = ev_add_read;
        ac->ev.delRead = ev_del_read;
        ac->ev.addWrite = ev_add_write;
        ac->ev.delWrite = ev_del_write;
    }
    if (fail) {
        snprintf(n->reason, sizeof n->reason, "%s", fail);
        if (ac)
            redisAsyncFree(ac);
        node_down(n, 0);
        return;
    }
    ac->data = n;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    n->ac = ac;
    n->ready = 0;
    n->hs_pending = 0;
    n->hs_seen = 0;
    /* The handshake is pipelined behind the connect: hiredis writes it once connected, and
     * commands issued meanwhile queue behind it. PING last, so that ready means the server
     * answers (a server still loading its AOF answers -LOADING). */
    if (r->url.has_password) {
        const char *argv[3];
        size_t argvlen[3];
        int argc = 0;
        argv[argc] = "AUTH";
        argvlen[argc++] = 4;
        if (r->url.user[0]) {
            argv[argc] = r->url.user;
            argvlen[argc++] = strlen(r->url.user);
        }
        argv[argc] = r->url.password;
        argvlen[argc++] = strlen(r->url.password);
        redisAsyncCommandArgv(ac, on_handshake, n, argc, argv, argvlen);
        n->hs_names[n->hs_pending++] = "AUTH";
    }
    if (r->url.db != 0 && n->kind == NODE_MAIN && r->mode != MODE_CLUSTER) {
        redisAsyncCommand(ac, on_handshake, n, "SELECT %d", r->url.db);
        n->hs_names[n->hs_pending++] = "SELECT";
    }
    redisAsyncCommand(ac, on_handshake, n, "PING");
    n->hs_names[n->hs_pending++] = "PING";
    uv_timer_start(&n->timer, on_connect_timeout, r->cfg.connect_timeout_ms, 0);
}

static node *
node_get(tp__redis *r, const char *host, size_t hostlen, int port)
{
    if (hostlen >= sizeof r->seed->host)
        return NULL;
    for (node *n = r->nodes; n; n = n->next)
        if (n->kind == NODE_MAIN && n->port == port && strlen(n->host) == hostlen &&
            memcmp(n->host, host, hostlen) == 0) {
            /* Idle since it served nothing (node_down): named again, so try it again. */
            if (!n->ac && !uv_is_active((uv_handle_t *)&n->timer))
                node_connect(n);
            return n;
        }
    node *n = tp__calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->r = r;
    n->kind = NODE_MAIN;
    memcpy(n->host, host, hostlen);
    n->host[hostlen] = '\0';
    n->port = port;
    if (port)
        snprintf(n->name, sizeof n->name, strchr(n->host, ':') ? "[%s]:%d" : "%s:%d", n->host,
                 port);
    else
        snprintf(n->name, sizeof n->name, "unix:%s", r->url.path);
    uv_timer_init(r->loop, &n->timer);
    n->timer.data = n;
    r->handles_open++;
    n->next = r->nodes;
    r->nodes = n;
    node_connect(n);
    return n;
}

/* ---- Life cycle ---------------------------------------------------------------------- */

tp__redis *
tp__redis_new(uv_loop_t *loop, const tp__redis_config *cfg, tp_error *err)
{
    if (!loop || !cfg) {
        tp__error_set(err, TP_EARG, "redis: no loop or config");
        return NULL;
    }
    tp__redis_url url;
    if (tp__redis_url_parse(cfg->url, &url, err) != TP_OK)
        return NULL;
    tp__redis *r = tp__calloc(1, sizeof *r);
    if (!r) {
        tp__error_set(err, TP_ENOMEM, "redis: out of memory");
        return NULL;
    }
    r->loop = loop;
    r->cfg = *cfg;
    r->cfg.url = NULL; /* parsed into r->url; the caller's string is not kept */
    r->url = url;
    if (!r->cfg.max_inflight)
        r->cfg.max_inflight = 10000;
    if (!r->cfg.backoff_min_ms)
        r->cfg.backoff_min_ms = 100;
    if (!r->cfg.backoff_max_ms)
        r->cfg.backoff_max_ms = 5000;
    if (r->cfg.backoff_max_ms < r->cfg.backoff_min_ms)
        r->cfg.backoff_max_ms = r->cfg.backoff_min_ms;
    if (!r->cfg.connect_timeout_ms)
        r->cfg.connect_timeout_ms = 2000;
    if (!r->cfg.command_timeout_ms)
        r->cfg.command_timeout_ms = 5000;
    r->mode = MODE_UNKNOWN;
    r->st.cluster = -1;
    r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
    if (!r->rng)
        r->rng = 1;
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    r->handles_open = 1;
    r->seed = node_get(r, url.host, strlen(url.host), url.port);
    if (!r->seed) {
        tp__error_set(err, TP_ENOMEM, "redis: out of memory");
        tp__redis_free(r);
        return NULL;
    }
    return r;
}

static void
free_all(tp__redis *r)
{
    while (r->nodes) {
        node *n = r->nodes;
        r->nodes = n->next;
        tp__free(n);
    }
    while (r->scripts) {
        tp__redis_script *s = r->scripts;
        r->scripts = s->next;
        tp__free(s->body);
        tp__free(s);
    }
    for (size_t i = 0; i < r->nchans; i++)
        tp__free(r->chans[i].name);
    tp__free(r->chans);
    tp__free(r);
}

static void
on_node_closed(uv_handle_t *h)
{
    tp__redis *r = ((node *)h->data)->r;
    if (--r->handles_open == 0)
        free_all(r);
}

static void
on_tick_closed(uv_handle_t *h)
{
    tp__redis *r = h->data;
    if (--r->handles_open == 0)
        free_all(r);
}

void
tp__redis_free(tp__redis *r)
{
    if (!r || r->closing)
        return;
    r->closing = 1;
    for (node *n = r->nodes; n; n = n->next) {
        redisAsyncContext *ac = n->ac;
        n->ac = NULL;
        n->ready = 0;
        if (ac)
            redisAsyncFree(ac); /* each command's callback: TP_ECLOSED, once */
    }
    for (node *n = r->nodes; n; n = n->next)
        uv_close((uv_handle_t *)&n->timer, on_node_closed);
    uv_close((uv_handle_t *)&r->tick, on_tick_closed);
}

int
tp__redis_is_up(const tp__redis *r)
{
    return r && r->up && !r->closing;
}

int
tp__redis_standalone(const tp__redis *r)
{
    return r->mode == MODE_STANDALONE;
}

void
tp__redis_stats_get(const tp__redis *r, tp__redis_stats *out)
{
    *out = r->st;
    out->inflight = r->inflight;
}
