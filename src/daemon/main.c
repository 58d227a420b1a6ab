/*
 * transportsd: a transports server set up by a JSON config file
 * (docs/daemon.md). Everything is built and checked before the listener is
 * bound, so a bad config never serves anything; then the server runs until
 * SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/cluster.h"
#include "daemon/daemon.h"

/*
 * The server the signal handlers stop. A handler can reach nothing else, so
 * this is the one piece of global state: set before the handlers are
 * installed, cleared after they are removed. tp_server_stop only writes a
 * byte to a pipe, which is safe in a handler.
 */
static tp_server *volatile running;
static volatile sig_atomic_t stop_signal;

static void
on_hup(int sig)
{
    (void)sig;
    if (running != NULL)
        tp_server_reload_tls(running);
}

static void
on_signal(int sig)
{
    stop_signal = sig;
    if (running != NULL)
        tp_server_stop(running);
}

static int
handle_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    /* Restart interrupted system calls: the loop must not see EINTR as an
     * error; the pipe write wakes it up. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -1;
    /* SIGHUP reads the TLS certificate again (a renewal); it never stops
     * the daemon, even before the server exists. */
    sa.sa_handler = handler == SIG_DFL ? SIG_DFL : on_hup;
    if (sigaction(SIGHUP, &sa, NULL) != 0)
        return -1;
    return 0;
}

/* listen_host is the host part of "HOST:PORT" (checked by the config). */
static void
listen_host(const char *listen, char *out, size_t size)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
    if (n >= size)
        n = size - 1;
    memcpy(out, listen, n);
    out[n] = '\0';
}

/*
 * The demo page's directory: the source tree's (a build run in place, as
 * make run does), else the installed one next to the binary
 * (<bin>/../share/transports/demo, so that an install to another prefix
 * than the configured one still finds it), else the configured install
 * path. --static-dir overrides them all.
 */
static const char *
demo_dir(void)
{
    struct stat st;
#ifdef TP_DEMO_SOURCE_DIR
    if (stat(TP_DEMO_SOURCE_DIR "/index.html", &st) == 0)
        return TP_DEMO_SOURCE_DIR;
#endif
    static char beside[4096];
    ssize_t n = readlink("/proc/self/exe", beside, sizeof beside - 1);
    if (n > 0) {
        beside[n] = '\0';
        char *slash = strrchr(beside, '/');
        static const char rel[] = "/../share/transports/demo";
        char probe[4096 + 16];
        if (slash != NULL && (size_t)(slash - beside) + sizeof rel < sizeof beside) {
            memcpy(slash, rel, sizeof rel);
            snprintf(probe, sizeof probe, "%s/index.html", beside);
            if (stat(probe, &st) == 0)
                return beside;
        }
    }
#ifdef TP_DEMO_INSTALL_DIR
    if (stat(TP_DEMO_INSTALL_DIR "/index.html", &st) == 0)
        return TP_DEMO_INSTALL_DIR;
#endif
    (void)st;
    return NULL; /* no page: the demo's WebSocket side still runs */
}

