/*
 * loadgen: drives one workload against one server and prints one result row
 * (bench/README.md). The run has phases:
 *
 *   connect   open every connection (a bounded number of handshakes in
 *             flight, so the listen backlog never overflows) and wait for
 *             `synced` on each (with --raw: for the 101);
 *   warm-up   the writers write; nothing is counted;
 *   measure   the writers write; deliveries, acks and latencies are counted
 *             by the time they arrive, and the server's CPU time is read
 *             from /proc at both ends of the window;
 *   drain     the writers stop; every write must be acked and every
 *             connection must reach the last rev, else the run fails.
 *
 * Verification runs all along: a patch whose `from` is not the rev its
 * connection holds, an error, a close, or a raw message out of sequence is
 * a problem, and any problem makes the exit status 1.
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "loadgen.h"

#define MAX_PROBLEMS 20
#define HANDSHAKES_IN_FLIGHT 128
#define READ_ROOM 65536
#define DRAIN_NS (15 * 1000000000LL)
#define LG_MAX_NODES 16 /* servers one run drives (--ports, --server-pids) */

enum { ST_CONNECTING, ST_UPGRADING, ST_OPEN, ST_READY, ST_CLOSED };
enum { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_IDLE, PH_DONE };

typedef struct conn {
    int fd;
    uint8_t state;
    uint8_t writer;
    uint8_t epout; /* EPOLLOUT is registered */
    uint8_t node;  /* the server it talks to: ports[node] */
    uint32_t field;
    unsigned char *rbuf;
    size_t rlen, rcap;
    unsigned char *wbuf;
    size_t wlen, wcap;
    int64_t rev; /* the rev held of the workload's document; -1 before its snapshot */
    int64_t seq; /* --raw: the last sequence number received */
    uint64_t got; /* writes received (patches, relayed frames) */
    int64_t next_ref;
    uint32_t inflight; /* writes not yet acked */
} conn;

/* The server's threads of one name: ticks summed over those alive at each
 * end of the window (a thread born in the window counts from 0). */
#define MAX_TASK_NAMES 16
typedef struct lg_task {
    char name[20];
    long t0, t1;
} lg_task;

typedef struct lg {
    /* options */
    const char *system;
    int raw;
    lg_shape shape;
    double rate; /* writes/s: W1 the writer's, W2 each connection's; 0 closed loop */
    int closed;  /* --rate max: closed loop asked for (W2's default is 5/s) */
    unsigned window;
    unsigned lag; /* closed loop: writes sent but not yet delivered, on average */
    double warmup_s, duration_s, idle_s;
    int ports[LG_MAX_NODES]; /* connection i talks to ports[i % nports] */
    size_t nports;
    int cpu;
    long pids[LG_MAX_NODES]; /* the servers whose CPU is read, summed in the row */
    size_t npids;
    int per_node;   /* --ports or --server-pids: the row lists each node too */
    int by_tenant;  /* --spread tenant: a tenant's connections on one server */
    int client_ids; /* --client-ids: each writer names itself (exactly-once records) */
    int redis_port; /* --redis-port: Redis's counters over the window (0: none) */
    uint64_t seed;

    int ep;
    conn *conns;
    size_t nconns, nopened, nready, nhandshaking;
    size_t *writers;
    size_t nwriters;
    size_t nrecv; /* connections that receive each shared write */

    int phase;
    int64_t phase_end;
    int64_t t_connect0, t_connected, t_measure0, t_measure1;
    int64_t rate_t0;
    uint64_t rate_sent, rr;

    uint64_t sent, acks, deliveries;
    uint64_t slowest; /* closed loop: the fewest writes any receiver has got */
    int64_t slowest_at;
    uint64_t sent_w0, acks_w0, del_w0, acks_w, del_w;
    lg_hist *hist;

    long cpu_ticks0, cpu_ticks1;   /* the whole process: every thread, live or gone */
    long loop_ticks0, loop_ticks1; /* the main thread: the server's loop */
    lg_task tasks[MAX_TASK_NAMES]; /* the threads by name (tp-commit, ...) */
    size_t ntasks;
    long rss_before, rss_after;
    /* Each server's share (--server-pids): the sums above are over these. */
    struct {
        long t0, t1, loop0, loop1, rss;
        uint64_t del_w; /* deliveries to its own connections in the window */
    } node[LG_MAX_NODES];
    int redis_fd;
    lg_redis_info redis0, redis1; /* INFO at the start and the end of the window */
    long redis_ticks0, redis_ticks1;
    int redis_ok;

    char problems[MAX_PROBLEMS][192];
    size_t nproblems;
    int fatal; /* a problem that ends the run (a refused handshake) */
} lg;

/* ------------------------------------------------------------------------ */
/* Small things                                                              */
/* ------------------------------------------------------------------------ */

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
problem(lg *g, const char *fmt, ...)
{
    if (g->nproblems < MAX_PROBLEMS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->problems[g->nproblems], sizeof g->problems[0], fmt, ap);
        va_end(ap);
        fprintf(stderr, "loadgen: %s\n", g->problems[g->nproblems]);
    }
    g->nproblems++;
}

static uint64_t
rnd(lg *g)
{
    /* xorshift64: masks and W4's field choice need speed, not quality. */
    uint64_t x = g->seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    g->seed = x;
    return x;
}

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(2);
    }
    return q;
}

static int
parse_uint(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > 100000000UL)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int
parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* A comma-separated list of 1 to LG_MAX_NODES numbers, each 1 to max. */
static int
parse_list(const char *s, unsigned max, unsigned *out, size_t *n)
{
    *n = 0;
    for (;;) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || v == 0 || v > max || *n == LG_MAX_NODES)
            return -1;
        out[(*n)++] = (unsigned)v;
        if (*end == '\0')
            return 0;
        if (*end != ',')
            return -1;
        s = end + 1;
    }
}

/* ------------------------------------------------------------------------ */
/* The server, from /proc                                                    */
/* ------------------------------------------------------------------------ */

/* utime + stime from a stat file (/proc/PID/stat, /proc/PID/task/TID/stat),
 * in clock ticks; the command name into name when not NULL. -1 on failure. */
static long
stat_ticks(const char *path, char *name, size_t name_cap)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields count from
     * the last ')'. utime and stime are fields 14 and 15, the 12th and 13th
     * after it. */
    char *open = strchr(buf, '(');
    char *p = strrchr(buf, ')');
    if (p == NULL || open == NULL || open > p)
        return -1;
    if (name != NULL)
        snprintf(name, name_cap, "%.*s", (int)(p - open - 1), open + 1);
    p++;
    long v[13];
    for (int i = 0; i < 13; i++) {
        while (*p == ' ')
            p++;
        if (i < 2) { /* the state (a letter), then ppid */
            while (*p != ' ' && *p != '\0')
                p++;
            v[i] = 0;
            continue;
        }
        char *end;
        v[i] = strtol(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
    }
    return v[11] + v[12];
}

