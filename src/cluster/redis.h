/*
 * The Redis link: one logical connection to Redis (one server, or a Redis Cluster) on the
 * server's libuv loop, through hiredis's async API and its libuv adapter. The bottom of the
 * cluster layer (issue 18): it sends commands and scripts, follows a cluster's slot map, keeps
 * reconnecting with capped backoff, and carries pub/sub on a connection of its own.
 * docs/internals/cluster-redis.md describes the contract; this header states it per call.
 *
 * Callback rule (as libuv's): when a call that takes a callback fails, the callback never
 * runs; when it succeeds, the callback runs exactly once, never before the call returns.
 * Everything here runs on the loop's thread.
 */
#ifndef TP_CLUSTER_REDIS_H
#define TP_CLUSTER_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "transports.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp__redis tp__redis;
typedef struct tp__redis_script tp__redis_script;

/* ---- Addresses ----------------------------------------------------------------------- */

/* A parsed `redis://[[user]:password@]host[:port][/db]` or `unix:///path`. */
typedef struct tp__redis_url {
    char host[256]; /* an IP address or a name (resolved synchronously by hiredis 0.14) */
    int port;       /* 6379 when the URL has none; 0 for a unix socket */
    char path[108]; /* the unix socket's path, or "" */
    char user[128]; /* ACL user for AUTH, or "" (AUTH password alone) */
    char password[256];
    int has_password;
    int db; /* SELECT db on connect when not 0 (a cluster has db 0 only) */
} tp__redis_url;

/**
 * tp__redis_url_parse parses a Redis URL into *out. Percent escapes in the user and the
 * password are decoded. Returns TP_OK, or TP_EARG with a message naming the bad field
 * ("redis url: port: ...").
 */
int tp__redis_url_parse(const char *url, tp__redis_url *out, tp_error *err);

/**
 * tp__redis_keyslot returns the Redis Cluster slot of a key: CRC16 (XMODEM) of the key, or
 * of the part between the first '{' and the next '}' when that part is not empty, mod 16384
 * (the cluster specification's "Keys distribution model").
 */
uint16_t tp__redis_keyslot(const char *key, size_t len);

/* ---- Life cycle ---------------------------------------------------------------------- */

typedef enum tp__redis_event {
    TP__REDIS_UP,   /* every connection the link needs is ready (after AUTH, SELECT, map) */
    TP__REDIS_DOWN, /* it was up and one of them was lost; reason says which and why */
    TP__REDIS_RETRY /* a connection failed or was lost; the next attempt in retry_ms */
} tp__redis_event;

/* The link's state changes. reason is borrowed (valid during the call); retry_ms is the
 * delay before the next attempt for TP__REDIS_RETRY, 0 otherwise. */
typedef void (*tp__redis_state_cb)(tp__redis_event ev, const char *reason, uint32_t retry_ms,
                                   void *user);
/* A message on a subscribed channel (pub/sub). Both are borrowed. */
typedef void (*tp__redis_message_cb)(const char *channel, size_t channel_len, const char *data,
                                     size_t len, void *user);
/* The pub/sub connection came back after a loss and every channel is subscribed again:
 * messages published while it was down were missed (the owner catches up from its logs). */
typedef void (*tp__redis_resubscribed_cb)(void *user);

typedef struct tp__redis_config {
    const char *url;             /* see tp__redis_url_parse */
    uint32_t max_inflight;       /* commands sent and not yet answered; 0: 10000 */
    uint32_t backoff_min_ms;     /* first reconnect delay; 0: 100 */
    uint32_t backoff_max_ms;     /* the cap of the doubling delay; 0: 5000 */
    uint32_t connect_timeout_ms; /* TCP connect plus AUTH/SELECT; 0: 2000 */
    uint32_t command_timeout_ms; /* a reply later than this drops the connection; 0: 5000 */
    tp__redis_state_cb on_state; /* may be NULL */
    tp__redis_message_cb on_message;
    tp__redis_resubscribed_cb on_resubscribed;
    void *user; /* the last argument of the three callbacks above */
} tp__redis_config;

/**
 * tp__redis_new starts a link on loop: it connects at once (in the background) and keeps
 * reconnecting until freed. A cluster is detected by CLUSTER SLOTS on the first connection.
 * Ownership: copies cfg (and the URL); returns new (tp__redis_free).
 * Errors: NULL with TP_EARG (bad URL or config, the message names the field) or TP_ENOMEM.
 */
tp__redis *tp__redis_new(uv_loop_t *loop, const tp__redis_config *cfg, tp_error *err);

/**
 * tp__redis_free closes every connection: each command not answered yet gets its callback
 * once with TP_ECLOSED, and no callback of the link runs afterwards. Safe from inside any
 * of the link's callbacks. The memory and the libuv handles are released by the loop's
 * close callbacks: run the loop after it (as for any libuv handle) before uv_loop_close.
 * Accepts NULL.
 */
void tp__redis_free(tp__redis *r);

/** tp__redis_is_up says whether the link is up (the last event was TP__REDIS_UP). */
int tp__redis_is_up(const tp__redis *r);

/** tp__redis_standalone says whether the link is known to reach one Redis, not a cluster
 * (known once its first connection asked CLUSTER SLOTS): any script may then touch keys of
 * any slot. */
