/*
 * transportsd's state before it serves: a hub built whole from a checked
 * configuration (schemas loaded, private models hosted, shared models
 * shared, tenants subscribed), and the server's configuration. Building
 * either succeeds entirely or leaves nothing behind, so the daemon never
 * starts half-configured. Binding the listener is main.c's job, after this.
 */
#ifndef TP_DAEMON_DAEMON_H
#define TP_DAEMON_DAEMON_H

#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "auth/jwt.h"
#include "daemon/config.h"
#include "daemon/luamerge.h"
#include "transports.h"

/* What the command line adds to a configuration. */
typedef struct tp__daemon_options {
    const char *listen; /* --listen: replaces the config's listen, or NULL */
    tp_log_fn log;      /* installed in the hub (which hands it to its server) */
    void *log_user;
    int log_level;          /* TP_LOG_ERROR ... TP_LOG_DEBUG */
    const char *static_dir; /* --static-dir (or --demo's page): replaces static_dir, or NULL */
} tp__daemon_options;

typedef struct tp__daemon {
    tp__config cfg; /* cfg.server is what tp_server_new gets */
    tp_hub *hub;
    tp_store *store;     /* storage.sqlite's, or NULL (memory) */
    int restored;        /* the hub came from storage: the config's state was not built */
    tp_schema **schemas; /* loaded in the order of cfg.schemas */
    size_t n_schemas;
    int n_diffs;     /* restored: how the config differs from the stored state */
    char diffs[600]; /* "model alice.notes (not stored), ..." (tp__host_state_diff) */
    /* auth.mode "jwt": the key set and the rules the hub's verifier uses. */
    tp__jwt_keys *keys;
    tp__jwt_rules rules;
    int rules_loaded;
    char *tls_cert, *tls_key; /* tls's files, resolved from the config's directory */
    char *metrics_token;      /* metrics_token_env's value (copied at start) */
    /* The warnings to log at every start (auth.mode "path" allowed on an
     * address that is not loopback; a browser handshake in jwt mode with
     * no Origin allowlist), or NULL. */
    const char *warn_unauthenticated;
    const char *warn_origins;
    tp__daemon_options opt; /* what it was built with (its log, for reloads) */
    /* "merges": the Lua strategies, and the list the hub finds them in
     * (cfg.hub.merges, NULL-terminated). They outlive the hub. */
    tp__lua_merge **luas;
    size_t n_luas;
    const tp_merge **merge_list;
    /* "cluster": the node's backend of the shared order (daemon/cluster.h),
     * made once the server's loop exists (tp__daemon_cluster), or NULL. */
    struct tp__cluster *cluster;
    /* A cluster node without the host API: the schemas' names all the same
     * (its catalog names models' schemas by them), or NULL. */
    struct tp__host *names;
} tp__daemon;

/* ---- Life cycle ---- */

/*
 * tp__daemon_build builds the hub from a checked configuration, which the
 * daemon takes over (cfg is zeroed; on failure it is cleared too). Returns
 * the daemon, or NULL with err ("<source>: <path>: <reason>").
 */
tp__daemon *tp__daemon_build(tp__config *cfg, const tp__daemon_options *opt, const char *source,
                             tp__derror *err);

/* tp__daemon_load reads, checks and builds a config file. */
tp__daemon *tp__daemon_load(const char *path, const tp__daemon_options *opt, tp__derror *err);

/* tp__daemon_from_text does the same from JSON text named source. */
tp__daemon *tp__daemon_from_text(const char *text, const char *source,
                                 const tp__daemon_options *opt, tp__derror *err);

/* tp__daemon_demo builds the guide's demo (tp__daemon_demo_config, named "--demo"). */
tp__daemon *tp__daemon_demo(const tp__daemon_options *opt, tp__derror *err);

/* tp__daemon_free frees the hub, the schemas and the config. NULL is allowed. */
void tp__daemon_free(tp__daemon *d);

/*
 * tp__daemon_demo_config is the demo's configuration: the guide's setup
 * (alice and bob with private notes, a shared roadmap that alice writes and
 * bob reads, merged with lww-map), kept in memory. examples/demo.json holds
 * the same document.
 */
