#include <criterion/criterion.h>

#include "transports.h"
#include "util/error.h"

Test(error, names_map_onto_protocol_codes)
{
    cr_assert_str_eq(tp_error_name(TP_EBADREQUEST), "bad_request");
    cr_assert_str_eq(tp_error_name(TP_ENOTFOUND), "not_found");
    cr_assert_str_eq(tp_error_name(TP_EFORBIDDEN), "forbidden");
    cr_assert_str_eq(tp_error_name(TP_EINVALID), "invalid");
    cr_assert_str_eq(tp_error_name(TP_EREJECTED), "rejected");
    cr_assert_str_eq(tp_error_name(TP_ETOOLARGE), "too_large");
    cr_assert_str_eq(tp_error_name(TP_ERATELIMITED), "rate_limited");
    cr_assert_str_eq(tp_error_name(TP_EDUPLICATE), "duplicate");
    cr_assert_str_eq(tp_error_name(TP_EINTERNAL), "internal");
    cr_assert_str_eq(tp_error_name(TP_ENOMEM), "internal");
}

Test(error, set_formats_and_returns_code)
{
    tp_error err;
    int rc = tp__error_set(&err, TP_EINVALID, "%s: %d is less than the minimum %d", "qty", 0, 1);
    cr_assert_eq(rc, TP_EINVALID);
    cr_assert_eq(err.code, TP_EINVALID);
    cr_assert_str_eq(err.message, "qty: 0 is less than the minimum 1");
    cr_assert_eq(tp__error_set(NULL, TP_EARG, "x"), TP_EARG);
    tp__error_clear(&err);
    cr_assert_eq(err.code, TP_OK);
    cr_assert_str_eq(err.message, "");
}

Test(error, long_messages_are_truncated_not_overflowed)
{
    tp_error err;
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tp__error_set(&err, TP_EINVALID, "%s", big);
    cr_assert_eq(strlen(err.message), sizeof err.message - 1);
}

Test(error, messages_stay_utf8_when_cut)
{
    tp_error err;
    char id[400] = "";
    for (int i = 0; i < 150; i++)
        strcat(id, "\xc3\xa9"); /* é */
    /* %.5s cuts é in half; the 256-byte message cuts the rest. */
    tp__error_set(&err, TP_ENOTFOUND, "id: \"%.5s\" or %s", id, id);
    for (const unsigned char *p = (const unsigned char *)err.message; *p; p++)
        cr_assert(*p < 0x80 || *p == 0xc3 || *p == 0xa9 || *p == '?', "byte %02x", *p);
    cr_assert(strstr(err.message, "\xc3\xa9\xc3\xa9?\"") != NULL, "%s", err.message);
    size_t n = strlen(err.message);
    cr_assert(err.message[n - 1] == '?' || (unsigned char)err.message[n - 1] == 0xa9);
    char bad[] = "a\xed\xa0\x80 b\xf5 c\xc0\xaf d\xe2\x82";
    tp__utf8_repair(bad);
    cr_assert_str_eq(bad, "a??? b? c?? d??");
}
