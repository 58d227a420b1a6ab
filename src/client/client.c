/*
 * The client's protocol, sans-IO (PROTOCOL.md, the client side), part one:
 * the client's life cycle, its URL, the frames to send and the connection's
 * events (opened, a frame fed, closed). Replicas, local views, pending
 * writes and what each server message does are in replica.c; what both
 * share, and the invariants, in client.h. No sockets here: the transport
 * (transport.c, or the caller's own loop) carries the frames. The one
 * clock read is the wall clock when a token source gives a token: its
 * expiry is wall time, turned into a delay on the caller's monotonic clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "core/json.h"
#include "core/patch.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

/* PROTOCOL.md: a frame that batches several messages is at most 64 KiB. */
#define BATCH_MAX (64 * 1024)

typedef tp__replica replica;
typedef tp__pending pending;
typedef tp__proto proto;

#define P(c) TP__PROTO(c)

/* ---- Frames to send ---- */

/* A message that cannot be queued breaks the protocol (a resume never sent
 * leaves a model ignoring its patches): the connection is marked broken, the
 * next tp_client_feed fails, and the transport reconnects and resumes. */
static int
out_fail(tp_client *c, char *msg)
{
    tp__free(msg);
    if (P(c)->connected && !P(c)->broken) {
        P(c)->broken = 1;
        tp__log(&c->log, TP_LOG_ERROR, "client out of memory queueing a message");
    }
    return TP_ENOMEM;
}

static int
out_push(tp_client *c, char *msg, size_t len)
{
    proto *p = P(c);
    if (p->out_len == p->out_cap) {
        if (p->out_head > 0) {
            size_t n = p->out_len - p->out_head;
            memmove(p->out, p->out + p->out_head, n * sizeof *p->out);
            memmove(p->out_lens, p->out_lens + p->out_head, n * sizeof *p->out_lens);
            p->out_len = n;
            p->out_head = 0;
        } else {
            size_t cap = p->out_cap ? p->out_cap * 2 : 16;
            char **out = tp__reallocarray(p->out, cap, sizeof *out);
            if (out == NULL)
                return out_fail(c, msg);
            p->out = out;
            size_t *lens = tp__reallocarray(p->out_lens, cap, sizeof *lens);
            if (lens == NULL)
                return out_fail(c, msg);
            p->out_lens = lens;
            p->out_cap = cap;
        }
    }
    p->out[p->out_len] = msg;
    p->out_lens[p->out_len] = len;
    p->out_len++;
    if (c->wake != NULL)
        c->wake(c);
    return TP_OK;
}

/* queue_copy queues a copy of a message (the write's kept text). */
static int
queue_copy(tp_client *c, const char *msg, size_t len)
{
    char *m = tp__strndup(msg, len);
    if (m == NULL)
        return out_fail(c, NULL);
    return out_push(c, m, len);
}

/* queue_json queues a message; steals msg's reference. */
int
tp__client_queue_json(tp_client *c, json_t *msg)
{
    if (msg == NULL)
        return out_fail(c, NULL);
    char *text = tp__json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return out_fail(c, NULL);
    return out_push(c, text, strlen(text));
}

static void
out_clear(tp_client *c)
{
    proto *p = P(c);
    for (size_t i = p->out_head; i < p->out_len; i++)
        tp__free(p->out[i]);
    p->out_head = p->out_len = 0;
}

/* Queues a write on the current connection. */
int
tp__client_send_write(tp_client *c, pending *w)
{
    int rc = queue_copy(c, w->msg, w->msg_len);
    if (rc == TP_OK)
        w->sent = 1;
    return rc;
}

/*
 * Queues pending writes not yet sent on this connection, in ref order, while
 * fewer than TP__CLIENT_WINDOW are sent and unanswered: the server remembers
 * the outcomes of a client id's last 256 writes (PROTOCOL.md), so a write
 * sent again after a reconnect gets its outcome back instead of `duplicate`
 * only if no more than that many were in flight.
 */
int
tp__client_send_unsent(tp_client *c)
{
    proto *p = P(c);
    size_t inflight = 0;
    for (size_t i = 0; i < p->writes.len; i++)
        inflight += ((pending *)p->writes.items[i])->sent;
    for (size_t i = 0; i < p->writes.len && inflight < TP__CLIENT_WINDOW; i++) {
        pending *w = p->writes.items[i];
        if (!w->sent && !w->held) {
            int rc = tp__client_send_write(c, w);
            if (rc != TP_OK)
                return rc;
            inflight++;
        }
    }
    return TP_OK;
}

