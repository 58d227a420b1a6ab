/*
 * store_bench: what a commit costs the SQLite store, per synchronous level,
 * with one transaction per record (autocommit), one per write, and group
 * commit of 10, 100 and 1000 writes per transaction.
 *
 * A "write" is what the hub stores for one accepted change: the model
 * (~200 bytes, replaced), a history entry (~100 bytes, a new rev), the
 * client's outcome (the ack, a new ref) and the client record (replaced).
 * Each cell runs on a new file for a fixed time (or a cap of writes) and
 * reports writes per second and the latency of the commit call (median,
 * p99): the time an ack waits for the disk.
 *
 *   store_bench [--dir DIR] [--quick] [--seconds S] [--json FILE]
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "transports.h"

#ifndef TP_BENCH_DIR
#define TP_BENCH_DIR "/tmp"
#endif

/* Writes per transaction; 0: every record its own transaction. */
static const int groups[] = {0, 1, 10, 100, 1000};
#define N_GROUPS (sizeof groups / sizeof groups[0])

static const struct {
    tp_sync sync;
    const char *name;
} levels[] = {{TP_SYNC_FULL, "FULL"}, {TP_SYNC_NORMAL, "NORMAL"}, {TP_SYNC_OFF, "OFF"}};
#define N_LEVELS (sizeof levels / sizeof levels[0])

#define TENANTS 1000
#define MODELS_PER_TENANT 10
#define MAX_WRITES 200000

typedef struct result {
    const char *sync;
    int group;
    long writes, txns;
    double seconds;
    double p50_us, p99_us, max_us;
} result;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void
die(const char *what, const tp_error *err)
{
    fprintf(stderr, "store_bench: %s: %s\n", what, err != NULL ? err->message : strerror(errno));
    exit(1);
}

/* one_write stores the four records of write i. */
static void
one_write(tp_store *s, long i, char *model, char *hist)
{
    tp_error err;
    char tenant[16], id[8], client[16];
    long t = i % TENANTS;
    snprintf(tenant, sizeof tenant, "tenant%04ld", t);
    snprintf(id, sizeof id, "m%ld", (i / TENANTS) % MODELS_PER_TENANT);
    snprintf(client, sizeof client, "c%ld", t);
    int64_t rev = i / TENANTS + 1, ref = rev;
    /* The bodies change with every write, as a model's value does. */
    int m = snprintf(model, 256,
                     "{\"schema\":\"Document\",\"merge\":\"lww\",\"rev\":%lld,\"value\":"
                     "{\"title\":\"Quarterly report %ld\",\"body\":\"%0120ld\"}}",
                     (long long)rev, i, i);
    int h = snprintf(hist, 128,
                     "{\"type\":\"patch\",\"scope\":\"private\",\"id\":\"%s\",\"rev\":%lld,"
                     "\"patch\":{\"body\":\"%030ld\"}}",
                     id, (long long)rev, i);
    char outcome[64], crec[32];
    int o = snprintf(outcome, sizeof outcome, "{\"type\":\"ack\",\"ref\":%lld,\"rev\":%lld}",
                     (long long)ref, (long long)rev);
    int c = snprintf(crec, sizeof crec, "{\"ref\":%lld}", (long long)ref);
    tp__rec recs[4] = {
        {TP__REC_MODEL, tenant, id, 0, model, (size_t)m},
        {TP__REC_HIST, tenant, id, rev, hist, (size_t)h},
        {TP__REC_OUTCOME, tenant, client, ref, outcome, (size_t)o},
        {TP__REC_CLIENT, tenant, client, 0, crec, (size_t)c},
    };
    for (int k = 0; k < 4; k++)
        if (s->ops->put(s, &recs[k], &err) != TP_OK)
            die("put", &err);
}

