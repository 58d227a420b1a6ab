/* Client addresses: parsing, CIDR blocks and the key a client is counted under. */
#include <string.h>

#include <criterion/criterion.h>

#include "util/addr.h"

static tp__addr
addr(const char *text)
{
    tp__addr a;
    cr_assert_eq(tp__addr_parse(text, strlen(text), &a), 0, "%s", text);
    return a;
}

Test(addr, parse)
{
    tp__addr a;
    const char *bad[] = {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "x", "::g", "[::1", "1.2.3.4 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(tp__addr_parse(bad[i], strlen(bad[i]), &a), -1, "%s", bad[i]);
    a = addr("[::1]");
    cr_assert_eq(a.b[15], 1);
}

Test(addr, keys_group_an_ipv6_64)
{
    char k[TP__ADDR_KEY_MAX];
    tp__addr a = addr("10.1.2.3");
    tp__addr_key(&a, k);
    cr_assert_str_eq(k, "10.1.2.3");
    a = addr("::ffff:10.1.2.3");
    tp__addr_key(&a, k);
    cr_assert_str_eq(k, "10.1.2.3");
    a = addr("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
    tp__addr_key(&a, k);
    cr_assert_str_eq(k, "2001:db8:1:2::/64");
    a = addr("2001:db8:1:2::77");
    char k2[TP__ADDR_KEY_MAX];
    tp__addr_key(&a, k2);
    cr_assert_str_eq(k, k2);
}

Test(addr, cidr)
{
    tp__cidr c;
    cr_assert_eq(tp__cidr_parse("10.1.2.3/8", &c), 0);
    tp__addr in = addr("10.200.0.1"), out = addr("11.0.0.1"), v6 = addr("::1");
    cr_assert(tp__cidr_match(&c, &in));
    cr_assert_not(tp__cidr_match(&c, &out));
    cr_assert_not(tp__cidr_match(&c, &v6));
    cr_assert_eq(tp__cidr_parse("127.0.0.1", &c), 0);
    tp__addr lo = addr("127.0.0.1"), lo2 = addr("127.0.0.2");
    cr_assert(tp__cidr_match(&c, &lo));
    cr_assert_not(tp__cidr_match(&c, &lo2));
    cr_assert_eq(tp__cidr_parse("fd00::/8", &c), 0);
    tp__addr ula = addr("fd12::1");
    cr_assert(tp__cidr_match(&c, &ula));
    cr_assert_not(tp__cidr_match(&c, &v6));
    cr_assert_eq(tp__cidr_parse("0.0.0.0/0", &c), 0);
    cr_assert(tp__cidr_match(&c, &out));
    cr_assert_not(tp__cidr_match(&c, &v6), "an IPv4 block holds no IPv6 address");
    const char *bad[] = {"10.0.0.0/33", "::/129", "10.0.0.0/",    "10.0.0.0/x",
                         "/8",          "10/8",   "10.0.0.0/8/8", "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(tp__cidr_parse(bad[i], &c), -1, "%s", bad[i]);
}
