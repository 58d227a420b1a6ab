/*
 * disk_floor: the latency an ideal group commit gets from this machine's
 * disk, with nothing of transports in the way (issue 16's tail figures).
 *
 * Writes arrive at an even rate; a committer thread takes every write that
 * waits, appends their bytes to a file with one pwrite, fdatasyncs, and
 * acknowledges them all: the latency of a write is from its arrival to the
 * end of that fdatasync. That is what a durable ack costs at the least, so
 * the daemon's W2 p99 on SQLite FULL cannot be below this figure's p99.
 *
 * Each rate runs twice: alone, then with a second thread writing a burst of
 * MiB (--fold-mib, one figure per rate) to another file once a second and
 * syncing it, as the SQLite store's fold thread writes the tables. In W2 on
 * SQLite FULL the fold thread wrote about 2.6 MB/s at 200 tenants (2000
 * writes/s) and 31 MB/s at 2000 (20 000 writes/s), from /proc's per-thread
 * write_bytes over 4 s. The log file is written through before the run and
 * rewritten in place, as a WAL that starts over is, so no sync grows it.
 * A third run writes the same volume paced: slices of --pace-kib KiB (0:
 * no such run), each synced, spread over --spread-ms (900), which says whether pacing
 * the fold's writes would spare the commits beside it.
 *
 * --spread-ms 0 writes the slices back to back.
 *
 *   disk_floor [--rates 2000,20000] [--fold-mib 3,30] [--pace-kib 256] [--spread-ms 900]
 *              [--bytes 250] [--seconds 8] [--dir D]
 *
 * The bench prints figures and never fails on a slow disk. Pin it as the
 * daemon is pinned in bench/run.sh (taskset -c 0) to compare the two.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BYTES (64L << 20) /* the log's file, rewritten in place */
#define MAX_WAITING (1 << 20) /* arrivals not yet committed */

static int64_t
now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct run {
    /* The arrivals, a ring under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t *arrived;
    size_t head, tail;
    int stop;
    /* The committer's. */
    int log_fd;
    size_t bytes; /* per write */
    char *buf;
    size_t buf_cap;
    int64_t *lat; /* ns, one per committed write */
    size_t nlat, lat_cap;
    uint64_t syncs;
    int64_t cpu_ns; /* the committer thread's CPU */
    /* The fold's. */
    int fold_fd;
    size_t fold_bytes;
    size_t pace; /* 0: the burst at once; else slices this size, each synced */
    long spread_ms; /* the slices spread over this long (0: back to back) */
    int64_t fold_worst_ns;
} run;

static void
die(const char *what)
{
    fprintf(stderr, "disk_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *
committer(void *arg)
{
    run *r = arg;
    int64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    off_t at = 0;
    int64_t *group = malloc(sizeof *group * MAX_WAITING);
    if (group == NULL)
        die("malloc");
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && r->head == r->tail)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->head == r->tail)
            break;
        size_t n = 0;
        for (; r->tail != r->head; r->tail = (r->tail + 1) % MAX_WAITING)
            group[n++] = r->arrived[r->tail];
        pthread_mutex_unlock(&r->mu);
        size_t len = n * r->bytes;
        if (len > r->buf_cap) {
            r->buf = realloc(r->buf, len);
            if (r->buf == NULL)
                die("realloc");
            memset(r->buf, 'w', len);
            r->buf_cap = len;
        }
        if (at + (off_t)len > LOG_BYTES)
            at = 0;
        if (pwrite(r->log_fd, r->buf, len, at) != (ssize_t)len)
            die("pwrite");
        /* The next group starts on a page of its own: rewriting the page a
         * sync is still writing would wait for it (stable pages). */
        at = (at + (off_t)len + 4095) & ~(off_t)4095;
        if (fdatasync(r->log_fd) != 0)
            die("fdatasync");
        r->syncs++;
        int64_t done = now_ns(CLOCK_MONOTONIC);
        for (size_t i = 0; i < n && r->nlat < r->lat_cap; i++)
            r->lat[r->nlat++] = done - group[i];
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    r->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    free(group);
    return NULL;
}

