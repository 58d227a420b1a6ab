/*
 * memory_bench: what a hub on SQLite holds in memory when many tenants are
 * stored and few are active (issue 5: "memory does not grow with the number
 * of models ever touched").
 *
 * It stores N tenants with one private model each (a ~200-byte Document),
 * then, each scenario in a fresh child process (so that one scenario's
 * freed memory does not hide in the next one's RSS), opens a hub on the
 * database and reports the process's RSS (VmRSS):
 *
 *   restored   the hub made on the store, nothing touched (shared models and
 *              the hub's records only: tenants load when needed)
 *   active     K tenants connected, each written once
 *   all, kept  every one of the N tenants used once (a connection opened,
 *              its snapshot taken, closed), nothing evicted: what memory
 *              would be if it grew with every model touched
 *   all, evict the same with tp_hub_evict after every 100 tenants, a
 *              budget of --budget-mb, while K tenants stay connected
 *
 * and the time a tenant takes to load from the store. The figures are
 * measurements on this machine, not pass/fail.
 *
 *   memory_bench [--models N] [--active K] [--budget-mb B] [--dir DIR] [--quick]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Document\",\"type\":\"object\",\"properties\":{"                                 \
    "\"title\":{\"type\":\"string\"},\"body\":{\"type\":\"string\",\"default\":\"\"},"             \
    "\"n\":{\"type\":\"integer\"}},\"required\":[\"title\"]}"

static long models = 100000, active = 1000, budget_mb = 16;
static char dir[4096];
static char db[4200];
static int64_t fake_now = 1700000000000;

static int64_t
clock_fn(void *user)
{
    (void)user;
    return fake_now;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kb;
}

static void
die(const char *what, const char *why)
{
    fprintf(stderr, "memory_bench: %s: %s\n", what, why);
    exit(1);
}

static tp_hub *
open_hub(tp_store **store, tp_sync sync, size_t budget)
{
    tp_store_options so = {0};
    so.synchronous = sync;
    tp_error err;
    *store = tp_store_sqlite(db, &so, &err);
    if (*store == NULL)
        die("store", err.message);
    tp_hub_config cfg = {0};
    cfg.store = *store;
    cfg.clock = clock_fn;
    cfg.evict_idle_ms = 1;
    cfg.memory_budget = budget;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    if (hub == NULL)
        die("hub", err.message);
    return hub;
}

static void
drain(tp_conn *c)
{
    size_t len;
    while (tp_conn_next_frame(c, &len) != NULL)
        ;
}

static void
make_store(void)
{
    tp_store *store;
    tp_hub *hub = open_hub(&store, TP_SYNC_OFF, (size_t)1 << 40);
    tp_error err;
    tp_schema *doc = tp_schema_new(DOC, &err);
    if (doc == NULL)
        die("schema", err.message);
    double t0 = now_s();
    for (long i = 0; i < models; i++) {
        char tenant[32], value[256];
        snprintf(tenant, sizeof tenant, "t%ld", i);
        snprintf(value, sizeof value,
                 "{\"title\":\"notes of %s\",\"body\":\"%0*d\",\"n\":%ld}", tenant, 120, 0, i);
        if (tp_session_host_as(tp_hub_tenant(hub, tenant), "notes", doc, value, &err) == NULL)
            die("host", err.message);
        if (i % 1000 == 999) {
            if (tp_hub_commit(hub, &err) != TP_OK)
                die("commit", err.message);
            fake_now += 10;
            tp_hub_evict(hub); /* keeps the setup itself small */
        }
    }
    if (tp_hub_commit(hub, &err) != TP_OK)
        die("commit", err.message);
    printf("stored %ld tenants with one model each in %.1f s\n", models, now_s() - t0);
    tp_hub_free(hub);
    tp_store_free(store);
    tp_schema_free(doc);
}

