/* Client addresses and CIDR blocks (addr.h). */
#include "util/addr.h"

#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int
is_v4(const tp__addr *a)
{
    return memcmp(a->b, v4_mapped, 12) == 0;
}

int
tp__addr_parse(const char *text, size_t n, tp__addr *out)
{
    char buf[64];
    if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        text++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        memcpy(out->b, v4_mapped, 12);
        memcpy(out->b + 12, &v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, buf, out->b) == 1 ? 0 : -1;
}

int
tp__addr_from_sockaddr(const struct sockaddr *sa, tp__addr *out)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)sa;
        memcpy(out->b, v4_mapped, 12);
        memcpy(out->b + 12, &v4->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out->b, &v6->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int
tp__cidr_parse(const char *text, tp__cidr *out)
{
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (tp__addr_parse(text, n, &out->net) != 0)
        return -1;
    unsigned max = is_v4(&out->net) ? 32 : 128;
    unsigned bits = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 3 || p[digits] != '\0')
            return -1;
        bits = 0;
        for (size_t i = 0; i < digits; i++)
            bits = bits * 10 + (unsigned)(p[i] - '0');
        if (bits > max)
            return -1;
    }
    out->bits = bits + (max == 32 ? 96 : 0);
    /* The host part is cleared, so "10.1.2.3/8" means 10.0.0.0/8. */
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = out->bits > 8 * i ? out->bits - 8 * i : 0;
        if (keep < 8)
            out->net.b[i] &= (unsigned char)(0xff << (8 - keep));
    }
    return 0;
}

int
tp__cidr_match(const tp__cidr *c, const tp__addr *a)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = c->bits > 8 * i ? c->bits - 8 * i : 0;
        if (keep == 0)
            return 1;
        unsigned char mask = (unsigned char)(keep >= 8 ? 0xff : 0xff << (8 - keep));
        if ((a->b[i] & mask) != c->net.b[i])
            return 0;
    }
    return 1;
}

void
tp__addr_key(const tp__addr *a, char out[TP__ADDR_KEY_MAX])
{
    if (is_v4(a)) {
        inet_ntop(AF_INET, a->b + 12, out, TP__ADDR_KEY_MAX);
        return;
    }
    unsigned char net[16] = {0};
    memcpy(net, a->b, 8);
    inet_ntop(AF_INET6, net, out, TP__ADDR_KEY_MAX - 4);
    size_t n = strlen(out);
    memcpy(out + n, "/64", 4);
}
