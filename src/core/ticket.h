/*
 * Tickets (ticket.c): a cluster node's host changes in the log. The order
 * (a host patch, a model the host made) and the catalog (a change of what
 * exists) open one per change and end it when the log has it, or with the
 * failure the host API then answers; hubapi.h has what the server asks.
 */
#ifndef TP_CORE_TICKET_H
#define TP_CORE_TICKET_H

#include <stdint.h>

#include "transports.h"

/* A new ticket, open (0: out of memory; the host API then does not wait). */
uint64_t tp__ticket_open(tp_hub *hub);
/* Ends a ticket (0, or one ended already: nothing): TP_OK, or a failure's
 * code and message. */
void tp__ticket_end(tp_hub *hub, uint64_t t, int code, const char *message);
void tp__ticket_free(tp_hub *hub);

#endif /* TP_CORE_TICKET_H */
