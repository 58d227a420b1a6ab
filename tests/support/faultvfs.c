/*
 * The failing VFS shim (faultvfs.h). Each file the shim opens is a
 * fault_file followed in the same block by the real VFS's file, which every
 * method forwards to once the fault check has let the call through.
 */
#include "faultvfs.h"

#include <sqlite3.h>
#include <stddef.h>
#include <string.h>

tpt_fault_stats tpt_faults;

static struct {
    unsigned ops, files;
    long after, count;
    int code;
    int readonly;
} arm;

typedef struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* right after this struct, in the same block */
    unsigned kind;      /* TPT_FILE_... */
} fault_file;

/* The real file's offset in the block: fault_file rounded up for alignment. */
#define REAL_OFFSET ((sizeof(fault_file) + 15) & ~(size_t)15)

static sqlite3_vfs fault_vfs;
static sqlite3_vfs *real_vfs;

/* fault says whether this call fails, and with which code (0: it passes). */
static int
fault(const fault_file *f, unsigned op, int ioerr)
{
    switch (op) {
    case TPT_FAULT_READ: tpt_faults.reads++; break;
    case TPT_FAULT_WRITE: tpt_faults.writes++; break;
    case TPT_FAULT_SYNC: tpt_faults.syncs++; break;
    case TPT_FAULT_TRUNCATE: tpt_faults.truncates++; break;
    default: tpt_faults.filesizes++; break;
    }
    if ((arm.ops & op) == 0 || (arm.files & f->kind) == 0)
        return 0;
    if (arm.after > 0) {
        arm.after--;
        return 0;
    }
    if (arm.count == 0)
        return 0;
    if (arm.count > 0)
        arm.count--;
    tpt_faults.injected++;
    return arm.code == SQLITE_IOERR ? ioerr : arm.code;
}

static int
f_close(sqlite3_file *file)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xClose(f->real);
}

static int
f_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
    fault_file *f = (fault_file *)file;
    int rc = fault(f, TPT_FAULT_READ, SQLITE_IOERR_READ);
    if (rc != 0)
        return rc;
    return f->real->pMethods->xRead(f->real, buf, amt, off);
}

static int
f_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
    fault_file *f = (fault_file *)file;
    int rc = fault(f, TPT_FAULT_WRITE, SQLITE_IOERR_WRITE);
    if (rc != 0)
        return rc;
    return f->real->pMethods->xWrite(f->real, buf, amt, off);
}

static int
f_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    fault_file *f = (fault_file *)file;
    int rc = fault(f, TPT_FAULT_TRUNCATE, SQLITE_IOERR_TRUNCATE);
    if (rc != 0)
        return rc;
    return f->real->pMethods->xTruncate(f->real, size);
}

static int
f_sync(sqlite3_file *file, int flags)
{
    fault_file *f = (fault_file *)file;
    int rc = fault(f, TPT_FAULT_SYNC, SQLITE_IOERR_FSYNC);
    if (rc != 0)
        return rc;
    return f->real->pMethods->xSync(f->real, flags);
}

static int
f_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    fault_file *f = (fault_file *)file;
    int rc = fault(f, TPT_FAULT_FILESIZE, SQLITE_IOERR_FSTAT);
    if (rc != 0)
        return rc;
    return f->real->pMethods->xFileSize(f->real, size);
}

static int
f_lock(sqlite3_file *file, int lock)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xLock(f->real, lock);
}

static int
f_unlock(sqlite3_file *file, int lock)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xUnlock(f->real, lock);
}

