/*
 * clog_bench: the change log's figures (src/cluster/clog.c) against a redis-server it starts
 * itself on a free loopback port (appendonly yes, appendfsync always unless --fsync), or
 * against --url. An append is the write path of issue 18: one Lua script that checks the
 * base rev, stores the record (--record bytes), logs and trims the entry (--entry bytes, keep
 * 256), records the writer's outcome (a private model) and publishes. Prints:
 *   - one at a time (one model, each append waits for the last): p50/p99 in microseconds;
 *   - pipelined (--models models, one append in flight each): appends per second, p50/p99,
 *     and the bench process's CPU per append (ours: the log, the link, hiredis);
 *   - Redis round trips per append (commands sent, plus NOSCRIPT fallbacks).
 * Usage: clog_bench [--quick] [--count N] [--models M] [--entry B] [--record B]
 *                   [--url redis://...] [--fsync everysec]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "cluster/clog.h"
#include "cluster/redis.h"
#include "redis_fixture.h"
#include "util/clock.h"

static uv_loop_t loop;
static tp__redis *link_;
static tp__clog *log_;
static bench_redis redis_; /* the server and the link */
static long issued, done_, total, failed, conflicts;
static uint64_t *lat;
static char *entry, *record;
static size_t entry_len, record_len;

#define MAXMODELS 4096
static struct model {
    char id[16];
    int64_t rev;
    uint64_t sent_at;
} models[MAXMODELS];
static int run_no; /* each run writes its own models */

static void issue(int m);

static void
on_append(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err,
          void *user)
{
    (void)was, (void)was_len;
    int m = (int)(intptr_t)user;
    if (err)
        failed++;
    else if (conflict)
        conflicts++;
    else
        models[m].rev = rev;
    lat[done_++] = (uint64_t)tp__clock_mono_ns() - models[m].sent_at;
    if (done_ == total)
        uv_stop(&loop);
    else if (issued < total)
        issue(m);
}

static void
issue(int m)
{
    tp__clog_append_req q = {.owner = "bench",
                             .id = models[m].id,
                             .base_rev = models[m].rev,
                             .entry = entry,
                             .entry_len = entry_len,
                             .record = record,
                             .record_len = record_len,
                             .keep = 256,
                             .writer = {"k7Qx2", issued + 1},
                             .outcome = entry,
                             .outcome_len = 60,
                             .outcome_keep = 256};
    tp_error err;
    models[m].sent_at = (uint64_t)tp__clock_mono_ns();
    if (tp__clog_append(log_, &q, on_append, (void *)(intptr_t)m, &err) != TP_OK) {
        fprintf(stderr, "clog_bench: %s\n", err.message);
        exit(1);
    }
    issued++;
}

static int
cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
run(long n, int nmodels)
{
    run_no++;
    for (int m = 0; m < nmodels; m++) {
        snprintf(models[m].id, sizeof models[m].id, "r%dm%d", run_no, m);
        models[m].rev = 0;
    }
    total = n;
    issued = done_ = failed = conflicts = 0;
    tp__clog_stats s0, s1;
    tp__clog_stats_get(log_, &s0);
    double c0 = bench_cpu_s();
    uint64_t t0 = (uint64_t)tp__clock_mono_ns();
    for (int m = 0; m < nmodels && issued < total; m++)
        issue(m);
    uv_run(&loop, UV_RUN_DEFAULT);
    double secs = (double)((uint64_t)tp__clock_mono_ns() - t0) / 1e9;
    double cpu = bench_cpu_s() - c0;
    tp__clog_stats_get(log_, &s1);
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    double trips =
        (double)(s1.calls - s0.calls + s1.noscript - s0.noscript + s1.redirects - s0.redirects) /
        (double)n;
    printf("%4d model%s in flight  %7ld appends  %8.0f /s  p50 %7.1f us  p99 %7.1f us  "
           "%5.2f us CPU each  %.3f round trips each  (%ld conflicts, %ld failed)\n",
           nmodels, nmodels == 1 ? " " : "s", n, (double)n / secs, (double)lat[n / 2] / 1e3,
           (double)lat[n * 99 / 100] / 1e3, cpu * 1e6 / (double)n, trips, conflicts, failed);
}

int
main(int argc, char **argv)
{
    long count = 50000, nmodels = 256;
    long elen = 120, rlen = 1024;
    const char *url = NULL, *fsync = "always";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            count = 5000;
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc)
            nmodels = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--entry") == 0 && i + 1 < argc)
            elen = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--record") == 0 && i + 1 < argc)
            rlen = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--fsync") == 0 && i + 1 < argc)
            fsync = argv[++i];
        else {
            fprintf(stderr, "usage: clog_bench [--quick] [--count N] [--models M] [--entry B] "
                            "[--record B] [--url redis://...] [--fsync always|everysec|no]\n");
            return 2;
        }
    }
    if (count < 100 || nmodels < 1 || nmodels > MAXMODELS || elen < 60 || elen > 1000000 ||
        rlen < 0 || rlen > 10000000)
        return 2;
    entry_len = (size_t)elen;
    record_len = (size_t)rlen;
    entry = malloc(entry_len);
    record = malloc(record_len + 1);
    memset(entry, 'e', entry_len);
    memset(record, 'r', record_len + 1);
    uv_loop_init(&loop);
    if (bench_redis_open(&redis_, "clog_bench", &loop, url, fsync) != 0)
        return 1;
    link_ = redis_.link;
    printf("clog_bench: entry %zu B, record %zu B, keep 256, outcome recorded\n", entry_len,
           record_len);
    tp_error err;
    log_ = tp__clog_new(link_, &err);
    lat = calloc((size_t)count, sizeof *lat);
    run(count / 10, 1);
    run(count, (int)nmodels);
    tp__clog_free(log_);
    bench_redis_close(&redis_, &loop);
    uv_loop_close(&loop);
    free(lat);
    free(entry);
    free(record);
    return 0;
}
