/*
 * The checked formats, and pydantic's decimals.
 *
 * The rule (docs/internals/schema.md): a value the server acks validates in
 * pydantic. So each format here accepts a subset of what pydantic accepts,
 * never more; where pydantic is lax (it percent-encodes spaces in a URL,
 * reads "1 day" as a duration), the value is refused here, since it is
 * stored as written.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/schema_int.h"
#include "util/error.h"

static const struct {
    const char *name;
    enum tp__sformat f;
} formats[] = {
    {"date-time", TP__SF_DATE_TIME},
    {"date", TP__SF_DATE},
    {"time", TP__SF_TIME},
    {"uuid", TP__SF_UUID},
    {"uri", TP__SF_URI},
    {"ipv4", TP__SF_IPV4},
    {"ipv6", TP__SF_IPV6},
    {"ipvanyaddress", TP__SF_IPANY},
    {"duration", TP__SF_DURATION},
    {"email", TP__SF_EMAIL},
};

enum tp__sformat
tp__schema_format_of(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(name, formats[i].name) == 0)
            return formats[i].f;
    return TP__SF_NONE;
}

const char *
tp__schema_format_name(enum tp__sformat f)
{
    if (f == TP__SF_HTTP_URI)
        return "http or https uri";
    if (f == TP__SF_IPANY)
        return "IP address";
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (formats[i].f == f)
            return formats[i].name;
    return "";
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Reads n digits at s into *v. */
static bool
digits(const char *s, size_t n, int *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

/* YYYY-MM-DD with a day that exists. */
static bool
date_ok(const char *s, size_t len)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (len != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) || !digits(s + 5, 2, &m) ||
        !digits(s + 8, 2, &d))
        return false;
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

/*
 * HH:MM:SS[.fraction][Z | +HH:MM | -HH:MM]. The offset is optional, unlike
 * RFC 3339, because pydantic writes naive times and datetimes without one.
 */
static bool
time_ok(const char *s, size_t len)
{
    int h, m, sec;
    size_t i = 8;
    if (len < 8 || s[2] != ':' || s[5] != ':' || !digits(s, 2, &h) || !digits(s + 3, 2, &m) ||
        !digits(s + 6, 2, &sec) || h > 23 || m > 59 || sec > 60)
        return false;
    if (i < len && s[i] == '.') {
        size_t f = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == f)
            return false;
    }
    if (i == len)
        return true;
    if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len)
        return true;
    if ((s[i] == '+' || s[i] == '-') && len - i == 6 && s[i + 3] == ':' &&
        digits(s + i + 1, 2, &h) && digits(s + i + 4, 2, &m))
        return h <= 23 && m <= 59;
    return false;
}

