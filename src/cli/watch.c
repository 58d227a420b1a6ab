/*
 * watch: print every event as it arrives until SIGINT or SIGTERM. The
 * client's thread prints (its callbacks run one at a time, in order); the
 * main thread only waits for a signal. SIGINT, SIGTERM and SIGUSR1 are
 * blocked before the client's thread exists, so that thread inherits the
 * mask and every such signal reaches the main thread's sigwait, with no
 * handler and no global state. SIGUSR1 is how a callback says "the client
 * gave up" (a refused handshake) or "stdout is gone".
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* emit prints one line on stdout; a failure ends the command. */
static void
emit(tp__cli_session *s, const char *line)
{
    if (s->output_failed)
        return;
    if (puts(line) < 0 || fflush(stdout) != 0) {
        int e = errno;
        pthread_mutex_lock(&s->mu);
        s->output_failed = e != 0 ? e : EIO;
        pthread_mutex_unlock(&s->mu);
        tp__cli_session_wake(s);
    }
}

/* emit_json prints an event object as one line and releases it. */
static void
emit_json(tp__cli_session *s, json_t *event)
{
    char *line = event != NULL ? json_dumps(event, JSON_COMPACT) : NULL;
    json_decref(event);
    if (line == NULL) {
        tp__cli_error("watch: out of memory");
        return;
    }
    emit(s, line);
    free(line);
}

/* dump is a value as compact JSON text (new, free), or NULL. */
static char *
dump(const json_t *v)
{
    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static json_t *
event_new(const char *event, const char *scope, const char *id)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string(event));
    if (scope != NULL)
        json_object_set_new(o, "scope", json_string(scope));
    if (id != NULL)
        json_object_set_new(o, "id", json_string(id));
    return o;
}

static const char *
access_name(tp_access access)
{
    return access == TP_WRITE ? "write" : "read";
}

static void
on_snapshot(void *user, const char *scope, const char *id, int64_t rev, tp_access access,
            const json_t *value)
{
    tp__cli_session *s = user;
    if (s->args->json) {
        json_t *o = event_new("snapshot", scope, id);
        json_object_set_new(o, "rev", json_integer(rev));
        json_object_set_new(o, "access", json_string(access_name(access)));
        json_object_set_new(o, "value", json_deep_copy(value));
        emit_json(s, o);
        return;
    }
    char *v = dump(value);
    char line[512];
    snprintf(line, sizeof line, "%s/%s rev %lld snapshot (%s): ", scope, id, (long long)rev,
             access_name(access));
    size_t n = strlen(line), vn = v != NULL ? strlen(v) : 4;
    char *full = malloc(n + vn + 1);
    if (full != NULL) {
        memcpy(full, line, n);
        memcpy(full + n, v != NULL ? v : "null", vn + 1);
        emit(s, full);
    }
    free(full);
    free(v);
}

static void
on_patch(void *user, const char *scope, const char *id, int64_t from, int64_t rev,
         const json_t *patch, const char *origin, const json_t *value)
{
    tp__cli_session *s = user;
    if (s->args->json) {
        json_t *o = event_new("patch", scope, id);
        json_object_set_new(o, "from", json_integer(from));
        json_object_set_new(o, "rev", json_integer(rev));
        json_object_set_new(o, "patch", json_deep_copy(patch));
        json_object_set_new(o, "origin", origin != NULL ? json_string(origin) : json_null());
        json_object_set_new(o, "value", json_deep_copy(value));
        emit_json(s, o);
        return;
    }
    char *p = dump(patch);
    char line[512];
    snprintf(line, sizeof line, "%s/%s rev %lld by %s: ", scope, id, (long long)rev,
             origin != NULL ? origin : "?");
    size_t n = strlen(line), pn = p != NULL ? strlen(p) : 4;
    char *full = malloc(n + pn + 1);
    if (full != NULL) {
        memcpy(full, line, n);
        memcpy(full + n, p != NULL ? p : "null", pn + 1);
        emit(s, full);
    }
    free(full);
    free(p);
}

static void
on_access(void *user, const char *scope, const char *id, tp_access access)
{
    tp__cli_session *s = user;
    if (s->args->json) {
        json_t *o = event_new("access", scope, id);
        json_object_set_new(o, "access", json_string(access_name(access)));
        emit_json(s, o);
        return;
    }
    char line[600];
    snprintf(line, sizeof line, "%s/%s access %s", scope, id, access_name(access));
    emit(s, line);
}

static void
on_removed(void *user, const char *scope, const char *id)
{
    tp__cli_session *s = user;
    if (s->args->json) {
        emit_json(s, event_new("removed", scope, id));
        return;
    }
    char line[600];
    snprintf(line, sizeof line, "%s/%s removed", scope, id);
    emit(s, line);
}

