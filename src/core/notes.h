/*
 * The journal (journal.c): changes noted for the store, sealed into
 * transactions at the end of each loop iteration, and frames released once
 * the transactions they may reveal are durable. docs/internals/persist.md.
 */
#ifndef TP_CORE_NOTES_H
#define TP_CORE_NOTES_H

#include <stdint.h>

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

/*
 * tp__hub_seal ends an epoch: what is noted becomes one transaction, queued
 * for the committer (with no store: nothing is held). Returns the epoch
 * sealed: everything changed before the call is durable once
 * tp__hub_released reaches it. made: set to 1 when a transaction was made.
 * The transport calls it at the end of each loop iteration.
 */
uint64_t tp__hub_seal(tp_hub *hub, int *made);
/* Every message queued in an epoch up to this one may leave. */
uint64_t tp__hub_released(const tp_hub *hub);
/* tp__hub_collect takes in what the committer made durable: frames are
 * released (their connections become ready) and the observer is told. The
 * transport calls it when the committer's wake callback fired. */
void tp__hub_collect(tp_hub *hub);
/* tp__hub_set_wake registers the callback the committer calls (its own
 * thread, under its lock: only signal the loop, as uv_async_send does)
 * after each attempt. Registered, the hub is driven by the transport's
 * loop: tp_hub_next_ready no longer commits. NULL unregisters. */
void tp__hub_set_wake(tp_hub *hub, void (*fn)(void *user), void *user);
/* tp__hub_commit seals and waits until durable (tp_hub_commit); returns
 * TP_OK (also without a store) or TP_EINTERNAL while the store fails: the
 * transactions stay queued, memory stays ahead, frames stay held. */
int tp__hub_commit(tp_hub *hub, tp_error *err);
/* Without a registered wake (an embedder driving the hub itself):
 * commits what is noted before frames are handed out. */
void tp__hub_commit_for_frames(tp_hub *hub);
/* Asks the committer to try again after a failure. */
void tp__hub_commit_retry(tp_hub *hub);
/* Whether transactions wait for a retry (commits are failing). */
int tp__hub_commit_pending(const tp_hub *hub);
/* tp__hub_writable is TP_OK, or TP_EINTERNAL (err names the storage
 * failure) while commits fail: new writes are refused until one succeeds. */
int tp__hub_writable(tp_hub *hub, tp_error *err);
/* The store's state for health checks: TP__STORE_NONE (no store),
 * TP__STORE_OK, or TP__STORE_FAILING while the last commit failed (writes
 * are refused: it turns OK again with the next commit that succeeds). */
enum { TP__STORE_NONE, TP__STORE_OK, TP__STORE_FAILING };
int tp__hub_store_state(const tp_hub *hub);
/* Reads of the store from the loop thread (a tenant's load, the host
 * API's listings, the webhooks' records at start): _begin seals, waits
 * until every transaction is durable and keeps the committer off the store
 * until _end. TP_EINTERNAL (nothing to end) while commits fail. */
int tp__store_read_begin(tp_hub *hub, tp_error *err);
void tp__store_read_end(tp_hub *hub);
/* Starts the committer (tp_hub_new, after the restore). */
int tp__hub_persist_start(tp_hub *hub, tp_error *err);
/* Commits what is left and stops the committer (tp_hub_free). */
void tp__hub_persist_free(tp_hub *hub);
void tp__hub_persist_stats(const tp_hub *hub, uint64_t *commits, uint64_t *failures);

#endif /* TP_CORE_NOTES_H */
