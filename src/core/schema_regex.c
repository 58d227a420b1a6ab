/*
 * The pattern dialect and the checked formats.
 *
 * pydantic writes patterns in the dialect of Python's re and of the Rust
 * regex crate that pydantic-core uses, and a JavaScript client reads them as
 * ECMA-262. We run them with POSIX regcomp(REG_EXTENDED | REG_NOSUB), so each
 * pattern is translated once, at load: the common escapes become POSIX
 * bracket expressions (\w and \s with the Unicode classes of C.UTF-8, as in
 * Python and Rust; \d stays [0-9]), non-capturing and named groups become plain groups,
 * lazy quantifiers become greedy ones (with REG_NOSUB only "is there a
 * match" is asked, which laziness does not change), and anything whose
 * meaning would change (lookaround, backreferences, word boundaries, inline
 * flags, Unicode properties, class set operations) is refused with the
 * offset of the construct. docs/internals/schema.md lists the dialect.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/schema_int.h"
#include "util/error.h"

/*
 * The output. Translation runs twice: once with no buffer to measure (need
 * counts every byte), then into a buffer of that size. Decisions use need,
 * never len, so both runs take the same path.
 */
struct out {
    char *p;
    size_t len, cap, need;
    bool full;
};

static void
put(struct out *o, const char *s, size_t n)
{
    o->need += n;
    if (o->full || o->p == NULL || o->cap - o->len < n + 1) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void
puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void
putc_(struct out *o, char c)
{
    put(o, &c, 1);
}

/* Takes back what was written since need was `mark`. */
static void
rewind_to(struct out *o, size_t mark)
{
    size_t drop = o->need - mark;
    o->need = mark;
    if (!o->full) {
        o->len -= drop;
        o->p[o->len] = '\0';
    }
}

/* The characters special outside a bracket expression in a POSIX ERE. */
static bool
ere_special(uint32_t c)
{
    return c < 0x80 && c != 0 && strchr(".[]()*+?{}|^$\\", (int)c) != NULL;
}

static size_t
utf8_encode(uint32_t cp, char *b)
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one UTF-8 character at s (valid UTF-8: jansson checked it). */
static size_t
utf8_decode(const char *s, uint32_t *cp)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    uint32_t v = n == 1 ? c : n == 2 ? c & 0x1fu : n == 3 ? c & 0x0fu : c & 0x07u;
    for (size_t i = 1; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | ((unsigned char)s[i] & 0x3fu);
    }
    *cp = v;
    return n;
}

/*
 * Parses the code point escapes \xHH, \uHHHH, \x{H...} and \u{H...}; s
 * points after the backslash. Returns the bytes consumed, or 0.
 */