int tp__redis_standalone(const tp__redis *r);

/* ---- Commands ------------------------------------------------------------------------ */

/* A command's outcome: reply (borrowed, valid during the call) and err == NULL, or reply
 * NULL and err (the link's failure: TP_ECLOSED when the connection was lost or the link
 * freed, TP_EINTERNAL for a timeout or too many redirects). A Redis error reply (-ERR ...)
 * is a reply of type REDIS_REPLY_ERROR: the caller decides. */
typedef void (*tp__redis_reply_cb)(const redisReply *reply, const tp_error *err, void *user);

/**
 * tp__redis_command sends argv (binary safe) and calls cb with its reply. Commands on one
 * connection are pipelined and answered in order; on a cluster the command goes to the
 * master of the slot of argv[key_index] (key_index -1: a command without key, any master)
 * and MOVED and ASK redirections are followed. A command issued while its connection is
 * being made waits for it (at most connect_timeout_ms); while it is down (waiting for the
 * next attempt) the call fails at once. Blocking commands (BLPOP, ...) are not supported:
 * the command timeout would drop the connection.
 * Ownership: copies argv. Errors: TP_ECLOSED (down, or freed), TP_ETOOLARGE (max_inflight
 * commands already in flight), TP_EARG, TP_ENOMEM; cb then never runs.
 */
int tp__redis_command(tp__redis *r, int argc, const char *const *argv, const size_t *argvlen,
                      int key_index, tp__redis_reply_cb cb, void *user, tp_error *err);

/* ---- Scripts ------------------------------------------------------------------------- */

/**
 * tp__redis_script_new registers a Lua script with the link (nothing is sent). Calls run it
 * by EVALSHA; a NOSCRIPT reply (the script cache is empty after a Redis restart or a
 * SCRIPT FLUSH) is answered by EVAL of the body, transparently.
 * Ownership: copies lua; returns borrowed (freed with the link).
 * Errors: NULL with TP_ECLOSED (link freed), TP_ENOMEM, TP_EINTERNAL (SHA-1 failed).
 */
tp__redis_script *tp__redis_script_new(tp__redis *r, const char *lua, size_t len, tp_error *err);

/** tp__redis_script_sha returns the script's SHA-1 in hex (40 characters, borrowed). */
const char *tp__redis_script_sha(const tp__redis_script *s);

/**
 * tp__redis_script_call runs a script with nkeys keys and nargs arguments. On a cluster it
 * goes to the master of the first key's slot, and every key must have that slot (use one
 * hash tag); so must they until the link knows it reaches one Redis (tp__redis_standalone),
 * where keys of any slot are taken. Ownership: copies keys and args. Errors: TP_EARG (keys in
 * different slots: the message names both keys' indexes and slots), else as tp__redis_command.
 */
int tp__redis_script_call(tp__redis *r, tp__redis_script *s, int nkeys, const char *const *keys,
                          const size_t *keylens, int nargs, const char *const *args,
                          const size_t *arglens, tp__redis_reply_cb cb, void *user, tp_error *err);

/* ---- Pub/sub ------------------------------------------------------------------------- */

/**
 * tp__redis_subscribe adds a channel (binary safe) to the link's set; messages go to
 * cfg->on_message. The set is subscribed on a connection of its own (made on the first
 * call) and again after each reconnect (then cfg->on_resubscribed runs). Plain SUBSCRIBE,
 * also on a cluster (hiredis 0.14 cannot parse sharded pub/sub): PUBLISH reaches every node.
 * Subscribing twice to a channel is one subscription.
 * Ownership: copies channel. Errors: TP_ECLOSED (freed), TP_EARG (empty), TP_ENOMEM.
 */
int tp__redis_subscribe(tp__redis *r, const char *channel, size_t len, tp_error *err);

/** tp__redis_unsubscribe removes a channel from the set (TP_ENOTFOUND when not in it). */
int tp__redis_unsubscribe(tp__redis *r, const char *channel, size_t len, tp_error *err);

/* ---- Figures ------------------------------------------------------------------------- */

typedef struct tp__redis_stats {
    uint64_t commands;    /* commands accepted by tp__redis_command and script calls */
    uint64_t failed;      /* of them, answered by err (lost connection, timeout, ...) */
    uint64_t refused;     /* calls refused at once (down, max_inflight) */
    uint64_t moved;       /* MOVED redirections followed */
    uint64_t ask;         /* ASK redirections followed */
    uint64_t noscript;    /* NOSCRIPT replies answered by EVAL */
    uint64_t reconnects;  /* connections made again after a loss (pub/sub included) */
    uint64_t timeouts;    /* connections dropped by command_timeout_ms or connect_timeout_ms */
    uint64_t map_updates; /* cluster slot maps read */
    uint32_t inflight;    /* now */
    uint32_t masters;     /* masters in the slot map (0: not a cluster) */
    int cluster;          /* 1 when the server is a Redis Cluster, 0 when not, -1 unknown yet */
} tp__redis_stats;

/** tp__redis_stats_get fills *out with the link's counters. */
void tp__redis_stats_get(const tp__redis *r, tp__redis_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TP_CLUSTER_REDIS_H */
