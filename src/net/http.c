/*
 * HTTP on the server's listener: the WebSocket handshake's checks (each
 * refusal with the status PROTOCOL.md names, before any upgrade), and the
 * plain endpoints GET /healthz and GET /metrics, and the files of
 * static_dir (the demo page).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "net/hostapi.h"
#include "net/net.h"
#include "util/alloc.h"
#include "util/buf.h"

static const int statuses[TP__STATUSES] = {400, 401, 403, 404, 405, 429, 431, 503, 0};

void
tp__count_refused(tp_server *s, int status)
{
    int i = 0;
    while (i < TP__STATUSES - 1 && statuses[i] != status)
        i++;
    s->refused[i]++;
}

static const char *
status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

int
tp__http_respond(struct lws *wsi, int status, const char *type, const char *extra, const char *body,
                 size_t len)
{
    char head[512];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, status_text(status), type, len, extra ? extra : "");
    if (h < 0 || (size_t)h >= sizeof head)
        return -1;
    unsigned char *buf = tp__malloc(LWS_PRE + (size_t)h + len);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, head, (size_t)h);
    memcpy(buf + LWS_PRE + h, body, len);
    /* One write for the whole response: lws keeps what the socket does
     * not take at once and sends it before it closes. */
    int w = lws_write(wsi, buf + LWS_PRE, (size_t)h + len, LWS_WRITE_HTTP_FINAL);
    tp__free(buf);
    return w < 0 ? -1 : 0;
}

/* A refused handshake: the status, a one-line reason, logged and counted. */
static int
refuse(tp_server *s, struct lws *wsi, int status, const char *extra, const char *why,
       const char *path)
{
    tp__count_refused(s, status);
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    char qp[TP__LOG_VALUE_MAX];
    tp__log(s->log, TP_LOG_INFO, "refused status=%d path=%s peer=%s: %s", status,
            tp__log_value(path, qp, sizeof qp), peer, why);
    char body[256];
    int n = snprintf(body, sizeof body, "%s\n", why);
    if (tp__http_respond(wsi, status, "text/plain; charset=utf-8", extra, body,
                         n < 0 ? 0 : (size_t)n) != 0)
        return -1;
    return 1; /* lws: a response was written, finish the transaction */
}

const char *
tp__http_header(struct lws *wsi, enum lws_token_indexes t, char *buf, int n)
{
    if (lws_hdr_total_length(wsi, t) <= 0 || lws_hdr_copy(wsi, buf, n, t) < 0)
        return NULL;
    return buf;
}

int
tp__http_bearer_ok(struct lws *wsi, const char *token, size_t len)
{
    char v[1024];
    const char *a = tp__http_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, v, sizeof v);
    if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0)
        return 0;
    const char *t = a + 7;
    while (*t == ' ')
        t++;
    /* A length mismatch compares the token with itself, so that the time
     * tells neither the content nor the length. */
    int same = strlen(t) == len;
    int diff = CRYPTO_memcmp(same ? t : token, token, len);
    OPENSSL_cleanse(v, sizeof v);
    return same && diff == 0;
}

/* tp_request_header's lookup: any header, by name (case-insensitive). */
static int
lookup_header(void *user, const char *name, char *buf, size_t n)
{
    struct lws *wsi = user;
    char lname[128];
    size_t len = strlen(name);
    if (len == 0 || len + 2 > sizeof lname)
        return -1;
    for (size_t i = 0; i < len; i++)
        lname[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    lname[len] = ':';
    lname[len + 1] = '\0';
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const unsigned char *tn = lws_token_to_string((enum lws_token_indexes)t);
        if (tn != NULL && strcmp((const char *)tn, lname) == 0)
            return tp__http_header(wsi, (enum lws_token_indexes)t, buf, (int)n) ? 0 : -1;
    }
    if (lws_hdr_custom_length(wsi, lname, (int)len + 1) < 0)
        return -1;
    return lws_hdr_custom_copy(wsi, buf, (int)n, lname, (int)len + 1) < 0 ? -1 : 0;
}

