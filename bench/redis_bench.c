/*
 * redis_bench: the Redis link's figures (src/cluster/redis.c) against a redis-server it starts
 * itself on a free loopback port, with the cluster layer's durable default (appendonly yes,
 * appendfsync always), or against --url. Prints, per command kind:
 *   - one at a time: round trip p50/p99 in microseconds (what a write waits for Redis);
 *   - pipelined (--window commands in flight): commands per second and the bench process's
 *     CPU per command (the link's and hiredis's cost on our side, not Redis's).
 * Usage: redis_bench [--quick] [--count N] [--window W] [--url redis://...] [--fsync everysec]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "cluster/redis.h"
#include "redis_fixture.h"
#include "util/clock.h"

static uv_loop_t loop;
static tp__redis *link_;
static tp__redis_script *script;
static bench_redis redis_; /* the server and the link */
static long issued, done_, total, window, failed;
static int kind; /* 0 INCR, 1 GET, 2 EVALSHA */
static uint64_t *lat;
static uint64_t sent_at;

static void issue(void);

static void
on_reply(const redisReply *reply, const tp_error *err, void *user)
{
    (void)user;
    if (err || reply->type == REDIS_REPLY_ERROR)
        failed++;
    if (window == 1)
        lat[done_] = (uint64_t)tp__clock_mono_ns() - sent_at;
    done_++;
    if (done_ == total)
        uv_stop(&loop);
    else
        issue();
}

static void
issue(void)
{
    while (issued < total && issued - done_ < window) {
        static const char *incr[2] = {"INCR", "bench:counter"};
        static const char *get[2] = {"GET", "bench:counter"};
        static const size_t len[2] = {4, 13};
        static const size_t getlen[2] = {3, 13};
        const char *keys[1] = {"bench:counter"};
        size_t keylens[1] = {13};
        tp_error err;
        int rc;
        sent_at = (uint64_t)tp__clock_mono_ns();
        if (kind == 0)
            rc = tp__redis_command(link_, 2, incr, len, 1, on_reply, NULL, &err);
        else if (kind == 1)
            rc = tp__redis_command(link_, 2, get, getlen, 1, on_reply, NULL, &err);
        else
            rc = tp__redis_script_call(link_, script, 1, keys, keylens, 0, NULL, NULL, on_reply,
                                       NULL, &err);
        if (rc != TP_OK) {
            fprintf(stderr, "redis_bench: %s\n", err.message);
            exit(1);
        }
        issued++;
    }
}

static int
cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
run(int k, long n, long w)
{
    static const char *names[3] = {"INCR", "GET", "EVALSHA"};
    kind = k;
    total = n;
    window = w;
    issued = done_ = failed = 0;
    double c0 = bench_cpu_s();
    uint64_t t0 = (uint64_t)tp__clock_mono_ns();
    issue();
    uv_run(&loop, UV_RUN_DEFAULT);
    double secs = (double)((uint64_t)tp__clock_mono_ns() - t0) / 1e9;
    double cpu = bench_cpu_s() - c0;
    if (w == 1) {
        qsort(lat, (size_t)n, sizeof *lat, cmp);
        printf("%-8s one at a time   %7ld  p50 %7.1f us  p99 %7.1f us  (%ld failed)\n", names[k], n,
               (double)lat[n / 2] / 1e3, (double)lat[n * 99 / 100] / 1e3, failed);
    } else {
        printf("%-8s %4ld in flight  %7ld  %9.0f /s     %5.2f us CPU each  (%ld failed)\n",
               names[k], w, n, (double)n / secs, cpu * 1e6 / (double)n, failed);
    }
}

int
main(int argc, char **argv)
{
    long count = 100000, win = 256;
    const char *url = NULL, *fsync = "always";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            count = 10000;
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
            win = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--fsync") == 0 && i + 1 < argc)
            fsync = argv[++i];
        else {
            fprintf(stderr, "usage: redis_bench [--quick] [--count N] [--window W] "
                            "[--url redis://...] [--fsync always|everysec|no]\n");
            return 2;
        }
    }
    if (count < 100 || win < 1)
        return 2;
    uv_loop_init(&loop);
    if (bench_redis_open(&redis_, "redis_bench", &loop, url, fsync) != 0)
        return 1;
    link_ = redis_.link;
    tp_error err;
    const char lua[] = "return redis.call('INCR', KEYS[1])";
    script = tp__redis_script_new(link_, lua, sizeof lua - 1, &err);
    lat = calloc((size_t)count, sizeof *lat);
    long seq = count / 10;
    for (int k = 0; k < 3; k++) {
        run(k, seq, 1);
        run(k, count, win);
    }
    bench_redis_close(&redis_, &loop);
    uv_loop_close(&loop);
    free(lat);
    return 0;
}