/* utime + stime of the whole process (every thread, those gone too), in clock ticks. */
static long
server_ticks(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    return stat_ticks(path, NULL, 0);
}

/* utime + stime of the main thread (the server's loop), in clock ticks. */
static long
loop_ticks(long pid)
{
    char path[80];
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/stat", pid, pid);
    return stat_ticks(path, NULL, 0);
}

/* Adds each live thread's ticks to its name's entry: t0 at the start (end 0), t1 at the end. */
static void
task_ticks(long pid, lg_task *tasks, size_t *ntasks, int end)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/task", pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[64 + sizeof e->d_name + 8], name[20];
        snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
        long t = stat_ticks(path, name, sizeof name);
        if (t < 0)
            continue;
        size_t i = 0;
        while (i < *ntasks && strcmp(tasks[i].name, name) != 0)
            i++;
        if (i == *ntasks) {
            if (*ntasks == MAX_TASK_NAMES)
                continue;
            snprintf(tasks[i].name, sizeof tasks[i].name, "%s", name);
            tasks[i].t0 = tasks[i].t1 = 0;
            (*ntasks)++;
        }
        if (end)
            tasks[i].t1 += t;
        else
            tasks[i].t0 += t;
    }
    closedir(d);
}

static long
server_rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Every server's RSS, summed; each node's in node[k].rss. -1 when one is unreadable. */
static long
servers_rss_kb(lg *g)
{
    long sum = 0;
    for (size_t k = 0; k < g->npids; k++) {
        g->node[k].rss = server_rss_kb(g->pids[k]);
        sum = sum < 0 || g->node[k].rss < 0 ? -1 : sum + g->node[k].rss;
    }
    return sum;
}

/*
 * One end of the measured window (end 0: its start, 1: its end): each
 * server's CPU, the process's and its loop thread's, summed over the servers
 * (a sum is -1 when one server's is unreadable), its threads by name, and
 * with --redis-port Redis's counters and its CPU.
 */
static void
read_servers(lg *g, int end)
{
    long cpu = 0, loop = 0;
    for (size_t k = 0; k < g->npids; k++) {
        long t = server_ticks(g->pids[k]), l = loop_ticks(g->pids[k]);
        task_ticks(g->pids[k], g->tasks, &g->ntasks, end);
        cpu = cpu < 0 || t < 0 ? -1 : cpu + t;
        loop = loop < 0 || l < 0 ? -1 : loop + l;
        *(end ? &g->node[k].t1 : &g->node[k].t0) = t;
        *(end ? &g->node[k].loop1 : &g->node[k].loop0) = l;
    }
    *(end ? &g->cpu_ticks1 : &g->cpu_ticks0) = cpu;
    *(end ? &g->loop_ticks1 : &g->loop_ticks0) = loop;
    if (g->redis_fd < 0)
        return;
    lg_redis_info *info = end ? &g->redis1 : &g->redis0;
    if (lg_redis_info_read(g->redis_fd, info) != 0 || info->pid <= 0) {
        fprintf(stderr, "loadgen: redis on port %d: INFO failed\n", g->redis_port);
        g->redis_ok = 0;
        return;
    }
    *(end ? &g->redis_ticks1 : &g->redis_ticks0) = server_ticks(info->pid);
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                   */
/* ------------------------------------------------------------------------ */

static void
ep_out(lg *g, conn *c, int on)
{
    if (c->epout == on || c->state == ST_CLOSED)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(c - g->conns)};
    epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epout = (uint8_t)on;
}

static void
close_conn(lg *g, conn *c)
{
    if (c->state == ST_CLOSED)
        return;
    epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->state != ST_READY && g->nhandshaking > 0)
        g->nhandshaking--;
    c->state = ST_CLOSED;
}

static void
flush_out(lg *g, conn *c)
{
    size_t off = 0;
    while (off < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            problem(g, "conn %zu: send: %s", (size_t)(c - g->conns), strerror(errno));
            close_conn(g, c);
            return;
        }
        off += (size_t)n;
    }
    memmove(c->wbuf, c->wbuf + off, c->wlen - off);
    c->wlen -= off;
    ep_out(g, c, c->wlen > 0);
}

static void
queue_frame(lg *g, conn *c, int op, const char *payload, size_t len)
{
    if (c->wlen + len + 14 > c->wcap) {
        c->wcap = (c->wlen + len + 14) * 2;
        c->wbuf = xrealloc(c->wbuf, c->wcap);
    }
    c->wlen += lg_ws_masked(c->wbuf + c->wlen, op, payload, len, (uint32_t)rnd(g));
}

static const char *
field_name(lg *g, conn *c, char *buf, size_t cap)
{
    switch (g->shape.workload) {
    case 2:
        return c->field ? "b" : "a";
    case 4:
        snprintf(buf, cap, "f%u", (unsigned)(rnd(g) % g->shape.fields));
        return buf;
    default:
        return "f";
    }
}

/*
 * One write, its send time in the value: each receiver computes its latency
 * from the patch it gets. With --raw the same bytes go to the floor relay,
 * which passes them on as they are; `ref` then doubles as the sequence number.
 */