/* Sec-WebSocket-Protocol: a comma-separated list of tokens (RFC 6455, 4.1). */
static int
offers_ours(const char *list)
{
    const char *p = list;
    const size_t ours = strlen(TP__SUBPROTOCOL);
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - start) == ours && strncmp(start, TP__SUBPROTOCOL, ours) == 0)
            return 1;
    }
    return 0;
}

static int
origin_allowed(const tp_server *s, const char *origin)
{
    /* Origin guards browsers; other clients send none and may forge it. */
    if (s->origins == NULL || origin == NULL)
        return 1;
    for (size_t i = 0; s->origins[i] != NULL; i++)
        if (strcasecmp(s->origins[i], origin) == 0)
            return 1;
    return 0;
}

/* Every query parameter lws split out ("name=value", decoded by lws). The
 * buffer holds any fragment lws keeps (a token is up to 8 KiB). */
static int
set_query(struct lws *wsi, tp_request *req)
{
    char *frag = tp__malloc(TP__HEADER_MAX);
    if (frag == NULL)
        return -1;
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, TP__HEADER_MAX, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0) {
            tp__free(frag);
            return 0; /* no more fragments */
        }
        char *eq = strchr(frag, '=');
        const char *value = "";
        if (eq != NULL) {
            *eq = '\0';
            value = eq + 1;
        }
        /* When a name repeats, the first value wins (as tp__query_parse). */
        if (tp_request_query(req, frag) == NULL && tp_request_set_query(req, frag, value) != 0) {
            tp__free(frag);
            return -1;
        }
    }
}

static int
has_control(const char *p)
{
    for (; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

/*
 * Whether the request line arrived whole. lws 4.1.6 decodes percent escapes
 * while it reads the request line, before it splits the request into lines
 * (lws_parse_urldecode): an encoded LF (%0a, in the path or the query) ends
 * the request line there and the rest of it is read as a header line (an
 * `Origin` the client never sent), an encoded CR drops the rest of the line.
 * Either way the version that ends a request line is lost: it is only set
 * from the request line, and after an injected line break the one line left
 * can be a forged header or the version, not both. So every check looks at
 * this first, before any header. (A %00 never gets here: lws drops the
 * connection.)
 */
static int
request_line_whole(struct lws *wsi, int upgrade)
{
    char v[16];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP) <= 0 ||
        lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP) < 0)
        return 0;
    return strcmp(v, "HTTP/1.1") == 0 || (!upgrade && strcmp(v, "HTTP/1.0") == 0);
}

/* The query's parameters, as lws split and decoded them, hold no control
 * characters (a decoded CR or LF is caught by request_line_whole). */
static int
query_clean(struct lws *wsi)
{
    char *frag = tp__malloc(TP__HEADER_MAX);
    if (frag == NULL)
        return 0;
    int clean = 1;
    for (int i = 0;
         lws_hdr_copy_fragment(wsi, frag, TP__HEADER_MAX, WSI_TOKEN_HTTP_URI_ARGS, i) >= 0; i++)
        if (has_control(frag))
            clean = 0;
    tp__free(frag);
    return clean;
}

/*
 * The handshake's token (PROTOCOL.md): `Authorization: Bearer T`, or the
 * query parameter `token` (browsers cannot set headers on a WebSocket).
 * Returns 0 with *out (new) set, 0 with *out NULL when there is none, 400
 * when both are given (RFC 6750 2: one method only), 401 when the
 * Authorization header is not a Bearer credential, 503 out of memory.
 */
static int
find_token(tp_request *req, struct lws *wsi, char **out)
{
    *out = NULL;
    const char *q = tp_request_query(req, "token");
    int hlen = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (hlen > 0 && q != NULL)
        return 400;
    if (q != NULL) {
        *out = tp__strdup(q);
        return *out != NULL ? 0 : 503;
    }
    if (hlen <= 0)
        return 0;
    char *h = tp__malloc((size_t)hlen + 1);
    if (h == NULL)
        return 503;
    if (lws_hdr_copy(wsi, h, hlen + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0) {
        tp__free(h);
        return 401;
    }
    /* RFC 6750 2.1: the scheme is case-insensitive, then one or more spaces. */
    size_t i = 0;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        tp__free(h);
        return 401;
    }
    i = 7;
    while (h[i] == ' ')
        i++;
    size_t n = strlen(h + i);
    while (n > 0 && (h[i + n - 1] == ' ' || h[i + n - 1] == '\t'))
        n--;
    memmove(h, h + i, n);
    h[n] = '\0';
    *out = h;
    return 0;
}

