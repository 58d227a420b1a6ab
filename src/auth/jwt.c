/*
 * Verifying a JWT: the compact JWS form, the header, the signature with
 * OpenSSL's EVP against the configured keys of the token's algorithm, then
 * the claims. The order is RFC 8725's: nothing of the claim set is parsed
 * before its signature verifies, and the header only narrows the choice
 * among keys that were bound to an algorithm when they were loaded
 * (keys.c). See docs/internals/auth.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "auth/keys.h"
#include "util/alloc.h"
#include "util/error.h"

/* The latest NumericDate accepted: 9999-12-31T23:59:59Z. Later ones (and
 * reals that do not fit an int64_t) are malformed, not "never expires". */
#define MAX_NUMERIC_DATE 253402300799LL

/* ---- Rules ---- */

static int
rule_string(const json_t *auth, const char *name, const char *dflt, char **out, const char *field,
            tp_error *err)
{
    const json_t *v = json_object_get(auth, name);
    *out = NULL;
    if (v != NULL && (!json_is_string(v) || json_string_length(v) == 0 ||
                      strlen(json_string_value(v)) != json_string_length(v)))
        return tp__error_set(err, TP_EINVALID, "%s.%s: expected a non-empty string", field, name);
    const char *s = v ? json_string_value(v) : dflt;
    if (s == NULL)
        return TP_OK;
    *out = tp__strdup(s);
    return *out ? TP_OK : tp__error_set(err, TP_ENOMEM, "out of memory");
}

int
tp__jwt_rules_load(tp__jwt_rules *rules, const json_t *auth, const char *field, tp_error *err)
{
    memset(rules, 0, sizeof *rules);
    const char *f = field ? field : "auth";
    if (!json_is_object(auth))
        return tp__error_set(err, TP_EINVALID, "%s: expected an object", f);
    int rc;
    if ((rc = rule_string(auth, "tenant_claim", "sub", &rules->tenant_claim, f, err)) != TP_OK ||
        (rc = rule_string(auth, "audience", NULL, &rules->audience, f, err)) != TP_OK ||
        (rc = rule_string(auth, "issuer", NULL, &rules->issuer, f, err)) != TP_OK) {
        tp__jwt_rules_clear(rules);
        return rc;
    }
    const json_t *leeway = json_object_get(auth, "leeway_s");
    if (leeway != NULL) {
        if (!json_is_integer(leeway) || json_integer_value(leeway) < 0 ||
            json_integer_value(leeway) > TP__JWT_MAX_LEEWAY_S) {
            tp__jwt_rules_clear(rules);
            return tp__error_set(err, TP_EINVALID, "%s.leeway_s: expected an integer from 0 to %d",
                                 f, TP__JWT_MAX_LEEWAY_S);
        }
        rules->leeway_s = json_integer_value(leeway);
    }
    return TP_OK;
}

void
tp__jwt_rules_clear(tp__jwt_rules *rules)
{
    if (rules == NULL)
        return;
    tp__free(rules->tenant_claim);
    tp__free(rules->audience);
    tp__free(rules->issuer);
    memset(rules, 0, sizeof *rules);
}

/* ---- Results ---- */

const char *
tp__jwt_result_name(tp__jwt_result result)
{
    switch (result) {
    case TP__JWT_OK: return "ok";
    case TP__JWT_MALFORMED: return "malformed";
    case TP__JWT_UNSIGNED: return "unsigned";
    case TP__JWT_NO_KEY: return "no_key";
    case TP__JWT_BAD_SIGNATURE: return "bad_signature";
    case TP__JWT_EXPIRED: return "expired";
    case TP__JWT_NOT_YET_VALID: return "not_yet_valid";
    case TP__JWT_WRONG_AUDIENCE: return "wrong_audience";
    case TP__JWT_WRONG_ISSUER: return "wrong_issuer";
    case TP__JWT_NO_TENANT: return "no_tenant";
    case TP__JWT_INTERNAL: return "internal";
    }
    return "unknown";
}

static tp__jwt_result refuse(tp_error *err, tp__jwt_result result, const char *fmt, ...)
    TP__PRINTF(3, 4);

/* Sets err and returns result. Every message is written from constants and
 * numbers: none copies a byte of the token. */