/* Uses one tenant as a client would: connect, take the snapshot, write. */
static tp_conn *
use(tp_hub *hub, long i, int write)
{
    char tenant[32];
    snprintf(tenant, sizeof tenant, "t%ld", i);
    tp_error err;
    tp_conn *c = tp_conn_open(hub, tenant, 0, &err);
    if (c == NULL)
        die("open", err.message);
    drain(c);
    if (write) {
        const char *w = "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"notes\","
                        "\"patch\":{\"n\":-1}}";
        tp_conn_feed(c, w, strlen(w));
        drain(c);
    }
    return c;
}

typedef struct result {
    long rss_kb;
    double load_us;
    unsigned long long resident, evictions;
} result;

static void
scenario(int which, result *r)
{
    long before = rss_kb();
    tp_store *store;
    tp_hub *hub = open_hub(&store, TP_SYNC_NORMAL, which == 3 ? (size_t)budget_mb << 20 : (size_t)1 << 40);
    tp_conn **conns = calloc((size_t)active, sizeof *conns);
    double t0 = now_s();
    long loads = 0;
    if (which >= 1)
        for (long i = 0; i < active; i++, loads++)
            conns[i] = use(hub, i, 1);
    if (which >= 2)
        for (long i = active; i < models; i++, loads++) {
            tp_conn_close(use(hub, i, 0));
            if (which == 3 && i % 100 == 0) {
                fake_now += 10;
                tp_hub_evict(hub);
            }
        }
    double secs = now_s() - t0;
    if (which == 3) {
        fake_now += 10;
        tp_hub_evict(hub);
    }
    tp_hub_stats st;
    tp_hub_get_stats(hub, &st);
    r->rss_kb = rss_kb() - before;
    r->load_us = loads ? secs * 1e6 / (double)loads : 0;
    r->resident = st.models_private;
    r->evictions = st.evictions;
    for (long i = 0; i < active; i++)
        tp_conn_close(conns[i]);
    free(conns);
    tp_hub_free(hub);
    tp_store_free(store);
}

int
main(int argc, char **argv)
{
    const char *base = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            models = 20000;
            active = 200;
        } else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc) {
            models = atol(argv[++i]);
        } else if (strcmp(argv[i], "--active") == 0 && i + 1 < argc) {
            active = atol(argv[++i]);
        } else if (strcmp(argv[i], "--budget-mb") == 0 && i + 1 < argc) {
            budget_mb = atol(argv[++i]);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else {
            fprintf(stderr, "usage: memory_bench [--models N] [--active K] [--budget-mb B] "
                            "[--dir DIR] [--quick]\n");
            return 2;
        }
    }
    if (active > models)
        active = models;
    snprintf(dir, sizeof dir, "%s/tp-memory-bench-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", dir);
    snprintf(db, sizeof db, "%s/bench.db", dir);
    make_store();

    static const char *const names[] = {"restored", "active", "all, kept", "all, evict"};
    printf("\n%-12s %10s %12s %12s %10s %10s\n", "scenario", "rss MB", "kB/tenant", "us/load",
           "resident", "evicted");
    for (int which = 0; which < 4; which++) {
        int fd[2];
        if (pipe(fd) != 0)
            die("pipe", "failed");
        pid_t pid = fork();
        if (pid == 0) {
            result r = {0};
            scenario(which, &r);
            if (write(fd[1], &r, sizeof r) != (ssize_t)sizeof r)
                _exit(1);
            _exit(0);
        }
        result r = {0};
        close(fd[1]);
        if (read(fd[0], &r, sizeof r) != (ssize_t)sizeof r)
            die("scenario", names[which]);
        close(fd[0]);
        waitpid(pid, NULL, 0);
        long tenants = which == 0 ? 0 : which == 1 ? active : models;
        printf("%-12s %10.1f %12.2f %12.1f %10llu %10llu\n", names[which],
               (double)r.rss_kb / 1024, tenants ? (double)r.rss_kb / (double)tenants : 0,
               r.load_us, r.resident, r.evictions);
    }
    printf("\n(%ld stored tenants, %ld active, budget %ld MB; rss is the growth of the process "
           "over the scenario)\n",
           models, active, budget_mb);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "memory_bench: could not remove %s\n", dir);
    return 0;
}
