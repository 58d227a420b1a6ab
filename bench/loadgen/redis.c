/*
 * Redis's own counters for bench/cluster.sh (--redis-port): one `INFO all`
 * at each end of the measured window, over a plain blocking socket (an
 * inline command and a bulk reply: no client library for two calls).
 *
 * Redis counts the INFO itself, and the commands a Lua script runs through
 * redis.call, in total_commands_processed and in commandstats: the caller
 * takes the first away, and the report tells the second from round trips.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "loadgen.h"

/* INFO all is a few KiB; commandstats grows by a line per command used. */
#define INFO_MAX (256 * 1024)

int
lg_redis_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The value after "key:" on its line, as an unsigned number; 0 when absent. */
static uint64_t
field(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ':')
            return strtoull(p + klen + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return 0;
}

static void
commandstats(const char *text, lg_redis_info *out)
{
    static const char prefix[] = "cmdstat_";
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, sizeof prefix - 1) == 0 && out->ncmds < LG_REDIS_CMDS) {
            const char *name = p + sizeof prefix - 1;
            const char *colon = strchr(name, ':');
            const char *calls = colon ? strstr(colon, "calls=") : NULL;
            const char *eol = strchr(name, '\n');
            if (colon != NULL && calls != NULL && (eol == NULL || calls < eol)) {
                snprintf(out->cmds[out->ncmds].name, sizeof out->cmds[0].name, "%.*s",
                         (int)(colon - name), name);
                out->cmds[out->ncmds].calls = strtoull(calls + 6, NULL, 10);
                out->ncmds++;
            }
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
}

int
lg_redis_info_read(int fd, lg_redis_info *out)
{
    static const char cmd[] = "INFO all\r\n";
    memset(out, 0, sizeof *out);
    if (send_all(fd, cmd, sizeof cmd - 1) != 0)
        return -1;
    char *buf = malloc(INFO_MAX + 1);
    if (buf == NULL)
        return -1;
    /* A bulk reply: "$LEN\r\n", LEN bytes, "\r\n". */
    size_t have = 0, want = 0;
    long body = -1;
    for (;;) {
        if (body < 0) {
            char *crlf = have > 0 ? memchr(buf, '\n', have) : NULL;
            if (crlf != NULL) {
                if (buf[0] != '$')
                    break;
                body = strtol(buf + 1, NULL, 10);
                if (body < 0 || (size_t)body > INFO_MAX - 64)
                    break;
                size_t head = (size_t)(crlf - buf) + 1;
                memmove(buf, buf + head, have - head);
                have -= head;
                want = (size_t)body + 2;
            }
        }
        if (body >= 0 && have >= want)
            break;
        ssize_t k = recv(fd, buf + have, INFO_MAX - have, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        have += (size_t)k;
    }
    int ok = body >= 0 && have >= want;
    if (ok) {
        buf[body] = '\0';
        out->pid = (long)field(buf, "process_id");
        out->total = field(buf, "total_commands_processed");
        commandstats(buf, out);
    }
    free(buf);
    return ok ? 0 : -1;
}
