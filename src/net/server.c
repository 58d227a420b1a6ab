/*
 * The WebSocket server: PROTOCOL.md over libwebsockets, for one hub.
 *
 * The loop (docs/internals/server.md): lws runs on a libuv loop (epoll) of
 * ours. Each iteration serves what epoll returned (frames received and fed
 * to the hub, timers, posts); then before_sleep() gives every connection
 * whose outbox is no longer empty one write holding all its frames,
 * pre-framed (RFC 6455 header + payload, one LWS_WRITE_RAW), so load turns
 * into batching instead of into send() calls.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/hostapi.h"
#include "net/net.h"
#include "net/webhook.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

#define STOP_GRACE_NS (3 * 1000000000LL) /* connections get this long to take their 1001 */

static void run_posts(tp_server *s);
static void wake(tp_server *s);
static unsigned ms_to_s(unsigned ms);

/* ------------------------------------------------------------------------ */
/* Counting                                                                  */
/* ------------------------------------------------------------------------ */

const int tp__close_codes[TP__CLOSE_CODES] = {1000, 1001, 1002, 1003, 1005, 1006, 1007,
                                              1008, 1009, 1011, 1013, 4401, 0};

void
tp__count_close(tp_server *s, int code)
{
    int i = 0;
    while (i < TP__CLOSE_CODES - 1 && tp__close_codes[i] != code)
        i++;
    s->closes[i]++; /* the last slot counts every other code */
}

