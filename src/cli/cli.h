/*
 * transports, the command-line tool: what its files share. The tool is a
 * client of the public API only (transports.h): args.c reads the command
 * line, session.c connects and reports why a connection failed, watch.c
 * prints events as they arrive, oneshot.c does get and write.
 */
#ifndef TP_CLI_CLI_H
#define TP_CLI_CLI_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "transports.h"

/* Exit statuses, as --help and docs/cli.md list them. */
enum {
    TP__CLI_OK = 0,          /* done */
    TP__CLI_REFUSED = 1,     /* the server refused: an error code, or the handshake */
    TP__CLI_USAGE = 2,       /* a bad command line */
    TP__CLI_UNREACHABLE = 3, /* no connection, or none that synced in time */
    TP__CLI_INTERNAL = 4     /* anything else */
};

typedef enum { TP__CLI_NONE = 0, TP__CLI_WATCH, TP__CLI_GET, TP__CLI_WRITE } tp__cli_command;

/* What tp__cli_args_parse returns. */
enum { TP__CLI_ARGS_RUN = 0, TP__CLI_ARGS_HELP, TP__CLI_ARGS_VERSION, TP__CLI_ARGS_ERROR };

/* The command line, read. Strings point into argv. */
typedef struct tp__cli_args {
    tp__cli_command cmd;
    const char *url;
    const char *target;     /* "SCOPE/ID" as given (get, write) */
    const char *scope;      /* "private" or "shared" (static strings) */
    const char *id;         /* the part of target after the first '/' */
    const char *patch;      /* write: a JSON object, or "-" for stdin */
    const char *token;      /* --token, else $TRANSPORTS_TOKEN, else NULL */
    const char *token_file; /* --token-file: read again before each connection and expiry */
    const char *ca_file;
    unsigned timeout_ms; /* --timeout (get, write): 10 s by default */
    int json;            /* watch --json */
    int insecure;        /* --insecure */
    int verbose;         /* --verbose: the client's log lines on stderr */
} tp__cli_args;

/* tp__cli_check_patch: 0 when patch is a JSON object, else -1 with why ("write: ..."). */
int tp__cli_check_patch(const char *patch, char *why, size_t why_size);

/* The usage texts: the tool's, and each command's (for `COMMAND --help`). */
extern const char tp__cli_usage[];
const char *tp__cli_command_usage(tp__cli_command cmd);

/*
 * tp__cli_args_parse reads argv. Returns TP__CLI_ARGS_RUN, _HELP (args->cmd
 * says whose help: TP__CLI_NONE for the tool's), _VERSION, or _ERROR with
 * why filled (one line, no "transports: " prefix).
 */
int tp__cli_args_parse(int argc, char *const *argv, tp__cli_args *args, char *why, size_t why_size);

/*
 * A connection as the tool uses it: the client, and what its callbacks saw,
 * under mu. Callbacks run on the client's thread; the main thread waits on
 * cv for an outcome.
 */
typedef struct tp__cli_session {
    const tp__cli_args *args;
    tp_client *client;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tp_client_state state; /* the last state the callback reported */
    char why[200];         /* its reason, or "" */
    int was_live;          /* LIVE was reached at least once */

    /* The answer to a write (oneshot.c). */
    int answered; /* 1: ack, -1: error */
    int64_t answer_ref;
    int64_t answer_rev;
    int answer_code;
    char answer_message[256];

    /* watch.c: the thread to wake with SIGUSR1 when the client gives up. */
    pthread_t main_thread;
    int wake_main;
    int output_failed; /* stdout could not be written */
    int stopping;      /* the tool is stopping the client: its last states are not news */
} tp__cli_session;

/*
 * tp__cli_session_open makes and starts a client for args->url with cb
 * (whose state, ack and error callbacks it may wrap: see session.c) and
 * no_reconnect as given. Returns TP__CLI_OK, or an exit status after
 * printing the error line.
 */
int tp__cli_session_open(tp__cli_session *s, const tp__cli_args *args,
                         const tp_client_callbacks *cb, int no_reconnect);

/* tp__cli_session_close stops and frees the client. */
void tp__cli_session_close(tp__cli_session *s);

/*
 * tp__cli_session_sync waits until the client is LIVE, within timeout_ms.
 * Returns TP__CLI_OK, or an exit status after printing the error line
 * (refused handshake: 1; cannot connect, lost, timed out: 3).
 */
int tp__cli_session_sync(tp__cli_session *s, unsigned timeout_ms);

/* tp__cli_session_record is the state callback's part every command shares
 * (call it under no lock, from the state callback). */
void tp__cli_session_record(tp__cli_session *s, tp_client_state state, const char *why);

/* tp__cli_session_wake tells the main thread (watch) to look at the session again. */
void tp__cli_session_wake(tp__cli_session *s);

/* tp__cli_now_ms reads the monotonic clock. */
uint64_t tp__cli_now_ms(void);

/* tp__cli_state_name: "connecting", "live", ... */
const char *tp__cli_state_name(tp_client_state state);

/* tp__cli_exit_for_code maps a TP_E... code that the server sent to an exit status. */
int tp__cli_exit_for_code(int code);

/* tp__cli_error prints "transports: " and the formatted line on stderr. */
void tp__cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The commands. Each returns the exit status. */
int tp__cli_watch(const tp__cli_args *args);
int tp__cli_get(const tp__cli_args *args);
int tp__cli_write(const tp__cli_args *args);

#endif /* TP_CLI_CLI_H */
