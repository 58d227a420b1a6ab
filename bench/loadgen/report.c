/*
 * The table of a run: every result row (ours, the floor's, the peers'),
 * with each row's key figure divided by the floor's and by transports' for
 * the same workload and params, measured in the same run. The key figure is
 * the server's CPU time per delivery (W1, W2, W4) or RSS per connection (W3).
 *
 * Rows are read with jansson: the report runs once, after the measuring.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loadgen.h"

static int
add_rows(json_t *rows, const char *file)
{
    json_error_t err;
    json_t *all = json_load_file(file, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
    if (all != NULL && json_is_array(all)) {
        json_array_extend(rows, all);
        json_decref(all);
        return 0;
    }
    json_decref(all);
    /* JSON lines: one object per line, other lines (a peer's chatter) skipped. */
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "loadgen: %s: cannot open\n", file);
        return -1;
    }
    char line[65536];
    while (fgets(line, sizeof line, f) != NULL) {
        json_t *row = json_loads(line, 0, &err);
        if (json_is_object(row))
            json_array_append(rows, row);
        json_decref(row);
    }
    fclose(f);
    return 0;
}

static double
num(const json_t *row, const char *key)
{
    const json_t *v = json_object_get(row, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static double
key_figure(const json_t *row)
{
    const char *w = json_string_value(json_object_get(row, "workload"));
    if (w != NULL && strcmp(w, "W3") == 0)
        return num(row, "rss_per_conn_kb");
    return num(row, "server_cpu_us_per_delivery");
}

/* A param of a row, with the peers' spelling of closed loop ("closed") read as ours ("max"). */
static const json_t *
param(const json_t *row, const char *key, json_t *closed)
{
    const json_t *v = json_object_get(json_object_get(row, "params"), key);
    const char *s = json_string_value(v);
    if (s != NULL && strcmp(s, "closed") == 0)
        return closed;
    return v;
}

/*
 * Rows compare when their workload and the params that shape it are equal;
 * other params (a peer's duration, window) do not keep rows apart.
 */
static int
same_case(const json_t *a, const json_t *b)
{
    static const char *const keys[] = {"subs", "rate", "tenants", "conns", "writers", "fields"};
    if (!json_equal(json_object_get(a, "workload"), json_object_get(b, "workload")))
        return 0;
    json_t *closed = json_string("max");
    int same = 1;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && same; i++) {
        const json_t *x = param(a, keys[i], closed), *y = param(b, keys[i], closed);
        if (x == NULL || y == NULL)
            same = x == y;
        else if (json_is_number(x) && json_is_number(y))
            same = json_number_value(x) == json_number_value(y);
        else
            same = json_equal(x, y);
    }
    json_decref(closed);
    return same;
}

static const json_t *
find(const json_t *rows, const char *system, const json_t *like)
{
    size_t i;
    const json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *s = json_string_value(json_object_get(r, "system"));
        if (s != NULL && strcmp(s, system) == 0 && same_case(r, like))
            return r;
    }
    return NULL;
}

