/*
 * The transports tool's command line. Options may come before or after the
 * command and its arguments, as "--name value" or "--name=value"; "--" ends
 * the options. --help wins over every other mistake, so that
 * `transports write --help` helps even without a URL.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define EXIT_STATUS_TEXT                                                                           \
    "Exit status:\n"                                                                               \
    "  0  done (watch: stopped by SIGINT or SIGTERM); --help; --version\n"                         \
    "  1  refused by the server: an error (forbidden, invalid, not_found, rejected,\n"             \
    "     bad_request, duplicate, too_large) or the handshake (HTTP 400, 401, 403, 404)\n"         \
    "  2  a bad command line\n"                                                                    \
    "  3  unreachable: cannot connect (refused, unknown host, HTTP 503), not synced\n"             \
    "     within the timeout, or the connection lost before the answer\n"                          \
    "  4  anything else (the server's internal or rate_limited, out of memory)\n"                  \
    "Every error is one line on stderr, starting with \"transports: \".\n"

#define COMMON_OPTIONS_TEXT                                                                        \
    "  --token T          send \"Authorization: Bearer T\" (default: $TRANSPORTS_TOKEN)\n"         \
    "  --token-file FILE  the token is FILE's content, read again before each connection\n"        \
    "                     and before the token expires (sent then in an auth message)\n"           \
    "  --insecure         wss://: do not verify the server's certificate (tests only)\n"           \
    "  --ca-file FILE     wss://: trust this PEM bundle instead of the system's\n"                 \
    "  --verbose          the client's log (connects, retries) on stderr\n"

const char tp__cli_usage[] =
    "usage: transports watch URL [--json] [OPTIONS]\n"
    "       transports get URL SCOPE/ID [--timeout SECONDS] [OPTIONS]\n"
    "       transports write URL SCOPE/ID PATCH [--timeout SECONDS] [OPTIONS]\n"
    "       transports COMMAND --help\n"
    "       transports --help | --version\n"
    "\n"
    "A client of a transports server (transportsd): it keeps a replica of every\n"
    "model the URL's tenant can see (docs/cli.md).\n"
    "\n"
    "  watch  print each snapshot and change as it arrives, until Ctrl-C or SIGTERM;\n"
    "         reconnects by itself\n"
    "  get    print a model's value, as one line of JSON\n"
    "  write  apply a JSON merge patch (RFC 7396) to a model; print the rev it made\n"
    "\n"
    "URL is the server's route with the tenant: ws://127.0.0.1:8080/ws/alice.\n"
    "SCOPE/ID names a model: private/notes, shared/roadmap.\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_TEXT
    "  --timeout SECONDS  get, write: give up after this long (default 10)\n"
    "  --json             watch: one JSON object per event and line\n"
    "  --help             show this (or a command's usage) and exit\n"
    "  --version          show the version and exit\n"
    "\n" EXIT_STATUS_TEXT;

static const char watch_usage[] =
    "usage: transports watch URL [--json] [--token T] [--insecure] [--ca-file FILE]\n"
    "\n"
    "Connects to URL and prints every model the tenant can see as it arrives, then\n"
    "each change, until Ctrl-C or SIGTERM (exit status 0). When the connection\n"
    "drops it reconnects by itself, resumes, and says so on stderr.\n"
    "\n"
    "By default, one line per event on stdout:\n"
    "  shared/roadmap rev 1 snapshot (write): {\"title\":\"Roadmap\",\"body\":\"\"}\n"
    "  shared/roadmap rev 2 by c1: {\"body\":\"Q1: ship the server\"}\n"
    "  shared/roadmap access read\n"
    "  shared/roadmap removed\n"
    "and the connection's state on stderr (\"transports: live\").\n"
    "\n"
    "With --json, one JSON object per line on stdout, the state included:\n"
    "  {\"event\":\"snapshot\",\"scope\",\"id\",\"rev\",\"access\",\"value\"}\n"
    "  {\"event\":\"patch\",\"scope\",\"id\",\"from\",\"rev\",\"patch\",\"origin\",\"value\"}\n"
    "  {\"event\":\"access\",\"scope\",\"id\",\"access\"}\n"
    "  {\"event\":\"removed\",\"scope\",\"id\"}\n"
    "  {\"event\":\"state\",\"state\",\"why\"}  (why: a reason, or null)\n"
    "  {\"event\":\"error\",\"code\",\"message\"}\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_TEXT "  --json             JSON lines, as above\n"
    "\n" EXIT_STATUS_TEXT;

static const char get_usage[] =
    "usage: transports get URL SCOPE/ID [--timeout SECONDS] [--token T] [--insecure]\n"
    "                      [--ca-file FILE]\n"
    "\n"
    "Connects to URL, waits until synced, and prints the model's value as one line\n"
    "of JSON on stdout:\n"
    "  $ transports get ws://127.0.0.1:8080/ws/alice shared/roadmap\n"
    "  {\"title\":\"Roadmap\",\"body\":\"\"}\n"
    "A model the tenant cannot see is not_found (exit status 1).\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_TEXT
    "  --timeout SECONDS  give up after this long (default 10): exit status 3\n"
    "\n" EXIT_STATUS_TEXT;

static const char write_usage[] =
    "usage: transports write URL SCOPE/ID PATCH [--timeout SECONDS] [--token T]\n"
    "                        [--insecure] [--ca-file FILE]\n"
    "\n"
    "Connects to URL, waits until synced, writes PATCH (a JSON object: an RFC 7396\n"
    "merge patch; null removes a field) to the model, waits for the server's answer\n"
    "and prints the rev that holds the write:\n"
    "  $ transports write ws://127.0.0.1:8080/ws/alice shared/roadmap '{\"body\":\"Q1\"}'\n"
    "  rev 2\n"
    "PATCH \"-\" reads the patch from stdin (for patches too long for a command line).\n"
    "A refused write prints the server's error and exits with status 1:\n"
    "  transports: write shared/roadmap: forbidden: ...\n"
    "\n"
    "Options:\n" COMMON_OPTIONS_TEXT
    "  --timeout SECONDS  give up after this long (default 10): exit status 3\n"
    "\n" EXIT_STATUS_TEXT;

const char *
tp__cli_command_usage(tp__cli_command cmd)
{
    switch (cmd) {
    case TP__CLI_WATCH: return watch_usage;
    case TP__CLI_GET: return get_usage;
    case TP__CLI_WRITE: return write_usage;
    default: return tp__cli_usage;
    }
}

static const char *const command_names[] = {"", "watch", "get", "write"};

static tp__cli_command
command_of(const char *name)
{
    for (int i = TP__CLI_WATCH; i <= TP__CLI_WRITE; i++)
        if (strcmp(name, command_names[i]) == 0)
            return (tp__cli_command)i;
    return TP__CLI_NONE;
}

/* parse_timeout reads "--timeout SECONDS": a positive number up to a day. */
static int
parse_timeout(const char *v, unsigned *ms, char *why, size_t why_size)
{
    char *end = NULL;
    errno = 0;
    double s = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(s) || s <= 0 || s > 86400) {
        snprintf(why, why_size, "--timeout: expected seconds between 0 and 86400, got \"%.40s\"",
                 v);
        return -1;
    }
    /* Rounded up, without libm's ceil (the tool links no libm). */
    double m = s * 1000.0;
    unsigned u = (unsigned)m;
    *ms = (double)u < m ? u + 1 : u;
    return 0;
}

