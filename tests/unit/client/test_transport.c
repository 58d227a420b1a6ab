/*
 * The client on its own thread (tp_client_start: src/client/transport.c)
 * against the real server, in this process: a tp_hub served by tp_server on
 * a loopback port, its loop on a thread of its own. Replicas against the
 * hub's values and revs after concurrent writes from many clients, a write
 * the schema refuses, the server stopped and started again on the same hub
 * and port in the middle of a stream of writes, refused handshakes, a server
 * that is not there yet, and the token as a header and in the query.
 *
 * Every wait is on a condition with a generous timeout; no test asserts how
 * long anything took.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"
#include "transports.h"

#define DOCUMENT                                                                                   \
    "{\"title\":\"Document\",\"type\":\"object\",\"properties\":{"                                 \
    "\"title\":{\"type\":\"string\"},\"body\":{\"default\":\"\",\"type\":\"string\"}},"            \
    "\"required\":[\"title\"]}"
#define BOARD "{\"title\":\"Board\",\"type\":\"object\"}"

#define WAIT_MS 30000 /* generous: valgrind runs one of these tests */

static tp_hub *hub;
static tp_schema *doc, *board;
static tp_server *server;
static pthread_t loop;
static int port;
static unsigned per_tenant; /* the server's max_connections_per_tenant (0: default) */

/* ---- The server ---- */

/* What the key function saw last (it runs on the server's thread). */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static char seen_auth[128], seen_query[128], seen_x[128];
static atomic_int handshakes;

static void
copy_seen(char *dst, size_t n, const char *v)
{
    snprintf(dst, n, "%s", v ? v : "");
}

/* The tenant is the path's; a token "bad", as a header or in the query,
 * is refused (403). */
static const char *
key(const tp_request *req, void *user)
{
    (void)user;
    atomic_fetch_add(&handshakes, 1);
    const char *auth = tp_request_header(req, "Authorization");
    const char *query = tp_request_query(req, "token");
    pthread_mutex_lock(&seen_mu);
    copy_seen(seen_auth, sizeof seen_auth, auth);
    copy_seen(seen_query, sizeof seen_query, query);
    copy_seen(seen_x, sizeof seen_x, tp_request_header(req, "X-Test"));
    pthread_mutex_unlock(&seen_mu);
    if ((auth != NULL && strcmp(auth, "Bearer bad") == 0) ||
        (query != NULL && strcmp(query, "bad") == 0))
        return NULL;
    return tp_request_path_param(req, "tenant");
}

static void
setup(void)
{
    tp_error err;
    tp_hub_config cfg = {0};
    cfg.key = key;
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    doc = tp_schema_new(DOCUMENT, &err);
    cr_assert_not_null(doc, "%s", err.message);
    board = tp_schema_new(BOARD, &err);
    cr_assert_not_null(board, "%s", err.message);
    const char *tenants[] = {"alice", "bob"};
    for (int i = 0; i < 2; i++) {
        tp_session *s = tp_hub_tenant(hub, tenants[i]);
        cr_assert_not_null(tp_session_host_as(s, "notes", doc, "{\"title\":\"Notes\"}", &err), "%s",
                           err.message);
    }
    cr_assert_not_null(tp_hub_share_as(hub, "board", board, "{}", &tp_lww_map_crdt, &err), "%s",
                       err.message);
    cr_assert_not_null(
        tp_hub_share_as(hub, "title", doc, "{\"title\":\"Title\"}", &tp_last_write_wins, &err),
        "%s", err.message);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tp_hub_subscribe(hub, tenants[i], "board", TP_WRITE), TP_OK);
        cr_assert_eq(tp_hub_subscribe(hub, tenants[i], "title", TP_WRITE), TP_OK);
    }
    atomic_init(&handshakes, 0);
    port = 0;
    per_tenant = 0;
}

static void *
run_loop(void *arg)
{
    (void)arg;
    tp_server_run(server);
    return NULL;
}

/* Starts a server on the hub, on `at` (0: a free port, kept in `port`). */
static void
server_start(int at)
{
    tp_error err;
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", at);
    tp_server_config sc = {0};
    sc.listen = listen;
    sc.max_connections_per_tenant = per_tenant;
    server = tp_server_new(hub, &sc, &err);
    cr_assert_not_null(server, "%s", err.message);
    port = tp_server_port(server);
    cr_assert_eq(pthread_create(&loop, NULL, run_loop, NULL), 0);
}