static void
params_text(const json_t *params, char *buf, size_t cap)
{
    size_t used = 0;
    const char *k;
    json_t *v;
    buf[0] = '\0';
    json_object_foreach((json_t *)params, k, v)
    {
        if (strcmp(k, "duration_s") == 0 || strcmp(k, "window") == 0 || strcmp(k, "warmup_s") == 0)
            continue; /* how a peer ran, not which case */
        char val[32];
        if (json_is_string(v))
            snprintf(val, sizeof val, "%s", json_string_value(v));
        else if (json_is_number(v))
            snprintf(val, sizeof val, "%g", json_number_value(v));
        else
            snprintf(val, sizeof val, "?");
        int n = snprintf(buf + used, cap - used, "%s%s=%s", used ? " " : "", k, val);
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
}

static void
cell(double v, const char *fmt, int width)
{
    if (v < 0)
        printf(" %*s", width, "-");
    else
        printf(fmt, width, v);
}

static void
ratio(double a, const json_t *other)
{
    double b = other ? key_figure(other) : -1;
    if (a < 0 || b <= 0)
        printf(" %7s", "-");
    else
        printf(" %6.2fx", a / b);
}

int
lg_report(int nfiles, char **files)
{
    json_t *rows = json_array();
    for (int i = 0; i < nfiles; i++)
        if (add_rows(rows, files[i]) != 0) {
            json_decref(rows);
            return -1;
        }
    printf("%-11s %-3s %-24s %10s %9s %8s %8s %8s %9s %5s %8s %8s %8s %8s %7s %s\n", "system", "wl",
           "params", "deliv/s", "writes/s", "p50 us", "p99 us", "max us", "cpu us/d", "srv%",
           "xfloor", "xtransp", "rss kB", "kB/conn", "conn/s", "ok");
    size_t i;
    const json_t *r;
    json_array_foreach(rows, i, r)
    {
        char params[64];
        params_text(json_object_get(r, "params"), params, sizeof params);
        const json_t *lat = json_object_get(r, "latency_us");
        const char *sys = json_string_value(json_object_get(r, "system"));
        const char *w = json_string_value(json_object_get(r, "workload"));
        printf("%-11s %-3s %-24s", sys ? sys : "?", w ? w : "?", params);
        cell(num(r, "deliveries_per_s"), " %*.0f", 10);
        cell(num(r, "writes_per_s"), " %*.0f", 9);
        cell(num(lat, "p50"), " %*.0f", 8);
        cell(num(lat, "p99"), " %*.0f", 8);
        cell(num(lat, "max"), " %*.0f", 8);
        cell(num(r, "server_cpu_us_per_delivery"), " %*.3f", 9);
        cell(num(r, "server_cpu_pct"), " %*.0f", 5);
        double k = key_figure(r);
        ratio(k, find(rows, "floor", r));
        ratio(k, find(rows, "transports", r));
        cell(num(r, "server_rss_kb"), " %*.0f", 8);
        cell(num(r, "rss_per_conn_kb"), " %*.2f", 8);
        cell(num(r, "conns_per_s"), " %*.0f", 7);
        const json_t *problems = json_object_get(r, "problems");
        printf(" %s", json_is_true(json_object_get(r, "verified")) ? "yes" : "NO");
        if (json_array_size(problems) > 0)
            printf(" (%s%s)", json_string_value(json_array_get(problems, 0)),
                   json_array_size(problems) > 1 ? ", ..." : "");
        printf("\n");
    }
    printf("xfloor, xtransp: the row's server CPU us per delivery (W3: kB of RSS per connection)\n"
           "divided by the floor's and by transports' for the same workload and params.\n"
           "srv%%: the server's CPU use in the window (under 100: the load, or loadgen, was the\n"
           "limit, not the server).\n");
    json_decref(rows);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The storage table (bench/run.sh --storage)                                */
/* ------------------------------------------------------------------------ */

static double
sratio(double a, double b)
{
    return a >= 0 && b > 0 ? a / b : -1;
}

static void
xcell(double v)
{
    if (v < 0)
        printf(" %6s", "-");
    else
        printf(" %5.2fx", v);
}

/* The CPU of the server's threads named name in the row's window, us, or -1. */
static double
thread_us(const json_t *row, const char *name)
{
    const json_t *v = json_object_get(json_object_get(row, "server_threads_cpu_us"), name);
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* thread_per_write: a thread's CPU per write in the window, or -1. */
static double
thread_per_write(const json_t *row, const char *name, double wps, double win)
{
    double us = thread_us(row, name);
    return us >= 0 && wps > 0 && win > 0 ? us / (wps * win) : -1;
}

static void
storage_row(const json_t *r, const json_t *mem)
{
    char params[64];
    params_text(json_object_get(r, "params"), params, sizeof params);
    const char *sys = json_string_value(json_object_get(r, "system"));
    const char *w = json_string_value(json_object_get(r, "workload"));
    double wps = num(r, "writes_per_s"), win = num(r, "window_s");
    double p99 = num(json_object_get(r, "latency_us"), "p99");
    double loop_w = num(r, "server_loop_cpu_us_per_write");
    double proc_w = num(r, "server_cpu_us_per_write");
    double commit_w = thread_per_write(r, "tp-commit", wps, win);
    double fold_w = thread_per_write(r, "tp-fold", wps, win);
    printf("%-24s %-3s %-28s", sys ? sys : "?", w ? w : "?", params);
    cell(wps, " %*.0f", 9);
    cell(p99, " %*.0f", 8);
    cell(loop_w, " %*.3f", 9);
    cell(proc_w, " %*.3f", 9);
    cell(commit_w, " %*.3f", 9);
    cell(fold_w, " %*.3f", 9);
    cell(num(r, "server_loop_cpu_us_per_delivery"), " %*.3f", 8);
    cell(num(r, "server_cpu_us_per_delivery"), " %*.3f", 8);
    cell(num(r, "server_loop_cpu_pct"), " %*.0f", 5);
    cell(num(r, "server_cpu_pct"), " %*.0f", 5);
    if (mem != NULL) {
        xcell(sratio(loop_w, num(mem, "server_loop_cpu_us_per_write")));
        xcell(sratio(proc_w, num(mem, "server_cpu_us_per_write")));
        xcell(sratio(p99, num(json_object_get(mem, "latency_us"), "p99")));
        xcell(sratio(wps, num(mem, "writes_per_s")));
    } else {
        printf(" %6s %6s %6s %6s", "-", "-", "-", "-");
    }
    printf(" %s\n", json_is_true(json_object_get(r, "verified")) ? "yes" : "NO");
}

int
lg_report_storage(int nfiles, char **files)
{
    json_t *rows = json_array();
    for (int i = 0; i < nfiles; i++)
        if (add_rows(rows, files[i]) != 0) {
            json_decref(rows);
            return -1;
        }
    printf("%-24s %-3s %-28s %9s %8s %9s %9s %9s %9s %8s %8s %5s %5s %7s %6s %6s %7s %s\n",
           "system", "wl", "params", "writes/s", "p99 us", "loop us/w", "proc us/w", "cmt us/w",
           "fold us/w", "loop/d", "proc/d", "loop%", "proc%", "x loop", "x proc", "x p99", "x wr/s",
           "ok");
    /* Case by case, in the order the cases first appear; each system's row. */
    size_t n = json_array_size(rows);
    char *done = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n && done != NULL; i++) {
        const json_t *first = json_array_get(rows, i);
        const char *sys = json_string_value(json_object_get(first, "system"));
        if (done[i] || sys == NULL || strncmp(sys, "transports", 10) != 0)
            continue;
        const json_t *mem = find(rows, "transports", first);
        for (size_t j = i; j < n; j++) {
            const json_t *r = json_array_get(rows, j);
            const char *s2 = json_string_value(json_object_get(r, "system"));
            if (done[j] || s2 == NULL || strncmp(s2, "transports", 10) != 0 || !same_case(r, first))
                continue;
            done[j] = 1;
            storage_row(r, mem);
        }
    }
    free(done);
    printf("loop us/w, proc us/w: the server's loop thread's (its main thread) and the whole\n"
           "process's CPU per acknowledged write (every thread, a commit thread's fsyncs too);\n"
           "cmt us/w, fold us/w: the threads named tp-commit and tp-fold (the SQLite store's,\n"
           "applying its log to the tables; - when there are none); loop/d, proc/d: the\n"
           "same per delivery. x loop, x proc, x p99, x wr/s: divided by transports' in memory\n"
           "for the same workload and params, in the same run (x wr/s: closed loop, the most\n"
           "acknowledged writes per second).\n");
    json_decref(rows);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The cluster table (bench/cluster.sh)                                      */
/* ------------------------------------------------------------------------ */

/*
 * The commands a node sends Redis itself, each a round trip of its own
 * (src/cluster/clog.c, redis.c). Every other command in commandstats was
 * run by a script through redis.call: Redis counts those as commands too
 * (total_commands_processed), but they cost no round trip. None of these is
 * called by the scripts (cluster.sh checks HMGET and HGETALL, the two a
 * script could call).
 */
static const char *const node_cmds[] = {
    "evalsha", "eval",   "hmget", "hgetall", "subscribe", "ssubscribe", "psubscribe", "unsubscribe",
    "ping",    "select", "auth",  "cluster", "script",    "hello",      "client"};

static int
node_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof node_cmds / sizeof node_cmds[0]; i++)
        if (strcmp(name, node_cmds[i]) == 0)
            return 1;
    return 0;
}

/* Redis's figures per acknowledged write: commands, round trips, EVALSHA, CPU us; -1 if none. */
static void
redis_per_write(const json_t *row, double out[4])
{
    const json_t *r = json_object_get(row, "redis");
    double w = num(r, "writes");
    for (int i = 0; i < 4; i++)
        out[i] = -1;
    if (!json_is_object(r) || w <= 0)
        return;
    double rt = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(r, "per_command"), k, v)
    {
        if (node_cmd(k))
            rt += json_number_value(v);
    }
    const json_t *ev = json_object_get(json_object_get(r, "per_command"), "evalsha");
    out[0] = num(r, "commands") >= 0 ? num(r, "commands") / w : -1;
    out[1] = rt / w;
    out[2] = (json_is_number(ev) ? json_number_value(ev) : 0) / w;
    out[3] = num(r, "cpu_us") >= 0 ? num(r, "cpu_us") / w : -1;
}

