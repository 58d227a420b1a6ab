/*
 * core_bench: the figures behind DESIGN.md's "Performance shape", measured
 * on the core alone (no sockets): a transport's work is simulated by
 * draining every ready connection's outbox after each write, the way the
 * server does at the end of a loop iteration.
 *
 *   (a) fan-out: one write to a shared lww-map model with S subscribers
 *       (S = 1, 100, 10000), the time of tp_conn_feed (routing) and of the
 *       drain, and the routing cost of each delivery beyond the first;
 *   (b) allocations per write at each S (must not grow with S);
 *   (c) a write to a ~1 KB model: lww-map, lww, and a private model;
 *   (d) isolation: a write in a hub with one tenant against the same write
 *       in a hub with 100 000 other tenants and 10 000 other shared models.
 *
 * Every figure is the median of several runs; each run times many writes
 * with clock_gettime(CLOCK_MONOTONIC). The hub's clock is a fake one and the
 * write rate limit is raised, so rate limiting never interferes. A counting
 * allocator is installed for the whole run (one extra call per allocation).
 *
 * Usage: core_bench [--quick] [--runs N] [--only SECTIONS] [--json FILE]
 * See bench/README.md for how to read the output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "transports.h"
#include "util/map.h"

/* ---- Options ---- */

static int quick;
static int runs = 5;
static const char *only = "abcdm"; /* --only: the sections to run (b comes with a) */

/* ---- A counting allocator ---- */

static uint64_t n_malloc, n_realloc, n_free;

static void *
count_malloc(size_t n)
{
    n_malloc++;
    return malloc(n);
}

static void *
count_realloc(void *p, size_t n)
{
    n_realloc++;
    return realloc(p, n);
}

static void
count_free(void *p)
{
    n_free += p != NULL;
    free(p);
}

static uint64_t
allocs(void)
{
    return n_malloc + n_realloc;
}

/* ---- Time ---- */

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The hub's clock: fixed, so the token bucket never refills and the HLC
 * only counts; the rate limit is set high enough never to bite. */
static int64_t fake_ms = 1700000000000;

