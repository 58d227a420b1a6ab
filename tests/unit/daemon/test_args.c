/*
 * transportsd's command line and its log lines: every flag, every refusal,
 * and the exact shape of a line on stderr.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "transports.h"

/* parse runs tp__daemon_args_parse on a NULL-terminated list after "transportsd". */
static int
parse(tp__daemon_args *args, char *why, const char *const *argv_tail)
{
    char *argv[16] = {"transportsd"};
    int argc = 1;
    for (; argv_tail[argc - 1] != NULL; argc++)
        argv[argc] = (char *)argv_tail[argc - 1];
    why[0] = '\0';
    return tp__daemon_args_parse(argc, argv, args, why, 256);
}

#define PARSE(...) parse(&args, why, (const char *const[]){__VA_ARGS__, NULL})

Test(args, config_demo_listen_and_level)
{
    tp__daemon_args args;
    char why[256];
    cr_assert_eq(PARSE("--config", "a.json"), TP__DAEMON_ARGS_RUN, "%s", why);
    cr_assert_str_eq(args.config, "a.json");
    cr_assert_eq(args.demo, 0);
    cr_assert_null(args.listen);
    cr_assert_eq(args.log_level, TP_LOG_INFO);

    cr_assert_eq(PARSE("--demo", "--listen", "127.0.0.1:0", "--log-level", "debug"),
                 TP__DAEMON_ARGS_RUN, "%s", why);
    cr_assert_null(args.config);
    cr_assert_eq(args.demo, 1);
    cr_assert_str_eq(args.listen, "127.0.0.1:0");
    cr_assert_eq(args.log_level, TP_LOG_DEBUG);

    /* --name=value works as well. */
    cr_assert_eq(PARSE("--config=b.json", "--listen=[::1]:9", "--log-level=error"),
                 TP__DAEMON_ARGS_RUN, "%s", why);
    cr_assert_str_eq(args.config, "b.json");
    cr_assert_str_eq(args.listen, "[::1]:9");
    cr_assert_eq(args.log_level, TP_LOG_ERROR);

    cr_assert_eq(PARSE("--demo", "--log-level", "warn"), TP__DAEMON_ARGS_RUN);
    cr_assert_eq(args.log_level, TP_LOG_WARN);
}

Test(args, static_dir)
{
    tp__daemon_args args;
    char why[256];
    cr_assert_eq(PARSE("--demo", "--static-dir", "site"), TP__DAEMON_ARGS_RUN, "%s", why);
    cr_assert_str_eq(args.static_dir, "site");
    cr_assert_eq(PARSE("--config", "a.json", "--static-dir=www"), TP__DAEMON_ARGS_RUN, "%s", why);
    cr_assert_str_eq(args.static_dir, "www");
    cr_assert_eq(PARSE("--demo"), TP__DAEMON_ARGS_RUN, "%s", why);
    cr_assert_null(args.static_dir);
    cr_assert_eq(PARSE("--demo", "--static-dir", "a", "--static-dir", "b"), TP__DAEMON_ARGS_ERROR);
    cr_assert_str_eq(why, "--static-dir given twice");
    cr_assert_eq(PARSE("--demo", "--static-dir="), TP__DAEMON_ARGS_ERROR);
    cr_assert_str_eq(why, "--static-dir needs a directory");
    cr_assert_eq(PARSE("--demo", "--static-dir"), TP__DAEMON_ARGS_ERROR);
    cr_assert_str_eq(why, "--static-dir needs a value");
}

