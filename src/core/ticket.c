/*
 * Tickets (ticket.h, hubapi.h): each change the host makes that goes to a
 * cluster's log has one, so the host API answers once the log has it.
 */
#include "core/ticket.h"

#include <stdio.h>

#include "core/hub.h"
#include "util/alloc.h"
#include "util/error.h"

#define ORD_FAILED_KEPT 256

struct tp__ord_fail {
    uint64_t ticket;
    int code;
    char message[200];
};

uint64_t
tp__ticket_open(tp_hub *hub)
{
    uint64_t t = ++hub->ord_ticket;
    if (tp__vec_push(&hub->ord_open, (void *)(uintptr_t)t) != 0)
        return 0; /* out of memory: the host API answers without waiting */
    return t;
}

void
tp__ticket_end(tp_hub *hub, uint64_t t, int code, const char *message)
{
    if (t == 0)
        return;
    size_t i = 0;
    while (i < hub->ord_open.len && (uintptr_t)hub->ord_open.items[i] != t)
        i++;
    if (i == hub->ord_open.len)
        return; /* ended already */
    (void)tp__vec_swap_remove(&hub->ord_open, i);
    if (code != TP_OK) {
        if (hub->ord_failed == NULL)
            hub->ord_failed = tp__calloc(ORD_FAILED_KEPT, sizeof *hub->ord_failed);
        if (hub->ord_failed != NULL) {
            struct tp__ord_fail *f = &hub->ord_failed[hub->ord_failed_next++ % ORD_FAILED_KEPT];
            f->ticket = t;
            f->code = code;
            snprintf(f->message, sizeof f->message, "%s", message ? message : "");
        }
    }
}

uint64_t
tp__ticket_last(const tp_hub *hub)
{
    return hub->ord_ticket;
}

int
tp__ticket_state(const tp_hub *hub, uint64_t from, uint64_t to, tp_error *err)
{
    for (size_t i = 0; hub->ord_failed != NULL && i < ORD_FAILED_KEPT; i++) {
        const struct tp__ord_fail *f = &hub->ord_failed[i];
        if (f->ticket > from && f->ticket <= to)
            return tp__error_set(err, f->code, "%s", f->message);
    }
    for (size_t i = 0; i < hub->ord_open.len; i++) {
        uint64_t t = (uintptr_t)hub->ord_open.items[i];
        if (t > from && t <= to)
            return 1;
    }
    return 0;
}

void
tp__ticket_free(tp_hub *hub)
{
    tp__vec_free(&hub->ord_open);
    tp__free(hub->ord_failed);
    hub->ord_failed = NULL;
}