static void
send_write(lg *g, conn *c)
{
    char msg[160], fb[16];
    const char *field = field_name(g, c, fb, sizeof fb);
    int64_t ref = ++c->next_ref;
    int n = snprintf(msg, sizeof msg,
                     "{\"type\":\"write\",\"scope\":\"%s\",\"id\":\"doc\",\"ref\":%" PRId64
                     ",\"patch\":{\"%s\":%" PRId64 "}}",
                     g->shape.workload == 2 ? "private" : "shared", ref, field, now_ns());
    queue_frame(g, c, 1, msg, (size_t)n);
    c->inflight++;
    g->sent++;
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct rx {
    lg *g;
    conn *c;
    int64_t now;
} rx;

static int
counting(const lg *g)
{
    return g->phase == PH_MEASURE;
}

static void
on_delivery(lg *g, conn *c, int64_t ts, int64_t now)
{
    c->got++;
    g->deliveries++;
    if (counting(g)) {
        g->del_w++;
        g->node[c->node].del_w++;
        if (ts > 0 && now >= ts)
            lg_hist_record(g->hist, (uint64_t)(now - ts));
    }
}

static void
on_raw(rx *r, const lg_msg *m)
{
    lg *g = r->g;
    conn *c = r->c;
    if (m->type != LG_WRITE || m->ref < 0) {
        problem(g, "conn %zu: a relayed frame that is not ours", (size_t)(c - g->conns));
        return;
    }
    if (m->ref != c->seq + 1)
        problem(g, "conn %zu: message %" PRId64 " after %" PRId64 " (lost or reordered)",
                (size_t)(c - g->conns), m->ref, c->seq);
    c->seq = m->ref;
    on_delivery(g, c, m->ts, r->now);
}

static void
on_msg(const lg_msg *m, void *user)
{
    rx *r = user;
    lg *g = r->g;
    conn *c = r->c;
    size_t ci = (size_t)(c - g->conns);
    if (g->raw) {
        on_raw(r, m);
        return;
    }
    switch (m->type) {
    case LG_SNAPSHOT:
        c->rev = m->rev;
        break;
    case LG_SYNCED:
        if (c->state == ST_OPEN) {
            c->state = ST_READY;
            g->nready++;
            g->nhandshaking--;
            if (g->shape.workload != 3 && c->rev < 0)
                problem(g, "conn %zu: synced without a snapshot of doc", ci);
            if (g->client_ids && c->writer && !g->raw) {
                /* A client id makes the server keep each write's outcome for
                 * exactly once: a cluster node records it in Redis too. */
                char ping[64];
                int n = snprintf(ping, sizeof ping,
                                 "{\"type\":\"ping\",\"ref\":0,\"client\":\"lg%zu\"}", ci);
                queue_frame(g, c, 1, ping, (size_t)n);
                flush_out(g, c);
            }
        }
        break;
    case LG_PATCH:
        if (m->from != c->rev)
            problem(g, "conn %zu: patch from=%" PRId64 " rev=%" PRId64 " but it holds rev %" PRId64
                    " (%s)",
                    ci, m->from, m->rev, c->rev, m->from > c->rev ? "lost" : "reordered");
        c->rev = m->rev;
        on_delivery(g, c, m->ts, r->now);
        break;
    case LG_ACK:
        if (c->inflight == 0) {
            problem(g, "conn %zu: ack ref=%" PRId64 " with no write in flight", ci, m->ref);
            break;
        }
        c->inflight--;
        g->acks++;
        if (counting(g))
            g->acks_w++;
        if (m->from >= 0) {
            /* A private write: not echoed, the ack carries from (PROTOCOL.md). */
            if (m->from != c->rev)
                problem(g, "conn %zu: ack from=%" PRId64 " but it holds rev %" PRId64, ci,
                        m->from, c->rev);
            c->rev = m->rev;
        } else if (m->rev > c->rev) {
            /* A shared write's patch reaches its writer before the ack. */
            problem(g, "conn %zu: ack rev=%" PRId64 " before its patch (holds %" PRId64 ")", ci,
                    m->rev, c->rev);
        } else if (g->shape.workload == 2) {
            problem(g, "conn %zu: ack ref=%" PRId64 " without from: the write changed nothing",
                    ci, m->ref);
        }
        break;
    case LG_ERROR:
        if (m->ref >= 0 && c->inflight > 0)
            c->inflight--;
        problem(g, "conn %zu: error %.*s: %.*s", ci, (int)m->code_len, m->code ? m->code : "",
                (int)m->message_len, m->message ? m->message : "");
        break;
    default:
        break;
    }
}

/* Frames in c->rbuf: each text frame is scanned; pings are answered. */
static void
frames(lg *g, conn *c, int64_t now)
{
    size_t off = 0;
    rx r = {g, c, now};
    while (c->state != ST_CLOSED) {
        lg_frame f;
        int rc = lg_ws_frame(c->rbuf + off, c->rlen - off, &f);
        if (rc < 0) {
            problem(g, "conn %zu: a malformed frame from the server", (size_t)(c - g->conns));
            close_conn(g, c);
            return;
        }
        if (rc == 0 || c->rlen - off - f.head < f.len)
            break;
        const char *payload = (const char *)c->rbuf + off + f.head;
        size_t len = (size_t)f.len;
        off += f.head + len;
        switch (f.op) {
        case 1:
            if (!f.fin) {
                problem(g, "conn %zu: a fragmented message (not expected here)",
                        (size_t)(c - g->conns));
                break;
            }
            if (lg_scan_frame(payload, len, on_msg, &r) != 0)
                problem(g, "conn %zu: a frame that is not a message: %.*s",
                        (size_t)(c - g->conns), (int)(len > 80 ? 80 : len), payload);
            break;
        case 8: {
            int code = len >= 2 ? ((unsigned char)payload[0] << 8 | (unsigned char)payload[1])
                                : 1005;
            if (g->phase != PH_DONE)
                problem(g, "conn %zu: closed by the server with %d %.*s",
                        (size_t)(c - g->conns), code, (int)(len > 2 ? len - 2 : 0),
                        len > 2 ? payload + 2 : "");
            close_conn(g, c);
            return;
        }
        case 9:
            queue_frame(g, c, 10, payload, len); /* a pong with the ping's payload */
            flush_out(g, c);
            break;
        default:
            break;
        }
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
}

static void
upgraded(lg *g, conn *c)
{
    int status;
    long n = lg_ws_response((const char *)c->rbuf, c->rlen, &status);
    if (n == 0)
        return;
    if (n < 0) {
        problem(g, "conn %zu: handshake refused with HTTP %d", (size_t)(c - g->conns), status);
        g->fatal = 1;
        close_conn(g, c);
        return;
    }
    memmove(c->rbuf, c->rbuf + n, c->rlen - (size_t)n);
    c->rlen -= (size_t)n;
    if (g->raw) {
        c->state = ST_READY; /* the floor says nothing: the 101 is all */
        g->nready++;
        g->nhandshaking--;
    } else {
        c->state = ST_OPEN;
    }
}

static void
readable(lg *g, conn *c)
{
    for (int rounds = 0; rounds < 4 && c->state != ST_CLOSED; rounds++) {
        if (c->rcap - c->rlen < READ_ROOM) {
            c->rcap = c->rlen + READ_ROOM * 2;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        size_t avail = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, avail, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            problem(g, "conn %zu: recv: %s", (size_t)(c - g->conns), strerror(errno));
            close_conn(g, c);
            return;
        }
        if (n == 0) {
            if (g->phase != PH_DONE)
                problem(g, "conn %zu: the server closed the TCP connection",
                        (size_t)(c - g->conns));
            close_conn(g, c);
            return;
        }
        c->rlen += (size_t)n;
        int64_t now = now_ns();
        if (c->state == ST_UPGRADING)
            upgraded(g, c);
        if (c->state == ST_OPEN || c->state == ST_READY)
            frames(g, c, now);
        if ((size_t)n < avail)
            return; /* most likely drained: let epoll say when there is more */
    }
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

/*
 * With --raw the path is the floor's room: W1 one room for all, W2 a room per
 * tenant's two connections, W3 a room per idle connection.
 */
static void
tenant_path(lg *g, size_t i, char *buf, size_t cap)
{
    if (g->raw) {
        if (g->shape.workload == 2)
            snprintf(buf, cap, "/t%zu", i / 2);
        else if (g->shape.workload == 3)
            snprintf(buf, cap, "/i%zu", i);
        else
            snprintf(buf, cap, "/");
        return;
    }
    switch (g->shape.workload) {
    case 1:
        if (i == 0)
            snprintf(buf, cap, "/ws/w");
        else
            snprintf(buf, cap, "/ws/s%zu", i - 1);
        break;
    case 2:
        snprintf(buf, cap, "/ws/t%zu", i / 2);
        break;
    case 3:
        snprintf(buf, cap, "/ws/i%zu", i);
        break;
    default:
        if (i < g->shape.writers)
            snprintf(buf, cap, "/ws/w%zu", i);
        else
            snprintf(buf, cap, "/ws/s%zu", i - g->shape.writers);
        break;
    }
}

static void
open_conn(lg *g, size_t i)
{
    conn *c = &g->conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        problem(g, "socket: %s", strerror(errno));
        g->fatal = 1;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g->ports[c->node])};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        problem(g, "conn %zu: connect: %s", i, strerror(errno));
        g->fatal = 1;
        close(c->fd);
        c->state = ST_CLOSED;
        return;
    }
    c->state = ST_CONNECTING;
    c->rev = -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = i};
    epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->epout = 1;
    g->nopened++;
    g->nhandshaking++;
}