static tp__jwt_result
refuse(tp_error *err, tp__jwt_result result, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int code = result == TP__JWT_INTERNAL ? TP_EINTERNAL : TP_EFORBIDDEN;
    tp__error_set(err, code, "token %s: %s", tp__jwt_result_name(result), msg);
    return result;
}

/* ---- Pieces ---- */

/* Whether v nests deeper than max (an object or array is one level). */
static int
too_deep(const json_t *v, int max)
{
    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    if (max == 0)
        return 1;
    if (json_is_object(v)) {
        const char *k;
        const json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            if (too_deep(m, max - 1))
                return 1;
        }
    } else {
        size_t i;
        const json_t *m;
        json_array_foreach(v, i, m)
        {
            if (too_deep(m, max - 1))
                return 1;
        }
    }
    return 0;
}

/* Decodes a base64url segment into buf and parses it as a JSON object. */
static json_t *
segment_object(const char *s, size_t n, unsigned char *buf, const char *what, tp_error *err,
               tp__jwt_result *why)
{
    size_t len;
    *why = TP__JWT_MALFORMED;
    if (n == 0) {
        refuse(err, TP__JWT_MALFORMED, "the %s is empty", what);
        return NULL;
    }
    if (tp__b64url_decode(s, n, buf, &len) != 0) {
        refuse(err, TP__JWT_MALFORMED, "the %s is not unpadded base64url", what);
        return NULL;
    }
    /* Duplicate members are refused: two "sub" or two "alg" would mean
     * whatever the parser picks, and parsers differ (RFC 7519 4, RFC 8725
     * 3.11's spirit). jansson refuses NUL in strings and bad UTF-8. */
    json_error_t jerr;
    json_t *v = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            *why = TP__JWT_INTERNAL;
            refuse(err, TP__JWT_INTERNAL, "out of memory");
        } else
            refuse(err, TP__JWT_MALFORMED, "the %s is not a JSON object without duplicate members",
                   what);
        return NULL;
    }
    if (too_deep(v, TP__JWT_MAX_DEPTH)) {
        json_decref(v);
        refuse(err, TP__JWT_MALFORMED, "the %s nests deeper than %d levels", what,
               TP__JWT_MAX_DEPTH);
        return NULL;
    }
    return v;
}

/* typ, when present, says this is a JWT (RFC 7519 5.1) or an OAuth access
 * token (RFC 9068 2.1); media types compare case-insensitively and may
 * drop "application/" (RFC 7515 4.1.9). Anything else is another kind of
 * JWS, which must not pass for an access token (RFC 8725 3.11). */
static int
typ_ok(const char *typ)
{
    if (strncasecmp(typ, "application/", 12) == 0)
        typ += 12;
    return strcasecmp(typ, "JWT") == 0 || strcasecmp(typ, "at+jwt") == 0;
}

/* A NumericDate (RFC 7519 2): a JSON number of seconds, possibly with a
 * fraction, rounded up here to a whole second. -1 when v is not one. */
static int
numeric_date(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > MAX_NUMERIC_DATE)
            return -1;
        *out = (int64_t)i;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* NaN fails both comparisons; infinities fail one. */
        if (!(d >= 0.0 && d <= (double)MAX_NUMERIC_DATE))
            return -1;
        int64_t i = (int64_t)d;
        *out = (double)i < d ? i + 1 : i;
        return 0;
    }
    return -1;
}

/* ---- Signatures ---- */

/* The key matches the token's kid: a key without kid matches any token, a
 * token without kid any key of its algorithm, else the kids are equal. */
static int
kid_matches(const tp__jwt_key *k, const char *kid)
{
    return k->kid == NULL || kid == NULL || strcmp(k->kid, kid) == 0;
}

/* 1: the HMAC matches, 0: it does not, -1: OpenSSL failed. */
static int
verify_hmac(const tp__jwt_key *k, const unsigned char *input, size_t n, const unsigned char *sig,
            size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(k->mac);
    int ok = ctx != NULL && EVP_MAC_update(ctx, input, n) &&
             EVP_MAC_final(ctx, mac, &mac_len, sizeof mac);
    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return -1;
    }
    /* Constant time: how much of a forged MAC is right must not show. */
    int match = mac_len == sig_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return match;
}

/* JOSE's ECDSA signature is R || S, each the curve's size, big-endian
 * (RFC 7518 3.4); EVP takes the DER SEQUENCE of two INTEGERs. Returns the
 * DER's length (OPENSSL_free *der), or -1. */
