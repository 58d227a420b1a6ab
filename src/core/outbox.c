/*
 * A connection's outbox: the encoded messages it must send, in order, each
 * a reference to a buffer that may be shared with every other recipient.
 * Fanning a change out is a pointer push per connection; frames are built
 * from the outbox only when the transport asks for them.
 */
#include <string.h>

#include "core/conn_int.h"
#include "core/hub.h"
#include "core/model.h"
#include "core/notes.h"
#include "core/session.h"
#include "util/alloc.h"

void
tp__conn_mark_ready(tp_conn *c)
{
    if (c->ready)
        return;
    if (tp__vec_push(&c->hub->ready, c) != 0) {
        /* The transport could not learn that this connection has data:
         * better closed than silently stalled. */
        tp__conn_outbox_clear(c);
        c->close_code = 1011;
        c->state = TP__CONN_CLOSING;
        return;
    }
    c->ready = 1;
    c->ready_idx = c->hub->ready.len - 1;
}

void
tp__conn_outbox_clear(tp_conn *c)
{
    for (size_t i = c->out_head; i < c->out_len; i++)
        tp__buf_unref(c->out[i]);
    c->out_head = c->out_len = 0;
    c->out_bytes = 0;
    c->out_exempt = 0;
}

/* Takes a message's bytes off the outbox's counts (the exempt ones first:
 * they are at the front). */
static void
taken(tp_conn *c, size_t len)
{
    c->out_bytes -= len;
    c->out_exempt -= len < c->out_exempt ? len : c->out_exempt;
}

/* Queues a message tagged with the epoch it may leave in. */
static void
send_tagged(tp_conn *c, tp__buf *msg, uint64_t tag)
{
    if (c->state == TP__CONN_CLOSING)
        return;
    if (msg == NULL) {
        /* An encoding failed for lack of memory: this connection would miss
         * a message, so it is closed and can resume. */
        tp__conn_outbox_clear(c);
        c->close_code = 1011;
        c->state = TP__CONN_CLOSING;
        tp__conn_mark_ready(c);
        return;
    }
    if (c->out_len == c->out_cap) {
        if (c->out_head > 0) {
            size_t n = c->out_len - c->out_head;
            memmove(c->out, c->out + c->out_head, n * sizeof *c->out);
            memmove(c->out_tag, c->out_tag + c->out_head, n * sizeof *c->out_tag);
            c->out_len -= c->out_head;
            c->out_head = 0;
        } else {
            size_t cap = c->out_cap ? c->out_cap * 2 : 4;
            tp__buf **out = tp__reallocarray(c->out, cap, sizeof *out);
            if (out != NULL)
                c->out = out;
            uint64_t *tags = out ? tp__reallocarray(c->out_tag, cap, sizeof *tags) : NULL;
            if (tags == NULL) {
                send_tagged(c, NULL, 0);
                return;
            }
            c->out_tag = tags;
            c->out_cap = cap;
        }
    }
    c->out_tag[c->out_len] = tag;
    c->out[c->out_len++] = tp__buf_ref(msg);
    c->hub->deliveries++;
    c->out_bytes += msg->len;
    if (c->syncing)
        c->out_exempt += msg->len;
    /* The message at the head does not count either (when it is not
     * already exempt): the socket has not had a chance at it, and a single
     * message may be as large as max_message_bytes. Messages held until
     * their transaction is durable count like any other. */
    size_t behind = c->out_bytes - c->out_exempt;
    if (c->out_exempt == 0)
        behind -= c->out[c->out_head]->len;
    if (behind > c->hub->limits.max_outbox_bytes) {
        /* PROTOCOL.md, 1013: the connection fell too far behind. What it
         * holds is dropped; the client reconnects and resumes. */
        tp__conn_outbox_clear(c);
        c->close_code = 1013;
        c->state = TP__CONN_CLOSING;
    } else if (tag > c->hub->released) {
        tp__journal_conn_held(c);
    }
    tp__conn_mark_ready(c);
}

void
tp__conn_send(tp_conn *c, tp__buf *msg)
{
    send_tagged(c, msg, c->hub->epoch);
}

void
tp__conn_send_plain(tp_conn *c, tp__buf *msg)
{
    /* Tags never go down along an outbox: the last one is the largest. */
    send_tagged(c, msg, c->out_len > c->out_head ? c->out_tag[c->out_len - 1] : 0);
}

int
tp__conn_sendable(const tp_conn *c)
{
    return c->out_len > c->out_head && c->out_tag[c->out_head] <= c->hub->released;
}

int
tp__conn_release(tp_conn *c)
{
    if (tp__conn_sendable(c))
        tp__conn_mark_ready(c);
    return c->out_len > c->out_head && c->out_tag[c->out_len - 1] > c->hub->released;
}