/* Stops and frees the server; the hub keeps every model. */
static void
server_halt(void)
{
    if (server == NULL)
        return;
    tp_server_stop(server);
    pthread_join(loop, NULL);
    tp_server_free(server);
    server = NULL;
}

static void server_thaw(void);

static void
teardown(void)
{
    server_thaw(); /* a test that failed with the server's loop held */
    server_halt();
    tp_hub_free(hub);
    tp_schema_free(doc);
    tp_schema_free(board);
}

/* A model's value and rev as the hub holds it, read on the server's
 * thread while it runs. */
typedef struct hub_read {
    const char *scope, *tenant, *id;
    char *value;
    int64_t rev;
    int done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} hub_read;

static void
read_now(hub_read *r)
{
    if (strcmp(r->scope, "shared") == 0) {
        r->value = tp_hub_get_shared(hub, r->id);
        r->rev = tp_hub_shared_rev(hub, r->id);
    } else {
        tp_session *s = tp_hub_tenant(hub, r->tenant);
        r->value = tp_session_get(s, r->id);
        r->rev = tp_session_rev(s, r->id);
    }
}

static void
read_posted(void *arg)
{
    hub_read *r = arg;
    read_now(r);
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Returns the value (tp_free) and fills *rev. */
static char *
hub_get(const char *scope, const char *tenant, const char *id, int64_t *rev)
{
    hub_read r = {.scope = scope, .tenant = tenant, .id = id};
    if (server == NULL) {
        read_now(&r);
    } else {
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        cr_assert_eq(tp_server_post(server, read_posted, &r), TP_OK);
        pthread_mutex_lock(&r.mu);
        while (!r.done)
            pthread_cond_wait(&r.cv, &r.mu);
        pthread_mutex_unlock(&r.mu);
        pthread_mutex_destroy(&r.mu);
        pthread_cond_destroy(&r.cv);
    }
    cr_assert_not_null(r.value, "the hub has no %s/%s", scope, id);
    *rev = r.rev;
    return r.value;
}

/* ---- Clients ---- */

typedef struct tc {
    tp_client *c;
    const char *tenant;
    pthread_mutex_t mu;
    int errors, last_error;
    int64_t last_error_ref;
    int connecting, waiting, refused, live;
    char why[64];
} tc;

static void
on_error(void *user, int64_t ref, const char *scope, const char *id, int code, const char *message,
         const json_t *value)
{
    (void)scope, (void)id, (void)message, (void)value;
    tc *t = user;
    pthread_mutex_lock(&t->mu);
    t->errors++;
    t->last_error = code;
    t->last_error_ref = ref;
    pthread_mutex_unlock(&t->mu);
}

static void
on_state(void *user, tp_client_state state, const char *why)
{
    tc *t = user;
    pthread_mutex_lock(&t->mu);
    t->connecting += state == TP_CLIENT_CONNECTING;
    t->waiting += state == TP_CLIENT_WAITING;
    t->refused += state == TP_CLIENT_REFUSED;
    t->live += state == TP_CLIENT_LIVE;
    if (why != NULL)
        snprintf(t->why, sizeof t->why, "%s", why);
    pthread_mutex_unlock(&t->mu);
}

static int
tc_count(tc *t, int *field)
{
    pthread_mutex_lock(&t->mu);
    int n = *field;
    pthread_mutex_unlock(&t->mu);
    return n;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* TP_TEST_LOG=1 shows the clients' log lines. */
static void
log_line(int level, const char *line, void *user)
{
    (void)level, (void)user;
    fprintf(stderr, "%lld %s\n", (long long)now_ms() % 100000, line);
}

/* A started client of `tenant` at `path` (NULL: /ws/TENANT); o may be NULL. */
static tc *
tc_start(const char *tenant, const char *path, tp_client_options *o)
{
    tc *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    t->tenant = tenant;
    pthread_mutex_init(&t->mu, NULL);
    tp_client_options opt = {0};
    if (o != NULL)
        opt = *o;
    if (opt.backoff_min_ms == 0)
        opt.backoff_min_ms = 20;
    if (opt.backoff_max_ms == 0)
        opt.backoff_max_ms = 300;
    if (getenv("TP_TEST_LOG") != NULL) {
        opt.log = log_line;
        opt.log_level = TP_LOG_DEBUG;
    }
    opt.cb.error = on_error;
    opt.cb.state = on_state;
    opt.cb.user = t;
    char url[256];
    if (path != NULL)
        snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", port, path);
    else
        snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws/%s", port, tenant);
    tp_error err;
    t->c = tp_client_new(url, &opt, &err);
    cr_assert_not_null(t->c, "%s", err.message);
    cr_assert_eq(tp_client_start(t->c, &err), TP_OK, "%s", err.message);
    return t;
}

static void
tc_free(tc *t)
{
    if (t == NULL)
        return;
    tp_client_free(t->c);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Polls a condition every 5 ms for at most WAIT_MS. */
#define WAIT_FOR(cond, ...)                                                                        \
    do {                                                                                           \
        int64_t until_ = now_ms() + WAIT_MS;                                                       \
        while (!(cond) && now_ms() < until_)                                                       \
            sleep_ms(5);                                                                           \
        cr_assert((cond), __VA_ARGS__);                                                            \
    } while (0)

/* Whether the client's replica has the hub's rev and value. */
static int
replica_equal(tc *t, const char *scope, const char *id)
{
    int64_t crev = -1, hrev = -1;
    char *cv = tp_client_get(t->c, scope, id, &crev, NULL);
    char *hv = hub_get(scope, t->tenant, id, &hrev);
    int eq = cv != NULL && crev == hrev && tpt_json_text_eq(cv, hv);
    tp_free(cv);
    tp_free(hv);
    return eq;
}

static void
assert_replica(tc *t, const char *scope, const char *id)
{
    WAIT_FOR(replica_equal(t, scope, id), "%s/%s of a %s client never reached the hub's", scope, id,
             t->tenant);
}

static void
wait_ok(tc *t, int what)
{
    int rc = tp_client_wait(t->c, what, WAIT_MS);
    cr_assert_eq(rc, TP_OK, "tp_client_wait: %s (state %d)", tp_strerror(rc),
                 tp_client_get_state(t->c));
}

static void
write_ok(tc *t, const char *scope, const char *id, const char *patch)
{
    tp_error err;
    int64_t ref = tp_client_write(t->c, scope, id, patch, &err);
    cr_assert_gt(ref, 0, "write %s/%s %s: %s", scope, id, patch, err.message);
}

TestSuite(transport, .init = setup, .fini = teardown, .timeout = 120);

/* ---- Sync and writes ---- */

Test(transport, syncs_every_model_and_writes_reach_the_hub)
{
    server_start(0);
    tc *a = tc_start("alice", NULL, NULL);
    wait_ok(a, TP_CLIENT_WAIT_SYNCED);
    cr_assert_eq(tp_client_get_state(a->c), TP_CLIENT_LIVE);
    assert_replica(a, "private", "notes");
    assert_replica(a, "shared", "board");
    assert_replica(a, "shared", "title");

    write_ok(a, "private", "notes", "{\"body\":\"hello\"}");
    write_ok(a, "shared", "board", "{\"a\":1}");
    write_ok(a, "shared", "title", "{\"title\":\"T2\"}");
    wait_ok(a, TP_CLIENT_WAIT_IDLE);
    assert_replica(a, "private", "notes");
    assert_replica(a, "shared", "board");
    assert_replica(a, "shared", "title");
    int64_t rev;
    char *v = hub_get("private", "alice", "notes", &rev);
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"Notes\",\"body\":\"hello\"}"), "%s", v);
    tp_free(v);
    cr_assert_eq(tc_count(a, &a->errors), 0);
    tc_free(a);
}

/* ---- Many clients ---- */

#define CLIENTS 10
#define WRITES 30

typedef struct writer {
    tc *t;
    int n;
} writer;

static void *
write_many(void *arg)
{
    writer *w = arg;
    char p[96];
    for (int k = 0; k < WRITES; k++) {
        snprintf(p, sizeof p, "{\"c%dk%d\":%d}", w->n, k, k);
        write_ok(w->t, "shared", "board", p);
        snprintf(p, sizeof p, "{\"title\":\"c%d-%d\"}", w->n, k);
        write_ok(w->t, "shared", "title", p);
        snprintf(p, sizeof p, "{\"body\":\"c%d-%d\"}", w->n, k);
        write_ok(w->t, "private", "notes", p);
    }
    return NULL;
}

Test(transport, many_clients_writing_at_once_end_equal_to_the_hub)
{
    server_start(0);
    tc *t[CLIENTS];
    writer w[CLIENTS];
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        t[i] = tc_start(i % 2 ? "bob" : "alice", NULL, NULL);
    for (int i = 0; i < CLIENTS; i++)
        wait_ok(t[i], TP_CLIENT_WAIT_SYNCED);
    /* Writes from one thread per client, all at once. */
    for (int i = 0; i < CLIENTS; i++) {
        w[i] = (writer){t[i], i};
        cr_assert_eq(pthread_create(&th[i], NULL, write_many, &w[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < CLIENTS; i++)
        wait_ok(t[i], TP_CLIENT_WAIT_IDLE);
    /* Every replica gets to the hub's rev and value (others' patches may
     * still be on their way when a client's own writes are acked). */
    for (int i = 0; i < CLIENTS; i++) {
        assert_replica(t[i], "shared", "board");
        assert_replica(t[i], "shared", "title");
        assert_replica(t[i], "private", "notes");
        cr_assert_eq(tc_count(t[i], &t[i]->errors), 0);
    }
    /* Every field written to the lww-map is there. */
    int64_t rev;
    char *v = hub_get("shared", NULL, "board", &rev);
    json_t *j = json_loads(v, 0, NULL);
    cr_assert_eq(json_object_size(j), CLIENTS * WRITES, "%s", v);
    json_decref(j);
    tp_free(v);
    /* Each write to the lww model changed its title: one rev each. */
    v = hub_get("shared", NULL, "title", &rev);
    cr_assert_eq(rev, 1 + CLIENTS * WRITES);
    tp_free(v);
    for (int i = 0; i < CLIENTS; i++)
        tc_free(t[i]);
}

/* ---- A refused write ---- */

Test(transport, a_write_the_schema_refuses_is_rolled_back_and_reported)
{
    server_start(0);
    tc *a = tc_start("alice", NULL, NULL);
    wait_ok(a, TP_CLIENT_WAIT_SYNCED);
    tp_error err;
    int64_t ref = tp_client_write(a->c, "private", "notes", "{\"title\":3}", &err);
    cr_assert_gt(ref, 0, "%s", err.message);
    wait_ok(a, TP_CLIENT_WAIT_IDLE);
    WAIT_FOR(tc_count(a, &a->errors) == 1, "the error callback ran");
    cr_assert_eq(a->last_error, TP_EINVALID);
    cr_assert_eq(a->last_error_ref, ref);
    char *v = tp_client_get(a->c, "private", "notes", NULL, NULL);
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"Notes\",\"body\":\"\"}"), "%s", v);
    tp_free(v);
    assert_replica(a, "private", "notes");
    tc_free(a);
}

/* ---- The server restarted under a stream of writes ---- */

/*
 * A writer on alice's notes and one on the board (from bob), each write
 * adding one key and setting "last" to its number, so that a write applied
 * twice would change "last" back and cost a rev: the model ends at rev
 * 1 + N exactly when each was applied once. The server is stopped and a new
 * one started on the same hub and port `restarts` times in the stream;
 * writes made while it is away wait in the client and go when it is back.
 */
static void
restart_under_writes(int n, int restarts)
{
    server_start(0);
    int at = port;
    tc *a = tc_start("alice", NULL, NULL);
    tc *watcher = tc_start("alice", NULL, NULL);
    tc *b = tc_start("bob", NULL, NULL);
    wait_ok(a, TP_CLIENT_WAIT_SYNCED);
    wait_ok(watcher, TP_CLIENT_WAIT_SYNCED);
    wait_ok(b, TP_CLIENT_WAIT_SYNCED);
    char p[96];
    for (int k = 1; k <= n; k++) {
        snprintf(p, sizeof p, "{\"k%d\":%d,\"last\":%d}", k, k, k);
        write_ok(a, "private", "notes", p);
        snprintf(p, sizeof p, "{\"b%d\":%d,\"last\":%d}", k, k, k);
        write_ok(b, "shared", "board", p);
        int gap = n / (restarts + 1);
        if (k % gap == 0 && k / gap <= restarts) {
            /* Connected again since the last restart, with writes in
             * flight (some acked, some not) when the server goes. */
            wait_ok(a, TP_CLIENT_WAIT_SYNCED);
            wait_ok(b, TP_CLIENT_WAIT_SYNCED);
            server_halt();
        }
        if (k % gap == gap / 3 && k > gap && server == NULL)
            server_start(at); /* meanwhile, writes waited in the clients */
        if (k % 10 == 0)
            sleep_ms(2);
    }
    wait_ok(a, TP_CLIENT_WAIT_IDLE);
    wait_ok(b, TP_CLIENT_WAIT_IDLE);
    wait_ok(watcher, TP_CLIENT_WAIT_SYNCED);
    cr_assert_geq(tc_count(a, &a->waiting), restarts, "the client saw the server go each time");
    cr_assert_geq(tc_count(a, &a->live), 1 + restarts, "and came back live each time");
    cr_assert_eq(tc_count(a, &a->errors), 0);
    cr_assert_eq(tc_count(b, &b->errors), 0);

    const char *models[][2] = {{"private", "notes"}, {"shared", "board"}};
    const char prefix[] = {'k', 'b'};
    for (int m = 0; m < 2; m++) {
        int64_t rev;
        char *v = hub_get(models[m][0], "alice", models[m][1], &rev);
        cr_assert_eq(rev, 1 + n, "%s/%s: rev %lld: every write applied exactly once", models[m][0],
                     models[m][1], (long long)rev);
        json_t *j = json_loads(v, 0, NULL);
        cr_assert_not_null(j);
        cr_assert_eq(json_integer_value(json_object_get(j, "last")), n);
        for (int k = 1; k <= n; k++) {
            char key[16];
            snprintf(key, sizeof key, "%c%d", prefix[m], k);
            cr_assert_eq(json_integer_value(json_object_get(j, key)), k, "%s missing", key);
        }
        json_decref(j);
        tp_free(v);
    }
    assert_replica(a, "private", "notes");
    assert_replica(watcher, "private", "notes");
    assert_replica(b, "shared", "board");
    assert_replica(a, "shared", "board");
    assert_replica(watcher, "shared", "board");
    tc_free(a);
    tc_free(watcher);
    tc_free(b);
}

Test(transport, the_server_restarted_under_writes_every_ack_kept_once)
{
    restart_under_writes(150, 2);
}

#ifdef TP_STRESS
/* Long stress, not in make test: `make test-client-stress` builds this file
 * with TP_STRESS. Five in-process server restarts under 1500 writes a
 * writer: heavy on lws 4.1.6's libuv teardown, which has shown aborts of its
 * own under load (docs/internals/server.md). */
Test(transport, long_running_restarts, .timeout = 600)
{
    restart_under_writes(1500, 5);
}
#endif

/* ---- Connections cut by the test ---- */

/*
 * A TCP relay between the clients and the server, so that the test can cut
 * connections the way a network does: both sockets reset (SO_LINGER 0),
 * no close frame. It keeps listening: the clients reconnect through it.
 */
typedef struct relay {
    int lfd, port;
    pthread_t th;
    atomic_int stop, cut, cuts;
    int pair[32][2];
    int n;
} relay;

static void
reset_close(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void *
relay_run(void *arg)
{
    relay *r = arg;
    char buf[65536];
    while (!atomic_load(&r->stop)) {
        if (atomic_exchange(&r->cut, 0)) {
            for (int i = 0; i < r->n; i++) {
                reset_close(r->pair[i][0]);
                reset_close(r->pair[i][1]);
            }
            atomic_fetch_add(&r->cuts, r->n);
            r->n = 0;
        }
        struct pollfd p[65];
        p[0] = (struct pollfd){r->lfd, POLLIN, 0};
        for (int i = 0; i < r->n; i++) {
            p[1 + 2 * i] = (struct pollfd){r->pair[i][0], POLLIN, 0};
            p[2 + 2 * i] = (struct pollfd){r->pair[i][1], POLLIN, 0};
        }
        if (poll(p, (nfds_t)(1 + 2 * r->n), 10) <= 0)
            continue;
        if ((p[0].revents & POLLIN) && r->n < 32) {
            int cfd = accept(r->lfd, NULL, NULL);
            int sfd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (cfd >= 0 && sfd >= 0 && connect(sfd, (struct sockaddr *)&a, sizeof a) == 0) {
                r->pair[r->n][0] = cfd;
                r->pair[r->n][1] = sfd;
                r->n++;
            } else {
                if (cfd >= 0)
                    close(cfd);
                if (sfd >= 0)
                    close(sfd);
            }
            continue; /* p[] no longer matches the pairs */
        }
        for (int i = r->n - 1; i >= 0; i--) {
            for (int side = 0; side < 2; side++) {
                if (!(p[1 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                ssize_t got = read(r->pair[i][side], buf, sizeof buf);
                ssize_t put = 0;
                while (got > 0 && put < got) {
                    ssize_t w = write(r->pair[i][!side], buf + put, (size_t)(got - put));
                    if (w <= 0)
                        break;
                    put += w;
                }
                if (got <= 0 || put < got) {
                    close(r->pair[i][0]);
                    close(r->pair[i][1]);
                    r->pair[i][0] = r->pair[r->n - 1][0];
                    r->pair[i][1] = r->pair[r->n - 1][1];
                    r->n--;
                    break;
                }
            }
        }
    }
    for (int i = 0; i < r->n; i++) {
        close(r->pair[i][0]);
        close(r->pair[i][1]);
    }
    return NULL;
}

static relay *
relay_start(void)
{
    relay *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(r->lfd, 16), 0);
    cr_assert_eq(getsockname(r->lfd, (struct sockaddr *)&a, &len), 0);
    r->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&r->th, NULL, relay_run, r), 0);
    return r;
}

static void
relay_free(relay *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->lfd);
    free(r);
}

/* A client through the relay. */
static tc *
tc_start_via(relay *r, const char *tenant)
{
    int server_port = port;
    port = r->port;
    tc *t = tc_start(tenant, NULL, NULL);
    port = server_port;
    return t;
}

static void cut_under_writes(int n, int every);

Test(transport, connections_cut_under_writes_resume_and_apply_each_write_once)
{
    cut_under_writes(300, 60);
}

/* The long-running one that valgrind runs (tests/CMakeLists.txt): many
 * cuts, no server restart (lws 4.1.6 closes one of its descriptors twice
 * when a server's context is destroyed, which can close another thread's
 * socket: docs/internals/server.md). */
Test(transport, long_running_cuts, .timeout = 600)
{
    cut_under_writes(800, 80);
}

static void
cut_under_writes(int n, int every)
{
    server_start(0);
    relay *r = relay_start();
    tc *a = tc_start_via(r, "alice");
    tc *b = tc_start_via(r, "bob");
    tc *watcher = tc_start("alice", NULL, NULL); /* direct: never cut */
    wait_ok(a, TP_CLIENT_WAIT_SYNCED);
    wait_ok(b, TP_CLIENT_WAIT_SYNCED);
    wait_ok(watcher, TP_CLIENT_WAIT_SYNCED);
    char p[96];
    for (int k = 1; k <= n; k++) {
        snprintf(p, sizeof p, "{\"c%d\":%d}", k, k);
        write_ok(a, "private", "notes", p);
        write_ok(b, "shared", "board", p);
        if (k % every == 0) {
            atomic_store(&r->cut, 1); /* writes in flight, some acked, some not */
            WAIT_FOR(atomic_load(&r->cut) == 0, "the relay never cut");
        }
        if (k % 10 == 0)
            sleep_ms(1);
    }
    wait_ok(a, TP_CLIENT_WAIT_IDLE);
    wait_ok(b, TP_CLIENT_WAIT_IDLE);
    cr_assert_geq(atomic_load(&r->cuts), 2, "connections were cut");
    cr_assert_geq(tc_count(a, &a->live), 2, "alice's client came back after a cut");
    cr_assert_eq(tc_count(a, &a->errors), 0);
    cr_assert_eq(tc_count(b, &b->errors), 0);
    const char *models[][2] = {{"private", "notes"}, {"shared", "board"}};
    for (int m = 0; m < 2; m++) {
        int64_t rev0;
        char *v = hub_get(models[m][0], "alice", models[m][1], &rev0);
        json_t *j = json_loads(v, 0, NULL);
        for (int k = 1; k <= n; k++) {
            char key[16];
            snprintf(key, sizeof key, "c%d", k);
            cr_assert_eq(json_integer_value(json_object_get(j, key)), k, "%s/%s: %s missing",
                         models[m][0], models[m][1], key);
        }
        /* One rev per write: none applied twice. */
        cr_assert_eq(rev0, 1 + n, "%s/%s: rev %lld", models[m][0], models[m][1],
                     (long long)rev0);
        json_decref(j);
        tp_free(v);
    }
    assert_replica(a, "private", "notes");
    assert_replica(watcher, "private", "notes");
    assert_replica(b, "shared", "board");
    assert_replica(watcher, "shared", "board");
    tc_free(a);
    tc_free(b);
    tc_free(watcher);
    relay_free(r);
}

/* ---- Refused handshakes ---- */

static void
assert_refused_without_retry(tc *t, int status)
{
    int rc = tp_client_wait(t->c, TP_CLIENT_WAIT_SYNCED, WAIT_MS);
    cr_assert_eq(rc, TP_ECLOSED, "tp_client_wait: %s", tp_strerror(rc));
    cr_assert_eq(tp_client_get_state(t->c), TP_CLIENT_REFUSED);
    char want[16];
    snprintf(want, sizeof want, "HTTP %d: ", status);
    pthread_mutex_lock(&t->mu);
    cr_assert(strncmp(t->why, want, strlen(want)) == 0, "why: %s", t->why);
    pthread_mutex_unlock(&t->mu);
    /* With a 20 ms backoff, a retry would come well within this. */
    sleep_ms(300);
    cr_assert_eq(tp_client_get_state(t->c), TP_CLIENT_REFUSED);
    cr_assert_eq(tc_count(t, &t->connecting), 1, "no second attempt");
    cr_assert_eq(tc_count(t, &t->waiting), 0);
}

Test(transport, a_refused_token_is_403_and_no_retry)
{
    server_start(0);
    tp_client_options o = {0};
    o.token = "bad";
    tc *t = tc_start("alice", NULL, &o);
    assert_refused_without_retry(t, 403);
    cr_assert_eq(atomic_load(&handshakes), 1);
    tc_free(t);
}

Test(transport, a_wrong_route_is_404_and_no_retry)
{
    server_start(0);
    tc *t = tc_start("alice", "/nowhere/alice", NULL);
    assert_refused_without_retry(t, 404);
    tc_free(t);
}

Test(transport, a_503_is_retried_until_there_is_room)
{
    per_tenant = 1;
    server_start(0);
    tc *first = tc_start("alice", NULL, NULL);
    wait_ok(first, TP_CLIENT_WAIT_SYNCED);
    tc *second = tc_start("alice", NULL, NULL);
    WAIT_FOR(tc_count(second, &second->waiting) >= 2, "refused with 503, twice, and waiting");
    pthread_mutex_lock(&second->mu);
    cr_assert_str_eq(second->why, "HTTP 503: the server is at its connection limit");
    pthread_mutex_unlock(&second->mu);
    cr_assert_neq(tp_client_get_state(second->c), TP_CLIENT_REFUSED);
    tc_free(first);
    wait_ok(second, TP_CLIENT_WAIT_SYNCED);
    tc_free(second);
}

/* ---- A server that is not there yet ---- */

Test(transport, waits_with_backoff_until_the_server_appears)
{
    /* A port that was free a moment ago. */
    server_start(0);
    int at = port;
    server_halt();
    tc *t = tc_start("alice", NULL, NULL);
    WAIT_FOR(tc_count(t, &t->waiting) >= 3, "three attempts failed and waited");
    tp_client_state s = tp_client_get_state(t->c);
    cr_assert(s == TP_CLIENT_WAITING || s == TP_CLIENT_CONNECTING, "state %d", s);
    server_start(at);
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    assert_replica(t, "private", "notes");
    tc_free(t);
}

/* ---- The token ---- */

Test(transport, the_token_reaches_the_key_function_as_a_header_or_in_the_query)
{
    server_start(0);
    const char *headers[] = {"X-Test: 42", NULL};
    tp_client_options o = {0};
    o.token = "tok en";
    o.headers = headers;
    tc *t = tc_start("alice", NULL, &o);
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    pthread_mutex_lock(&seen_mu);
    cr_assert_str_eq(seen_auth, "Bearer tok en");
    cr_assert_str_eq(seen_query, "");
    cr_assert_str_eq(seen_x, "42");
    pthread_mutex_unlock(&seen_mu);
    tc_free(t);

    o = (tp_client_options){0};
    o.token = "tok&en";
    o.token_in_query = 1;
    t = tc_start("alice", NULL, &o);
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    pthread_mutex_lock(&seen_mu);
    cr_assert_str_eq(seen_auth, "");
    cr_assert_str_eq(seen_query, "tok&en");
    pthread_mutex_unlock(&seen_mu);
    tc_free(t);
}

/* ---- Start and stop ---- */

Test(transport, stop_is_idempotent_and_a_stopped_client_starts_again)
{
    server_start(0);
    tp_client *never = tp_client_new("ws://127.0.0.1:1/ws/alice", NULL, NULL);
    cr_assert_not_null(never);
    tp_client_stop(never);
    tp_client_stop(never);
    tp_client_free(never);

    tc *t = tc_start("alice", NULL, NULL);
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    int waiting = tc_count(t, &t->waiting);
    tp_client_stop(t->c);
    tp_client_stop(t->c);
    cr_assert_eq(tp_client_get_state(t->c), TP_CLIENT_STOPPED);
    cr_assert_eq(tc_count(t, &t->waiting), waiting,
                 "stopping closes the connection without announcing a reconnect");
    /* Written while stopped: sent after the next start's resume. */
    write_ok(t, "private", "notes", "{\"body\":\"offline\"}");
    tp_error err;
    cr_assert_eq(tp_client_start(t->c, &err), TP_OK, "%s", err.message);
    wait_ok(t, TP_CLIENT_WAIT_IDLE);
    assert_replica(t, "private", "notes");
    int64_t rev;
    char *v = hub_get("private", "alice", "notes", &rev);
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"Notes\",\"body\":\"offline\"}"), "%s", v);
    tp_free(v);
    tc_free(t);
}

