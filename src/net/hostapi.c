/*
 * The host HTTP API (HOST-API.md) on the server's listener.
 *
 * A request is read whole (Content-Length only: chunked bodies get 411),
 * bounded by max_message_bytes (413 as soon as Content-Length says so,
 * before a byte of the body is read) and by the handshake timeout (a slow
 * sender is dropped). It is then routed and handed to the core
 * (core/hostops.c), which changes the hub as the C host would. A 2xx to a
 * change is written only once the transaction holding it is durable: the
 * same promise as an `ack`. The loop does not wait for it: the answer is
 * built, kept with the request (a waiter), and written when the committer
 * says the transaction is durable (tp__hostapi_durable), or replaced by a
 * 503 when the commit fails.
 */
#include "net/hostapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/json.h"
#include "net/net.h"
#include "net/webhook.h"
#include "util/alloc.h"
#include "util/buf.h"

#define API_PATH_MAX 2048
#define API_SEGMENTS 6

enum { M_GET, M_PUT, M_PATCH, M_DELETE, M_POST, M_OTHER };

struct tp__apireq {
    int method;
    char path[API_PATH_MAX];
    char *body;
    size_t len, want;
    int too_large;
    /* A cluster: the order's last ticket before the call (the answer waits
     * for the tickets after it), and the model an answer is built from once
     * they end (PUT, PATCH: its rev is the log's). */
    uint64_t t0;
    int model, shared;
    const char *tenant, *id;
    int again; /* a cluster node: dispatched once the node caught up (run()) */
};

/* An answer waiting for the transaction holding its change. */
typedef struct tp__apiwait {
    struct lws *wsi;
    tp__ws *ws;
    uint64_t seq;    /* durable once the hub released this epoch */
    uint64_t t0, t1; /* a cluster: the order's tickets (t0, t1] to wait for */
    int shared;      /* the model whose answer is built again then, or none */
    char *tenant, *id;
    struct tp__apireq *req; /* or a request to run again then (run()) */
    unsigned char *buf;     /* LWS_PRE, then the whole answer; NULL until built */
    size_t len;
    int status, keep, due;
    struct tp__apiwait *prev, *next;
} tp__apiwait;

struct tp__hostapi {
    tp__apiwait *waits;         /* answers waiting, in no order */
    struct tp__apireq *current; /* the request being dispatched */
    char *token;
    size_t token_len;
    tp__host *host;
    uint64_t answers[6]; /* by status class: [2] 2xx, [4] 4xx, [5] 5xx */
    uint64_t unauthorized;
};

static void req_free(tp__apireq *r);
static int run(tp_server *s, struct lws *wsi, tp__apireq *r);

int
tp__server_host_api(tp_server *s, const char *token, tp__host *host)
{
    tp__hostapi *api = tp__calloc(1, sizeof *api);
    if (api == NULL || (api->token = tp__strdup(token)) == NULL) {
        tp__free(api);
        tp__host_free(host);
        return TP_ENOMEM;
    }
    api->token_len = strlen(token);
    api->host = host;
    tp__hostapi_free(s->api);
    s->api = api;
    return TP_OK;
}

void
tp__hostapi_free(tp__hostapi *api)
{
    if (api == NULL)
        return;
    while (api->waits != NULL) {
        tp__apiwait *w = api->waits;
        api->waits = w->next;
        if (w->ws != NULL)
            w->ws->wait = NULL;
        tp__free(w->buf);
        tp__free(w->tenant);
        tp__free(w->id);
        req_free(w->req);
        tp__free(w);
    }
    OPENSSL_cleanse(api->token, api->token_len);
    tp__free(api->token);
    tp__host_free(api->host);
    tp__free(api);
}

int
tp__hostapi_claims(const char *uri)
{
    return strncmp(uri, "/v1/", 4) == 0 || strcmp(uri, "/v1") == 0;
}

static void
req_free(tp__apireq *r)
{
    if (r != NULL) {
        tp__free(r->body);
        tp__free(r);
    }
}

static void
wait_free(tp_server *s, tp__apiwait *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else if (s != NULL && s->api != NULL && s->api->waits == w)
        s->api->waits = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    if (w->ws != NULL)
        w->ws->wait = NULL;
    tp__free(w->buf);
    tp__free(w->tenant);
    tp__free(w->id);
    req_free(w->req);
    tp__free(w);
}

void
tp__hostapi_gone(void *user)
{
    tp__ws *ws = user;
    if (ws != NULL && ws->api != NULL) {
        req_free(ws->api);
        ws->api = NULL;
    }
    if (ws != NULL && ws->wait != NULL) {
        tp_server *s = lws_context_user(lws_get_context(ws->wait->wsi));
        wait_free(s, ws->wait);
    }
}

