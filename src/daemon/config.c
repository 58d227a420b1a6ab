/*
 * The daemon's configuration file: every key is checked for its type and
 * range, unknown keys are refused (a typo must not silently change
 * behaviour), and every refusal names the file, the JSON path and the
 * reason, so that the one line transportsd prints is enough to fix it.
 */
#include "daemon/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "cluster/redis.h"
#include "core/route.h"
#include "daemon/luamerge.h"
#include "util/addr.h"
#include "util/error.h"

/* Tenant keys, model ids and sids: the hub takes 1 to 256 bytes (transports.h). */
#define KEY_MAX 256

/* Where the check is: the JSON path grows and shrinks as it descends. */
typedef struct ctx {
    const char *source;
    tp__derror *err;
    char path[600];
    size_t len;
} ctx;

/* ---- Messages ---- */

const char *
tp__config_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL:
    default: return "null";
    }
}

/*
 * quote writes s between double quotes, escaping quotes, backslashes and
 * control characters and cutting it at about 60 bytes: a message quotes what
 * the user wrote, which may be long or hold anything.
 */
static void
quote(const char *s, char *out, size_t size)
{
    size_t o = 0;
    const size_t limit = 60;
    out[o++] = '"';
    size_t i = 0;
    for (; s[i] != '\0' && i < limit && o + 8 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    if (s[i] != '\0' && o + 5 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    /* A cut in the middle of a UTF-8 sequence must not make the line invalid. */
    tp__utf8_repair(out);
}

static void
join(char *out, size_t size, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n >= size)
        n = size - 1 - *len; /* cut: the start of a message says the most */
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

void
tp__derror_set(tp__derror *err, const char *source, const char *path, const char *reason)
{
    /* Joined by hand rather than with snprintf: every part may be long, and
     * the compiler rightly warns about cutting one inside a format. */
    size_t len = 0;
    err->message[0] = '\0';
    join(err->message, sizeof err->message, &len, source);
    join(err->message, sizeof err->message, &len, ": ");
    if (path != NULL && path[0] != '\0') {
        join(err->message, sizeof err->message, &len, path);
        join(err->message, sizeof err->message, &len, ": ");
    }
    join(err->message, sizeof err->message, &len, reason);
    tp__utf8_repair(err->message);
}

static int fail(ctx *c, const char *fmt, ...) TP__PRINTF(2, 3);

static int
fail(ctx *c, const char *fmt, ...)
{
    char reason[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    tp__derror_set(c->err, c->source, c->path, reason);
    return -1;
}

/* ---- The JSON path ---- */

static int
plain_key(const char *key)
{
    if (key[0] == '\0')
        return 0;
    for (const char *p = key; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static void
path_append(ctx *c, const char *text)
{
    size_t n = strlen(text);
    if (c->len + n >= sizeof c->path)
        n = sizeof c->path - 1 - c->len; /* a very deep or long path is cut */
    memcpy(c->path + c->len, text, n);
    c->len += n;
    c->path[c->len] = '\0';
}

/*
 * push appends a key to the path and returns the length to pop back to.
 * Plain keys read as `tenants.alice`; others (with a dot, a space, or empty)
 * as `tenants["acme.com"]`, so a path is never ambiguous.
 */
static size_t
push(ctx *c, const char *key)
{
    size_t was = c->len;
    if (plain_key(key)) {
        if (c->len > 0)
            path_append(c, ".");
        path_append(c, key);
    } else {
        char q[128];
        quote(key, q, sizeof q);
        path_append(c, "[");
        path_append(c, q);
        path_append(c, "]");
    }
    return was;
}

static size_t
push_index(ctx *c, size_t i)
{
    size_t was = c->len;
    char text[32];
    snprintf(text, sizeof text, "[%zu]", i);
    path_append(c, text);
    return was;
}

static void
pop(ctx *c, size_t len)
{
    c->len = len;
    c->path[len] = '\0';
}

void
tp__config_path_append(char *path, size_t size, const char *key)
{
    /* The same spelling as the checks use, for daemon.c's messages. */
    ctx c = {"", NULL, "", 0};
    size_t n = strnlen(path, sizeof c.path - 1);
    memcpy(c.path, path, n);
    c.path[n] = '\0';
    c.len = n;
    push(&c, key);
    n = c.len < size ? c.len : size - 1;
    memcpy(path, c.path, n);
    path[n] = '\0';
}

/* ---- Checks on one value (the path already names it) ---- */

static int
want_object(ctx *c, const json_t *v)
{
    if (!json_is_object(v))
        return fail(c, "expected an object, got %s", tp__config_type_name(v));
    return 0;
}

/* only refuses every key of obj that is not in allowed (NULL-terminated). */
static int
only(ctx *c, const json_t *obj, const char *const *allowed)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int known = 0;
        for (size_t i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            push(c, key);
            return fail(c, "unknown key");
        }
    }
    return 0;
}

static int
want_string(ctx *c, const json_t *v)
{
    if (!json_is_string(v))
        return fail(c, "expected a string, got %s", tp__config_type_name(v));
    if (json_string_length(v) != strlen(json_string_value(v)))
        return fail(c, "the string holds a NUL character");
    return 0;
}

/* want_key checks a tenant key, model id or sid, which the hub bounds. */
static int
want_key(ctx *c, const char *key, const char *what)
{
    size_t n = strlen(key);
    if (n == 0 || n > KEY_MAX)
        return fail(c, "%s must be 1 to %d bytes long", what, KEY_MAX);
    return 0;
}

static int
want_integer(ctx *c, const json_t *v, json_int_t min, json_int_t max, json_int_t *out)
{
    if (!json_is_integer(v))
        return fail(c, "expected an integer, got %s", tp__config_type_name(v));
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return fail(c,
                    "%" JSON_INTEGER_FORMAT " is out of range (%" JSON_INTEGER_FORMAT
                    " to %" JSON_INTEGER_FORMAT ")",
                    n, min, max);
    *out = n;
    return 0;
}

/*
 * member_uint reads an optional integer member into *out (left alone when
 * the member is absent).
 */
static int
member_uint(ctx *c, const json_t *obj, const char *key, json_int_t min, json_int_t max,
            unsigned *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    size_t was = push(c, key);
    json_int_t n;
    if (want_integer(c, v, min, max, &n) != 0)
        return -1;
    *out = (unsigned)n;
    pop(c, was);
    return 0;
}

static char *
dup_string(ctx *c, const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        fail(c, "out of memory");
    return d;
}

/* ---- listen ---- */

static int
host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

int
tp__config_check_listen(const char *listen, char *why, size_t why_size)
{
    char q[128];
    quote(listen, q, sizeof q);
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen) {
        snprintf(why, why_size, "expected HOST:PORT, got %s", q);
        return -1;
    }
    size_t host_len = (size_t)(colon - listen);
    if (listen[0] == '[') {
        /* A bracketed IPv6 address: hex digits, colons and dots inside. */
        if (host_len < 3 || listen[host_len - 1] != ']') {
            snprintf(why, why_size, "expected HOST:PORT, got %s", q);
            return -1;
        }
        for (size_t i = 1; i + 1 < host_len; i++) {
            char ch = listen[i];
            if (!(tp__hex_digit(ch) >= 0 || ch == ':' || ch == '.')) {
                snprintf(why, why_size, "bad IPv6 address in %s", q);
                return -1;
            }
        }
    } else {
        for (size_t i = 0; i < host_len; i++) {
            if (!host_char(listen[i])) {
                snprintf(why, why_size, "bad host name in %s", q);
                return -1;
            }
        }
    }
    const char *port = colon + 1;
    size_t digits = strlen(port);
    if (digits == 0 || digits > 5 || strspn(port, "0123456789") != digits) {
        snprintf(why, why_size, "expected HOST:PORT with a numeric port, got %s", q);
        return -1;
    }
    long n = 0;
    for (size_t i = 0; i < digits; i++)
        n = n * 10 + (port[i] - '0');
    if (n > 65535) {
        snprintf(why, why_size, "port %ld is out of range (0 to 65535)", n);
        return -1;
    }
    return 0;
}

static int
check_listen(ctx *c, const json_t *v, char **out)
{
    if (want_string(c, v) != 0)
        return -1;
    char why[256];
    if (tp__config_check_listen(json_string_value(v), why, sizeof why) != 0)
        return fail(c, "%s", why);
    *out = dup_string(c, json_string_value(v));
    return *out ? 0 : -1;
}

/* ---- route and auth ---- */

static int
check_route(ctx *c, const json_t *v, int jwt, char **out)
{
    if (want_string(c, v) != 0)
        return -1;
    const char *route = json_string_value(v);
    tp_error err = {0, ""};
    tp__route *r = tp__route_new(route, &err);
    if (r == NULL) {
        /* The library's message already starts with "route: ". */
        const char *m = err.message;
        if (strncmp(m, "route: ", 7) == 0)
            m += 7;
        return fail(c, "%s", m);
    }
    tp__route_free(r);
    /*
     * With auth.mode "path" the tenant is the route's {tenant} parameter: a
     * route without it would refuse every connection, which is a
     * configuration mistake to report now. With "jwt" it is optional (when
     * present it must equal the token's tenant).
     */
    const char *p = strstr(route, "/{tenant}");
    if (!jwt && (p == NULL || (p[9] != '\0' && p[9] != '/'))) {
        char q[128];
        quote(route, q, sizeof q);
        return fail(c, "%s has no {tenant} segment, which auth.mode \"path\" needs", q);
    }
    *out = dup_string(c, route);
    return *out ? 0 : -1;
}

static int
check_auth(ctx *c, const json_t *auth, tp__config *cfg)
{
    static const char *const keys[] = {
        "mode", "tenant_claim",          "audience", "issuer", "leeway_s",
        "keys", "allow_unauthenticated", NULL};
    if (want_object(c, auth) != 0 || only(c, auth, keys) != 0)
        return -1;
    const json_t *mode = json_object_get(auth, "mode");
    const char *m = "path";
    if (mode != NULL) {
        size_t was = push(c, "mode");
        if (want_string(c, mode) != 0)
            return -1;
        m = json_string_value(mode);
        if (strcmp(m, "path") != 0 && strcmp(m, "jwt") != 0) {
            char q[128];
            quote(m, q, sizeof q);
            return fail(c, "expected \"path\" or \"jwt\", got %s", q);
        }
        pop(c, was);
    }
    cfg->auth_jwt = strcmp(m, "jwt") == 0;
    const json_t *allow = json_object_get(auth, "allow_unauthenticated");
    if (allow != NULL) {
        size_t was = push(c, "allow_unauthenticated");
        if (!json_is_boolean(allow))
            return fail(c, "expected true or false, got %s", tp__config_type_name(allow));
        if (cfg->auth_jwt)
            return fail(c, "only for auth.mode \"path\"");
        cfg->allow_unauthenticated = json_is_true(allow);
        pop(c, was);
    }
    if (!cfg->auth_jwt) {
        static const char *const jwt_only[] = {"tenant_claim", "audience", "issuer",
                                               "leeway_s",     "keys",     NULL};
        for (size_t i = 0; jwt_only[i] != NULL; i++)
            if (json_object_get(auth, jwt_only[i]) != NULL) {
                size_t was = push(c, jwt_only[i]);
                (void)was;
                return fail(c, "only for auth.mode \"jwt\"");
            }
        return 0;
    }
    /* The rules are checked here; the keys (files, the environment) are
     * loaded by daemon.c, which knows the config file's directory. */
    tp__jwt_rules rules;
    tp_error err = {0, ""};
    if (tp__jwt_rules_load(&rules, auth, "auth", &err) != TP_OK) {
        tp__derror_set(c->err, c->source, NULL, err.message);
        return -1;
    }
    tp__jwt_rules_clear(&rules);
    const json_t *k = json_object_get(auth, "keys");
    if (k == NULL || !json_is_array(k) || json_array_size(k) == 0) {
        size_t was = push(c, "keys");
        (void)was;
        return fail(c, "auth.mode \"jwt\" needs a non-empty array of keys");
    }
    cfg->auth = json_incref((json_t *)auth);
    return 0;
}

/* ---- tls and metrics_token_env ---- */

static int
check_tls(ctx *c, const json_t *tls, tp__config *cfg)
{
    static const char *const keys[] = {"cert_file", "key_file", NULL};
    if (want_object(c, tls) != 0 || only(c, tls, keys) != 0)
        return -1;
    char **out[] = {&cfg->tls_cert_file, &cfg->tls_key_file};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(tls, keys[i]);
        size_t was = push(c, keys[i]);
        if (v == NULL)
            return fail(c, "required");
        if (want_string(c, v) != 0)
            return -1;
        if (json_string_length(v) == 0)
            return fail(c, "expected a file name");
        if ((*out[i] = dup_string(c, json_string_value(v))) == NULL)
            return -1;
        pop(c, was);
    }
    return 0;
}

int
tp__config_listen_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
    char host[300];
    if (n >= sizeof host)
        return 0;
    memcpy(host, listen, n);
    host[n] = '\0';
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return 1;
    tp__addr a;
    tp__cidr v4, v6;
    if (tp__addr_parse(host, n, &a) != 0 || tp__cidr_parse("127.0.0.0/8", &v4) != 0 ||
        tp__cidr_parse("::1", &v6) != 0)
        return 0;
    return tp__cidr_match(&v4, &a) || tp__cidr_match(&v6, &a);
}