Test(args, help_and_version_win)
{
    tp__daemon_args args;
    char why[256];
    cr_assert_eq(PARSE("--help"), TP__DAEMON_ARGS_HELP);
    cr_assert_eq(PARSE("-h"), TP__DAEMON_ARGS_HELP);
    cr_assert_eq(PARSE("--demo", "--help"), TP__DAEMON_ARGS_HELP);
    cr_assert_eq(PARSE("--version"), TP__DAEMON_ARGS_VERSION);
    cr_assert_eq(PARSE("-V"), TP__DAEMON_ARGS_VERSION);
    const char *flags[] = {"--config FILE",     "--demo", "--listen HOST:PORT",
                           "--log-level LEVEL", "--help", "--version"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert_not_null(strstr(tp__daemon_usage, flags[i]), "usage lacks %s", flags[i]);
}

static void
refused(tp__daemon_args *args, char *why, int rc, const char *want)
{
    cr_assert_eq(rc, TP__DAEMON_ARGS_ERROR, "accepted, expected \"%s\"", want);
    cr_assert_str_eq(why, want);
    (void)args;
}

Test(args, refusals)
{
    tp__daemon_args args;
    char why[256];
    refused(&args, why, PARSE("--frobnicate"), "unknown option --frobnicate");
    refused(&args, why, PARSE("-x"), "unknown option -x");
    refused(&args, why, PARSE("--demo", "extra.json"), "unexpected argument \"extra.json\"");
    refused(&args, why, PARSE("--config"), "--config needs a value");
    refused(&args, why, PARSE("--config="), "--config needs a file name");
    refused(&args, why, PARSE("--demo", "--listen"), "--listen needs a value");
    refused(&args, why, PARSE("--demo", "--log-level"), "--log-level needs a value");
    refused(&args, why, PARSE("--demo", "--log-level", "loud"),
            "--log-level: expected error, warn, info or debug, got \"loud\"");
    refused(&args, why, PARSE("--demo=yes"), "--demo takes no value");
    refused(&args, why, PARSE("--demo", "--demo"), "--demo given twice");
    refused(&args, why, PARSE("--config", "a", "--config", "b"), "--config given twice");
    refused(&args, why, PARSE("--demo", "--listen", "a:1", "--listen", "b:2"),
            "--listen given twice");
    refused(&args, why, PARSE("--demo", "--log-level", "info", "--log-level", "debug"),
            "--log-level given twice");
    refused(&args, why, PARSE("--config", "a.json", "--demo"),
            "give either --config FILE or --demo, not both");
    refused(&args, why, PARSE("--listen", "127.0.0.1:0"), "give --config FILE or --demo");
}

Test(args, no_arguments_is_an_error)
{
    tp__daemon_args args;
    char why[256];
    char *argv[] = {"transportsd", NULL};
    cr_assert_eq(tp__daemon_args_parse(1, argv, &args, why, sizeof why), TP__DAEMON_ARGS_ERROR);
    cr_assert_str_eq(why, "give --config FILE or --demo");
}

/* ---- Log lines ---- */

Test(log, levels_by_name)
{
    cr_assert_eq(tp__daemon_log_level_parse("error"), TP_LOG_ERROR);
    cr_assert_eq(tp__daemon_log_level_parse("warn"), TP_LOG_WARN);
    cr_assert_eq(tp__daemon_log_level_parse("info"), TP_LOG_INFO);
    cr_assert_eq(tp__daemon_log_level_parse("debug"), TP_LOG_DEBUG);
    cr_assert_eq(tp__daemon_log_level_parse("INFO"), -1);
    cr_assert_eq(tp__daemon_log_level_parse("warning"), -1);
    cr_assert_eq(tp__daemon_log_level_parse(""), -1);
    cr_assert_str_eq(tp__daemon_log_level_name(TP_LOG_WARN), "warn");
}

Test(log, a_line_is_utc_time_level_and_event)
{
    /* 2026-11-26T13:45:00.123Z */
    struct timespec when = {1795700700, 123999999};
    char out[256];
    int n =
        tp__daemon_log_format(out, sizeof out, &when, TP_LOG_INFO, "listening addr=127.0.0.1:8080");
    cr_assert_str_eq(out, "2026-11-26T13:45:00.123Z info listening addr=127.0.0.1:8080");
    cr_assert_eq(n, (int)strlen(out));
    when.tv_nsec = 7000000;
    tp__daemon_log_format(out, sizeof out, &when, TP_LOG_DEBUG, "x");
    cr_assert_str_eq(out, "2026-11-26T13:45:00.007Z debug x");
}

Test(log, the_sink_writes_whole_lines)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    tp__daemon_log_stderr(TP_LOG_WARN, "disconnect tenant=alice conn=c1 code=1001", f);
    /* A line longer than the sink's stack buffer is written whole. */
    char *long_line = malloc(5001);
    memset(long_line, 'x', 5000);
    long_line[5000] = '\0';
    tp__daemon_log_stderr(TP_LOG_ERROR, long_line, f);
    rewind(f);
    char buf[6000];
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    /* "YYYY-MM-DDTHH:MM:SS.mmmZ " is 25 bytes. */
    cr_assert_eq(strlen(buf), 25 + strlen("warn disconnect tenant=alice conn=c1 code=1001\n"));
    cr_assert_eq(buf[10], 'T');
    cr_assert_eq(buf[23], 'Z');
    cr_assert_str_eq(buf + 25, "warn disconnect tenant=alice conn=c1 code=1001\n");
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    cr_assert_eq(strlen(buf), 25 + strlen("error ") + 5000 + 1);
    cr_assert_eq(strncmp(buf + 25, "error xxx", 9), 0);
    cr_assert_eq(buf[strlen(buf) - 1], '\n');
    cr_assert_null(fgets(buf, sizeof buf, f));
    fclose(f);
    free(long_line);
}

Test(log, daemon_lines_respect_the_level)
{
    FILE *f = tmpfile();
    tp__daemon_options opt = {NULL, tp__daemon_log_stderr, f, TP_LOG_WARN, NULL};
    tp__daemon_log(&opt, TP_LOG_INFO, "listening addr=%s:%d", "127.0.0.1", 1);
    tp__daemon_log(&opt, TP_LOG_WARN, "slow tick ms=%d", 12);
    rewind(f);
    char buf[256];
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    cr_assert_str_eq(buf + 25, "warn slow tick ms=12\n");
    cr_assert_null(fgets(buf, sizeof buf, f));
    fclose(f);
}
