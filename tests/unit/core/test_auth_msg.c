/*
 * Token authentication in the sans-IO core: tp_conn_expire closes with
 * 4401 once the credential's expiry has passed (time passed in), and the
 * `auth` message renews it through the hub's verifier, answered with `ack`
 * or `error`; a token for another tenant, a refused or expired one, a
 * missing token and a hub without a verifier change nothing. Every
 * allocation failed in turn leaves no leak.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "support.h"
#include "transports.h"

static tp_hub *hub;
static int64_t now = 1700000000000;
static int verify_calls;

/* A verifier for tests: "ok:<tenant>:<expires_at_ms>" is accepted, "boom"
 * fails internally, anything else is refused. */
static int
fake_verify(const char *token, size_t len, int64_t now_ms, tp_credential *out, tp_error *err,
            void *user)
{
    (void)user;
    (void)now_ms;
    verify_calls++;
    char t[256];
    if (len >= sizeof t)
        len = sizeof t - 1;
    memcpy(t, token, len);
    t[len] = '\0';
    if (strcmp(t, "boom") == 0) {
        snprintf(err->message, sizeof err->message, "token internal: out of memory");
        err->code = TP_EINTERNAL;
        return TP_EINTERNAL;
    }
    char *colon2;
    if (strncmp(t, "ok:", 3) != 0 || (colon2 = strchr(t + 3, ':')) == NULL) {
        snprintf(err->message, sizeof err->message, "token bad_signature: refused");
        err->code = TP_EFORBIDDEN;
        return TP_EFORBIDDEN;
    }
    *colon2 = '\0';
    snprintf(out->tenant, sizeof out->tenant, "%s", t + 3);
    out->expires_at_ms = strtoll(colon2 + 1, NULL, 10);
    return TP_OK;
}

static void
setup_with(tp_verify_fn verify)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.verify = verify;
    tp_error err;
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    verify_calls = 0;
}

static void
setup(void)
{
    setup_with(fake_verify);
}

static void
teardown(void)
{
    tp_hub_free(hub);
}

TestSuite(auth, .init = setup, .fini = teardown);

static tp_conn *
open_alice(int64_t expires_at)
{
    tp_error err;
    tp_conn *c = tp_conn_open(hub, "alice", 0, &err);
    cr_assert_not_null(c, "%s", err.message);
    tp_conn_set_expiry(c, expires_at);
    json_decref(tpt_drain(c)); /* hello, synced */
    return c;
}

/* The one message a feed answered with. */
static json_t *
answer(tp_conn *c, const char *text)
{
    cr_assert_eq(tpt_feed(c, text), TP_OK);
    json_t *msgs = tpt_drain(c);
    cr_assert_eq(json_array_size(msgs), 1, "one answer to %s", text);
    json_t *m = json_incref(json_array_get(msgs, 0));
    json_decref(msgs);
    return m;
}

static void
assert_error(json_t *m, const char *code, const char *in_message)
{
    cr_assert_str_eq(json_string_value(json_object_get(m, "type")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(m, "code")), code);
    cr_assert(strstr(json_string_value(json_object_get(m, "message")), in_message) != NULL, "%s",
              json_string_value(json_object_get(m, "message")));
}

Test(auth, expiry_closes_with_4401_at_the_time_passed_in)
{
    tp_conn *c = open_alice(now + 5000);
    cr_assert_eq(tp_conn_expiry(c), now + 5000);
    cr_assert_eq(tp_conn_expire(c, now + 4999), 0);
    cr_assert_eq(tp_conn_close_code(c), 0);
    cr_assert_eq(tp_conn_expire(c, now + 5000), 4401);
    cr_assert_eq(tp_conn_close_code(c), 4401);
    /* Closing: what else arrives is refused. */
    cr_assert_eq(tp_conn_feed(c, "{\"type\":\"ping\",\"ref\":1}", 23), TP_ECLOSED);
    tp_conn_close(c);
}

Test(auth, no_expiry_never_closes)
{
    tp_conn *c = open_alice(0);
    cr_assert_eq(tp_conn_expire(c, INT64_MAX), 0);
    tp_conn_close(c);
}

Test(auth, a_fresh_token_moves_the_expiry)
{
    tp_conn *c = open_alice(now + 5000);
    char msg[128];
    snprintf(msg, sizeof msg, "{\"type\":\"auth\",\"token\":\"ok:alice:%lld\",\"ref\":3}",
             (long long)(now + 600000));
    json_t *m = answer(c, msg);
    char *text = json_dumps(m, JSON_COMPACT);
    cr_assert(tpt_json_text_eq(text, "{\"type\":\"ack\",\"ref\":3}"), "%s", text);
    free(text);
    json_decref(m);
    cr_assert_eq(tp_conn_expiry(c), now + 600000);
    cr_assert_eq(tp_conn_expire(c, now + 5000), 0);
    /* Without a ref: an ack without one. */
    m = answer(c, "{\"type\":\"auth\",\"token\":\"ok:alice:0\"}");
    cr_assert_str_eq(json_string_value(json_object_get(m, "type")), "ack");
    cr_assert_null(json_object_get(m, "ref"));
    json_decref(m);
    cr_assert_eq(tp_conn_expiry(c), 0);
    tp_conn_close(c);
}

