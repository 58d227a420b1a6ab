/*
 * client_load_bench: what one tenant cycling exactly-once client ids leaves
 * in the SQLite store, and how long loading that tenant back then stalls the
 * loop (issue 11). For each client_record_bytes cap, a hub on a new file
 * takes `ids` client ids (default 1024, the client_records default) with 256
 * writes each, through tp_conn_feed as a client would send them; then the
 * hub is made again on the file and the tenant loaded (tp_hub_tenant), five
 * times: the median load is the stall another tenant would see.
 *
 *   client_load_bench [--dir DIR] [--ids N] [--quick]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "transports.h"

#define WRITES_PER_ID 256

static const char *const DOC = "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"
                               "\"n\":{\"type\":\"integer\"}}}";

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
die(const char *what, const tp_error *err)
{
    fprintf(stderr, "client_load_bench: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static tp_hub *
hub_on(tp_store *st, size_t cap)
{
    tp_hub_config cfg = {0};
    cfg.store = st;
    cfg.limits.client_record_bytes = cap;
    cfg.limits.writes_per_second = 1000000;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    if (hub == NULL)
        die("tp_hub_new", &err);
    return hub;
}

static void
drain(tp_hub *hub)
{
    tp_conn *c;
    size_t len;
    while ((c = tp_hub_next_ready(hub)) != NULL)
        while (tp_conn_next_frame(c, &len) != NULL)
            ;
}

static void
run(const char *dir, size_t cap, const char *label, int ids)
{
    char path[1100], wal[1200];
    snprintf(path, sizeof path, "%s/client_load_bench.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(path);
    unlink(wal);
    tp_store_options o = {0};
    o.synchronous = TP_SYNC_OFF;
    tp_error err;
    tp_store *st = tp_store_sqlite(path, &o, &err);
    if (st == NULL)
        die("tp_store_sqlite", &err);
    tp_hub *hub = hub_on(st, cap);
    tp_schema *doc = tp_schema_new(DOC, &err);
    if (doc == NULL || tp_session_host_as(tp_hub_tenant(hub, "t"), "n", doc, "{}", &err) == NULL)
        die("host", &err);
    double t0 = now_ms();
    char msg[200];
    for (int k = 0; k < ids; k++) {
        tp_conn *c = tp_conn_open(hub, "t", 0, &err);
        if (c == NULL)
            die("tp_conn_open", &err);
        snprintf(msg, sizeof msg, "{\"type\":\"ping\",\"ref\":0,\"client\":\"client-%06d\"}", k);
        tp_conn_feed(c, msg, strlen(msg));
        for (int i = 1; i <= WRITES_PER_ID; i++) {
            int n = snprintf(msg, sizeof msg,
                             "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"n\","
                             "\"patch\":{\"n\":%d}}",
                             i, k * WRITES_PER_ID + i);
            tp_conn_feed(c, msg, (size_t)n);
        }
        drain(hub);
        tp_conn_close(c);
        if (tp_hub_commit(hub, &err) != TP_OK)
            die("commit", &err);
    }
    double fill = now_ms() - t0;
    tp_hub_free(hub);
    struct stat sb = {0}, sw = {0};
    stat(path, &sb);
    stat(wal, &sw);
    double loads[5];
    for (int r = 0; r < 5; r++) {
        hub = hub_on(st, cap);
        double t = now_ms();
        if (tp_hub_tenant(hub, "t") == NULL)
            die("load", NULL);
        loads[r] = now_ms() - t;
        tp_hub_free(hub);
    }
    qsort(loads, 5, sizeof *loads, cmp_double);
    printf("%-22s %8d %10.0f %12.1f %12.2f %12.2f\n", label, ids, fill,
           (double)(sb.st_size + sw.st_size) / (1024.0 * 1024.0), loads[2], loads[4]);
    tp_schema_free(doc);
    tp_store_free(st);
    unlink(path);
    unlink(wal);
}

int
main(int argc, char **argv)
{
    const char *dir = "/tmp";
    int ids = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc)
            ids = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--quick") == 0)
            ids = 256;
        else {
            fprintf(stderr, "usage: client_load_bench [--dir DIR] [--ids N] [--quick]\n");
            return 2;
        }
    }
    printf("one tenant, N client ids x %d writes each (SQLite, synchronous OFF)\n", WRITES_PER_ID);
    printf("%-22s %8s %10s %12s %12s %12s\n", "client_record_bytes", "ids", "fill ms", "file MiB",
           "load p50 ms", "load max ms");
    run(dir, (size_t)1 << 40, "1 TiB (no byte cap)", ids);
    run(dir, 0, "1 MiB (the default)", ids);
    run(dir, 256 * 1024, "256 KiB", ids);
    return 0;
}
