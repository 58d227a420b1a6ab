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
 *   - a step budget: the pattern is compiled with PCRE2_AUTO_CALLOUT, so
 *     PCRE2 calls back before every item it tries, and the callout counts
 *     them. Between two callouts PCRE2 does at most one item's work, but
 *     that can be a scan of the whole string ("a*" in "(?=a*[bc])" at every
 *     offset of a string of a's), so a step also costs the distance the
 *     match moved since the last one, at TP__PATTERN_SCAN_PER_STEP
 *     characters a step (what a JIT-compiled scan does in the time of one
 *     callout). Every check of one write shares TP__PATTERN_BUDGET_STEPS
 *     steps; the check that would pass them stops. A count, not a clock:
 *     the core reads no clock (the hub receives its time), and a verdict
 *     must not depend on how busy the machine is, so the same write gets
 *     the same answer on every run and every machine;
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

#include "core/schema_int.h"
#include "util/alloc.h"

/* PCRE2's own limits, behind the step budget. */
#define MATCH_LIMIT 10000000u
#define DEPTH_LIMIT 10000u
#define HEAP_LIMIT_KIB 8192u
#define JIT_STACK_START (32u * 1024u)
#define JIT_STACK_MAX (1024u * 1024u)

struct schema_rx {
    pcre2_general_context *gctx;
    pcre2_compile_context *cctx;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    pcre2_jit_stack *stack;
    uint64_t cost; /* the running budget's steps, in characters scanned */
    size_t at;     /* where the match was at the last callout */
    unsigned nest; /* tp__schema_budget_begin depth */
    bool spent;    /* the running budget is spent: later checks fail at once */
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

static int
on_callout(pcre2_callout_block *block, void *data)
{
    struct schema_rx *rx = data;
    size_t pos = block->current_position;
    rx->cost += TP__PATTERN_SCAN_PER_STEP + (pos > rx->at ? pos - rx->at : rx->at - pos);
    rx->at = pos;
    if (rx->cost <= (uint64_t)TP__PATTERN_BUDGET_STEPS * TP__PATTERN_SCAN_PER_STEP)
        return 0;
    rx->spent = true;
    return PCRE2_ERROR_CALLOUT;
}

/* No budget running. */
static void
reset(struct schema_rx *rx)
{
    rx->cost = 0;
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
    rx->at = 0;
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
    if (rx != NULL && rx->nest++ == 0)
        reset(rx);
}

uint64_t
tp__schema_budget_end(const tp_schema *schema)
{
    struct schema_rx *rx = schema != NULL ? schema->rx : NULL;
    uint64_t spent = 0;
    if (rx != NULL && rx->nest > 0 && --rx->nest == 0) {
        spent = rx->cost / TP__PATTERN_SCAN_PER_STEP;
        reset(rx);
    }
    return spent;
}
