/*
 * transportsd's command line. Kept apart from main.c so that the tests can
 * check every refusal without running a process.
 */
#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"

const char tp__daemon_usage[] =
    "usage: transportsd --config FILE [--listen HOST:PORT] [--static-dir DIR] [--log-level LEVEL]\n"
    "       transportsd --demo [--listen HOST:PORT] [--static-dir DIR] [--log-level LEVEL]\n"
    "\n"
    "Serves typed JSON models over WebSocket for many tenants, set up by a JSON\n"
    "config file (see docs/daemon.md).\n"
    "\n"
    "  --config FILE       the configuration file\n"
    "  --demo              the guide's demo: tenants alice and bob, each with private\n"
    "                      notes, and a shared roadmap alice writes and bob reads;\n"
    "                      the demo page is served at /\n"
    "  --listen HOST:PORT  listen here instead of the config's \"listen\" (port 0: any\n"
    "                      free port; the log's \"listening addr=\" line tells which)\n"
    "  --static-dir DIR    serve this directory's files at / (instead of the config's\n"
    "                      \"static_dir\"; with --demo, instead of the demo page)\n"
    "  --log-level LEVEL   error, warn, info (the default) or debug\n"
    "  --help              show this and exit\n"
    "  --version           show the version and exit\n"
    "\n"
    "Logs go to stderr. SIGINT and SIGTERM stop the server gracefully.\n"
    "Exit status: 0 after a stop or for --help and --version; 1 when the server\n"
    "cannot start (the address is taken); 2 for a bad command line or config.\n";

/*
 * value takes an option's value, from "--name=value" or from the next
 * argument. Returns it, or NULL with why filled.
 */
static const char *
value(int argc, char *const *argv, int *i, const char *name, const char *inline_value, char *why,
      size_t why_size)
{
    if (inline_value != NULL)
        return inline_value;
    if (*i + 1 >= argc) {
        snprintf(why, why_size, "%s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

int
tp__daemon_args_parse(int argc, char *const *argv, tp__daemon_args *args, char *why,
                      size_t why_size)
{
    memset(args, 0, sizeof *args);
    args->log_level = TP_LOG_INFO;
    int log_level_seen = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char name[64];
        const char *inline_value = NULL;
        const char *eq = strchr(arg, '=');
        size_t n = eq != NULL && arg[0] == '-' ? (size_t)(eq - arg) : strlen(arg);
        if (n >= sizeof name)
            n = sizeof name - 1;
        memcpy(name, arg, n);
        name[n] = '\0';
        if (eq != NULL && arg[0] == '-')
            inline_value = eq + 1;

        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            return TP__DAEMON_ARGS_HELP;
        } else if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
            return TP__DAEMON_ARGS_VERSION;
        } else if (strcmp(name, "--demo") == 0) {
            if (inline_value != NULL) {
                snprintf(why, why_size, "--demo takes no value");
                return TP__DAEMON_ARGS_ERROR;
            }
            if (args->demo) {
                snprintf(why, why_size, "--demo given twice");
                return TP__DAEMON_ARGS_ERROR;
            }
            args->demo = 1;
        } else if (strcmp(name, "--config") == 0) {
            if (args->config != NULL) {
                snprintf(why, why_size, "--config given twice");
                return TP__DAEMON_ARGS_ERROR;
            }
            if ((args->config = value(argc, argv, &i, name, inline_value, why, why_size)) == NULL)
                return TP__DAEMON_ARGS_ERROR;
            if (args->config[0] == '\0') {
                snprintf(why, why_size, "--config needs a file name");
                return TP__DAEMON_ARGS_ERROR;
            }
        } else if (strcmp(name, "--listen") == 0) {
            if (args->listen != NULL) {
                snprintf(why, why_size, "--listen given twice");
                return TP__DAEMON_ARGS_ERROR;
            }
            if ((args->listen = value(argc, argv, &i, name, inline_value, why, why_size)) == NULL)
                return TP__DAEMON_ARGS_ERROR;
        } else if (strcmp(name, "--static-dir") == 0) {
            if (args->static_dir != NULL) {
                snprintf(why, why_size, "--static-dir given twice");
                return TP__DAEMON_ARGS_ERROR;
            }
            if ((args->static_dir = value(argc, argv, &i, name, inline_value, why, why_size)) ==
                NULL)
                return TP__DAEMON_ARGS_ERROR;
            if (args->static_dir[0] == '\0') {
                snprintf(why, why_size, "--static-dir needs a directory");
                return TP__DAEMON_ARGS_ERROR;
            }
        } else if (strcmp(name, "--log-level") == 0) {
            const char *v = value(argc, argv, &i, name, inline_value, why, why_size);
            if (v == NULL)
                return TP__DAEMON_ARGS_ERROR;
            int level = tp__daemon_log_level_parse(v);
            if (level < 0) {
                snprintf(why, why_size,
                         "--log-level: expected error, warn, info or debug, got \"%.40s\"", v);
                return TP__DAEMON_ARGS_ERROR;
            }
            if (log_level_seen) {
                snprintf(why, why_size, "--log-level given twice");
                return TP__DAEMON_ARGS_ERROR;
            }
            log_level_seen = 1;
            args->log_level = level;
        } else if (arg[0] == '-') {
            snprintf(why, why_size, "unknown option %.60s", arg);
            return TP__DAEMON_ARGS_ERROR;
        } else {
            snprintf(why, why_size, "unexpected argument \"%.60s\"", arg);
            return TP__DAEMON_ARGS_ERROR;
        }
    }
    if (args->config != NULL && args->demo) {
        snprintf(why, why_size, "give either --config FILE or --demo, not both");
        return TP__DAEMON_ARGS_ERROR;
    }
    if (args->config == NULL && !args->demo) {
        snprintf(why, why_size, "give --config FILE or --demo");
        return TP__DAEMON_ARGS_ERROR;
    }
    return TP__DAEMON_ARGS_RUN;
}