static void
writable(lg *g, conn *c)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            problem(g, "conn %zu: connect: %s", (size_t)(c - g->conns), strerror(err));
            g->fatal = 1;
            close_conn(g, c);
            return;
        }
        char path[64], req[512];
        tenant_path(g, (size_t)(c - g->conns), path, sizeof path);
        size_t n = lg_ws_request(req, sizeof req, "127.0.0.1", g->ports[c->node], path, !g->raw);
        c->state = ST_UPGRADING;
        if (c->wlen + n > c->wcap) {
            c->wcap = c->wlen + n + 256;
            c->wbuf = xrealloc(c->wbuf, c->wcap);
        }
        memcpy(c->wbuf + c->wlen, req, n);
        c->wlen += n;
    }
    flush_out(g, c);
}

/* ------------------------------------------------------------------------ */
/* The writers                                                               */
/* ------------------------------------------------------------------------ */

static int
writing(const lg *g)
{
    return g->phase == PH_WARMUP || g->phase == PH_MEASURE;
}

/*
 * Offered rate: writes are due at start + k / rate, spread over the writers
 * in turn; a late loop catches up (that is what an offered rate means).
 * Closed loop: each writer keeps up to `window` writes unacked, and all of
 * them together stay within `lag` writes of the slowest receiver, so the run
 * measures what the server delivers, not how far queues grow (an average
 * would let a few receivers fall seconds behind).
 */
static uint64_t
slowest(lg *g, int64_t now)
{
    /* Every 250 us at most: a scan of 5000 connections costs a few us. */
    if (now - g->slowest_at < 250000)
        return g->slowest;
    uint64_t min = UINT64_MAX;
    for (size_t i = g->raw ? 1 : 0; i < g->nconns; i++)
        if (g->conns[i].state == ST_READY && g->conns[i].got < min)
            min = g->conns[i].got;
    g->slowest = min == UINT64_MAX ? 0 : min;
    g->slowest_at = now;
    return g->slowest;
}

static void
pump(lg *g, int64_t now)
{
    if (!writing(g) || g->nwriters == 0)
        return;
    if (g->rate > 0) {
        double total = g->shape.workload == 2 ? g->rate * (double)g->nwriters : g->rate;
        uint64_t due = (uint64_t)((double)(now - g->rate_t0) * total / 1e9);
        while (g->rate_sent < due) {
            conn *c = &g->conns[g->writers[g->rr++ % g->nwriters]];
            g->rate_sent++;
            if (c->state == ST_READY)
                send_write(g, c);
        }
    } else if (g->shape.workload == 2) {
        /* W2 closed loop: each connection keeps up to `window` writes unacked
         * (the floor sends no acks), and at most `lag` ahead of what its
         * partner, the one receiver of its writes, has received. */
        for (size_t i = 0; i < g->nwriters; i++) {
            conn *c = &g->conns[g->writers[i]];
            const conn *p = &g->conns[g->writers[i] ^ 1];
            while (c->state == ST_READY && (g->raw || c->inflight < g->window) &&
                   (uint64_t)c->next_ref < p->got + g->lag)
                send_write(g, c);
        }
    } else {
        uint64_t limit = slowest(g, now) + g->lag;
        for (size_t i = 0; i < g->nwriters; i++) {
            conn *c = &g->conns[g->writers[i]];
            while (c->state == ST_READY && (g->raw || c->inflight < g->window) &&
                   g->sent < limit)
                send_write(g, c);
        }
    }
    for (size_t i = 0; i < g->nwriters; i++) {
        conn *c = &g->conns[g->writers[i]];
        if (c->wlen > 0 && !c->epout)
            flush_out(g, c);
    }
}

/*
 * --raw: the connection whose frames connection i receives (W1: the writer,
 * W2: the other connection of its room), and whether i still lacks some of
 * them. The floor sends no acks, so this is all there is to drain.
 */
static size_t
raw_source(const lg *g, size_t i)
{
    return g->shape.workload == 2 ? i ^ 1 : 0;
}

static int
raw_behind(const lg *g, size_t i)
{
    size_t src = raw_source(g, i);
    return src != i && g->conns[i].state == ST_READY &&
           g->conns[i].seq != g->conns[src].next_ref;
}

