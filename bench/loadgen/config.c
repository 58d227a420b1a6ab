/*
 * transportsd's config for each workload (DESIGN.md, "The daemon"). The
 * tenant and model names here are the ones loadgen.c connects to, so the
 * two live in one program and cannot drift.
 *
 * With --cluster the config is a cluster node's (bench/cluster.sh): the same
 * models, their state in Redis, and no storage (a node keeps none).
 *
 * Limits are raised only where the workload itself would hit them (a writer
 * past 1000 writes/s, more than 10 000 connections); the outbox limit and
 * everything else keep their defaults, as a deployment would.
 */
#include <stdio.h>

#include "loadgen.h"

static void
limits(unsigned conns)
{
    /* Every connection comes from loadgen's one address: the per-address
     * limits (issue 11) are raised to the whole run, as for a trusted proxy. */
    printf("\"limits\": {\"writes_per_second\": 1000000, \"max_connections\": %u, "
           "\"max_connections_per_tenant\": 256, \"max_connections_per_address\": %u, "
           "\"max_pending_handshakes_per_address\": %u}\n",
           conns + 100, conns + 100, conns + 100);
}

int
lg_print_config(const lg_shape *s)
{
    printf("{\"listen\": \"127.0.0.1:0\", \"route\": \"/ws/{tenant}\", \"auth\": {\"mode\": "
           "\"path\"},\n");
    if (s->cluster != NULL)
        printf("\"cluster\": {\"redis\": \"%s\", \"node\": \"%s\"},\n", s->cluster,
               s->node ? s->node : "n1");
    else if (s->storage != NULL)
        printf("\"storage\": {\"sqlite\": \"%s\", \"synchronous\": \"%s\"},\n", s->storage,
               s->sync ? s->sync : "full");
    else
        printf("\"storage\": {\"memory\": true},\n");
    switch (s->workload) {
    case 1:
        printf("\"schemas\": {\"Doc\": {\"title\": \"Doc\", \"type\": \"object\", "
               "\"properties\": {\"f\": {\"type\": \"integer\"}}}},\n");
        printf("\"shared\": {\"doc\": {\"schema\": \"Doc\", \"merge\": \"lww-map\", "
               "\"value\": {\"f\": 0}, \"subscribers\": {\"w\": \"write\"");
        for (unsigned i = 0; i < s->subs; i++)
            printf(", \"s%u\": \"read\"", i);
        printf("}}},\n");
        limits(s->subs + 1);
        break;
    case 2:
        printf("\"schemas\": {\"Pair\": {\"title\": \"Pair\", \"type\": \"object\", "
               "\"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": "
               "\"integer\"}}}},\n");
        printf("\"tenants\": {");
        for (unsigned i = 0; i < s->tenants; i++)
            printf("%s\"t%u\": {\"models\": {\"doc\": {\"schema\": \"Pair\", \"value\": {\"a\": 0, "
                   "\"b\": 0}}}}",
                   i ? ",\n" : "", i);
        printf("},\n");
        limits(2 * s->tenants);
        break;
    case 3:
        printf("\"schemas\": {\"Doc\": {\"title\": \"Doc\", \"type\": \"object\", "
               "\"properties\": {\"f\": {\"type\": \"integer\"}}}},\n");
        printf("\"tenants\": {");
        for (unsigned i = 0; i < s->conns; i++)
            printf("%s\"i%u\": {\"models\": {\"doc\": {\"schema\": \"Doc\", \"value\": {\"f\": "
                   "0}}}}",
                   i ? ",\n" : "", i);
        printf("},\n");
        limits(s->conns);
        break;
    case 4:
        printf("\"schemas\": {\"Wide\": {\"title\": \"Wide\", \"type\": \"object\", "
               "\"properties\": {");
        for (unsigned i = 0; i < s->fields; i++)
            printf("%s\"f%u\": {\"type\": \"integer\"}", i ? ", " : "", i);
        printf("}}},\n");
        printf("\"shared\": {\"doc\": {\"schema\": \"Wide\", \"merge\": \"lww-map\", "
               "\"value\": {}, \"subscribers\": {");
        for (unsigned i = 0; i < s->writers; i++)
            printf("%s\"w%u\": \"write\"", i ? ", " : "", i);
        for (unsigned i = 0; i < s->subs; i++)
            printf(", \"s%u\": \"read\"", i);
        printf("}}},\n");
        limits(s->writers + s->subs);
        break;
    default: return -1;
    }
    printf("}\n");
    return 0;
}
