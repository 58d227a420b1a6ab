/*
 * fuzz_jwt: JWT verification (src/auth/jwt.c) and JWKS loading
 * (src/auth/keys.c).
 *
 * The key set is fixed: a JWKS (written to a temporary file once) with an
 * HS256 secret (kid "h"), an ES256 key (kid "e") and an Ed25519 key (kid
 * "d"); the rules: tenant claim sub, audience "my-app", issuer
 * "https://id.example", leeway 30 s, now 1800000000. make-jwt-seeds.py
 * holds the private halves and signs the seeds.
 *
 * Input, by its first byte:
 *   'S' HEADER %% CLAIMS   the target encodes both texts in base64url and
 *                          signs them with the HS256 secret, so that the
 *                          claim checks are reached with a good signature;
 *   'J' TEXT               TEXT is a JWKS file, loaded as a key set;
 *   anything else          the whole input is a token, verified as it is.
 *
 * Checked for every token:
 *   - the result is a class, never internal (no allocation fails here);
 *     verifying twice gives the same class and message;
 *   - a refusal has TP_EFORBIDDEN and a non-empty UTF-8 message holding no
 *     12-character base64url run of the token (a credential never reaches
 *     a log);
 *   - an acceptance is re-checked independently, written here against
 *     jansson and OpenSSL: the token is three segments and at most 8 KiB;
 *     the header's alg is the one reported, with no crit; the signature
 *     verifies with the target's own copy of the key (HMAC recomputed,
 *     ECDSA through its own R || S to DER conversion, Ed25519); the
 *     claims hold exp (now < ceil(exp) + leeway == expires_at), nbf if any
 *     (now + leeway >= ceil(nbf)), iss and aud as configured, and sub is
 *     the tenant reported (1 to 255 bytes, no control characters);
 *   - for 'S' inputs whose header is exactly {"alg":"HS256"}: the target's
 *     own reading of the claims (the same rules, written here) predicts
 *     acceptance, and the verifier must agree both ways.
 * TPF_TRACE=1 prints each token's class and message (or tenant).
 * For 'J': loading fails with TP_EINVALID and a UTF-8 message, or gives a
 * set of 1 to 64 keys; freeing it leaks nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "fuzz_common.h"
#include "transports.h"

#define NOW 1800000000LL
#define LEEWAY 30
#define SECRET "fuzz-secret-fuzz-secret-fuzz-sec"

/* The public halves of make-jwt-seeds.py's keys. */
#define EC_X "UVw9brnjlrkE0_7Kf1T9zQzB6Ze_N13KUVrQpsO0A18"
#define EC_Y "RTa-OlDzGPv5pUdZAqIhUCvvDVfgjFOyzApW8X2fk1Q"
#define ED_X "Kay64UG8yvCyLhqU000LxzYeUm0L_hLIl5S8kyKWbdc"
#define SECRET_B64 "ZnV6ei1zZWNyZXQtZnV6ei1zZWNyZXQtZnV6ei1zZWM"

static const char jwks_text[] =
    "{\"keys\":["
    "{\"kty\":\"oct\",\"kid\":\"h\",\"alg\":\"HS256\",\"k\":\"" SECRET_B64 "\"},"
    "{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\",\"x\":\"" EC_X "\",\"y\":\"" EC_Y "\"},"
    "{\"kty\":\"OKP\",\"kid\":\"d\",\"crv\":\"Ed25519\",\"x\":\"" ED_X "\"}]}";

static tp__jwt_keys *keys;
static tp__jwt_rules rules;
static char jwks_path[256]; /* the 'J' inputs' file */
static EVP_PKEY *ec_key, *ed_key;

/* ---- The target's own base64url, written apart from the library's ---- */

static int
b64v(unsigned char c)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = c ? strchr(a, c) : NULL;
    return p ? (int)(p - a) : -1;
}

/* Lenient decoding (the verifier already accepted the text): n chars to
 * out (room for n bytes); returns the length. */
static size_t
b64dec(const char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64v((unsigned char)s[i]);
        TPF_CHECK(v >= 0, "accepted a token with a non-base64url character");
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o;
}

static char *
b64enc(const unsigned char *data, size_t n)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 4 / 3 + 4);
    TPF_CHECK(out != NULL, "out of memory");
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | data[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return out;
}