/* parse_target splits "SCOPE/ID". */
static int
parse_target(tp__cli_args *args, const char *cmd, char *why, size_t why_size)
{
    const char *t = args->target;
    const char *slash = strchr(t, '/');
    size_t n = slash != NULL ? (size_t)(slash - t) : 0;
    if (slash != NULL && n == 7 && strncmp(t, "private", 7) == 0)
        args->scope = "private";
    else if (slash != NULL && n == 6 && strncmp(t, "shared", 6) == 0)
        args->scope = "shared";
    if (args->scope == NULL || slash[1] == '\0') {
        snprintf(why, why_size,
                 "%s: expected SCOPE/ID such as private/notes or shared/roadmap, got \"%.60s\"",
                 cmd, t);
        return -1;
    }
    args->id = slash + 1;
    return 0;
}

/* tp__cli_check_patch: PATCH must be a JSON object; jansson says where it is not JSON. */
int
tp__cli_check_patch(const char *patch, char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *v = json_loads(patch, JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        snprintf(why, why_size, "write: PATCH is not JSON: %s (column %d)", jerr.text, jerr.column);
        return -1;
    }
    int ok = json_is_object(v);
    if (!ok)
        snprintf(why, why_size, "write: PATCH must be a JSON object (a merge patch), got %s",
                 json_is_array(v)     ? "an array"
                 : json_is_string(v)  ? "a string"
                 : json_is_null(v)    ? "null"
                 : json_is_boolean(v) ? "a boolean"
                                      : "a number");
    json_decref(v);
    return ok ? 0 : -1;
}