/* ---- A server that stops answering ---- */

/* Holds the server's loop (posted to it) until released: the socket stays
 * open and the kernel still accepts connections, but nothing answers. */
static pthread_mutex_t freeze_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freeze_cv = PTHREAD_COND_INITIALIZER;
static int frozen;

static void
freeze(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&freeze_mu);
    while (frozen)
        pthread_cond_wait(&freeze_cv, &freeze_mu);
    pthread_mutex_unlock(&freeze_mu);
}

static void
server_freeze(void)
{
    pthread_mutex_lock(&freeze_mu);
    frozen = 1;
    pthread_mutex_unlock(&freeze_mu);
    cr_assert_eq(tp_server_post(server, freeze, NULL), TP_OK);
}

static void
server_thaw(void)
{
    pthread_mutex_lock(&freeze_mu);
    frozen = 0;
    pthread_cond_broadcast(&freeze_cv);
    pthread_mutex_unlock(&freeze_mu);
}

Test(transport, pings_a_quiet_connection_and_drops_it_when_nothing_answers)
{
    server_start(0);
    tp_client_options o = {0};
    o.ping_interval_ms = 100;
    tc *t = tc_start("alice", NULL, &o);
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    /* Quiet for several intervals: the pings' pongs keep it up. */
    sleep_ms(500);
    cr_assert_eq(tp_client_get_state(t->c), TP_CLIENT_LIVE);
    cr_assert_eq(tc_count(t, &t->waiting), 0);
    server_freeze();
    WAIT_FOR(tc_count(t, &t->waiting) >= 1, "dropped after two silent intervals");
    pthread_mutex_lock(&t->mu);
    cr_assert_str_eq(t->why, "the server stopped answering");
    pthread_mutex_unlock(&t->mu);
    server_thaw();
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    tc_free(t);
}

Test(transport, an_attempt_that_gets_no_answer_times_out_and_retries)
{
    server_start(0);
    server_freeze();
    tp_client_options o = {0};
    o.connect_timeout_ms = 200;
    tc *t = tc_start("alice", NULL, &o);
    WAIT_FOR(tc_count(t, &t->waiting) >= 2, "attempts timed out");
    server_thaw();
    wait_ok(t, TP_CLIENT_WAIT_SYNCED);
    tc_free(t);
}