/* ---- Set-up, once ---- */

static EVP_PKEY *
pem_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

static void
remove_jwks(void)
{
    unlink(jwks_path);
}

static void
init(void)
{
    const char *dir = getenv("TMPDIR");
    snprintf(jwks_path, sizeof jwks_path, "%s/fuzz_jwt-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(jwks_path);
    TPF_CHECK(fd >= 0, "mkstemp %s", jwks_path);
    TPF_CHECK(write(fd, jwks_text, strlen(jwks_text)) == (ssize_t)strlen(jwks_text), "write");
    close(fd);
    atexit(remove_jwks);
    json_t *entries = json_pack("[{s:s}]", "jwks_file", jwks_path);
    tp_error err = {0};
    keys = tp__jwt_keys_new(entries, NULL, &err);
    json_decref(entries);
    TPF_CHECK(keys != NULL, "the fixed key set: %s", err.message);
    TPF_CHECK(tp__jwt_keys_count(keys) == 3, "three keys");
    json_t *auth = json_pack("{s:s, s:s, s:s, s:i}", "tenant_claim", "sub", "audience", "my-app",
                             "issuer", "https://id.example", "leeway_s", LEEWAY);
    TPF_CHECK(tp__jwt_rules_load(&rules, auth, NULL, &err) == TP_OK, "rules: %s", err.message);
    json_decref(auth);
    /* The target's own copies of the public keys, as SubjectPublicKeyInfo
     * (make-jwt-seeds.py prints them). */
    ec_key = pem_key("-----BEGIN PUBLIC KEY-----\n"
                     "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUVw9brnjlrkE0/7Kf1T9zQzB6Ze/\n"
                     "N13KUVrQpsO0A19FNr46UPMY+/mlR1kCoiFQK+8NV+CMU7LMClbxfZ+TVA==\n"
                     "-----END PUBLIC KEY-----\n");
    ed_key = pem_key("-----BEGIN PUBLIC KEY-----\n"
                     "MCowBQYDK2VwAyEAKay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=\n"
                     "-----END PUBLIC KEY-----\n");
    TPF_CHECK(ec_key != NULL && ed_key != NULL, "the target's public keys");
}

/* ---- Independent checks ---- */

/* A NumericDate as this target reads docs/internals/auth.md: an integer
 * or real from 0 to 253402300799, rounded up. */
static int
date_of(const json_t *v, long long *out)
{
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        return 0;
    if (!(d >= 0 && d <= 253402300799.0))
        return 0;
    long long i = (long long)d;
    *out = (double)i < d ? i + 1 : i;
    return 1;
}

static int
depth_over(const json_t *v, int max)
{
    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    if (max == 0)
        return 1;
    const char *k;
    json_t *m;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, m) if (depth_over(m, max - 1)) return 1;
    } else {
        json_array_foreach(v, i, m) if (depth_over(m, max - 1)) return 1;
    }
    return 0;
}

/* The claims' verdict under the rules, read by this target: 1 accept. */
static int
claims_ok(const json_t *c, long long *expires_at, const char **tenant)
{
    long long exp, nbf;
    if (!json_is_object(c) || depth_over(c, TP__JWT_MAX_DEPTH))
        return 0;
    if (!date_of(json_object_get(c, "exp"), &exp) || NOW >= exp + LEEWAY)
        return 0;
    const json_t *v = json_object_get(c, "nbf");
    if (v != NULL && (!date_of(v, &nbf) || NOW + LEEWAY < nbf))
        return 0;
    v = json_object_get(c, "iss");
    if (!json_is_string(v) || strcmp(json_string_value(v), "https://id.example") != 0)
        return 0;
    v = json_object_get(c, "aud");
    int found = 0;
    if (json_is_string(v))
        found = strcmp(json_string_value(v), "my-app") == 0;
    else if (json_is_array(v)) {
        size_t i;
        json_t *a;
        json_array_foreach(v, i, a)
        {
            if (!json_is_string(a))
                return 0;
            found |= strcmp(json_string_value(a), "my-app") == 0;
        }
    }
    if (!found)
        return 0;
    v = json_object_get(c, "sub");
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > TP__JWT_MAX_TENANT)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    *expires_at = exp + LEEWAY;
    *tenant = s;
    return 1;
}