/* Each node's CPU per delivery to its own connections, "a/b/c", or "-". */
static void
nodes_text(const json_t *row, char *buf, size_t cap)
{
    size_t i, used = 0;
    const json_t *n;
    snprintf(buf, cap, "-");
    json_array_foreach(json_object_get(row, "nodes"), i, n)
    {
        double v = num(n, "cpu_us_per_delivery");
        int k = v >= 0 ? snprintf(buf + used, cap - used, "%s%.2f", i ? "/" : "", v)
                       : snprintf(buf + used, cap - used, "%s-", i ? "/" : "");
        if (k < 0 || (size_t)k >= cap - used)
            break;
        used += (size_t)k;
    }
}

static void
cluster_row(const json_t *r, const json_t *rows)
{
    char params[64], nodes[48];
    params_text(json_object_get(r, "params"), params, sizeof params);
    nodes_text(r, nodes, sizeof nodes);
    const char *sys = json_string_value(json_object_get(r, "system"));
    const char *w = json_string_value(json_object_get(r, "workload"));
    const json_t *lat = json_object_get(r, "latency_us");
    double cpu = num(r, "server_cpu_us_per_delivery"), dps = num(r, "deliveries_per_s");
    double red[4];
    redis_per_write(r, red);
    printf("%-27s %-3s %-20s", sys ? sys : "?", w ? w : "?", params);
    cell(dps, " %*.0f", 9);
    cell(num(r, "writes_per_s"), " %*.0f", 8);
    cell(num(lat, "p50"), " %*.0f", 7);
    cell(num(lat, "p99"), " %*.0f", 7);
    cell(cpu, " %*.3f", 8);
    cell(num(r, "server_cpu_pct"), " %*.0f", 4);
    printf(" %-20s", nodes);
    cell(red[0], " %*.2f", 6);
    cell(red[1], " %*.3f", 6);
    cell(red[2], " %*.3f", 7);
    cell(red[3], " %*.1f", 7);
    const json_t *mem = find(rows, "transports", r);
    const json_t *sql = find(rows, "transports+sqlite-full", r);
    const json_t *c1 = find(rows, "transports+cluster-1", r);
    xcell(sratio(cpu, mem ? num(mem, "server_cpu_us_per_delivery") : -1));
    xcell(sratio(cpu, sql ? num(sql, "server_cpu_us_per_delivery") : -1));
    xcell(sratio(cpu, c1 ? num(c1, "server_cpu_us_per_delivery") : -1));
    xcell(sratio(dps, sql ? num(sql, "deliveries_per_s") : -1));
    printf(" %s\n", json_is_true(json_object_get(r, "verified")) ? "yes" : "NO");
}