int
main(int argc, char **argv)
{
    tp__daemon_args args;
    char why[256];
    switch (tp__daemon_args_parse(argc, argv, &args, why, sizeof why)) {
    case TP__DAEMON_ARGS_HELP: fputs(tp__daemon_usage, stdout); return 0;
    case TP__DAEMON_ARGS_VERSION: printf("transportsd %s\n", tp_version()); return 0;
    case TP__DAEMON_ARGS_ERROR:
        fprintf(stderr, "transportsd: %s (see transportsd --help)\n", why);
        return 2;
    default: break;
    }

    /* A peer that goes away mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    /* Nor a file size limit (RLIMIT_FSIZE): a write past it fails with
     * EFBIG instead, which the store handles as it does a full disk. */
    signal(SIGXFSZ, SIG_IGN);
    /* One descriptor per connection: the soft limit (often 1024) would
     * refuse connections long before max_connections; the hard one is ours. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /*
     * The handlers go in first, long before "listening" is logged: whoever
     * waits for that line may signal at once, and a signal must then stop
     * the daemon cleanly, not kill it. One that comes before the server
     * exists is remembered and honoured below.
     */
    if (handle_signals(on_signal) != 0) {
        fprintf(stderr, "transportsd: cannot install signal handlers\n");
        return 1;
    }

    tp__daemon_options opt = {args.listen, tp__daemon_log_stderr, NULL, args.log_level,
                              args.static_dir};
    if (args.demo && opt.static_dir == NULL)
        opt.static_dir = demo_dir();
    tp__derror derr;
    tp__daemon *d =
        args.demo ? tp__daemon_demo(&opt, &derr) : tp__daemon_load(args.config, &opt, &derr);
    if (d == NULL) {
        fprintf(stderr, "transportsd: %s\n", derr.message);
        return 2;
    }

    tp_error err = {0, ""};
    tp_server *server = tp_server_new(d->hub, &d->cfg.server, &err);
    if (server == NULL) {
        /* A bad address is the config's fault (2); a taken one is not (1). */
        fprintf(stderr, "transportsd: %s: %s\n", args.demo ? "--demo" : args.config, err.message);
        tp__daemon_free(d);
        return err.code == TP_EARG ? 2 : 1;
    }
    char made[80];
    if (tp__daemon_host_api(d, server, args.demo, made, sizeof made, &derr) != 0 ||
        tp__daemon_webhooks(d, server, &derr) != 0) {
        fprintf(stderr, "transportsd: %s: %s\n", args.demo ? "--demo" : args.config, derr.message);
        tp_server_free(server);
        tp__daemon_free(d);
        return 2;
    }
    running = server;
    /* A cluster node reads its models from Redis before it serves: the
     * listener is bound already (tp_server_new), and clients that come now
     * wait in its backlog until tp_server_run accepts them. */
    int synced = tp__daemon_cluster(d, server, &stop_signal, &derr);
    if (synced < 0) {
        fprintf(stderr, "transportsd: %s\n", derr.message);
        handle_signals(SIG_DFL);
        running = NULL;
        tp__daemon_cluster_stop(d);
        tp_server_free(server);
        tp__daemon_free(d);
        return 1;
    }
    char host[300];
    listen_host(d->cfg.listen, host, sizeof host);
    if (d->cfg.sqlite != NULL)
        tp__daemon_log(&opt, TP_LOG_INFO, "storage sqlite=%s %s", d->cfg.sqlite,
                       d->restored ? "restored" : "new (the config's state is stored)");
    else if (d->cluster != NULL)
        tp__daemon_log(&opt, TP_LOG_INFO,
                       "storage redis=%s (the cluster's; the config's state "
                       "is the initial state of models Redis does not hold)",
                       tp__cluster_where(d->cluster));
    else
        tp__daemon_log(&opt, TP_LOG_INFO, "storage memory (nothing outlives the process)");
    if (d->n_diffs > 0)
        tp__daemon_log(&opt, TP_LOG_WARN,
                       "config differs from the stored state in %d place%s: %s; the stored state "
                       "wins (the config is only the initial state): change it with the host "
                       "API (docs/host-api.md), or start on a new database",
                       d->n_diffs, d->n_diffs > 1 ? "s" : "", d->diffs);
    if (d->cfg.auth_jwt)
        tp__daemon_log(&opt, TP_LOG_INFO, "auth mode=jwt keys=%zu skipped=%zu",
                       tp__jwt_keys_count(d->keys), tp__jwt_keys_skipped(d->keys));
    if (d->warn_unauthenticated != NULL)
        tp__daemon_log(&opt, TP_LOG_WARN, "%s", d->warn_unauthenticated);
    if (d->warn_origins != NULL)
        tp__daemon_log(&opt, TP_LOG_WARN, "%s", d->warn_origins);
    tp__daemon_log(&opt, TP_LOG_INFO, "listening addr=%s:%d%s", host, tp_server_port(server),
                   d->cfg.tls_cert_file != NULL ? " tls=1" : "");
    const char *scheme = d->cfg.tls_cert_file != NULL ? "https" : "http";
    if (d->cfg.static_dir != NULL)
        tp__daemon_log(&opt, TP_LOG_INFO, "static dir=%s page=%s://%s:%d/", d->cfg.static_dir,
                       scheme, host, tp_server_port(server));
    if (made[0] != '\0') {
        /* The demo's made-up admin token, on stdout (never in the log). */
        printf("host API: %s://%s:%d/v1/  admin token: %s\n"
               "  (set TRANSPORTS_ADMIN_TOKEN to choose it; docs/host-api.md)\n",
               scheme, host, tp_server_port(server), made);
        fflush(stdout);
    }

    int rc = TP_OK;
    if (stop_signal == 0)
        rc = tp_server_run(server);
    handle_signals(SIG_DFL);
    running = NULL;

    tp__daemon_log(&opt, TP_LOG_INFO, "exit status=%d signal=%s", rc == TP_OK ? 0 : 1,
                   stop_signal == SIGINT    ? "SIGINT"
                   : stop_signal == SIGTERM ? "SIGTERM"
                                            : "none");
    /* The link first: the server's last loop runs close its handles. */
    tp__daemon_cluster_stop(d);
    tp_server_free(server);
    tp__daemon_free(d);
    if (rc != TP_OK) {
        fprintf(stderr, "transportsd: the server stopped: %s\n", tp_strerror(rc));
        return 1;
    }
    return 0;
}