static bool
uuid_ok(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (tp__hex_digit(s[i]) < 0) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* IP addresses, as Python's ipaddress reads them                            */
/* ------------------------------------------------------------------------ */

/* Four decimal octets, no leading zeros (Python refuses "01.2.3.4"). */
static bool
ipv4_ok(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        size_t start = i;
        int v = 0;
        while (i < len && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (s[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
            return false;
        if (part < 3) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
    }
    return i == len;
}

/* Python's IPv6Address: hextets, one "::", an IPv4 tail, a "%scope". */
static bool
ipv6_ok(const char *s, size_t len)
{
    size_t start[10], plen[10], n = 0, i = 0;
    const char *pct = memchr(s, '%', len);
    if (pct != NULL) {
        size_t scope = len - (size_t)(pct - s) - 1;
        if (scope == 0 || memchr(pct + 1, '%', scope) != NULL)
            return false;
        for (size_t k = 1; k <= scope; k++)
            if ((unsigned char)pct[k] <= 0x20 || (unsigned char)pct[k] >= 0x7f)
                return false;
        len = (size_t)(pct - s);
    }
    for (;;) {
        if (n == 10)
            return false;
        start[n] = i;
        while (i < len && s[i] != ':')
            i++;
        plen[n] = i - start[n];
        n++;
        if (i == len)
            break;
        i++;
    }
    if (n < 3)
        return false;
    size_t hextets = n;
    if (memchr(s + start[n - 1], '.', plen[n - 1]) != NULL) {
        if (!ipv4_ok(s + start[n - 1], plen[n - 1]))
            return false;
        hextets = n + 1; /* the IPv4 tail counts as two */
    }
    if (hextets > 9)
        return false;
    size_t skip = 0;
    for (size_t k = 1; k + 1 < n; k++) {
        if (plen[k] == 0) {
            if (skip != 0)
                return false;
            skip = k;
        }
    }
    if (skip != 0) {
        size_t hi = skip, lo = hextets - skip - 1;
        if (plen[0] == 0 && --hi != 0)
            return false;
        if (plen[n - 1] == 0 && --lo != 0)
            return false;
        if (hi + lo >= 8)
            return false;
    } else if (hextets != 8 || plen[0] == 0 || plen[n - 1] == 0) {
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        bool v4 = k == n - 1 && hextets > n;
        if (v4 || plen[k] == 0)
            continue;
        if (plen[k] > 4)
            return false;
        for (size_t j = 0; j < plen[k]; j++)
            if (tp__hex_digit(s[start[k] + j]) < 0)
                return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* URLs: a strict subset of what pydantic's (WHATWG) parser accepts          */
/* ------------------------------------------------------------------------ */

/* RFC 3986's characters of a path, query or fragment; '%' takes two hex digits. */
static bool
url_chars_ok(const char *s, size_t len, const char *extra)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len || tp__hex_digit(s[i + 1]) < 0 || tp__hex_digit(s[i + 2]) < 0)
                return false;
            i += 2;
            continue;
        }
        if (is_alpha(c) || is_digit(c) || strchr("-._~!$&'()*+,;=:@/?", c) != NULL)
            continue;
        if (c != '\0' && extra != NULL && strchr(extra, c) != NULL)
            continue;
        return false;
    }
    return true;
}

/* A domain of labels [A-Za-z0-9_-], or a dotted-quad IPv4, or [IPv6]. A
 * host ending in a number is an IPv4 address to WHATWG: only the dotted
 * quad is taken. "xn--" labels (punycode) are refused: not checked here. */
static bool
host_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    if (s[0] == '[')
        return len > 2 && s[len - 1] == ']' && ipv6_ok(s + 1, len - 2) &&
               memchr(s, '%', len) == NULL;
    size_t label = 0, last = 0;
    bool numeric = true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (i == label)
                return false; /* an empty label */
            if (i - label >= 4 && (s[label] == 'x' || s[label] == 'X') &&
                (s[label + 1] == 'n' || s[label + 1] == 'N') && s[label + 2] == '-' &&
                s[label + 3] == '-')
                return false;
            last = label;
            label = i + 1;
            continue;
        }
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    }
    for (size_t i = last; i < len; i++)
        numeric = numeric && is_digit(s[i]);
    return !numeric || ipv4_ok(s, len);
}

static bool
ci_equal(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] - 'A' + 'a') : a[i];
        if (c != b[i])
            return false;
    }
    return true;
}

/* scheme://[userinfo@]host[:port][/path][?query][#fragment], or, for a
 * scheme WHATWG does not call special, scheme:opaque. */
