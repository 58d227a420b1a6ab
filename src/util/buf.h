/*
 * Reference-counted byte buffers. An encoded message is built once into a
 * tp__buf and every recipient's outbox holds a reference to the same bytes
 * (DESIGN.md, "Performance shape"), so fanning a change out to a connection
 * costs a pointer push and a reference count.
 */
#ifndef TP_UTIL_BUF_H
#define TP_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct tp__buf {
    size_t refs;
    size_t len; /* bytes of data in use; data[len] is always '\0' */
    size_t cap; /* bytes allocated for data, the terminating '\0' excluded */
    char data[];
} tp__buf;

/* tp__buf_new returns an empty buffer with room for cap bytes, one reference. */
tp__buf *tp__buf_new(size_t cap);
/* tp__buf_copy returns a new buffer holding a copy of n bytes. */
tp__buf *tp__buf_copy(const char *data, size_t n);

static inline tp__buf *
tp__buf_ref(tp__buf *b)
{
    b->refs++;
    return b;
}

void tp__buf_unref(tp__buf *b);

/*
 * A builder appends into a buffer that it grows, then hands the buffer over.
 * After any failed append the builder is marked failed, further appends do
 * nothing, and tp__sb_finish returns NULL: callers check once, at the end.
 */
typedef struct tp__sb {
    tp__buf *buf;
    int failed;
} tp__sb;

void tp__sb_init(tp__sb *sb, size_t cap);
/* tp__sb_grow appends what does not fit (growing the buffer), or fails. */
void tp__sb_grow(tp__sb *sb, const char *data, size_t n);

/* Inline for short pieces: messages and records are built of many (a
 * comma, a key, a number), most of which fit. */
static inline void
tp__sb_append(tp__sb *sb, const char *data, size_t n)
{
    tp__buf *b = sb->buf;
    if (n > 64 || sb->failed || b->cap - b->len < n) {
        tp__sb_grow(sb, data, n);
        return;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void tp__sb_puts(tp__sb *sb, const char *s);
void tp__sb_int(tp__sb *sb, int64_t v);
/* tp__sb_finish returns the built buffer (one reference), or NULL on failure. */
tp__buf *tp__sb_finish(tp__sb *sb);
/* tp__sb_reserve makes room for n bytes in all (sets failed when it cannot). */
void tp__sb_reserve(tp__sb *sb, size_t n);
/* tp__sb_reset empties the builder without freeing its buffer (for scratch use). */
void tp__sb_reset(tp__sb *sb);
void tp__sb_free(tp__sb *sb);

#endif /* TP_UTIL_BUF_H */