/* The signature, checked with the target's keys. */
static int
signature_ok(const char *alg, const char *input, size_t n, const unsigned char *sig, size_t len)
{
    if (strcmp(alg, "HS256") == 0) {
        unsigned char mac[32];
        unsigned int mac_len = 0;
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)input, n, mac,
             &mac_len);
        return len == 32 && CRYPTO_memcmp(mac, sig, 32) == 0;
    }
    unsigned char der[80];
    const unsigned char *s = sig;
    EVP_PKEY *k = ed_key;
    const char *md = NULL;
    if (strcmp(alg, "ES256") == 0) {
        if (len != 64)
            return 0;
        /* DER: SEQUENCE { INTEGER r, INTEGER s }, each minimal and positive. */
        size_t o = 2;
        for (int h = 0; h < 2; h++) {
            const unsigned char *p = sig + 32 * h;
            size_t skip = 0;
            while (skip < 31 && p[skip] == 0)
                skip++;
            size_t ilen = 32 - skip, pad = p[skip] & 0x80 ? 1 : 0;
            der[o++] = 0x02;
            der[o++] = (unsigned char)(ilen + pad);
            if (pad)
                der[o++] = 0;
            memcpy(der + o, p + skip, ilen);
            o += ilen;
        }
        der[0] = 0x30;
        der[1] = (unsigned char)(o - 2);
        s = der;
        len = o;
        k = ec_key;
        md = "SHA256";
    } else if (strcmp(alg, "EdDSA") != 0)
        return 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit_ex(ctx, NULL, md, NULL, NULL, k, NULL) == 1 &&
             EVP_DigestVerify(ctx, s, len, (const unsigned char *)input, n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* No 12-character base64url run of the token (with a letter in it, so
 * that numbers in messages do not count) appears in the message. */
static void
check_no_token(const char *msg, const char *token, size_t n)
{
    for (size_t i = 0; i + 12 <= n; i++) {
        int letter = 0, all = 1;
        for (size_t j = i; j < i + 12 && all; j++) {
            int v = b64v((unsigned char)token[j]);
            all = v >= 0;
            letter |= v >= 0 && v < 52;
        }
        if (!all || !letter)
            continue;
        char run[13];
        memcpy(run, token + i, 12);
        run[12] = '\0';
        TPF_CHECK(strstr(msg, run) == NULL, "message \"%s\" holds a part of the token", msg);
    }
}

/* Verifies a token and checks everything above; returns the class. */
static tp__jwt_result
check_token(const char *token, size_t n)
{
    tp__jwt_claims out;
    tp_error err = {0};
    tp__jwt_result r = tp__jwt_verify(keys, &rules, token, n, NOW, &out, &err);
    if (getenv("TPF_TRACE") != NULL)
        fprintf(stderr, "  %s: %s\n", tp__jwt_result_name(r), r ? err.message : out.tenant);
    TPF_CHECK(r >= TP__JWT_OK && r < TP__JWT_INTERNAL, "class %d (%s)", (int)r, err.message);
    tp_error again = {0};
    TPF_CHECK(tp__jwt_verify(keys, &rules, token, n, NOW, NULL, &again) == r, "not deterministic");
    TPF_CHECK(strcmp(err.message, again.message) == 0, "messages differ: %s / %s", err.message,
              again.message);
    if (r != TP__JWT_OK) {
        TPF_CHECK(err.code == TP_EFORBIDDEN, "code %d", err.code);
        TPF_CHECK(err.message[0] != '\0', "empty message");
        TPF_CHECK(tpf_valid_utf8(err.message, strlen(err.message)), "message not UTF-8");
        check_no_token(err.message, token, n);
        return r;
    }
    TPF_CHECK(n <= TP__JWT_MAX_TOKEN, "accepted %zu bytes", n);
    const char *d1 = memchr(token, '.', n);
    TPF_CHECK(d1 != NULL, "accepted without a dot");
    const char *d2 = memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token));
    TPF_CHECK(d2 != NULL && memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token)) == NULL,
              "accepted without exactly three segments");
    unsigned char *buf = malloc(n + 1);
    TPF_CHECK(buf != NULL, "out of memory");
    size_t hl = b64dec(token, (size_t)(d1 - token), buf);
    json_t *header = json_loadb((const char *)buf, hl, JSON_REJECT_DUPLICATES, NULL);
    TPF_CHECK(json_is_object(header), "accepted a header that is not an object");
    const char *alg = json_string_value(json_object_get(header, "alg"));
    TPF_CHECK(alg != NULL && strcmp(alg, out.alg) == 0, "alg %s reported as %s",
              alg ? alg : "(none)", out.alg);
    TPF_CHECK(json_object_get(header, "crit") == NULL, "accepted crit");
    size_t sl = b64dec(d2 + 1, n - (size_t)(d2 + 1 - token), buf);
    TPF_CHECK(signature_ok(alg, token, (size_t)(d2 - token), buf, sl),
              "accepted a signature the target's %s key does not verify", alg);
    size_t cl = b64dec(d1 + 1, (size_t)(d2 - d1 - 1), buf);
    json_t *claims = json_loadb((const char *)buf, cl, JSON_REJECT_DUPLICATES, NULL);
    long long expires_at;
    const char *tenant;
    TPF_CHECK(claims_ok(claims, &expires_at, &tenant), "accepted claims the rules refuse");
    TPF_CHECK(strcmp(tenant, out.tenant) == 0, "tenant differs");
    TPF_CHECK(expires_at == out.expires_at && out.expires_at == out.exp + LEEWAY,
              "expires_at %lld, reported %lld", expires_at, (long long)out.expires_at);
    json_decref(claims);
    json_decref(header);
    free(buf);
    return r;
}