/* ---- URL ---- */

int
tp__client_parse_url(const char *url, tp__url *out, tp_error *err)
{
    memset(out, 0, sizeof *out);
    out->port = -1;
    if (url == NULL)
        return tp__error_set(err, TP_EARG, "url: required");
    for (const char *q = url; *q != '\0'; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return tp__error_set(err, TP_EARG, "url: a space or control character at offset %zu",
                                 (size_t)(q - url));
    const char *s;
    if (strncasecmp(url, "ws://", 5) == 0) {
        s = url + 5;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        s = url + 6;
        out->tls = 1;
    } else {
        return tp__error_set(err, TP_EARG, "url: expected ws:// or wss://, got \"%.64s\"", url);
    }
    if (strchr(s, '#') != NULL)
        return tp__error_set(err, TP_EARG, "url: a WebSocket URL has no fragment (#)");
    size_t alen = strcspn(s, "/?");
    const char *end = s + alen;
    if (memchr(s, '@', alen) != NULL)
        return tp__error_set(err, TP_EARG, "url: user information (user@) is not supported");
    const char *host = s, *host_end, *port = NULL;
    if (*s == '[') {
        const char *close = memchr(s, ']', alen);
        if (close == NULL)
            return tp__error_set(err, TP_EARG, "url: an IPv6 address without its closing ]");
        host = s + 1;
        host_end = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return tp__error_set(err, TP_EARG, "url: expected : or / after ]");
            port = close + 2;
        }
        for (const char *q = host; q < host_end; q++)
            if (tp__hex_digit(*q) < 0 && *q != ':' && *q != '.')
                return tp__error_set(err, TP_EARG, "url: not an IPv6 address between [ and ]");
    } else {
        const char *colon = memchr(s, ':', alen);
        host_end = colon ? colon : end;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_end == host)
        return tp__error_set(err, TP_EARG, "url: no host");
    if (port != NULL) {
        long v = 0;
        if (port == end)
            return tp__error_set(err, TP_EARG, "url: empty port after :");
        for (const char *q = port; q < end; q++) {
            if (*q < '0' || *q > '9')
                return tp__error_set(err, TP_EARG, "url: the port must be a number");
            v = v * 10 + (*q - '0');
            if (v > 65535)
                break;
        }
        if (v < 1 || v > 65535)
            return tp__error_set(err, TP_EARG, "url: port out of range (1 to 65535)");
        out->port = (int)v;
    } else {
        out->port = out->tls ? 443 : 80;
    }
    out->host = tp__strndup(host, (size_t)(host_end - host));
    size_t plen = strlen(end);
    out->path = tp__malloc(plen + 2);
    if (out->host == NULL || out->path == NULL) {
        tp__client_url_free(out);
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    /* "ws://h?x=1" has the path "/" and the query "x=1". */
    size_t o = 0;
    if (*end != '/')
        out->path[o++] = '/';
    memcpy(out->path + o, end, plen + 1);
    return TP_OK;
}

void
tp__client_url_free(tp__url *u)
{
    tp__free(u->host);
    tp__free(u->path);
    u->host = u->path = NULL;
}

/* ---- Life cycle ---- */

static char *
random_id(void)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof b) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, b, sizeof b);
            got = n == (ssize_t)sizeof b ? sizeof b : got;
            close(fd);
        }
    }
    if (got < sizeof b) {
        /* No entropy source: the clock and an address, mixed. */
        uint64_t x = tp__seed(b) ^ (uint64_t)tp__clock_mono_ns();
        for (size_t i = 0; i < sizeof b; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[i] = (unsigned char)x;
        }
    }
    char *id = tp__malloc(2 * sizeof b + 1);
    if (id == NULL)
        return NULL;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        id[2 * i] = hex[b[i] >> 4];
        id[2 * i + 1] = hex[b[i] & 15];
    }
    id[2 * sizeof b] = '\0';
    return id;
}

static int
copy_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = tp__strdup(src);
    return *dst == NULL ? -1 : 0;
}

/* Frees the client's copies of its URL and options. */
static void
free_copies(tp_client *c)
{
    tp__free(c->url_text);
    tp__free(c->token);
    tp__free(c->ca_file);
    tp__free(c->client_id);
    if (c->headers != NULL)
        for (size_t i = 0; c->headers[i] != NULL; i++)
            tp__free(c->headers[i]);
    tp__free(c->headers);
    tp__client_url_free(&c->url);
}

