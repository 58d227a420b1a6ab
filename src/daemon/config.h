/*
 * The daemon's configuration file (DESIGN.md, "The daemon"; docs/daemon.md
 * lists every key). Reading it is two steps: this module checks the whole
 * document (types, ranges, unknown keys, references between its parts) and
 * keeps the plain settings; daemon.c then builds the hub from it. Nothing
 * here touches a socket or a hub, so every refusal can be tested as a string.
 */
#ifndef TP_DAEMON_CONFIG_H
#define TP_DAEMON_CONFIG_H

#include <jansson.h>

#include "net/webhook.h"
#include "transports.h"

/*
 * tp__derror is an error as the user sees it, without the program's name:
 * "<source>: <JSON path>: <reason>", where source is the file name as given
 * (or "--demo", "--listen"). It is larger than tp_error because it carries a
 * file name and a path in front of a library message.
 */
typedef struct tp__derror {
    char message[1024];
} tp__derror;

/* tp__derror_set fills err with "<source>: <path>: <reason>" (no path: "<source>: <reason>"). */
void tp__derror_set(tp__derror *err, const char *source, const char *path, const char *reason);

/* The defaults DESIGN.md shows in its example config. */
#define TP__DAEMON_LISTEN "127.0.0.1:8080"
#define TP__DAEMON_ROUTE "/ws/{tenant}"
#define TP__DAEMON_SQLITE "transports.db" /* storage when the config names none */
#define TP__DAEMON_AUTOSYNC_MS 50

/* "cluster" (DESIGN.md, "Scale-out on Redis"; docs/cluster.md): its defaults and bounds. */
#define TP__CLUSTER_NODE_MAX 64              /* bytes of a node name, [A-Za-z0-9._-] */
#define TP__CLUSTER_HISTORY 256              /* log entries kept per model in Redis */
#define TP__CLUSTER_HISTORY_MAX 100000       /* the log's own bound (TP__CLOG_KEEP_MAX) */
#define TP__CLUSTER_CONNECT_TIMEOUT_MS 10000 /* Redis must answer the start within this */

/*
 * A merge strategy of "merges": its Lua script inline (lua) or in a file
 * (lua_file, relative to the config file's directory), and its budgets
 * (0: luamerge.h's defaults). Compiling it is daemon.c's job (at start).
 */
typedef struct tp__config_merge {
    char *name;
    char *lua;      /* the script, or NULL */
    char *lua_file; /* its file as written, or NULL */
    unsigned max_instructions;
    unsigned max_memory_bytes;
    unsigned max_ms;
} tp__config_merge;

#define TP__CONFIG_MERGES_MAX 64

/*
 * tp__config holds a checked configuration. `server` is ready for
 * tp_server_new (its strings point into this struct) and `hub` for
 * tp_hub_new, except for the log fields, which the caller sets. The three
 * model sections stay JSON (references into the parsed document): they are
 * checked, and daemon.c walks them to build the hub.
 */
typedef struct tp__config {
    tp_server_config server;
    tp_hub_config hub;
    char *listen;
    char *route;
    char **origins;         /* NULL-terminated, or NULL: any origin */
    char *admin_token_env;  /* the host API's token variable (daemon.c, net/hostapi.c) */
    char **trusted_proxies; /* NULL-terminated, or NULL: none */
    char *client_address_header;
    char *static_dir;    /* static files served by GET (the demo page), or NULL */
    char *sqlite;        /* storage.sqlite: the database file, or NULL (memory) */
    tp_sync synchronous; /* storage.synchronous */
    json_t *schemas;     /* {name: JSON Schema}, never NULL once parsed */
    json_t *tenants;     /* {tenant: {"models": {...}}}, or NULL */
    json_t *shared;      /* {sid: {...}}, or NULL */
    /* auth: mode "jwt" keeps the object (daemon.c loads its keys from
     * base_dir); mode "path" on an address that is not loopback needs
     * allow_unauthenticated. */
    int auth_jwt;
    int allow_unauthenticated;
    json_t *auth;        /* the "auth" object with mode "jwt", or NULL */
    char *base_dir;      /* the config file's directory (relative paths), or NULL: "." */
    char *tls_cert_file; /* tls.cert_file and tls.key_file, or NULL: no TLS */
    char *tls_key_file;
    char *metrics_token_env;      /* /metrics needs this variable's value as a Bearer token */
    tp__webhook_config *webhooks; /* "webhooks", checked */
    size_t n_webhooks;
    tp__config_merge *merges; /* "merges", checked, in the file's order */
    size_t n_merges;
    /* "cluster": the node's Redis (a URL checked by tp__redis_url_parse) and name, or
     * cluster_redis NULL: one node on its own. A cluster node has no storage (sqlite NULL). */
    char *cluster_redis;
    char *cluster_node;
    unsigned cluster_history;            /* log entries kept per model (TP__CLUSTER_HISTORY) */
    unsigned cluster_connect_timeout_ms; /* the start's bound, and each connection's */
} tp__config;

/*
 * tp__config_parse checks a parsed document and fills cfg (zeroed first).
 * source names the document in messages. Returns 0, or -1 with err filled
 * and cfg left empty (nothing to clear).
 * Ownership: borrows root; cfg takes its own references.
 */
int tp__config_parse(tp__config *cfg, const json_t *root, const char *source, tp__derror *err);

/*
 * tp__config_load_text parses JSON text and checks it; parse errors carry
 * line and column ("<source>:3:14: ..."). Duplicate keys are refused.
 */
int tp__config_load_text(tp__config *cfg, const char *text, const char *source, tp__derror *err);

/* tp__config_load_file reads a file and checks it; source is the path as given. */
int tp__config_load_file(tp__config *cfg, const char *path, tp__derror *err);

/*
 * tp__config_set_listen replaces the listen address (the --listen flag),
 * checked as the config's own is. Returns 0, or -1 with err ("--listen: ...").
 */
int tp__config_set_listen(tp__config *cfg, const char *listen, tp__derror *err);

/*
 * tp__config_set_static_dir replaces static_dir (the --static-dir flag, or
 * the demo page's directory with --demo). Returns 0, or -1 with err.
 */
int tp__config_set_static_dir(tp__config *cfg, const char *dir, tp__derror *err);

/*
 * tp__config_listen_loopback says whether a checked listen address is a
 * loopback one (127.0.0.0/8, ::1, localhost): only there may auth.mode
 * "path" serve without allow_unauthenticated.
 */
int tp__config_listen_loopback(const char *listen);

/* tp__config_clear frees what cfg holds and zeroes it. A zeroed cfg is fine. */
void tp__config_clear(tp__config *cfg);

/*
 * tp__config_check_listen checks a "HOST:PORT" address: HOST a name, an IPv4
 * address or a bracketed IPv6 one, PORT 0 to 65535. Returns 0, or -1 with
 * the reason in why.
 */
int tp__config_check_listen(const char *listen, char *why, size_t why_size);

/*
 * tp__config_path_append appends a key to a JSON path held in path (size
 * bytes), spelled as every message spells paths: `tenants.alice`, or
 * `tenants["acme.com"]` for a key that is not plain.
 */
void tp__config_path_append(char *path, size_t size, const char *key);

/* tp__config_type_name names a JSON value's type for messages ("string", ...). */
const char *tp__config_type_name(const json_t *v);

#endif /* TP_DAEMON_CONFIG_H */
