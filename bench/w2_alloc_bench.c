/*
 * w2_alloc_bench: what one W2 write costs the core, in allocations and in
 * time, without sockets (bench/README.md, W2: a private model {"a", "b"},
 * two connections of one tenant, each writing its own field; the other one
 * gets the patch). Public API only, so that the same file measures an older
 * commit too.
 *
 * The allocations counted are the library's (tp_set_allocator) and
 * jansson's (json_set_alloc_funcs), both installed here as a host program
 * would: per write, the feed of the write and the drain of the ack and the
 * patch.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "transports.h"

static uint64_t n_alloc;

static void *
count_malloc(size_t n)
{
    n_alloc++;
    return malloc(n);
}

static void *
count_realloc(void *p, size_t n)
{
    n_alloc++;
    return realloc(p, n);
}

static void
count_free(void *p)
{
    free(p);
}

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t fake_ms = 1700000000000;

static int64_t
fake_clock(void *user)
{
    return *(int64_t *)user;
}

static void
die(const char *what, const tp_error *err)
{
    fprintf(stderr, "w2_alloc_bench: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

/* Takes every frame; counts those that are not acks (the patches) and fails
 * on an error. */
static size_t
drain(tp_hub *hub)
{
    size_t len, patches = 0;
    tp_conn *c;
    const char *f;
    while ((c = tp_hub_next_ready(hub)) != NULL) {
        while ((f = tp_conn_next_frame(c, &len)) != NULL) {
            if (strstr(f, "\"type\":\"error\"") != NULL) {
                fprintf(stderr, "w2_alloc_bench: refused: %.*s\n", (int)len, f);
                exit(1);
            }
            patches += strstr(f, "\"type\":\"patch\"") != NULL;
        }
    }
    return patches;
}

int
main(int argc, char **argv)
{
    int writes = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 200000;
    if (writes < 10)
        writes = 10;
    static const tp_allocator counting = {count_malloc, count_realloc, count_free};
    tp_set_allocator(&counting);
    json_set_alloc_funcs(count_malloc, count_free);

    tp_hub_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.clock = fake_clock;
    cfg.clock_user = &fake_ms;
    cfg.limits.writes_per_second = 2000000000u;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    if (hub == NULL)
        die("tp_hub_new", &err);
    tp_schema *schema =
        tp_schema_new("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                      "\"b\":{\"type\":\"integer\"}}}",
                      &err);
    if (schema == NULL)
        die("tp_schema_new", &err);
    tp_session *s = tp_hub_tenant(hub, "t0");
    if (s == NULL || tp_session_host_as(s, "doc", schema, "{\"a\":0,\"b\":0}", &err) == NULL)
        die("tp_session_host_as", &err);
    tp_conn *c[2];
    for (int i = 0; i < 2; i++)
        if ((c[i] = tp_conn_open(hub, "t0", 0, &err)) == NULL)
            die("tp_conn_open", &err);
    drain(hub);

    char msg[160];
    int64_t ref[2] = {0, 0};
    uint64_t a0 = 0;
    int64_t t0 = 0;
    size_t patches = 0;
    int warm = writes / 10;
    for (int i = 0; i < warm + writes; i++) {
        if (i == warm) {
            a0 = n_alloc;
            t0 = now_ns();
            patches = 0;
        }
        int k = i & 1;
        /* The loadgen's message (bench/loadgen/loadgen.c, send_write). */
        int n = snprintf(msg, sizeof msg,
                         "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"doc\",\"ref\":%" PRId64
                         ",\"patch\":{\"%s\":%" PRId64 "}}",
                         ++ref[k], k ? "b" : "a", (int64_t)1700000000000000000 + i);
        if (tp_conn_feed(c[k], msg, (size_t)n) != TP_OK)
            die("tp_conn_feed", NULL);
        patches += drain(hub);
    }
    double ns = (double)(now_ns() - t0) / writes;
    if (patches != (size_t)writes)
        die("a write did not reach the other connection as a patch", NULL);
    printf("w2_alloc_bench %s: %d writes\n", tp_version(), writes);
    printf("allocations per W2 write: %.2f\n", (double)(n_alloc - a0) / writes);
    printf("ns per W2 write (feed + drain): %.0f\n", ns);
    tp_conn_close(c[0]);
    tp_conn_close(c[1]);
    tp_schema_free(schema);
    tp_hub_free(hub);
    return 0;
}