/* ---- Answers ---- */

static const char *
status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/*
 * Writes a whole answer. keep: the connection may serve another request
 * (keep-alive); else it closes once the answer is out (an unread body
 * follows, or the request was not HTTP/1.1 keep-alive). Returns lws's
 * verdict for the callback.
 */
static int
respond(struct lws *wsi, int status, const char *extra, const char *body, size_t len, int keep)
{
    tp__ws *ws = lws_wsi_user(wsi);
    char head[1024];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n%s%zu\r\nCache-Control: no-store\r\n%s%s\r\n", status,
                     status_text(status),
                     len > 0 || status != 204 ? "Content-Type: application/json\r\nContent-Length: "
                                              : "Content-Length: ",
                     len, keep ? "" : "Connection: close\r\n", extra ? extra : "");
    if (h < 0 || (size_t)h >= sizeof head)
        return -1;
    unsigned char *buf = tp__malloc(LWS_PRE + (size_t)h + len);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, head, (size_t)h);
    if (len > 0)
        memcpy(buf + LWS_PRE + h, body, len);
    if (ws != NULL && ws->wait != NULL && ws->wait->buf == NULL) {
        /* Kept until the change is durable (tp__hostapi_durable). */
        ws->wait->buf = buf;
        ws->wait->len = (size_t)h + len;
        ws->wait->status = status;
        ws->wait->keep = keep;
        return 0;
    }
    int w = lws_write(wsi, buf + LWS_PRE, (size_t)h + len, LWS_WRITE_HTTP_FINAL);
    tp__free(buf);
    tp_server *s = lws_context_user(lws_get_context(wsi));
    if (s != NULL && s->api != NULL && status / 100 < 6) {
        s->api->answers[status / 100]++;
        s->api->unauthorized += status == 401;
    }
    if (w < 0 || !keep)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int
respond_json(struct lws *wsi, int status, const char *extra, json_t *o, int keep)
{
    char *text = o ? tp__json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return -1;
    size_t n = strlen(text);
    int rc = respond(wsi, status, extra, text, n, keep);
    tp__free(text);
    return rc;
}

static int
fail(tp_server *s, struct lws *wsi, int status, const char *code, const char *message, int keep,
     const char *extra)
{
    tp__log(s->log, TP_LOG_DEBUG, "api refused status=%d code=%s: %s", status, code, message);
    json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    return respond_json(wsi, status, extra, o, keep);
}

/* A core outcome as an HTTP status and the protocol's code. */
static int
fail_code(tp_server *s, struct lws *wsi, const tp_error *err)
{
    int st;
    const char *code;
    if (err->code == TP_EINTERNAL && strncmp(err->message, "storage", 7) == 0)
        /* The store fails: refused until a commit succeeds (HOST-API.md's 503). */
        return fail(s, wsi, 503, "unavailable", err->message, 1, "Retry-After: 1\r\n");
    switch (err->code) {
    case TP_EBADREQUEST:
    case TP_EARG: st = 400, code = "bad_request"; break;
    case TP_EFORBIDDEN: st = 403, code = "forbidden"; break;
    case TP_ENOTFOUND: st = 404, code = "not_found"; break;
    case TP_EEXIST: st = 409, code = "conflict"; break;
    case TP__HOST_EPRECONDITION: st = 412, code = "precondition_failed"; break;
    case TP_ETOOLARGE: st = 413, code = "too_large"; break;
    case TP_EINVALID:
    case TP_EREJECTED:
    case TP_ESCHEMA: st = 422, code = "invalid"; break;
    default: st = 500, code = "internal"; break;
    }
    return fail(s, wsi, st, code, err->message[0] ? err->message : tp_strerror(err->code), 1, NULL);
}

/* ---- The request ---- */

static int
method_of(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes t;
        int m;
    } ms[] = {{WSI_TOKEN_GET_URI, M_GET},
              {WSI_TOKEN_PUT_URI, M_PUT},
              {WSI_TOKEN_PATCH_URI, M_PATCH},
              {WSI_TOKEN_DELETE_URI, M_DELETE},
              {WSI_TOKEN_POST_URI, M_POST}};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (lws_hdr_total_length(wsi, ms[i].t) > 0)
            return ms[i].m;
    return M_OTHER;
}

/* The token check, in constant time (tp__http_bearer_ok). */
static int
authorized(const tp__hostapi *api, struct lws *wsi)
{
    return tp__http_bearer_ok(wsi, api->token, api->token_len);
}