static size_t
parse_hex_escape(const char *s, uint32_t *cp)
{
    size_t i = 1, digits;
    uint32_t v = 0;
    if (s[1] == '{') {
        for (i = 2; tp__hex_digit(s[i]) >= 0 && i < 10; i++)
            v = v * 16 + (uint32_t)tp__hex_digit(s[i]);
        if (i == 2 || s[i] != '}')
            return 0;
        i++;
    } else {
        digits = s[0] == 'x' ? 2 : 4;
        for (; i <= digits; i++) {
            if (tp__hex_digit(s[i]) < 0)
                return 0;
            v = v * 16 + (uint32_t)tp__hex_digit(s[i]);
        }
    }
    if (v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return i;
}

static uint32_t
control_escape(char c)
{
    switch (c) {
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    default: return 0;
    }
}

struct tr {
    const char *src;
    struct out o;
    const char *why;
    size_t at;
};

static int
refuse(struct tr *t, size_t at, const char *why)
{
    t->why = why;
    t->at = at;
    return -1;
}

/* Emits a literal code point outside a bracket expression. */
static void
emit_literal(struct tr *t, uint32_t cp)
{
    char b[4];
    if (ere_special(cp))
        putc_(&t->o, '\\');
    put(&t->o, b, utf8_encode(cp, b));
}

/* After a quantifier: drop a lazy '?', refuse a possessive '+'. */
static int
quantifier_suffix(struct tr *t, size_t *i)
{
    if (t->src[*i] == '?')
        (*i)++;
    else if (t->src[*i] == '+')
        return refuse(t, *i, "possessive quantifiers are not supported");
    return 0;
}

/*
 * One atom of a bracket expression: a single code point (is_char) or a
 * class that cannot be a range end point. Escapes are resolved here.
 */
struct atom {
    bool is_char;
    uint32_t cp;
    const char *cls; /* the POSIX bracket text of a class */
};

static int
bracket_atom(struct tr *t, size_t *i, struct atom *a)
{
    const char *s = t->src;
    size_t start = *i;
    a->is_char = true;
    a->cls = NULL;
    if (s[*i] == '\\') {
        char e = s[*i + 1];
        size_t n;
        if (e == '\0')
            return refuse(t, start, "trailing backslash");
        if (e == 'd' || e == 'w' || e == 's') {
            a->is_char = false;
            a->cls = e == 'd' ? "0-9" : e == 'w' ? "[:alnum:]_" : "[:space:]";
            *i += 2;
            return 0;
        }
        if (e == 'D' || e == 'W' || e == 'S')
            return refuse(t, start,
                          "negated class escapes (\\D, \\W, \\S) inside [...] are not supported");
        if (e == 'b') { /* backspace inside a class, in both dialects */
            a->cp = '\b';
            *i += 2;
            return 0;
        }
        if (control_escape(e) != 0) {
            a->cp = control_escape(e);
            *i += 2;
            return 0;
        }
        if (e == 'x' || e == 'u') {
            if ((n = parse_hex_escape(s + *i + 1, &a->cp)) == 0)
                return refuse(t, start, "bad \\x or \\u escape");
            *i += 1 + n;
            return 0;
        }
        if (e == 'p' || e == 'P')
            return refuse(t, start, "Unicode property classes (\\p, \\P) are not supported");
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
            return refuse(t, start, "unknown escape inside [...]");
        if ((n = utf8_decode(s + *i + 1, &a->cp)) == 0)
            return refuse(t, start, "bad UTF-8");
        *i += 1 + n;
        return 0;
    }
    if (s[*i] == '[') {
        if (s[*i + 1] == ':') {
            /* A POSIX class [:name:], which Rust's regex reads the same way. */
            size_t j = *i + 2;
            while ((s[j] >= 'a' && s[j] <= 'z'))
                j++;
            if (j == *i + 2 || s[j] != ':' || s[j + 1] != ']')
                return refuse(t, start, "bad POSIX class inside [...]");
            a->is_char = false;
            a->cls = NULL; /* emitted from the source by the caller */
            *i = j + 2;
            return 0;
        }
        return refuse(t, start,
                      "a [ inside [...] is a nested class in some dialects: escape it as \\[");
    }
    size_t n = utf8_decode(s + *i, &a->cp);
    if (n == 0)
        return refuse(t, start, "bad UTF-8");
    *i += n;
    return 0;
}

/*
 * A range. glibc refuses ranges between multibyte characters even in
 * C.UTF-8 ("Invalid collation character"), so the non-ASCII part of a range
 * is written out character by character, up to 1024 of them.
 */
static int
range(struct tr *t, uint32_t a, uint32_t b)
{
    char buf[4];
    if (a < 0x80) {
        uint32_t end = b < 0x80 ? b : 0x7f;
        putc_(&t->o, (char)a);
        if (end != a) {
            putc_(&t->o, '-');
            putc_(&t->o, (char)end);
        }
        if (b < 0x80)
            return 0;
        a = 0x80;
    }
    if (b - a >= 1024)
        return -1;
    for (uint32_t cp = a; cp <= b; cp++)
        if (cp < 0xd800 || cp > 0xdfff)
            put(&t->o, buf, utf8_encode(cp, buf));
    return 0;
}

/*
 * A bracket expression. POSIX gives ']', '-' and '^' meaning by position
 * and treats '\' as a literal, so the set is rebuilt: ']' first, then the
 * ranges, classes and ordinary characters, then '[', '^' and '-' last.
 */
static int
bracket(struct tr *t, size_t *i)
{
    const char *s = t->src;
    size_t open = *i, body;
    bool neg = false, has_rbr = false, has_lbr = false, has_caret = false, has_hyph = false;
    size_t out_start = t->o.need;

    (*i)++;
    if (s[*i] == '^') {
        neg = true;
        (*i)++;
    }
    if (s[*i] == ']')
        return refuse(t, *i,
                      "a ] first in [...] means different things in different dialects: "
                      "escape it as \\]");
    putc_(&t->o, '[');
    if (neg)
        putc_(&t->o, '^');
    body = t->o.need;

    for (;;) {
        struct atom a;
        size_t here = *i;
        char c = s[*i];
        if (c == '\0')
            return refuse(t, open, "unterminated [");
        if (c == ']') {
            (*i)++;
            break;
        }
        if ((c == '&' && s[*i + 1] == '&') || (c == '~' && s[*i + 1] == '~') ||
            (c == '-' && s[*i + 1] == '-'))
            return refuse(t, here, "class set operations (&&, --, ~~) are not supported");
        if (c == '-') {
            /* A hyphen is a literal first, last, or next to a class. */
            (*i)++;
            has_hyph = true;
            continue;
        }
        if (bracket_atom(t, i, &a) != 0)
            return -1;
        if (!a.is_char) {
            if (a.cls != NULL)
                puts_(&t->o, a.cls);
            else
                put(&t->o, s + here, *i - here);
            continue;
        }
        if (s[*i] == '-' && s[*i + 1] != ']' && s[*i + 1] != '\0') {
            struct atom b;
            size_t range_at = *i + 1;
            *i += 1;
            if (s[*i] == '-')
                return refuse(t, here, "class set operations (&&, --, ~~) are not supported");
            if (bracket_atom(t, i, &b) != 0)
                return -1;
            if (!b.is_char)
                return refuse(t, range_at, "a range cannot end with a class");
            if (b.cp < a.cp)
                return refuse(t, here, "range out of order");
            if (a.cp == ']' || a.cp == '[' || a.cp == '-' || a.cp == '^' || b.cp == ']' ||
                b.cp == '[' || b.cp == '-')
                return refuse(t, here, "ranges from or to ] [ - ^ are not supported");
            if (range(t, a.cp, b.cp) != 0)
                return refuse(t, here,
                              "ranges over more than 1024 non-ASCII characters are not "
                              "supported");
            continue;
        }
        switch (a.cp) {
        case ']': has_rbr = true; break;
        case '[': has_lbr = true; break;
        case '^': has_caret = true; break;
        case '-': has_hyph = true; break;
        default: {
            char buf[4];
            put(&t->o, buf, utf8_encode(a.cp, buf));
        }
        }
    }

    bool empty = t->o.need == body && !has_rbr && !has_lbr;
    if (has_rbr) {
        /* ']' must come first: shift what was written since the '[' (or '[^'). */
        size_t at = t->o.len - (t->o.need - body);
        putc_(&t->o, ']');
        if (!t->o.full) {
            memmove(t->o.p + at + 1, t->o.p + at, t->o.len - 1 - at);
            t->o.p[at] = ']';
        }
    }
    if (has_lbr)
        putc_(&t->o, '[');
    if (has_caret && empty && !neg) {
        if (!has_hyph) {
            /* [\^] alone: a bracket cannot start with a literal '^'. */
            rewind_to(&t->o, out_start);
            puts_(&t->o, "\\^");
            return 0;
        }
        puts_(&t->o, "-^]");
        return 0;
    }
    if (has_caret)
        putc_(&t->o, '^');
    if (has_hyph)
        putc_(&t->o, '-');
    if (t->o.need == body) /* [^] in POSIX would swallow the ']' */
        return refuse(t, open, "empty [...]");
    putc_(&t->o, ']');
    return 0;
}

/* '(' at *i: plain groups pass, "(?:" and named groups become plain groups. */
static int
group(struct tr *t, size_t *i)
{
    const char *s = t->src;
    size_t start = *i;
    if (s[*i + 1] != '?') {
        putc_(&t->o, '(');
        (*i)++;
        return 0;
    }
    const char *q = s + *i + 2;
    if (q[0] == ':') {
        putc_(&t->o, '(');
        *i += 3;
        return 0;
    }
    if (q[0] == '=' || q[0] == '!' || (q[0] == '<' && (q[1] == '=' || q[1] == '!')))
        return refuse(t, start, "lookaround assertions are not supported");
    if (q[0] == 'P' && q[1] == '=')
        return refuse(t, start, "backreferences are not supported");
    if (q[0] == '<' || (q[0] == 'P' && q[1] == '<')) {
        size_t j = (size_t)(q - s) + (q[0] == 'P' ? 2 : 1);
        size_t name = j;
        while ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
               (s[j] >= '0' && s[j] <= '9') || s[j] == '_')
            j++;
        if (j == name || s[j] != '>')
            return refuse(t, start, "bad group name");
        putc_(&t->o, '(');
        *i = j + 1;
        return 0;
    }
    if (q[0] == '#')
        return refuse(t, start, "comments (?#...) are not supported");
    return refuse(t, start, "inline flags and other (?...) groups are not supported");
}