/* ---- storage ---- */

static int
check_storage(ctx *c, const json_t *storage, tp__config *cfg)
{
    static const char *const keys[] = {"memory",        "sqlite",           "synchronous",
                                       "evict_idle_ms", "memory_budget_mb", NULL};
    if (want_object(c, storage) != 0 || only(c, storage, keys) != 0)
        return -1;
    const json_t *memory = json_object_get(storage, "memory");
    const json_t *sqlite = json_object_get(storage, "sqlite");
    const json_t *sync = json_object_get(storage, "synchronous");
    if ((memory == NULL) == (sqlite == NULL))
        return fail(c, "expected one of {\"memory\": true} or {\"sqlite\": PATH}");
    static const char *const sqlite_only[] = {"synchronous", "evict_idle_ms", "memory_budget_mb",
                                              NULL};
    for (size_t i = 0; memory != NULL && sqlite_only[i] != NULL; i++)
        if (json_object_get(storage, sqlite_only[i]) != NULL) {
            push(c, sqlite_only[i]);
            return fail(c, "only with \"sqlite\"");
        }
    if (memory != NULL) {
        push(c, "memory");
        if (!json_is_true(memory))
            return fail(c, "expected true, got %s",
                        json_is_false(memory) ? "false" : tp__config_type_name(memory));
        return 0;
    }
    size_t was = push(c, "sqlite");
    if (want_string(c, sqlite) != 0)
        return -1;
    if (json_string_length(sqlite) == 0)
        return fail(c, "expected a file name, got \"\"");
    if ((cfg->sqlite = dup_string(c, json_string_value(sqlite))) == NULL)
        return -1;
    pop(c, was);
    cfg->synchronous = TP_SYNC_FULL;
    if (sync != NULL) {
        push(c, "synchronous");
        if (want_string(c, sync) != 0)
            return -1;
        const char *v = json_string_value(sync);
        if (strcmp(v, "full") == 0)
            cfg->synchronous = TP_SYNC_FULL;
        else if (strcmp(v, "normal") == 0)
            cfg->synchronous = TP_SYNC_NORMAL;
        else if (strcmp(v, "off") == 0)
            cfg->synchronous = TP_SYNC_OFF;
        else
            return fail(c, "expected \"full\", \"normal\" or \"off\", got \"%.40s\"", v);
        pop(c, was);
    }
    const json_t *idle = json_object_get(storage, "evict_idle_ms");
    json_int_t n;
    if (idle != NULL) {
        push(c, "evict_idle_ms");
        if (want_integer(c, idle, 1, 86400000, &n) != 0)
            return -1;
        cfg->hub.evict_idle_ms = (unsigned)n;
        pop(c, was);
    }
    const json_t *budget = json_object_get(storage, "memory_budget_mb");
    if (budget != NULL) {
        push(c, "memory_budget_mb");
        if (want_integer(c, budget, 1, 1048576, &n) != 0)
            return -1;
        cfg->hub.memory_budget = (size_t)n << 20;
        pop(c, was);
    }
    return 0;
}