TP_API tp_client *
tp_client_new(const char *url, const tp_client_options *opts, tp_error *err)
{
    tp__url u;
    int rc = tp__client_parse_url(url, &u, err);
    if (rc != TP_OK)
        return NULL;
    tp_client_options o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.client_id != NULL && (o.client_id[0] == '\0' || strlen(o.client_id) > 64)) {
        tp__client_url_free(&u);
        tp__error_set(err, TP_EARG, "client_id: 1 to 64 characters");
        return NULL;
    }
    if (o.headers != NULL)
        for (size_t i = 0; o.headers[i] != NULL; i++)
            if (strchr(o.headers[i], ':') == NULL || strpbrk(o.headers[i], "\r\n") != NULL) {
                tp__client_url_free(&u);
                tp__error_set(err, TP_EARG, "headers[%zu]: expected one \"Name: value\" line", i);
                return NULL;
            }
    tp_client *c = tp__calloc(1, sizeof *c);
    proto *p = tp__calloc(1, sizeof *p);
    if (c == NULL || p == NULL) {
        tp__free(c);
        tp__free(p);
        tp__client_url_free(&u);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    c->url = u;
    c->proto = p;
    tp__map_init(&p->replicas, tp__seed(p));
    p->next_ref = 1;
    p->max_message_bytes = 1024 * 1024;
    p->rng = (tp__seed(p) ^ (uint64_t)tp__clock_mono_ns()) | 1; /* xorshift: never 0 */
    int bad = copy_str(&c->url_text, url) | copy_str(&c->token, o.token) |
              copy_str(&c->ca_file, o.ca_file) | copy_str(&c->client_id, o.client_id);
    if (c->client_id == NULL && !bad) {
        c->client_id = random_id();
        bad = c->client_id == NULL;
    }
    if (o.headers != NULL && !bad) {
        size_t n = 0;
        while (o.headers[n] != NULL)
            n++;
        c->headers = tp__calloc(n + 1, sizeof *c->headers);
        bad = c->headers == NULL;
        for (size_t i = 0; i < n && !bad; i++)
            bad = copy_str(&c->headers[i], o.headers[i]);
    }
    o.token = c->token;
    o.ca_file = c->ca_file;
    o.client_id = c->client_id;
    o.headers = (const char *const *)c->headers;
    if (o.backoff_min_ms == 0)
        o.backoff_min_ms = 250;
    if (o.backoff_max_ms == 0)
        o.backoff_max_ms = 30000;
    if (o.backoff_max_ms < o.backoff_min_ms)
        o.backoff_max_ms = o.backoff_min_ms;
    if (o.connect_timeout_ms == 0)
        o.connect_timeout_ms = 10000;
    if (o.ping_interval_ms == 0)
        o.ping_interval_ms = 20000;
    if (o.token_refresh_ms == 0)
        o.token_refresh_ms = 30000;
    c->opt = o;
    c->log = (tp__logger){o.log, o.log_user, o.log_level};
    c->state = TP_CLIENT_IDLE;

    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    int locks = 0;
    if (!bad && pthread_mutexattr_init(&ma) == 0) {
        if (pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE) == 0 &&
            pthread_mutex_init(&c->mu, &ma) == 0)
            locks = 1;
        pthread_mutexattr_destroy(&ma);
    }
    if (locks && pthread_condattr_init(&ca) == 0) {
        if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
            pthread_cond_init(&c->cv, &ca) == 0)
            locks = 2;
        pthread_condattr_destroy(&ca);
    }
    if (bad || locks != 2) {
        if (locks >= 1)
            pthread_mutex_destroy(&c->mu);
        c->cv = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
        locks = 0;
    }
    if (bad || locks == 0) {
        /* Freed by hand: tp_client_free would lock the mutex. */
        free_copies(c);
        tp__free(p);
        tp__free(c);
        tp__error_set(err, bad ? TP_ENOMEM : TP_EINTERNAL,
                      bad ? "out of memory" : "cannot make the client's lock");
        return NULL;
    }
    tp__error_clear(err);
    return c;
}