static const char *
close_reason(int code)
{
    switch (code) {
    case 1001: return "server shutting down";
    case 1003: return "binary frames are not accepted";
    case 1009: return "message too big";
    case 1013: return "too far behind: reconnect and resume";
    case 4403: return "closed by the host: do not reconnect until allowed again";
    case 4404: return "the tenant was deleted";
    case 4401: return "the credential expired";
    default: return "internal error";
    }
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                   */
/* ------------------------------------------------------------------------ */

/* Makes room for `more` bytes of frames after `used` (past LWS_PRE). */
static int
sendbuf_reserve(tp_server *s, size_t used, size_t more)
{
    size_t need = LWS_PRE + used + more;
    if (need <= s->sendcap)
        return 0;
    size_t cap = s->sendcap ? s->sendcap : LWS_PRE + TP__SEND_CHUNK + 1024;
    while (cap < need)
        cap *= 2;
    unsigned char *b = tp__realloc(s->sendbuf, cap);
    if (b == NULL)
        return -1;
    s->sendbuf = b;
    s->sendcap = cap;
    return 0;
}

/* Writes an unmasked FIN text frame header (RFC 6455, 5.2): returns its size. */
static size_t
frame_header(unsigned char *p, size_t n)
{
    p[0] = 0x81;
    if (n < 126) {
        p[1] = (unsigned char)n;
        return 2;
    }
    if (n <= 0xffff) {
        p[1] = 126;
        p[2] = (unsigned char)(n >> 8);
        p[3] = (unsigned char)n;
        return 4;
    }
    p[1] = 127;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

/*
 * Starts the closing handshake (RFC 6455, 7.1.2): our close frame, then
 * lws waits for the peer's (peer_close() makes it close TCP then, without
 * an echo) or gives up after 5 s. The frame is ours rather than lws's
 * (lws_close_reason, then -1 from the writeable callback): on its libuv
 * loop, lws 4.1.6 built with _DEBUG closes a second time right away from
 * that path and drops the frame.
 */
static int
send_close(tp_server *s, tp__ws *ws, int code)
{
    const char *why = ws->close_why ? ws->close_why : close_reason(code);
    size_t n = strlen(why);
    if (sendbuf_reserve(s, 0, 4 + n) != 0)
        return -1;
    unsigned char *p = s->sendbuf + LWS_PRE;
    p[0] = 0x88; /* FIN, close */
    p[1] = (unsigned char)(2 + n);
    p[2] = (unsigned char)(code >> 8);
    p[3] = (unsigned char)code;
    memcpy(p + 4, why, n);
    if (lws_write(ws->wsi, p, 4 + n, LWS_WRITE_RAW) < (int)(4 + n))
        return -1;
    ws->close_sent = 1;
    lws_set_timeout(ws->wsi, PENDING_TIMEOUT_CLOSE_ACK, 5);
    return 0;
}

/*
 * Writes the connection's frames, pre-framed in one write of at most about
 * TP__SEND_CHUNK bytes. Returns 0, or -1 when the socket failed.
 */
static int
write_frames(tp_server *s, tp__ws *ws)
{
    size_t used = 0, n, len;
    /* Each frame is built straight after its header in the write buffer:
     * one copy of each message, none per connection kept in between. */
    while (used < TP__SEND_CHUNK && (n = tp__conn_frame_plan(ws->conn, &len)) > 0) {
        if (sendbuf_reserve(s, used, len + 10) != 0) {
            ws->close_code = 1011;
            break;
        }
        unsigned char *p = s->sendbuf + LWS_PRE + used;
        size_t h = frame_header(p, len);
        tp__conn_frame_take(ws->conn, n, (char *)p + h);
        used += h + len;
        s->frames_sent++;
    }
    if (used == 0)
        return 0;
    /* lws keeps whatever the socket does not take at once and sends it
     * before the next writeable callback. */
    if (lws_write(ws->wsi, s->sendbuf + LWS_PRE, used, LWS_WRITE_RAW) < (int)used) {
        ws->close_code = 1006;
        return -1;
    }
    s->send_calls++;
    s->bytes_sent += used;
    return 0;
}

/*
 * Sends what a connection has; asks to be called again when more is left.
 * Once the outbox is empty and the connection must close, starts the
 * closing handshake. Returns -1 when lws must drop the connection.
 */
static int
flush_conn(tp_server *s, tp__ws *ws)
{
    if (ws->conn == NULL)
        return 0;
    /* lws has a close frame of its own to send (it failed the connection
     * for breaking RFC 6455, or answers the peer's close), or ours is out:
     * nothing more may follow it (RFC 6455, 5.5.1). */
    if (lws_get_close_length(ws->wsi) > 0 || ws->close_sent)
        return 0;
    if (write_frames(s, ws) != 0)
        return -1;
    int code = ws->close_code ? ws->close_code : tp_conn_close_code(ws->conn);
    if (tp_conn_outbox_bytes(ws->conn) > 0 && code != 1011 && code != 1013) {
        /* More than one write holds, or messages wait for their
         * transaction to be durable: then the loop marks the connection
         * ready again when it is (tp__hub_collect), not lws. */
        if (tp__conn_sendable(ws->conn))
            lws_callback_on_writable(ws->wsi);
        return 0;
    }
    if (code == 0)
        return 0;
    if (code == 1006)
        return -1; /* the socket failed: no close frame (1006 is never sent) */
    /* Decided: logged and counted with this code however the socket ends. */
    ws->close_code = code;
    if (lws_partial_buffered(ws->wsi)) {
        /* Close once all is out. A reader that takes nothing more (the
         * slow reader a 1013 is for) is dropped when ping_timeout_ms passes
         * without progress, and what lws holds for it is freed. */
        lws_set_timeout(ws->wsi, PENDING_TIMEOUT_CLOSE_SEND, (int)ms_to_s(s->ping_timeout_ms));
        lws_callback_on_writable(ws->wsi);
        return 0;
    }
    return send_close(s, ws, code);
}

static void
want_write(tp__ws *ws)
{
    if (ws->wsi != NULL)
        lws_callback_on_writable(ws->wsi);
}

/*
 * Writes a connection's frames at once, outside lws's writeable callback:
 * the socket is almost always writable, and asking lws for POLLOUT first
 * would cost an epoll round and lws's bookkeeping per connection. When lws
 * still holds bytes the socket did not take, or may hold a pong (after a
 * message received in pieces: after_pong), or the connection must close,
 * the writeable callback does it instead: lws sends its pong first there.
 * lws 4.1.6 says nowhere that a pong is pending, so a ping in the same read
 * before a message in one frame is answered after the message's answer.
 */
static void
write_now(tp_server *s, tp__ws *ws)
{
    if (ws == NULL || ws->wsi == NULL)
        return;
    if (ws->after_pong || ws->close_code != 0 || tp_conn_close_code(ws->conn) != 0 ||
        lws_partial_buffered(ws->wsi) || flush_conn(s, ws) < 0)
        want_write(ws);
}

static void flush_timer(uv_timer_t *w);

/* Writes every ready connection: what tp_hub_next_ready hands out is what
 * is durable. When a commit failed, its transactions stay queued, memory
 * stays ahead and their frames held: the committer is asked to try again
 * every TP__COMMIT_RETRY_MS until the store takes them. */
static void
drain_ready(tp_server *s)
{
    tp_conn *c;
    while ((c = tp_hub_next_ready(s->hub)) != NULL)
        write_now(s, tp_conn_user(c));
    if (tp__hub_commit_pending(s->hub) && !s->flush_armed) {
        s->flush_armed = 1;
        uv_timer_start(&s->flush_w, flush_timer, TP__COMMIT_RETRY_MS, 0);
    }
}

static void
flush_timer(uv_timer_t *w)
{
    tp_server *s = w->data;
    s->flush_armed = 0;
    if (tp__hub_commit_pending(s->hub))
        tp__hub_commit_retry(s->hub);
    drain_ready(s);
}

/*
 * The committer's wake (its thread): the loop takes in what is durable.
 * An eventfd of ours rather than a uv_async_t: libuv's async handler spins
 * (and then sched_yield()s) while the sending thread is between marking
 * the handle pending and finishing its write, which with both threads on
 * one CPU (the benchmark pins the daemon) cost the loop thread a spin and
 * a sched_yield() on up to one wake in seven (W2, T = 200, SQLite FULL).
 * Written once until the loop reads it.
 */
static void
commit_wake(void *user)
{
    tp_server *s = user;
    if (atomic_exchange(&s->commit_woken, 1))
        return;
    uint64_t one = 1;
    ssize_t r = write(s->commit_fd, &one, sizeof one);
    (void)r; /* cannot fill: the counter is read at every wake */
}

/* Loop thread: frames of durable transactions are released; before_sleep()
 * writes them at the end of this iteration. The flag is cleared before the
 * durable sequence is read, so a commit published after it wakes us again. */
static void
commit_done(uv_poll_t *w, int status, int events)
{
    (void)status, (void)events;
    tp_server *s = w->data;
    atomic_store(&s->commit_woken, 0);
    uint64_t n;
    ssize_t r = read(s->commit_fd, &n, sizeof n);
    (void)r; /* EAGAIN: already read */
    tp__hub_collect(s->hub);
    tp__hostapi_durable(s);
}

/*
 * The end of a loop iteration: every connection with something to send is
 * asked for a write (at once, or after flush_ms to gather more). Redis's
 * beforeSleep(): the store commits here first, once there is a store.
 */
static void
flush_ready(tp_server *s)
{
    if (s->flush_ms > 0) {
        if (!s->flush_armed && tp__hub_has_ready(s->hub)) {
            s->flush_armed = 1;
            uv_timer_start(&s->flush_w, flush_timer, s->flush_ms, 0);
        }
        return;
    }
    drain_ready(s);
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                 */
/* ------------------------------------------------------------------------ */

/* ---- Unfinished messages: bounded in time and, server-wide, in bytes ---- */

static void message_timer(uv_timer_t *w);

static void
arm_message_timer(tp_server *s)
{
    if (s->un_head == NULL) {
        if (s->message_armed)
            uv_timer_stop(&s->message_w);
        s->message_armed = 0;
        return;
    }
    int64_t left = s->un_head->rx_deadline_ns - tp__clock_mono_ns();
    uint64_t ms = left > 0 ? (uint64_t)(left / 1000000) + 1 : 0;
    uv_timer_start(&s->message_w, message_timer, ms, 0);
    s->message_armed = 1;
}

/* The message being received ended (or was dropped): it no longer counts. */
static void
unfinished_end(tp_server *s, tp__ws *ws)
{
    if (!ws->unfinished)
        return;
    s->unfinished_bytes -= ws->rx_counted;
    ws->rx_counted = 0;
    ws->unfinished = 0;
    int was_head = s->un_head == ws;
    if (ws->un_prev != NULL)
        ws->un_prev->un_next = ws->un_next;
    else
        s->un_head = ws->un_next;
    if (ws->un_next != NULL)
        ws->un_next->un_prev = ws->un_prev;
    else
        s->un_tail = ws->un_prev;
    ws->un_prev = ws->un_next = NULL;
    if (was_head)
        arm_message_timer(s);
}

static void
rx_free(tp__ws *ws)
{
    tp__free(ws->rx);
    ws->rx = NULL;
    ws->rx_len = ws->rx_cap = 0;
}

/*
 * A message begins to be buffered, or its buffer grows to cap: counted
 * against max_unfinished_bytes. Returns -1 when that would pass the limit:
 * the connection is closed with 1013 (try again later), as nginx answers
 * when its request buffers run out, and what it had is freed at once.
 */
static int
unfinished_grow(tp_server *s, tp__ws *ws, size_t cap)
{
    size_t others = s->unfinished_bytes - ws->rx_counted;
    if (cap > s->max_unfinished_bytes || others > s->max_unfinished_bytes - cap) {
        unfinished_end(s, ws);
        rx_free(ws);
        s->unfinished_closed[1]++;
        ws->close_code = 1013;
        ws->close_why = "the server holds too many unfinished messages: try again later";
        return -1;
    }
    s->unfinished_bytes = others + cap;
    ws->rx_counted = cap;
    if (!ws->unfinished) {
        ws->unfinished = 1;
        ws->rx_deadline_ns = tp__clock_mono_ns() + (int64_t)s->message_timeout_ms * 1000000;
        ws->un_prev = s->un_tail;
        ws->un_next = NULL;
        if (s->un_tail != NULL)
            s->un_tail->un_next = ws;
        else
            s->un_head = ws;
        s->un_tail = ws;
        if (s->un_head == ws)
            arm_message_timer(s);
    }
    return 0;
}

/* Messages not ended in time: their connections close with 1008 (a policy
 * violation: nginx's client_body_timeout, for a WebSocket message). */
static void
message_timer(uv_timer_t *w)
{
    tp_server *s = w->data;
    s->message_armed = 0;
    int64_t now = tp__clock_mono_ns();
    while (s->un_head != NULL && s->un_head->rx_deadline_ns <= now) {
        tp__ws *ws = s->un_head;
        unfinished_end(s, ws);
        rx_free(ws);
        s->unfinished_closed[0]++;
        if (ws->close_code == 0) {
            ws->close_code = 1008;
            ws->close_why = "message not finished in time";
        }
        want_write(ws);
    }
    arm_message_timer(s);
}

static void
feed_result(tp__ws *ws, int rc)
{
    if (rc == TP_ECLOSED && ws->close_code == 0)
        ws->close_code = tp_conn_close_code(ws->conn);
}

static int
receive_frame(tp_server *s, tp__ws *ws, const char *in, size_t len)
{
    if (ws->conn == NULL || ws->close_code != 0)
        return 0; /* closing: what else arrives is dropped */
    if (lws_frame_is_binary(ws->wsi)) {
        /* PROTOCOL.md: a binary frame closes the connection with 1003. */
        ws->close_code = 1003;
        lws_close_reason(ws->wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         (unsigned char *)"binary frames are not accepted", 30);
        return -1;
    }
    size_t max = tp__hub_limits(s->hub)->max_message_bytes;
    size_t remaining = lws_remaining_packet_payload(ws->wsi);
    int last = lws_is_final_fragment(ws->wsi) && remaining == 0;
    size_t known = ws->rx_len + len + remaining;
    if (known > max) {
        /* Refused as soon as the frame header tells: the hub answers
         * too_large and asks for 1009, and the rest is never buffered. */
        feed_result(ws, tp_conn_feed(ws->conn, NULL, known));
        ws->rx_len = 0;
        unfinished_end(s, ws);
        want_write(ws);
        return 0;
    }
    if (last && ws->rx_len == 0) {
        feed_result(ws, tp_conn_feed(ws->conn, in, len)); /* the common case: no copy */
        return 0;
    }
    size_t cap = ws->rx_cap;
    if (ws->rx_len + len > cap) {
        cap = cap ? cap : 4096;
        while (cap < ws->rx_len + len)
            cap *= 2;
    }
    /* A message that does not end here is held: counted, with a deadline. */
    if (!last && (!ws->unfinished || cap != ws->rx_counted) && unfinished_grow(s, ws, cap) != 0)
        return 0; /* 1013: receive() closes */
    if (cap != ws->rx_cap) {
        char *rx = tp__realloc(ws->rx, cap);
        if (rx == NULL) {
            unfinished_end(s, ws);
            ws->close_code = 1011;
            want_write(ws);
            return 0;
        }
        ws->rx = rx;
        ws->rx_cap = cap;
    }
    if (len > 0) /* an empty fragment adds nothing (and rx may be NULL) */
        memcpy(ws->rx + ws->rx_len, in, len);
    ws->rx_len += len;
    if (last) {
        /* lws checks UTF-8 fragment by fragment, but misses a sequence cut
         * short by the end of the message when the last fragment is empty:
         * RFC 6455, 8.1, the whole message must be UTF-8. */
        if (!tp__utf8_valid_n(ws->rx, ws->rx_len)) {
            ws->close_code = 1007;
            lws_close_reason(ws->wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
                             (unsigned char *)"invalid UTF-8", 13);
            return -1;
        }
        unfinished_end(s, ws);
        ws->after_pong = 1;
        feed_result(ws, tp_conn_feed(ws->conn, ws->rx, ws->rx_len));
        ws->rx_len = 0;
        if (ws->rx_cap > 65536) /* a large message does not keep its buffer */
            rx_free(ws);
    }
    return 0;
}

/*
 * A received frame. When it makes the hub close the connection (1009), the
 * hub's last frames (the too_large error) are written here and lws runs the
 * closing handshake from this receive path, where it also stops parsing what
 * else the peer sends (an oversized frame's rest).
 */
static int
receive(tp_server *s, tp__ws *ws, const char *in, size_t len)
{
    int was = ws->close_code;
    int rc = receive_frame(s, ws, in, len);
    if (rc != 0 || was != 0 || ws->close_code == 0)
        return rc;
    if (write_frames(s, ws) != 0)
        return -1;
    const char *why = ws->close_why ? ws->close_why : close_reason(ws->close_code);
    lws_close_reason(ws->wsi, (enum lws_close_status)ws->close_code, (unsigned char *)why,
                     strlen(why));
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

static int
established(tp_server *s, struct lws *wsi, tp__ws *ws)
{
    memset(ws, 0, sizeof *ws);
    ws->wsi = wsi;
    if (s->pending_wsi != wsi || s->pending_tenant == NULL)
        return -1; /* not a handshake tp__http_confirm_upgrade let through */
    char *tenant = s->pending_tenant;
    int flags = s->pending_flags;
    s->pending_tenant = NULL;
    s->pending_wsi = NULL;
    /* No longer a pending handshake of its TCP peer; a connection of its
     * client address (counted by tp__http_confirm_upgrade). */
    tp__peer *tcp = lws_get_opaque_user_data(wsi);
    if (tcp != NULL) {
        lws_set_opaque_user_data(wsi, NULL);
        tcp->pending--;
        tp__peer_put(s, tcp);
    }
    ws->addr = s->pending_addr;
    s->pending_addr = NULL;
    tp_error err;
    ws->conn = tp_conn_open(s->hub, tenant, flags, &err);
    lws_get_peer_simple(wsi, ws->peer, sizeof ws->peer);
    ws->since_ms = tp__hub_now(s->hub);
    char qt[TP__LOG_VALUE_MAX];
    if (ws->conn == NULL) {
        tp__log(s->log, TP_LOG_ERROR, "connect failed tenant=%s peer=%s: %s",
                tp__log_value(tenant, qt, sizeof qt), ws->peer, err.message);
        tp__free(tenant);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, NULL, 0);
        return -1;
    }
    tp__free(tenant);
    tp_conn_set_expiry(ws->conn, s->pending_expiry);
    s->pending_expiry = 0;
    tp_conn_set_user(ws->conn, ws);
    s->nconns++;
    s->opened++;
    tp__log(s->log, TP_LOG_INFO, "connect tenant=%s conn=%s peer=%s%s",
            tp__log_value(tp_conn_tenant(ws->conn), qt, sizeof qt), tp_conn_id(ws->conn), ws->peer,
            flags & TP_CONN_RESUME ? " resume=1" : "");
    return 0;
}

static void
closed(tp_server *s, tp__ws *ws)
{
    unfinished_end(s, ws);
    rx_free(ws);
    if (ws->conn == NULL)
        return;
    /* A code lws sent when it failed the connection for breaking RFC 6455
     * (1002, 1007), else, without a close frame from us or the peer (a
     * dropped TCP connection): 1006. */
    if (ws->close_code == 0 && lws_get_close_length(ws->wsi) >= 2) {
        /* lws keeps its close reason where it keeps ping payloads: a ping
         * that came after the failure may have overwritten it. */
        const unsigned char *p = lws_get_close_payload(ws->wsi);
        int lws_code = p[0] << 8 | p[1];
        if (lws_code >= 1000 && lws_code <= 4999)
            ws->close_code = lws_code;
    }
    int code = ws->close_code ? ws->close_code : 1006;
    tp__count_close(s, code);
    char qt[TP__LOG_VALUE_MAX];
    tp__log(s->log, TP_LOG_INFO, "disconnect tenant=%s conn=%s code=%d%s",
            tp__log_value(tp_conn_tenant(ws->conn), qt, sizeof qt), tp_conn_id(ws->conn), code,
            ws->peer_closed ? " by=peer" : "");
    tp_conn_close(ws->conn);
    ws->conn = NULL;
    s->nconns--;
}

/* RFC 6455, 7.4: the codes a peer may send in a close frame (1012 to 1014
 * were registered after the RFC and are allowed). */
static int
close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/*
 * The peer's close frame: its payload is checked before lws echoes it (RFC
 * 6455, 5.5.1 and 7.4): a payload of one byte or a code no peer may send
 * fails the connection with 1002, a reason that is not UTF-8 with 1007.
 * Returns nonzero to make lws close with our code instead of the echo.
 */
static int
peer_close(tp__ws *ws, const unsigned char *in, size_t len)
{
    if (ws->close_sent)
        return 1; /* the answer to our close: lws closes TCP, no echo */
    ws->peer_closed = 1;
    int code = len >= 2 ? (in[0] << 8 | in[1]) : 1005;
    int fail = 0;
    const char *why = NULL;
    if (len == 1 || (len >= 2 && !close_code_valid(code))) {
        fail = LWS_CLOSE_STATUS_PROTOCOL_ERR;
        why = "bad close code";
    } else if (len > 2 && !tp__utf8_valid_n((const char *)in + 2, len - 2)) {
        fail = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
        why = "close reason not UTF-8";
    }
    if (fail) {
        ws->close_code = fail;
        lws_close_reason(ws->wsi, (enum lws_close_status)fail, (unsigned char *)why, strlen(why));
        return 1;
    }
    if (ws->close_code == 0)
        ws->close_code = code;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Waking the loop: posts and stop                                           */
/* ------------------------------------------------------------------------ */

static void
wake(tp_server *s)
{
    /* One byte; a full pipe already wakes the loop, so EAGAIN is fine. */
    ssize_t r = write(s->wake[1], "w", 1);
    (void)r;
}

static void
drain_wake(tp_server *s)
{
    char buf[256];
    while (read(s->wake[0], buf, sizeof buf) > 0)
        ;
    run_posts(s);
}

void
tp__server_run_posts(tp_server *s)
{
    run_posts(s);
}

static void
run_posts(tp_server *s)
{
    pthread_mutex_lock(&s->mu);
    tp__post *p = s->posts;
    s->posts = s->posts_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (p != NULL) {
        tp__post *next = p->next;
        p->fn(p->arg);
        tp__free(p);
        p = next;
    }
}

TP_API int
tp_server_post(tp_server *s, void (*fn)(void *arg), void *arg)
{
    if (s == NULL || fn == NULL)
        return TP_EARG;
    tp__post *p = tp__malloc(sizeof *p);
    if (p == NULL)
        return TP_ENOMEM;
    p->fn = fn;
    p->arg = arg;
    p->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->posts_tail != NULL)
        s->posts_tail->next = p;
    else
        s->posts = p;
    s->posts_tail = p;
    pthread_mutex_unlock(&s->mu);
    wake(s);
    return TP_OK;
}

TP_API void
tp_server_stop(tp_server *s)
{
    /* Signal-safe: an atomic store and a write(2). */
    atomic_store(&s->stop_asked, 1);
    wake(s);
}

static void
sync_tick(uv_timer_t *w)
{
    tp_server *s = w->data;
    int64_t t0 = tp__clock_mono_ns();
    tp_hub_sync(s->hub);
    double secs = (double)(tp__clock_mono_ns() - t0) / 1e9;
    static const double bounds[TP__TICK_BUCKETS] = {0.00001, 0.000025, 0.00005, 0.0001,
                                                    0.00025, 0.0005,   0.001,   0.0025,
                                                    0.005,   0.01,     0.025,   0.1};
    int b = 0;
    while (b < TP__TICK_BUCKETS && secs > bounds[b])
        b++;
    s->tick_buckets[b]++;
    s->tick_count++;
    s->tick_sum += secs;
}

static void
evict_tick(uv_timer_t *w)
{
    tp_server *s = w->data;
    int n = tp_hub_evict(s->hub);
    if (n > 0)
        tp__log(s->log, TP_LOG_DEBUG, "evicted tenants=%d", n);
}

/*
 * Credentials that expired: their connections close with 4401 (after what
 * is already in their outbox). The core decides (tp_conn_expire); the
 * clock is the hub's, so that tests may move it.
 */
typedef struct expiry {
    tp_server *s;
    int64_t now;
} expiry;

static void
expire_conn(tp_conn *c, void *user)
{
    expiry *e = user;
    tp__ws *ws = tp_conn_user(c);
    if (ws == NULL || ws->close_code != 0 || tp_conn_expiry(c) == 0)
        return;
    if (tp_conn_close_code(c) == 0 && tp_conn_expire(c, e->now) == 4401) {
        e->s->expired++;
        ws->close_code = 4401;
        want_write(ws);
    }
}

static void
expiry_tick(uv_timer_t *w)
{
    tp_server *s = w->data;
    expiry e = {s, tp__hub_now(s->hub)};
    tp__hub_each_conn(s->hub, expire_conn, &e);
}

static void
stop_timer(uv_timer_t *w)
{
    (void)w; /* only wakes the loop: before_sleep() looks at the deadline */
}

static void
stop_conn(tp_conn *c, void *user)
{
    (void)user;
    tp__ws *ws = tp_conn_user(c);
    if (ws != NULL && ws->close_code == 0) {
        ws->close_code = 1001;
        want_write(ws);
    }
}

/* Every connection gets what it has pending, then a close with 1001. */
static void
begin_stop(tp_server *s)
{
    s->stopping = 1;
    s->stop_deadline_ns = tp__clock_mono_ns() + STOP_GRACE_NS;
    tp__hub_each_conn(s->hub, stop_conn, NULL);
    tp__log(s->log, TP_LOG_INFO, "stopping connections=%u", s->nconns);
}

/* ------------------------------------------------------------------------ */
/* Client addresses                                                          */
/* ------------------------------------------------------------------------ */

tp__peer *
tp__peer_get(tp_server *s, const tp__addr *a)
{
    char key[TP__ADDR_KEY_MAX];
    tp__addr_key(a, key);
    tp__peer *p = tp__map_get(&s->peers, key);
    if (p != NULL)
        return p;
    if ((p = tp__calloc(1, sizeof *p)) == NULL)
        return NULL;
    memcpy(p->key, key, sizeof key);
    if (tp__map_put(&s->peers, p->key, p) != 0) {
        tp__free(p);
        return NULL;
    }
    return p;
}

void
tp__peer_put(tp_server *s, tp__peer *p)
{
    if (p != NULL && p->conns == 0 && p->pending == 0) {
        tp__map_del(&s->peers, p->key);
        tp__free(p);
    }
}

int
tp__peer_trusted(const tp_server *s, const tp__addr *a)
{
    for (size_t i = 0; i < s->nproxies; i++)
        if (tp__cidr_match(&s->proxies[i], a))
            return 1;
    return 0;
}

int
tp__tcp_peer(struct lws *wsi, tp__addr *a)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = lws_get_socket_fd(wsi);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    return tp__addr_from_sockaddr((struct sockaddr *)&ss, a);
}

/*
 * A TCP connection was accepted: one more handshake pending for its
 * address. Past max_pending_handshakes_per_address it is closed at once,
 * before anything is read (nothing can be answered to a request not yet
 * read), so that one address cannot hold the server's descriptors with
 * connections that never finish a handshake. Trusted proxies are not
 * counted: every client behind them shares their address.
 */
static int
accepted(tp_server *s, struct lws *wsi)
{
    tp__addr a;
    if (tp__tcp_peer(wsi, &a) != 0 || tp__peer_trusted(s, &a))
        return 0;
    tp__peer *p = tp__peer_get(s, &a);
    if (p == NULL)
        return -1;
    if (p->pending >= s->max_pending_per_address) {
        s->dropped_pending++;
        tp__log(s->log, TP_LOG_DEBUG, "dropped peer=%s: %u handshakes pending", p->key, p->pending);
        tp__peer_put(s, p);
        return -1;
    }
    p->pending++;
    lws_set_opaque_user_data(wsi, p);
    return 0;
}

/* The last of a wsi: what it held of its address is given back. */
static void
wsi_gone(tp_server *s, struct lws *wsi, tp__ws *ws)
{
    if (s->pending_wsi == wsi) {
        tp__free(s->pending_tenant);
        s->pending_tenant = NULL;
        s->pending_wsi = NULL;
        if (s->pending_addr != NULL) {
            s->pending_addr->conns--;
            tp__peer_put(s, s->pending_addr);
            s->pending_addr = NULL;
        }
    }
    tp__peer *tcp = lws_get_opaque_user_data(wsi);
    if (tcp != NULL) {
        lws_set_opaque_user_data(wsi, NULL);
        tcp->pending--;
        tp__peer_put(s, tcp);
    }
    if (ws != NULL && ws->addr != NULL && ws->wsi == wsi) {
        ws->addr->conns--;
        tp__peer_put(s, ws->addr);
        ws->addr = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* The lws callback                                                          */
/* ------------------------------------------------------------------------ */

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    tp_server *s = lws_context_user(lws_get_context(wsi));
    tp__ws *ws = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: return tp__http_confirm_upgrade(s, wsi);
    case LWS_CALLBACK_HTTP:
        return tp__hostapi_claims(in) ? tp__hostapi_http(s, wsi, ws, in)
                                      : tp__http_serve(s, wsi, in);
    case LWS_CALLBACK_HTTP_BODY: return tp__hostapi_body(s, wsi, ws, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: return tp__hostapi_body_done(s, wsi, ws);
    case LWS_CALLBACK_CLOSED_HTTP: tp__hostapi_gone(ws); return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: return tp__hostapi_writeable(s, wsi, ws);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return s->pending_wsi == wsi ? 0 : 1;
    case LWS_CALLBACK_ESTABLISHED: return established(s, wsi, ws);
    case LWS_CALLBACK_RECEIVE: return receive(s, ws, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: ws->after_pong = 0; return flush_conn(s, ws);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: return peer_close(ws, in, len);
    case LWS_CALLBACK_CLOSED: closed(s, ws); return 0;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: return accepted(s, wsi);
    case LWS_CALLBACK_WSI_DESTROY:
        tp__hostapi_gone(ws);
        wsi_gone(s, wsi, ws);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE: drain_wake(s); return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (wsi == s->wake_wsi)
            s->wake_wsi = NULL;
        return 0;
    default: return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

/* Splits "host:port" or "[v6]:port". */
static int
parse_listen(const char *listen, char **host, int *port, tp_error *err)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen || colon[1] == '\0')
        return tp__error_set(err, TP_EARG, "listen: \"%.64s\" is not host:port", listen);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return tp__error_set(err, TP_EARG, "listen: \"%.64s\" has a bad port", listen);
    const char *h = listen;
    size_t n = (size_t)(colon - listen);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    *host = tp__malloc(n + 1);
    if (*host == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    memcpy(*host, h, n);
    (*host)[n] = '\0';
    *port = (int)p;
    return TP_OK;
}

/*
 * The listening socket is ours, not lws's: lws 4.1.6's listener retries a
 * failed accept at once, so that out of descriptors (EMFILE) the loop
 * spins at full CPU while the backlog waits. Ours pauses instead
 * (accept_ready), as nginx does, and hands each accepted socket to lws
 * (lws_adopt_descriptor_vhost), which serves it as one of its own.
 */
static int
bind_listener(tp_server *s, tp_error *err)
{
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    socklen_t sl;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
    if (inet_pton(AF_INET, s->host, &v4->sin_addr) == 1) {
        family = v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->port);
        sl = sizeof *v4;
    } else if (inet_pton(AF_INET6, s->host, &v6->sin6_addr) == 1) {
        family = v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)s->port);
        sl = sizeof *v6;
    } else {
        return tp__error_set(err, TP_EARG, "listen: \"%.64s\" is not an IP address", s->host);
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tp__error_set(err, TP_EINTERNAL, "listen: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return tp__error_set(err, TP_EINTERNAL, "listen: %s:%d: %s", s->host, s->port, strerror(e));
    }
    sl = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        s->port = ntohs(family == AF_INET ? v4->sin_port : v6->sin6_port);
    s->listen_fd = fd;
    return TP_OK;
}

static void accept_ready(uv_poll_t *w, int status, int events);

static void
accept_resume(uv_timer_t *w)
{
    tp_server *s = w->data;
    s->accept_paused = 0;
    uv_poll_start(&s->listen_w, UV_READABLE, accept_ready);
}

/* Accepts what the backlog holds (a bounded batch per loop iteration, so
 * that a flood of connections cannot starve the others). */
static void
accept_ready(uv_poll_t *w, int status, int events)
{
    tp_server *s = w->data;
    (void)status;
    (void)events;
    for (int i = 0; i < TP__ACCEPT_BATCH; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: nothing can be accepted until
             * something closes. The connections wait in the backlog. */
            s->accept_pauses++;
            if (!s->accept_starved) /* once per episode, not every pause */
                tp__log(s->log, TP_LOG_WARN,
                        "accept failed: %s: accepting pauses %d ms at a time until one succeeds",
                        strerror(errno), TP__ACCEPT_PAUSE_MS);
            s->accept_starved = 1;
            s->accept_paused = 1;
            uv_poll_stop(&s->listen_w);
            uv_timer_start(&s->accept_w, accept_resume, TP__ACCEPT_PAUSE_MS, 0);
            return;
        }
        if (s->accept_starved) {
            s->accept_starved = 0;
            tp__log(s->log, TP_LOG_INFO, "accepting again (pauses so far: %llu)",
                    (unsigned long long)s->accept_pauses);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        lws_sock_file_fd_type sfd;
        sfd.sockfd = fd;
        int type =
            LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (s->tls_cert != NULL ? LWS_ADOPT_ALLOW_SSL : 0);
        /* lws closes fd itself when it cannot adopt it (or when
         * accepted() refuses it). */
        lws_adopt_descriptor_vhost(s->vh, (lws_adoption_type)type, sfd, NULL, NULL);
    }
}

static unsigned
or_default(unsigned v, unsigned d)
{
    return v ? v : d;
}

static unsigned
ms_to_s(unsigned ms)
{
    unsigned s = (ms + 999) / 1000;
    return s ? s : 1;
}

/*
 * Reads a certificate chain and its key and checks that they match, so
 * that a reload never hands lws a pair it would half apply, and a start
 * with a bad pair fails with a reason.
 */
static int
tls_check(const char *cert, const char *key, tp_error *err)
{
    FILE *f = fopen(cert, "r");
    if (f == NULL)
        return tp__error_set(err, TP_EARG, "tls.cert_file: cannot read %.200s: %s", cert,
                             strerror(errno));
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        ERR_clear_error();
        return tp__error_set(err, TP_EARG, "tls.cert_file: %.200s holds no PEM certificate", cert);
    }
    f = fopen(key, "r");
    if (f == NULL) {
        X509_free(x);
        return tp__error_set(err, TP_EARG, "tls.key_file: cannot read %.200s: %s", key,
                             strerror(errno));
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    int ok = k != NULL && X509_check_private_key(x, k) == 1;
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    if (!ok)
        return tp__error_set(err, TP_EARG,
                             "tls.key_file: %.200s is not the private key of the certificate", key);
    return TP_OK;
}

/* The certificate files again (tp_server_reload_tls), on the loop thread. */
static void
tls_reload(tp_server *s)
{
    tp_error err = {0, ""};
    if (s->tls_cert == NULL)
        return;
    if (tls_check(s->tls_cert, s->tls_key, &err) != TP_OK) {
        s->tls_reload_failures++;
        tp__log(s->log, TP_LOG_ERROR, "tls reload failed, the old certificate stays: %s",
                err.message);
        return;
    }
    /* lws loads them into the vhost's SSL_CTX: connections open keep the
     * SSL objects they have, new ones take the new pair. */
    lws_tls_cert_updated(s->ctx, s->tls_cert, s->tls_key, NULL, 0, NULL, 0);
    s->tls_reloads++;
    tp__log(s->log, TP_LOG_INFO, "tls reloaded cert=%s", s->tls_cert);
}

TP_API void
tp_server_reload_tls(tp_server *s)
{
    /* Signal-safe: an atomic store and a write(2). */
    atomic_store(&s->reload_asked, 1);
    wake(s);
}

/* lws's own log lines are for debugging lws itself. */
static void
lws_logger(int level, const char *line)
{
    (void)level;
    fputs(line, stderr);
}

static int
copy_origins(tp_server *s, const char *const *origins)
{
    if (origins == NULL)
        return 0;
    size_t n = 0;
    while (origins[n] != NULL)
        n++;
    s->origins = tp__calloc(n + 1, sizeof *s->origins);
    if (s->origins == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((s->origins[i] = tp__strdup(origins[i])) == NULL)
            return -1;
    return 0;
}

/* trusted_proxies and client_address_header go together. */
static int
set_proxies(tp_server *s, const tp_server_config *config, tp_error *err)
{
    const char *const *list = config->trusted_proxies;
    size_t n = 0;
    while (list != NULL && list[n] != NULL)
        n++;
    const char *h = config->client_address_header;
    if ((n > 0) != (h != NULL && h[0] != '\0'))
        return tp__error_set(err, TP_EARG,
                             "trusted_proxies and client_address_header: give both or neither");
    if (n == 0)
        return TP_OK;
    for (const char *p = h; *p != '\0'; p++)
        if (*p <= ' ' || *p == ':' || *p == 0x7f)
            return tp__error_set(err, TP_EARG, "client_address_header: not a header name");
    if ((s->proxies = tp__calloc(n, sizeof *s->proxies)) == NULL ||
        (s->address_header = tp__strdup(h)) == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (tp__cidr_parse(list[i], &s->proxies[i]) != 0)
            return tp__error_set(err, TP_EARG,
                                 "trusted_proxies[%zu]: \"%.64s\" is not an address or CIDR block",
                                 i, list[i]);
    s->nproxies = n;
    return TP_OK;
}

/* static_dir must name a directory now: a typo fails at start, not at the
 * first page asked for. */
static int
set_static_dir(tp_server *s, const char *dir, tp_error *err)
{
    if (dir == NULL || dir[0] == '\0')
        return TP_OK;
    struct stat st;
    if (strlen(dir) > TP__STATIC_DIR_MAX)
        return tp__error_set(err, TP_EARG, "static_dir: longer than %d bytes", TP__STATIC_DIR_MAX);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tp__error_set(err, TP_EARG, "static_dir: \"%.200s\" is not a directory", dir);
    if ((s->static_dir = tp__strdup(dir)) == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    return TP_OK;
}

TP_API tp_server *
tp_server_new(tp_hub *hub, const tp_server_config *config, tp_error *err)
{
    tp_server_config def = {0};
    if (config == NULL)
        config = &def;
    if (hub == NULL) {
        tp__error_set(err, TP_EARG, "hub: required");
        return NULL;
    }
    tp_server *s = tp__calloc(1, sizeof *s);
    if (s == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    s->hub = hub;
    s->log = tp__hub_logger(hub);
    s->wake[0] = s->wake[1] = -1;
    s->listen_fd = -1;
    s->commit_fd = -1;
    atomic_init(&s->commit_woken, 0);
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->stop_asked, 0);
    atomic_init(&s->reload_asked, 0);
    s->autosync_ms = config->autosync_ms;
    tp__hub_default_tick(hub, s->autosync_ms); /* what `hello` announces */
    s->flush_ms = config->flush_ms;
    s->max_connections = or_default(config->max_connections, 10000);
    s->max_per_tenant = or_default(config->max_connections_per_tenant, 256);
    s->handshake_timeout_ms = or_default(config->handshake_timeout_ms, 5000);
    s->ping_interval_ms = or_default(config->ping_interval_ms, 30000);
    s->ping_timeout_ms = or_default(config->ping_timeout_ms, 10000);
    s->max_per_address = or_default(config->max_connections_per_address, 256);
    s->max_pending_per_address = or_default(config->max_pending_handshakes_per_address, 64);
    s->message_timeout_ms = or_default(config->message_timeout_ms, 10000);
    s->max_unfinished_bytes =
        config->max_unfinished_bytes ? config->max_unfinished_bytes : (size_t)64 << 20;
    tp__map_init(&s->peers, tp__seed(s));
    if (set_proxies(s, config, err) != TP_OK)
        goto fail;
    if (set_static_dir(s, config->static_dir, err) != TP_OK)
        goto fail;
    if (parse_listen(config->listen ? config->listen : "127.0.0.1:8080", &s->host, &s->port, err) !=
        TP_OK)
        goto fail;
    if ((s->route = tp__route_new(config->route ? config->route : "/ws/{tenant}", err)) == NULL) {
        if (err != NULL && err->code == TP_EARG) {
            char m[sizeof err->message];
            snprintf(m, sizeof m, "%s", err->message);
            tp__error_set(err, TP_EARG, "route: %s", m);
        }
        goto fail;
    }
    if ((config->tls_cert_file != NULL) != (config->tls_key_file != NULL)) {
        tp__error_set(err, TP_EARG, "tls: give both cert_file and key_file, or neither");
        goto fail;
    }
    if (config->tls_cert_file != NULL &&
        ((s->tls_cert = tp__strdup(config->tls_cert_file)) == NULL ||
         (s->tls_key = tp__strdup(config->tls_key_file)) == NULL)) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        goto fail;
    }
    if (s->tls_cert != NULL && tls_check(s->tls_cert, s->tls_key, err) != TP_OK)
        goto fail;
    s->on_reload = config->on_reload;
    s->on_reload_user = config->on_reload_user;
    if (config->metrics_token != NULL &&
        (s->metrics_token = tp__strdup(config->metrics_token)) == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        goto fail;
    }
    if (copy_origins(s, config->origins) != 0) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        goto fail;
    }
    if (bind_listener(s, err) != TP_OK)
        goto fail;
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        tp__error_set(err, TP_EINTERNAL, "pipe: %s", strerror(errno));
        goto fail;
    }

    s->protocols[0] = (struct lws_protocols){
        .name = TP__SUBPROTOCOL,
        .callback = callback,
        .per_session_data_size = sizeof(tp__ws),
        /* lws mallocs this (+ LWS_PRE + 4) per connection and touches its
         * first page: 2 KiB in all keeps two connections to a page (W3: 6.1
         * -> 4.1 KB of RSS per idle connection). It also caps each read;
         * larger messages arrive in pieces, which receive() assembles. */
        .rx_buffer_size = 2048 - LWS_PRE - 4 - 16,
        /* One send() per write: lws would otherwise cut each write at
         * rx_buffer_size and copy the rest aside for later. */
        .tx_packet_size = TP__TX_MAX,
    };
    s->protocols[1] = (struct lws_protocols){.name = "transports-wake", .callback = callback};
    /* Server pings (lws's validity policy): a ping after ping_interval of
     * silence, and the connection dropped without an answer ping_timeout
     * later. lws counts in whole seconds. */
    s->retry.secs_since_valid_ping = (uint16_t)ms_to_s(s->ping_interval_ms);
    s->retry.secs_since_valid_hangup =
        (uint16_t)(ms_to_s(s->ping_interval_ms) + ms_to_s(s->ping_timeout_ms));

    lws_set_log_level(s->log->level >= TP_LOG_DEBUG && s->log->fn != NULL ? LLL_ERR | LLL_WARN : 0,
                      lws_logger);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* our listener: bind_listener */
    info.protocols = s->protocols;
    info.user = s;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(s->host, ':') == NULL);
    info.timeout_secs = ms_to_s(s->handshake_timeout_ms);
    info.timeout_secs_ah_idle = ms_to_s(s->handshake_timeout_ms);
    info.max_http_header_data = 8192;
    info.retry_and_idle_policy = &s->retry;
    if (s->tls_cert != NULL) {
        /* wss:// and https:// on the listener; TLS 1.2 or newer (RFC 8996
         * deprecates 1.0 and 1.1). A plain connection to it fails. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = s->tls_cert;
        info.ssl_private_key_filepath = s->tls_key;
        info.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
    }
    info.vhost_name = "default";
    /* lws on a libuv loop of ours (epoll): lws's own loop polls every
     * socket on every iteration, which made a write among thousands of
     * quiet connections cost tens of microseconds. Ours, so that
     * before_sleep() runs at the end of every iteration. */
    if (uv_loop_init(&s->loop) != 0) {
        tp__error_set(err, TP_EINTERNAL, "listen: no event loop");
        goto fail;
    }
    s->loop_ok = 1;
    uv_timer_init(&s->loop, &s->sync_w);
    uv_timer_init(&s->loop, &s->flush_w);
    uv_timer_init(&s->loop, &s->stop_w);
    uv_timer_init(&s->loop, &s->evict_w);
    uv_timer_init(&s->loop, &s->message_w);
    uv_timer_init(&s->loop, &s->expiry_w);
    uv_timer_init(&s->loop, &s->accept_w);
    s->accept_w.data = s;
    uv_prepare_init(&s->loop, &s->prepare);
    s->commit_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->commit_fd < 0 || uv_poll_init(&s->loop, &s->commit_w, s->commit_fd) != 0) {
        tp__error_set(err, TP_EINTERNAL, "listen: the server's loop could not start");
        goto fail;
    }
    s->commit_w.data = s;
    s->commit_ok = 1;
    /* It must not keep the loop running by itself (tp_server_free runs the
     * loop until lws's handles are closed). */
    uv_poll_start(&s->commit_w, UV_READABLE, commit_done);
    uv_unref((uv_handle_t *)&s->commit_w);
    tp__hub_set_wake(hub, commit_wake, s);
    s->sync_w.data = s->flush_w.data = s->stop_w.data = s->evict_w.data = s->prepare.data = s;
    s->message_w.data = s->expiry_w.data = s;
    void *loops[1] = {&s->loop};
    info.foreign_loops = loops;
    info.options |= LWS_SERVER_OPTION_LIBUV;
    s->ctx = lws_create_context(&info);
    if (s->ctx == NULL) {
        tp__error_set(err, TP_EINTERNAL, "listen: %s:%d: the server could not start", s->host,
                      s->port);
        goto fail;
    }
    s->vh = lws_get_vhost_by_name(s->ctx, "default");
    lws_sock_file_fd_type fd;
    fd.filefd = s->wake[0];
    s->wake_wsi = s->vh ? lws_adopt_descriptor_vhost(s->vh, LWS_ADOPT_RAW_FILE_DESC, fd,
                                                     "transports-wake", NULL)
                        : NULL;
    if (s->wake_wsi == NULL) {
        tp__error_set(err, TP_EINTERNAL, "listen: the server's loop could not start");
        goto fail;
    }
    if (uv_poll_init(&s->loop, &s->listen_w, s->listen_fd) != 0) {
        tp__error_set(err, TP_EINTERNAL, "listen: the server's loop could not poll");
        goto fail;
    }
    s->listen_w.data = s;
    s->listen_ok = 1;
    /* lws closes an adopted descriptor when its wsi goes: closing it again
     * here would close whatever fd took the number meanwhile (another
     * thread's socket, a database file). */
    s->wake_adopted = 1;
    tp__error_clear(err);
    return s;
fail:
    tp_server_free(s);
    return NULL;
}

TP_API int
tp_server_port(const tp_server *s)
{
    return s->port;
}

/*
 * The end of each loop iteration, before libuv blocks in epoll: stop when
 * asked (and once everyone had their 1001), then write what is ready.
 */
static void
before_sleep(uv_prepare_t *w)
{
    tp_server *s = w->data;
    if (atomic_exchange(&s->reload_asked, 0)) {
        tls_reload(s);
        if (s->on_reload != NULL)
            s->on_reload(s->on_reload_user);
    }
    if (atomic_load(&s->stop_asked) && !s->stopping) {
        begin_stop(s);
        uv_timer_start(&s->stop_w, stop_timer, (uint64_t)(STOP_GRACE_NS / 1000000), 0);
    }
    if (s->stopping && (s->nconns == 0 || tp__clock_mono_ns() > s->stop_deadline_ns)) {
        uv_stop(&s->loop);
        return;
    }
    /* Redis's beforeSleep(): this iteration's changes become one
     * transaction, made durable on the commit thread; the loop goes on. */
    tp__hub_seal(s->hub, NULL);
    tp__hub_collect(s->hub);
    tp__hostapi_durable(s);
    flush_ready(s);
}

TP_API int
tp_server_run(tp_server *s)
{
    s->running = 1;
    /* Our timers are libuv's, independent of lws's own. */
    if (s->autosync_ms > 0)
        uv_timer_start(&s->sync_w, sync_tick, s->autosync_ms, s->autosync_ms);
    if (tp__hub_store(s->hub) != NULL)
        uv_timer_start(&s->evict_w, evict_tick, TP__EVICT_MS, TP__EVICT_MS);
    if (tp__hub_has_verify(s->hub))
        uv_timer_start(&s->expiry_w, expiry_tick, TP__EXPIRY_MS, TP__EXPIRY_MS);
    uv_poll_start(&s->listen_w, UV_READABLE, accept_ready);
    uv_prepare_start(&s->prepare, before_sleep);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_prepare_stop(&s->prepare);
    uv_timer_stop(&s->sync_w);
    uv_timer_stop(&s->flush_w);
    uv_timer_stop(&s->stop_w);
    uv_timer_stop(&s->evict_w);
    uv_timer_stop(&s->message_w);
    uv_timer_stop(&s->expiry_w);
    uv_timer_stop(&s->accept_w);
    uv_poll_stop(&s->listen_w);
    s->accept_paused = 0;
    s->flush_armed = 0;
    s->message_armed = 0;
    s->running = 0;
    tp__log(s->log, TP_LOG_INFO, "stopped");
    return TP_OK;
}

TP_API void
tp_server_free(tp_server *s)
{
    if (s == NULL)
        return;
    if (s->ctx != NULL) {
        /* On a loop of ours, lws destroys in two calls: the first closes
         * every connection (closed() runs for each) and lws's libuv handles,
         * which close as the loop runs; the second frees the context. */
        lws_context_destroy(s->ctx);
        if (s->loop_ok)
            uv_run(&s->loop, UV_RUN_DEFAULT);
        lws_context_destroy(s->ctx);
    }
    /* After the connections (their connection.closed events are noted),
     * before the loop's last run (which closes the webhooks' timer). */
    struct tp__webhooks *hooks = s->webhooks;
    tp__webhooks_free(hooks);
    if (s->loop_ok) {
        /* libuv closes handles asynchronously: ours close in one last run. */
        uv_close((uv_handle_t *)&s->sync_w, NULL);
        uv_close((uv_handle_t *)&s->flush_w, NULL);
        uv_close((uv_handle_t *)&s->stop_w, NULL);
        uv_close((uv_handle_t *)&s->evict_w, NULL);
        uv_close((uv_handle_t *)&s->message_w, NULL);
        uv_close((uv_handle_t *)&s->expiry_w, NULL);
        uv_close((uv_handle_t *)&s->accept_w, NULL);
        if (s->listen_ok)
            uv_close((uv_handle_t *)&s->listen_w, NULL);
        uv_close((uv_handle_t *)&s->prepare, NULL);
        if (s->commit_ok) {
            /* The committer must not signal a handle that is gone: the
             * hub commits for itself from now on. */
            tp__hub_set_wake(s->hub, NULL, NULL);
            uv_close((uv_handle_t *)&s->commit_w, NULL);
        }
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
    }
    tp__webhooks_release(hooks);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    /* After the loop's last run closed commit_w. */
    if (s->commit_fd >= 0)
        close(s->commit_fd);
    run_posts(s); /* tp_server_post's promise: fn runs exactly once */
    if (s->wake[0] >= 0 && !s->wake_adopted)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    tp__free(s->pending_tenant);
    tp__hostapi_free(s->api);
    void *v;
    for (size_t it = 0; tp__map_next(&s->peers, &it, NULL, &v);)
        tp__free(v); /* none is left once every wsi is gone; freed all the same */
    tp__map_free(&s->peers);
    tp__free(s->proxies);
    tp__free(s->address_header);
    tp__free(s->static_dir);
    tp__free(s->tls_cert);
    tp__free(s->tls_key);
    if (s->metrics_token != NULL)
        explicit_bzero(s->metrics_token, strlen(s->metrics_token));
    tp__free(s->metrics_token);
    if (s->origins != NULL)
        for (size_t i = 0; s->origins[i] != NULL; i++)
            tp__free(s->origins[i]);
    tp__free(s->origins);
    tp__route_free(s->route);
    tp__free(s->host);
    tp__free(s->sendbuf);
    tp__free(s);
}