/*
 * Token authentication (tp_hub_config.verify): the tenant is the
 * credential's. Returns 0 with cred filled, or a refusal already written
 * (1) or failed (-1). Neither the token nor a part of it is logged or
 * answered: the path logged is lws's, which never holds the query.
 */
static int
authenticate(tp_server *s, struct lws *wsi, tp_request *req, const char *path, tp_credential *cred)
{
    static const char challenge[] = "WWW-Authenticate: Bearer realm=\"transports\"\r\n";
    static const char invalid[] =
        "WWW-Authenticate: Bearer realm=\"transports\", error=\"invalid_token\"\r\n";
    char *token = NULL;
    int st = find_token(req, wsi, &token);
    if (st == 400)
        return refuse(s, wsi, 400, NULL,
                      "token: give it once, in the Authorization header or the query", path);
    if (st == 503)
        return refuse(s, wsi, 503, NULL, "out of memory", path);
    if (st == 401)
        return refuse(s, wsi, 401, invalid, "Authorization: expected \"Bearer <token>\"", path);
    if (token == NULL || token[0] == '\0') {
        tp__free(token);
        s->auth_refused[0]++;
        return refuse(s, wsi, 401, challenge,
                      "a token is required (Authorization: Bearer, or ?token=)", path);
    }
    tp_error err = {0, ""};
    memset(cred, 0, sizeof *cred);
    int rc = tp__hub_verify(s->hub, token, strlen(token), cred, &err);
    /* The token leaves memory at once (it could otherwise linger in a
     * freed block that a later log line's buffer reuses). */
    explicit_bzero(token, strlen(token));
    tp__free(token);
    if (rc != TP_OK) {
        s->auth_refused[1]++;
        if (rc != TP_EFORBIDDEN)
            return refuse(s, wsi, 503, NULL, "the token could not be checked", path);
        char why[sizeof err.message];
        snprintf(why, sizeof why, "%s", err.message[0] != '\0' ? err.message : "token refused");
        return refuse(s, wsi, 401, invalid, why, path);
    }
    cred->tenant[sizeof cred->tenant - 1] = '\0';
    /* A route's {tenant} names the token's tenant, byte for byte (decoded
     * once): a look-alike, another case or encoding is another tenant. */
    const char *p = tp_request_path_param(req, "tenant");
    if (p != NULL && strcmp(p, cred->tenant) != 0) {
        s->auth_refused[2]++;
        return refuse(s, wsi, 403, NULL, "the token is for another tenant than the path names",
                      path);
    }
    s->auth_accepted++;
    return 0;
}

/*
 * The client address a connection counts against: its TCP peer, or, when
 * that is a trusted proxy, the rightmost address of client_address_header
 * that is not a trusted proxy (nginx's real_ip_recursive: each proxy
 * appends the address it saw, and only what trusted ones wrote is believed).
 * *out is NULL for a trusted proxy's own request (no header) and for a
 * connection that is not over IP: not counted. Returns 0, 400 (the header
 * holds something that is not an address) or 503 (out of memory).
 */
static int
client_peer(tp_server *s, struct lws *wsi, tp__peer **out)
{
    *out = NULL;
    tp__addr a;
    if (tp__tcp_peer(wsi, &a) != 0)
        return 0;
    if (tp__peer_trusted(s, &a)) {
        char v[8192]; /* as much as lws keeps of all headers */
        if (s->address_header == NULL || lookup_header(wsi, s->address_header, v, sizeof v) != 0)
            return 0;
        size_t end = strlen(v);
        for (;;) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',')
                start--;
            size_t b = start, e = end;
            while (b < e && (v[b] == ' ' || v[b] == '\t'))
                b++;
            while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                e--;
            if (tp__addr_parse(v + b, e - b, &a) != 0)
                return 400;
            if (!tp__peer_trusted(s, &a) || start == 0)
                break;
            end = start - 1;
        }
    }
    *out = tp__peer_get(s, &a);
    return *out != NULL ? 0 : 503;
}

