/* Routes and query strings: from a request line to the key function's view. */
#include <criterion/criterion.h>

#include "core/route.h"
#include "transports.h"

static tp__route *
route(const char *pattern)
{
    tp_error err;
    tp__route *r = tp__route_new(pattern, &err);
    cr_assert_not_null(r, "%s: %s", pattern, err.message);
    return r;
}

Test(route, parameters_are_whole_segments_decoded)
{
    tp__route *r = route("/ws/{tenant}");
    tp_request *req = tp_request_new("/ws/alice");
    cr_assert_eq(tp__route_match(r, "/ws/alice", req), TP_OK);
    cr_assert_str_eq(tp_request_path_param(req, "tenant"), "alice");
    cr_assert_eq(tp__route_match(r, "/ws/al%20ice%2F", req), TP_OK);
    cr_assert_str_eq(tp_request_path_param(req, "tenant"), "al ice/");
    tp_request_free(req);
    tp__route_free(r);
}

Test(route, a_decoded_path_is_not_decoded_again)
{
    /* libwebsockets hands the server a decoded path: "/ws/%2562ob" arrives
     * as "/ws/%62ob", whose parameter is "%62ob", not "bob". */
    tp__route *r = route("/t/{org}/{tenant}");
    tp_request *req = tp_request_new("/");
    cr_assert_eq(tp__route_match_decoded(r, "/t/a b/%62ob", req), TP_OK);
    cr_assert_str_eq(tp_request_path_param(req, "org"), "a b");
    cr_assert_str_eq(tp_request_path_param(req, "tenant"), "%62ob");
    cr_assert_eq(tp__route_match_decoded(r, "/t/acme", req), TP_ENOTFOUND);
    cr_assert_eq(tp__route_match_decoded(r, "/t//bob", req), TP_ENOTFOUND);
    tp_request_free(req);
    tp__route_free(r);
}

Test(route, matching_is_exact)
{
    tp__route *r = route("/t/{org}/{tenant}");
    tp_request *req = tp_request_new("/");
    const char *misses[] = {"/t/acme",     "/t/acme/",   "/t//bob", "/t/acme/bob/", "/t/acme/bob/x",
                            "/x/acme/bob", "t/acme/bob", "",        "/t/acme/b%zz", "/t/acme/b%00"};
    for (size_t i = 0; i < sizeof misses / sizeof *misses; i++)
        cr_assert_eq(tp__route_match(r, misses[i], req), TP_ENOTFOUND, "%s", misses[i]);
    cr_assert_null(tp_request_path_param(req, "org"), "a miss sets nothing");
    cr_assert_eq(tp__route_match(r, "/t/acme/bob", req), TP_OK);
    cr_assert_str_eq(tp_request_path_param(req, "org"), "acme");
    cr_assert_str_eq(tp_request_path_param(req, "tenant"), "bob");
    tp_request_free(req);
    tp__route_free(r);
    r = route("/");
    req = tp_request_new("/");
    cr_assert_eq(tp__route_match(r, "/", req), TP_OK);
    cr_assert_eq(tp__route_match(r, "/x", req), TP_ENOTFOUND);
    tp_request_free(req);
    tp__route_free(r);
}

Test(route, bad_patterns_are_refused)
{
    const char *bad[] = {"ws/{tenant}", "/ws/{}", "/ws/x{tenant}", "/ws/{tenant", "/{a}/{a}", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tp_error err;
        cr_assert_null(tp__route_new(bad[i], &err), "%s", bad[i] ? bad[i] : "NULL");
        cr_assert_eq(err.code, TP_EARG);
        cr_assert(strstr(err.message, "route") != NULL, "%s", err.message);
    }
}

Test(route, query_strings)
{
    tp_request *req = tp_request_new("/");
    cr_assert_eq(tp__query_parse("token=a%2Bb+c&resume=1&flag&token=second&=x&&", req), TP_OK);
    cr_assert_str_eq(tp_request_query(req, "token"), "a+b c", "decoded, the first value wins");
    cr_assert_str_eq(tp_request_query(req, "resume"), "1");
    cr_assert_str_eq(tp_request_query(req, "flag"), "");
    cr_assert_null(tp_request_query(req, ""));
    cr_assert_eq(tp__query_parse("a=%4", req), TP_EBADREQUEST);
    cr_assert_eq(tp__query_parse("a=%00", req), TP_EBADREQUEST);
    cr_assert_eq(tp__query_parse(NULL, req), TP_OK);
    tp_request_free(req);
    char out[16];
    cr_assert_eq(tp__percent_decode("%41%62c", 7, out, 0), 3);
    cr_assert_str_eq(out, "Abc");
    cr_assert_eq(tp__percent_decode("a+b", 3, out, 0), 3);
    cr_assert_str_eq(out, "a+b", "'+' is a space only in queries");
    cr_assert_eq(tp__percent_decode("%", 1, out, 0), -1);
    cr_assert_eq(tp__percent_decode("%4", 2, out, 0), -1);
    cr_assert_eq(tp__percent_decode("%4g", 3, out, 0), -1);
}
