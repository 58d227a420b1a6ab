/*
 * Client addresses for per-address limits: every address is held as 16
 * bytes (IPv4 as ::ffff:a.b.c.d), matched against CIDR blocks (trusted
 * proxies), and named by a key that groups what one client controls: an
 * IPv4 address, or the /64 of an IPv6 one (a single host is usually given
 * a whole /64, so counting its addresses one by one would bound nothing).
 */
#ifndef TP_UTIL_ADDR_H
#define TP_UTIL_ADDR_H

#include <stddef.h>

struct sockaddr;

typedef struct tp__addr {
    unsigned char b[16];
} tp__addr;

typedef struct tp__cidr {
    tp__addr net;
    unsigned bits; /* 0 to 128, counted over the 16 bytes (IPv4: 96 + its prefix) */
} tp__cidr;

/* Room for a key: an IPv4 address, or an IPv6 /64 ("x:x:x:x::/64"). */
#define TP__ADDR_KEY_MAX 48

/* tp__addr_parse reads an IPv4 or IPv6 address ("10.0.0.1", "::1",
 * "[::1]"); returns 0, or -1 when text is no address. */
int tp__addr_parse(const char *text, size_t n, tp__addr *out);
/* tp__addr_from_sockaddr takes an AF_INET or AF_INET6 address; -1 for others. */
int tp__addr_from_sockaddr(const struct sockaddr *sa, tp__addr *out);
/* tp__cidr_parse reads "ADDR" or "ADDR/BITS" (IPv4 0 to 32, IPv6 0 to 128);
 * returns 0 or -1. */
int tp__cidr_parse(const char *text, tp__cidr *out);
int tp__cidr_match(const tp__cidr *c, const tp__addr *a);
/* tp__addr_key writes the key an address is counted under (see above). */
void tp__addr_key(const tp__addr *a, char out[TP__ADDR_KEY_MAX]);

#endif /* TP_UTIL_ADDR_H */
