/*
 * transports: a command-line client of a transports server (docs/cli.md).
 * `watch` prints events as they arrive, `get` prints a model's value,
 * `write` applies a merge patch. Each error is one line on stderr, and the
 * exit status tells refused (1) from a bad command line (2), an unreachable
 * server (3) and anything else (4).
 */
#include <signal.h>
#include <stdio.h>

#include "cli.h"

int
main(int argc, char **argv)
{
    tp__cli_args args;
    char why[512];
    switch (tp__cli_args_parse(argc, argv, &args, why, sizeof why)) {
    case TP__CLI_ARGS_HELP: fputs(tp__cli_command_usage(args.cmd), stdout); return TP__CLI_OK;
    case TP__CLI_ARGS_VERSION: printf("transports %s\n", tp_version()); return TP__CLI_OK;
    case TP__CLI_ARGS_ERROR:
        fprintf(stderr, "transports: %s (see transports --help)\n", why);
        return TP__CLI_USAGE;
    default: break;
    }

    /* A closed stdout (watch | head) or a dropped socket must be an error, not a kill. */
    signal(SIGPIPE, SIG_IGN);
    /* Events are lines: each reaches a pipe as soon as it is printed. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    switch (args.cmd) {
    case TP__CLI_WATCH: return tp__cli_watch(&args);
    case TP__CLI_GET: return tp__cli_get(&args);
    case TP__CLI_WRITE: return tp__cli_write(&args);
    default: return TP__CLI_USAGE;
    }
}