/* Drained: every write acked and every connection at the rev its model reached. */
static int
drained(lg *g)
{
    if (g->raw) {
        for (size_t i = 0; i < g->nconns; i++)
            if (raw_behind(g, i))
                return 0;
        return 1;
    }
    for (size_t i = 0; i < g->nwriters; i++)
        if (g->conns[g->writers[i]].inflight > 0)
            return 0;
    if (g->shape.workload == 2) {
        for (size_t i = 0; i + 1 < g->nconns; i += 2)
            if (g->conns[i].rev != g->conns[i + 1].rev)
                return 0;
        return 1;
    }
    int64_t last = -1;
    for (size_t i = 0; i < g->nconns; i++)
        if (g->conns[i].rev > last)
            last = g->conns[i].rev;
    for (size_t i = 0; i < g->nconns; i++)
        if (g->conns[i].state == ST_READY && g->conns[i].rev != last)
            return 0;
    return 1;
}

static void
report_undrained(lg *g)
{
    size_t bad = 0;
    if (g->raw) {
        for (size_t i = 0; i < g->nconns; i++)
            if (raw_behind(g, i) && bad++ < 3)
                problem(g, "conn %zu: got %" PRId64 " of %" PRId64 " messages", i, g->conns[i].seq,
                        g->conns[raw_source(g, i)].next_ref);
    } else {
        int64_t last = -1;
        for (size_t i = 0; i < g->nconns; i++)
            if (g->conns[i].rev > last)
                last = g->conns[i].rev;
        for (size_t i = 0; i < g->nconns; i++) {
            conn *c = &g->conns[i];
            int64_t want = g->shape.workload == 2 ? g->conns[i ^ 1].rev : last;
            if ((c->rev != want || c->inflight > 0) && bad++ < 3)
                problem(g, "conn %zu: holds rev %" PRId64 " of %" PRId64 ", %u writes unacked",
                        i, c->rev, want, c->inflight);
        }
    }
    problem(g, "%zu connections did not get everything within %lld s of the end", bad,
            DRAIN_NS / 1000000000LL);
}

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

static void
setup(lg *g)
{
    const lg_shape *s = &g->shape;
    switch (s->workload) {
    case 1:
        g->nconns = 1 + s->subs;
        g->nwriters = 1;
        g->nrecv = g->raw ? s->subs : s->subs + 1;
        break;
    case 2:
        g->nconns = 2 * (size_t)s->tenants;
        g->nwriters = g->nconns;
        g->nrecv = 1;
        break;
    case 3:
        g->nconns = s->conns;
        g->nwriters = 0;
        g->nrecv = 1;
        break;
    default:
        g->nconns = (size_t)s->writers + s->subs;
        g->nwriters = s->writers;
        g->nrecv = g->nconns;
        break;
    }
    g->conns = calloc(g->nconns, sizeof *g->conns);
    g->writers = calloc(g->nwriters ? g->nwriters : 1, sizeof *g->writers);
    g->hist = calloc(1, sizeof *g->hist);
    if (g->conns == NULL || g->writers == NULL || g->hist == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < g->nconns; i++) {
        g->conns[i].fd = -1;
        g->conns[i].rev = -1;
        g->conns[i].field = (uint32_t)(i & 1);
        /* W2's tenant t has connections 2t and 2t + 1: round robin puts them on two
         * servers, --spread tenant on one. Elsewhere each connection is a tenant. */
        size_t unit = g->by_tenant && s->workload == 2 ? i / 2 : i;
        g->conns[i].node = (uint8_t)(unit % g->nports);
    }
    for (size_t i = 0; i < g->nwriters; i++) {
        g->writers[i] = i; /* writers come first: W1's "w", W2's every one, W4's w0.. */
        g->conns[i].writer = 1;
    }
}

static void
enter(lg *g, int phase, int64_t now, double seconds)
{
    g->phase = phase;
    g->phase_end = now + (int64_t)(seconds * 1e9);
}

static void
step(lg *g, int64_t now)
{
    switch (g->phase) {
    case PH_CONNECT:
        while (g->nopened < g->nconns && g->nhandshaking < HANDSHAKES_IN_FLIGHT && !g->fatal)
            open_conn(g, g->nopened);
        if (g->nready == g->nconns) {
            g->t_connected = now;
            if (g->shape.workload == 3) {
                enter(g, PH_IDLE, now, g->idle_s);
            } else {
                enter(g, PH_WARMUP, now, g->warmup_s);
                g->rate_t0 = now;
            }
        }
        break;
    case PH_WARMUP:
        if (now >= g->phase_end) {
            enter(g, PH_MEASURE, now, g->duration_s);
            g->t_measure0 = now;
            read_servers(g, 0);
        }
        break;
    case PH_MEASURE:
        if (now >= g->phase_end) {
            g->t_measure1 = now;
            read_servers(g, 1);
            g->rss_after = servers_rss_kb(g);
            g->phase = PH_DRAIN;
            g->phase_end = now + DRAIN_NS;
        }
        break;
    case PH_DRAIN:
        if (drained(g)) {
            g->phase = PH_DONE;
        } else if (now >= g->phase_end) {
            report_undrained(g);
            g->phase = PH_DONE;
        }
        break;
    case PH_IDLE:
        if (now >= g->phase_end) {
            g->rss_after = servers_rss_kb(g);
            g->phase = PH_DONE;
        }
        break;
    default:
        break;
    }
}

static void
run(lg *g)
{
    struct epoll_event evs[512];
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->rss_before = servers_rss_kb(g);
    g->t_connect0 = now_ns();
    int64_t deadline = g->t_connect0 + 120 * 1000000000LL; /* for connecting */
    while (g->phase != PH_DONE) {
        int64_t now = now_ns();
        step(g, now);
        if (g->fatal || (g->phase == PH_CONNECT && now > deadline)) {
            if (!g->fatal)
                problem(g, "only %zu of %zu connections synced within 120 s", g->nready,
                        g->nconns);
            break;
        }
        pump(g, now);
        /* Wake at least every millisecond while writing (the offered rate's
         * clock); the closed loop is driven by what arrives. */
        int timeout = writing(g) || g->phase == PH_DRAIN ? 1 : 10;
        if (g->phase == PH_CONNECT && g->nopened < g->nconns &&
            g->nhandshaking < HANDSHAKES_IN_FLIGHT)
            timeout = 0;
        int n = epoll_wait(g->ep, evs, 512, timeout);
        for (int i = 0; i < n; i++) {
            conn *c = &g->conns[evs[i].data.u64];
            if (c->state == ST_CLOSED)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                readable(g, c);
            if (c->state != ST_CLOSED && (evs[i].events & EPOLLOUT))
                writable(g, c);
        }
    }
    g->phase = PH_DONE;
}

/* ------------------------------------------------------------------------ */
/* The result row                                                            */
/* ------------------------------------------------------------------------ */