static int
has_control(const char *p)
{
    for (; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

/* One query parameter's value (lws decoded it), or NULL. */
static const char *
query(struct lws *wsi, const char *name, char *buf, size_t n)
{
    char frag[1024];
    size_t nl = strlen(name);
    for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) >= 0;
         i++) {
        if (strncmp(frag, name, nl) == 0 && (frag[nl] == '=' || frag[nl] == '\0')) {
            snprintf(buf, n, "%s", frag[nl] == '=' ? frag + nl + 1 : "");
            return buf;
        }
    }
    return NULL;
}

/* If-Match: "<rev>" (or W/"<rev>"): the rev, -1 when absent, -2 when malformed. */
static int64_t
if_match(struct lws *wsi)
{
    char v[128];
    const char *p = tp__http_header(wsi, WSI_TOKEN_HTTP_IF_MATCH, v, sizeof v);
    if (p == NULL)
        return -1;
    if (strncmp(p, "W/", 2) == 0)
        p += 2;
    if (*p++ != '"')
        return -2;
    int64_t rev = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 18) {
        rev = rev * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || *p != '"' || p[1] != '\0')
        return -2;
    return rev;
}

/* ---- Routing ---- */

typedef struct route {
    char *seg[API_SEGMENTS];
    int n;
} route;

/* Splits the decoded path; -1 when it has more segments than any route or
 * an empty one (a "//" or a trailing "/"). */
