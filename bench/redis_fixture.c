/* The Redis benchmarks' common fixture (redis_fixture.h). */
#include "redis_fixture.h"

#include <stdio.h>
#include <sys/resource.h>

static void
on_state(tp__redis_event ev, const char *reason, uint32_t retry_ms, void *user)
{
    bench_redis *b = user;
    (void)retry_ms;
    if (ev == TP__REDIS_UP)
        b->up = 1;
    else
        fprintf(stderr, "%s: %s\n", b->name, reason);
}

int
bench_redis_open(bench_redis *b, const char *name, uv_loop_t *loop, const char *url,
                 const char *fsync)
{
    *b = (bench_redis){.name = name};
    b->rd.extra[0] = "--appendfsync";
    b->rd.extra[1] = fsync;
    if (url == NULL) {
        tpt_tempdir(b->base, sizeof b->base);
        if (tpt_redisd_start(&b->rd, b->base, 0, 0) != 0) {
            fprintf(stderr, "%s: could not start %s\n", name, TPT_REDIS_SERVER);
            return 1;
        }
        snprintf(b->url, sizeof b->url, "redis://127.0.0.1:%d", b->rd.port);
        url = b->url;
        printf("%s: redis-server %s, appendonly yes, appendfsync %s\n", name, url, fsync);
    }
    tp__redis_config cfg = {.url = url, .on_state = on_state, .user = b, .max_inflight = 100000};
    tp_error err;
    b->link = tp__redis_new(loop, &cfg, &err);
    if (b->link == NULL) {
        fprintf(stderr, "%s: %s\n", name, err.message);
        bench_redis_close(b, loop);
        return 1;
    }
    while (!b->up)
        uv_run(loop, UV_RUN_ONCE);
    return 0;
}

void
bench_redis_close(bench_redis *b, uv_loop_t *loop)
{
    if (b->link != NULL) {
        tp__redis_free(b->link);
        b->link = NULL;
        uv_run(loop, UV_RUN_DEFAULT);
    }
    if (b->rd.pid > 0) {
        tpt_redisd_stop(&b->rd);
        tpt_rm_rf(b->base);
    }
}

double
bench_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}
