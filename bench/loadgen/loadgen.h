/*
 * loadgen: the benchmark's WebSocket load generator (bench/README.md).
 *
 * One process, one thread, epoll, thousands of client connections with a
 * minimal client side of RFC 6455 written here: a handshake by hand, masked
 * frames out, unmasked frames in. It speaks PROTOCOL.md to transportsd (or,
 * with --raw, plain frames to the floor relay) and measures while verifying.
 */
#ifndef LG_LOADGEN_H
#define LG_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Latency histogram (hist.c)                                                */
/* ------------------------------------------------------------------------ */

/*
 * Log buckets in the manner of HdrHistogram: values below 128 exactly, then
 * 64 buckets per power of two (about 1.6 % wide), so recording is a shift and
 * an increment whatever the range, and percentiles are exact to the bucket.
 */
#define LG_HIST_BUCKETS 3776

typedef struct lg_hist {
    uint64_t count;
    uint64_t max;
    uint64_t buckets[LG_HIST_BUCKETS];
} lg_hist;

void lg_hist_record(lg_hist *h, uint64_t v);
/* lg_hist_value returns the value at quantile q (0..1): the middle of its bucket. */
uint64_t lg_hist_value(const lg_hist *h, double q);

/* ------------------------------------------------------------------------ */
/* Client framing (ws.c)                                                     */
/* ------------------------------------------------------------------------ */

/* lg_ws_request writes the upgrade request; returns its length, 0 if cap is too small. */
size_t lg_ws_request(char *buf, size_t cap, const char *host, int port, const char *path,
                     int subprotocol);
/*
 * lg_ws_response looks for the end of the server's answer in p: returns 0
 * while incomplete, the bytes of the answer once a 101 is complete, or -1
 * when the answer is anything but 101 (the status code in *status).
 */
long lg_ws_response(const char *p, size_t n, int *status);

typedef struct lg_frame {
    int op;       /* opcode */
    int fin;      /* FIN bit */
    size_t head;  /* header bytes */
    uint64_t len; /* payload bytes */
} lg_frame;

/* lg_ws_frame parses a server frame header: 1 when complete, 0 when more is
 * needed, -1 when the frame is masked or uses reserved bits (servers must not). */
int lg_ws_frame(const unsigned char *p, size_t n, lg_frame *f);

/* lg_ws_masked writes a masked FIN frame into out (room for len + 14 bytes). */
size_t lg_ws_masked(unsigned char *out, int op, const void *payload, size_t len, uint32_t key);

/* ------------------------------------------------------------------------ */
/* Messages (scan.c)                                                         */
/* ------------------------------------------------------------------------ */

enum { LG_OTHER, LG_HELLO, LG_SNAPSHOT, LG_SYNCED, LG_PATCH, LG_ACK, LG_ERROR, LG_WRITE };

/* What the load generator needs of one message; -1 for absent numbers. */
typedef struct lg_msg {
    int type;
    int64_t from, rev, ref;
    int64_t ts; /* the first integer member of "patch": the writer's send time */
    const char *code;
    size_t code_len;
    const char *message;
    size_t message_len;
} lg_msg;

typedef void (*lg_msg_fn)(const lg_msg *m, void *user);

/* lg_scan_frame calls fn for each message of a text frame (an object, or an
 * array of objects); returns 0, or -1 when the frame is not such JSON. */
int lg_scan_frame(const char *p, size_t n, lg_msg_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Config and report (config.c, report.c)                                    */
/* ------------------------------------------------------------------------ */

typedef struct lg_shape {
    int workload; /* 1..4 */
    unsigned subs, writers, tenants, conns, fields;
    const char *storage; /* NULL: memory; else an SQLite file (--storage) */
    const char *sync;    /* with storage: "full", "normal" or "off" */
    const char *cluster; /* a Redis URL (--cluster): a cluster node's config, no storage */
    const char *node;    /* with cluster: the node's name (--node, default n1) */
} lg_shape;

/* lg_print_config prints transportsd's config for a workload on stdout. */
int lg_print_config(const lg_shape *s);

/* lg_report prints the table of result rows read from files (JSON arrays or
 * JSON lines), with ratios to the floor and to transports. */
int lg_report(int nfiles, char **files);
/* lg_report_storage prints the storage table (bench/run.sh --storage): per
 * case, each transports system's writes/s, p99, the loop thread's and the
 * whole process's CPU per write, and their ratios to memory storage. */
int lg_report_storage(int nfiles, char **files);
/* lg_report_cluster prints the cluster table (bench/cluster.sh): per case, each
 * system's deliveries, CPU per delivery in all and per node, Redis's commands,
 * round trips and CPU per write, and ratios to the single-node baselines. */
int lg_report_cluster(int nfiles, char **files);

/* ------------------------------------------------------------------------ */
/* Redis's counters (redis.c)                                                */
/* ------------------------------------------------------------------------ */

#define LG_REDIS_CMDS 64

/* What one `INFO all` says that the benchmark reads. */
typedef struct lg_redis_info {
    long pid;       /* process_id */
    uint64_t total; /* total_commands_processed */
    size_t ncmds;
    struct {
        char name[32]; /* cmdstat_NAME */
        uint64_t calls;
    } cmds[LG_REDIS_CMDS];
} lg_redis_info;

/* lg_redis_connect opens a blocking connection to 127.0.0.1:port; the fd or -1. */
int lg_redis_connect(int port);
/* lg_redis_info_read sends one INFO all on fd and parses the answer; 0, or -1. */
int lg_redis_info_read(int fd, lg_redis_info *out);

#endif