/* ---- cluster ---- */

static int
check_cluster(ctx *c, const json_t *cluster, tp__config *cfg)
{
    static const char *const keys[] = {"redis", "node", "history", "connect_timeout_ms", NULL};
    if (want_object(c, cluster) != 0 || only(c, cluster, keys) != 0)
        return -1;
    const json_t *redis = json_object_get(cluster, "redis");
    size_t was = push(c, "redis");
    if (redis == NULL)
        return fail(c, "required: the Redis every node shares (redis://HOST:PORT/DB)");
    if (want_string(c, redis) != 0)
        return -1;
    tp__redis_url url;
    tp_error e = {0, ""};
    if (tp__redis_url_parse(json_string_value(redis), &url, &e) != TP_OK) {
        return fail(c, "%s", e.message); /* it never quotes the URL (a password) */
    }
    /* The URL may hold a password: it is kept, never quoted in a message or a log line. */
    if ((cfg->cluster_redis = dup_string(c, json_string_value(redis))) == NULL)
        return -1;
    pop(c, was);
    const json_t *node = json_object_get(cluster, "node");
    was = push(c, "node");
    if (node == NULL)
        return fail(c,
                    "required: this node's name, unique in the cluster (1 to %d of "
                    "A-Z a-z 0-9 . _ -)",
                    TP__CLUSTER_NODE_MAX);
    if (want_string(c, node) != 0)
        return -1;
    const char *n = json_string_value(node);
    size_t len = strlen(n);
    int ok = len >= 1 && len <= TP__CLUSTER_NODE_MAX;
    for (const char *p = n; *p != '\0' && ok; p++)
        ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
             *p == '.' || *p == '_' || *p == '-';
    if (!ok) {
        char q[128];
        quote(n, q, sizeof q);
        return fail(c, "expected 1 to %d of A-Z a-z 0-9 . _ -, got %s", TP__CLUSTER_NODE_MAX, q);
    }
    if ((cfg->cluster_node = dup_string(c, n)) == NULL)
        return -1;
    pop(c, was);
    cfg->cluster_history = TP__CLUSTER_HISTORY;
    cfg->cluster_connect_timeout_ms = TP__CLUSTER_CONNECT_TIMEOUT_MS;
    return member_uint(c, cluster, "history", 1, TP__CLUSTER_HISTORY_MAX, &cfg->cluster_history) !=
                       0 ||
                   member_uint(c, cluster, "connect_timeout_ms", 100, 600000,
                               &cfg->cluster_connect_timeout_ms) != 0
               ? -1
               : 0;
}