/* Below the table: each cluster row's Redis commands per write, by name. */
static void
cluster_commands(const json_t *rows)
{
    size_t i;
    const json_t *r;
    int header = 0;
    json_array_foreach(rows, i, r)
    {
        const json_t *red = json_object_get(r, "redis");
        double w = num(red, "writes");
        if (!json_is_object(red) || w <= 0)
            continue;
        if (!header++)
            printf("Redis's commands per write by name (* run by a script, no round trip):\n");
        char params[64];
        params_text(json_object_get(r, "params"), params, sizeof params);
        printf("  %s %s %s:", json_string_value(json_object_get(r, "system")),
               json_string_value(json_object_get(r, "workload")), params);
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)json_object_get(red, "per_command"), k, v)
        {
            printf(" %s%s %.3f", k, node_cmd(k) ? "" : "*", json_number_value(v) / w);
        }
        printf("\n");
    }
}

int
lg_report_cluster(int nfiles, char **files)
{
    json_t *rows = json_array();
    for (int i = 0; i < nfiles; i++)
        if (add_rows(rows, files[i]) != 0) {
            json_decref(rows);
            return -1;
        }
    printf("%-27s %-3s %-20s %9s %8s %7s %7s %8s %4s %-20s %6s %6s %7s %7s %6s %6s %6s %6s %s\n",
           "system", "wl", "params", "deliv/s", "writes/s", "p50 us", "p99 us", "cpu us/d", "srv%",
           "node us/d", "r cmd", "r rt", "r evsha", "r us/w", "x mem", "x sqlt", "x c1", "x d/s",
           "ok");
    /* Case by case, in the order the cases first appear. */
    size_t n = json_array_size(rows);
    char *done = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n && done != NULL; i++) {
        const json_t *first = json_array_get(rows, i);
        if (done[i])
            continue;
        for (size_t j = i; j < n; j++) {
            const json_t *r = json_array_get(rows, j);
            if (done[j] || !same_case(r, first))
                continue;
            done[j] = 1;
            cluster_row(r, rows);
        }
    }
    free(done);
    printf(
        "cpu us/d: the CPU of every server of the row (each node's whole process) per delivery;\n"
        "srv%%: their CPU use in the window, summed (100 per core); node us/d: each node's CPU "
        "per\n"
        "delivery to its own connections (W1: node 1 also holds the writer). r cmd, r rt, r "
        "evsha:\n"
        "Redis's commands per acknowledged write in the window: all it counted (the commands\n"
        "its scripts ran included), round trips (the commands the nodes sent), EVALSHA; r us/w:\n"
        "Redis's CPU per write. x mem, x sqlt, x c1: cpu us/d divided by transports' in memory,\n"
        "on SQLite FULL, and by the 1-node cluster's, same case, same run; x d/s: deliv/s\n"
        "divided by SQLite FULL's.\n");
    cluster_commands(rows);
    json_decref(rows);
    return 0;
}
