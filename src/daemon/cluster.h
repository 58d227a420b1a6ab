/*
 * A cluster node (issue 18, docs/cluster.md): the backend of the hub's shared
 * order (core/order.h) on the cluster layer. It owns the Redis link
 * (cluster/redis.h) on the server's libuv loop and a model change log
 * (cluster/clog.h), turns the hub's appends, reads and follows into log
 * calls, and feeds the answers and the published entries back to the hub.
 *
 * Life cycle, on the loop's thread (main.c):
 *   tp__cluster_new       after the server exists (its loop), before it serves
 *   tp__cluster_sync      runs the loop until every model is read from Redis
 *   ... tp_server_run ...
 *   tp__cluster_stop      frees the log and the link (no callback after it)
 *   tp_server_free        its last loop runs close the link's libuv handles
 *   tp__cluster_free      after the hub (which may still call the backend)
 */
#ifndef TP_DAEMON_CLUSTER_H
#define TP_DAEMON_CLUSTER_H

#include <signal.h>
#include <stddef.h>

#include <uv.h>

#include "daemon/daemon.h"
#include "transports.h"

typedef struct tp__cluster tp__cluster;

typedef struct tp__cluster_config {
    const char *redis;             /* the URL (may hold a password: never logged) */
    const char *node;              /* this node's name, for the log */
    unsigned history;              /* log entries kept per model (the clog's keep) */
    unsigned connect_timeout_ms;   /* the start's bound; also each connection's */
    const tp__daemon_options *opt; /* the daemon's log */
} tp__cluster_config;

/*
 * tp__cluster_new starts the link on loop (it connects in the background) and
 * gives the hub its order (tp__hub_set_order): from here on the hub reads
 * every model from Redis, or creates it there. The hub must have no store.
 * Ownership: copies cfg's strings; borrows hub and loop, which must outlive
 * tp__cluster_stop. Returns new, or NULL with err (TP_EARG: a bad URL, a hub
 * with a store; TP_ENOMEM).
 */
tp__cluster *tp__cluster_new(tp_hub *hub, uv_loop_t *loop, const tp__cluster_config *cfg,
                             tp_error *err);

/*
 * tp__cluster_sync runs the loop until the hub has read every model from
 * Redis (tp__order_unsynced is 0), at most cfg->connect_timeout_ms, or until
 * *stop becomes non-zero (a signal). Returns 0 when synced (and logs it), 1
 * when stopped, or -1 with why: "redis at HOST:PORT did not answer within N
 * ms: <the last reason>".
 */
int tp__cluster_sync(tp__cluster *c, volatile sig_atomic_t *stop, char *why, size_t why_size);

/*
 * tp__cluster_stop frees the log and the link: calls in flight get no answer
 * and the backend refuses every call from then on (TP_ECLOSED). The link's
 * libuv handles close as the loop runs next (tp_server_free runs it).
 * Accepts NULL; idempotent.
 */
void tp__cluster_stop(tp__cluster *c);

/* tp__cluster_free releases what is left, after the hub is freed. Accepts NULL. */
void tp__cluster_free(tp__cluster *c);

/* tp__cluster_where writes "HOST:PORT" (or the unix socket's path) of the
 * Redis the node uses: what a log line may say of the URL (no password). */
const char *tp__cluster_where(const tp__cluster *c);

#endif /* TP_DAEMON_CLUSTER_H */