/* ---- admin_token_env and origins ---- */

static int
check_env_name(ctx *c, const json_t *v, char **out)
{
    if (want_string(c, v) != 0)
        return -1;
    const char *s = json_string_value(v);
    int ok = s[0] != '\0' && !(s[0] >= '0' && s[0] <= '9');
    for (const char *p = s; *p != '\0' && ok; p++)
        ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
             *p == '_';
    if (!ok) {
        char q[128];
        quote(s, q, sizeof q);
        return fail(c, "%s is not an environment variable name", q);
    }
    *out = dup_string(c, s);
    return *out ? 0 : -1;
}

/*
 * A non-empty array of strings, each checked by item (0, or -1 after fail),
 * copied into a NULL-terminated list in *out (freed by the caller on
 * failure too). empty is the message for an empty array.
 */
static int
check_string_list(ctx *c, const json_t *v, char ***out, const char *empty,
                  int (*item)(ctx *c, const char *s))
{
    if (!json_is_array(v))
        return fail(c, "expected an array of strings, got %s", tp__config_type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return fail(c, "%s", empty);
    char **list = calloc(n + 1, sizeof *list);
    if (list == NULL)
        return fail(c, "out of memory");
    *out = list;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(v, i);
        size_t was = push_index(c, i);
        if (want_string(c, o) != 0 || item(c, json_string_value(o)) != 0)
            return -1;
        if ((list[i] = dup_string(c, json_string_value(o))) == NULL)
            return -1;
        pop(c, was);
    }
    return 0;
}

static int
origin_ok(ctx *c, const char *s)
{
    if (s[0] == '\0')
        return fail(c, "an origin cannot be empty");
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail(c, "an origin holds no spaces or control characters");
    return 0;
}

static int
check_origins(ctx *c, const json_t *v, char ***out)
{
    return check_string_list(c, v, out, "empty: leave origins out to allow any origin", origin_ok);
}

static int
proxy_ok(ctx *c, const char *s)
{
    tp__cidr cidr;
    if (tp__cidr_parse(s, &cidr) == 0)
        return 0;
    char q[128];
    quote(s, q, sizeof q);
    return fail(c, "%s is not an IP address or a CIDR block (\"10.0.0.0/8\")", q);
}

/* trusted_proxies: addresses or CIDR blocks, whose client_address_header is
 * believed. */
static int
check_proxies(ctx *c, const json_t *v, char ***out)
{
    return check_string_list(c, v, out, "empty: leave trusted_proxies out when there is no proxy",
                             proxy_ok);
}

/* client_address_header: an HTTP header name (RFC 9110 token characters). */
static int
check_header_name(ctx *c, const json_t *v, char **out)
{
    if (want_string(c, v) != 0)
        return -1;
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    int ok = n > 0 && n <= 64;
    for (const char *p = s; *p != '\0' && ok; p++)
        ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
             strchr("!#$%&'*+-.^_`|~", *p) != NULL;
    if (!ok) {
        char q[128];
        quote(s, q, sizeof q);
        return fail(c, "%s is not a header name", q);
    }
    *out = dup_string(c, s);
    return *out ? 0 : -1;
}

/* ---- limits ---- */

#define GIB ((json_int_t)1 << 30)
#define TIB ((json_int_t)1 << 40)

/* Where each limit goes and what it may be. Zero is never a valid value:
 * leaving a key out is how the default is asked for. */
enum { HUB_SIZE, HUB_UINT, SERVER_UINT, SERVER_SIZE };
static const struct limit {
    const char *name;
    int kind;
    size_t offset;
    json_int_t max;
} limits[] = {
    {"max_message_bytes", HUB_SIZE, offsetof(tp_limits, max_message_bytes), GIB},
    {"max_outbox_bytes", HUB_SIZE, offsetof(tp_limits, max_outbox_bytes), TIB},
    {"writes_per_second", HUB_UINT, offsetof(tp_limits, writes_per_second), 1000000},
    {"history_patches", HUB_UINT, offsetof(tp_limits, history_patches), 1000000},
    {"history_bytes", HUB_SIZE, offsetof(tp_limits, history_bytes), TIB},
    {"client_records", HUB_UINT, offsetof(tp_limits, client_records), 1000000},
    {"client_record_bytes", HUB_SIZE, offsetof(tp_limits, client_record_bytes), TIB},
    {"max_skew_ms", HUB_UINT, offsetof(tp_limits, max_skew_ms), 86400000},
    {"max_connections", SERVER_UINT, offsetof(tp_server_config, max_connections), 1000000},
    {"max_connections_per_tenant", SERVER_UINT,
     offsetof(tp_server_config, max_connections_per_tenant), 1000000},
    {"handshake_timeout_ms", SERVER_UINT, offsetof(tp_server_config, handshake_timeout_ms),
     3600000},
    {"ping_interval_ms", SERVER_UINT, offsetof(tp_server_config, ping_interval_ms), 86400000},
    {"ping_timeout_ms", SERVER_UINT, offsetof(tp_server_config, ping_timeout_ms), 3600000},
    {"max_connections_per_address", SERVER_UINT,
     offsetof(tp_server_config, max_connections_per_address), 1000000},
    {"max_pending_handshakes_per_address", SERVER_UINT,
     offsetof(tp_server_config, max_pending_handshakes_per_address), 1000000},
    {"message_timeout_ms", SERVER_UINT, offsetof(tp_server_config, message_timeout_ms), 3600000},
    {"max_unfinished_bytes", SERVER_SIZE, offsetof(tp_server_config, max_unfinished_bytes), TIB},
};