static bool
uri_ok(const char *s, size_t len, bool http_only)
{
    static const char *const special[] = {"http", "https", "ws", "wss", "ftp", "file"};
    size_t i = 0;
    if (len == 0 || !is_alpha(s[0]))
        return false;
    while (i < len &&
           (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i == len || s[i] != ':')
        return false;
    size_t slen = i;
    bool is_special = false, is_file = ci_equal(s, slen, "file");
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++)
        is_special = is_special || ci_equal(s, slen, special[k]);
    if (http_only && !ci_equal(s, slen, "http") && !ci_equal(s, slen, "https"))
        return false;
    i++;
    if (len - i < 2 || s[i] != '/' || s[i + 1] != '/') {
        /* Special schemes need an authority here; others take an opaque rest. */
        return !is_special && i < len && s[i] != '/' && url_chars_ok(s + i, len - i, "#");
    }
    i += 2;
    size_t auth = i;
    while (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#')
        i++;
    const char *a = s + auth;
    size_t alen = i - auth;
    const char *at = NULL;
    for (size_t k = 0; k < alen; k++)
        if (a[k] == '@')
            at = a + k;
    if (at != NULL) {
        size_t ulen = (size_t)(at - a);
        if (!url_chars_ok(a, ulen, NULL) || memchr(a, '/', ulen) || memchr(a, '?', ulen))
            return false;
        alen -= ulen + 1;
        a = at + 1;
    }
    size_t hlen = alen;
    if (alen > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (close == NULL)
            return false;
        hlen = (size_t)(close - a) + 1;
    } else {
        const char *colon = memchr(a, ':', alen);
        if (colon != NULL)
            hlen = (size_t)(colon - a);
    }
    if (hlen < alen) {
        /* :port, 0 to 65535 */
        size_t p = hlen + 1, plen = alen - p;
        long port = 0;
        if (a[hlen] != ':' || plen == 0 || plen > 5)
            return false;
        for (size_t k = p; k < alen; k++) {
            if (!is_digit(a[k]))
                return false;
            port = port * 10 + (a[k] - '0');
        }
        if (port > 65535)
            return false;
    }
    if (hlen == 0 ? !is_file : !host_ok(a, hlen))
        return false;
    const char *hash = memchr(s + i, '#', len - i);
    size_t before = hash ? (size_t)(hash - (s + i)) : len - i;
    return url_chars_ok(s + i, before, NULL) &&
           (hash == NULL || url_chars_ok(hash + 1, len - i - before - 1, "#"));
}

/* ------------------------------------------------------------------------ */
/* Durations (ISO 8601, as pydantic's speedate reads them) and e-mail        */
/* ------------------------------------------------------------------------ */

/* [+-]P[nY][nM][nW][nD][T[nH][nM][nS]]: at least one part, numbers of at
 * most 12 digits with an optional fraction, at most 999,999,999 days in all
 * (Python's timedelta). */
static bool
duration_ok(const char *s, size_t len)
{
    static const char date_units[] = "YMWD", time_units[] = "HMS";
    static const double date_days[] = {365, 30, 7, 1},
                        time_days[] = {1.0 / 24, 1.0 / 1440, 1.0 / 86400};
    size_t i = 0, parts = 0;
    double days = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i >= len || s[i++] != 'P')
        return false;
    bool in_time = false;
    size_t next = 0; /* units must come in order */
    while (i < len) {
        if (s[i] == 'T') {
            if (in_time)
                return false;
            in_time = true;
            next = 0;
            if (++i == len)
                return false;
            continue;
        }
        size_t d0 = i;
        double v = 0, scale = 1;
        while (i < len && is_digit(s[i]))
            v = v * 10 + (s[i++] - '0');
        if (i == d0 || i - d0 > 12)
            return false;
        if (i < len && s[i] == '.') {
            size_t f0 = ++i;
            while (i < len && is_digit(s[i])) {
                scale /= 10;
                v += (s[i++] - '0') * scale;
            }
            if (i == f0 || i - f0 > 9)
                return false;
        }
        if (i == len)
            return false;
        const char *units = in_time ? time_units : date_units;
        const char *u = strchr(units + next, s[i]);
        if (s[i] == '\0' || u == NULL)
            return false;
        size_t k = (size_t)(u - units);
        days += v * (in_time ? time_days[k] : date_days[k]);
        next = k + 1;
        parts++;
        i++;
    }
    return parts > 0 && days <= 999999999.0;
}

/* local@domain: a dot-atom local part of at most 64 bytes, a domain of at
 * least two labels [A-Za-z0-9-] whose last is not numeric and not a name
 * email-validator refuses (special-use); ASCII only; at most 254 bytes. */
static bool
email_ok(const char *s, size_t len)
{
    static const char *const special[] = {"arpa", "invalid", "local", "localhost", "onion", "test"};
    const char *at = memchr(s, '@', len);
    if (at == NULL || len > 254)
        return false;
    size_t llen = (size_t)(at - s), dlen = len - llen - 1;
    const char *d = at + 1;
    if (llen == 0 || llen > 64 || s[0] == '.' || s[llen - 1] == '.')
        return false;
    for (size_t i = 0; i < llen; i++) {
        if (s[i] == '.' && s[i + 1] == '.')
            return false;
        if (!is_alpha(s[i]) && !is_digit(s[i]) && strchr(".!#$%&'*+/=?^_`{|}~-", s[i]) == NULL)
            return false;
    }
    size_t label = 0, labels = 0;
    bool numeric = true;
    for (size_t i = 0; i <= dlen; i++) {
        if (i == dlen || d[i] == '.') {
            size_t n = i - label;
            if (n == 0 || n > 63 || d[label] == '-' || d[i - 1] == '-')
                return false;
            numeric = true;
            for (size_t k = label; k < i; k++)
                numeric = numeric && is_digit(d[k]);
            labels++;
            if (i == dlen) {
                for (size_t k = 0; k < sizeof special / sizeof special[0]; k++)
                    if (ci_equal(d + label, n, special[k]))
                        return false;
            }
            label = i + 1;
            continue;
        }
        if (!is_alpha(d[i]) && !is_digit(d[i]) && d[i] != '-')
            return false;
    }
    return labels >= 2 && !numeric;
}

