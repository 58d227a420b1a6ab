/* Log values: what a client sent can never forge a field of a log line. */
#include <string.h>

#include <criterion/criterion.h>

#include "util/log.h"

Test(log, plain_values_stay_bare)
{
    char out[TP__LOG_VALUE_MAX];
    cr_assert_str_eq(tp__log_value("alice", out, sizeof out), "alice");
    cr_assert_str_eq(tp__log_value("127.0.0.1", out, sizeof out), "127.0.0.1");
    cr_assert_str_eq(tp__log_value("/ws/b%C3%B6b", out, sizeof out), "/ws/b%C3%B6b");
    cr_assert_str_eq(tp__log_value("b\xc3\xb6", out, sizeof out), "b\xc3\xb6");
}

Test(log, other_values_are_quoted_and_escaped)
{
    char out[TP__LOG_VALUE_MAX];
    cr_assert_str_eq(tp__log_value("alice tenant=bob conn=c1", out, sizeof out),
                     "\"alice tenant=bob conn=c1\"");
    cr_assert_str_eq(tp__log_value("a\"b\\c", out, sizeof out), "\"a\\\"b\\\\c\"");
    cr_assert_str_eq(tp__log_value("a\nb\x7f", out, sizeof out), "\"a\\x0ab\\x7f\"");
    cr_assert_str_eq(tp__log_value("", out, sizeof out), "\"\"");
    cr_assert_str_eq(tp__log_value(NULL, out, sizeof out), "\"\"");
    cr_assert_str_eq(tp__log_value("a=b", out, sizeof out), "\"a=b\"");
}

Test(log, long_values_are_cut_inside_the_quotes)
{
    char key[257];
    memset(key, '\n', 256);
    key[256] = '\0';
    char out[TP__LOG_VALUE_MAX];
    tp__log_value(key, out, sizeof out);
    size_t n = strlen(out);
    cr_assert_lt(n, sizeof out);
    cr_assert_eq(out[0], '"');
    cr_assert_eq(out[n - 1], '"');
    cr_assert(strstr(out, "...\"") != NULL, "%s", out);
    char small[16];
    tp__log_value("a b c d e f g h i j", small, sizeof small);
    cr_assert_lt(strlen(small), sizeof small);
    cr_assert_eq(small[strlen(small) - 1], '"');
}
