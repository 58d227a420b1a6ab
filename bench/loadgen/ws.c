/*
 * The client side of RFC 6455, as little as a load generator needs: the
 * upgrade request, the 101, server frames (never masked, 5.1) and masked
 * client frames (5.3). The key is fixed: checking Sec-WebSocket-Accept would
 * test the server, which the integration tests do, not the benchmark.
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <string.h>

#include "loadgen.h"

size_t
lg_ws_request(char *buf, size_t cap, const char *host, int port, const char *path,
              int subprotocol)
{
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s"
                     "\r\n",
                     path, host, port,
                     subprotocol ? "Sec-WebSocket-Protocol: transports.v1\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

long
lg_ws_response(const char *p, size_t n, int *status)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    *status = 0;
    if (n >= 12 && memcmp(p, "HTTP/1.1 ", 9) == 0)
        *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (*status != 101)
        return -1;
    return (long)(end + 4 - p);
}

int
lg_ws_frame(const unsigned char *p, size_t n, lg_frame *f)
{
    if (n < 2)
        return 0;
    if ((p[0] & 0x70) != 0 || (p[1] & 0x80) != 0)
        return -1;
    f->fin = (p[0] & 0x80) != 0;
    f->op = p[0] & 0x0f;
    uint64_t len = p[1] & 0x7f;
    size_t head = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        head = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        head = 10;
    }
    f->head = head;
    f->len = len;
    return 1;
}

size_t
lg_ws_masked(unsigned char *out, int op, const void *payload, size_t len, uint32_t key)
{
    size_t h = 0;
    out[h++] = (unsigned char)(0x80 | op);
    if (len < 126) {
        out[h++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (unsigned char)(len >> 8);
        out[h++] = (unsigned char)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[h++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    unsigned char mask[4] = {(unsigned char)(key >> 24), (unsigned char)(key >> 16),
                             (unsigned char)(key >> 8), (unsigned char)key};
    memcpy(out + h, mask, 4);
    h += 4;
    const unsigned char *in = payload;
    for (size_t i = 0; i < len; i++)
        out[h + i] = in[i] ^ mask[i & 3];
    return h + len;
}