static int64_t
fake_clock(void *user)
{
    return *(int64_t *)user;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- Setup helpers ---- */

static void
die(const char *what, const tp_error *err)
{
    fprintf(stderr, "core_bench: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

static tp_hub *
hub_new(void)
{
    tp_hub_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.clock = fake_clock;
    cfg.clock_user = &fake_ms;
    cfg.limits.writes_per_second = 2000000000u;
    tp_error err;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    if (hub == NULL)
        die("tp_hub_new", &err);
    return hub;
}

static tp_schema *
schema_new(const char *text)
{
    tp_error err;
    tp_schema *s = tp_schema_new(text, &err);
    if (s == NULL)
        die("tp_schema_new", &err);
    return s;
}

static tp_conn *
conn_open(tp_hub *hub, const char *tenant)
{
    tp_error err;
    tp_conn *c = tp_conn_open(hub, tenant, 0, &err);
    if (c == NULL)
        die("tp_conn_open", &err);
    return c;
}

/* Takes every frame from every ready connection, as a transport does at the
 * end of a loop iteration. Returns the number of frames. */
static size_t
drain(tp_hub *hub, size_t *bytes)
{
    size_t frames = 0, len = 0;
    tp_conn *c;
    while ((c = tp_hub_next_ready(hub)) != NULL) {
        while (tp_conn_next_frame(c, &len) != NULL) {
            frames++;
            *bytes += len;
        }
    }
    return frames;
}

/*
 * Feeds one write and checks what came out: the writer's frames carry an
 * ack and no error, and `frames` frames left in all. A benchmark of writes
 * that fail would measure the wrong thing, so this stops the run.
 */
static void
check_write(tp_hub *hub, tp_conn *writer, const char *msg, size_t want_frames, const char *what)
{
    if (tp_conn_feed(writer, msg, strlen(msg)) != TP_OK) {
        fprintf(stderr, "core_bench: %s: the writer's connection was closed\n", what);
        exit(1);
    }
    size_t frames = 0, len;
    int acked = 0;
    tp_conn *c;
    while ((c = tp_hub_next_ready(hub)) != NULL) {
        const char *f;
        while ((f = tp_conn_next_frame(c, &len)) != NULL) {
            frames++;
            if (c == writer && strstr(f, "\"type\":\"error\"") != NULL) {
                fprintf(stderr, "core_bench: %s: the write was refused: %.*s\n", what, (int)len, f);
                exit(1);
            }
            if (c == writer && strstr(f, "\"type\":\"ack\"") != NULL)
                acked = 1;
        }
    }
    if (!acked || frames != want_frames) {
        fprintf(stderr, "core_bench: %s: %zu frames (want %zu), ack %s\n", what, frames,
                want_frames, acked ? "seen" : "missing");
        exit(1);
    }
}

/* ---- (a) and (b): fan-out ---- */

static const char *DOC_SCHEMA =
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"},"
    "\"title\":{\"type\":\"string\"}}}";

typedef struct fanout_result {
    size_t s;
    int writes;
    double feed_ns;  /* per write */
    double drain_ns; /* per write */
    double msgs;     /* messages delivered per write (patches and the ack) */
    double allocs;   /* allocator calls (malloc + realloc) per write, feed and drain */
    double frees;
    double setup_s;
} fanout_result;

static void
fanout(size_t s, int writes, fanout_result *r)
{
    int64_t t_setup = now_ns();
    tp_hub *hub = hub_new();
    tp_schema *schema = schema_new(DOC_SCHEMA);
    tp_error err;
    if (tp_hub_share_as(hub, "doc", schema, "{\"title\":\"Doc\",\"n\":0}", &tp_lww_map_crdt,
                        &err) == NULL)
        die("tp_hub_share_as", &err);
    tp_conn **subs = malloc(s * sizeof *subs);
    char tenant[32];
    for (size_t i = 0; i < s; i++) {
        snprintf(tenant, sizeof tenant, "t%zu", i);
        if (tp_hub_subscribe(hub, tenant, "doc", TP_READ) != TP_OK)
            die("tp_hub_subscribe", NULL);
        subs[i] = conn_open(hub, tenant);
    }
    if (tp_hub_subscribe(hub, "writer", "doc", TP_WRITE) != TP_OK)
        die("tp_hub_subscribe", NULL);
    tp_conn *w = conn_open(hub, "writer");
    size_t bytes = 0;
    drain(hub, &bytes); /* hello, snapshots, synced */

    char msg[160];
    long ref = 1;
    /* One checked write: a patch to every subscriber, and to the writer its
     * patch and ack (one batch frame). */
    snprintf(msg, sizeof msg,
             "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"doc\",\"ref\":%ld,"
             "\"patch\":{\"n\":%ld}}",
             ref, ref);
    check_write(hub, w, msg, s + 1, "fan-out");
    ref++;
    r->setup_s = (double)(now_ns() - t_setup) / 1e9;

    double feed[64], drn[64], al[64], fr[64];
    for (int run = -1; run < runs; run++) { /* run -1 warms up */
        int64_t t_feed = 0, t_drain = 0;
        uint64_t a0 = allocs(), f0 = n_free;
        for (int i = 0; i < writes; i++, ref++) {
            int n = snprintf(msg, sizeof msg,
                             "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"doc\",\"ref\":%ld,"
                             "\"patch\":{\"n\":%ld}}",
                             ref, ref);
            int64_t t0 = now_ns();
            tp_conn_feed(w, msg, (size_t)n);
            int64_t t1 = now_ns();
            drain(hub, &bytes);
            int64_t t2 = now_ns();
            t_feed += t1 - t0;
            t_drain += t2 - t1;
        }
        if (run < 0)
            continue;
        feed[run] = (double)t_feed / writes;
        drn[run] = (double)t_drain / writes;
        /* snprintf does not allocate through the library's allocator. */
        al[run] = (double)(allocs() - a0) / writes;
        fr[run] = (double)(n_free - f0) / writes;
    }
    r->s = s;
    r->writes = writes;
    r->feed_ns = median(feed, runs);
    r->drain_ns = median(drn, runs);
    r->allocs = median(al, runs);
    r->frees = median(fr, runs);
    r->msgs = (double)s + 2;

    for (size_t i = 0; i < s; i++)
        tp_conn_close(subs[i]);
    tp_conn_close(w);
    free(subs);
    tp_schema_free(schema);
    tp_hub_free(hub);
}

/* ---- (c): a 1 KB document ---- */

#define FIELDS 20
#define STR_LEN 70

/* Fields f00..f09 are strings, f10..f19 integers. */
static char *
big_schema(void)
{
    static char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf,
                                "{\"title\":\"Big\",\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < FIELDS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"f%02d\":{\"type\":\"%s\"}",
                              i ? "," : "", i, i < FIELDS / 2 ? "string" : "integer");
    snprintf(buf + n, sizeof buf - n, "}}");
    return buf;
}

static void
str_value(char *out, long k)
{
    /* STR_LEN characters that differ with k. */
    int n = snprintf(out, STR_LEN + 1, "value-%ld-", k);
    for (int i = n; i < STR_LEN; i++)
        out[i] = (char)('a' + (i + k) % 26);
    out[STR_LEN] = '\0';
}

static char *
big_value(void)
{
    static char buf[4096];
    size_t n = 1;
    buf[0] = '{';
    char s[STR_LEN + 1];
    for (int i = 0; i < FIELDS; i++) {
        if (i < FIELDS / 2) {
            str_value(s, i);
            n +=
                (size_t)snprintf(buf + n, sizeof buf - n, "%s\"f%02d\":\"%s\"", i ? "," : "", i, s);
        } else {
            n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"f%02d\":%d", i, 1000000 + i);
        }
    }
    snprintf(buf + n, sizeof buf - n, "}");
    return buf;
}

static uint64_t
rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int
big_write(char *msg, size_t cap, int shared, long ref, uint64_t *seed)
{
    int f = (int)(rnd(seed) % FIELDS);
    char s[STR_LEN + 1];
    if (f < FIELDS / 2) {
        str_value(s, ref);
        return snprintf(msg, cap,
                        "{\"type\":\"write\",\"scope\":\"%s\",\"id\":\"big\",\"ref\":%ld,"
                        "\"patch\":{\"f%02d\":\"%s\"}}",
                        shared ? "shared" : "private", ref, f, s);
    }
    return snprintf(msg, cap,
                    "{\"type\":\"write\",\"scope\":\"%s\",\"id\":\"big\",\"ref\":%ld,"
                    "\"patch\":{\"f%02d\":%ld}}",
                    shared ? "shared" : "private", ref, f, ref);
}

typedef struct doc_result {
    const char *name;
    size_t value_bytes;
    double write_us; /* feed + drain */
    double feed_us;
    double allocs;
} doc_result;

/* kind: 0 lww-map shared, 1 lww shared, 2 private. */
static void
doc1k(int kind, int writes, doc_result *r)
{
    static const char *names[] = {"shared, lww-map", "shared, lww", "private (lww)"};
    tp_hub *hub = hub_new();
    tp_schema *schema = schema_new(big_schema());
    tp_error err;
    int shared = kind != 2;
    if (shared) {
        if (tp_hub_share_as(hub, "big", schema, big_value(),
                            kind == 0 ? &tp_lww_map_crdt : &tp_last_write_wins, &err) == NULL)
            die("tp_hub_share_as", &err);
        if (tp_hub_subscribe(hub, "writer", "big", TP_WRITE) != TP_OK)
            die("tp_hub_subscribe", NULL);
    } else if (tp_session_host_as(tp_hub_tenant(hub, "writer"), "big", schema, big_value(), &err) ==
               NULL) {
        die("tp_session_host_as", &err);
    }
    tp_conn *w = conn_open(hub, "writer");
    size_t bytes = 0;
    drain(hub, &bytes);
    char *v = shared ? tp_hub_get_shared(hub, "big")
                     : tp_session_get(tp_hub_tenant(hub, "writer"), "big");
    r->value_bytes = v ? strlen(v) : 0;
    tp_free(v);

    char msg[512];
    long ref = 1;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    big_write(msg, sizeof msg, shared, ref++, &seed);
    check_write(hub, w, msg, 1, names[kind]);

    double tot[64], fd[64], al[64];
    for (int run = -1; run < runs; run++) {
        int64_t t_feed = 0, t_all = 0;
        uint64_t a0 = allocs();
        for (int i = 0; i < writes; i++) {
            int n = big_write(msg, sizeof msg, shared, ref++, &seed);
            int64_t t0 = now_ns();
            tp_conn_feed(w, msg, (size_t)n);
            int64_t t1 = now_ns();
            drain(hub, &bytes);
            int64_t t2 = now_ns();
            t_feed += t1 - t0;
            t_all += t2 - t0;
        }
        if (run < 0)
            continue;
        tot[run] = (double)t_all / writes / 1000;
        fd[run] = (double)t_feed / writes / 1000;
        al[run] = (double)(allocs() - a0) / writes;
    }
    r->name = names[kind];
    r->write_us = median(tot, runs);
    r->feed_us = median(fd, runs);
    r->allocs = median(al, runs);
    tp_conn_close(w);
    tp_schema_free(schema);
    tp_hub_free(hub);
}

/* ---- (d): isolation from tenants and models a write does not touch ---- */

typedef struct world {
    tp_hub *hub;
    tp_schema *schema;
    tp_conn *writer;
    tp_conn **others;
    size_t n_others;
    long ref;
    double setup_s;
} world;

/*
 * The writer's tenant hosts private model "doc" and writes shared model
 * "mine" (no other subscriber). Around it: `tenants` other tenants with one
 * private model each, `shared` other shared models each subscribed by ten
 * of those tenants, and a connection for one tenant in ten.
 */
static void
world_new(world *wd, size_t tenants, size_t shared)
{
    int64_t t0 = now_ns();
    memset(wd, 0, sizeof *wd);
    wd->hub = hub_new();
    wd->schema = schema_new(DOC_SCHEMA);
    tp_error err;
    char key[32], sid[32];
    for (size_t i = 0; i < shared; i++) {
        snprintf(sid, sizeof sid, "other%zu", i);
        if (tp_hub_share_as(wd->hub, sid, wd->schema, "{\"title\":\"Other\",\"n\":1}",
                            i % 2 ? &tp_lww_map_crdt : NULL, &err) == NULL)
            die("tp_hub_share_as", &err);
    }
    wd->others = malloc((tenants / 10 + 1) * sizeof *wd->others);
    for (size_t i = 0; i < tenants; i++) {
        snprintf(key, sizeof key, "tenant%zu", i);
        tp_session *s = tp_hub_tenant(wd->hub, key);
        if (s == NULL ||
            tp_session_host_as(s, "doc", wd->schema, "{\"title\":\"T\",\"n\":1}", &err) == NULL)
            die("tp_session_host_as", &err);
        if (shared > 0) {
            snprintf(sid, sizeof sid, "other%zu", i % shared);
            if (tp_hub_subscribe(wd->hub, key, sid, i % 3 ? TP_READ : TP_WRITE) != TP_OK)
                die("tp_hub_subscribe", NULL);
        }
        if (i % 10 == 0)
            wd->others[wd->n_others++] = conn_open(wd->hub, key);
    }
    tp_session *s = tp_hub_tenant(wd->hub, "writer");
    if (tp_session_host_as(s, "doc", wd->schema, "{\"title\":\"W\",\"n\":0}", &err) == NULL)
        die("tp_session_host_as", &err);
    if (tp_hub_share_as(wd->hub, "mine", wd->schema, "{\"title\":\"Mine\",\"n\":0}",
                        &tp_lww_map_crdt, &err) == NULL)
        die("tp_hub_share_as", &err);
    if (tp_hub_subscribe(wd->hub, "writer", "mine", TP_WRITE) != TP_OK)
        die("tp_hub_subscribe", NULL);
    wd->writer = conn_open(wd->hub, "writer");
    size_t bytes = 0;
    drain(wd->hub, &bytes);
    wd->ref = 1;
    char msg[160];
    snprintf(msg, sizeof msg,
             "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"doc\",\"ref\":%ld,"
             "\"patch\":{\"n\":%ld}}",
             wd->ref, wd->ref);
    check_write(wd->hub, wd->writer, msg, 1, "isolation, private");
    wd->ref++;
    snprintf(msg, sizeof msg,
             "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"mine\",\"ref\":%ld,"
             "\"patch\":{\"n\":%ld}}",
             wd->ref, wd->ref);
    check_write(wd->hub, wd->writer, msg, 1, "isolation, shared");
    wd->ref++;
    wd->setup_s = (double)(now_ns() - t0) / 1e9;
}

static void
world_free(world *wd)
{
    for (size_t i = 0; i < wd->n_others; i++)
        tp_conn_close(wd->others[i]);
    free(wd->others);
    tp_conn_close(wd->writer);
    tp_schema_free(wd->schema);
    tp_hub_free(wd->hub);
}

/* Mean ns of one write (feed and drain) over `writes` writes. */
static double
world_writes(world *wd, int shared, int writes)
{
    char msg[160];
    size_t bytes = 0;
    int64_t total = 0;
    for (int i = 0; i < writes; i++, wd->ref++) {
        int n = snprintf(msg, sizeof msg,
                         "{\"type\":\"write\",\"scope\":\"%s\",\"id\":\"%s\",\"ref\":%ld,"
                         "\"patch\":{\"n\":%ld}}",
                         shared ? "shared" : "private", shared ? "mine" : "doc", wd->ref, wd->ref);
        int64_t t0 = now_ns();
        tp_conn_feed(wd->writer, msg, (size_t)n);
        drain(wd->hub, &bytes);
        total += now_ns() - t0;
    }
    return (double)total / writes;
}

/* Mean ns of a sync tick: with nothing pending, or with one host write pending. */
static double
world_sync(world *wd, int dirty, int ticks)
{
    char value[96];
    size_t bytes = 0;
    int64_t total = 0;
    if (!dirty) {
        /* A few ns each: timed as a whole, or the clock reads would dominate. */
        int published = 0;
        int64_t t0 = now_ns();
        for (int i = 0; i < ticks; i++)
            published += tp_hub_sync(wd->hub);
        total = now_ns() - t0;
        if (published != 0)
            die("tp_hub_sync published a model that had nothing pending", NULL);
        return (double)total / ticks;
    }
    for (int i = 0; i < ticks; i++) {
        if (dirty) {
            snprintf(value, sizeof value, "{\"title\":\"Mine\",\"n\":%ld}", wd->ref++);
            if (tp_hub_set_shared(wd->hub, "mine", value, NULL) != TP_OK)
                die("tp_hub_set_shared", NULL);
        }
        int64_t t0 = now_ns();
        int published = tp_hub_sync(wd->hub);
        total += now_ns() - t0;
        if (published != dirty)
            die("tp_hub_sync published the wrong number of models", NULL);
        drain(wd->hub, &bytes);
    }
    return (double)total / ticks;
}

typedef struct iso_result {
    const char *name;
    double small, big; /* ns */
} iso_result;

/* Runs alternate between the two hubs, so drift (frequency, other load)
 * hits both alike. */
static void
isolation(world *a, world *b, int what, int n, iso_result *r)
{
    static const char *names[] = {"private write", "shared write", "sync, nothing pending",
                                  "sync, one model pending"};
    double va[64], vb[64];
    for (int run = -1; run < runs; run++) {
        double x, y;
        switch (what) {
        case 0:
        case 1:
            x = world_writes(a, what, n);
            y = world_writes(b, what, n);
            break;
        default:
            x = world_sync(a, what - 2, n);
            y = world_sync(b, what - 2, n);
            break;
        }
        if (run >= 0) {
            va[run] = x;
            vb[run] = y;
        }
    }
    r->name = names[what];
    r->small = median(va, runs);
    r->big = median(vb, runs);
}

/* ---- Reference: jansson alone ---- */

typedef struct parse_result {
    const char *name;
    size_t bytes;
    double parse_ns; /* json_loadb + json_decref, as tp_conn_feed parses a message */
    double allocs;
} parse_result;

/* The floor under every write: tp_conn_feed parses the message with jansson
 * before anything else; this is that parse alone, on texts like the ones a
 * section writes (cycled through). */
static void
parse_ref(const char *name, char **texts, int ntexts, int n, parse_result *r)
{
    double t[64], al[64];
    size_t bytes = 0;
    size_t *lens = malloc((size_t)ntexts * sizeof *lens);
    for (int i = 0; i < ntexts; i++)
        bytes += lens[i] = strlen(texts[i]);
    for (int run = -1; run < runs; run++) {
        uint64_t a0 = allocs();
        int64_t t0 = now_ns();
        for (int i = 0; i < n; i++) {
            json_error_t jerr;
            int k = i % ntexts;
            json_t *v =
                json_loadb(texts[k], lens[k], JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
            if (v == NULL)
                die("json_loadb", NULL);
            json_decref(v);
        }
        int64_t t1 = now_ns();
        if (run >= 0) {
            t[run] = (double)(t1 - t0) / n;
            al[run] = (double)(allocs() - a0) / n;
        }
    }
    free(lens);
    r->name = name;
    r->bytes = bytes / (size_t)ntexts;
    r->parse_ns = median(t, runs);
    r->allocs = median(al, runs);
}

/* ---- The map (util/map.c) ---- */

/* Mean ns of a get of a present key, and of an absent one, in a map of n
 * keys like the core's (tenant keys, field names: 2 to 12 bytes). The hash
 * is most of it for short keys. */
static void
map_cost(size_t n, double *hit_ns, double *miss_ns)
{
    char(*keys)[32] = malloc(n * sizeof *keys);
    char(*miss)[32] = malloc(n * sizeof *miss);
    tp__map m;
    tp__map_init(&m, 0x1234);
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "tenant%zu", i);
        snprintf(miss[i], sizeof miss[i], "other%zu", i);
        if (tp__map_put(&m, keys[i], keys[i]) != 0)
            die("tp__map_put", NULL);
    }
    double h[64], mi[64];
    const int gets = quick ? 400000 : 2000000;
    for (int run = -1; run < runs; run++) {
        size_t found = 0;
        int64_t t0 = now_ns();
        for (int i = 0; i < gets; i++)
            found += tp__map_get(&m, keys[(size_t)i % n]) != NULL;
        int64_t t1 = now_ns();
        for (int i = 0; i < gets; i++)
            found += tp__map_get(&m, miss[(size_t)i % n]) != NULL;
        int64_t t2 = now_ns();
        if (found != (size_t)gets)
            die("tp__map_get", NULL);
        if (run >= 0) {
            h[run] = (double)(t1 - t0) / gets;
            mi[run] = (double)(t2 - t1) / gets;
        }
    }
    *hit_ns = median(h, runs);
    *miss_ns = median(mi, runs);
    tp__map_free(&m);
    free(keys);
    free(miss);
}