static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void
print_params(const lg *g)
{
    const lg_shape *s = &g->shape;
    switch (s->workload) {
    case 1:
        printf("{\"subs\":%u,\"rate\":", s->subs);
        if (g->rate > 0)
            printf("%g}", g->rate);
        else
            printf("\"max\"}");
        break;
    case 2:
        if (g->rate > 0)
            printf("{\"tenants\":%u,\"rate\":%g}", s->tenants, g->rate);
        else
            printf("{\"tenants\":%u,\"rate\":\"max\",\"window\":%u}", s->tenants, g->window);
        break;
    case 3:
        printf("{\"conns\":%u}", s->conns);
        break;
    default:
        printf("{\"writers\":%u,\"subs\":%u,\"fields\":%u}", s->writers, s->subs, s->fields);
        break;
    }
}

/*
 * Each server's share of the window (--ports, --server-pids): node k is
 * pids[k], whose connections are those on ports[k]. cpu_us_per_delivery is
 * its CPU over the deliveries to its own connections; a node with none (more
 * pids than ports) has null there, its CPU still counted in the row's sum.
 */
static void
print_nodes(const lg *g, double win, long tck)
{
    printf(",\"nodes\":[");
    for (size_t k = 0; k < g->npids; k++) {
        long t = g->node[k].t0 >= 0 && g->node[k].t1 >= 0 ? g->node[k].t1 - g->node[k].t0 : -1;
        long l = g->node[k].loop0 >= 0 && g->node[k].loop1 >= 0
                     ? g->node[k].loop1 - g->node[k].loop0
                     : -1;
        double us = (double)t * 1e6 / (double)tck;
        printf("%s{\"pid\":%ld,", k ? "," : "", g->pids[k]);
        if (k < g->nports)
            printf("\"port\":%d,", g->ports[k]);
        else
            printf("\"port\":null,");
        printf("\"deliveries\":%" PRIu64, g->node[k].del_w);
        if (t >= 0 && win > 0)
            printf(",\"cpu_us\":%.0f,\"cpu_pct\":%.1f", us, us / 1e4 / win);
        else
            printf(",\"cpu_us\":null,\"cpu_pct\":null");
        if (t >= 0 && g->node[k].del_w > 0)
            printf(",\"cpu_us_per_delivery\":%.3f", us / (double)g->node[k].del_w);
        else
            printf(",\"cpu_us_per_delivery\":null");
        if (l >= 0)
            printf(",\"loop_cpu_us\":%.0f", (double)l * 1e6 / (double)tck);
        else
            printf(",\"loop_cpu_us\":null");
        printf(",\"rss_kb\":%ld}", g->node[k].rss);
    }
    printf("]");
}

/*
 * Redis over the window (--redis-port): commands processed, per command, and
 * its CPU. The INFO that opened the window is counted by the one that closed
 * it, so it is taken away; commands run by a script count too (the report
 * tells round trips from them).
 */
static void
print_redis(const lg *g, long tck)
{
    const lg_redis_info *a = &g->redis0, *b = &g->redis1;
    if (!g->redis_ok) {
        printf(",\"redis\":null");
        return;
    }
    printf(",\"redis\":{\"pid\":%ld,\"writes\":%" PRIu64 ",\"commands\":%" PRIu64, b->pid,
           g->acks_w, b->total - a->total - 1);
    if (g->redis_ticks0 >= 0 && g->redis_ticks1 >= 0)
        printf(",\"cpu_us\":%.0f", (double)(g->redis_ticks1 - g->redis_ticks0) * 1e6 / (double)tck);
    else
        printf(",\"cpu_us\":null");
    printf(",\"per_command\":{");
    int first = 1;
    for (size_t i = 0; i < b->ncmds; i++) {
        uint64_t before = 0;
        for (size_t j = 0; j < a->ncmds; j++)
            if (strcmp(a->cmds[j].name, b->cmds[i].name) == 0)
                before = a->cmds[j].calls;
        uint64_t d = b->cmds[i].calls - before - (strcmp(b->cmds[i].name, "info") == 0);
        if (d == 0)
            continue;
        printf("%s", first ? "" : ",");
        json_str(b->cmds[i].name);
        printf(":%" PRIu64, d);
        first = 0;
    }
    printf("}}");
}