static void *
fold(void *arg)
{
    run *r = arg;
    size_t chunk = 1 << 20;
    char *buf = malloc(chunk);
    if (buf == NULL)
        die("malloc");
    memset(buf, 'f', chunk);
    for (int64_t next = now_ns(CLOCK_MONOTONIC);; next += 1000000000) {
        for (;;) {
            pthread_mutex_lock(&r->mu);
            int stop = r->stop;
            pthread_mutex_unlock(&r->mu);
            if (stop) {
                free(buf);
                return NULL;
            }
            if (now_ns(CLOCK_MONOTONIC) >= next)
                break;
            usleep(10000);
        }
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        size_t step = r->pace ? r->pace : chunk, slices = r->fold_bytes / step;
        for (size_t off = 0, k = 0; off < r->fold_bytes; off += step, k++) {
            if (pwrite(r->fold_fd, buf, step, (off_t)off) != (ssize_t)step)
                die("pwrite (fold)");
            if (r->pace == 0)
                continue;
            if (fdatasync(r->fold_fd) != 0)
                die("fdatasync (fold)");
            /* The next slice is due (k + 1) / slices of the spread in. */
            int64_t due = t0 + (int64_t)(k + 1) * r->spread_ms * 1000000 / (int64_t)slices;
            int64_t wait = due - now_ns(CLOCK_MONOTONIC);
            if (wait > 0) {
                struct timespec ts = {(time_t)(wait / 1000000000), (long)(wait % 1000000000)};
                nanosleep(&ts, NULL);
            }
        }
        if (fdatasync(r->fold_fd) != 0)
            die("fdatasync (fold)");
        int64_t took = now_ns(CLOCK_MONOTONIC) - t0;
        if (took > r->fold_worst_ns)
            r->fold_worst_ns = took;
    }
}

static int
cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int
open_sized(const char *dir, const char *name, off_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path);
    unlink(path); /* gone when the bench ends, however it ends */
    /* Written, not only allocated: an unwritten extent turns the first
     * write of each block into a metadata change that fdatasync must sync. */
    char *zero = calloc(1, 1 << 20);
    if (zero == NULL)
        die("calloc");
    for (off_t off = 0; off < size; off += 1 << 20)
        if (pwrite(fd, zero, 1 << 20, off) != 1 << 20)
            die("pwrite (fill)");
    free(zero);
    if (fsync(fd) != 0)
        die("fsync");
    return fd;
}

static long spread_ms = 900; /* --spread-ms */

static void
one(const char *dir, long rate, size_t bytes, double seconds, long fold_mib, size_t pace)
{
    run r = {.bytes = bytes, .fold_bytes = (size_t)fold_mib << 20, .pace = pace, .spread_ms = spread_ms};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.arrived = malloc(sizeof *r.arrived * MAX_WAITING);
    r.lat_cap = (size_t)((double)rate * seconds) + 16;
    r.lat = malloc(sizeof *r.lat * r.lat_cap);
    if (r.arrived == NULL || r.lat == NULL)
        die("malloc");
    r.log_fd = open_sized(dir, "disk_floor.log", LOG_BYTES);
    if (fold_mib > 0)
        r.fold_fd = open_sized(dir, "disk_floor.fold", (off_t)r.fold_bytes);

    pthread_t ct, ft;
    if (pthread_create(&ct, NULL, committer, &r) != 0)
        die("pthread_create");
    if (fold_mib > 0 && pthread_create(&ft, NULL, fold, &r) != 0)
        die("pthread_create");
    int64_t t0 = now_ns(CLOCK_MONOTONIC), end = t0 + (int64_t)(seconds * 1e9);
    uint64_t sent = 0, dropped = 0;
    for (;;) {
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (now >= end)
            break;
        /* Writes are due at t0 + k / rate; a late loop catches up. */
        uint64_t due = (uint64_t)((double)(now - t0) * (double)rate / 1e9);
        if (due > sent) {
            pthread_mutex_lock(&r.mu);
            for (; sent < due; sent++) {
                size_t next = (r.head + 1) % MAX_WAITING;
                if (next == r.tail) {
                    dropped++;
                    continue;
                }
                r.arrived[r.head] = t0 + (int64_t)((double)sent * 1e9 / (double)rate);
                r.head = next;
            }
            pthread_cond_signal(&r.cv);
            pthread_mutex_unlock(&r.mu);
        }
        struct timespec nap = {0, 50000};
        nanosleep(&nap, NULL);
    }
    pthread_mutex_lock(&r.mu);
    r.stop = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    pthread_join(ct, NULL);
    if (fold_mib > 0)
        pthread_join(ft, NULL);
    double secs = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;

    qsort(r.lat, r.nlat, sizeof *r.lat, cmp);
    double p50 = 0, p99 = 0, p999 = 0, max = 0;
    if (r.nlat > 0) {
        p50 = (double)r.lat[r.nlat / 2] / 1e3;
        p99 = (double)r.lat[r.nlat * 99 / 100] / 1e3;
        p999 = (double)r.lat[r.nlat * 999 / 1000] / 1e3;
        max = (double)r.lat[r.nlat - 1] / 1e3;
    }
    char fold_col[32] = "-";
    if (fold_mib > 0)
        snprintf(fold_col, sizeof fold_col, pace ? "%ld paced" : "%ld MiB/s", fold_mib);
    if (fold_mib > 0 && pace > 0 && r.spread_ms == 0)
        snprintf(fold_col, sizeof fold_col, "%ld sliced", fold_mib);
    printf("%8ld %8.0f %8.0f %9s %8.0f %8.0f %8.0f %8.0f %9.1f %10.0f%s\n", rate,
           (double)r.nlat / secs, (double)r.syncs / secs, fold_col, p50, p99, p999, max,
           r.nlat ? (double)r.cpu_ns / 1e3 / (double)r.nlat : 0.0,
           fold_mib > 0 ? (double)r.fold_worst_ns / 1e6 : 0.0,
           dropped ? "  (arrivals dropped: the committer fell behind)" : "");
    fflush(stdout);
    close(r.log_fd);
    if (fold_mib > 0)
        close(r.fold_fd);
    free(r.buf);
    free(r.lat);
    free(r.arrived);
}