/* '{' at *i: a bounded quantifier, or a literal brace as both dialects read it. */
static int
brace(struct tr *t, size_t *i)
{
    const char *s = t->src;
    size_t j = *i + 1;
    bool lo = false;
    while (s[j] >= '0' && s[j] <= '9') {
        j++;
        lo = true;
    }
    if (s[j] == ',') {
        j++;
        while (s[j] >= '0' && s[j] <= '9')
            j++;
    }
    if (s[j] != '}') {
        putc_(&t->o, '\\');
        putc_(&t->o, '{');
        (*i)++;
        return 0;
    }
    if (!lo) {
        if (j == *i + 1) { /* "{}" */
            puts_(&t->o, "\\{\\}");
            *i = j + 1;
            return 0;
        }
        return refuse(t, *i,
                      "{,n} means {0,n} in Python and a literal in JavaScript: "
                      "write {0,n}");
    }
    put(&t->o, s + *i, j + 1 - *i);
    *i = j + 1;
    return quantifier_suffix(t, i);
}

/* A backslash escape outside a bracket expression at *i. */
static int
escape(struct tr *t, size_t *i)
{
    const char *s = t->src;
    size_t start = *i;
    char e = s[*i + 1];
    uint32_t cp;
    size_t n;
    switch (e) {
    case '\0': return refuse(t, start, "trailing backslash");
    case 'd': puts_(&t->o, "[0-9]"); break;
    case 'D': puts_(&t->o, "[^0-9]"); break;
    case 'w': puts_(&t->o, "[[:alnum:]_]"); break;
    case 'W': puts_(&t->o, "[^[:alnum:]_]"); break;
    case 's': puts_(&t->o, "[[:space:]]"); break;
    case 'S': puts_(&t->o, "[^[:space:]]"); break;
    case 'A': putc_(&t->o, '^'); break;
    case 'z':
    case 'Z': putc_(&t->o, '$'); break;
    case 'b':
    case 'B': return refuse(t, start, "word boundaries (\\b, \\B) are not supported");
    case 'p':
    case 'P': return refuse(t, start, "Unicode property classes (\\p, \\P) are not supported");
    case 'k': return refuse(t, start, "backreferences are not supported");
    case 'x':
    case 'u':
        if ((n = parse_hex_escape(s + *i + 1, &cp)) == 0)
            return refuse(t, start, "bad \\x or \\u escape");
        emit_literal(t, cp);
        *i += 1 + n;
        return 0;
    default:
        if (e >= '0' && e <= '9')
            return refuse(t, start, "backreferences and octal escapes are not supported");
        if (control_escape(e) != 0) {
            emit_literal(t, control_escape(e));
            break;
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'))
            return refuse(t, start, "unknown escape");
        if ((n = utf8_decode(s + *i + 1, &cp)) == 0)
            return refuse(t, start, "bad UTF-8");
        emit_literal(t, cp);
        *i += 1 + n;
        return 0;
    }
    *i += 2;
    return 0;
}

int
tp__schema_regex_translate(const char *src, char *out, size_t cap, size_t *need, const char **why,
                           size_t *at)
{
    struct tr t = {src, {out, 0, cap, 0, false}, NULL, 0};
    size_t i = 0;
    if (out != NULL && cap > 0)
        out[0] = '\0';
    while (src[i] != '\0') {
        char c = src[i];
        int rc = 0;
        switch (c) {
        case '\\': rc = escape(&t, &i); break;
        case '[': rc = bracket(&t, &i); break;
        case '(': rc = group(&t, &i); break;
        case '{': rc = brace(&t, &i); break;
        case '.':
            /* Any character but a newline, as in Python and Rust. */
            puts_(&t.o, "[^\n]");
            i++;
            break;
        case '*':
        case '+':
        case '?':
            putc_(&t.o, c);
            i++;
            rc = quantifier_suffix(&t, &i);
            break;
        default: putc_(&t.o, c); i++;
        }
        if (rc != 0) {
            *why = t.why;
            *at = t.at;
            return -1;
        }
    }
    *need = t.o.need + 1;
    return 0;
}

/* Finds the ')' that closes the group opened at s[i], or returns 0. */
static size_t
group_end(const char *s, size_t i)
{
    size_t depth = 0;
    for (size_t j = i; s[j] != '\0'; j++) {
        if (s[j] == '\\') {
            if (s[++j] == '\0')
                return 0;
        } else if (s[j] == '[') {
            j++;
            if (s[j] == '^')
                j++;
            if (s[j] == ']')
                j++;
            while (s[j] != '\0' && s[j] != ']')
                j += s[j] == '\\' && s[j + 1] != '\0' ? 2 : 1;
            if (s[j] == '\0')
                return 0;
        } else if (s[j] == '(') {
            depth++;
        } else if (s[j] == ')' && --depth == 0) {
            return j;
        }
    }
    return 0;
}

size_t
tp__schema_regex_lookahead(const char *src, size_t i, size_t *end, bool *negate)
{
    if (src[i] != '(' || src[i + 1] != '?' || (src[i + 2] != '=' && src[i + 2] != '!'))
        return 0;
    size_t close = group_end(src, i);
    if (close == 0)
        return 0;
    *negate = src[i + 2] == '!';
    *end = close + 1;
    return close - (i + 3);
}

/* ------------------------------------------------------------------------ */
/* Formats                                                                   */
/* ------------------------------------------------------------------------ */

enum tp__sformat
tp__schema_format_of(const char *name)
{
    if (strcmp(name, "date-time") == 0)
        return TP__SF_DATE_TIME;
    if (strcmp(name, "date") == 0)
        return TP__SF_DATE;
    if (strcmp(name, "time") == 0)
        return TP__SF_TIME;
    if (strcmp(name, "uuid") == 0)
        return TP__SF_UUID;
    return TP__SF_NONE;
}

const char *
tp__schema_format_name(enum tp__sformat f)
{
    switch (f) {
    case TP__SF_DATE_TIME: return "date-time";
    case TP__SF_DATE: return "date";
    case TP__SF_TIME: return "time";
    case TP__SF_UUID: return "uuid";
    default: return "";
    }
}

/* Reads n digits at s into *v. */
static bool
digits(const char *s, size_t n, int *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

/* YYYY-MM-DD with a day that exists. */
static bool
date_ok(const char *s, size_t len)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (len != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) || !digits(s + 5, 2, &m) ||
        !digits(s + 8, 2, &d))
        return false;
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

/*
 * HH:MM:SS[.fraction][Z | +HH:MM | -HH:MM]. The offset is optional, unlike
 * RFC 3339, because pydantic writes naive times and datetimes without one.
 */
static bool
time_ok(const char *s, size_t len)
{
    int h, m, sec;
    size_t i = 8;
    if (len < 8 || s[2] != ':' || s[5] != ':' || !digits(s, 2, &h) || !digits(s + 3, 2, &m) ||
        !digits(s + 6, 2, &sec) || h > 23 || m > 59 || sec > 60)
        return false;
    if (i < len && s[i] == '.') {
        size_t f = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f)
            return false;
    }
    if (i == len)
        return true;
    if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len)
        return true;
    if ((s[i] == '+' || s[i] == '-') && len - i == 6 && s[i + 3] == ':' &&
        digits(s + i + 1, 2, &h) && digits(s + i + 4, 2, &m))
        return h <= 23 && m <= 59;
    return false;
}

static bool
uuid_ok(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (tp__hex_digit(s[i]) < 0) {
            return false;
        }
    }
    return true;
}

bool
tp__schema_format_ok(enum tp__sformat f, const char *s, size_t len)
{
    switch (f) {
    case TP__SF_DATE: return date_ok(s, len);
    case TP__SF_TIME: return time_ok(s, len);
    case TP__SF_DATE_TIME:
        return len > 11 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') && date_ok(s, 10) &&
               time_ok(s + 11, len - 11);
    case TP__SF_UUID: return uuid_ok(s, len);
    default: return true;
    }
}
