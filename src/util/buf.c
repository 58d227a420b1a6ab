#include "util/buf.h"

#include <stdint.h>
#include <string.h>

#include "util/alloc.h"

tp__buf *
tp__buf_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(tp__buf) - 1)
        return NULL;
    tp__buf *b = tp__malloc(sizeof *b + cap + 1);
    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->len = 0;
    b->cap = cap;
    b->data[0] = '\0';
    return b;
}

tp__buf *
tp__buf_copy(const char *data, size_t n)
{
    tp__buf *b = tp__buf_new(n);
    if (b != NULL) {
        memcpy(b->data, data, n);
        b->len = n;
        b->data[n] = '\0';
    }
    return b;
}

void
tp__buf_unref(tp__buf *b)
{
    if (b != NULL && --b->refs == 0)
        tp__free(b);
}

void
tp__sb_init(tp__sb *sb, size_t cap)
{
    sb->buf = tp__buf_new(cap ? cap : 64);
    sb->failed = sb->buf == NULL;
}

void
tp__sb_grow(tp__sb *sb, const char *data, size_t n)
{
    if (sb->failed)
        return;
    tp__buf *b = sb->buf;
    if (b->cap - b->len < n) {
        size_t cap = b->cap * 2;
        if (cap - b->len < n)
            cap = b->len + n;
        if (cap < b->cap || cap > SIZE_MAX - sizeof *b - 1) {
            sb->failed = 1;
            return;
        }
        tp__buf *nb = tp__realloc(b, sizeof *b + cap + 1);
        if (nb == NULL) {
            sb->failed = 1;
            return;
        }
        nb->cap = cap;
        sb->buf = b = nb;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
tp__sb_puts(tp__sb *sb, const char *s)
{
    tp__sb_append(sb, s, strlen(s));
}

void
tp__sb_int(tp__sb *sb, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    tp__sb_append(sb, p, (size_t)(tmp + sizeof tmp - p));
}

tp__buf *
tp__sb_finish(tp__sb *sb)
{
    tp__buf *b = sb->buf;
    if (sb->failed) {
        tp__free(b);
        b = NULL;
    }
    sb->buf = NULL;
    sb->failed = 1;
    return b;
}

void
tp__sb_reserve(tp__sb *sb, size_t n)
{
    if (sb->failed || sb->buf->cap >= n)
        return;
    if (n > SIZE_MAX - sizeof *sb->buf - 1) {
        sb->failed = 1;
        return;
    }
    tp__buf *nb = tp__realloc(sb->buf, sizeof *sb->buf + n + 1);
    if (nb == NULL) {
        sb->failed = 1;
        return;
    }
    nb->cap = n;
    sb->buf = nb;
}

void
tp__sb_reset(tp__sb *sb)
{
    if (sb->buf == NULL) {
        tp__sb_init(sb, 0);
        return;
    }
    sb->buf->len = 0;
    sb->buf->data[0] = '\0';
    sb->failed = 0;
}

void
tp__sb_free(tp__sb *sb)
{
    tp__free(sb->buf);
    sb->buf = NULL;
    sb->failed = 1;
}
