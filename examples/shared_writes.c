/*
 * shared_writes: the guide's "Allow shared writes".
 *
 * Subscribing a tenant again changes its access: with WRITE, its writes to
 * the shared model are merged into the authoritative value (last write wins
 * here; see merge_strategies.c for the others) and the result is echoed to
 * every subscriber, the writer included, because the merge may have changed
 * what it wrote. The writer also gets an ack naming the rev of that patch.
 */
#include "example.h"

int
main(void)
{
    tp_error err;
    tp_hub *hub = tp_hub_new(NULL, &err);
    tp_schema *document = tp_schema_new(DOCUMENT_SCHEMA, &err);
    if (hub == NULL || document == NULL) {
        printf("setup failed: %s\n", err.message);
        return 1;
    }
    const char *sid = tp_hub_share(hub, document, "{\"title\": \"Roadmap\"}", NULL, &err);
    tp_hub_subscribe(hub, "alice", sid, TP_READ);
    tp_hub_subscribe(hub, "bob", sid, TP_READ);
    printf("== Allow shared writes\n");
    printf("host: shared \"%s\" with alice and bob, READ, as in read_only_sharing.c\n", sid);
    tp_conn *alice = open_client(hub, "alice");
    tp_conn *bob = open_client(hub, "bob");
    json_decref(receive(alice));
    json_decref(receive(bob));

    /* Subscribing again changes the access; connected clients are told. */
    printf("\nhost: subscribes alice and bob again, with WRITE\n");
    tp_hub_subscribe(hub, "alice", sid, TP_WRITE);
    tp_hub_subscribe(hub, "bob", sid, TP_WRITE);
    json_t *got = receive(alice);
    check(is(find(got, "access"), "access", "write"), "alice is told she may write now");
    json_decref(got);
    json_decref(receive(bob));

    printf("\nalice writes to the shared model\n");
    client_send(alice, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"s1\",\"ref\":1,"
                       "\"patch\":{\"body\":\"Q1: ship the server\"}}");
    got = receive(alice);
    const json_t *patch = find(got, "patch");
    const json_t *ack = find(got, "ack");
    check(is(patch, "origin", tp_conn_id(alice)) && int_of(ack, "rev") == int_of(patch, "rev"),
          "the writer gets the merged patch, then an ack naming its rev");
    json_decref(got);
    got = receive(bob);
    check(is(find(got, "patch"), "origin", tp_conn_id(alice)),
          "every other subscriber gets the same patch");
    json_decref(got);

    printf("\nbob writes too; with last write wins, the later write wins the field\n");
    client_send(bob, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"s1\",\"ref\":1,"
                     "\"patch\":{\"body\":\"Q1: ship the server and the daemon\"}}");
    json_decref(receive(bob));
    got = receive(alice);
    check(is(find(got, "patch"), "origin", tp_conn_id(bob)), "alice sees bob's write");
    json_decref(got);
    check(show("the roadmap", tp_hub_get_shared(hub, sid), "body",
               "Q1: ship the server and the daemon"),
          "the shared value is the merged one");

    printf("\nthe host takes bob's WRITE access away again, then ends alice's subscription\n");
    tp_hub_subscribe(hub, "bob", sid, TP_READ);
    tp_hub_unsubscribe(hub, "alice", sid);
    got = receive(bob);
    check(is(find(got, "access"), "access", "read"), "bob is back to READ");
    json_decref(got);
    got = receive(alice);
    check(count(got, "removed") == 1, "alice no longer sees the model");
    json_decref(got);

    tp_conn_close(alice);
    tp_conn_close(bob);
    tp_schema_free(document);
    tp_hub_free(hub);
    return failures != 0;
}