static int
finish(lg *g)
{
    double win = (double)(g->t_measure1 - g->t_measure0) / 1e9;
    int w3 = g->shape.workload == 3;
    long tck = sysconf(_SC_CLK_TCK);
    double cpu_us = g->cpu_ticks0 >= 0 && g->cpu_ticks1 >= 0
                        ? (double)(g->cpu_ticks1 - g->cpu_ticks0) * 1e6 / (double)tck
                        : -1;
    double loop_us = g->loop_ticks0 >= 0 && g->loop_ticks1 >= 0
                         ? (double)(g->loop_ticks1 - g->loop_ticks0) * 1e6 / (double)tck
                         : -1;
    /* Writes in the window: acks (the floor: frames relayed per receiver). */
    double writes_w = g->raw ? (double)g->del_w / (double)g->nrecv : (double)g->acks_w;
    double dps = win > 0 ? (double)g->del_w / win : 0;
    double wps = win > 0 ? (double)(g->raw ? 0 : g->acks_w) / win : 0;
    if (g->raw && win > 0)
        wps = (double)g->del_w / (double)g->nrecv / win;
    int verified = g->nproblems == 0 && g->phase == PH_DONE;
    if (!w3 && g->del_w == 0 && verified) {
        problem(g, "nothing was delivered in the measured window");
        verified = 0;
    }
    double conn_s = (double)(g->t_connected - g->t_connect0) / 1e9;

    printf("{\"system\":");
    json_str(g->system);
    printf(",\"workload\":\"W%d\",\"params\":", g->shape.workload);
    print_params(g);
    if (w3) {
        printf(",\"deliveries_per_s\":null,\"writes_per_s\":null,\"latency_us\":null,"
               "\"server_cpu_us_per_delivery\":null");
    } else {
        printf(",\"deliveries_per_s\":%.0f,\"writes_per_s\":%.0f", dps, wps);
        printf(",\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}",
               (double)lg_hist_value(g->hist, 0.50) / 1e3,
               (double)lg_hist_value(g->hist, 0.99) / 1e3, (double)g->hist->max / 1e3);
        if (cpu_us >= 0 && g->del_w > 0)
            printf(",\"server_cpu_us_per_delivery\":%.3f", cpu_us / (double)g->del_w);
        else
            printf(",\"server_cpu_us_per_delivery\":null");
    }
    /* The loop thread apart from the whole process (a commit thread's fsyncs
     * and SQLite work are the process's, not the loop's), per write and per
     * delivery. */
    if (!w3) {
        const char *const keys[4] = {"server_loop_cpu_us_per_write", "server_cpu_us_per_write",
                                     "server_loop_cpu_us_per_delivery", "server_loop_cpu_pct"};
        double vals[4] = {
            loop_us >= 0 && writes_w > 0 ? loop_us / writes_w : -1,
            cpu_us >= 0 && writes_w > 0 ? cpu_us / writes_w : -1,
            loop_us >= 0 && g->del_w > 0 ? loop_us / (double)g->del_w : -1,
            loop_us >= 0 && win > 0 ? loop_us / 1e4 / win : -1,
        };
        for (int i = 0; i < 4; i++)
            if (vals[i] >= 0)
                printf(",\"%s\":%.3f", keys[i], vals[i]);
            else
                printf(",\"%s\":null", keys[i]);
        printf(",\"server_threads_cpu_us\":{");
        for (size_t i = 0; i < g->ntasks; i++) {
            if (i)
                putchar(',');
            json_str(g->tasks[i].name);
            printf(":%.0f", (double)(g->tasks[i].t1 - g->tasks[i].t0) * 1e6 / (double)tck);
        }
        printf("}");
    }
    printf(",\"server_rss_kb\":%ld", g->rss_after);
    if (w3 && g->shape.conns > 0 && g->rss_after > 0 && g->rss_before > 0)
        printf(",\"rss_per_conn_kb\":%.2f",
               (double)(g->rss_after - g->rss_before) / (double)g->shape.conns);
    else
        printf(",\"rss_per_conn_kb\":null");
    if (w3 && conn_s > 0)
        printf(",\"conns_per_s\":%.0f", (double)g->nconns / conn_s);
    else
        printf(",\"conns_per_s\":null");
    printf(",\"verified\":%s,\"problems\":[", verified ? "true" : "false");
    for (size_t i = 0; i < g->nproblems && i < MAX_PROBLEMS; i++) {
        if (i)
            putchar(',');
        json_str(g->problems[i]);
    }
    if (g->nproblems > MAX_PROBLEMS)
        printf(",\"... %zu more\"", g->nproblems - MAX_PROBLEMS);
    printf("]");
    /* Beyond the schema: what a reader needs to judge the figures. */
    if (!w3 && cpu_us >= 0 && win > 0)
        printf(",\"server_cpu_pct\":%.1f", cpu_us / 1e4 / win);
    printf(",\"window_s\":%.2f,\"deliveries\":%" PRIu64 ",\"latency_samples\":%" PRIu64
           ",\"server_rss_before_kb\":%ld",
           win, g->del_w, g->hist->count, g->rss_before);
    if (g->per_node)
        print_nodes(g, win, tck);
    if (g->redis_fd >= 0)
        print_redis(g, tck);
    printf("}\n");
    fflush(stdout);

    fprintf(stderr,
            "loadgen: %s W%d: %.0f deliveries/s, %.0f writes/s, p50 %.0f us, p99 %.0f us, "
            "max %.0f us, server %.3f us CPU/delivery (%.0f%% busy; per write: loop %.3f us, "
            "process %.3f us), rss %ld kB, %s\n",
            g->system, g->shape.workload, dps, wps, (double)lg_hist_value(g->hist, 0.5) / 1e3,
            (double)lg_hist_value(g->hist, 0.99) / 1e3, (double)g->hist->max / 1e3,
            g->del_w ? cpu_us / (double)g->del_w : 0, win > 0 ? cpu_us / 1e4 / win : 0,
            writes_w > 0 ? loop_us / writes_w : 0, writes_w > 0 ? cpu_us / writes_w : 0,
            g->rss_after, verified ? "verified" : "NOT VERIFIED");
    for (size_t k = 0; g->per_node && k < g->npids; k++) {
        double us = (double)(g->node[k].t1 - g->node[k].t0) * 1e6 / (double)tck;
        fprintf(stderr,
                "loadgen:   node %zu (pid %ld): %" PRIu64 " deliveries, %.3f us CPU per own "
                "delivery, %.0f%% busy\n",
                k + 1, g->pids[k], g->node[k].del_w,
                g->node[k].del_w ? us / (double)g->node[k].del_w : 0, win > 0 ? us / 1e4 / win : 0);
    }
    if (g->redis_fd >= 0 && g->redis_ok && g->acks_w > 0)
        fprintf(stderr,
                "loadgen:   redis: %.2f commands per write (Lua's included), %.1f us CPU "
                "per write\n",
                (double)(g->redis1.total - g->redis0.total - 1) / (double)g->acks_w,
                (double)(g->redis_ticks1 - g->redis_ticks0) * 1e6 / (double)tck /
                    (double)g->acks_w);
    return verified ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
    fputs("usage: loadgen --workload W1|W2|W3|W4 --port PORT --server-pid PID [options]\n"
          "       loadgen --workload W1|W2|W3|W4 --ports P1,P2.. --server-pids PID1,PID2..\n"
          "               [--redis-port PORT] [--spread conn|tenant] [options]  (several\n"
          "               servers, connections round robin by connection or by tenant:\n"
          "               bench/cluster.sh)\n"
          "       loadgen --print-config W1|W2|W3|W4 [shape options]\n"
          "       loadgen --report FILE...\n"
          "       loadgen --report-storage FILE...  (run.sh --storage's table)\n"
          "       loadgen --report-cluster FILE...  (cluster.sh's table)\n"
          "       loadgen --free-port\n"
          "shape:   --subs S (W1, W4)  --writers N (W4)  --tenants T (W2)  --conns N (W3)\n"
          "         --fields F (W4, default 100)\n"
          "config:  --storage FILE --sync full|normal|off (--print-config: SQLite storage)\n"
          "         --cluster redis://HOST:PORT/DB --node NAME (--print-config: a cluster node)\n"
          "load:    --rate R (writes/s; W1: the writer's, W2: each connection's; max, 0 or\n"
          "         omitted: closed loop, except W2 whose default is 5; W2 closed loop needs\n"
          "         max)  --window K (unacked writes per writer, default 16)\n"
          "         --lag L (closed loop: writes ahead of the slowest receiver, W2: of the\n"
          "         partner, default 64)\n"
          "timing:  --warmup S (default 1)  --duration S (default 5)  --idle S (W3, default 1)\n"
          "other:   --raw (the floor relay: W1, W2, W3)  --system NAME  --cpu N (default 1)\n"
          "         --client-ids 1 (each writer names itself with a ping: exactly-once records)\n",
          f);
}

static int
workload_arg(const char *s)
{
    if ((s[0] == 'W' || s[0] == 'w') && s[1] >= '1' && s[1] <= '4' && s[2] == '\0')
        return s[1] - '0';
    return 0;
}

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("loadgen: free port");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