int
tp__http_confirm_upgrade(tp_server *s, struct lws *wsi)
{
    char path[1024], buf[1024];
    if (tp__http_header(wsi, WSI_TOKEN_GET_URI, path, sizeof path) == NULL)
        return refuse(s, wsi, 400, NULL, "a WebSocket handshake is a GET", "-");
    if (!request_line_whole(wsi, 1) || has_control(path) || !query_clean(wsi))
        return refuse(s, wsi, 400, NULL,
                      "the request line holds an encoded control character (CR, LF, ...) "
                      "or is not HTTP/1.1",
                      path);
    /* lws decoded the path once; a '%' left in it was sent as %25, and a
     * path parameter holding it would name another key to anything that
     * decodes it again ("/ws/%2562ob" is not bob's); a '?' was sent as %3F
     * and would start a query once the path is written out again. */
    if (strpbrk(path, "%?") != NULL)
        return refuse(s, wsi, 400, NULL, "the path holds an encoded '%' or '?' (ambiguous)", path);
    if (s->stopping)
        return refuse(s, wsi, 503, NULL, "the server is shutting down", path);
    /* RFC 6455, 4.2.1 and 4.4: the key decodes to 16 bytes; version 13
     * only, and a refusal names it. (RFC 6455 suggests 426 for another
     * version; PROTOCOL.md's table has 400 for every bad handshake.) */
    const char *version = tp__http_header(wsi, WSI_TOKEN_VERSION, buf, sizeof buf);
    if (version == NULL || strcmp(version, "13") != 0)
        return refuse(s, wsi, 400, "Sec-WebSocket-Version: 13\r\n",
                      "Sec-WebSocket-Version: 13 is required", path);
    char key[64];
    const char *k = tp__http_header(wsi, WSI_TOKEN_KEY, buf, sizeof buf);
    if (k == NULL || strlen(k) != 24 || lws_b64_decode_string(k, key, sizeof key) != 16)
        return refuse(s, wsi, 400, NULL, "Sec-WebSocket-Key: 16 bytes in base64 are required",
                      path);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HOST) <= 0)
        return refuse(s, wsi, 400, NULL, "Host: required", path);
    const char *offered = tp__http_header(wsi, WSI_TOKEN_PROTOCOL, buf, sizeof buf);
    if (offered != NULL && !offers_ours(offered))
        return refuse(s, wsi, 400, NULL, "Sec-WebSocket-Protocol: transports.v1 is not offered",
                      path);
    const char *origin = tp__http_header(wsi, WSI_TOKEN_ORIGIN, buf, sizeof buf);
    if (!origin_allowed(s, origin))
        return refuse(s, wsi, 403, NULL, "Origin: not allowed", path);
    if (origin != NULL && s->origins == NULL && tp__hub_has_verify(s->hub) && !s->warned_origin) {
        /* Once: a browser is connecting with tokens and any site may do so. */
        s->warned_origin = 1;
        tp__log(s->log, TP_LOG_WARN,
                "a browser handshake (Origin) and no origins allowlist: any site's page "
                "holding a token can connect with it");
    }

    tp_request *req = tp_request_new(path);
    if (req == NULL)
        return refuse(s, wsi, 503, NULL, "out of memory", path);
    int rc = tp__route_match_decoded(s->route, path, req);
    if (rc == TP_OK && set_query(wsi, req) != 0)
        rc = TP_ENOMEM;
    if (rc != TP_OK) {
        tp_request_free(req);
        return rc == TP_ENOTFOUND ? refuse(s, wsi, 404, NULL, "no route matches the path", path)
                                  : refuse(s, wsi, 503, NULL, "out of memory", path);
    }
    if (s->nconns >= s->max_connections) {
        tp_request_free(req);
        return refuse(s, wsi, 503, NULL, "the server's connection limit is reached", path);
    }
    tp__request_set_lookup(req, lookup_header, wsi);
    tp_credential cred;
    const char *tenant;
    if (tp__hub_has_verify(s->hub)) {
        int a = authenticate(s, wsi, req, path, &cred);
        if (a != 0) {
            tp_request_free(req);
            return a;
        }
        tenant = cred.tenant;
    } else if ((tenant = tp_hub_key(s->hub, req)) == NULL) {
        tp_request_free(req);
        return refuse(s, wsi, 403, NULL, "the key function refused the connection", path);
    }
    if (!tp__valid_key(tenant) || has_control(tenant)) {
        tp_request_free(req);
        return refuse(s, wsi, 400, NULL,
                      "tenant: must be 1 to 256 bytes of UTF-8 without control characters", path);
    }
    if (tp__hub_tenant_conns(s->hub, tenant) >= s->max_per_tenant) {
        tp_request_free(req);
        return refuse(s, wsi, 503, NULL, "the tenant's connection limit is reached", path);
    }
    tp__peer *peer;
    int st = client_peer(s, wsi, &peer);
    if (st != 0) {
        tp_request_free(req);
        return refuse(s, wsi, st, NULL,
                      st == 400 ? "the client address header holds no address" : "out of memory",
                      path);
    }
    if (peer != NULL && peer->conns >= s->max_per_address) {
        tp_request_free(req);
        tp__peer_put(s, peer);
        /* 429 rather than 503: the limit is this client's, not the
         * server's; clients retry it with backoff like a 503. */
        return refuse(s, wsi, 429, "Retry-After: 1\r\n",
                      "this address's connection limit is reached", path);
    }
    const char *resume = tp_request_query(req, "resume");
    tp__free(s->pending_tenant);
    s->pending_tenant = tp__strdup(tenant);
    s->pending_flags = resume != NULL && strcmp(resume, "1") == 0 ? TP_CONN_RESUME : 0;
    s->pending_expiry = tp__hub_has_verify(s->hub) ? cred.expires_at_ms : 0;
    tp_request_free(req);
    if (s->pending_tenant == NULL) {
        tp__peer_put(s, peer);
        return refuse(s, wsi, 503, NULL, "out of memory", path);
    }
    /* lws goes on with the upgrade at once: established() picks this up,
     * the connection already counted against its address. */
    if (s->pending_addr != NULL) { /* a handshake lws never established */
        s->pending_addr->conns--;
        tp__peer_put(s, s->pending_addr);
    }
    if (peer != NULL)
        peer->conns++;
    s->pending_addr = peer;
    s->pending_wsi = wsi;
    return 0;
}