static int
check_limits(ctx *c, const json_t *obj, tp__config *cfg)
{
    if (want_object(c, obj) != 0)
        return -1;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const struct limit *l = NULL;
        for (size_t i = 0; i < sizeof limits / sizeof limits[0] && l == NULL; i++)
            if (strcmp(limits[i].name, key) == 0)
                l = &limits[i];
        size_t was = push(c, key);
        if (l == NULL)
            return fail(c, "unknown key");
        json_int_t n;
        if (want_integer(c, v, 1, l->max, &n) != 0)
            return -1;
        if (l->kind == HUB_SIZE)
            *(size_t *)((char *)&cfg->hub.limits + l->offset) = (size_t)n;
        else if (l->kind == HUB_UINT)
            *(unsigned *)((char *)&cfg->hub.limits + l->offset) = (unsigned)n;
        else if (l->kind == SERVER_SIZE)
            *(size_t *)((char *)&cfg->server + l->offset) = (size_t)n;
        else
            *(unsigned *)((char *)&cfg->server + l->offset) = (unsigned)n;
        pop(c, was);
    }
    return 0;
}

/* ---- schemas, tenants, shared ---- */

static int
check_schemas(ctx *c, const json_t *schemas)
{
    if (schemas == NULL)
        return fail(c, "required: an object of {name: JSON Schema}");
    if (want_object(c, schemas) != 0)
        return -1;
    const char *name;
    const json_t *s;
    json_object_foreach((json_t *)schemas, name, s)
    {
        size_t was = push(c, name);
        if (name[0] == '\0')
            return fail(c, "a schema name cannot be empty");
        /* Loading it is daemon.c's job, with the library's messages. */
        if (!json_is_object(s))
            return fail(c, "expected a JSON Schema object, got %s", tp__config_type_name(s));
        pop(c, was);
    }
    return 0;
}

/* model_schema checks a model's "schema": a name in the "schemas" section. */
static int
model_schema(ctx *c, const json_t *model, const json_t *schemas)
{
    const json_t *name = json_object_get(model, "schema");
    if (name == NULL)
        return fail(c, "\"schema\" is required");
    size_t was = push(c, "schema");
    if (want_string(c, name) != 0)
        return -1;
    if (json_object_get(schemas, json_string_value(name)) == NULL) {
        char q[128];
        quote(json_string_value(name), q, sizeof q);
        return fail(c, "no schema %s in schemas", q);
    }
    pop(c, was);
    return 0;
}

static int
check_tenants(ctx *c, const json_t *tenants, const json_t *schemas)
{
    static const char *const tenant_keys[] = {"models", NULL};
    static const char *const model_keys[] = {"schema", "value", NULL};
    if (want_object(c, tenants) != 0)
        return -1;
    const char *tenant;
    const json_t *t;
    json_object_foreach((json_t *)tenants, tenant, t)
    {
        size_t at_tenant = push(c, tenant);
        if (want_key(c, tenant, "a tenant key") != 0 || want_object(c, t) != 0 ||
            only(c, t, tenant_keys) != 0)
            return -1;
        const json_t *models = json_object_get(t, "models");
        if (models != NULL) {
            push(c, "models");
            if (want_object(c, models) != 0)
                return -1;
            const char *id;
            const json_t *m;
            json_object_foreach((json_t *)models, id, m)
            {
                size_t at_model = push(c, id);
                if (want_key(c, id, "a model id") != 0 || want_object(c, m) != 0 ||
                    only(c, m, model_keys) != 0 || model_schema(c, m, schemas) != 0)
                    return -1;
                pop(c, at_model);
            }
        }
        pop(c, at_tenant);
    }
    return 0;
}

static int
check_subscribers(ctx *c, const json_t *subs)
{
    if (want_object(c, subs) != 0)
        return -1;
    const char *tenant;
    const json_t *access;
    json_object_foreach((json_t *)subs, tenant, access)
    {
        size_t was = push(c, tenant);
        if (want_key(c, tenant, "a tenant key") != 0)
            return -1;
        const char *a = json_string_value(access);
        if (a == NULL)
            return fail(c, "expected \"read\" or \"write\", got %s", tp__config_type_name(access));
        if (strcmp(a, "read") != 0 && strcmp(a, "write") != 0) {
            char q[128];
            quote(a, q, sizeof q);
            return fail(c, "expected \"read\" or \"write\", got %s", q);
        }
        pop(c, was);
    }
    return 0;
}

/* ---- merges ---- */

static int
check_merge(ctx *c, const json_t *v, tp__config_merge *m)
{
    static const char *const keys[] = {"lua",    "lua_file", "max_instructions", "max_memory_bytes",
                                       "max_ms", NULL};
    if (want_object(c, v) != 0 || only(c, v, keys) != 0)
        return -1;
    const json_t *lua = json_object_get(v, "lua");
    const json_t *file = json_object_get(v, "lua_file");
    if (lua != NULL && file != NULL)
        return fail(c, "set lua (the script) or lua_file (its file), not both");
    if (lua == NULL && file == NULL)
        return fail(c, "needs lua (the script) or lua_file (its file, relative to the config "
                       "file)");
    size_t was = push(c, lua != NULL ? "lua" : "lua_file");
    const json_t *s = lua != NULL ? lua : file;
    if (want_string(c, s) != 0)
        return -1;
    if (json_string_length(s) == 0)
        return fail(c, "expected %s, got an empty string", lua ? "a Lua script" : "a file name");
    if (json_string_length(s) != strlen(json_string_value(s)))
        return fail(c, "holds a NUL byte");
    if (lua != NULL && json_string_length(s) > TP__LUA_SCRIPT_MAX)
        return fail(c, "a script of at most %d bytes", TP__LUA_SCRIPT_MAX);
    char **out = lua != NULL ? &m->lua : &m->lua_file;
    if ((*out = dup_string(c, json_string_value(s))) == NULL)
        return -1;
    pop(c, was);
    return member_uint(c, v, "max_instructions", 1000, 1000000000, &m->max_instructions) != 0 ||
                   member_uint(c, v, "max_memory_bytes", 256 * 1024, 1024 * 1024 * 1024,
                               &m->max_memory_bytes) != 0 ||
                   member_uint(c, v, "max_ms", 1, 60000, &m->max_ms) != 0
               ? -1
               : 0;
}