static int
f_check_reserved(sqlite3_file *file, int *out)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int
f_file_control(sqlite3_file *file, int op, void *arg)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int
f_sector_size(sqlite3_file *file)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int
f_device_characteristics(sqlite3_file *file)
{
    fault_file *f = (fault_file *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* Shared memory (the WAL index) and memory maps pass through untouched;
 * version 1 files have neither. */
static int
f_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out)
{
    fault_file *f = (fault_file *)file;
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMMAP;
    return f->real->pMethods->xShmMap(f->real, region, size, extend, out);
}

static int
f_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    fault_file *f = (fault_file *)file;
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMLOCK;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void
f_shm_barrier(sqlite3_file *file)
{
    fault_file *f = (fault_file *)file;
    if (f->real->pMethods->iVersion >= 2)
        f->real->pMethods->xShmBarrier(f->real);
}

static int
f_shm_unmap(sqlite3_file *file, int delete_flag)
{
    fault_file *f = (fault_file *)file;
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_OK;
    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int
f_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **out)
{
    fault_file *f = (fault_file *)file;
    if (f->real->pMethods->iVersion < 3) {
        *out = NULL;
        return SQLITE_OK;
    }
    return f->real->pMethods->xFetch(f->real, off, amt, out);
}

static int
f_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    fault_file *f = (fault_file *)file;
    if (f->real->pMethods->iVersion < 3)
        return SQLITE_OK;
    return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods fault_methods = {
    .iVersion = 3,
    .xClose = f_close,
    .xRead = f_read,
    .xWrite = f_write,
    .xTruncate = f_truncate,
    .xSync = f_sync,
    .xFileSize = f_file_size,
    .xLock = f_lock,
    .xUnlock = f_unlock,
    .xCheckReservedLock = f_check_reserved,
    .xFileControl = f_file_control,
    .xSectorSize = f_sector_size,
    .xDeviceCharacteristics = f_device_characteristics,
    .xShmMap = f_shm_map,
    .xShmLock = f_shm_lock,
    .xShmBarrier = f_shm_barrier,
    .xShmUnmap = f_shm_unmap,
    .xFetch = f_fetch,
    .xUnfetch = f_unfetch,
};

static int
f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    (void)vfs;
    fault_file *f = (fault_file *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)((char *)file + REAL_OFFSET);
    f->kind = (flags & SQLITE_OPEN_MAIN_DB)        ? TPT_FILE_DB
              : (flags & SQLITE_OPEN_WAL)          ? TPT_FILE_WAL
              : (flags & SQLITE_OPEN_MAIN_JOURNAL) ? TPT_FILE_JOURNAL
                                                   : TPT_FILE_OTHER;
    /* The store's log is a database of its own: told apart by its name. */
    size_t len = name != NULL ? strlen(name) : 0;
    if ((f->kind == TPT_FILE_DB && len >= 4 && strcmp(name + len - 4, "-log") == 0) ||
        (f->kind == TPT_FILE_WAL && len >= 8 && strcmp(name + len - 8, "-log-wal") == 0))
        f->kind = TPT_FILE_LOG;
    if (arm.readonly && f->kind == TPT_FILE_DB && (flags & SQLITE_OPEN_READWRITE)) {
        flags &= ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
        flags |= SQLITE_OPEN_READONLY;
    }
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    /* SQLite calls xClose when pMethods is set, whatever xOpen returned. */
    f->base.pMethods = f->real->pMethods != NULL ? &fault_methods : NULL;
    return rc;
}

/* The rest of the VFS forwards to the real one. */
static int
v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int
v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int
v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *
v_dl_open(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return real_vfs->xDlOpen(real_vfs, name);
}

static void
v_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    real_vfs->xDlError(real_vfs, n, out);
}

static void (*v_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return real_vfs->xDlSym(real_vfs, h, sym);
}

static void
v_dl_close(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    real_vfs->xDlClose(real_vfs, h);
}

static int
v_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int
v_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return real_vfs->xSleep(real_vfs, us);
}

static int
v_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int
v_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xGetLastError != NULL ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int
v_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int
tpt_faultvfs_register(void)
{
    if (real_vfs != NULL)
        return SQLITE_OK;
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (real == NULL)
        return SQLITE_ERROR;
    real_vfs = real;
    fault_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)REAL_OFFSET + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = TPT_FAULTVFS,
        .xOpen = f_open,
        .xDelete = v_delete,
        .xAccess = v_access,
        .xFullPathname = v_full_pathname,
        .xDlOpen = v_dl_open,
        .xDlError = v_dl_error,
        .xDlSym = v_dl_sym,
        .xDlClose = v_dl_close,
        .xRandomness = v_randomness,
        .xSleep = v_sleep,
        .xCurrentTime = v_current_time,
        .xGetLastError = v_get_last_error,
        .xCurrentTimeInt64 = real->iVersion >= 2 ? v_current_time_int64 : NULL,
    };
    return sqlite3_vfs_register(&fault_vfs, 0);
}

void
tpt_fault(unsigned ops, unsigned files, long after, long count, int code)
{
    arm.ops = ops;
    arm.files = files;
    arm.after = after;
    arm.count = count;
    arm.code = code;
}

void
tpt_fault_clear(void)
{
    int readonly = arm.readonly;
    memset(&arm, 0, sizeof arm);
    arm.readonly = readonly;
    memset(&tpt_faults, 0, sizeof tpt_faults);
}

void
tpt_fault_readonly(int on)
{
    arm.readonly = on;
}
