/*
 * get and write: connect without retrying (an unreachable server must fail
 * within the timeout, not back off forever), wait until synced, do the one
 * thing, and say how it ended. The timeout bounds the whole command.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void
on_state(void *user, tp_client_state state, const char *why)
{
    tp__cli_session_record(user, state, why);
}

/* on_ack and on_error keep the first answer to a write: the tool makes one. */
static void
on_ack(void *user, int64_t ref, const char *scope, const char *id, int64_t rev)
{
    tp__cli_session *s = user;
    (void)scope;
    (void)id;
    pthread_mutex_lock(&s->mu);
    if (s->answered == 0) {
        s->answered = 1;
        s->answer_ref = ref;
        s->answer_rev = rev;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void
on_error(void *user, int64_t ref, const char *scope, const char *id, int code, const char *message,
         const json_t *value)
{
    tp__cli_session *s = user;
    (void)scope;
    (void)id;
    (void)value;
    if (ref <= 0)
        return; /* not about a write: the command's outcome does not depend on it */
    pthread_mutex_lock(&s->mu);
    if (s->answered == 0) {
        s->answered = -1;
        s->answer_ref = ref;
        s->answer_code = code;
        snprintf(s->answer_message, sizeof s->answer_message, "%s", message != NULL ? message : "");
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static unsigned
left_ms(uint64_t deadline)
{
    uint64_t now = tp__cli_now_ms();
    /* At least 1: a wait of 0 must not be read as "no limit". */
    return now + 1 >= deadline ? 1u : (unsigned)(deadline - now);
}

/* open_synced: the part get and write share. */
static int
open_synced(tp__cli_session *s, const tp__cli_args *args, uint64_t deadline)
{
    tp_client_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.state = on_state;
    cb.ack = on_ack;
    cb.error = on_error;
    int rc = tp__cli_session_open(s, args, &cb, 1);
    if (rc != TP__CLI_OK)
        return rc;
    return tp__cli_session_sync(s, left_ms(deadline));
}

/* print_json prints a JSON text as one compact line. */
static int
print_json(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    char *line = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (line == NULL) {
        tp__cli_error("the client returned a value that is not JSON: %s", jerr.text);
        return TP__CLI_INTERNAL;
    }
    int ok = puts(line) >= 0 && fflush(stdout) == 0;
    free(line);
    if (!ok) {
        tp__cli_error("cannot write to stdout: %s", strerror(errno));
        return TP__CLI_INTERNAL;
    }
    return TP__CLI_OK;
}

int
tp__cli_get(const tp__cli_args *args)
{
    uint64_t deadline = tp__cli_now_ms() + args->timeout_ms;
    tp__cli_session s;
    memset(&s, 0, sizeof s);
    int rc = open_synced(&s, args, deadline);
    if (rc == TP__CLI_OK) {
        char *text = tp_client_get(s.client, args->scope, args->id, NULL, NULL);
        if (text == NULL) {
            /* PROTOCOL.md: a model the tenant may not see reads as one that does not exist. */
            tp__cli_error("get %s: not_found: no model %s/%s visible to this tenant", args->target,
                          args->scope, args->id);
            rc = TP__CLI_REFUSED;
        } else {
            rc = print_json(text);
            tp_free(text);
        }
    }
    if (s.client != NULL)
        tp__cli_session_close(&s);
    return rc;
}

/* wait_answer waits (under s->mu) until a write's answer is recorded or the deadline. */
static void
wait_answer(tp__cli_session *s, uint64_t deadline)
{
    pthread_mutex_lock(&s->mu);
    while (s->answered == 0 && tp__cli_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        unsigned ms = left_ms(deadline);
        ts.tv_sec += (time_t)(ms / 1000u);
        ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

/* read_stdin reads all of stdin (new, free), or NULL after printing why. */
static char *
read_stdin(void)
{
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (cap - len < 2) {
            char *more = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = more;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                tp__cli_error("write: cannot read the patch from stdin: %s", strerror(errno));
                free(buf);
                return NULL;
            }
            buf[len] = '\0';
            return buf;
        }
    }
    tp__cli_error("write: out of memory reading the patch from stdin");
    return NULL;
}

int
tp__cli_write(const tp__cli_args *args)
{
    uint64_t deadline = tp__cli_now_ms() + args->timeout_ms;
    tp__cli_session s;
    memset(&s, 0, sizeof s);
    char *from_stdin = NULL;
    const char *patch = args->patch;
    int rc = TP__CLI_OK;
    if (strcmp(patch, "-") == 0) {
        char why[300];
        if ((from_stdin = read_stdin()) == NULL)
            return TP__CLI_INTERNAL;
        if (tp__cli_check_patch(from_stdin, why, sizeof why) != 0) {
            tp__cli_error("%s (see transports write --help)", why);
            free(from_stdin);
            return TP__CLI_USAGE;
        }
        patch = from_stdin;
    }
    rc = open_synced(&s, args, deadline);
    if (rc != TP__CLI_OK)
        goto out;

    tp_error err = {0, ""};
    int64_t ref = tp_client_write(s.client, args->scope, args->id, patch, &err);
    if (ref < 0) {
        /* Refused before it left: the client knows the model is missing or read-only. */
        int code = (int)ref;
        tp__cli_error("write %s: %s: %s", args->target, tp_error_name(code),
                      err.message[0] ? err.message : tp_strerror(code));
        rc = tp__cli_exit_for_code(code);
        goto out;
    }

    int wrc = tp_client_wait(s.client, TP_CLIENT_WAIT_IDLE, left_ms(deadline));
    if (wrc == TP_OK) {
        /* Idle means answered; the callback that recorded it has run, or is about to. */
        wait_answer(&s, deadline);
    }
    pthread_mutex_lock(&s.mu);
    int answered = s.answered == 0 || s.answer_ref == ref ? s.answered : 0;
    int64_t rev = s.answer_rev;
    int code = s.answer_code;
    char message[sizeof s.answer_message];
    memcpy(message, s.answer_message, sizeof message);
    char why[sizeof s.why];
    memcpy(why, s.why, sizeof why);
    pthread_mutex_unlock(&s.mu);

    if (answered > 0) {
        if (printf("rev %lld\n", (long long)rev) < 0 || fflush(stdout) != 0) {
            tp__cli_error("cannot write to stdout: %s", strerror(errno));
            rc = TP__CLI_INTERNAL;
        }
    } else if (answered < 0) {
        tp__cli_error("write %s: %s: %s", args->target, tp_error_name(code),
                      message[0] ? message : tp_strerror(code));
        rc = tp__cli_exit_for_code(code);
    } else if (wrc == TP_ECLOSED) {
        tp__cli_error("write %s: the connection closed before the answer (%s): the write may "
                      "or may not have been applied",
                      args->target, why[0] ? why : "closed");
        rc = TP__CLI_UNREACHABLE;
    } else if (wrc == TP_OK) {
        tp__cli_error("write %s: the client went idle without an answer to write %lld",
                      args->target, (long long)ref);
        rc = TP__CLI_INTERNAL;
    } else {
        tp__cli_error("write %s: no answer within %g s: the write may or may not have been "
                      "applied",
                      args->target, args->timeout_ms / 1000.0);
        rc = TP__CLI_UNREACHABLE;
    }
out:
    if (s.client != NULL)
        tp__cli_session_close(&s);
    free(from_stdin);
    return rc;
}
