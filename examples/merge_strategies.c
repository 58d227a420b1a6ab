/*
 * merge_strategies: the guide's "Choose a merge strategy".
 *
 * A shared model's merge strategy turns each write into the model's next
 * value. tp_last_write_wins (the default) applies writes in arrival order.
 * tp_lww_map_crdt makes top-level fields converge whatever the arrival order:
 * per field, the write with the greatest timestamp wins. For anything else,
 * a tp_merge of your own computes the new value from the current one, the
 * patch and its origin, or refuses the write.
 */
#include "example.h"

/*
 * A fixed clock, so that the timestamps the hub gives are the same on every
 * run (the hub takes the clock from its config for exactly this).
 */
static int64_t
fixed_clock(void *user)
{
    (void)user;
    return 1700000000000;
}

/*
 * A custom strategy: a shared journal. Tenants append to the body, each line
 * signed with the tenant's name, and only the host may rename it.
 * It must return a new reference (or NULL to refuse, with a message) and
 * never modify `current` or `patch`.
 */
static json_t *
journal_merge(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
              tp_error *err)
{
    (void)user;
    if (origin->tenant == NULL)
        return tp_merge_patch_apply(current, patch); /* the host may change anything */
    if (json_object_get(patch, "title") != NULL) {
        snprintf(err->message, sizeof err->message, "title: only the host renames the journal");
        return NULL; /* the writer gets error "rejected" with this message */
    }
    const char *line = json_string_value(json_object_get(patch, "body"));
    if (line == NULL) {
        snprintf(err->message, sizeof err->message, "body: a line to append is required");
        return NULL;
    }
    const char *body = json_string_value(json_object_get(current, "body"));
    if (body == NULL)
        body = "";
    /* json_copy copies only the top level: setting "body" on it leaves current alone. */
    json_t *next = json_copy((json_t *)current);
    if (next == NULL || json_object_set_new(next, "body",
                                            json_sprintf("%s%s%s: %s", body, *body ? "\n" : "",
                                                         origin->tenant, line)) != 0) {
        json_decref(next);
        err->code = TP_ENOMEM; /* the writer gets "internal" and may retry */
        return NULL;
    }
    return next;
}

/* The struct is copied by tp_hub_share; its name and user pointer must outlive the model. */
static const tp_merge journal = {"journal", journal_merge, NULL};

/*
 * Two concurrent edits of the title: bob's at 12:00:02, alice's at 12:00:01
 * (wall clock in milliseconds), but alice was offline and hers arrives last.
 */
static const char BOB_EDIT[] = "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"%s\",\"ref\":%d,"
                               "\"patch\":{\"title\":\"Plan B\"},"
                               "\"ts\":{\"wall\":1699999922000,\"count\":0}}";
static const char ALICE_EDIT[] =
    "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"%s\",\"ref\":%d,"
    "\"patch\":{\"title\":\"Plan A\"},"
    "\"ts\":{\"wall\":1699999921000,\"count\":0}}";

/* concurrent_edits sends both edits to one model, bob's first, and prints what alice gets. */
static json_t *
concurrent_edits(tp_conn *alice, tp_conn *bob, const char *sid, int ref)
{
    char text[256];
    snprintf(text, sizeof text, BOB_EDIT, sid, ref);
    client_send(bob, text);
    snprintf(text, sizeof text, ALICE_EDIT, sid, ref);
    client_send(alice, text);
    json_decref(receive(bob));
    return receive(alice);
}