bool
tp__schema_format_ok(enum tp__sformat f, const char *s, size_t len)
{
    switch (f) {
    case TP__SF_DATE: return date_ok(s, len);
    case TP__SF_TIME: return time_ok(s, len);
    case TP__SF_DATE_TIME:
        return len > 11 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') && date_ok(s, 10) &&
               time_ok(s + 11, len - 11);
    case TP__SF_UUID: return uuid_ok(s, len);
    case TP__SF_URI: return uri_ok(s, len, false);
    case TP__SF_HTTP_URI: return uri_ok(s, len, true);
    case TP__SF_IPV4: return ipv4_ok(s, len);
    case TP__SF_IPV6: return ipv6_ok(s, len);
    case TP__SF_IPANY: return ipv4_ok(s, len) || ipv6_ok(s, len);
    case TP__SF_DURATION: return duration_ok(s, len);
    case TP__SF_EMAIL: return email_ok(s, len);
    default: return true;
    }
}

/* ------------------------------------------------------------------------ */
/* Decimals                                                                  */
/* ------------------------------------------------------------------------ */

/* A decimal as sign, significant digits (no leading or trailing zeros) and
 * the exponent of its last digit: value = digits * 10^exp. */
struct dec {
    bool neg;
    const char *d; /* not NUL-terminated: digits may be split by a point */
    size_t n;      /* significant digits */
    long exp;
    char buf[64];
};

/*
 * Parses [+-]digits[.digits][(e|E)[+-]digits] (at least one digit) into
 * buf as significant digits only. Returns false when it is not one, or has
 * more than fits.
 */
static bool
dec_parse(const char *s, size_t len, struct dec *out)
{
    size_t i = 0, nd = 0, stored = 0;
    long exp = 0, frac = 0;
    bool seen_point = false, leading = true;
    out->neg = false;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        out->neg = s[i++] == '-';
    size_t zeros = 0; /* trailing zeros not yet stored */
    for (; i < len; i++) {
        if (s[i] == '.' && !seen_point) {
            seen_point = true;
            continue;
        }
        if (!is_digit(s[i]))
            break;
        nd++;
        if (seen_point)
            frac++;
        if (leading && s[i] == '0')
            continue;
        leading = false;
        if (s[i] == '0') {
            zeros++;
            continue;
        }
        if (stored + zeros + 1 > sizeof out->buf)
            return false;
        while (zeros > 0) {
            out->buf[stored++] = '0';
            zeros--;
        }
        out->buf[stored++] = s[i];
    }
    if (nd == 0)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        size_t e0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        e0 = i;
        while (i < len && is_digit(s[i]) && i - e0 < 9)
            exp = exp * 10 + (s[i++] - '0');
        if (i == e0 || i != len)
            return false;
        if (eneg)
            exp = -exp;
    }
    if (i != len)
        return false;
    out->d = out->buf;
    out->n = stored;
    /* The last stored digit is followed by `zeros` zeros, then the point
     * is frac digits from the end. */
    out->exp = exp - frac + (long)zeros;
    if (stored == 0)
        out->neg = false; /* -0 is 0 */
    return true;
}

/* Compares magnitudes. */
static int
dec_cmp_abs(const struct dec *a, const struct dec *b)
{
    if (a->n == 0 || b->n == 0)
        return a->n == 0 ? (b->n == 0 ? 0 : -1) : 1;
    /* The position of the first digit: n + exp. */
    long ta = (long)a->n + a->exp, tb = (long)b->n + b->exp;
    if (ta != tb)
        return ta < tb ? -1 : 1;
    size_t m = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->d, b->d, m);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return a->n == b->n ? 0 : a->n < b->n ? -1 : 1;
}

static int
dec_cmp(const struct dec *a, const struct dec *b)
{
    if (a->neg != b->neg)
        return a->neg ? -1 : 1;
    int c = dec_cmp_abs(a, b);
    return a->neg ? -c : c;
}

/* Shortest digits of a double that read back the same, as "d.ddde[+-]x". */
static void
real_digits(double d, char *buf, size_t cap)
{
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(buf, cap, "%.*e", prec, d);
        for (char *p = buf; *p != '\0'; p++)
            if (*p == ',')
                *p = '.'; /* a locale's decimal comma */
        if (strtod(buf, NULL) == d)
            return;
    }
}