int
main(int argc, char **argv)
{
    const char *dir = TP_BENCH_DIR, *rates = "2000,20000", *folds = "3,30";
    size_t bytes = 250, pace = 256 << 10;
    double seconds = 8;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--rates") == 0 && v)
            rates = argv[++i];
        else if (strcmp(argv[i], "--bytes") == 0 && v)
            bytes = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && v)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--fold-mib") == 0 && v)
            folds = argv[++i];
        else if (strcmp(argv[i], "--pace-kib") == 0 && v)
            pace = (size_t)atol(argv[++i]) << 10;
        else if (strcmp(argv[i], "--spread-ms") == 0 && v)
            spread_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && v)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: disk_floor [--rates 2000,20000] [--fold-mib 3,30] "
                            "[--pace-kib 256] [--spread-ms 900] [--bytes 250] [--seconds 8] [--dir D]\n");
            return 2;
        }
    }
    if (bytes == 0 || seconds <= 0) {
        fprintf(stderr, "disk_floor: --bytes and --seconds must be positive\n");
        return 2;
    }
    printf("group commit on %s: %zu bytes a write, one pwrite and one fdatasync a group, %.0f s "
           "each\n",
           dir, bytes, seconds);
    printf("%8s %8s %8s %9s %8s %8s %8s %8s %9s %10s\n", "rate", "acks/s", "syncs/s", "fold",
           "p50 us", "p99 us", "p999 us", "max us", "cpu us/w", "fold ms");
    /* The k-th rate runs beside the k-th fold volume (the last one repeats). */
    const char *f = folds;
    for (const char *p = rates; *p != '\0';) {
        long rate = strtol(p, (char **)&p, 10), fold_mib = strtol(f, (char **)&f, 10);
        if (rate <= 0 || fold_mib < 0 || (*p != ',' && *p != '\0') || (*f != ',' && *f != '\0')) {
            fprintf(stderr, "disk_floor: --rates and --fold-mib take lists of numbers\n");
            return 2;
        }
        one(dir, rate, bytes, seconds, 0, 0);
        if (fold_mib > 0)
            one(dir, rate, bytes, seconds, fold_mib, 0);
        if (fold_mib > 0 && pace > 0)
            one(dir, rate, bytes, seconds, fold_mib, pace);
        p += *p == ',';
        if (*f == ',' && f[1] != '\0')
            f++;
        else
            f = strrchr(folds, ',') ? strrchr(folds, ',') + 1 : folds;
    }
    printf("latency: from a write's arrival to the end of its group's fdatasync; cpu us/w: the "
           "committer thread's CPU per write; fold ms: the slowest burst (write and sync)\n");
    return 0;
}