/* ---- /metrics ---- */

static void
metric(tp__sb *sb, const char *name, const char *type, const char *help)
{
    tp__sb_puts(sb, "# HELP ");
    tp__sb_puts(sb, name);
    tp__sb_puts(sb, " ");
    tp__sb_puts(sb, help);
    tp__sb_puts(sb, "\n# TYPE ");
    tp__sb_puts(sb, name);
    tp__sb_puts(sb, " ");
    tp__sb_puts(sb, type);
    tp__sb_puts(sb, "\n");
}

static void
sample(tp__sb *sb, const char *name, const char *labels, uint64_t v)
{
    tp__sb_puts(sb, name);
    if (labels != NULL && *labels != '\0') {
        tp__sb_puts(sb, "{");
        tp__sb_puts(sb, labels);
        tp__sb_puts(sb, "}");
    }
    tp__sb_puts(sb, " ");
    tp__sb_int(sb, (int64_t)v);
    tp__sb_puts(sb, "\n");
}

static void
gauge(tp__sb *sb, const char *name, const char *help, uint64_t v)
{
    metric(sb, name, "gauge", help);
    sample(sb, name, NULL, v);
}

static void
counter(tp__sb *sb, const char *name, const char *help, uint64_t v)
{
    metric(sb, name, "counter", help);
    sample(sb, name, NULL, v);
}