int
main(int argc, char **argv)
{
    lg g;
    memset(&g, 0, sizeof g);
    g.system = NULL;
    g.window = 16;
    g.lag = 64;
    g.warmup_s = 1;
    g.duration_s = 5;
    g.idle_s = 1;
    g.cpu = 1;
    g.redis_fd = -1;
    g.seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)now_ns();
    g.shape.fields = 100;
    int print_config = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned u = 0, list[LG_MAX_NODES];
        size_t n = 0;
        int bad = 0;
        if (strcmp(a, "--report") == 0)
            return lg_report(argc - i - 1, argv + i + 1) == 0 ? 0 : 1;
        if (strcmp(a, "--report-storage") == 0)
            return lg_report_storage(argc - i - 1, argv + i + 1) == 0 ? 0 : 1;
        if (strcmp(a, "--report-cluster") == 0)
            return lg_report_cluster(argc - i - 1, argv + i + 1) == 0 ? 0 : 1;
        if (strcmp(a, "--free-port") == 0)
            return free_port();
        if (strcmp(a, "--raw") == 0) {
            g.raw = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "loadgen: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--workload") == 0 || strcmp(a, "--print-config") == 0) {
            g.shape.workload = workload_arg(v);
            bad = g.shape.workload == 0;
            print_config = strcmp(a, "--print-config") == 0;
        } else if (strcmp(a, "--port") == 0) {
            bad = parse_uint(v, &u) || u > 65535;
            g.ports[0] = (int)u;
            g.nports = 1;
        } else if (strcmp(a, "--ports") == 0) {
            bad = parse_list(v, 65535, list, &n);
            for (size_t k = 0; k < n && !bad; k++)
                g.ports[k] = (int)list[k];
            g.nports = bad ? 0 : n;
            g.per_node = 1;
        } else if (strcmp(a, "--server-pid") == 0) {
            bad = parse_uint(v, &u);
            g.pids[0] = (long)u;
            g.npids = 1;
        } else if (strcmp(a, "--server-pids") == 0) {
            bad = parse_list(v, 100000000, list, &n);
            for (size_t k = 0; k < n && !bad; k++)
                g.pids[k] = (long)list[k];
            g.npids = bad ? 0 : n;
            g.per_node = 1;
        } else if (strcmp(a, "--client-ids") == 0) {
            bad = parse_uint(v, &u) || u > 1;
            g.client_ids = (int)u;
        } else if (strcmp(a, "--spread") == 0) {
            g.by_tenant = strcmp(v, "tenant") == 0;
            bad = !g.by_tenant && strcmp(v, "conn") != 0;
        } else if (strcmp(a, "--redis-port") == 0) {
            bad = parse_uint(v, &u) || u == 0 || u > 65535;
            g.redis_port = (int)u;
        } else if (strcmp(a, "--cpu") == 0) {
            bad = parse_uint(v, &u);
            g.cpu = (int)u;
        } else if (strcmp(a, "--subs") == 0) {
            bad = parse_uint(v, &g.shape.subs);
        } else if (strcmp(a, "--writers") == 0) {
            bad = parse_uint(v, &g.shape.writers);
        } else if (strcmp(a, "--tenants") == 0) {
            bad = parse_uint(v, &g.shape.tenants);
        } else if (strcmp(a, "--conns") == 0) {
            bad = parse_uint(v, &g.shape.conns);
        } else if (strcmp(a, "--storage") == 0) {
            g.shape.storage = v; /* --print-config only: the server's database file */
        } else if (strcmp(a, "--cluster") == 0) {
            g.shape.cluster = v; /* --print-config only: the nodes' Redis */
        } else if (strcmp(a, "--node") == 0) {
            g.shape.node = v;
        } else if (strcmp(a, "--sync") == 0) {
            g.shape.sync = v;
            bad = strcmp(v, "full") != 0 && strcmp(v, "normal") != 0 && strcmp(v, "off") != 0;
        } else if (strcmp(a, "--fields") == 0) {
            bad = parse_uint(v, &g.shape.fields) || g.shape.fields == 0;
        } else if (strcmp(a, "--window") == 0) {
            bad = parse_uint(v, &g.window) || g.window == 0;
        } else if (strcmp(a, "--lag") == 0) {
            bad = parse_uint(v, &g.lag) || g.lag == 0;
        } else if (strcmp(a, "--rate") == 0) {
            g.closed = strcmp(v, "max") == 0;
            bad = g.closed ? 0 : parse_double(v, &g.rate);
        } else if (strcmp(a, "--warmup") == 0) {
            bad = parse_double(v, &g.warmup_s);
        } else if (strcmp(a, "--duration") == 0) {
            bad = parse_double(v, &g.duration_s) || g.duration_s <= 0;
        } else if (strcmp(a, "--idle") == 0) {
            bad = parse_double(v, &g.idle_s);
        } else if (strcmp(a, "--system") == 0) {
            g.system = v;
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "loadgen: %s: bad value %s\n", a, v);
            return 2;
        }
    }
    if (g.shape.workload == 0) {
        usage(stderr);
        return 2;
    }
    if (g.shape.workload == 4 && g.shape.writers == 0)
        g.shape.writers = 50;
    if (g.shape.workload == 2 && g.rate == 0 && !g.closed)
        g.rate = 5;
    if (print_config)
        return lg_print_config(&g.shape) == 0 ? 0 : 2;
    if (g.nports == 0 || g.ports[0] == 0 || g.npids == 0 || g.pids[0] <= 0) {
        fprintf(stderr, "loadgen: --port (or --ports) and --server-pid (or --server-pids) are "
                        "required\n");
        return 2;
    }
    if (g.redis_port != 0) {
        g.redis_fd = lg_redis_connect(g.redis_port);
        if (g.redis_fd < 0) {
            fprintf(stderr, "loadgen: --redis-port %d: cannot connect: %s\n", g.redis_port,
                    strerror(errno));
            return 2;
        }
        g.redis_ok = 1;
    }
    if (g.raw && g.shape.workload == 4) {
        fprintf(stderr, "loadgen: --raw is for W1, W2 and W3 (the floor relays frames, no "
                        "more)\n");
        return 2;
    }
    if (g.system == NULL)
        g.system = g.raw ? "floor" : "transports";

    /* One descriptor per connection: the soft limit up to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(g.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fprintf(stderr, "loadgen: cannot pin to CPU %d: %s\n", g.cpu, strerror(errno));

    setup(&g);
    run(&g);
    return finish(&g);
}