TP_API int
tp_client_start(tp_client *c, tp_error *err)
{
    if (c == NULL)
        return tp__error_set(err, TP_EARG, "client: NULL");
    pthread_mutex_lock(&c->mu);
    int busy = c->transport != NULL;
    pthread_mutex_unlock(&c->mu);
    if (busy)
        return tp__error_set(err, TP_EARG, "client: already started");
    return tp__client_transport_start(c, err);
}

TP_API void
tp_client_stop(tp_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    int running = c->transport != NULL;
    P(c)->stopping = 1; /* the connection the transport closes now ends STOPPED, not WAITING */
    pthread_mutex_unlock(&c->mu);
    if (running)
        tp__client_transport_stop(c);
    pthread_mutex_lock(&c->mu);
    P(c)->stopping = 0;
    if (P(c)->connected) {
        /* Sans-IO: the caller's connection is still up; frames for it are
         * dropped, pending writes stay for a later connection. */
        P(c)->connected = 0;
        out_clear(c);
        for (size_t i = 0; i < P(c)->writes.len; i++)
            ((pending *)P(c)->writes.items[i])->sent = 0;
    }
    tp__client_set_state(c, TP_CLIENT_STOPPED, "stopped");
    pthread_mutex_unlock(&c->mu);
}

TP_API void
tp_client_free(tp_client *c)
{
    if (c == NULL)
        return;
    tp_client_stop(c);
    proto *p = P(c);
    for (size_t i = 0; i < p->writes.len; i++)
        tp__pending_free(p->writes.items[i]);
    tp__vec_free(&p->writes);
    const char *k;
    void *v;
    for (size_t it = 0; tp__map_next(&p->replicas, &it, &k, &v);)
        tp__replica_free(v);
    tp__map_free(&p->replicas);
    out_clear(c);
    tp__free(p->out);
    tp__free(p->out_lens);
    tp__free(p->frame);
    tp__free(p->conn_id);
    tp__client_presence_free(c);
    tp__free(p);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free_copies(c);
    tp__free(c);
}

void
tp__client_set_state(tp_client *c, tp_client_state state, const char *why)
{
    if (c->state == state)
        return;
    c->state = state;
    static const char *const names[] = {"idle",    "connecting", "syncing", "live",
                                        "waiting", "refused",    "stopped"};
    tp__log(&c->log, state == TP_CLIENT_REFUSED ? TP_LOG_WARN : TP_LOG_INFO, "client state=%s%s%s",
            names[state], why ? " why=" : "", why ? why : "");
    pthread_cond_broadcast(&c->cv);
    if (c->opt.cb.state != NULL)
        c->opt.cb.state(c->opt.cb.user, state, why);
}

TP_API tp_client_state
tp_client_get_state(tp_client *c)
{
    if (c == NULL)
        return TP_CLIENT_STOPPED;
    pthread_mutex_lock(&c->mu);
    tp_client_state s = c->state;
    pthread_mutex_unlock(&c->mu);
    return s;
}

TP_API size_t
tp_client_pending(tp_client *c)
{
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    size_t n = P(c)->writes.len;
    pthread_mutex_unlock(&c->mu);
    return n;
}

TP_API const char *
tp_client_id(tp_client *c)
{
    return c ? c->client_id : NULL;
}