int
main(void)
{
    tp_hub_config config = {0};
    config.clock = fixed_clock;
    tp_error err;
    tp_hub *hub = tp_hub_new(&config, &err);
    tp_schema *document = tp_schema_new(DOCUMENT_SCHEMA, &err);
    if (hub == NULL || document == NULL) {
        printf("setup failed: %s\n", err.message);
        return 1;
    }

    printf("== Choose a merge strategy\n");
    /* tp_hub_share_as names the sid instead of taking "s1", "s2"... */
    tp_hub_share_as(hub, "plan-lww", document, "{\"title\": \"Plan\"}", &tp_last_write_wins, &err);
    tp_hub_share_as(hub, "plan-crdt", document, "{\"title\": \"Plan\"}", &tp_lww_map_crdt, &err);
    tp_hub_share_as(hub, "journal", document, "{\"title\": \"Journal\"}", &journal, &err);
    const char *const sids[] = {"plan-lww", "plan-crdt", "journal"};
    for (size_t i = 0; i < 3; i++) {
        tp_hub_subscribe(hub, "alice", sids[i], TP_WRITE);
        tp_hub_subscribe(hub, "bob", sids[i], TP_WRITE);
    }
    printf(
        "host: shared plan-lww (lww), plan-crdt (lww-map) and journal (custom), WRITE for both\n");
    tp_conn *alice = open_client(hub, "alice");
    tp_conn *bob = open_client(hub, "bob");
    json_decref(receive(alice));
    json_decref(receive(bob));

    printf("\nlast write wins: the write that arrives last wins, though it is older\n");
    json_t *got = concurrent_edits(alice, bob, "plan-lww", 1);
    json_decref(got);
    check(show("plan-lww", tp_hub_get_shared(hub, "plan-lww"), "title", "Plan A"),
          "lww applies writes in arrival order");

    printf("\nlww-map: the newer write wins the field, whatever the arrival order\n");
    got = concurrent_edits(alice, bob, "plan-crdt", 2);
    /*
     * Alice's older write lost every field: she gets bob's patch, and for her
     * own write only an ack at the current rev, without "from".
     */
    const json_t *ack = find(got, "ack");
    check(count(got, "patch") == 1 && is(find(got, "patch"), "origin", tp_conn_id(bob)) &&
              int_of(ack, "rev") == 2 && int_of(ack, "from") == -1,
          "a write whose every field lost publishes nothing; its ack has no from");
    json_decref(got);
    check(show("plan-crdt", tp_hub_get_shared(hub, "plan-crdt"), "title", "Plan B"),
          "lww-map keeps the write with the greatest timestamp");

    printf("\na custom strategy: tenants append signed lines; only the host renames\n");
    client_send(alice, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"journal\",\"ref\":3,"
                       "\"patch\":{\"body\":\"kickoff at 10\"}}");
    got = receive(alice);
    /* The merge changed what alice wrote: she gets the resulting patch, then her ack. */
    check(is(json_object_get(find(got, "patch"), "patch"), "body", "alice: kickoff at 10"),
          "the writer receives what the merge made of its write");
    json_decref(got);
    json_decref(receive(bob));
    client_send(bob, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"journal\",\"ref\":3,"
                     "\"patch\":{\"body\":\"I will bring coffee\"}}");
    json_decref(receive(bob));
    json_decref(receive(alice));
    client_send(bob, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"journal\",\"ref\":4,"
                     "\"patch\":{\"title\":\"Bob's journal\"}}");
    got = receive(bob);
    check(is(find(got, "error"), "code", "rejected"), "a refused write gets error rejected");
    json_decref(got);

    printf("host: renames the journal (host writes go through the strategy too, origin host)\n");
    char *value = tp_hub_get_shared(hub, "journal");
    json_t *renamed = json_loads(value, 0, NULL);
    free(value);
    json_object_set_new(renamed, "title", json_string("Team journal"));
    value = json_dumps(renamed, JSON_COMPACT);
    json_decref(renamed);
    tp_hub_set_shared(hub, "journal", value, &err);
    free(value);
    tp_hub_sync(hub);
    got = receive(alice);
    check(is(find(got, "patch"), "origin", "host"), "the host's rename is published");
    json_decref(got);
    json_decref(receive(bob));
    check(show("journal", tp_hub_get_shared(hub, "journal"), "body",
               "alice: kickoff at 10\nbob: I will bring coffee"),
          "the journal holds both signed lines");

    tp_conn_close(alice);
    tp_conn_close(bob);
    tp_schema_free(document);
    tp_hub_free(hub);
    return failures != 0;
}