static int
split(char *path, route *r)
{
    r->n = 0;
    char *p = path + 1; /* after the leading '/' */
    for (;;) {
        char *slash = strchr(p, '/');
        if (r->n == API_SEGMENTS)
            return -1;
        r->seg[r->n++] = p;
        if (slash == NULL)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    for (int i = 0; i < r->n; i++)
        if (r->seg[i][0] == '\0')
            return -1;
    return 0;
}

static int
is(const route *r, int i, const char *word)
{
    return i < r->n && strcmp(r->seg[i], word) == 0;
}

/* The list parameters: limit (1 to TP__HOST_LIST_MAX) and after. */
static int
list_params(tp_server *s, struct lws *wsi, size_t *limit, const char **after, char *abuf, size_t an,
            int *rc)
{
    char lb[32];
    *limit = TP__HOST_LIST_DEFAULT;
    const char *l = query(wsi, "limit", lb, sizeof lb);
    if (l != NULL) {
        size_t v = 0, i = 0;
        for (; l[i] >= '0' && l[i] <= '9' && i < 5; i++)
            v = v * 10 + (size_t)(l[i] - '0');
        if (i == 0 || l[i] != '\0' || v < 1 || v > TP__HOST_LIST_MAX) {
            *rc = fail(s, wsi, 400, "bad_request", "limit: must be an integer from 1 to 1000", 1,
                       NULL);
            return -1;
        }
        *limit = v;
    }
    *after = query(wsi, "after", abuf, an);
    return 0;
}

static void
describe_conn(tp_conn *c, json_t *item, void *user)
{
    (void)user;
    tp__ws *ws = tp_conn_user(c);
    if (ws == NULL)
        return;
    json_object_set_new(item, "peer", json_string(ws->peer));
    char since[32];
    time_t t = (time_t)(ws->since_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(item, "since", json_string(since));
}

/*
 * What a change answers once it is stored: 0 to answer (at once when the
 * change is durable already, else the answer waits: a waiter, completed by
 * tp__hostapi_durable), 503 when the store refused it.
 */
static tp__apiwait *
wait_add(tp_server *s, struct lws *wsi, tp__ws *ws)
{
    tp__apiwait *w = tp__calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->wsi = wsi;
    w->ws = ws;
    w->next = s->api->waits;
    if (w->next != NULL)
        w->next->prev = w;
    s->api->waits = w;
    ws->wait = w;
    return w;
}

/* An error of the shared order as the host API answers it: the log cannot
 * be reached (503, retry), or the change was refused in its turn. */
static int
fail_order(tp_server *s, struct lws *wsi, const tp_error *err)
{
    if (err->code == TP_EINTERNAL && strncmp(err->message, "cluster", 7) == 0)
        return fail(s, wsi, 503, "unavailable", err->message, 1, "Retry-After: 1\r\n");
    return fail_code(s, wsi, err);
}

/*
 * A cluster node: the answer waits until the log has every change the call
 * made (its tickets). Returns 0 to answer (kept in a waiter while they are
 * open), 1 when an error was answered, -1 when the connection must close.
 */
static int
ordered(tp_server *s, struct lws *wsi)
{
    tp__ws *ws = lws_wsi_user(wsi);
    tp__apireq *r = s->api->current;
    uint64_t t1 = tp__ticket_last(s->hub);
    if (r == NULL || t1 == r->t0)
        return 0;
    tp_error err = {0, ""};
    int st = tp__ticket_state(s->hub, r->t0, t1, &err);
    if (st < 0)
        return fail_order(s, wsi, &err) == 0 ? 1 : -1;
    tp__apiwait *w = ws->wait == NULL ? wait_add(s, wsi, ws) : NULL;
    if (w == NULL)
        return st == 0 ? 0 : (fail(s, wsi, 500, "internal", "out of memory", 0, NULL), -1);
    w->t0 = r->t0;
    w->t1 = t1;
    w->seq = 0;
    if (r->model) {
        w->shared = r->shared;
        w->tenant = r->tenant ? tp__strdup(r->tenant) : NULL;
        w->id = tp__strdup(r->id);
    }
    return 0;
}

static int
committed(tp_server *s, struct lws *wsi, int sync)
{
    if (sync)
        tp_hub_sync(s->hub);
    tp_error err = {0, ""};
    tp__ws *ws = lws_wsi_user(wsi);
    if (tp__hub_store(s->hub) == NULL) {
        int rc = ordered(s, wsi);
        if (rc != 0)
            return rc;
    }
    if (ws != NULL && tp__hub_store(s->hub) != NULL && ws->wait == NULL) {
        uint64_t seq = tp__hub_seal(s->hub, NULL);
        tp__hub_collect(s->hub);
        if (tp__hub_released(s->hub) >= seq)
            return 0;
        if (tp__hub_writable(s->hub, &err) == TP_OK) {
            tp__apiwait *w = wait_add(s, wsi, ws);
            if (w != NULL) {
                w->seq = seq;
                return 0;
            }
        }
    }
    if (err.code == 0 && tp_hub_commit(s->hub, &err) == TP_OK)
        return 0;
    char m[400];
    /* A merge patch is undone with the failed transaction; a structure
     * change (a model hosted, a subscription) stays noted and is stored by
     * the next commit that succeeds: either way the caller retries, and a
     * retried PUT or PATCH converges. */
    snprintf(m, sizeof m, "storage: the change could not be stored (%s): retry", err.message);
    return fail(s, wsi, 503, "unavailable", m, 1, "Retry-After: 1\r\n") == 0 ? 1 : -1;
}

/* A model's answer, with its ETag. */
static int
model_answer(struct lws *wsi, int status, json_t *o)
{
    char etag[64];
    snprintf(etag, sizeof etag, "ETag: \"%lld\"\r\n",
             (long long)json_integer_value(json_object_get(o, "rev")));
    return respond_json(wsi, status, etag, o, 1);
}

static int
allow(tp_server *s, struct lws *wsi, const char *methods)
{
    char extra[96];
    snprintf(extra, sizeof extra, "Allow: %s\r\n", methods);
    return fail(s, wsi, 405, "bad_request", "method: not allowed on this path", 1, extra);
}

/* Parses a body as JSON; NULL with the answer written in *rc. */
static json_t *
body_json(tp_server *s, struct lws *wsi, const tp__apireq *r, int *rc)
{
    if (r == NULL || r->len == 0) {
        *rc = fail(s, wsi, 400, "bad_request", "body: required (JSON)", 1, NULL);
        return NULL;
    }
    char ct[128];
    const char *type = tp__http_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, ct, sizeof ct);
    if (type != NULL && strncasecmp(type, "application/json", 16) != 0 &&
        strncasecmp(type, "application/merge-patch+json", 28) != 0) {
        *rc =
            fail(s, wsi, 400, "bad_request",
                 "Content-Type: must be application/json or application/merge-patch+json", 1, NULL);
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (v == NULL) {
        char m[300];
        snprintf(m, sizeof m, "body: not JSON: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        *rc = fail(s, wsi, 400, "bad_request", m, 1, NULL);
    }
    return v;
}

static int
dispatch(tp_server *s, struct lws *wsi, tp__apireq *r)
{
    tp__host *h = s->api->host;
    route rt;
    int method = r->method;
    tp_error err = {0, ""};
    json_t *out = NULL;
    int rc = 0, created = 0;
    char qb[8];
    int sync = query(wsi, "sync", qb, sizeof qb) != NULL && strcmp(qb, "1") == 0;
    int64_t im = if_match(wsi);
    if (im == -2)
        return fail(s, wsi, 400, "bad_request", "If-Match: must be a quoted rev, as ETag gives", 1,
                    NULL);
    if (split(r->path, &rt) != 0 || !is(&rt, 0, "v1") || rt.n < 2)
        return fail(s, wsi, 404, "not_found", "path: no such API path", 1, NULL);
    r->t0 = tp__ticket_last(s->hub);
    char ab[512];
    const char *after;
    size_t limit;

    if (is(&rt, 1, "schemas") && rt.n == 3) {
        if (method == M_GET) {
            if (tp__host_schema_get(h, rt.seg[2], &out, &err) != TP_OK)
                return fail_code(s, wsi, &err);
            return respond_json(wsi, 200, NULL, out, 1);
        }
        if (method != M_PUT)
            return allow(s, wsi, "GET, PUT");
        json_t *b = body_json(s, wsi, r, &rc);
        if (b == NULL)
            return rc;
        int c = tp__host_schema_put(h, rt.seg[2], b, &created, &err);
        json_decref(b);
        if (c != TP_OK)
            return fail_code(s, wsi, &err);
        json_t *o = json_pack("{s:s}", "name", rt.seg[2]);
        return respond_json(wsi, created ? 201 : 200, NULL, o, 1);
    }
    if (is(&rt, 1, "sync") && rt.n == 2) {
        if (method != M_POST)
            return allow(s, wsi, "POST");
        int n = tp_hub_sync(s->hub);
        if ((rc = committed(s, wsi, 0)) != 0)
            return rc > 0 ? 0 : -1;
        return respond_json(wsi, 200, NULL, json_pack("{s:i}", "published", n), 1);
    }
    if (is(&rt, 1, "tenants") && rt.n == 2) {
        if (method != M_GET)
            return allow(s, wsi, "GET");
        if (list_params(s, wsi, &limit, &after, ab, sizeof ab, &rc) != 0)
            return rc;
        if (tp__host_tenants(h, after, limit, &out, &err) != TP_OK)
            return fail_code(s, wsi, &err);
        return respond_json(wsi, 200, NULL, out, 1);
    }
    if (is(&rt, 1, "tenants") && rt.n == 3) {
        const char *t = rt.seg[2];
        if (method == M_GET) {
            if (tp__host_tenant_get(h, t, &out, &err) != TP_OK)
                return fail_code(s, wsi, &err);
            return respond_json(wsi, 200, NULL, out, 1);
        }
        if (method != M_DELETE)
            return allow(s, wsi, "GET, DELETE");
        if (tp__host_tenant_delete(h, t, &err) != TP_OK)
            return fail_code(s, wsi, &err);
        if ((rc = committed(s, wsi, sync)) != 0)
            return rc > 0 ? 0 : -1;
        return respond(wsi, 204, NULL, NULL, 0, 1);
    }
    if (is(&rt, 1, "tenants") && rt.n == 4 && is(&rt, 3, "connections")) {
        const char *t = rt.seg[2];
        if (method == M_GET) {
            if (list_params(s, wsi, &limit, &after, ab, sizeof ab, &rc) != 0)
                return rc;
            if (tp__host_connections(h, t, after, limit, describe_conn, NULL, &out, &err) != TP_OK)
                return fail_code(s, wsi, &err);
            return respond_json(wsi, 200, NULL, out, 1);
        }
        if (method != M_DELETE)
            return allow(s, wsi, "GET, DELETE");
        if (tp__host_connections(h, t, NULL, 1, NULL, NULL, &out, &err) != TP_OK)
            return fail_code(s, wsi, &err); /* 404 for a tenant that does not exist */
        json_decref(out);
        int n = tp__host_close_everywhere(h, t, 4403);
        if ((rc = committed(s, wsi, 0)) != 0)
            return rc > 0 ? 0 : -1;
        return respond_json(wsi, 200, NULL, json_pack("{s:i}", "closed", n), 1);
    }
    int shared = is(&rt, 1, "shared") && rt.n == 3;
    int priv = is(&rt, 1, "tenants") && rt.n == 5 && is(&rt, 3, "models");
    if (shared || priv) {
        const char *t = priv ? rt.seg[2] : NULL;
        const char *id = priv ? rt.seg[4] : rt.seg[2];
        if (method == M_GET) {
            /* A cluster node read the model from the log first (run()). */
            if (tp__host_model_get(h, shared, t, id, &out, &err) != TP_OK)
                return fail_code(s, wsi, &err);
            return model_answer(wsi, 200, out);
        }
        if (method == M_DELETE) {
            if (tp__host_model_delete(h, shared, t, id, &err) != TP_OK)
                return fail_code(s, wsi, &err);
            if ((rc = committed(s, wsi, sync)) != 0)
                return rc > 0 ? 0 : -1;
            return respond(wsi, 204, NULL, NULL, 0, 1);
        }
        if (method != M_PUT && method != M_PATCH)
            return allow(s, wsi, "GET, PUT, PATCH, DELETE");
        json_t *b = body_json(s, wsi, r, &rc);
        if (b == NULL)
            return rc;
        r->model = 1;
        r->shared = shared;
        r->tenant = t;
        r->id = id;
        int c = method == M_PUT ? tp__host_model_put(h, shared, t, id, b, im, &created, &out, &err)
                                : tp__host_model_patch(h, shared, t, id, b, im, &out, &err);
        json_decref(b);
        if (c != TP_OK)
            return fail_code(s, wsi, &err);
        if ((rc = committed(s, wsi, sync)) != 0) {
            json_decref(out);
            return rc > 0 ? 0 : -1;
        }
        return model_answer(wsi, created ? 201 : 200, out);
    }
    if (is(&rt, 1, "shared") && rt.n == 4 && is(&rt, 3, "subscribers")) {
        if (method != M_GET)
            return allow(s, wsi, "GET");
        if (list_params(s, wsi, &limit, &after, ab, sizeof ab, &rc) != 0)
            return rc;
        if (tp__host_subscribers(h, rt.seg[2], after, limit, &out, &err) != TP_OK)
            return fail_code(s, wsi, &err);
        return respond_json(wsi, 200, NULL, out, 1);
    }
    if (is(&rt, 1, "shared") && rt.n == 5 && is(&rt, 3, "subscribers")) {
        if (method == M_DELETE) {
            if (tp__host_unsubscribe(h, rt.seg[2], rt.seg[4], &err) != TP_OK)
                return fail_code(s, wsi, &err);
            if ((rc = committed(s, wsi, sync)) != 0)
                return rc > 0 ? 0 : -1;
            return respond(wsi, 204, NULL, NULL, 0, 1);
        }
        if (method != M_PUT)
            return allow(s, wsi, "PUT, DELETE");
        json_t *b = body_json(s, wsi, r, &rc);
        if (b == NULL)
            return rc;
        int c = tp__host_subscribe(h, rt.seg[2], rt.seg[4], b, &err);
        json_t *o = c == TP_OK ? json_pack("{s:s, s:O}", "tenant", rt.seg[4], "access",
                                           json_object_get(b, "access"))
                               : NULL;
        json_decref(b);
        if (c != TP_OK)
            return fail_code(s, wsi, &err);
        if ((rc = committed(s, wsi, sync)) != 0) {
            json_decref(o);
            return rc > 0 ? 0 : -1;
        }
        return respond_json(wsi, 200, NULL, o, 1);
    }
    return fail(s, wsi, 404, "not_found", "path: no such API path", 1, NULL);
}

/* ---- Answers that wait for durability ---- */

void
tp__hostapi_durable(tp_server *s)
{
    if (s->api == NULL || s->api->waits == NULL)
        return;
    uint64_t released = tp__hub_released(s->hub);
    tp_error err = {0, ""};
    int failing = tp__hub_writable(s->hub, &err) != TP_OK;
    for (tp__apiwait *w = s->api->waits; w != NULL; w = w->next) {
        if (w->t1 != 0 && !w->due && (w->buf != NULL || w->req != NULL)) {
            tp_error oerr = {0, ""};
            int st = tp__ticket_state(s->hub, w->t0, w->t1, &oerr);
            if (st > 0)
                continue;
            if (st < 0 && w->req == NULL) {
                tp__free(w->buf);
                w->buf = NULL;
                tp__free(w->id);
                w->id = NULL; /* the error is the answer */
                (void)fail_order(s, w->wsi, &oerr);
                if (w->buf == NULL)
                    continue; /* out of memory: tried again later */
            }
            w->due = 1;
            lws_callback_on_writable(w->wsi);
            continue;
        }
        if (w->due || w->buf == NULL || (released < w->seq && !failing))
            continue;
        if (released < w->seq) {
            /* The commit failed: the change stays in memory and is stored
             * when the store recovers; the caller is told to retry (a
             * retried PUT or PATCH converges). */
            char m[400];
            snprintf(m, sizeof m, "storage: the change could not be stored (%s): retry",
                     err.message);
            json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", "unavailable", "message", m);
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            tp__free(w->buf);
            w->buf = NULL;
            if (text != NULL) {
                /* Built like any answer, kept in the waiter (w->buf). */
                respond(w->wsi, 503, "Retry-After: 1\r\n", text, strlen(text), 1);
                free(text);
            }
            if (w->buf == NULL)
                continue; /* out of memory: tried again at the next release */
        }
        w->due = 1;
        lws_callback_on_writable(w->wsi);
    }
}

int
tp__hostapi_writeable(tp_server *s, struct lws *wsi, void *user)
{
    tp__ws *ws = user;
    tp__apiwait *w = ws ? ws->wait : NULL;
    if (w == NULL || !w->due)
        return 0;
    if (w->req != NULL) {
        /* Caught up (or not: the log cannot be reached): a read answers
         * from what the node holds, a change is refused at once. */
        tp__apireq *r = w->req;
        tp_error err = {0, ""};
        int st = tp__ticket_state(s->hub, w->t0, w->t1, &err);
        w->req = NULL;
        wait_free(s, w);
        if (st < 0 && r->method != M_GET) {
            req_free(r);
            return fail_order(s, wsi, &err) == 0 ? 0 : -1;
        }
        return run(s, wsi, r);
    }
    if (w->id != NULL && s->api != NULL) {
        /* The model as it is now that the log has the change: its rev is
         * the log's (an answer built before the append had the old one). */
        json_t *out = NULL;
        tp_error err = {0, ""};
        if (tp__host_model_get(s->api->host, w->shared, w->tenant, w->id, &out, &err) == TP_OK) {
            json_object_del(out, "schema");
            json_object_del(out, "merge");
            int status = w->status;
            tp__free(w->buf);
            w->buf = NULL;
            tp__free(w->id);
            w->id = NULL;
            (void)model_answer(wsi, status, out);
            if (w->buf == NULL)
                return -1;
        }
    }
    int n = lws_write(wsi, w->buf + LWS_PRE, w->len, LWS_WRITE_HTTP_FINAL);
    int status = w->status, keep = w->keep;
    wait_free(s, w);
    if (s->api != NULL && status / 100 < 6)
        s->api->answers[status / 100]++;
    if (n < 0 || !keep)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/*
 * Dispatches a request. On a cluster node it is dispatched once the node
 * applied the catalog's version as it is when the request came
 * (tp__order_barrier: one Redis round trip, and the announcements still on
 * their way): a host that made a model through one node and then names it
 * through another finds it, and one that deleted it does not.
 */
static int
run(tp_server *s, struct lws *wsi, tp__apireq *r)
{
    tp__ws *ws = lws_wsi_user(wsi);
    int cluster = tp__hub_store(s->hub) == NULL;
    if (cluster && !r->again) {
        r->again = 1;
        uint64_t t0 = tp__ticket_last(s->hub);
        (void)tp__order_barrier(s->hub);
        /* A model's call (an If-Match, a patch checked before its turn)
         * starts from what the log has of it. */
        char copy[API_PATH_MAX];
        route rt;
        snprintf(copy, sizeof copy, "%s", r->path);
        if (split(copy, &rt) == 0 && is(&rt, 0, "v1")) {
            if (rt.n == 3 && is(&rt, 1, "shared"))
                (void)tp__order_refresh(s->hub, "", rt.seg[2]);
            else if (rt.n == 5 && is(&rt, 1, "tenants") && is(&rt, 3, "models"))
                (void)tp__order_refresh(s->hub, rt.seg[2], rt.seg[4]);
        }
        uint64_t t1 = tp__ticket_last(s->hub);
        tp__apiwait *w = t1 != t0 && ws != NULL && ws->wait == NULL ? wait_add(s, wsi, ws) : NULL;
        if (w != NULL) {
            w->t0 = t0;
            w->t1 = t1;
            w->req = r;
            return 0;
        }
    }
    s->api->current = cluster ? r : NULL;
    int rc = dispatch(s, wsi, r);
    s->api->current = NULL;
    req_free(r);
    return rc;
}

/* ---- lws callbacks ---- */
int
tp__hostapi_http(tp_server *s, struct lws *wsi, void *user, const char *uri)
{
    tp__ws *ws = user;
    int method = method_of(wsi);
    char cl[32];
    const char *len = tp__http_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof cl);
    /* Whether a body follows that we will not read: then the connection
     * closes after the answer instead of reading the body as a request. */
    int body_follows = (len != NULL && strcmp(len, "0") != 0) ||
                       lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    int keep = !body_follows;
    if (s->api == NULL)
        return fail(s, wsi, 404, "not_found",
                    "path: the host API is off (no admin token is configured)", keep, NULL);
    if (strcmp(uri, "/v1/openapi.json") == 0 && method == M_GET)
        return respond(wsi, 200, NULL, (const char *)tp__hostapi_openapi, tp__hostapi_openapi_len,
                       keep);
    if (has_control(uri))
        return fail(s, wsi, 400, "bad_request", "path: holds a control character", 0, NULL);
    if (strpbrk(uri, "%?") != NULL)
        return fail(s, wsi, 400, "bad_request", "path: holds an encoded '%' or '?' (ambiguous)", 0,
                    NULL);
    if (!authorized(s->api, wsi))
        return fail(s, wsi, 401, "unauthorized",
                    "Authorization: Bearer <admin token> is missing or wrong", keep,
                    "WWW-Authenticate: Bearer realm=\"transports\"\r\n");
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return fail(s, wsi, 411, "bad_request",
                    "Transfer-Encoding: bodies are read with Content-Length only", 0, NULL);
    size_t want = 0;
    if (len != NULL) {
        size_t i = 0;
        for (; len[i] >= '0' && len[i] <= '9' && i < 19; i++)
            want = want * 10 + (size_t)(len[i] - '0');
        if (i == 0 || len[i] != '\0')
            return fail(s, wsi, 400, "bad_request", "Content-Length: not a number", 0, NULL);
    }
    size_t max = tp__hub_limits(s->hub)->max_message_bytes;
    if (want > max) {
        char m[160];
        snprintf(m, sizeof m, "body: %zu bytes is over max_message_bytes (%zu)", want, max);
        return fail(s, wsi, 413, "too_large", m, 0, NULL);
    }
    tp__apireq *r = tp__calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->method = method;
    snprintf(r->path, sizeof r->path, "%s", uri);
    r->want = want;
    if (want == 0)
        return run(s, wsi, r);
    if ((r->body = tp__malloc(want)) == NULL) {
        req_free(r);
        return -1;
    }
    if (ws != NULL) {
        tp__hostapi_gone(ws);
        ws->api = r;
    } else {
        req_free(r);
        return -1;
    }
    /* A slow sender: the body must be whole within the handshake timeout. */
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)((s->handshake_timeout_ms + 999) / 1000));
    return 0;
}

int
tp__hostapi_body(tp_server *s, struct lws *wsi, void *user, const void *in, size_t len)
{
    (void)s;
    (void)wsi;
    tp__ws *ws = user;
    tp__apireq *r = ws ? ws->api : NULL;
    if (r == NULL)
        return -1;
    if (len > r->want - r->len) {
        r->too_large = 1; /* more than Content-Length said: lws would not, but bound it */
        return -1;
    }
    memcpy(r->body + r->len, in, len);
    r->len += len;
    return 0;
}

int
tp__hostapi_body_done(tp_server *s, struct lws *wsi, void *user)
{
    tp__ws *ws = user;
    tp__apireq *r = ws ? ws->api : NULL;
    if (r == NULL)
        return -1;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    ws->api = NULL;
    return run(s, wsi, r);
}

/* ---- /metrics ---- */

static void
line(tp__sb *sb, const char *name, const char *labels, uint64_t v)
{
    tp__sb_puts(sb, name);
    if (labels != NULL) {
        tp__sb_puts(sb, "{");
        tp__sb_puts(sb, labels);
        tp__sb_puts(sb, "}");
    }
    tp__sb_puts(sb, " ");
    tp__sb_int(sb, (int64_t)v);
    tp__sb_puts(sb, "\n");
}

void
tp__hostapi_metrics(tp_server *s, tp__sb *sb)
{
    if (s->api != NULL) {
        tp__sb_puts(sb, "# HELP transports_api_answers_total Host API answers, by status class.\n"
                        "# TYPE transports_api_answers_total counter\n");
        line(sb, "transports_api_answers_total", "class=\"2xx\"", s->api->answers[2]);
        line(sb, "transports_api_answers_total", "class=\"4xx\"", s->api->answers[4]);
        line(sb, "transports_api_answers_total", "class=\"5xx\"", s->api->answers[5]);
        tp__sb_puts(sb, "# HELP transports_api_unauthorized_total Host API requests refused "
                        "for a missing or wrong token.\n"
                        "# TYPE transports_api_unauthorized_total counter\n");
        line(sb, "transports_api_unauthorized_total", NULL, s->api->unauthorized);
    }
    uint64_t st[3];
    if (tp__webhooks_stats(s->webhooks, st)) {
        tp__sb_puts(sb, "# HELP transports_webhooks_delivered_total Webhook events the receiver "
                        "answered with a 2xx.\n# TYPE transports_webhooks_delivered_total "
                        "counter\n");
        line(sb, "transports_webhooks_delivered_total", NULL, st[0]);
        tp__sb_puts(sb, "# HELP transports_webhooks_failed_total Webhook deliveries that failed "
                        "(retried).\n# TYPE transports_webhooks_failed_total counter\n");
        line(sb, "transports_webhooks_failed_total", NULL, st[1]);
        tp__sb_puts(sb, "# HELP transports_webhooks_pending Webhook events not yet delivered.\n"
                        "# TYPE transports_webhooks_pending gauge\n");
        line(sb, "transports_webhooks_pending", NULL, st[2]);
    }
}
