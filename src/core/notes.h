/*
 * The journal (journal.c): changes noted for the store, sealed into
 * transactions at the end of each loop iteration, and frames released once
 * the transactions they may reveal are durable. docs/internals/persist.md.
 */
#ifndef TP_CORE_NOTES_H
#define TP_CORE_NOTES_H

#include <stdint.h>

#include "core/hubapi.h"
#include "transports.h"

typedef struct tp__model tp__model;
typedef struct tp__client tp__client;

/* Each change of what a store keeps is noted here, before or after the
 * change (sealing encodes the state as it is then); nothing is written
 * until the journal is sealed. All are no-ops without a store. */
void tp__journal_model(tp__model *m);
void tp__journal_model_gone(tp__model *m); /* before the model is freed */
void tp__journal_session(tp_session *s);
void tp__journal_session_gone(tp_session *s); /* before the session is freed */
void tp__journal_sub(tp_session *s, const char *sid);
void tp__journal_client(tp__client *cl);
void tp__journal_client_gone(tp__client *cl); /* before the record is freed */
void tp__journal_meta(tp_hub *hub);
/* A connection holds messages not yet released (outbox.c): it is put on
 * the ready list again when they are. _gone: it is closing. */
void tp__journal_conn_held(tp_conn *c);
void tp__journal_conn_gone(tp_conn *c);

/* Without a registered wake (an embedder driving the hub itself):
 * commits what is noted before frames are handed out. */
void tp__hub_commit_for_frames(tp_hub *hub);
/* Sealing, durability and the store's reads, as the transport drives
 * them: hubapi.h. */
/* Starts the committer (tp_hub_new, after the restore). */
int tp__hub_persist_start(tp_hub *hub, tp_error *err);
/* Commits what is left and stops the committer (tp_hub_free). */
void tp__hub_persist_free(tp_hub *hub);
void tp__hub_persist_stats(const tp_hub *hub, uint64_t *commits, uint64_t *failures);

#endif /* TP_CORE_NOTES_H */