static void
remove_files(const char *path)
{
    char p[1200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static result
run_cell(const char *dir, size_t level, int group, double seconds)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/bench.db", dir);
    remove_files(path);
    tp_store_options o = {0};
    o.synchronous = levels[level].sync;
    tp_error err;
    tp_store *s = tp_store_sqlite(path, &o, &err);
    if (s == NULL)
        die("open", &err);

    size_t cap = 1 << 16, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    char model[256], hist[128];
    long writes = 0;
    double t0 = now_s(), t = t0;
    while (t - t0 < seconds && writes < MAX_WRITES) {
        if (group == 0) {
            /* Autocommit: each put is a transaction; time the whole put. */
            double a = now_s();
            one_write(s, writes, model, hist);
            t = now_s();
            if (n == cap)
                lat = realloc(lat, (cap *= 2) * sizeof *lat);
            lat[n++] = (t - a) / 4; /* per commit: four per write */
            writes++;
            continue;
        }
        if (s->ops->begin(s, &err) != TP_OK)
            die("begin", &err);
        for (int w = 0; w < group; w++)
            one_write(s, writes++, model, hist);
        double a = now_s();
        if (s->ops->commit(s, &err) != TP_OK)
            die("commit", &err);
        t = now_s();
        if (n == cap)
            lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[n++] = t - a;
    }
    double elapsed = t - t0;
    tp_store_free(s);
    remove_files(path);

    qsort(lat, n, sizeof *lat, cmp_double);
    result r = {levels[level].name,
                group,
                writes,
                group == 0 ? writes * 4 : (long)n,
                elapsed,
                lat[n / 2] * 1e6,
                lat[(size_t)((double)(n - 1) * 0.99)] * 1e6,
                lat[n - 1] * 1e6};
    free(lat);
    return r;
}

static void
usage(void)
{
    fprintf(stderr, "usage: store_bench [--dir DIR] [--quick] [--seconds S] [--json FILE]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *dir_arg = NULL, *json = NULL;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir_arg = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--quick") == 0)
            seconds = 0.25;
        else
            usage();
    }
    if (seconds <= 0)
        usage();

    /* A directory of our own under --dir (or the build directory), so the
     * benchmark's files never meet anything else. */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/store-bench-XXXXXX", dir_arg != NULL ? dir_arg : TP_BENCH_DIR);
    if (mkdtemp(dir) == NULL)
        die(dir, NULL);

    printf("store_bench: SQLite %s, WAL, files in %s, %.2f s per cell\n", sqlite3_libversion(), dir,
           seconds);
    printf("a write = model put (~200 B) + history put (~100 B) + outcome put + client put\n\n");
    printf("%-7s %-12s %10s %10s %12s %12s %12s\n", "sync", "txn", "writes", "writes/s",
           "commit p50", "commit p99", "commit max");
    result res[N_LEVELS * N_GROUPS];
    size_t nres = 0;
    for (size_t l = 0; l < N_LEVELS; l++) {
        for (size_t g = 0; g < N_GROUPS; g++) {
            result r = run_cell(dir, l, groups[g], seconds);
            res[nres++] = r;
            char txn[32];
            if (r.group == 0)
                snprintf(txn, sizeof txn, "per record");
            else
                snprintf(txn, sizeof txn, "%d/txn", r.group);
            printf("%-7s %-12s %10ld %10.0f %9.1f us %9.1f us %9.1f us\n", r.sync, txn, r.writes,
                   (double)r.writes / r.seconds, r.p50_us, r.p99_us, r.max_us);
            fflush(stdout);
        }
    }
    rmdir(dir);

    if (json != NULL) {
        FILE *f = fopen(json, "w");
        if (f == NULL)
            die(json, NULL);
        fprintf(f, "{\"bench\":\"store\",\"seconds_per_cell\":%.3f,\"results\":[", seconds);
        for (size_t i = 0; i < nres; i++)
            fprintf(f,
                    "%s\n{\"sync\":\"%s\",\"writes_per_txn\":%d,\"writes\":%ld,\"txns\":%ld,"
                    "\"seconds\":%.3f,\"writes_per_s\":%.1f,\"commit_p50_us\":%.1f,"
                    "\"commit_p99_us\":%.1f,\"commit_max_us\":%.1f}",
                    i ? "," : "", res[i].sync, res[i].group, res[i].writes, res[i].txns,
                    res[i].seconds, (double)res[i].writes / res[i].seconds, res[i].p50_us,
                    res[i].p99_us, res[i].max_us);
        fprintf(f, "\n]}\n");
        fclose(f);
    }
    return 0;
}