/* Another connection's presence: a line per change, "left" when it went. */
static void
on_presence(void *user, const char *scope, const char *id, const char *conn, const json_t *state)
{
    tp__cli_session *s = user;
    if (s->args->json) {
        json_t *o = event_new("presence", scope, id);
        json_object_set_new(o, "conn", json_string(conn));
        json_object_set_new(o, "state", state != NULL ? json_deep_copy(state) : json_null());
        emit_json(s, o);
        return;
    }
    char *v = state != NULL ? dump(state) : NULL;
    char line[512];
    snprintf(line, sizeof line, "%s/%s presence %s%s", scope, id, conn,
             state != NULL ? ": " : " left");
    size_t n = strlen(line), vn = v != NULL ? strlen(v) : 0;
    char *full = malloc(n + vn + 1);
    if (full != NULL) {
        memcpy(full, line, n);
        memcpy(full + n, v != NULL ? v : "", vn + 1);
        emit(s, full);
    }
    free(full);
    free(v);
}

static void
on_error(void *user, int64_t ref, const char *scope, const char *id, int code, const char *message,
         const json_t *value)
{
    tp__cli_session *s = user;
    (void)ref;
    (void)value;
    if (s->args->json) {
        json_t *o = event_new("error", scope, id);
        json_object_set_new(o, "code", json_string(tp_error_name(code)));
        json_object_set_new(o, "message", json_string(message != NULL ? message : ""));
        emit_json(s, o);
        return;
    }
    tp__cli_error("the server sent an error: %s: %s", tp_error_name(code),
                  message != NULL ? message : "");
}

static void
on_state(void *user, tp_client_state state, const char *why)
{
    tp__cli_session *s = user;
    pthread_mutex_lock(&s->mu);
    int was_live = s->was_live, stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    tp__cli_session_record(s, state, why);
    /* Ours to stop: the closing handshake passes through WAITING ("closed
     * 1000") on its way to STOPPED, which would read as a reconnect. */
    if (stopping)
        return;

    if (s->args->json) {
        json_t *o = event_new("state", NULL, NULL);
        json_object_set_new(o, "state", json_string(tp__cli_state_name(state)));
        json_object_set_new(o, "why", why != NULL ? json_string(why) : json_null());
        emit_json(s, o);
    }
    /* Human mode: the connection's life on stderr. A refusal is main's to report. */
    const char *url = s->args->url;
    switch (state) {
    case TP_CLIENT_CONNECTING:
        if (!s->args->json)
            tp__cli_error("connecting to %s", url);
        break;
    case TP_CLIENT_LIVE:
        if (!s->args->json)
            tp__cli_error(was_live ? "live again (resumed)" : "live");
        break;
    case TP_CLIENT_WAITING:
        /* Said in JSON mode too: a retry is worth knowing about on stderr. */
        if (was_live)
            tp__cli_error("disconnected (%s); reconnecting", why != NULL ? why : "closed");
        else
            tp__cli_error("cannot connect to %s: %s; retrying", url, why != NULL ? why : "failed");
        break;
    default: break;
    }
}

int
tp__cli_watch(const tp__cli_args *args)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        tp__cli_error("watch: cannot block signals");
        return TP__CLI_INTERNAL;
    }

    tp__cli_session s;
    memset(&s, 0, sizeof s);
    s.main_thread = pthread_self();
    s.wake_main = 1;
    tp_client_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.snapshot = on_snapshot;
    cb.patch = on_patch;
    cb.access = on_access;
    cb.removed = on_removed;
    cb.error = on_error;
    cb.state = on_state;
    cb.presence = on_presence;
    int rc = tp__cli_session_open(&s, args, &cb, 0);
    if (rc != TP__CLI_OK) {
        if (s.client != NULL)
            tp__cli_session_close(&s);
        return rc;
    }

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGINT || sig == SIGTERM) {
            rc = TP__CLI_OK;
            break;
        }
        /* SIGUSR1: a callback (or someone) wants a look at the session. */
        pthread_mutex_lock(&s.mu);
        tp_client_state state = s.state;
        int out_err = s.output_failed;
        char why[sizeof s.why];
        memcpy(why, s.why, sizeof why);
        pthread_mutex_unlock(&s.mu);
        if (out_err != 0) {
            tp__cli_error("watch: cannot write to stdout: %s", strerror(out_err));
            rc = TP__CLI_INTERNAL;
            break;
        }
        if (state == TP_CLIENT_REFUSED) {
            tp__cli_error("%s: the server refused the connection: %s", args->url,
                          why[0] ? why : "refused");
            rc = TP__CLI_REFUSED;
            break;
        }
        if (state == TP_CLIENT_STOPPED) {
            tp__cli_error("%s: the client stopped: %s", args->url, why[0] ? why : "stopped");
            rc = TP__CLI_INTERNAL;
            break;
        }
    }
    tp__cli_session_close(&s);
    return rc;
}
