/* What both backends share: closing a store, the names of record kinds. */
#include "store/store.h"

#include <stddef.h>

/* Kept apart from sqlite.c so that a program using only the memory store
 * does not pull SQLite in from a static library. */
TP_API void
tp_store_free(tp_store *store)
{
    if (store != NULL)
        store->ops->free(store);
}

const char *
tp__store_kind_name(tp__rec_kind kind)
{
    static const char *const names[TP__REC_KINDS] = {
        [TP__REC_META] = "meta",         [TP__REC_TENANT] = "tenants",
        [TP__REC_MODEL] = "models",      [TP__REC_HIST] = "history",
        [TP__REC_SUB] = "subscriptions", [TP__REC_CLIENT] = "clients",
        [TP__REC_OUTCOME] = "outcomes",
    };
    if ((int)kind < 0 || kind >= TP__REC_KINDS)
        return NULL;
    return names[kind];
}
