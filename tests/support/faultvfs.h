/*
 * A failing SQLite VFS for the store's tests: a shim over the default VFS
 * that passes every call through, except that it can be told to fail reads,
 * writes, syncs, truncations or size queries with an I/O error or "disk
 * full", after N calls or at once, for one call or until told to stop. A
 * store opened with tp_store_options.vfs = TPT_FAULTVFS goes through it.
 *
 * The state is global (test code only): one armed fault at a time.
 */
#ifndef TP_TESTS_FAULTVFS_H
#define TP_TESTS_FAULTVFS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The name the shim registers under. */
#define TPT_FAULTVFS "tpt-fault"

/* The calls a fault can aim at; OR them together. */
enum {
    TPT_FAULT_READ = 1 << 0,
    TPT_FAULT_WRITE = 1 << 1,
    TPT_FAULT_SYNC = 1 << 2,
    TPT_FAULT_TRUNCATE = 1 << 3,
    TPT_FAULT_FILESIZE = 1 << 4,
    TPT_FAULT_ALL = (1 << 5) - 1
};

/* The files a fault can aim at (by the flags SQLite opened them with). */
enum {
    TPT_FILE_DB = 1 << 0,      /* the main database file */
    TPT_FILE_WAL = 1 << 1,     /* its write-ahead log */
    TPT_FILE_JOURNAL = 1 << 2, /* a rollback journal */
    TPT_FILE_OTHER = 1 << 3,   /* temporary files and the rest */
    TPT_FILE_LOG = 1 << 4,     /* the SQLite store's log ("<db>-log") and its WAL */
    TPT_FILE_ANY = (1 << 5) - 1
};

/* The calls the shim has seen since the last tpt_fault_clear (or since it
 * was registered), per call, armed or not, and the faults it injected. */
typedef struct tpt_fault_stats {
    long reads, writes, syncs, truncates, filesizes;
    long injected;
} tpt_fault_stats;

extern tpt_fault_stats tpt_faults;

/* tpt_faultvfs_register registers the shim as TPT_FAULTVFS (not as the
 * default), wrapping the default VFS. Idempotent. Returns SQLite's code. */
int tpt_faultvfs_register(void);

/*
 * tpt_fault arms a fault: of the calls in ops on files in files, the first
 * `after` pass, then the next `count` fail (count < 0: every one until
 * tpt_fault_clear). code is SQLITE_IOERR (each call then fails with its own
 * extended code: SQLITE_IOERR_READ, _WRITE, _FSYNC, _TRUNCATE, _FSTAT) or
 * SQLITE_FULL. A failed write writes nothing. Re-arming resets the counts.
 */
void tpt_fault(unsigned ops, unsigned files, long after, long count, int code);

/* tpt_fault_clear disarms and zeroes tpt_faults; the shim passes all. */
void tpt_fault_clear(void);

/* tpt_fault_readonly: while on, the main database file opens read-only
 * (as a file the process may not write would); open files are unaffected. */
void tpt_fault_readonly(int on);

#ifdef __cplusplus
}
#endif

#endif /* TP_TESTS_FAULTVFS_H */