void
tp__each_viewer(tp__model *m, const tp_conn *except, void (*fn)(tp_conn *c, void *arg), void *arg)
{
    if (!m->shared) {
        tp_session *s = m->owner;
        for (size_t i = 0; s != NULL && i < s->conns.len; i++) {
            tp_conn *c = s->conns.items[i];
            if (c != except && c->state == TP__CONN_LIVE)
                fn(c, arg);
        }
        return;
    }
    for (size_t j = 0; j < m->subs.len; j++) {
        tp_session *s = ((tp__sub *)m->subs.items[j])->session;
        for (size_t i = 0; i < s->conns.len; i++) {
            tp_conn *c = s->conns.items[i];
            if (c != except && c->state == TP__CONN_LIVE)
                fn(c, arg);
        }
    }
}

static void
send_held(tp_conn *c, void *msg)
{
    tp__conn_send(c, msg);
}

void
tp__fanout(tp__model *m, tp__buf *msg, tp_conn *except)
{
    tp__each_viewer(m, except, send_held, msg);
}

TP_API tp_conn *
tp_hub_next_ready(tp_hub *hub)
{
    /* Without a loop of ours, what is noted is committed first; either way
     * only messages whose transaction is durable leave. */
    tp__hub_commit_for_frames(hub);
    while (hub->ready.len > 0) {
        tp_conn *c = hub->ready.items[--hub->ready.len];
        c->ready = 0;
        /* Held only: it is marked ready again when released. Closing: the
         * transport closes it once what may leave is out. */
        if (tp__conn_sendable(c) || c->state == TP__CONN_CLOSING || c->out_len == c->out_head)
            return c;
    }
    return NULL;
}

void
tp__conn_unready(tp_conn *c)
{
    if (!c->ready)
        return;
    tp_conn *moved = tp__vec_swap_remove(&c->hub->ready, c->ready_idx);
    if (moved != NULL)
        moved->ready_idx = c->ready_idx;
    c->ready = 0;
}

size_t
tp__conn_frame_plan(const tp_conn *c, size_t *len)
{
    /* Only the messages released: the first one held ends the frames. */
    size_t avail = 0;
    uint64_t released = c->hub->released;
    while (c->out_head + avail < c->out_len && c->out_tag[c->out_head + avail] <= released)
        avail++;
    if (avail == 0)
        return 0;
    const tp__buf *first = c->out[c->out_head];
    if (avail == 1 || first->len + 2 + 1 + c->out[c->out_head + 1]->len > TP__FRAME_MAX) {
        *len = first->len; /* one message alone */
        return 1;
    }
    /* A batch: a JSON array of messages, in order, of at most 64 KiB. */
    size_t total = 2, n = 0;
    for (size_t i = c->out_head; i < c->out_head + avail; i++) {
        size_t m = c->out[i]->len;
        if (n > 0 && total + 1 + m > TP__FRAME_MAX)
            break;
        total += m + (n > 0);
        n++;
    }
    *len = total;
    return n;
}

void
tp__conn_frame_take(tp_conn *c, size_t n, char *dst)
{
    if (n > 1)
        *dst++ = '[';
    for (size_t k = 0; k < n; k++) {
        tp__buf *b = c->out[c->out_head++];
        if (k > 0)
            *dst++ = ',';
        memcpy(dst, b->data, b->len);
        dst += b->len;
        taken(c, b->len);
        tp__buf_unref(b);
    }
    if (n > 1)
        *dst = ']';
    if (c->out_head == c->out_len)
        c->out_head = c->out_len = 0;
}

TP_API const char *
tp_conn_next_frame(tp_conn *c, size_t *len)
{
    tp__buf_unref(c->taken);
    c->taken = NULL;
    tp__hub_commit_for_frames(c->hub);
    size_t total;
    size_t n = tp__conn_frame_plan(c, &total);
    if (n == 0) {
        /* Empty, or held until durable: tp_hub_next_ready hands it out
         * again once released. */
        if (c->out_head == c->out_len)
            c->out_head = c->out_len = 0;
        return NULL;
    }
    if (n == 1) {
        /* One message alone: its shared bytes go out as they are. */
        tp__buf *first = c->out[c->out_head++];
        c->taken = first;
        taken(c, first->len);
        *len = first->len;
        return first->data;
    }
    /* Room for the whole batch, then the messages straight into it. */
    tp__sb_reset(&c->frame);
    tp__sb_reserve(&c->frame, total);
    if (c->frame.failed) {
        /* The connection must close: what it holds is dropped. */
        tp__conn_outbox_clear(c);
        c->close_code = 1011;
        c->state = TP__CONN_CLOSING;
        return NULL;
    }
    tp__conn_frame_take(c, n, c->frame.buf->data);
    c->frame.buf->len = total;
    c->frame.buf->data[total] = '\0';
    *len = total;
    return c->frame.buf->data;
}

TP_API size_t
tp_conn_outbox_bytes(const tp_conn *c)
{
    return c->out_bytes;
}

TP_API int
tp_conn_close_code(const tp_conn *c)
{
    return c->close_code;
}

TP_API void
tp_conn_set_user(tp_conn *c, void *user)
{
    c->user = user;
}

TP_API void *
tp_conn_user(const tp_conn *c)
{
    return c->user;
}
