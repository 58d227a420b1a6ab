/* Real redis-server processes for the Redis link's tests (redisd.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "redisd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void
tpt_tempdir(char *out, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/tp-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(out))
        out[0] = '\0';
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void
tpt_rm_rf(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int
port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int
tpt_free_port(int bus)
{
    /* Random ports in 20000..45000 (their bus ports stay under 65536), checked free. */
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (int i = 0; i < 1000; i++) {
        int port = 20000 + (int)(rand_r(&seed) % 25000);
        if (port_free(port) && (!bus || port_free(port + 10000)))
            return port;
    }
    return -1;
}

redisContext *
tpt_redis_sync(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){10, 0});
    return c;
}

static int
spawn(tpt_redisd *d)
{
    char port[16], log[600], aof[600], timeout[16];
    snprintf(timeout, sizeof timeout, "%d", d->node_timeout_ms ? d->node_timeout_ms : 5000);
    snprintf(port, sizeof port, "%d", d->port);
    snprintf(log, sizeof log, "%s/redis.log", d->dir);
    snprintf(aof, sizeof aof, "%s/nodes.conf", d->dir);
    const char *argv[40];
    int n = 0;
    argv[n++] = TPT_REDIS_SERVER;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = d->dir;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "yes";
    argv[n++] = "--appendfsync";
    argv[n++] = "always";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--logfile";
    argv[n++] = log;
    if (d->cluster) {
        argv[n++] = "--cluster-enabled";
        argv[n++] = "yes";
        argv[n++] = "--cluster-config-file";
        argv[n++] = aof;
        argv[n++] = "--cluster-node-timeout";
        argv[n++] = timeout;
    }
    for (int i = 0; i < 8 && d->extra[i]; i++)
        argv[n++] = d->extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Dies with the test process, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execv(TPT_REDIS_SERVER, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    /* Ready when it answers PING (a server replaying its AOF answers -LOADING). */
    for (int i = 0; i < 500; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            d->pid = 0;
            return -1;
        }
        redisContext *c = tpt_redis_sync(d->port);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            /* PONG, or NOAUTH from a server with a password: it answers. */
            int ok = r && ((r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) ||
                           (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0));
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
        sleep_ms(10);
    }
    return -1;
}

int
tpt_redisd_start(tpt_redisd *d, const char *base, int port, int cluster)
{
    for (int tries = 0; tries < 5; tries++) {
        d->port = port ? port : tpt_free_port(cluster);
        d->cluster = cluster;
        snprintf(d->dir, sizeof d->dir, "%s/%d", base, d->port);
        mkdir(d->dir, 0700);
        if (spawn(d) == 0)
            return 0;
        tpt_redisd_stop(d);
        if (port)
            break; /* a fixed port: no other to try */
    }
    return -1;
}

void
tpt_redisd_signal(tpt_redisd *d, int sig)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, sig);
    if (sig == SIGKILL) {
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

int
tpt_redisd_restart(tpt_redisd *d)
{
    tpt_redisd_stop(d);
    /* The port was just released by a killed process: it may take a moment to bind. */
    for (int i = 0; i < 50; i++) {
        if (spawn(d) == 0)
            return 0;
        tpt_redisd_stop(d);
        sleep_ms(20);
    }
    return -1;
}

void
tpt_redisd_stop(tpt_redisd *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGCONT);
        tpt_redisd_signal(d, SIGKILL);
    }
}

static int
cluster_ok(int port, int masters)
{
    redisContext *c = tpt_redis_sync(port);
    if (!c)
        return 0;
    int ok = 0;
    redisReply *r = redisCommand(c, "CLUSTER INFO");
    if (r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok"))
        ok = 1;
    if (r)
        freeReplyObject(r);
    if (ok) {
        /* And the whole map, with every master, is known to this node. */
        r = redisCommand(c, "CLUSTER SLOTS");
        ok = r && r->type == REDIS_REPLY_ARRAY && (int)r->elements == masters;
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

int
tpt_cluster_create(tpt_redisd *d, int n, int replicas)
{
    char addrs[8][32], reps[8];
    snprintf(reps, sizeof reps, "%d", replicas);
    const char *argv[20];
    int k = 0;
    argv[k++] = TPT_REDIS_CLI;
    argv[k++] = "--cluster";
    argv[k++] = "create";
    for (int i = 0; i < n && i < 8; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", d[i].port);
        argv[k++] = addrs[i];
    }
    argv[k++] = "--cluster-replicas";
    argv[k++] = reps;
    argv[k++] = "--cluster-yes";
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execv(TPT_REDIS_CLI, (char *const *)argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    for (int i = 0; i < 2000; i++) {
        int all = 1;
        for (int j = 0; j < n && all; j++)
            all = cluster_ok(d[j].port, n / (1 + replicas));
        if (all)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static void
tick(uv_timer_t *t)
{
    (void)t; /* only turns the loop */
}

int
tpt_uv_run_while(uv_loop_t *loop, int (*done)(const void *arg), const void *arg, int ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (!done(arg) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return done(arg);
}

typedef struct flag_at {
    const int *flag;
    int want;
} flag_at;

static int
flag_reached(const void *arg)
{
    const flag_at *f = arg;
    return *f->flag >= f->want;
}

int
tpt_uv_run_until(uv_loop_t *loop, const int *flag, int want, int ms)
{
    flag_at f = {flag, want};
    return tpt_uv_run_while(loop, flag_reached, &f, ms);
}
