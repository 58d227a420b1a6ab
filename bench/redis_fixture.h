/*
 * What redis_bench and clog_bench share: a redis-server of their own (the tests' helper,
 * tests/support/redisd.c) unless --url names one, a Redis link on a libuv loop, up before
 * the first command, and the process's CPU time.
 */
#ifndef TP_BENCH_REDIS_FIXTURE_H
#define TP_BENCH_REDIS_FIXTURE_H

#include <uv.h>

#include "cluster/redis.h"
#include "redisd.h"

typedef struct bench_redis {
    const char *name; /* the benchmark's, in its messages */
    tpt_redisd rd;    /* rd.pid 0: a server given by URL */
    char base[512];
    char url[64];
    tp__redis *link;
    int up;
} bench_redis;

/* bench_redis_open starts redis-server with appendfsync `fsync` in a temporary directory when
 * url is NULL, then connects a link on loop and runs the loop until it is up. Returns 0, or 1
 * with the reason printed. */
int bench_redis_open(bench_redis *b, const char *name, uv_loop_t *loop, const char *url,
                     const char *fsync);
/* bench_redis_close frees the link, runs loop until its handles are closed, and stops the
 * server it started. */
void bench_redis_close(bench_redis *b, uv_loop_t *loop);
/* bench_cpu_s is the process's user and system CPU time so far, in seconds. */
double bench_cpu_s(void);

#endif /* TP_BENCH_REDIS_FIXTURE_H */