TP_API char *
tp_server_metrics(tp_server *s)
{
    tp_hub_stats st;
    tp_hub_get_stats(s->hub, &st);
    tp__sb sb;
    tp__sb_init(&sb, 4096);
    char labels[64];
    gauge(&sb, "transports_connections", "WebSocket connections open.", s->nconns);
    counter(&sb, "transports_connections_opened_total", "WebSocket connections accepted.",
            s->opened);
    gauge(&sb, "transports_tenants", "Tenant sessions alive.", st.tenants);
    metric(&sb, "transports_models", "gauge", "Models held, by scope.");
    sample(&sb, "transports_models", "scope=\"private\"", st.models_private);
    sample(&sb, "transports_models", "scope=\"shared\"", st.models_shared);
    counter(&sb, "transports_writes_accepted_total", "Writes applied.", st.writes_accepted);
    metric(&sb, "transports_refused_total", "counter",
           "Messages refused with an error, by PROTOCOL.md code.");
    for (int code = TP_EBADREQUEST; code >= TP_EINTERNAL; code--) {
        snprintf(labels, sizeof labels, "code=\"%s\"", tp_error_name(code));
        sample(&sb, "transports_refused_total", labels, st.writes_refused[-code]);
    }
    counter(&sb, "transports_deliveries_total", "Messages put in outboxes.", st.deliveries);
    gauge(&sb, "transports_outbox_bytes", "Bytes waiting in all outboxes.", st.outbox_bytes);
    counter(&sb, "transports_frames_sent_total", "WebSocket frames sent.", s->frames_sent);
    counter(&sb, "transports_writes_to_sockets_total",
            "Socket writes (each carries every frame a connection had).", s->send_calls);
    counter(&sb, "transports_bytes_sent_total", "Bytes of frames sent.", s->bytes_sent);
    metric(&sb, "transports_closes_total", "counter", "Connections closed, by close code.");
    for (int i = 0; i < TP__CLOSE_CODES; i++) {
        if (tp__close_codes[i] != 0)
            snprintf(labels, sizeof labels, "code=\"%d\"", tp__close_codes[i]);
        else
            snprintf(labels, sizeof labels, "code=\"other\"");
        sample(&sb, "transports_closes_total", labels, s->closes[i]);
    }
    metric(&sb, "transports_handshakes_refused_total", "counter",
           "WebSocket handshakes refused, by HTTP status.");
    for (int i = 0; i < TP__STATUSES; i++) {
        if (statuses[i] != 0)
            snprintf(labels, sizeof labels, "status=\"%d\"", statuses[i]);
        else
            snprintf(labels, sizeof labels, "status=\"other\"");
        sample(&sb, "transports_handshakes_refused_total", labels, s->refused[i]);
    }
    gauge(&sb, "transports_client_addresses",
          "Client addresses holding a connection or a handshake.", s->peers.len);
    counter(&sb, "transports_handshakes_dropped_total",
            "TCP connections closed at accept: their address had "
            "max_pending_handshakes_per_address handshakes pending.",
            s->dropped_pending);
    counter(&sb, "transports_accept_pauses_total",
            "Times accepting paused: out of file descriptors (or memory) at accept.",
            s->accept_pauses);
    gauge(&sb, "transports_unfinished_bytes",
          "Bytes buffered for messages begun and not ended (max_unfinished_bytes bounds them).",
          s->unfinished_bytes);
    metric(&sb, "transports_unfinished_closed_total", "counter",
           "Connections closed for an unfinished message, by reason.");
    sample(&sb, "transports_unfinished_closed_total", "reason=\"timeout\"",
           s->unfinished_closed[0]);
    sample(&sb, "transports_unfinished_closed_total", "reason=\"bytes\"", s->unfinished_closed[1]);
    if (tp__hub_has_verify(s->hub)) {
        counter(&sb, "transports_auth_accepted_total", "Handshakes whose token was accepted.",
                s->auth_accepted);
        metric(&sb, "transports_auth_refused_total", "counter",
               "Handshakes refused for their token, by reason (no tenant is ever named).");
        sample(&sb, "transports_auth_refused_total", "reason=\"missing\"", s->auth_refused[0]);
        sample(&sb, "transports_auth_refused_total", "reason=\"invalid\"", s->auth_refused[1]);
        sample(&sb, "transports_auth_refused_total", "reason=\"tenant_mismatch\"",
               s->auth_refused[2]);
        counter(&sb, "transports_auth_expired_total",
                "Connections closed with 4401: their credential expired.", s->expired);
    }
    counter(&sb, "transports_syncs_total", "Syncs that published host changes.", st.syncs);
    counter(&sb, "transports_store_commits_total", "Store transactions committed.", st.commits);
    counter(&sb, "transports_store_commit_failures_total",
            "Store transactions that failed (what clients changed since was undone).",
            st.commit_failures);
    counter(&sb, "transports_tenants_evicted_total", "Idle tenants evicted from memory.",
            st.evictions);
    counter(&sb, "transports_tenants_loaded_total", "Tenants loaded from the store.", st.loads);
    gauge(&sb, "transports_resident_bytes",
          "What tenants in memory hold, as the last eviction estimated it.", st.resident_bytes);
    metric(&sb, "transports_sync_tick_seconds", "histogram", "Duration of autosync ticks.");
    static const char *const bounds[TP__TICK_BUCKETS] = {"1e-05",   "2.5e-05", "5e-05", "0.0001",
                                                         "0.00025", "0.0005",  "0.001", "0.0025",
                                                         "0.005",   "0.01",    "0.025", "0.1"};
    uint64_t cum = 0;
    for (int i = 0; i < TP__TICK_BUCKETS; i++) {
        cum += s->tick_buckets[i];
        snprintf(labels, sizeof labels, "le=\"%s\"", bounds[i]);
        sample(&sb, "transports_sync_tick_seconds_bucket", labels, cum);
    }
    sample(&sb, "transports_sync_tick_seconds_bucket", "le=\"+Inf\"", s->tick_count);
    char sum[64];
    snprintf(sum, sizeof sum, "transports_sync_tick_seconds_sum %.9f\n", s->tick_sum);
    tp__sb_puts(&sb, sum);
    sample(&sb, "transports_sync_tick_seconds_count", NULL, s->tick_count);
    tp__hostapi_metrics(s, &sb); /* the host API's and the webhooks' (hostapi.c) */
    tp__buf *b = tp__sb_finish(&sb);
    if (b == NULL)
        return NULL;
    char *out = tp__malloc(b->len + 1);
    if (out != NULL) {
        memcpy(out, b->data, b->len);
        out[b->len] = '\0';
    }
    tp__buf_unref(b);
    return out;
}

