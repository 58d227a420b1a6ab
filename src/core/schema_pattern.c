/*
 * Patterns on PCRE2, with limits.
 *
 * pydantic writes patterns for Python's re and the Rust regex crate that
 * pydantic-core uses: lookaround, inline flags, \d, \p{..}, Unicode. PCRE2
 * reads that dialect as written (PCRE2_UTF | PCRE2_UCP: \d, \w, \s, \b and
 * case folding are Unicode, as in both), so nothing is translated.
 * PCRE2_DOLLAR_ENDONLY makes "$" the end of the string only, as in Rust
 * (pydantic's default engine): "^a$" does not match "a\n".
 *
 * A backtracking engine can take exponential time on one string, and any
 * search retries at every offset: on a write path that runs on the server's
 * one loop thread, neither may be allowed. So every check runs under
 *   - a time budget: the pattern is compiled with PCRE2_AUTO_CALLOUT, so
 *     PCRE2 calls back before every item it tries; every 16th callout reads
 *     the monotonic clock and stops the match once the budget of the
 *     validation running (TP__PATTERN_BUDGET_NS, shared by every pattern
 *     check of one write) is spent, twice over if the thread was preempted
 *     (expired() below). Between two callouts PCRE2 does at most one item's
 *     work, a scan of the string;
 *   - PCRE2's match limit (backtracking), depth and heap limits (the
 *     interpreter), and a fixed JIT stack;
 * and a check that reaches any of them fails: the write is refused as
 * invalid, with a message saying so. Compiling is bounded by the pattern's
 * length (TP__PATTERN_MAX) and group nesting (TP__PATTERN_NEST).
 *
 * Patterns are JIT-compiled where PCRE2 has a JIT (x86-64, arm64 ...); the
 * interpreter runs them otherwise. Everything is allocated at load (the
 * match data, the JIT stack, the interpreter's first heap frames), so a
 * check allocates nothing.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/schema_int.h"
#include "util/alloc.h"

/* PCRE2's own limits, behind the time budget. */
#define MATCH_LIMIT 10000000u
#define DEPTH_LIMIT 10000u
#define HEAP_LIMIT_KIB 8192u
#define JIT_STACK_START (32u * 1024u)
#define JIT_STACK_MAX (1024u * 1024u)
/* The clock is read every this many callouts (a power of two). */
#define CLOCK_EVERY 16u
/* At most this many windows of the budget (see expired). */
#define WINDOWS 8u

struct schema_rx {
    pcre2_general_context *gctx;
    pcre2_compile_context *cctx;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    pcre2_jit_stack *stack;
    uint64_t deadline; /* ns on the monotonic clock; 0 when no budget runs */
    uint64_t started;  /* when the first check of the running budget began */
    unsigned nest;     /* tp__schema_budget_begin depth */
    unsigned calls;
    unsigned windows; /* windows of the budget begun (see expired) */
    uint64_t cpu0;    /* the thread's CPU clock when the last window began */
    bool spent;       /* the running budget is spent: later checks fail at once */
};

struct schema_re {
    pcre2_code *code;
    struct schema_rx *rx;
};

static void *
rx_malloc(size_t size, void *data)
{
    (void)data;
    return tp__malloc(size);
}