static int
check_merges(ctx *c, const json_t *v, tp__config *cfg)
{
    if (want_object(c, v) != 0)
        return -1;
    size_t n = json_object_size(v);
    if (n > TP__CONFIG_MERGES_MAX)
        return fail(c, "at most %d merge strategies", TP__CONFIG_MERGES_MAX);
    cfg->merges = calloc(n ? n : 1, sizeof *cfg->merges);
    if (cfg->merges == NULL)
        return fail(c, "out of memory");
    const char *name;
    const json_t *m;
    json_object_foreach((json_t *)v, name, m)
    {
        size_t was = push(c, name);
        if (strlen(name) == 0 || strlen(name) > 64)
            return fail(c, "a merge strategy's name must be 1 to 64 bytes long");
        if (strcmp(name, "lww") == 0 || strcmp(name, "lww-map") == 0)
            return fail(c, "\"%s\" is a built-in strategy: pick another name", name);
        tp__config_merge *cm = &cfg->merges[cfg->n_merges++];
        if ((cm->name = dup_string(c, name)) == NULL || check_merge(c, m, cm) != 0)
            return -1;
        pop(c, was);
    }
    return 0;
}

static int
check_shared(ctx *c, const json_t *shared, const json_t *schemas, const json_t *merges)
{
    static const char *const keys[] = {"schema", "merge", "value", "subscribers", NULL};
    if (want_object(c, shared) != 0)
        return -1;
    const char *sid;
    const json_t *m;
    json_object_foreach((json_t *)shared, sid, m)
    {
        size_t at_model = push(c, sid);
        if (want_key(c, sid, "a shared model id") != 0 || want_object(c, m) != 0 ||
            only(c, m, keys) != 0 || model_schema(c, m, schemas) != 0)
            return -1;
        const json_t *merge = json_object_get(m, "merge");
        if (merge != NULL) {
            size_t was = push(c, "merge");
            if (want_string(c, merge) != 0)
                return -1;
            const char *name = json_string_value(merge);
            if (strcmp(name, "lww") != 0 && strcmp(name, "lww-map") != 0 &&
                json_object_get(merges, name) == NULL) {
                char q[128];
                quote(name, q, sizeof q);
                return fail(c,
                            "unknown merge strategy %s (expected \"lww\", \"lww-map\" or a "
                            "name in merges)",
                            q);
            }
            pop(c, was);
        }
        const json_t *subs = json_object_get(m, "subscribers");
        if (subs != NULL) {
            size_t was = push(c, "subscribers");
            if (check_subscribers(c, subs) != 0)
                return -1;
            pop(c, was);
        }
        pop(c, at_model);
    }
    return 0;
}

/* ---- webhooks ---- */

static int
check_webhook(ctx *c, const json_t *v, tp__webhook_config *w)
{
    static const char *const keys[] = {"url",          "events",     "secret_env",   "debounce_ms",
                                       "max_delay_ms", "timeout_ms", "retry_min_ms", NULL};
    if (want_object(c, v) != 0 || only(c, v, keys) != 0)
        return -1;
    size_t was = push(c, "url");
    const json_t *url = json_object_get(v, "url");
    if (url == NULL)
        return fail(c, "required: the receiver's http:// or https:// URL");
    if (want_string(c, url) != 0)
        return -1;
    const char *u = json_string_value(url);
    if ((strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) || strlen(u) > 2048 ||
        strpbrk(u, " \t\r\n") != NULL)
        return fail(c, "must be an http:// or https:// URL of at most 2048 bytes");
    if ((w->url = dup_string(c, u)) == NULL)
        return -1;
    pop(c, was);
    was = push(c, "events");
    const json_t *ev = json_object_get(v, "events");
    if (ev == NULL)
        return fail(c, "required: a list of model.changed, connection.opened, connection.closed");
    if (!json_is_array(ev) || json_array_size(ev) == 0)
        return fail(c, "expected a non-empty array of event names");
    size_t i;
    const json_t *e;
    json_array_foreach(ev, i, e)
    {
        size_t w2 = push_index(c, i);
        const char *name = json_string_value(e);
        unsigned bit = name == NULL                             ? 0
                       : strcmp(name, "model.changed") == 0     ? TP__WH_MODEL_CHANGED
                       : strcmp(name, "connection.opened") == 0 ? TP__WH_CONN_OPENED
                       : strcmp(name, "connection.closed") == 0 ? TP__WH_CONN_CLOSED
                                                                : 0;
        if (bit == 0)
            return fail(c, "expected model.changed, connection.opened or connection.closed");
        if (w->events & bit)
            return fail(c, "listed twice");
        w->events |= bit;
        pop(c, w2);
    }
    pop(c, was);
    const json_t *sec = json_object_get(v, "secret_env");
    was = push(c, "secret_env");
    if (sec == NULL)
        return fail(c, "required: the environment variable holding the signing secret");
    if (check_env_name(c, sec, &w->secret_env) != 0)
        return -1;
    pop(c, was);
    w->debounce_ms = 1000;
    w->max_delay_ms = 10000;
    w->timeout_ms = 10000;
    w->retry_min_ms = 1000;
    if (member_uint(c, v, "debounce_ms", 0, 3600000, &w->debounce_ms) != 0 ||
        member_uint(c, v, "max_delay_ms", 0, 86400000, &w->max_delay_ms) != 0 ||
        member_uint(c, v, "timeout_ms", 100, 600000, &w->timeout_ms) != 0 ||
        member_uint(c, v, "retry_min_ms", 10, 3600000, &w->retry_min_ms) != 0)
        return -1;
    if (w->max_delay_ms < w->debounce_ms) {
        push(c, "max_delay_ms");
        return fail(c, "must be at least debounce_ms (%u)", w->debounce_ms);
    }
    return 0;
}

