/*
 * serve: the guide's "Serve the hub over WebSocket".
 *
 * The guide's setup served for real: alice's and bob's private notes, and a
 * shared roadmap (lww-map) that alice may write and bob may only read, on the
 * route /ws/{tenant}. Clients use the same protocol whether the server has one
 * tenant or many; the hub decides which snapshots each tenant receives.
 *
 * The host program also changes things itself: a thread of its own (your
 * backend, a queue consumer...) updates a read-only "status" model every
 * second. Hub calls belong to the server's loop thread, so the thread hands
 * each change over with tp_server_post; the autosync tick then publishes it.
 *
 * Usage: example_serve [HOST:PORT]     (default 127.0.0.1:0, a free port)
 * It prints "listening on HOST:PORT" and serves until SIGINT or SIGTERM, when
 * every client gets what is pending and a close with 1001. Try it with
 *     /usr/bin/python3 -m websockets ws://127.0.0.1:PORT/ws/alice
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "example.h"

/* The autosync period: host changes reach clients within this. */
#define TICK_MS 50

/*
 * The server the signal handlers stop. A handler can reach nothing else, so it
 * is set before the handlers are installed. tp_server_stop only writes a byte
 * to a pipe, which is safe in a signal handler.
 */
static tp_server *volatile serving;

static void
on_signal(int sig)
{
    (void)sig;
    if (serving != NULL)
        tp_server_stop(serving);
}

/* The host's own work: what its thread changes, and when it must stop. */
struct host {
    tp_server *server;
    tp_hub *hub;
    unsigned ticks; /* read and written on the loop thread only, in host_tick */
    atomic_bool stopping;
};

/*
 * host_tick runs on the server's loop thread (posted by host_thread), so it
 * may call the hub. tp_hub_set_shared only records the value; the next
 * autosync tick publishes it to every subscriber, with origin "host".
 */
static void
host_tick(void *arg)
{
    struct host *h = arg;
    char value[128];
    h->ticks++;
    snprintf(value, sizeof value, "{\"title\": \"Status\", \"body\": \"up %u s\"}", h->ticks);
    tp_error err;
    if (tp_hub_set_shared(h->hub, "status", value, &err) != TP_OK)
        fprintf(stderr, "serve: status: %s\n", err.message);
}

/* host_thread never touches the hub: every second it posts host_tick to the loop. */
static void *
host_thread(void *arg)
{
    struct host *h = arg;
    const struct timespec tenth = {0, 100 * 1000 * 1000};
    for (unsigned n = 1; !atomic_load(&h->stopping); n++) {
        nanosleep(&tenth, NULL); /* in tenths, so that stopping is noticed soon */
        if (n % 10 == 0 && tp_server_post(h->server, host_tick, h) != TP_OK)
            fprintf(stderr, "serve: tp_server_post: out of memory\n");
    }
    return NULL;
}

/* The hub's log lines (connections, refused handshakes and writes) go to stderr. */
static void
log_line(int level, const char *line, void *user)
{
    (void)level;
    (void)user;
    fprintf(stderr, "%s\n", line);
}

/* setup is the guide's example: the same calls as private_models.c and read_only_sharing.c. */
static int
setup(tp_hub *hub, tp_error *err)
{
    tp_schema *document = tp_schema_new(DOCUMENT_SCHEMA, err);
    if (document == NULL)
        return -1;
    int ok =
        tp_session_host_as(tp_hub_tenant(hub, "alice"), "notes", document,
                           "{\"title\": \"Alice notes\"}", err) != NULL &&
        tp_session_host_as(tp_hub_tenant(hub, "bob"), "notes", document,
                           "{\"title\": \"Bob notes\"}", err) != NULL &&
        tp_hub_share_as(hub, "roadmap", document, "{\"title\": \"Roadmap\"}", &tp_lww_map_crdt,
                        err) != NULL &&
        tp_hub_share_as(hub, "status", document, "{\"title\": \"Status\"}", NULL, err) != NULL &&
        tp_hub_subscribe(hub, "alice", "roadmap", TP_WRITE) == TP_OK &&
        tp_hub_subscribe(hub, "bob", "roadmap", TP_READ) == TP_OK &&
        tp_hub_subscribe(hub, "alice", "status", TP_READ) == TP_OK &&
        tp_hub_subscribe(hub, "bob", "status", TP_READ) == TP_OK;
    tp_schema_free(document); /* every model keeps its own reference */
    return ok ? 0 : -1;
}

int
main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: example_serve [HOST:PORT]   (default 127.0.0.1:0, a free port)\n");
        return 2;
    }
    const char *listen = argc == 2 ? argv[1] : "127.0.0.1:0";

    /* tick_ms is only announced in hello; the server's autosync_ms does the syncing. */
    tp_hub_config config = {0};
    config.tick_ms = TICK_MS;
    config.log = log_line;
    config.log_level = TP_LOG_INFO;
    tp_error err = {0, ""};
    tp_hub *hub = tp_hub_new(&config, &err);
    if (hub == NULL || setup(hub, &err) != 0) {
        fprintf(stderr, "serve: setup: %s\n", err.message);
        tp_hub_free(hub);
        return 1;
    }

    /* Zero fields take their defaults: the route /ws/{tenant}, the limits. */
    tp_server_config server_config = {0};
    server_config.listen = listen;
    server_config.autosync_ms = TICK_MS;
    tp_server *server = tp_server_new(hub, &server_config, &err);
    if (server == NULL) {
        fprintf(stderr, "serve: %s: %s\n", listen, err.message);
        tp_hub_free(hub);
        return 1;
    }
    /* The port is known as soon as the listener is bound (port 0 picks a free one). */
    const char *colon = strrchr(listen, ':');
    printf("listening on %.*s:%d\n", (int)(colon != NULL ? colon - listen : 0), listen,
           tp_server_port(server));
    fflush(stdout);

    /* A peer that goes away mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    serving = server;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct host h = {.server = server, .hub = hub};
    atomic_init(&h.stopping, false);
    pthread_t thread;
    int threaded = pthread_create(&thread, NULL, host_thread, &h) == 0;

    int rc = tp_server_run(server); /* this thread is now the hub's loop thread */

    /* Stop the host thread before freeing the server: it posts to it. */
    atomic_store(&h.stopping, true);
    if (threaded)
        pthread_join(thread, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    serving = NULL;
    tp_server_free(server); /* runs the posts the loop did not get to */
    tp_hub_free(hub);
    printf("stopped\n");
    return rc == TP_OK && threaded ? 0 : 1;
}