static int
ecdsa_der(const unsigned char *sig, size_t half, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    int len = -1;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL; /* es owns them */
        *der = NULL;
        len = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

/* 1: the signature verifies, 0: it does not, -1: OpenSSL failed. */
static int
verify_pkey(const tp__jwt_key *k, const unsigned char *input, size_t n, const unsigned char *sig,
            size_t sig_len)
{
    unsigned char *der = NULL;
    if (k->alg->family == TP__JWT_EC) {
        int der_len = ecdsa_der(sig, sig_len / 2, &der);
        if (der_len < 0)
            return -1;
        sig = der;
        sig_len = (size_t)der_len;
    }
    /* A copy of the context the key set prepared; should OpenSSL refuse to
     * copy one (a provider without dupctx), a fresh one is set up. */
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ready = ctx != NULL && EVP_MD_CTX_copy_ex(ctx, k->init);
    if (ctx != NULL && !ready) {
        ERR_clear_error();
        ready = EVP_MD_CTX_reset(ctx) && tp__jwt_verify_init(k, ctx);
    }
    if (ready)
        rc = EVP_DigestVerify(ctx, sig, sig_len, input, n) == 1 ? 1 : 0;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    /* A signature that does not verify leaves errors on the thread's
     * queue; nothing else of ours reads it, but it must not grow. */
    ERR_clear_error();
    return rc;
}

/* ---- Claims ---- */

static tp__jwt_result
check_claims(const json_t *claims, const tp__jwt_rules *rules, int64_t now, tp__jwt_claims *out,
             tp_error *err)
{
    int64_t leeway = rules->leeway_s, exp, nbf;
    const json_t *v = json_object_get(claims, "exp");
    /* exp is required: a connection lives as long as its token, and a
     * token that never expires cannot be taken back. */
    if (v == NULL)
        return refuse(err, TP__JWT_MALFORMED, "exp: missing (a token must expire)");
    if (numeric_date(v, &exp) != 0)
        return refuse(err, TP__JWT_MALFORMED, "exp: expected a NumericDate (seconds, 0 to %lld)",
                      MAX_NUMERIC_DATE);
    /* RFC 7519 4.1.4: now must be before exp (give or take the leeway). */
    if (now >= exp + leeway)
        return refuse(err, TP__JWT_EXPIRED, "exp: expired %lld s ago (leeway %lld s)",
                      (long long)(now - exp), (long long)leeway);
    v = json_object_get(claims, "nbf");
    if (v != NULL) {
        if (numeric_date(v, &nbf) != 0)
            return refuse(err, TP__JWT_MALFORMED,
                          "nbf: expected a NumericDate (seconds, 0 to %lld)", MAX_NUMERIC_DATE);
        /* RFC 7519 4.1.5: now must be at or after nbf. */
        if (now + leeway < nbf)
            return refuse(err, TP__JWT_NOT_YET_VALID, "nbf: valid in %lld s (leeway %lld s)",
                          (long long)(nbf - now), (long long)leeway);
    }
    if (rules->issuer != NULL) {
        v = json_object_get(claims, "iss");
        if (v == NULL)
            return refuse(err, TP__JWT_WRONG_ISSUER, "iss: missing");
        if (!json_is_string(v) || strcmp(json_string_value(v), rules->issuer) != 0)
            return refuse(err, TP__JWT_WRONG_ISSUER, "iss: not the configured issuer");
    }
    if (rules->audience != NULL) {
        v = json_object_get(claims, "aud");
        int found = 0;
        if (json_is_string(v))
            found = strcmp(json_string_value(v), rules->audience) == 0;
        else if (json_is_array(v)) {
            size_t i;
            const json_t *a;
            json_array_foreach(v, i, a)
            {
                if (!json_is_string(a))
                    return refuse(err, TP__JWT_MALFORMED, "aud: expected strings");
                if (strcmp(json_string_value(a), rules->audience) == 0)
                    found = 1;
            }
        } else if (v != NULL)
            return refuse(err, TP__JWT_MALFORMED, "aud: expected a string or an array of strings");
        if (!found)
            return refuse(err, TP__JWT_WRONG_AUDIENCE,
                          v ? "aud: does not hold the configured audience" : "aud: missing");
    }
    v = json_object_get(claims, rules->tenant_claim);
    /* The claim's name is the operator's, not the token's: it may be shown. */
    if (v == NULL)
        return refuse(err, TP__JWT_NO_TENANT, "%.64s: missing", rules->tenant_claim);
    if (!json_is_string(v))
        return refuse(err, TP__JWT_NO_TENANT, "%.64s: expected a string", rules->tenant_claim);
    size_t len = json_string_length(v);
    const char *tenant = json_string_value(v);
    if (len == 0 || len > TP__JWT_MAX_TENANT)
        return refuse(err, TP__JWT_NO_TENANT, "%.64s: expected 1 to %d bytes", rules->tenant_claim,
                      TP__JWT_MAX_TENANT);
    /* No control characters: the tenant reaches log lines and URLs. jansson
     * already refused NUL ("\u0000") and bad UTF-8. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)tenant[i] < 0x20 || tenant[i] == 0x7F)
            return refuse(err, TP__JWT_NO_TENANT, "%.64s: holds a control character",
                          rules->tenant_claim);
    if (out != NULL) {
        memcpy(out->tenant, tenant, len + 1);
        out->exp = exp;
        out->expires_at = exp + leeway;
    }
    return TP__JWT_OK;
}

/* ---- Verifying ---- */

tp__jwt_result
tp__jwt_verify(const tp__jwt_keys *keys, const tp__jwt_rules *rules, const char *token, size_t len,
               int64_t now_s, tp__jwt_claims *out, tp_error *err)
{
    if (keys == NULL || rules == NULL || rules->tenant_claim == NULL || token == NULL)
        return refuse(err, TP__JWT_INTERNAL, "no keys, rules or token");
    if (len == 0)
        return refuse(err, TP__JWT_MALFORMED, "empty");
    if (len > TP__JWT_MAX_TOKEN)
        return refuse(err, TP__JWT_MALFORMED, "longer than %d bytes", TP__JWT_MAX_TOKEN);
    /* Compact JWS: exactly three segments (RFC 7515 7.1). Five would be a
     * JWE, which is not supported. */
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return refuse(err, TP__JWT_MALFORMED, "expected three base64url segments separated by '.'");
    size_t head_len = (size_t)(dot1 - token), body_len = (size_t)(dot2 - dot1 - 1);
    size_t sig_b64_len = len - (size_t)(dot2 + 1 - token);

    /* One buffer holds any decoded segment: a segment of m characters
     * decodes to at most m * 3 / 4 + 3 bytes (whole groups), which the two
     * dots and the other segments leave room for; 3 more keep it simple. */
    unsigned char *buf = tp__malloc(len + 3);
    if (buf == NULL)
        return refuse(err, TP__JWT_INTERNAL, "out of memory");
    tp__jwt_result why;
    json_t *header = segment_object(token, head_len, buf, "header", err, &why);
    json_t *claims = NULL;
    tp__jwt_result result = TP__JWT_OK;
    if (header == NULL) {
        tp__free(buf);
        return why;
    }
    if (!json_is_object(header)) {
        result = refuse(err, TP__JWT_MALFORMED, "the header is not a JSON object");
        goto done;
    }

    /* ---- The header ---- */
    const json_t *alg_v = json_object_get(header, "alg");
    if (alg_v == NULL) {
        result = refuse(err, TP__JWT_MALFORMED, "header: no alg");
        goto done;
    }
    if (!json_is_string(alg_v)) {
        result = refuse(err, TP__JWT_MALFORMED, "header: alg is not a string");
        goto done;
    }
    /* "none" is refused in any spelling (RFC 8725 3.1, and the "NONE" and
     * "nOnE" variants that fooled libraries comparing case-sensitively). */
    if (strcasecmp(json_string_value(alg_v), "none") == 0) {
        result = refuse(err, TP__JWT_UNSIGNED, "alg none is never accepted");
        goto done;
    }
    /* crit lists extensions the recipient must understand (RFC 7515
     * 4.1.11); this verifier understands none, so it must refuse. */
    if (json_object_get(header, "crit") != NULL) {
        result = refuse(err, TP__JWT_MALFORMED, "header: crit names extensions not supported");
        goto done;
    }
    const json_t *typ = json_object_get(header, "typ");
    if (typ != NULL && !(json_is_string(typ) && typ_ok(json_string_value(typ)))) {
        result = refuse(err, TP__JWT_MALFORMED, "header: typ is not JWT or at+jwt");
        goto done;
    }
    const json_t *kid_v = json_object_get(header, "kid");
    if (kid_v != NULL && !json_is_string(kid_v)) {
        result = refuse(err, TP__JWT_MALFORMED, "header: kid is not a string");
        goto done;
    }
    const char *kid = kid_v ? json_string_value(kid_v) : NULL;
    /* The algorithm selects among configured keys only: one that no key is
     * bound to is refused before anything is computed (RFC 8725 3.1). */
    const tp__jwt_alg *alg = tp__jwt_alg_find(json_string_value(alg_v));
    size_t candidates = 0;
    for (size_t i = 0; alg != NULL && i < keys->n; i++)
        if (keys->keys[i].alg == alg && kid_matches(&keys->keys[i], kid))
            candidates++;
    if (candidates == 0) {
        if (alg == NULL)
            result = refuse(err, TP__JWT_NO_KEY, "alg is not one any key is bound to");
        else
            result = refuse(err, TP__JWT_NO_KEY, "no %s key%s", alg->name,
                            kid ? " with the token's kid" : "");
        goto done;
    }

    /* ---- The signature ---- */
    /* The claim set is checked for form now (strict base64url), parsed
     * only once the signature verifies. */
    size_t body_bytes;
    if (body_len == 0 || tp__b64url_decode(dot1 + 1, body_len, buf, &body_bytes) != 0) {
        result = refuse(err, TP__JWT_MALFORMED, "the claim set is not unpadded base64url");
        goto done;
    }
    size_t sig_len;
    if (sig_b64_len == 0) {
        result = refuse(err, TP__JWT_BAD_SIGNATURE, "no signature");
        goto done;
    }
    unsigned char *sig = tp__malloc(sig_b64_len + 3); /* decoding writes whole groups */
    if (sig == NULL) {
        result = refuse(err, TP__JWT_INTERNAL, "out of memory");
        goto done;
    }
    if (tp__b64url_decode(dot2 + 1, sig_b64_len, sig, &sig_len) != 0) {
        tp__free(sig);
        result = refuse(err, TP__JWT_MALFORMED, "the signature is not unpadded base64url");
        goto done;
    }
    const unsigned char *input = (const unsigned char *)token;
    size_t input_len = (size_t)(dot2 - token);
    int verified = 0, failed = 0, right_length = 0;
    for (size_t i = 0; i < keys->n && !verified; i++) {
        const tp__jwt_key *k = &keys->keys[i];
        if (k->alg != alg || !kid_matches(k, kid))
            continue;
        /* A signature of the wrong length never verifies: ECDSA's R || S
         * in particular is exactly twice the curve's size, not DER. */
        if (sig_len != k->sig_len)
            continue;
        right_length = 1;
        int rc = alg->family == TP__JWT_HMAC ? verify_hmac(k, input, input_len, sig, sig_len)
                                             : verify_pkey(k, input, input_len, sig, sig_len);
        if (rc < 0)
            failed = 1;
        verified = rc == 1;
    }
    tp__free(sig);
    if (!verified) {
        if (failed)
            result = refuse(err, TP__JWT_INTERNAL, "OpenSSL could not check the signature");
        else if (!right_length)
            result = refuse(err, TP__JWT_BAD_SIGNATURE, "the signature has the wrong length for %s",
                            alg->name);
        else
            result = refuse(err, TP__JWT_BAD_SIGNATURE, "the signature does not verify with %s",
                            alg->name);
        goto done;
    }

    /* ---- The claims ---- */
    claims = segment_object(dot1 + 1, body_len, buf, "claim set", err, &why);
    if (claims == NULL) {
        result = why;
        goto done;
    }
    if (!json_is_object(claims)) {
        result = refuse(err, TP__JWT_MALFORMED, "the claim set is not a JSON object");
        goto done;
    }
    result = check_claims(claims, rules, now_s, out, err);
    if (result == TP__JWT_OK && out != NULL)
        out->alg = alg->name;
done:
    json_decref(header);
    json_decref(claims);
    tp__free(buf);
    if (result == TP__JWT_OK)
        tp__error_clear(err);
    return result;
}