static int
check_webhooks(ctx *c, const json_t *v, tp__config *cfg)
{
    if (!json_is_array(v))
        return fail(c, "expected an array of webhooks, got %s", tp__config_type_name(v));
    size_t n = json_array_size(v);
    if (n > TP__WEBHOOKS_MAX)
        return fail(c, "at most %d webhooks", TP__WEBHOOKS_MAX);
    cfg->webhooks = calloc(n ? n : 1, sizeof *cfg->webhooks);
    if (cfg->webhooks == NULL)
        return fail(c, "out of memory");
    size_t i;
    const json_t *w;
    json_array_foreach(v, i, w)
    {
        size_t was = push_index(c, i);
        cfg->n_webhooks = i + 1; /* cleared by tp__config_clear, even half-filled */
        if (check_webhook(c, w, &cfg->webhooks[i]) != 0)
            return -1;
        pop(c, was);
    }
    return 0;
}

/* ---- The document ---- */

static int
check_root(ctx *c, const json_t *root, tp__config *cfg)
{
    static const char *const keys[] = {
        "listen",
        "route",
        "autosync_ms",
        "flush_ms",
        "storage",
        "auth",
        "admin_token_env",
        "origins",
        "limits",
        "schemas",
        "tenants",
        "shared",
        "trusted_proxies",
        "client_address_header",
        "static_dir",
        "tls",
        "metrics_token_env",
        "webhooks",
        "merges",
        "cluster", // clang-format: one key a line
        NULL,
    };
    if (!json_is_object(root))
        return fail(c, "expected a JSON object, got %s", tp__config_type_name(root));
    if (only(c, root, keys) != 0)
        return -1;

    cfg->hub.tick_ms = TP__DAEMON_AUTOSYNC_MS;
    if (member_uint(c, root, "autosync_ms", 0, 3600000, &cfg->hub.tick_ms) != 0 ||
        member_uint(c, root, "flush_ms", 0, 60000, &cfg->server.flush_ms) != 0)
        return -1;
    /* The tick the server runs is the tick hello announces. */
    cfg->server.autosync_ms = cfg->hub.tick_ms;

    const json_t *v;
    size_t was;
    if ((v = json_object_get(root, "listen")) != NULL) {
        was = push(c, "listen");
        if (check_listen(c, v, &cfg->listen) != 0)
            return -1;
        pop(c, was);
    } else if ((cfg->listen = dup_string(c, TP__DAEMON_LISTEN)) == NULL) {
        return -1;
    }
    /* auth before route: the mode decides what the route must hold. */
    if ((v = json_object_get(root, "auth")) != NULL) {
        was = push(c, "auth");
        if (check_auth(c, v, cfg) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "route")) != NULL) {
        was = push(c, "route");
        if (check_route(c, v, cfg->auth_jwt, &cfg->route) != 0)
            return -1;
        pop(c, was);
    } else if ((cfg->route = dup_string(c, TP__DAEMON_ROUTE)) == NULL) {
        return -1;
    }
    const json_t *cluster = json_object_get(root, "cluster");
    if (cluster != NULL) {
        was = push(c, "cluster");
        if (check_cluster(c, cluster, cfg) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "storage")) != NULL) {
        was = push(c, "storage");
        if (cluster != NULL)
            return fail(c, "not with \"cluster\": Redis is a cluster's store, and a node keeps "
                           "nothing on disk (remove \"storage\")");
        if (check_storage(c, v, cfg) != 0)
            return -1;
        pop(c, was);
    } else if (cluster == NULL) {
        /* Durable unless asked otherwise: SQLite is the default store. */
        if ((cfg->sqlite = dup_string(c, TP__DAEMON_SQLITE)) == NULL)
            return -1;
        cfg->synchronous = TP_SYNC_FULL;
    }
    if ((v = json_object_get(root, "admin_token_env")) != NULL) {
        was = push(c, "admin_token_env");
        if (check_env_name(c, v, &cfg->admin_token_env) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "webhooks")) != NULL) {
        was = push(c, "webhooks");
        if (check_webhooks(c, v, cfg) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "metrics_token_env")) != NULL) {
        was = push(c, "metrics_token_env");
        if (check_env_name(c, v, &cfg->metrics_token_env) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "tls")) != NULL) {
        was = push(c, "tls");
        if (check_tls(c, v, cfg) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "origins")) != NULL) {
        was = push(c, "origins");
        if (check_origins(c, v, &cfg->origins) != 0)
            return -1;
        pop(c, was);
    }
    const json_t *proxies = json_object_get(root, "trusted_proxies");
    const json_t *header = json_object_get(root, "client_address_header");
    if (proxies != NULL) {
        was = push(c, "trusted_proxies");
        if (check_proxies(c, proxies, &cfg->trusted_proxies) != 0)
            return -1;
        if (header == NULL)
            return fail(c, "needs client_address_header (the header the proxies write)");
        pop(c, was);
    }
    if (header != NULL) {
        was = push(c, "client_address_header");
        if (check_header_name(c, header, &cfg->client_address_header) != 0)
            return -1;
        if (proxies == NULL)
            return fail(c, "needs trusted_proxies (whose header alone is believed)");
        pop(c, was);
    }
    if ((v = json_object_get(root, "static_dir")) != NULL) {
        /* Whether it is a directory is tp_server_new's check (at start). */
        was = push(c, "static_dir");
        if (want_string(c, v) != 0)
            return -1;
        if (json_string_length(v) == 0)
            return fail(c, "expected a directory, got an empty string");
        if ((cfg->static_dir = dup_string(c, json_string_value(v))) == NULL)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "limits")) != NULL) {
        was = push(c, "limits");
        if (check_limits(c, v, cfg) != 0)
            return -1;
        pop(c, was);
    }

    const json_t *schemas = json_object_get(root, "schemas");
    was = push(c, "schemas");
    if (check_schemas(c, schemas) != 0)
        return -1;
    pop(c, was);
    if ((v = json_object_get(root, "tenants")) != NULL) {
        was = push(c, "tenants");
        if (check_tenants(c, v, schemas) != 0)
            return -1;
        pop(c, was);
        cfg->tenants = json_incref((json_t *)v);
    }
    const json_t *merges = json_object_get(root, "merges");
    if (merges != NULL) {
        was = push(c, "merges");
        if (check_merges(c, merges, cfg) != 0)
            return -1;
        pop(c, was);
    }
    if ((v = json_object_get(root, "shared")) != NULL) {
        was = push(c, "shared");
        if (check_shared(c, v, schemas, merges) != 0)
            return -1;
        pop(c, was);
        cfg->shared = json_incref((json_t *)v);
    }
    cfg->schemas = json_incref((json_t *)schemas);

    cfg->server.listen = cfg->listen;
    cfg->server.route = cfg->route;
    cfg->server.origins = (const char *const *)cfg->origins;
    cfg->server.trusted_proxies = (const char *const *)cfg->trusted_proxies;
    cfg->server.client_address_header = cfg->client_address_header;
    cfg->server.static_dir = cfg->static_dir;
    return 0;
}

