/*
 * A connection as the tool sees it: a tp_client started on its own thread,
 * and the state its callbacks reported, so that a failure can be told in
 * one line with the right exit status. The library says why a state
 * changed ("connection refused", "HTTP 404"); the tool only adds the URL.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

uint64_t
tp__cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
tp__cli_error(const char *fmt, ...)
{
    /* One line, written at once, so that it never interleaves with another. */
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "transports: %s\n", line);
}

const char *
tp__cli_state_name(tp_client_state state)
{
    switch (state) {
    case TP_CLIENT_IDLE: return "idle";
    case TP_CLIENT_CONNECTING: return "connecting";
    case TP_CLIENT_SYNCING: return "syncing";
    case TP_CLIENT_LIVE: return "live";
    case TP_CLIENT_WAITING: return "waiting";
    case TP_CLIENT_REFUSED: return "refused";
    case TP_CLIENT_STOPPED: return "stopped";
    }
    return "unknown";
}

int
tp__cli_exit_for_code(int code)
{
    switch (code) {
    case TP_EBADREQUEST:
    case TP_ENOTFOUND:
    case TP_EFORBIDDEN:
    case TP_EINVALID:
    case TP_EREJECTED:
    case TP_ETOOLARGE:
    case TP_EDUPLICATE: return TP__CLI_REFUSED;
    case TP_ECLOSED: return TP__CLI_UNREACHABLE;
    default: return TP__CLI_INTERNAL; /* rate_limited, internal, out of memory */
    }
}

void
tp__cli_session_wake(tp__cli_session *s)
{
    if (s->wake_main)
        pthread_kill(s->main_thread, SIGUSR1);
}

void
tp__cli_session_record(tp__cli_session *s, tp_client_state state, const char *why)
{
    pthread_mutex_lock(&s->mu);
    s->state = state;
    snprintf(s->why, sizeof s->why, "%s", why != NULL ? why : "");
    if (state == TP_CLIENT_LIVE)
        s->was_live = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (state == TP_CLIENT_REFUSED || state == TP_CLIENT_STOPPED)
        tp__cli_session_wake(s);
}

/* log_line: --verbose, the client's own account of its connections. */
static void
log_line(int level, const char *line, void *user)
{
    (void)level;
    (void)user;
    tp__cli_error("client: %s", line);
}

/*
 * --token-file: the file's content, trailing white space dropped, read at
 * every call so that whatever renews the file (an agent, a cron job) is
 * seen by the next connection and the next `auth`.
 */
static int
token_from_file(void *user, char *buf, size_t size, int64_t *expires_at_ms)
{
    const tp__cli_args *args = user;
    (void)expires_at_ms; /* the client reads the token's exp */
    FILE *f = fopen(args->token_file, "r");
    if (f == NULL) {
        tp__cli_error("--token-file %s: %s", args->token_file, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, size - 1, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    if (more) {
        tp__cli_error("--token-file %s: longer than %zu bytes", args->token_file, size - 1);
        return -1;
    }
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0) {
        tp__cli_error("--token-file %s: empty", args->token_file);
        return -1;
    }
    return 0;
}

int
tp__cli_session_open(tp__cli_session *s, const tp__cli_args *args, const tp_client_callbacks *cb,
                     int no_reconnect)
{
    s->args = args;
    s->client = NULL;
    s->state = TP_CLIENT_IDLE;
    s->why[0] = '\0';
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);

    tp_client_options o;
    memset(&o, 0, sizeof o);
    o.token = args->token;
    if (args->token_file != NULL) {
        o.token_fn = token_from_file;
        o.token_user = (void *)args;
    }
    o.tls_insecure = args->insecure;
    o.ca_file = args->ca_file;
    o.no_reconnect = no_reconnect;
    if (no_reconnect)
        o.connect_timeout_ms = args->timeout_ms;
    if (args->verbose) {
        o.log = log_line;
        o.log_level = TP_LOG_DEBUG;
    }
    o.cb = *cb;
    o.cb.user = s;

    tp_error err = {0, ""};
    s->client = tp_client_new(args->url, &o, &err);
    if (s->client == NULL) {
        if (err.code == TP_EARG) {
            tp__cli_error("%s: %s", args->url, err.message[0] ? err.message : "not a ws:// URL");
            return TP__CLI_USAGE;
        }
        tp__cli_error("%s: %s", args->url, err.message[0] ? err.message : tp_strerror(err.code));
        return TP__CLI_INTERNAL;
    }
    if (tp_client_start(s->client, &err) != TP_OK) {
        tp__cli_error("%s: cannot start the client: %s", args->url,
                      err.message[0] ? err.message : tp_strerror(err.code));
        return TP__CLI_INTERNAL;
    }
    return TP__CLI_OK;
}

void
tp__cli_session_close(tp__cli_session *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    /* tp_client_free joins the client's thread: no callback runs after it. */
    tp_client_free(s->client);
    s->client = NULL;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

int
tp__cli_session_sync(tp__cli_session *s, unsigned timeout_ms)
{
    int rc = tp_client_wait(s->client, TP_CLIENT_WAIT_SYNCED, timeout_ms);
    if (rc == TP_OK)
        return TP__CLI_OK;
    tp_client_state state = tp_client_get_state(s->client);
    char why[sizeof s->why];
    pthread_mutex_lock(&s->mu);
    memcpy(why, s->why, sizeof why);
    pthread_mutex_unlock(&s->mu);
    const char *url = s->args->url;

    if (state == TP_CLIENT_REFUSED) {
        /* 400, 401, 403, 404: the server answered, and asking again will not help. */
        tp__cli_error("%s: the server refused the connection: %s", url, why[0] ? why : "refused");
        return TP__CLI_REFUSED;
    }
    if (rc == TP_ECLOSED) {
        tp__cli_error("cannot connect to %s: %s", url,
                      why[0] ? why : "the connection closed before it synced");
        return TP__CLI_UNREACHABLE;
    }
    double secs = s->args->timeout_ms / 1000.0;
    if (state == TP_CLIENT_SYNCING)
        tp__cli_error("%s: connected, but not synced within %g s", url, secs);
    else if (why[0])
        tp__cli_error("cannot connect to %s: %s (gave up after %g s)", url, why, secs);
    else
        tp__cli_error("cannot connect to %s: no connection within %g s", url, secs);
    return TP__CLI_UNREACHABLE;
}