static void
rx_free(void *p, void *data)
{
    (void)data;
    tp__free(p);
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The monotonic deadline passed. A thread the system preempted must not
 * take it for a slow pattern, but the thread's CPU clock costs a system
 * call (microseconds), too much to read on every check. So the first
 * window only reads the monotonic clock; when it runs out, the CPU clock
 * is read and a second window starts, which ends the match only if the
 * thread ran at least half of it (up to WINDOWS windows, if the thread
 * keeps being preempted).
 */
static bool
expired(struct schema_rx *rx)
{
    uint64_t cpu = cpu_ns();
    if (rx->windows > 0 &&
        (cpu - rx->cpu0 >= TP__PATTERN_BUDGET_NS / 2 || rx->windows >= WINDOWS)) {
        rx->spent = true;
        return true;
    }
    rx->windows++;
    rx->cpu0 = cpu;
    rx->deadline = now_ns() + TP__PATTERN_BUDGET_NS;
    return false;
}

static int
on_callout(pcre2_callout_block *block, void *data)
{
    struct schema_rx *rx = data;
    (void)block;
    if ((++rx->calls & (CLOCK_EVERY - 1)) != 0)
        return 0;
    if (now_ns() <= rx->deadline || !expired(rx))
        return 0;
    return PCRE2_ERROR_CALLOUT;
}

/* No budget running. */
static void
reset(struct schema_rx *rx)
{
    rx->deadline = 0;
    rx->started = 0;
    rx->windows = 0;
    rx->spent = false;
}

struct schema_rx *
tp__schema_rx_new(void)
{
    struct schema_rx *rx = tp__calloc(1, sizeof *rx);
    if (rx == NULL)
        return NULL;
    rx->gctx = pcre2_general_context_create(rx_malloc, rx_free, NULL);
    if (rx->gctx == NULL)
        goto fail;
    rx->cctx = pcre2_compile_context_create(rx->gctx);
    rx->mctx = pcre2_match_context_create(rx->gctx);
    rx->md = pcre2_match_data_create(1, rx->gctx);
    if (rx->cctx == NULL || rx->mctx == NULL || rx->md == NULL)
        goto fail;
    pcre2_set_max_pattern_length(rx->cctx, TP__PATTERN_MAX);
    pcre2_set_parens_nest_limit(rx->cctx, TP__PATTERN_NEST);
    /* \u{...} and \uHHHH as Python and Rust write them (PCRE2 refuses \u). */
    pcre2_set_compile_extra_options(rx->cctx, PCRE2_EXTRA_ALT_BSUX);
    pcre2_set_match_limit(rx->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(rx->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(rx->mctx, HEAP_LIMIT_KIB);
    pcre2_set_callout(rx->mctx, on_callout, rx);
    /* No JIT on this platform is no error: the interpreter runs. The JIT
     * stack is mapped with mmap, not through the general context. */
    rx->stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, rx->gctx);
    if (rx->stack != NULL)
        pcre2_jit_stack_assign(rx->mctx, NULL, rx->stack);
    return rx;
fail:
    tp__schema_rx_free(rx);
    return NULL;
}

void
tp__schema_rx_free(struct schema_rx *rx)
{
    if (rx == NULL)
        return;
    pcre2_jit_stack_free(rx->stack);
    pcre2_match_data_free(rx->md);
    pcre2_match_context_free(rx->mctx);
    pcre2_compile_context_free(rx->cctx);
    pcre2_general_context_free(rx->gctx);
    tp__free(rx);
}

int
tp__schema_pattern_compile(struct schema_rx *rx, const char *src, size_t len,
                           struct schema_re **out, char *why, size_t cap)
{
    int code = 0;
    PCRE2_SIZE off = 0;
    *out = NULL;
    /* Rust reads \x{10FFFF}; with ALT_BSUX PCRE2 would read "\x{" as the
     * letters x and {, a silent change of meaning: refuse it, say what to
     * write instead. */
    for (size_t i = 0; i + 2 < len; i++) {
        if (src[i] == '\\' && src[i + 1] == 'x' && src[i + 2] == '{') {
            snprintf(why, cap, "write \\u{...} for \"\\x{...}\" (at offset %zu)", i);
            return TP_ESCHEMA;
        }
        if (src[i] == '\\')
            i++;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, len,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX |
                                       PCRE2_NEVER_BACKSLASH_C | PCRE2_AUTO_CALLOUT,
                                   &code, &off, rx->cctx);
    if (re == NULL) {
        if (code == PCRE2_ERROR_NOMEMORY || code == PCRE2_ERROR_HEAP_FAILED)
            return TP_ENOMEM;
        char msg[160];
        if (pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg) < 0)
            snprintf(msg, sizeof msg, "error %d", code);
        snprintf(why, cap, "invalid pattern: %s (at offset %zu)", msg, (size_t)off);
        return TP_ESCHEMA;
    }
    /* Without a JIT (or its memory) the interpreter runs the pattern. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    struct schema_re *r = tp__calloc(1, sizeof *r);
    if (r == NULL) {
        pcre2_code_free(re);
        return TP_ENOMEM;
    }
    r->code = re;
    r->rx = rx;
    /* One match now, so that the interpreter's first heap frames are made
     * here and not by a validation (which allocates nothing). */
    rx->deadline = rx->deadline ? rx->deadline : now_ns() + TP__PATTERN_BUDGET_NS;
    int rc = pcre2_match(re, (PCRE2_SPTR) "", 0, 0, 0, rx->md, rx->mctx);
    if (rx->nest == 0)
        reset(rx);
    if (rc == PCRE2_ERROR_NOMEMORY) {
        tp__schema_pattern_free(r);
        return TP_ENOMEM;
    }
    *out = r;
    return 0;
}

void
tp__schema_pattern_free(struct schema_re *re)
{
    if (re == NULL)
        return;
    pcre2_code_free(re->code);
    tp__free(re);
}

int
tp__schema_pattern_match(const struct schema_re *re, const char *s, size_t len)
{
    struct schema_rx *rx = re->rx;
    if (rx->spent)
        return TP__RE_LIMIT;
    if (rx->deadline == 0) {
        rx->started = now_ns();
        rx->deadline = rx->started + TP__PATTERN_BUDGET_NS;
    }
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, rx->md, rx->mctx);
    if (rx->nest == 0)
        reset(rx); /* not inside a validation: this check had the budget to itself */
    if (rc >= 0)
        return TP__RE_YES;
    if (rc == PCRE2_ERROR_NOMATCH)
        return TP__RE_NO;
    /* The budget, PCRE2's limits, the JIT stack: too costly. (A subject that
     * is not UTF-8 cannot come from jansson; it would not match either.) */
    return rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21 ? TP__RE_NO : TP__RE_LIMIT;
}

void
tp__schema_budget_begin(const tp_schema *schema)
{
    struct schema_rx *rx = schema != NULL ? schema->rx : NULL;
    /* The deadline is set on the first check, so a value without
     * patterned strings never reads the clock. */
    if (rx != NULL && rx->nest++ == 0)
        reset(rx);
}

uint64_t
tp__schema_budget_end(const tp_schema *schema)
{
    struct schema_rx *rx = schema != NULL ? schema->rx : NULL;
    uint64_t spent = 0;
    if (rx != NULL && rx->nest > 0 && --rx->nest == 0) {
        /* One clock read per write that checked a pattern, none otherwise. */
        if (rx->started != 0)
            spent = now_ns() - rx->started;
        reset(rx);
    }
    return spent;
}

uint64_t
tp__schema_now_ns(void)
{
    return now_ns();
}