/* ---- Modes ---- */

static void
signed_claims(const uint8_t *data, size_t size)
{
    const uint8_t *next;
    size_t hn = tpf_split(data, size, &next);
    if (next == NULL)
        return;
    size_t cn = size - (size_t)(next - data);
    char *h = b64enc(data, hn), *c = b64enc(next, cn);
    size_t len = strlen(h) + strlen(c) + 1;
    char *token = malloc(len + 48);
    TPF_CHECK(token != NULL, "out of memory");
    snprintf(token, len + 48, "%s.%s", h, c);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)token, len, mac,
         &mac_len);
    char *s = b64enc(mac, mac_len);
    snprintf(token + len, 48, ".%s", s);
    tp__jwt_result r = check_token(token, strlen(token));
    /* The prediction, for the plainest header. */
    if (hn == 15 && memcmp(data, "{\"alg\":\"HS256\"}", 15) == 0 &&
        strlen(token) <= TP__JWT_MAX_TOKEN) {
        json_t *claims = json_loadb((const char *)next, cn, JSON_REJECT_DUPLICATES, NULL);
        long long expires_at;
        const char *tenant;
        int want = claims != NULL && claims_ok(claims, &expires_at, &tenant);
        TPF_CHECK(want == (r == TP__JWT_OK), "the verifier says %s, the target %s",
                  tp__jwt_result_name(r), want ? "ok" : "refused");
        json_decref(claims);
    }
    free(s);
    free(h);
    free(c);
    free(token);
}

static void
load_jwks(const uint8_t *data, size_t size)
{
    FILE *f = fopen(jwks_path, "wb");
    TPF_CHECK(f != NULL, "open %s", jwks_path);
    TPF_CHECK(fwrite(data, 1, size, f) == size, "write");
    fclose(f);
    json_t *entries = json_pack("[{s:s}]", "jwks_file", jwks_path);
    tp_error err = {0};
    tp__jwt_keys *k = tp__jwt_keys_new(entries, NULL, &err);
    json_decref(entries);
    if (k == NULL) {
        TPF_CHECK(err.code == TP_EINVALID, "code %d: %s", err.code, err.message);
        TPF_CHECK(tpf_valid_utf8(err.message, strlen(err.message)), "message not UTF-8");
        return;
    }
    size_t count = tp__jwt_keys_count(k);
    TPF_CHECK(count >= 1 && count <= TP__JWT_MAX_KEYS, "%zu keys", count);
    tp__jwt_keys_free(k);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (keys == NULL)
        init();
    if (size > 0 && data[0] == 'S')
        signed_claims(data + 1, size - 1);
    else if (size > 0 && data[0] == 'J')
        load_jwks(data + 1, size - 1);
    else
        check_token((const char *)data, size);
    return 0;
}