TP_API int
tp_client_wait(tp_client *c, int what, unsigned timeout_ms)
{
    if (c == NULL)
        return TP_EARG;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    int rc;
    for (;;) {
        tp_client_state s = c->state;
        if (s == TP_CLIENT_REFUSED || s == TP_CLIENT_STOPPED) {
            rc = TP_ECLOSED;
            break;
        }
        if (s == TP_CLIENT_LIVE && (what != TP_CLIENT_WAIT_IDLE || P(c)->writes.len == 0)) {
            rc = TP_OK;
            break;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
            rc = TP_EINTERNAL;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- Sans-IO ---- */

/* Appends "&name=value" (or "?...") with value percent-encoded. */
static void
query_add(tp__sb *sb, int *has_query, const char *name, const char *value)
{
    tp__sb_puts(sb, *has_query ? "&" : "?");
    *has_query = 1;
    tp__sb_puts(sb, name);
    tp__sb_puts(sb, "=");
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *q = (const unsigned char *)value; *q != '\0'; q++) {
        if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
            *q == '-' || *q == '.' || *q == '_' || *q == '~') {
            tp__sb_append(sb, (const char *)q, 1);
        } else {
            char e[3] = {'%', hex[*q >> 4], hex[*q & 15]};
            tp__sb_append(sb, e, 3);
        }
    }
}

/* ---- Tokens ---- */

static int
b64url_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

int64_t
tp__jwt_exp_ms(const char *token)
{
    const char *a = strchr(token, '.');
    const char *b = a != NULL ? strchr(a + 1, '.') : NULL;
    if (b == NULL || b - a - 1 > 8192)
        return 0;
    size_t n = (size_t)(b - a - 1);
    char *json = tp__malloc(n * 3 / 4 + 4);
    if (json == NULL)
        return 0;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)a[1 + i]);
        if (v < 0) {
            tp__free(json);
            return 0;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            json[o++] = (char)(acc >> bits & 0xff);
        }
    }
    json_t *claims = json_loadb(json, o, 0, NULL);
    tp__free(json);
    const json_t *exp = json_object_get(claims, "exp");
    int64_t ms = 0;
    if (json_is_integer(exp) && json_integer_value(exp) > 0 &&
        json_integer_value(exp) < INT64_MAX / 1000)
        ms = (int64_t)json_integer_value(exp) * 1000;
    else if (json_is_real(exp) && json_real_value(exp) > 0 && json_real_value(exp) < 1e15)
        ms = (int64_t)(json_real_value(exp) * 1000);
    json_decref(claims);
    return ms;
}

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Asks the token source for a token; the client's copy is replaced (the
 * old one wiped) and the next `auth` scheduled. Returns 0, or -1 when it
 * gave none. Under mu.
 */
static int
fetch_token(tp_client *c, int64_t now_mono_ms)
{
    proto *p = P(c);
    char *buf = tp__malloc(TP__CLIENT_TOKEN_MAX);
    if (buf == NULL)
        return -1;
    buf[0] = '\0';
    int64_t exp = 0;
    int rc = c->opt.token_fn(c->opt.token_user, buf, TP__CLIENT_TOKEN_MAX, &exp);
    buf[TP__CLIENT_TOKEN_MAX - 1] = '\0';
    if (rc != 0 || buf[0] == '\0' || strpbrk(buf, "\r\n") != NULL) {
        explicit_bzero(buf, TP__CLIENT_TOKEN_MAX);
        tp__free(buf);
        tp__log(&c->log, TP_LOG_WARN, "the token source gave no token");
        return -1;
    }
    char *t = tp__strdup(buf);
    explicit_bzero(buf, TP__CLIENT_TOKEN_MAX);
    tp__free(buf);
    if (t == NULL)
        return -1;
    if (c->token != NULL) {
        explicit_bzero(c->token, strlen(c->token));
        tp__free(c->token);
    }
    c->token = t;
    c->opt.token = t;
    if (exp == 0)
        exp = tp__jwt_exp_ms(t);
    p->token_exp_ms = exp;
    p->auth_at_ms = 0;
    if (exp > 0) {
        /* Renewed refresh_ms before it expires, or halfway through what
         * is left of a short-lived one. */
        int64_t left = exp - wall_ms();
        int64_t margin = c->opt.token_refresh_ms;
        if (margin > left / 2)
            margin = left / 2;
        int64_t in = left - margin;
        p->auth_at_ms = now_mono_ms + (in > 1000 ? in : 1000);
    }
    return 0;
}

int64_t
tp__client_token_tick(tp_client *c, int64_t now_ms)
{
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    int64_t at = INT64_MAX;
    if (c->opt.token_fn != NULL && p->connected && p->auth_at_ms != 0) {
        if (now_ms >= p->auth_at_ms) {
            if (fetch_token(c, now_ms) == 0) {
                tp__log(&c->log, TP_LOG_DEBUG, "client sends a fresh token (auth)");
                tp__client_queue_json(c, json_pack("{s:s,s:s,s:I}", "type", "auth", "token",
                                                   c->token, "ref", (json_int_t)(-++p->pings)));
            } else {
                p->auth_at_ms = now_ms + 1000; /* asked again */
            }
        }
        if (p->auth_at_ms != 0)
            at = p->auth_at_ms;
    }
    pthread_mutex_unlock(&c->mu);
    return at;
}