Test(auth, refusals_change_nothing)
{
    tp_conn *c = open_alice(now + 5000);
    json_t *m = answer(c, "{\"type\":\"auth\",\"token\":\"ok:bob:9999999999999\",\"ref\":1}");
    assert_error(m, "forbidden", "another tenant");
    cr_assert_null(strstr(json_string_value(json_object_get(m, "message")), "bob"));
    json_decref(m);
    m = answer(c, "{\"type\":\"auth\",\"token\":\"forged\",\"ref\":2}");
    assert_error(m, "forbidden", "bad_signature");
    cr_assert_null(strstr(json_string_value(json_object_get(m, "message")), "forged"));
    json_decref(m);
    char msg[128];
    snprintf(msg, sizeof msg, "{\"type\":\"auth\",\"token\":\"ok:alice:%lld\",\"ref\":3}",
             (long long)now);
    m = answer(c, msg);
    assert_error(m, "forbidden", "expired");
    json_decref(m);
    m = answer(c, "{\"type\":\"auth\",\"token\":\"boom\",\"ref\":4}");
    assert_error(m, "internal", "token internal");
    json_decref(m);
    m = answer(c, "{\"type\":\"auth\",\"ref\":5}");
    assert_error(m, "bad_request", "token");
    json_decref(m);
    m = answer(c, "{\"type\":\"auth\",\"token\":\"\",\"ref\":6}");
    assert_error(m, "bad_request", "token");
    json_decref(m);
    m = answer(c, "{\"type\":\"auth\",\"token\":7,\"ref\":7}");
    assert_error(m, "bad_request", "token");
    json_decref(m);
    m = answer(c, "{\"type\":\"auth\",\"token\":\"ok:alice:0\",\"ref\":\"x\"}");
    assert_error(m, "bad_request", "ref");
    json_decref(m);
    cr_assert_eq(tp_conn_expiry(c), now + 5000);
    cr_assert_eq(tp_conn_expire(c, now + 5000), 4401);
    tp_conn_close(c);
}

Test(auth, auth_counts_toward_the_write_rate)
{
    tp_hub_free(hub);
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.verify = fake_verify;
    cfg.limits.writes_per_second = 3;
    tp_error err;
    hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub);
    verify_calls = 0;
    tp_conn *c = open_alice(now + 5000);
    int limited = 0;
    for (int i = 0; i < 10; i++) {
        json_t *m = answer(c, "{\"type\":\"auth\",\"token\":\"forged\"}");
        limited += strcmp(json_string_value(json_object_get(m, "code")), "rate_limited") == 0;
        json_decref(m);
    }
    /* The verifier (a signature check each) ran only as often as the bucket allows. */
    cr_assert_eq(verify_calls, 3);
    cr_assert_eq(limited, 7);
    tp_conn_close(c);
}

Test(auth, without_a_verifier_auth_is_bad_request)
{
    tp_hub_free(hub);
    setup_with(NULL);
    tp_conn *c = open_alice(0);
    json_t *m = answer(c, "{\"type\":\"auth\",\"token\":\"ok:alice:0\",\"ref\":1}");
    assert_error(m, "bad_request", "takes no tokens");
    json_decref(m);
    tp_conn_close(c);
}

Test(auth, every_allocation_failed_in_turn)
{
    tp_hub_free(hub);
    hub = NULL;
    tpt_alloc_install();
    long n;
    for (n = 1; n < 10000; n++) {
        tpt_fail_disarm();
        setup_with(fake_verify);
        tp_conn *c = open_alice(now + 5000);
        tpt_fail_after(n);
        tpt_feed(c, "{\"type\":\"auth\",\"token\":\"ok:alice:9999999999999\",\"ref\":1}");
        tpt_fail_disarm();
        long used = tpt_alloc_count();
        /* Renewed, or refused whole: never half. */
        int64_t exp = tp_conn_expiry(c);
        cr_assert(exp == now + 5000 || exp == 9999999999999, "N=%ld: expiry %lld", n,
                  (long long)exp);
        json_decref(tpt_drain(c));
        tp_conn_close(c);
        tp_hub_free(hub);
        hub = NULL;
        if (used < n)
            break; /* allocation n was never reached: every failure point was tried */
    }
    /* The message itself takes no allocation (core/envelope.h); the ack
     * takes at least one. */
    cr_assert_gt(n, 1);
    cr_assert_lt(n, 10000);
    tp_set_allocator(NULL);
    setup_with(fake_verify);
}