/* ---- Main ---- */

static void
usage(void)
{
    fprintf(stderr, "usage: core_bench [--quick] [--runs N] [--only abcdm] [--json FILE]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json_path = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else
            usage();
    }
    if (runs < 1 || runs > 64)
        usage();
    int do_a = strpbrk(only, "ab") != NULL, do_c = strchr(only, 'c') != NULL,
        do_d = strchr(only, 'd') != NULL;

    static const tp_allocator counting = {count_malloc, count_realloc, count_free};
    tp_set_allocator(&counting);
    json_set_alloc_funcs(count_malloc, count_free); /* jansson's: the host's to set */

    int64_t t_start = now_ns();
    int scale = quick ? 5 : 1;
    printf("transports core_bench %s: median of %d runs%s; times from CLOCK_MONOTONIC\n",
           tp_version(), runs, quick ? " (--quick: fewer writes and tenants)" : "");

    /* Reference: the parse every write starts with, on the same kind of texts. */
    parse_result pr[2];
    if (do_a || do_c) {
        enum { NT = 256 };
        static char texts[2][NT][512];
        char *ptr[2][NT];
        uint64_t seed = 0x9e3779b97f4a7c15ULL;
        for (int i = 0; i < NT; i++) {
            snprintf(texts[0][i], sizeof texts[0][i],
                     "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"doc\",\"ref\":%d,"
                     "\"patch\":{\"n\":%d}}",
                     1000 + i, 1000 + i);
            big_write(texts[1][i], sizeof texts[1][i], 1, 1000 + i, &seed);
            ptr[0][i] = texts[0][i];
            ptr[1][i] = texts[1][i];
        }
        parse_ref("(a) write message", ptr[0], NT, 100000 / scale, &pr[0]);
        parse_ref("(c) write message", ptr[1], NT, 100000 / scale, &pr[1]);
    }

    /* (a), (b) */
    static const size_t sizes[] = {1, 100, 10000};
    static const int writes_for[] = {20000, 5000, 200};
    fanout_result fo[3];
    double per_delivery[3] = {0, 0, 0};
    if (do_a) {
        for (int i = 0; i < 3; i++)
            fanout(sizes[i], writes_for[i] / scale, &fo[i]);
        printf("\n(a) fan-out: one write to a shared lww-map model, S subscriber tenants with one "
               "connection each, plus the writer\n");
        printf("%8s %8s %12s %12s %10s %14s %12s %12s\n", "S", "writes", "feed ns/wr",
               "drain ns/wr", "msgs/wr", "drain ns/msg", "allocs/wr", "frees/wr");
        for (int i = 0; i < 3; i++)
            printf("%8zu %8d %12.0f %12.0f %10.0f %14.1f %12.1f %12.1f\n", fo[i].s, fo[i].writes,
                   fo[i].feed_ns, fo[i].drain_ns, fo[i].msgs, fo[i].drain_ns / fo[i].msgs,
                   fo[i].allocs, fo[i].frees);
        for (int i = 1; i < 3; i++) {
            per_delivery[i] = (fo[i].feed_ns - fo[0].feed_ns) / (double)(fo[i].s - 1);
            printf("    routing per delivery beyond the first encoding, S=%zu: %.1f ns  "
                   "(target < 100 ns: %s)\n",
                   fo[i].s, per_delivery[i], per_delivery[i] < 100 ? "ok" : "MISSED");
        }
        printf("    S=1 feed without jansson's parse of the message (ref below): %.0f ns\n",
               fo[0].feed_ns - pr[0].parse_ns);
        printf("    (feed = tp_conn_feed: parse, merge, validate, encode once, push per "
               "recipient;\n     drain = tp_hub_next_ready + tp_conn_next_frame until empty)\n");

        int flat = fo[2].allocs <= fo[0].allocs + 1.0;
        printf("\n(b) allocations per write (malloc + realloc, feed and drain): S=1 %.1f, S=100 "
               "%.1f, S=10000 %.1f  (must not grow with S: %s)\n",
               fo[0].allocs, fo[1].allocs, fo[2].allocs, flat ? "ok" : "GROWS");
    }

    /* (c) */
    int big_writes = 20000 / scale;
    doc_result dr[3];
    if (do_c) {
        for (int k = 0; k < 3; k++)
            doc1k(k, big_writes, &dr[k]);
        printf("\n(c) a write setting one random field of a %zu-byte model (%d fields), one "
               "writer connection, %d writes a run\n",
               dr[0].value_bytes, FIELDS, big_writes);
        printf("%-18s %10s %10s %18s %10s\n", "model", "us/write", "feed us", "feed - parse us",
               "allocs/wr");
        for (int k = 0; k < 3; k++)
            printf("%-18s %10.2f %10.2f %18.2f %10.1f%s\n", dr[k].name, dr[k].write_us,
                   dr[k].feed_us, dr[k].feed_us - pr[1].parse_ns / 1000, dr[k].allocs,
                   k != 0               ? ""
                   : dr[k].write_us < 5 ? "   (target < 5 us: ok)"
                                        : "   (target < 5 us: MISSED)");
    }

    if (do_a || do_c) {
        printf("\n(ref) jansson alone: json_loadb + json_decref of the same write messages, as "
               "tp_conn_feed does first\n");
        printf("%-20s %10s %12s %12s\n", "message", "avg bytes", "parse ns", "allocs");
        for (int i = 0; i < 2; i++)
            printf("%-20s %10zu %12.0f %12.1f\n", pr[i].name, pr[i].bytes, pr[i].parse_ns,
                   pr[i].allocs);
    }

    /* (d) */
    size_t tenants = quick ? 20000 : 100000, shared = quick ? 2000 : 10000;
    iso_result ir[4];
    if (do_d) {
        world small, big;
        world_new(&small, 0, 0);
        world_new(&big, tenants, shared);
        int iso_writes = 20000 / scale;
        isolation(&small, &big, 0, iso_writes, &ir[0]);
        isolation(&small, &big, 1, iso_writes, &ir[1]);
        isolation(&small, &big, 2, iso_writes * 5, &ir[2]);
        isolation(&small, &big, 3, iso_writes / 4, &ir[3]);
        printf("\n(d) isolation: the writer's tenant alone, against %zu other tenants (one "
               "private model each, one connection per ten) and %zu other shared models (built "
               "in %.1f s)\n",
               tenants, shared, big.setup_s);
        printf("%-26s %14s %14s %8s\n", "", "alone ns", "crowded ns", "ratio");
        for (int i = 0; i < 4; i++)
            printf("%-26s %14.0f %14.0f %8.2f\n", ir[i].name, ir[i].small, ir[i].big,
                   ir[i].big / ir[i].small);
        world_free(&big);
        world_free(&small);
    }

    if (strchr(only, 'm') != NULL) {
        printf("\n(m) the map: ns per get of a key of 7 to 11 bytes\n");
        printf("%10s %12s %12s\n", "keys", "hit ns", "miss ns");
        static const size_t ns[] = {100, 10000, 1000000};
        for (int i = 0; i < 3; i++) {
            double hit, miss;
            map_cost(ns[i], &hit, &miss);
            printf("%10zu %12.1f %12.1f\n", ns[i], hit, miss);
        }
    }

    double total_s = (double)(now_ns() - t_start) / 1e9;
    printf("\ntotal %.1f s\n", total_s);

    if (json_path != NULL) {
        FILE *f = fopen(json_path, "w");
        if (f == NULL) {
            perror(json_path);
            return 1;
        }
        fprintf(f, "{\"version\":\"%s\",\"runs\":%d,\"quick\":%s", tp_version(), runs,
                quick ? "true" : "false");
        if (do_a) {
            fprintf(f, ",\"fanout\":[");
            for (int i = 0; i < 3; i++)
                fprintf(f,
                        "%s{\"subscribers\":%zu,\"writes\":%d,\"feed_ns\":%.1f,\"drain_ns\":%.1f,"
                        "\"messages\":%.0f,\"drain_ns_per_message\":%.2f,"
                        "\"route_ns_per_extra_delivery\":%.2f,\"allocs\":%.2f,\"frees\":%.2f}",
                        i ? "," : "", fo[i].s, fo[i].writes, fo[i].feed_ns, fo[i].drain_ns,
                        fo[i].msgs, fo[i].drain_ns / fo[i].msgs, per_delivery[i], fo[i].allocs,
                        fo[i].frees);
            fprintf(f, "]");
        }
        if (do_c) {
            fprintf(f, ",\"doc1k\":[");
            for (int k = 0; k < 3; k++)
                fprintf(f,
                        "%s{\"model\":\"%s\",\"value_bytes\":%zu,\"write_us\":%.3f,"
                        "\"feed_us\":%.3f,\"allocs\":%.2f}",
                        k ? "," : "", dr[k].name, dr[k].value_bytes, dr[k].write_us, dr[k].feed_us,
                        dr[k].allocs);
            fprintf(f, "]");
        }
        if (do_a || do_c) {
            fprintf(f, ",\"parse_reference\":[");
            for (int i = 0; i < 2; i++)
                fprintf(f, "%s{\"message\":\"%s\",\"bytes\":%zu,\"parse_ns\":%.1f,\"allocs\":%.2f}",
                        i ? "," : "", pr[i].name, pr[i].bytes, pr[i].parse_ns, pr[i].allocs);
            fprintf(f, "]");
        }
        if (do_d) {
            fprintf(f, ",\"isolation\":{\"tenants\":%zu,\"shared\":%zu,\"cases\":[", tenants,
                    shared);
            for (int i = 0; i < 4; i++)
                fprintf(f,
                        "%s{\"case\":\"%s\",\"alone_ns\":%.1f,\"crowded_ns\":%.1f,"
                        "\"ratio\":%.3f}",
                        i ? "," : "", ir[i].name, ir[i].small, ir[i].big, ir[i].big / ir[i].small);
            fprintf(f, "]}");
        }
        fprintf(f, ",\"total_s\":%.2f}\n", total_s);
        fclose(f);
    }
    tp_set_allocator(NULL);
    return 0;
}