TP_API char *
tp_client_url(tp_client *c)
{
    if (c == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    /* Each connection attempt starts with the token source's current token. */
    if (c->opt.token_fn != NULL)
        fetch_token(c, tp__clock_mono_ns() / 1000000);
    tp__sb sb;
    tp__sb_init(&sb, strlen(c->url_text) + 64);
    tp__sb_puts(&sb, c->url_text);
    int has_query = strchr(c->url_text, '?') != NULL;
    /* PROTOCOL.md: a client that holds revs from an earlier connection
     * adds resume=1, and its first message is then `resume`. */
    if (P(c)->replicas.len > 0) {
        tp__sb_puts(&sb, has_query ? "&resume=1" : "?resume=1");
        has_query = 1;
    }
    if (c->token != NULL && c->opt.token_in_query)
        query_add(&sb, &has_query, "token", c->token);
    if (c->state != TP_CLIENT_SYNCING && c->state != TP_CLIENT_LIVE)
        tp__client_set_state(c, TP_CLIENT_CONNECTING, NULL);
    pthread_mutex_unlock(&c->mu);
    tp__buf *b = tp__sb_finish(&sb);
    if (b == NULL)
        return NULL;
    char *s = tp__strndup(b->data, b->len);
    tp__buf_unref(b);
    return s;
}

TP_API void
tp_client_opened(tp_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    out_clear(c);
    p->connected = 1;
    p->broken = 0;
    tp__client_set_state(c, TP_CLIENT_SYNCING, NULL);
    int rc;
    if (p->replicas.len > 0) {
        /* Every held model with its rev; the answer covers the gaps too. */
        json_t *models = json_array();
        const char *k;
        void *v;
        for (size_t it = 0; models != NULL && tp__map_next(&p->replicas, &it, &k, &v);) {
            replica *r = v;
            r->gap = 0;
            if (json_array_append_new(models, json_pack("{s:s,s:s,s:I}", "scope", r->scope, "id",
                                                        r->id, "rev", (json_int_t)r->rev)) != 0) {
                json_decref(models);
                models = NULL;
            }
        }
        rc = tp__client_queue_json(c, models ? json_pack("{s:s,s:o,s:s}", "type", "resume",
                                                         "models", models, "client", c->client_id)
                                             : NULL);
    } else {
        /* Names the client for exactly-once before any write. */
        rc = tp__client_queue_json(c, json_pack("{s:s,s:I,s:s}", "type", "ping", "ref",
                                                (json_int_t)(-++p->pings), "client", c->client_id));
    }
    /* A new connection has a full write budget on the server: held writes
     * go at once. */
    for (size_t i = 0; i < p->writes.len; i++)
        ((pending *)p->writes.items[i])->sent = ((pending *)p->writes.items[i])->held = 0;
    p->holding = 0;
    p->resume_held = 0; /* the first resume lists every model */
    p->retry_at = 0;
    if (rc == TP_OK)
        tp__client_send_unsent(c);
    /* A presence state belongs to the connection that set it: each one
     * this client set goes again, after the resume. */
    if (rc == TP_OK)
        tp__client_presence_resend(c);
    pthread_mutex_unlock(&c->mu);
}

TP_API int
tp_client_feed(tp_client *c, const char *text, size_t len)
{
    if (c == NULL || (text == NULL && len > 0))
        return TP_EARG;
    pthread_mutex_lock(&c->mu);
    int rc = TP_OK;
    if (!P(c)->connected) {
        rc = TP_ECLOSED;
        goto out;
    }
    if (P(c)->broken) {
        rc = TP_ENOMEM;
        goto out;
    }
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (msg == NULL) {
        tp__log(&c->log, TP_LOG_WARN, "client bad frame from server: %s at %d", jerr.text,
                jerr.position);
        rc = TP_EBADREQUEST;
        goto out;
    }
    if (json_is_array(msg)) {
        size_t i;
        json_t *m;
        json_array_foreach(msg, i, m)
        {
            rc = tp__client_on_message(c, m);
            if (rc != TP_OK || !P(c)->connected)
                break;
        }
    } else {
        rc = tp__client_on_message(c, msg);
    }
    json_decref(msg);
out:
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

TP_API const char *
tp_client_next_frame(tp_client *c, size_t *len)
{
    if (c == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    tp__free(p->frame);
    p->frame = NULL;
    if (p->out_head == p->out_len) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    /* As many queued messages as fit in one batch of 64 KiB; a message
     * larger than that goes alone. */
    size_t n = 1, total = p->out_lens[p->out_head] + 2;
    while (p->out_head + n < p->out_len && total + p->out_lens[p->out_head + n] + 1 <= BATCH_MAX) {
        total += p->out_lens[p->out_head + n] + 1;
        n++;
    }
    size_t flen;
    if (n == 1) {
        p->frame = p->out[p->out_head];
        flen = p->out_lens[p->out_head];
    } else {
        char *f = tp__malloc(total + 1);
        if (f == NULL) {
            n = 1; /* no room to batch: one at a time */
            p->frame = p->out[p->out_head];
            flen = p->out_lens[p->out_head];
        } else {
            size_t o = 0;
            f[o++] = '[';
            for (size_t i = 0; i < n; i++) {
                if (i > 0)
                    f[o++] = ',';
                memcpy(f + o, p->out[p->out_head + i], p->out_lens[p->out_head + i]);
                o += p->out_lens[p->out_head + i];
                tp__free(p->out[p->out_head + i]);
            }
            f[o++] = ']';
            f[o] = '\0';
            p->frame = f;
            flen = o;
        }
    }
    p->out_head += n;
    if (p->out_head == p->out_len)
        p->out_head = p->out_len = 0;
    if (len != NULL)
        *len = flen;
    const char *frame = p->frame;
    pthread_mutex_unlock(&c->mu);
    return frame;
}

TP_API void
tp_client_closed(tp_client *c, int close_code, const char *reason)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    p->connected = 0;
    out_clear(c);
    /* Every pending write goes again on the next connection, after its
     * resume: the server answers those it already applied with their
     * original outcome (exactly once). */
    for (size_t i = 0; i < p->writes.len; i++)
        ((pending *)p->writes.items[i])->sent = 0;
    /* The others' presence was this connection's view: gone with it. */
    tp__client_presence_closed(c);
    char why[256];
    tp_client_state next;
    int http = close_code >= 100 && close_code < 600;
    if (reason != NULL && reason[0] != '\0')
        snprintf(why, sizeof why, "%s", reason);
    else if (http)
        snprintf(why, sizeof why, "HTTP %d", close_code);
    else
        snprintf(why, sizeof why, "closed %d", close_code);
    /* 4403: the host closed this tenant's connections, 4404: the tenant was
     * deleted (PROTOCOL.md): reconnecting would only be refused or wrong. */
    if (close_code == 400 || close_code == 401 || close_code == 403 || close_code == 404 ||
        close_code == 4403 || close_code == 4404)
        next = TP_CLIENT_REFUSED;
    else
        next = c->opt.no_reconnect || p->stopping || c->state == TP_CLIENT_STOPPED
                   ? TP_CLIENT_STOPPED
                   : TP_CLIENT_WAITING;
    tp__client_set_state(c, next, why);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void
tp__client_ping(tp_client *c)
{
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    if (p->connected) {
        tp__client_queue_json(
            c, json_pack("{s:s,s:I}", "type", "ping", "ref", (json_int_t)(-++p->pings)));
    }
    pthread_mutex_unlock(&c->mu);
}

int64_t
tp__client_retry(tp_client *c, int64_t now_ms)
{
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    int64_t at = INT64_MAX;
    if (p->holding && p->retry_at == 0) {
        /* PROTOCOL.md: rate_limited, resend later. Sent again at once, the
         * write would find the bucket as empty as it left it. */
        unsigned shift = p->retry_streak < 16 ? p->retry_streak : 16;
        int64_t d = (int64_t)TP__RETRY_MIN_MS << shift;
        if (d > TP__RETRY_MAX_MS)
            d = TP__RETRY_MAX_MS;
        p->rng ^= p->rng << 13;
        p->rng ^= p->rng >> 7;
        p->rng ^= p->rng << 17;
        p->retry_at = now_ms + d / 2 + (int64_t)(p->rng % (uint64_t)(d / 2 + 1));
        if (p->retry_at == 0)
            p->retry_at = 1;
        p->retry_streak++;
    }
    if (p->holding && now_ms >= p->retry_at) {
        for (size_t i = 0; i < p->writes.len; i++)
            ((pending *)p->writes.items[i])->held = 0;
        p->holding = 0;
        p->retry_at = 0;
        if (p->connected && p->resume_held)
            tp__client_resync_gaps(c);
        p->resume_held = 0;
        if (p->connected)
            tp__client_send_unsent(c);
        if (p->connected && p->pres_held)
            tp__client_presence_resend(c);
    } else if (p->holding) {
        at = p->retry_at;
    }
    pthread_mutex_unlock(&c->mu);
    return at;
}