int
tp__cli_args_parse(int argc, char *const *argv, tp__cli_args *args, char *why, size_t why_size)
{
    memset(args, 0, sizeof *args);
    args->timeout_ms = 10000;
    const char *pos[8];
    int npos = 0, help = 0, version = 0, failed = 0, timeout_seen = 0, options_done = 0;
    char first_why[256] = "";
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (!failed)                                                                               \
            snprintf(first_why, sizeof first_why, __VA_ARGS__);                                    \
        failed = 1;                                                                                \
    } while (0)

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (npos < (int)(sizeof pos / sizeof pos[0]))
                pos[npos] = arg;
            npos++;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = 1;
            continue;
        }
        char name[64];
        const char *inline_value = NULL;
        const char *eq = strchr(arg, '=');
        size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        if (n >= sizeof name)
            n = sizeof name - 1;
        memcpy(name, arg, n);
        name[n] = '\0';
        if (eq != NULL)
            inline_value = eq + 1;

        int takes_value = strcmp(name, "--token") == 0 || strcmp(name, "--timeout") == 0 ||
                          strcmp(name, "--ca-file") == 0 || strcmp(name, "--token-file") == 0;
        const char *v = inline_value;
        if (takes_value && v == NULL) {
            if (i + 1 >= argc) {
                FAIL("%s needs a value", name);
                continue;
            }
            v = argv[++i];
        } else if (!takes_value && inline_value != NULL) {
            FAIL("%s takes no value", name);
            continue;
        }

        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            help = 1;
        } else if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
            version = 1;
        } else if (strcmp(name, "--json") == 0) {
            if (args->json)
                FAIL("--json given twice");
            args->json = 1;
        } else if (strcmp(name, "--verbose") == 0 || strcmp(name, "-v") == 0) {
            args->verbose = 1;
        } else if (strcmp(name, "--insecure") == 0) {
            if (args->insecure)
                FAIL("--insecure given twice");
            args->insecure = 1;
        } else if (strcmp(name, "--token") == 0) {
            if (args->token != NULL)
                FAIL("--token given twice");
            else if (v[0] == '\0')
                FAIL("--token needs a value");
            args->token = v;
        } else if (strcmp(name, "--token-file") == 0) {
            if (args->token_file != NULL)
                FAIL("--token-file given twice");
            else if (v[0] == '\0')
                FAIL("--token-file needs a file name");
            args->token_file = v;
        } else if (strcmp(name, "--ca-file") == 0) {
            if (args->ca_file != NULL)
                FAIL("--ca-file given twice");
            else if (v[0] == '\0')
                FAIL("--ca-file needs a file name");
            args->ca_file = v;
        } else if (strcmp(name, "--timeout") == 0) {
            char twhy[128];
            if (timeout_seen)
                FAIL("--timeout given twice");
            else if (parse_timeout(v, &args->timeout_ms, twhy, sizeof twhy) != 0)
                FAIL("%s", twhy);
            timeout_seen = 1;
        } else {
            FAIL("unknown option %.60s", arg);
        }
    }
#undef FAIL

    if (npos > 0)
        args->cmd = command_of(pos[0]);
    if (help)
        return TP__CLI_ARGS_HELP; /* args->cmd says whose (NONE: the tool's) */
    if (failed) {
        snprintf(why, why_size, "%s", first_why);
        return TP__CLI_ARGS_ERROR;
    }
    if (version)
        return TP__CLI_ARGS_VERSION;
    if (npos == 0) {
        snprintf(why, why_size, "give a command: watch, get or write");
        return TP__CLI_ARGS_ERROR;
    }
    if (args->cmd == TP__CLI_NONE) {
        snprintf(why, why_size, "unknown command \"%.40s\": expected watch, get or write", pos[0]);
        return TP__CLI_ARGS_ERROR;
    }
    const char *cmd = command_names[args->cmd];
    int want = args->cmd == TP__CLI_WATCH ? 2 : args->cmd == TP__CLI_GET ? 3 : 4;
    static const char *const what[] = {"", "URL", "URL SCOPE/ID", "URL SCOPE/ID PATCH"};
    if (npos < want) {
        snprintf(why, why_size, "%s: missing %s (expected %s %s)", cmd,
                 npos == 1   ? "URL"
                 : npos == 2 ? "SCOPE/ID"
                             : "PATCH",
                 cmd, what[want - 1]);
        return TP__CLI_ARGS_ERROR;
    }
    if (npos > want) {
        snprintf(why, why_size, "%s: unexpected argument \"%.60s\" (expected %s %s)", cmd,
                 pos[want < (int)(sizeof pos / sizeof pos[0]) ? want : 0], cmd, what[want - 1]);
        return TP__CLI_ARGS_ERROR;
    }
    if (args->json && args->cmd != TP__CLI_WATCH) {
        snprintf(why, why_size, "%s: --json is for watch only", cmd);
        return TP__CLI_ARGS_ERROR;
    }
    if (timeout_seen && args->cmd == TP__CLI_WATCH) {
        snprintf(why, why_size, "watch: --timeout is for get and write only");
        return TP__CLI_ARGS_ERROR;
    }
    args->url = pos[1];
    if (args->url[0] == '\0') {
        snprintf(why, why_size, "%s: the URL is empty", cmd);
        return TP__CLI_ARGS_ERROR;
    }
    if (args->cmd != TP__CLI_WATCH) {
        args->target = pos[2];
        if (parse_target(args, cmd, why, why_size) != 0)
            return TP__CLI_ARGS_ERROR;
    }
    if (args->cmd == TP__CLI_WRITE) {
        args->patch = pos[3];
        /* "-": read from stdin, and checked there (oneshot.c). */
        if (strcmp(args->patch, "-") != 0 && tp__cli_check_patch(args->patch, why, why_size) != 0)
            return TP__CLI_ARGS_ERROR;
    }
    if (args->token != NULL && args->token_file != NULL) {
        snprintf(why, why_size, "--token and --token-file: give one");
        return TP__CLI_ARGS_ERROR;
    }
    if (args->token == NULL && args->token_file == NULL) {
        const char *t = getenv("TRANSPORTS_TOKEN");
        if (t != NULL && t[0] != '\0')
            args->token = t;
    }
    return TP__CLI_ARGS_RUN;
}