/* ---- Plain HTTP ---- */

static int
route_matches(const tp_server *s, const char *path)
{
    tp_request *req = tp_request_new(path);
    int hit = req != NULL && tp__route_match_decoded(s->route, path, req) == TP_OK;
    tp_request_free(req);
    return hit;
}

/* ---- Static files (static_dir) ---- */

/* The content type of a file name, or NULL: a file of another kind is not
 * served (nothing in a static directory is served by accident). */
static const char *
static_type(const char *name)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},
        {".d.ts", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    if (dot == NULL || strchr(dot, '/') != NULL)
        return NULL;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return NULL;
}

/*
 * static_path_ok refuses every path that could leave the directory or reach
 * a hidden file: each segment is non-empty, made of [A-Za-z0-9._-], and does
 * not start with '.' (so no "..", no ".git"). lws has already decoded %XX.
 */
static int
static_path_ok(const char *rel)
{
    size_t n = strlen(rel);
    if (n == 0 || n > TP__STATIC_PATH_MAX)
        return 0;
    int seg_start = 1;
    for (const char *p = rel; *p != '\0'; p++) {
        char ch = *p;
        if (ch == '/') {
            if (seg_start)
                return 0; /* an empty segment */
            seg_start = 1;
            continue;
        }
        if (seg_start && ch == '.')
            return 0;
        seg_start = 0;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return !seg_start;
}

/*
 * serve_static answers GET uri from static_dir. Returns 1 with *rc set when
 * it answered, 0 when the path is not a file served here (the caller's 404).
 * The file is read whole on the loop: files are small (at most
 * TP__STATIC_MAX_BYTES) and local, and a demo page is not a CDN.
 */
static int
serve_static(tp_server *s, struct lws *wsi, const char *uri, int *rc)
{
    if (s->static_dir == NULL || uri[0] != '/')
        return 0;
    const char *rel = strcmp(uri, "/") == 0 ? "index.html" : uri + 1;
    const char *type = static_type(rel);
    if (!static_path_ok(rel) || type == NULL)
        return 0;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", s->static_dir, rel);
    if (n < 0 || (size_t)n >= sizeof path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return 0;
    struct stat st;
    char *body = NULL;
    ssize_t got = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    if (st.st_size > TP__STATIC_MAX_BYTES) {
        close(fd);
        static const char msg[] = "the file is larger than this server serves\n";
        tp__log(s->log, TP_LOG_WARN, "static file over %d bytes: %s", TP__STATIC_MAX_BYTES, rel);
        *rc = tp__http_respond(wsi, 404, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
        return 1;
    }
    body = tp__malloc((size_t)st.st_size + 1);
    if (body != NULL) {
        while (got < st.st_size) {
            ssize_t r = read(fd, body + got, (size_t)(st.st_size - got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += r;
        }
    }
    close(fd);
    if (body == NULL || got != st.st_size) {
        tp__free(body);
        static const char msg[] = "the file cannot be read\n";
        *rc = tp__http_respond(wsi, 500, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
        return 1;
    }
    *rc =
        tp__http_respond(wsi, 200, type, "X-Content-Type-Options: nosniff\r\n", body, (size_t)got);
    tp__free(body);
    return 1;
}

int
tp__http_serve(tp_server *s, struct lws *wsi, const char *uri)
{
    int get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    int rc;
    if (!get) {
        static const char msg[] = "only GET is served here\n";
        rc = tp__http_respond(wsi, 405, "text/plain; charset=utf-8", "Allow: GET\r\n", msg,
                              sizeof msg - 1);
    } else if (!request_line_whole(wsi, 0) || has_control(uri) || !query_clean(wsi)) {
        static const char msg[] = "the request line holds an encoded control character\n";
        tp__count_refused(s, 400);
        rc = tp__http_respond(wsi, 400, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
    } else if (strcmp(uri, "/healthz") == 0) {
        /* A load balancer's question is whether writes can be served: with
         * a store whose last commit failed (a full disk), they cannot. */
        static const char *const bodies[] = {
            [TP__STORE_NONE] = "{\"status\":\"ok\",\"storage\":\"memory\"}\n",
            [TP__STORE_OK] = "{\"status\":\"ok\",\"storage\":\"ok\"}\n",
            [TP__STORE_FAILING] = "{\"status\":\"failing\",\"storage\":\"failing\"}\n",
        };
        int st = tp__hub_store_state(s->hub);
        rc = tp__http_respond(wsi, st == TP__STORE_FAILING ? 503 : 200, "application/json", NULL,
                              bodies[st], strlen(bodies[st]));
    } else if (strcmp(uri, "/metrics") == 0 && s->metrics_token != NULL &&
               !tp__http_bearer_ok(wsi, s->metrics_token, strlen(s->metrics_token))) {
        static const char msg[] = "/metrics needs Authorization: Bearer <metrics token>\n";
        rc =
            tp__http_respond(wsi, 401, "text/plain; charset=utf-8",
                             "WWW-Authenticate: Bearer realm=\"metrics\"\r\n", msg, sizeof msg - 1);
    } else if (strcmp(uri, "/metrics") == 0) {
        char *m = tp_server_metrics(s);
        if (m == NULL)
            return -1;
        rc = tp__http_respond(wsi, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, m,
                              strlen(m));
        tp__free(m);
    } else if (route_matches(s, uri)) {
        /* The WebSocket route asked without an upgrade (PROTOCOL.md: 400). */
        static const char msg[] = "a WebSocket handshake is required here\n";
        tp__count_refused(s, 400);
        rc = tp__http_respond(wsi, 400, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
    } else if (serve_static(s, wsi, uri, &rc)) {
        /* answered from static_dir */
    } else {
        static const char msg[] = "not found\n";
        rc = tp__http_respond(wsi, 404, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
    }
    if (rc != 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