static bool
number_dec(const json_t *v, struct dec *out)
{
    char buf[48];
    if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        real_digits(json_real_value(v), buf, sizeof buf);
    /* dec_parse points into its own buffer, not at buf. */
    return dec_parse(buf, strlen(buf), out);
}

int
tp__schema_decimal_cmp(const char *s, size_t len, const json_t *bound)
{
    struct dec a, b;
    if (!dec_parse(s, len, &a) || !number_dec(bound, &b))
        return 2;
    return dec_cmp(&a, &b);
}

bool
tp__schema_decimal_limits(const char *pattern, int *max_digits, int *places)
{
    static const char prefix[] = "^(?!^[-+.]*$)[+-]?0*";
    unsigned a, b, c, d;
    int end = -1;
    const char *p = pattern + sizeof prefix - 1;
    *max_digits = *places = -1;
    if (strncmp(pattern, prefix, sizeof prefix - 1) != 0)
        return false;
    if (strcmp(p, "\\d*\\.?\\d*$") == 0)
        return true;
    if (sscanf(p, "\\d*\\.?\\d{0,%u}0*$%n", &a, &end) == 1 && end >= 0 && p[end] == '\0') {
        *places = (int)a;
        return a < 1000;
    }
    end = -1;
    if (sscanf(p, "(?:\\d{0,%u}|(?=[\\d.]{1,%u}0*$)\\d*\\.\\d*0*$)%n", &a, &b, &end) == 2 &&
        end >= 0 && p[end] == '\0') {
        *max_digits = (int)a;
        return a < 1000 && b == a + 1;
    }
    end = -1;
    if (sscanf(p, "(?:\\d{0,%u}|(?=[\\d.]{1,%u}0*$)\\d{0,%u}\\.\\d{0,%u}0*$)%n", &a, &b, &c, &d,
               &end) == 4 &&
        end >= 0 && p[end] == '\0' && b >= 1 && b < 1000) {
        *max_digits = (int)b - 1;
        *places = (int)d;
        return a == c && a + d == b - 1;
    }
    return false;
}

bool
tp__schema_decimal_digits(const char *s, size_t len, long *digits, long *places)
{
    struct dec d;
    if (!dec_parse(s, len, &d))
        return false;
    long n = d.n == 0 ? 1 : (long)d.n, exp = d.n == 0 ? 0 : d.exp;
    if (exp >= 0) {
        *digits = n + exp;
        *places = 0;
    } else {
        *places = -exp;
        *digits = n > -exp ? n : -exp;
    }
    return true;
}

bool
tp__schema_decimal_multiple(const char *s, size_t len, const json_t *m)
{
    struct dec a, b;
    if (!dec_parse(s, len, &a) || !number_dec(m, &b) || b.n == 0 || b.n > 18)
        return false;
    if (a.n == 0)
        return true;
    /* a / b = (A / B) * 10^(ea - eb): A has no trailing zeros, so with a
     * negative power it is a multiple only if... never. */
    long k = a.exp - b.exp;
    if (k < 0 || k > 4096)
        return false;
    uint64_t bb = 0, r = 0;
    for (size_t i = 0; i < b.n; i++)
        bb = bb * 10 + (uint64_t)(b.d[i] - '0');
    for (size_t i = 0; i < a.n; i++)
        r = (r * 10 + (uint64_t)(a.d[i] - '0')) % bb;
    for (long i = 0; i < k; i++)
        r = r * 10 % bb;
    return r == 0;
}

bool
tp__schema_number_text(const json_t *v, char *buf, size_t cap)
{
    struct dec d;
    size_t w = 0;
    if (!number_dec(v, &d) || cap < 2)
        return false;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (w + 1 >= cap)                                                                          \
            return false;                                                                          \
        buf[w++] = (c);                                                                            \
    } while (0)
    if (d.neg)
        PUT('-');
    if (d.n == 0) {
        PUT('0');
    } else if (d.exp >= 0) {
        for (size_t i = 0; i < d.n; i++)
            PUT(d.d[i]);
        for (long i = 0; i < d.exp; i++)
            PUT('0');
    } else {
        long intd = (long)d.n + d.exp; /* digits before the point */
        if (intd <= 0) {
            PUT('0');
            PUT('.');
            for (long i = 0; i < -intd; i++)
                PUT('0');
            for (size_t i = 0; i < d.n; i++)
                PUT(d.d[i]);
        } else {
            for (long i = 0; i < (long)d.n; i++) {
                if (i == intd)
                    PUT('.');
                PUT(d.d[i]);
            }
        }
    }
#undef PUT
    buf[w] = '\0';
    return true;
}
