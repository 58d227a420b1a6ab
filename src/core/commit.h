/*
 * Transactions and the committer thread (commit.c).
 *
 * The loop thread builds a transaction from what the journal noted
 * (journal.c, at the end of each loop iteration): a list of put/del ops
 * holding their own bytes, immutable once pushed. The committer, a thread
 * named "tp-commit", takes every queued transaction at once, applies them
 * to the store in one store transaction (group commit across iterations),
 * commits it (with SQLite FULL: the fsync), publishes the highest durable
 * sequence number and calls the wake callback the transport registered.
 *
 * Threading contract, the whole of what the two threads share (under one
 * mutex and two condition variables, plus one atomic):
 *   - the queue of transactions not yet durable, in order (the loop pushes
 *     at the tail; the committer frees from the head once durable);
 *   - the durable sequence (atomic: the loop reads it without the lock);
 *   - the failure state: a flag, its message and an attempt counter. After
 *     a failed attempt the committer tries again only when asked
 *     (tp__committer_retry: the server's timer, or a waiter);
 *   - the store itself: the committer uses it while `busy`; the loop uses
 *     it (scans) only between tp__committer_read_begin and _end, which wait
 *     for the queue to drain and hold the mutex, so the committer cannot
 *     start meanwhile.
 * Nothing of the hub is touched by the committer: transactions own their
 * bytes.
 */
#ifndef TP_CORE_COMMIT_H
#define TP_CORE_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/journal.h"
#include "transports.h"

typedef struct tp__txn tp__txn;
typedef struct tp__committer tp__committer;

/* ---- A transaction being built (loop thread) ---- */

/* tp__txn_new makes an empty transaction with a sequence number, or NULL. */
tp__txn *tp__txn_new(uint64_t seq);
void tp__txn_free(tp__txn *t);
uint64_t tp__txn_seq(const tp__txn *t);
size_t tp__txn_ops(const tp__txn *t);
/* The ops of journal.h's tp__store_ops, recorded with copies of their
 * bytes. Each returns TP_OK or TP_ENOMEM (err filled); after a failure the
 * transaction must not be pushed. k2 NULL in del_key: every record of
 * (kind, k1). */
int tp__txn_put(tp__txn *t, const tp__rec *rec, tp_error *err);
int tp__txn_del(tp__txn *t, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
                tp_error *err);
int tp__txn_del_below(tp__txn *t, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
                      tp_error *err);
int tp__txn_del_key(tp__txn *t, tp__rec_kind kind, const char *k1, const char *k2, tp_error *err);

/* ---- The committer ---- */

/* tp__committer_new starts the thread for a store; NULL with err filled. */
tp__committer *tp__committer_new(tp_store *st, tp_error *err);
/* tp__committer_free stops and joins the thread; transactions still queued
 * (they could not be stored) are dropped. NULL is allowed. */
void tp__committer_free(tp__committer *c);
/* tp__committer_push queues a transaction (takes it; cannot fail). */
void tp__committer_push(tp__committer *c, tp__txn *t);
/* tp__committer_set_wake registers what the committer calls (on its own
 * thread, under its mutex: it must only signal, like uv_async_send) after
 * each attempt, successful or not. fn NULL unregisters. */
void tp__committer_set_wake(tp__committer *c, void (*fn)(void *user), void *user);
/* tp__committer_durable returns the highest durable sequence number. */
uint64_t tp__committer_durable(tp__committer *c);
/* tp__committer_failing returns 1 while the last attempt failed (with its
 * message copied into why when why is not NULL), 0 otherwise. */
int tp__committer_failing(tp__committer *c, char *why, size_t n);
/* tp__committer_retry asks for another attempt after a failure. */
void tp__committer_retry(tp__committer *c);
/* tp__committer_wait waits until seq is durable (TP_OK) or an attempt
 * holding it failed (TP_EINTERNAL, err names the cause). retry: seq was
 * queued earlier and may have failed already: a new attempt is asked for,
 * and only its failure counts. */
int tp__committer_wait(tp__committer *c, uint64_t seq, int retry, tp_error *err);
/* tp__committer_read_begin waits until every queued transaction is
 * durable and the thread idle, and keeps the store to the caller (the
 * mutex is held) until tp__committer_read_end. TP_EINTERNAL (not held)
 * while commits fail: what the store holds is not what memory holds. */
int tp__committer_read_begin(tp__committer *c, tp_error *err);
void tp__committer_read_end(tp__committer *c);
/* Counters for tp_hub_stats: store transactions committed, attempts that
 * failed, and the largest number of loop transactions one commit held. */
void tp__committer_stats(tp__committer *c, uint64_t *commits, uint64_t *failures,
                         uint64_t *max_group);
/* tp__committer_skipped counts the ops not applied because a later op of
 * the same store commit made them pointless (a put replaced, a del_below
 * covered): the store writes they saved. */
uint64_t tp__committer_skipped(tp__committer *c);

/* Test hook (memory store tests): every attempt first waits while the gate
 * is closed; attempts counts the store commits begun. */
void tp__committer_gate(tp__committer *c, int closed);
uint64_t tp__committer_attempts(tp__committer *c);

#endif /* TP_CORE_COMMIT_H */
