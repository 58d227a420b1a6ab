/* Real redis-server processes for the Redis link's tests (tests/unit/cluster/): each test
 * starts its own on free loopback ports in a temporary directory, with the durable settings
 * the cluster layer documents (AOF, appendfsync always), and stops them. */
#ifndef TP_TESTS_REDISD_H
#define TP_TESTS_REDISD_H

#include <sys/types.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#define TPT_REDIS_SERVER "/usr/bin/redis-server"
#define TPT_REDIS_CLI "/usr/bin/redis-cli"

typedef struct tpt_redisd {
    pid_t pid;
    int port;
    int cluster;
    char dir[512];        /* its own directory: AOF, nodes.conf, log */
    const char *extra[8]; /* more arguments (e.g. "--requirepass", "secret"), NULL-ended */
    int node_timeout_ms;  /* cluster-node-timeout; 0: 5000 */
} tpt_redisd;

/* tpt_tempdir makes a fresh directory under $TMPDIR (or /tmp) and returns its path
 * (static storage per call site is the caller's: copies into out). */
void tpt_tempdir(char *out, size_t cap);
/* tpt_rm_rf removes a directory tree. */
void tpt_rm_rf(const char *dir);

/* tpt_free_port returns a loopback port free now (and port + 10000, the cluster bus, when
 * bus is set). */
int tpt_free_port(int bus);

/* tpt_redisd_start starts redis-server in base/<port> (port 0: a free one) and waits until it
 * answers PING (5 s at most). Returns 0, or -1 (the test fails). */
int tpt_redisd_start(tpt_redisd *d, const char *base, int port, int cluster);
/* tpt_redisd_signal sends sig (SIGKILL: also waits for the process). */
void tpt_redisd_signal(tpt_redisd *d, int sig);
/* tpt_redisd_restart starts it again on the same port and directory (its AOF). */
int tpt_redisd_restart(tpt_redisd *d);
/* tpt_redisd_stop kills it (SIGKILL) if running. */
void tpt_redisd_stop(tpt_redisd *d);

/* tpt_redis_sync connects to 127.0.0.1:port with hiredis's blocking API (NULL on failure). */
redisContext *tpt_redis_sync(int port);

/* tpt_cluster_create joins n started cluster-enabled servers into one cluster (redis-cli
 * --cluster create, `replicas` replicas per master) and waits until every node says
 * cluster_state:ok and knows every master (20 s at most). Returns 0 or -1. */
int tpt_cluster_create(tpt_redisd *d, int n, int replicas);

/* tpt_uv_run_until runs loop until *flag reaches want or ms pass (a 5 ms timer keeps it
 * turning); returns whether it did. */
int tpt_uv_run_until(uv_loop_t *loop, const int *flag, int want, int ms);
/* tpt_uv_run_while runs loop until done(arg) or ms pass; returns done(arg). */
int tpt_uv_run_while(uv_loop_t *loop, int (*done)(const void *arg), const void *arg, int ms);

#endif /* TP_TESTS_REDISD_H */