int
tp__config_parse(tp__config *cfg, const json_t *root, const char *source, tp__derror *err)
{
    memset(cfg, 0, sizeof *cfg);
    ctx c = {source, err, "", 0};
    if (check_root(&c, root, cfg) != 0) {
        tp__config_clear(cfg);
        return -1;
    }
    return 0;
}

static int
parsed(tp__config *cfg, json_t *root, const json_error_t *jerr, const char *source, tp__derror *err)
{
    if (root == NULL) {
        snprintf(err->message, sizeof err->message, "%s:%d:%d: %s", source, jerr->line,
                 jerr->column, jerr->text);
        tp__utf8_repair(err->message);
        return -1;
    }
    int rc = tp__config_parse(cfg, root, source, err);
    json_decref(root);
    return rc;
}

int
tp__config_load_text(tp__config *cfg, const char *text, const char *source, tp__derror *err)
{
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    return parsed(cfg, root, &jerr, source, err);
}

int
tp__config_load_file(tp__config *cfg, const char *path, tp__derror *err)
{
    memset(cfg, 0, sizeof *cfg);
    /* Opened here rather than by json_load_file so that a missing file gets
     * the system's reason, not a parse error at line -1. */
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err->message, sizeof err->message, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    int read_error = ferror(f);
    fclose(f);
    if (root == NULL && read_error) {
        snprintf(err->message, sizeof err->message, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    if (parsed(cfg, root, &jerr, path, err) != 0)
        return -1;
    /* Relative key and certificate files are the config file's neighbours. */
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        cfg->base_dir = strdup(".");
    else if (slash == path)
        cfg->base_dir = strdup("/");
    else
        cfg->base_dir = strndup(path, (size_t)(slash - path));
    if (cfg->base_dir == NULL) {
        tp__config_clear(cfg);
        snprintf(err->message, sizeof err->message, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

int
tp__config_set_listen(tp__config *cfg, const char *listen, tp__derror *err)
{
    char why[256];
    if (tp__config_check_listen(listen, why, sizeof why) != 0) {
        snprintf(err->message, sizeof err->message, "--listen: %s", why);
        tp__utf8_repair(err->message);
        return -1;
    }
    char *copy = strdup(listen);
    if (copy == NULL) {
        snprintf(err->message, sizeof err->message, "--listen: out of memory");
        return -1;
    }
    free(cfg->listen);
    cfg->listen = copy;
    cfg->server.listen = copy;
    return 0;
}

int
tp__config_set_static_dir(tp__config *cfg, const char *dir, tp__derror *err)
{
    if (dir[0] == '\0') {
        snprintf(err->message, sizeof err->message, "--static-dir: needs a directory");
        return -1;
    }
    char *copy = strdup(dir);
    if (copy == NULL) {
        snprintf(err->message, sizeof err->message, "--static-dir: out of memory");
        return -1;
    }
    free(cfg->static_dir);
    cfg->static_dir = copy;
    cfg->server.static_dir = copy;
    return 0;
}

void
tp__config_clear(tp__config *cfg)
{
    free(cfg->listen);
    free(cfg->route);
    for (size_t i = 0; cfg->origins != NULL && cfg->origins[i] != NULL; i++)
        free(cfg->origins[i]);
    free(cfg->origins);
    free(cfg->admin_token_env);
    for (size_t i = 0; cfg->trusted_proxies != NULL && cfg->trusted_proxies[i] != NULL; i++)
        free(cfg->trusted_proxies[i]);
    free(cfg->trusted_proxies);
    free(cfg->client_address_header);
    free(cfg->static_dir);
    free(cfg->sqlite);
    json_decref(cfg->auth);
    free(cfg->base_dir);
    free(cfg->tls_cert_file);
    free(cfg->tls_key_file);
    free(cfg->metrics_token_env);
    json_decref(cfg->schemas);
    json_decref(cfg->tenants);
    json_decref(cfg->shared);
    for (size_t i = 0; i < cfg->n_webhooks; i++) {
        free(cfg->webhooks[i].url);
        free(cfg->webhooks[i].secret_env);
    }
    free(cfg->webhooks);
    for (size_t i = 0; i < cfg->n_merges; i++) {
        free(cfg->merges[i].name);
        free(cfg->merges[i].lua);
        free(cfg->merges[i].lua_file);
    }
    free(cfg->merges);
    free(cfg->cluster_redis);
    free(cfg->cluster_node);
    memset(cfg, 0, sizeof *cfg);
}