extern const char tp__daemon_demo_config[];

/*
 * tp__daemon_host_api turns the host HTTP API on for a server when the
 * config names admin_token_env: the token is that variable's value (16 to
 * 512 bytes; unset or empty refuses the start). For the demo an unset one
 * is made up and copied into made (else made is ""). Returns 0, or -1 with
 * err.
 */
int tp__daemon_host_api(tp__daemon *d, tp_server *server, int demo, char *made, size_t made_size,
                        tp__derror *err);

/*
 * tp__daemon_webhooks starts the config's webhooks on a server: each
 * secret_env must hold at least 16 bytes (else the start is refused).
 * Returns 0, or -1 with err.
 */
int tp__daemon_webhooks(tp__daemon *d, tp_server *server, tp__derror *err);

/*
 * tp__daemon_cluster makes a cluster node of a daemon whose config has
 * "cluster" (nothing to do otherwise: 0): the Redis link on the server's
 * loop, the hub's shared order, then the loop runs until every model is read
 * from Redis (or created there), before the server accepts anyone. Returns 0
 * (synced, or no cluster), 1 when *stop became non-zero meanwhile, or -1
 * with err ("cluster: redis at HOST:PORT did not answer within N ms: ...").
 */
int tp__daemon_cluster(tp__daemon *d, tp_server *server, volatile sig_atomic_t *stop,
                       tp__derror *err);

/*
 * tp__daemon_cluster_stop closes the node's link to Redis: call it after the
 * server stopped and before tp_server_free (whose last loop runs close the
 * link's handles). Nothing without a cluster; idempotent.
 */
void tp__daemon_cluster_stop(tp__daemon *d);

/* ---- Logging ---- */

/* tp__daemon_log_level_parse maps "error", "warn", "info", "debug" to TP_LOG_*, or -1. */
int tp__daemon_log_level_parse(const char *name);

/* tp__daemon_log_level_name is the word a log line carries for a level. */
const char *tp__daemon_log_level_name(int level);

/*
 * tp__daemon_log_format writes one log line, without a newline:
 * "2026-11-26T13:45:00.123Z info <line>" (UTC, milliseconds). Returns the
 * length it would have (as snprintf).
 */
int tp__daemon_log_format(char *out, size_t size, const struct timespec *when, int level,
                          const char *line);

/*
 * tp__daemon_log_stderr is the daemon's tp_log_fn: user is a FILE * (NULL:
 * stderr). Each line is written in one call and flushed, so lines from a
 * crash or a kill are not lost and never interleave.
 */
void tp__daemon_log_stderr(int level, const char *line, void *user);

/* tp__daemon_log writes a line of the daemon's own through the same sink, when
 * level is at most the options' level. */
void tp__daemon_log(const tp__daemon_options *opt, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- The command line ---- */

enum {
    TP__DAEMON_ARGS_RUN = 0,     /* run the daemon */
    TP__DAEMON_ARGS_HELP = 1,    /* print the usage on stdout, exit 0 */
    TP__DAEMON_ARGS_VERSION = 2, /* print the version on stdout, exit 0 */
    TP__DAEMON_ARGS_ERROR = -1   /* message on stderr with a usage hint, exit 2 */
};

typedef struct tp__daemon_args {
    const char *config;     /* --config FILE */
    int demo;               /* --demo */
    const char *listen;     /* --listen ADDR */
    const char *static_dir; /* --static-dir DIR */
    int log_level;          /* --log-level, TP_LOG_INFO by default */
} tp__daemon_args;

/*
 * tp__daemon_args_parse reads argv. On TP__DAEMON_ARGS_ERROR, why holds one line such as
 * "unknown option --foo" (without the program's name).
 * Ownership: the strings in args borrow argv.
 */
int tp__daemon_args_parse(int argc, char *const *argv, tp__daemon_args *args, char *why,
                          size_t why_size);

/* tp__daemon_usage is the text --help prints. */
extern const char tp__daemon_usage[];

#endif /* TP_DAEMON_DAEMON_H */
