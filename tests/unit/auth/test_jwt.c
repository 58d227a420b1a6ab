/*
 * JWT verification (src/auth/jwt.h): keys made here at run time with
 * OpenSSL, tokens signed here with OpenSSL through a path of the test's own
 * (EVP_DigestSign, HMAC(), a DER to R || S conversion written here), then
 * every refusal RFC 8725 asks for, the claim checks at their edges, the
 * bounds, and the key set's config errors with the field they name. A
 * second signer, PyJWT, made the tokens of tests/cases/jwt/ (make.py).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "auth/jwt.h"
#include "support.h"
#include "transports.h"

#define NOW 1800000000LL

static void
setup(void)
{
    tpt_chdir_temp();
    tpt_alloc_install();
}

static void
teardown(void)
{
    tpt_chdir_back();
}

/* Every test in a directory of its own (key files), with the counting
 * allocator: each test ends by checking that nothing leaked. */
TestSuite(jwt, .init = setup, .fini = teardown);

/* ---- The test's own signing path ---- */

/* base64url without padding, through OpenSSL's standard base64 (malloc'd). */
static char *
b64url(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    cr_assert_not_null(out);
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

/* header.claims.signature, every part given (sig may be NULL: empty). */
static char *
assemble(const char *header_b64, const char *claims_b64, const unsigned char *sig, size_t sig_len)
{
    char *s = sig ? b64url(sig, sig_len) : strdup("");
    size_t n = strlen(header_b64) + strlen(claims_b64) + strlen(s) + 3;
    char *t = malloc(n);
    cr_assert_not_null(t);
    snprintf(t, n, "%s.%s.%s", header_b64, claims_b64, s);
    free(s);
    return t;
}

static const char *
digest_of(const char *alg)
{
    if (strstr(alg, "256"))
        return "SHA256";
    if (strstr(alg, "384"))
        return "SHA384";
    return "SHA512";
}

/* Signs input for alg with pkey (or secret for HS*); the signature as JOSE
 * wants it (raw R || S for ES*). Returns the length; sig has room. */
static size_t
sign_raw(const char *alg, EVP_PKEY *pkey, const char *secret, const char *input, unsigned char *sig)
{
    if (alg[0] == 'H') {
        unsigned int len = 0;
        const EVP_MD *md = strcmp(alg, "HS256") == 0   ? EVP_sha256()
                           : strcmp(alg, "HS384") == 0 ? EVP_sha384()
                                                       : EVP_sha512();
        cr_assert_not_null(HMAC(md, secret, (int)strlen(secret), (const unsigned char *)input,
                                strlen(input), sig, &len));
        return len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int eddsa = strcmp(alg, "EdDSA") == 0;
    cr_assert_eq(
        EVP_DigestSignInit_ex(ctx, &pctx, eddsa ? NULL : digest_of(alg), NULL, NULL, pkey, NULL),
        1);
    if (alg[0] == 'P') {
        cr_assert_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 0);
        cr_assert_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 0);
    }
    unsigned char der[1024];
    size_t len = sizeof der;
    cr_assert_eq(EVP_DigestSign(ctx, der, &len, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    if (alg[0] != 'E' || eddsa) {
        memcpy(sig, der, len);
        return len;
    }
    /* ECDSA: DER SEQUENCE { r, s } to R || S, each the curve's size. */
    size_t half = strcmp(alg, "ES256") == 0 ? 32 : strcmp(alg, "ES384") == 0 ? 48 : 66;
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    cr_assert_not_null(es);
    cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)half), (int)half);
    cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, (int)half), (int)half);
    ECDSA_SIG_free(es);
    return 2 * half;
}

/* A token with this header and these claims (JSON texts), signed. */
static char *
sign_with(const char *alg, EVP_PKEY *pkey, const char *secret, const char *header,
          const char *claims)
{
    char *h = b64url(header, strlen(header)), *c = b64url(claims, strlen(claims));
    size_t n = strlen(h) + strlen(c) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, c);
    unsigned char sig[1024];
    size_t len = sign_raw(alg, pkey, secret, input, sig);
    char *t = assemble(h, c, sig, len);
    free(h);
    free(c);
    free(input);
    return t;
}

/* The usual header: {"alg": alg, "typ": "JWT"} (and a kid when given). */
static char *
sign_token(const char *alg, EVP_PKEY *pkey, const char *secret, const char *kid, const char *claims)
{
    char header[200];
    if (kid)
        snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg,
                 kid);
    else
        snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    return sign_with(alg, pkey, secret, header, claims);
}

/* Claims valid at NOW: sub alice, exp in ten minutes. */
#define CLAIMS "{\"sub\":\"alice\",\"exp\":1800000600,\"iat\":1800000000}"

/* ---- Keys ---- */

static EVP_PKEY *
keygen(const char *type, const char *curve)
{
    EVP_PKEY *k = NULL;
    if (strcmp(type, "RSA") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else if (strcmp(type, "EC") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, type);
    cr_assert_not_null(k, "keygen %s", type);
    return k;
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes pkey's public half as SubjectPublicKeyInfo PEM to path. */
static void
write_pub(const char *path, EVP_PKEY *pkey)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_PUBKEY(f, pkey), 1);
    fclose(f);
}

/* The public PEM as text (malloc'd). */
static char *
pub_pem(EVP_PKEY *pkey)
{
    BIO *b = BIO_new(BIO_s_mem());
    cr_assert_eq(PEM_write_bio_PUBKEY(b, pkey), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

/* The test's environment for secret_env: two fixed variables. */
#define SECRET32 "0123456789abcdef0123456789abcdef"
#define SECRET64 SECRET32 SECRET32
#define SECRET_OTHER "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static const char *
test_env(const char *name, void *user)
{
    (void)user;
    if (strcmp(name, "S32") == 0)
        return SECRET32;
    if (strcmp(name, "S64") == 0)
        return SECRET64;
    if (strcmp(name, "SHORT") == 0)
        return "too short";
    if (strcmp(name, "EMPTY") == 0)
        return "";
    return NULL;
}

/* A key set from a JSON text; asserts it loads. */
static tp__jwt_keys *
keys_from(const char *json)
{
    json_error_t jerr;
    json_t *v = json_loads(json, 0, &jerr);
    cr_assert_not_null(v, "bad test JSON: %s: %s", json, jerr.text);
    tp__jwt_keys_config cfg = {.getenv = test_env};
    tp_error err = {0};
    tp__jwt_keys *keys = tp__jwt_keys_new(v, &cfg, &err);
    json_decref(v);
    cr_assert_not_null(keys, "%s: %s", json, err.message);
    return keys;
}

/* The message a key set's config is refused with; asserts it is refused. */
static void
keys_refused(const char *json, const char *want)
{
    json_error_t jerr;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(v, "bad test JSON: %s", json);
    tp__jwt_keys_config cfg = {.getenv = test_env};
    tp_error err = {0};
    tp__jwt_keys *keys = tp__jwt_keys_new(v, &cfg, &err);
    json_decref(v);
    if (keys != NULL) {
        tp__jwt_keys_free(keys);
        cr_assert_fail("accepted, expected \"%s\": %s", want, json);
    }
    cr_assert_eq(err.code, TP_EINVALID, "%s", err.message);
    cr_assert_str_eq(err.message, want, "\ngot  %s\nwant %s", err.message, want);
    cr_assert_eq(ERR_peek_error(), 0, "OpenSSL's error queue is not empty");
}

/* ---- Verifying ---- */

static tp__jwt_rules
rules_plain(void)
{
    tp__jwt_rules r = {.tenant_claim = "sub"};
    return r;
}

/* No 12-byte run of the token is in the message: refusals name classes,
 * never the credential. */
static void
no_token_in(const char *message, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i + 12 <= n; i++) {
        char run[13];
        memcpy(run, token + i, 12);
        run[12] = '\0';
        cr_assert_null(strstr(message, run), "the message \"%s\" holds part of the token", message);
    }
}

/* Verifies and checks the class; on TP__JWT_OK, the tenant is alice. */
static tp__jwt_claims
expect_at(const tp__jwt_keys *keys, const tp__jwt_rules *rules, const char *token, int64_t now,
          tp__jwt_result want)
{
    tp__jwt_claims c;
    memset(&c, 0, sizeof c);
    tp_error err = {0};
    tp__jwt_result got = tp__jwt_verify(keys, rules, token, strlen(token), now, &c, &err);
    cr_assert_eq(got, want, "got %s (%s), want %s", tp__jwt_result_name(got), err.message,
                 tp__jwt_result_name(want));
    /* Nothing is left on OpenSSL's error queue: the server's thread shares
     * it with TLS, where SSL_get_error() reads it. */
    cr_assert_eq(ERR_peek_error(), 0, "OpenSSL's error queue is not empty");
    if (want == TP__JWT_OK) {
        cr_assert_eq(err.code, TP_OK);
    } else {
        cr_assert_eq(err.code, TP_EFORBIDDEN, "%s", err.message);
        cr_assert_neq(err.message[0], '\0');
        no_token_in(err.message, token);
    }
    return c;
}

static tp__jwt_claims
expect(const tp__jwt_keys *keys, const char *token, tp__jwt_result want)
{
    tp__jwt_rules r = rules_plain();
    return expect_at(keys, &r, token, NOW, want);
}

/* The message of a refusal (for the tests that check its words). */
static void
expect_message(const tp__jwt_keys *keys, const tp__jwt_rules *rules, const char *token, int64_t now,
               const char *want)
{
    tp_error err = {0};
    tp__jwt_verify(keys, rules, token, strlen(token), now, NULL, &err);
    cr_assert_str_eq(err.message, want, "\ngot  %s\nwant %s", err.message, want);
}

/* ---- Every algorithm ---- */

Test(jwt, every_algorithm_verifies)
{
    EVP_PKEY *rsa = keygen("RSA", NULL), *p256 = keygen("EC", "P-256"),
             *p384 = keygen("EC", "P-384"), *p521 = keygen("EC", "P-521"),
             *ed25519 = keygen("ED25519", NULL), *ed448 = keygen("ED448", NULL);
    write_pub("rs.pem", rsa);
    write_pub("p256.pem", p256);
    write_pub("p384.pem", p384);
    write_pub("p521.pem", p521);
    write_pub("ed25519.pem", ed25519);
    write_pub("ed448.pem", ed448);
    tp__jwt_keys *keys = keys_from("["
                                   "{\"alg\":\"HS256\",\"secret_env\":\"S32\"},"
                                   "{\"alg\":\"HS384\",\"secret_env\":\"S64\"},"
                                   "{\"alg\":\"HS512\",\"secret_env\":\"S64\"},"
                                   "{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"RS384\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"RS512\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"PS256\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"PS384\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"PS512\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"ES256\",\"public_key_file\":\"p256.pem\"},"
                                   "{\"alg\":\"ES384\",\"public_key_file\":\"p384.pem\"},"
                                   "{\"alg\":\"ES512\",\"public_key_file\":\"p521.pem\"},"
                                   "{\"alg\":\"EdDSA\",\"public_key_file\":\"ed25519.pem\"},"
                                   "{\"alg\":\"EdDSA\",\"public_key_file\":\"ed448.pem\"}]");
    cr_assert_eq(tp__jwt_keys_count(keys), 14);
    struct {
        const char *alg;
        EVP_PKEY *pkey;
        const char *secret;
    } cases[] = {
        {"HS256", NULL, SECRET32}, {"HS384", NULL, SECRET64}, {"HS512", NULL, SECRET64},
        {"RS256", rsa, NULL},      {"RS384", rsa, NULL},      {"RS512", rsa, NULL},
        {"PS256", rsa, NULL},      {"PS384", rsa, NULL},      {"PS512", rsa, NULL},
        {"ES256", p256, NULL},     {"ES384", p384, NULL},     {"ES512", p521, NULL},
        {"EdDSA", ed25519, NULL},  {"EdDSA", ed448, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = sign_token(cases[i].alg, cases[i].pkey, cases[i].secret, NULL, CLAIMS);
        tp__jwt_claims c = expect(keys, t, TP__JWT_OK);
        cr_assert_str_eq(c.tenant, "alice", "%s", cases[i].alg);
        cr_assert_eq(c.exp, 1800000600);
        cr_assert_eq(c.expires_at, 1800000600);
        cr_assert_str_eq(c.alg, cases[i].alg);
        /* One changed byte of the signed part, and it no longer verifies:
         * the claims become {"sub":"alicf",...}. */
        char *bad = sign_token(cases[i].alg, cases[i].pkey, cases[i].secret, NULL, CLAIMS);
        char *dot = strchr(bad, '.');
        char *forged_claims =
            b64url("{\"sub\":\"alicf\",\"exp\":1800000600,\"iat\":1800000000}", strlen(CLAIMS));
        cr_assert_eq(strlen(forged_claims), (size_t)(strchr(dot + 1, '.') - dot - 1));
        memcpy(dot + 1, forged_claims, strlen(forged_claims));
        expect(keys, bad, TP__JWT_BAD_SIGNATURE);
        free(forged_claims);
        free(bad);
        free(t);
    }
    tp__jwt_keys_free(keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(ed25519);
    EVP_PKEY_free(ed448);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- RFC 8725: algorithms bound to keys ---- */

Test(jwt, alg_none_in_any_case_or_missing_is_refused)
{
    tp__jwt_keys *keys = keys_from("[{\"alg\":\"HS256\",\"secret_env\":\"S32\"}]");
    char *c = b64url(CLAIMS, strlen(CLAIMS));
    const char *headers[] = {"{\"alg\":\"none\"}", "{\"alg\":\"NONE\"}", "{\"alg\":\"nOnE\"}",
                             "{\"alg\":\"none\",\"typ\":\"JWT\"}"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *h = b64url(headers[i], strlen(headers[i]));
        char *t = assemble(h, c, NULL, 0);
        expect(keys, t, TP__JWT_UNSIGNED);
        free(t);
        /* A signature does not make none acceptable. */
        unsigned char sig[32] = {1};
        t = assemble(h, c, sig, sizeof sig);
        expect(keys, t, TP__JWT_UNSIGNED);
        free(t);
        free(h);
    }
    char *h = b64url("{\"typ\":\"JWT\"}", 13);
    char *t = assemble(h, c, NULL, 0);
    tp__jwt_rules r = rules_plain();
    expect_message(keys, &r, t, NOW, "token malformed: header: no alg");
    free(t);
    free(h);
    /* An HS256 token with an empty signature is not unsigned: refused all the same. */
    h = b64url("{\"alg\":\"HS256\"}", 15);
    t = assemble(h, c, NULL, 0);
    expect_message(keys, &r, t, NOW, "token bad_signature: no signature");
    free(t);
    free(h);
    free(c);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, an_algorithm_no_key_has_is_refused)
{
    EVP_PKEY *p256 = keygen("EC", "P-256"), *rsa = keygen("RSA", NULL);
    write_pub("es.pem", p256);
    tp__jwt_keys *keys = keys_from("[{\"alg\":\"ES256\",\"public_key_file\":\"es.pem\"}]");
    tp__jwt_rules r = rules_plain();
    /* An RS256 token against only an EC key: no key, before any
     * computation; and an HS256 one, whatever its secret. */
    char *t = sign_token("RS256", rsa, NULL, NULL, CLAIMS);
    expect_message(keys, &r, t, NOW, "token no_key: no RS256 key");
    free(t);
    t = sign_token("HS256", NULL, SECRET32, NULL, CLAIMS);
    expect(keys, t, TP__JWT_NO_KEY);
    free(t);
    /* alg values are case-sensitive (RFC 7515 4.1.1): es256 is no ES256. */
    t = sign_with("ES256", p256, NULL, "{\"alg\":\"es256\"}", CLAIMS);
    expect_message(keys, &r, t, NOW, "token no_key: alg is not one any key is bound to");
    free(t);
    /* ES256 by name, signed with RSA: the signature cannot even be the
     * right length. */
    t = sign_with("RS256", rsa, NULL, "{\"alg\":\"ES256\"}", CLAIMS);
    expect_message(keys, &r, t, NOW,
                   "token bad_signature: the signature has the wrong length for ES256");
    free(t);
    tp__jwt_keys_free(keys);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(rsa);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, hmac_with_the_rsa_public_key_as_secret_is_refused)
{
    EVP_PKEY *rsa = keygen("RSA", NULL);
    write_pub("rs.pem", rsa);
    char *pem = pub_pem(rsa);
    tp__jwt_rules r = rules_plain();
    /* The classic attack: the verifier holds an RSA public key, the token
     * says HS256 and is HMAC'd with that key's PEM text. */
    char *t = sign_token("HS256", NULL, pem, NULL, CLAIMS);
    tp__jwt_keys *keys = keys_from("[{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\"}]");
    expect_message(keys, &r, t, NOW, "token no_key: no HS256 key");
    tp__jwt_keys_free(keys);
    /* With an HS256 key configured too, the PEM is still no secret of ours. */
    keys = keys_from("[{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\"},"
                     "{\"alg\":\"HS256\",\"secret_env\":\"S32\"}]");
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    tp__jwt_keys_free(keys);
    /* And a PEM file cannot be made an HMAC key, nor a secret an RSA key. */
    keys_refused("[{\"alg\":\"HS256\",\"public_key_file\":\"rs.pem\"}]",
                 "auth.keys[0].public_key_file: HS256 takes a secret (secret_env), not a public "
                 "key");
    keys_refused("[{\"alg\":\"RS256\",\"secret_env\":\"S32\"}]",
                 "auth.keys[0].secret_env: RS256 takes a public key (public_key_file or "
                 "jwks_file), not a secret");
    free(t);
    free(pem);
    EVP_PKEY_free(rsa);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, ps256_and_rs256_do_not_stand_in_for_each_other)
{
    EVP_PKEY *rsa = keygen("RSA", NULL);
    write_pub("rs.pem", rsa);
    tp__jwt_keys *rs_only = keys_from("[{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\"}]");
    tp__jwt_keys *both = keys_from("[{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"PS256\",\"public_key_file\":\"rs.pem\"}]");
    char *ps = sign_token("PS256", rsa, NULL, NULL, CLAIMS);
    char *rs = sign_token("RS256", rsa, NULL, NULL, CLAIMS);
    expect(rs_only, ps, TP__JWT_NO_KEY);
    expect(both, ps, TP__JWT_OK);
    expect(both, rs, TP__JWT_OK);
    /* A PKCS#1 v1.5 signature under a PS256 header, and a PSS one under
     * RS256: same key, same length, neither verifies. */
    char *rs_as_ps = sign_with("RS256", rsa, NULL, "{\"alg\":\"PS256\"}", CLAIMS);
    char *ps_as_rs = sign_with("PS256", rsa, NULL, "{\"alg\":\"RS256\"}", CLAIMS);
    expect(both, rs_as_ps, TP__JWT_BAD_SIGNATURE);
    expect(both, ps_as_rs, TP__JWT_BAD_SIGNATURE);
    /* RS512 is another algorithm: a key bound to RS256 does not take it. */
    char *rs512 = sign_token("RS512", rsa, NULL, NULL, CLAIMS);
    expect(both, rs512, TP__JWT_NO_KEY);
    free(ps);
    free(rs);
    free(rs_as_ps);
    free(ps_as_rs);
    free(rs512);
    tp__jwt_keys_free(rs_only);
    tp__jwt_keys_free(both);
    EVP_PKEY_free(rsa);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, kid_selects_among_keys_of_the_algorithm)
{
    EVP_PKEY *a = keygen("EC", "P-256"), *b = keygen("EC", "P-256");
    write_pub("a.pem", a);
    write_pub("b.pem", b);
    tp__jwt_keys *keys =
        keys_from("[{\"alg\":\"ES256\",\"public_key_file\":\"a.pem\",\"kid\":\"a\"},"
                  "{\"alg\":\"ES256\",\"public_key_file\":\"b.pem\",\"kid\":\"b\"}]");
    tp__jwt_rules r = rules_plain();
    char *t = sign_token("ES256", a, NULL, "a", CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    t = sign_token("ES256", b, NULL, "b", CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    /* Signed by a, naming b: only b is tried. */
    t = sign_token("ES256", a, NULL, "b", CLAIMS);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    /* A kid no key has. */
    t = sign_token("ES256", a, NULL, "c", CLAIMS);
    expect_message(keys, &r, t, NOW, "token no_key: no ES256 key with the token's kid");
    free(t);
    /* No kid: every ES256 key is a candidate. */
    t = sign_token("ES256", b, NULL, NULL, CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    /* A kid that is not a string. */
    t = sign_with("ES256", a, NULL, "{\"alg\":\"ES256\",\"kid\":7}", CLAIMS);
    expect(keys, t, TP__JWT_MALFORMED);
    free(t);
    tp__jwt_keys_free(keys);
    /* Two keys of one algorithm with one kid are refused at load. */
    keys_refused("[{\"alg\":\"ES256\",\"public_key_file\":\"a.pem\",\"kid\":\"a\"},"
                 "{\"alg\":\"ES256\",\"public_key_file\":\"b.pem\",\"kid\":\"a\"}]",
                 "auth.keys: two ES256 keys with kid \"a\"");
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- JWKS ---- */

/* x and y of an EC key, base64url (malloc'd). */
static void
ec_xy(EVP_PKEY *k, size_t size, char **x, char **y)
{
    unsigned char pub[1 + 2 * 66];
    size_t len;
    cr_assert_eq(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub, &len),
                 1);
    cr_assert_eq(len, 1 + 2 * size);
    *x = b64url(pub + 1, size);
    *y = b64url(pub + 1 + size, size);
}

/* A JWK for an EC P-256 key (kid, and alg unless NULL); malloc'd text. */
static char *
jwk_p256(EVP_PKEY *k, const char *kid, const char *alg)
{
    char *x, *y, *out = malloc(512);
    ec_xy(k, 32, &x, &y);
    char alg_member[40] = "";
    if (alg)
        snprintf(alg_member, sizeof alg_member, ",\"alg\":\"%s\"", alg);
    snprintf(out, 512,
             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}", kid,
             x, y, alg_member);
    free(x);
    free(y);
    return out;
}

static char *
jwk_rsa(EVP_PKEY *k, const char *kid, const char *alg)
{
    BIGNUM *n = NULL, *e = NULL;
    cr_assert_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    cr_assert_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    unsigned char nb[512], eb[16];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    char *ns = b64url(nb, (size_t)nl), *es = b64url(eb, (size_t)el);
    char alg_member[40] = "";
    if (alg)
        snprintf(alg_member, sizeof alg_member, ",\"alg\":\"%s\"", alg);
    char *out = malloc(1024);
    snprintf(out, 1024, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid, ns, es,
             alg_member);
    free(ns);
    free(es);
    BN_free(n);
    BN_free(e);
    return out;
}

static char *
jwk_ed25519(EVP_PKEY *k, const char *kid)
{
    unsigned char raw[32];
    size_t len = sizeof raw;
    cr_assert_eq(EVP_PKEY_get_raw_public_key(k, raw, &len), 1);
    char *x = b64url(raw, len), *out = malloc(256);
    snprintf(out, 256, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"%s\",\"x\":\"%s\"}", kid, x);
    free(x);
    return out;
}

static void
write_jwks(const char *path, const char *a, const char *b)
{
    char text[4096];
    snprintf(text, sizeof text, "{\"keys\":[%s%s%s]}", a, b ? "," : "", b ? b : "");
    write_text(path, text);
}

Test(jwt, jwks_with_two_keys_and_kid_rotation)
{
    EVP_PKEY *k1 = keygen("EC", "P-256"), *k2 = keygen("EC", "P-256"), *k3 = keygen("EC", "P-256");
    char *j1 = jwk_p256(k1, "k1", "ES256"), *j2 = jwk_p256(k2, "k2", NULL),
         *j3 = jwk_p256(k3, "k3", NULL);
    write_jwks("jwks.json", j1, j2);
    tp__jwt_keys *keys = keys_from("[{\"jwks_file\":\"jwks.json\"}]");
    cr_assert_eq(tp__jwt_keys_count(keys), 2);
    char *t1 = sign_token("ES256", k1, NULL, "k1", CLAIMS);
    char *t2 = sign_token("ES256", k2, NULL, "k2", CLAIMS);
    char *t3 = sign_token("ES256", k3, NULL, "k3", CLAIMS);
    char *t1_as_2 = sign_token("ES256", k1, NULL, "k2", CLAIMS);
    expect(keys, t1, TP__JWT_OK);
    expect(keys, t2, TP__JWT_OK); /* k2 has no alg: P-256 binds it to ES256 */
    expect(keys, t3, TP__JWT_NO_KEY);
    expect(keys, t1_as_2, TP__JWT_BAD_SIGNATURE);
    /* Rotation: the issuer drops k1 and adds k3; the caller loads the new
     * file into a new set and swaps it in. */
    write_jwks("jwks.json", j2, j3);
    tp__jwt_keys *next = keys_from("[{\"jwks_file\":\"jwks.json\"}]");
    tp__jwt_keys_free(keys);
    keys = next;
    expect(keys, t1, TP__JWT_NO_KEY);
    expect(keys, t2, TP__JWT_OK);
    expect(keys, t3, TP__JWT_OK);
    tp__jwt_keys_free(keys);
    free(t1);
    free(t2);
    free(t3);
    free(t1_as_2);
    free(j1);
    free(j2);
    free(j3);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, jwks_of_every_kind)
{
    EVP_PKEY *rsa = keygen("RSA", NULL), *ed = keygen("ED25519", NULL), *p = keygen("EC", "P-256");
    char *jr = jwk_rsa(rsa, "r", "PS256"), *je = jwk_ed25519(ed, "e"), *jp = jwk_p256(p, "p", NULL);
    char text[4096];
    char *k = b64url(SECRET64, 64);
    snprintf(text, sizeof text,
             "{\"keys\":[%s,%s,{\"kty\":\"oct\",\"kid\":\"o\",\"alg\":\"HS512\",\"k\":\"%s\"},"
             "{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
             "{\"kty\":\"EC\",\"key_ops\":[\"sign\"],\"kid\":\"x\"},%s]}",
             jr, je, k, jp);
    write_text("jwks.json", text);
    tp__jwt_keys *keys = keys_from("[{\"jwks_file\":\"jwks.json\"}]");
    cr_assert_eq(tp__jwt_keys_count(keys), 4);
    cr_assert_eq(tp__jwt_keys_skipped(keys), 2); /* use enc, key_ops without verify */
    char *t = sign_token("PS256", rsa, NULL, "r", CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    t = sign_token("RS256", rsa, NULL, "r", CLAIMS); /* the JWK says PS256 */
    expect(keys, t, TP__JWT_NO_KEY);
    free(t);
    t = sign_token("EdDSA", ed, NULL, "e", CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    t = sign_token("HS512", NULL, SECRET64, "o", CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    t = sign_token("ES256", p, NULL, NULL, CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    tp__jwt_keys_free(keys);

    /* An RSA key without alg fits several algorithms: the entry binds it. */
    char *jr_bare = jwk_rsa(rsa, "r", NULL);
    write_jwks("bare.json", jr_bare, NULL);
    keys_refused("[{\"jwks_file\":\"bare.json\"}]",
                 "auth.keys[0].jwks_file: bare.json: keys[0] (kid \"r\").alg: a RSA key fits "
                 "several algorithms, so it needs \"alg\" (in the key, or in the config entry)");
    keys = keys_from("[{\"jwks_file\":\"bare.json\",\"alg\":\"RS384\"}]");
    t = sign_token("RS384", rsa, NULL, NULL, CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    tp__jwt_keys_free(keys);
    /* The entry's alg and a key's own must agree. */
    write_jwks("ps.json", jr, NULL);
    keys_refused("[{\"jwks_file\":\"ps.json\",\"alg\":\"RS256\"}]",
                 "auth.keys[0].jwks_file: ps.json: keys[0] (kid \"r\").alg: PS256, but the "
                 "entry's alg is RS256");
    free(jr_bare);
    free(k);
    free(jr);
    free(je);
    free(jp);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(p);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, jwks_refusals_name_the_key)
{
    EVP_PKEY *p = keygen("EC", "P-256");
    char *x, *y;
    ec_xy(p, 32, &x, &y);
    char text[2048];
    struct {
        const char *jwk;
        const char *want;
    } cases[] = {
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"d\":\"AAAA\"}",
         "auth.keys[0].jwks_file: j.json: keys[0].d: a private key part; the JWKS must hold "
         "public keys only"},
        {"{\"kty\":\"EC\",\"crv\":\"P-384\",\"alg\":\"ES256\",\"x\":\"%s\",\"y\":\"%s\"}",
         "auth.keys[0].jwks_file: j.json: keys[0].crv: ES256 needs P-256"},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s!\"}",
         "auth.keys[0].jwks_file: j.json: keys[0].y: not base64url (RFC 7515 section 2)"},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%.40s\"}",
         "auth.keys[0].jwks_file: j.json: keys[0].x, y: expected 32 bytes each for P-256"},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"alg\":\"RS256\"}",
         "auth.keys[0].jwks_file: j.json: keys[0].alg: RS256 does not take an EC key"},
        {"{\"kty\":\"XYZ\",\"x\":\"%s\",\"y\":\"%s\"}",
         "auth.keys[0].jwks_file: j.json: keys[0].kty: XYZ is not RSA, EC, OKP or oct"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char jwk[600];
        snprintf(jwk, sizeof jwk, cases[i].jwk, x, y);
        snprintf(text, sizeof text, "{\"keys\":[%s]}", jwk);
        write_text("j.json", text);
        keys_refused("[{\"jwks_file\":\"j.json\"}]", cases[i].want);
    }
    /* oct keys: 64 bytes fit HS256, 15 do not (RFC 7518 3.2). */
    char *k64 = b64url(SECRET64, 64), *k15 = b64url(SECRET64, 15);
    snprintf(text, sizeof text, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"%s\",\"alg\":\"HS256\"}]}",
             k64);
    write_text("j.json", text);
    tp__jwt_keys_free(keys_from("[{\"jwks_file\":\"j.json\"}]"));
    snprintf(text, sizeof text, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"%s\",\"alg\":\"HS256\"}]}",
             k15);
    write_text("j.json", text);
    keys_refused("[{\"jwks_file\":\"j.json\"}]",
                 "auth.keys[0].jwks_file: j.json: keys[0]: the secret is 15 bytes, HS256 needs at "
                 "least 32");
    free(k64);
    free(k15);
    /* A point that is not on the curve. */
    char *bad_y = strdup(y);
    bad_y[5] = bad_y[5] == 'A' ? 'B' : 'A';
    snprintf(text, sizeof text,
             "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, bad_y);
    write_text("j.json", text);
    keys_refused("[{\"jwks_file\":\"j.json\"}]",
                 "auth.keys[0].jwks_file: j.json: keys[0].x, y: not a point of P-256");
    write_text("j.json", "{\"keys\":[]}");
    keys_refused("[{\"jwks_file\":\"j.json\"}]",
                 "auth.keys[0].jwks_file: j.json holds no signature key");
    write_text("j.json", "{\"keys\":{}}");
    keys_refused("[{\"jwks_file\":\"j.json\"}]",
                 "auth.keys[0].jwks_file: j.json: expected an object with a \"keys\" array (RFC "
                 "7517 5)");
    write_text("j.json", "{\"keys\":[], \"keys\":[]}");
    keys_refused("[{\"jwks_file\":\"j.json\"}]",
                 "auth.keys[0].jwks_file: j.json: line 1: duplicate object key near '\"keys\"'");
    keys_refused("[{\"jwks_file\":\"missing.json\"}]",
                 "auth.keys[0].jwks_file: cannot read missing.json: No such file or directory");
    keys_refused("[{\"jwks_file\":\"j.json\",\"kid\":\"x\"}]",
                 "auth.keys[0].kid: not allowed with jwks_file (its keys have their own)");
    free(bad_y);
    free(x);
    free(y);
    EVP_PKEY_free(p);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- Config ---- */

Test(jwt, key_config_refusals_name_the_field)
{
    EVP_PKEY *rsa = keygen("RSA", NULL), *p384 = keygen("EC", "P-384"),
             *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    write_pub("rs.pem", rsa);
    write_pub("p384.pem", p384);
    write_pub("small.pem", small);
    FILE *f = fopen("private.pem", "w");
    cr_assert_eq(PEM_write_PrivateKey(f, p384, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    write_text("junk.pem", "not a key\n");
    keys_refused("[]", "auth.keys: expected a non-empty array of keys, got []");
    keys_refused("{}", "auth.keys: expected a non-empty array of keys, got object");
    keys_refused("[7]", "auth.keys[0]: expected an object, got number");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":\"S32\",\"secret\":\"x\"}]",
                 "auth.keys[0].secret: unknown key");
    keys_refused("[{\"secret_env\":\"S32\"}]",
                 "auth.keys[0].alg: missing (each key is bound to one algorithm)");
    keys_refused("[{\"alg\":\"HS1\",\"secret_env\":\"S32\"}]",
                 "auth.keys[0].alg: HS1 is not one of HS256, HS384, HS512, RS256, RS384, RS512, "
                 "PS256, PS384, PS512, ES256, ES384, ES512, EdDSA");
    keys_refused("[{\"alg\":\"none\",\"secret_env\":\"S32\"}]",
                 "auth.keys[0].alg: none is not one of HS256, HS384, HS512, RS256, RS384, RS512, "
                 "PS256, PS384, PS512, ES256, ES384, ES512, EdDSA");
    keys_refused("[{\"alg\":\"HS256\"}]",
                 "auth.keys[0]: expected exactly one of secret_env, public_key_file, jwks_file");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":\"S32\",\"public_key_file\":\"rs.pem\"}]",
                 "auth.keys[0]: expected exactly one of secret_env, public_key_file, jwks_file");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":7}]",
                 "auth.keys[0].secret_env: expected a non-empty string, got number");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":\"UNSET\"}]",
                 "auth.keys[0].secret_env: UNSET is not set");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":\"EMPTY\"}]",
                 "auth.keys[0].secret_env: EMPTY is not set");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":\"SHORT\"}]",
                 "auth.keys[0].secret_env: the secret is 9 bytes, HS256 needs at least 32");
    keys_refused("[{\"alg\":\"HS512\",\"secret_env\":\"S32\"}]",
                 "auth.keys[0].secret_env: the secret is 32 bytes, HS512 needs at least 64");
    keys_refused("[{\"alg\":\"HS256\",\"secret_env\":\"S32\"},"
                 "{\"alg\":\"RS256\",\"public_key_file\":\"nope.pem\"}]",
                 "auth.keys[1].public_key_file: cannot read nope.pem: No such file or directory");
    keys_refused("[{\"alg\":\"ES384\",\"public_key_file\":\"private.pem\"}]",
                 "auth.keys[0].public_key_file: private.pem holds a private key; give its public "
                 "key (openssl pkey -pubout)");
    keys_refused("[{\"alg\":\"ES384\",\"public_key_file\":\"junk.pem\"}]",
                 "auth.keys[0].public_key_file: junk.pem holds no PEM public key (BEGIN PUBLIC "
                 "KEY)");
    keys_refused("[{\"alg\":\"ES256\",\"public_key_file\":\"p384.pem\"}]",
                 "auth.keys[0].public_key_file: an EC key on secp384r1 does not fit ES256");
    keys_refused("[{\"alg\":\"RS256\",\"public_key_file\":\"p384.pem\"}]",
                 "auth.keys[0].public_key_file: an EC key on secp384r1 does not fit RS256");
    keys_refused("[{\"alg\":\"EdDSA\",\"public_key_file\":\"rs.pem\"}]",
                 "auth.keys[0].public_key_file: a 2048-bit RSA key does not fit EdDSA");
    keys_refused("[{\"alg\":\"RS256\",\"public_key_file\":\"small.pem\"}]",
                 "auth.keys[0].public_key_file: a 1024-bit RSA key is too short for RS256 (at "
                 "least 2048 bits)");
    keys_refused("[{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\",\"kid\":5}]",
                 "auth.keys[0].kid: expected a string, got number");
    keys_refused("[{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\",\"kid\":\"\"}]",
                 "auth.keys[0].kid: expected a string of 1 to 256 bytes");
    /* A file larger than the bound is not read. */
    char *big = malloc(TP__JWT_MAX_PEM_BYTES + 2);
    memset(big, 'x', TP__JWT_MAX_PEM_BYTES + 1);
    big[TP__JWT_MAX_PEM_BYTES + 1] = '\0';
    write_text("big.pem", big);
    free(big);
    keys_refused("[{\"alg\":\"RS256\",\"public_key_file\":\"big.pem\"}]",
                 "auth.keys[0].public_key_file: big.pem is larger than 65536 bytes");
    /* At most TP__JWT_MAX_KEYS keys. */
    char many[8192] = "[";
    for (int i = 0; i <= TP__JWT_MAX_KEYS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 "%s{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\",\"kid\":\"k%d\"}",
                 i ? "," : "", i);
    strcat(many, "]");
    keys_refused(many, "auth.keys[64]: more than 64 keys in all");
    many[strlen(many) -
         strlen(",{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\",\"kid\":\"k64\"}]")] = '\0';
    strcat(many, "]");
    tp__jwt_keys *keys = keys_from(many);
    cr_assert_eq(tp__jwt_keys_count(keys), TP__JWT_MAX_KEYS);
    tp__jwt_keys_free(keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(small);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, files_are_found_from_the_base_dir)
{
    EVP_PKEY *p = keygen("EC", "P-256");
    write_pub("es.pem", p);
    char dir[4096];
    cr_assert_not_null(getcwd(dir, sizeof dir));
    cr_assert_eq(chdir("/"), 0);
    json_t *entries = json_loads("[{\"alg\":\"ES256\",\"public_key_file\":\"es.pem\"}]", 0, NULL);
    tp__jwt_keys_config cfg = {.base_dir = dir, .field = "site.auth.keys"};
    tp_error err = {0};
    tp__jwt_keys *keys = tp__jwt_keys_new(entries, &cfg, &err);
    cr_assert_not_null(keys, "%s", err.message);
    char *t = sign_token("ES256", p, NULL, NULL, CLAIMS);
    expect(keys, t, TP__JWT_OK);
    tp__jwt_keys_free(keys);
    cfg.base_dir = NULL; /* the working directory, / now */
    cr_assert_null(tp__jwt_keys_new(entries, &cfg, &err));
    cr_assert_str_eq(err.message,
                     "site.auth.keys[0].public_key_file: cannot read es.pem: No such file or "
                     "directory");
    cr_assert_eq(chdir(dir), 0);
    json_decref(entries);
    free(t);
    EVP_PKEY_free(p);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, the_environment_is_getenv_by_default)
{
    cr_assert_eq(setenv("TP_TEST_JWT_SECRET", SECRET32, 1), 0);
    json_t *entries =
        json_loads("[{\"alg\":\"HS256\",\"secret_env\":\"TP_TEST_JWT_SECRET\"}]", 0, NULL);
    tp_error err = {0};
    tp__jwt_keys *keys = tp__jwt_keys_new(entries, NULL, &err);
    cr_assert_not_null(keys, "%s", err.message);
    char *t = sign_token("HS256", NULL, SECRET32, NULL, CLAIMS);
    expect(keys, t, TP__JWT_OK);
    free(t);
    tp__jwt_keys_free(keys);
    json_decref(entries);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, rules_from_the_auth_object)
{
    struct {
        const char *json;
        const char *want;
    } bad[] = {
        {"{\"leeway_s\":-1}", "auth.leeway_s: expected an integer from 0 to 3600"},
        {"{\"leeway_s\":3601}", "auth.leeway_s: expected an integer from 0 to 3600"},
        {"{\"leeway_s\":\"30\"}", "auth.leeway_s: expected an integer from 0 to 3600"},
        {"{\"audience\":\"\"}", "auth.audience: expected a non-empty string"},
        {"{\"issuer\":7}", "auth.issuer: expected a non-empty string"},
        {"{\"tenant_claim\":null}", "auth.tenant_claim: expected a non-empty string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *v = json_loads(bad[i].json, 0, NULL);
        tp__jwt_rules r;
        tp_error err = {0};
        cr_assert_eq(tp__jwt_rules_load(&r, v, NULL, &err), TP_EINVALID, "%s", bad[i].json);
        cr_assert_str_eq(err.message, bad[i].want);
        json_decref(v);
    }
    json_t *v = json_loads("{\"mode\":\"jwt\",\"keys\":[],\"leeway_s\":3600,\"tenant_claim\":"
                           "\"tid\",\"audience\":\"a\",\"issuer\":\"i\"}",
                           0, NULL);
    tp__jwt_rules r;
    cr_assert_eq(tp__jwt_rules_load(&r, v, NULL, NULL), TP_OK);
    cr_assert_str_eq(r.tenant_claim, "tid");
    cr_assert_str_eq(r.audience, "a");
    cr_assert_str_eq(r.issuer, "i");
    cr_assert_eq(r.leeway_s, 3600);
    tp__jwt_rules_clear(&r);
    json_decref(v);
    v = json_loads("{\"mode\":\"jwt\"}", 0, NULL);
    cr_assert_eq(tp__jwt_rules_load(&r, v, NULL, NULL), TP_OK);
    cr_assert_str_eq(r.tenant_claim, "sub");
    cr_assert_null(r.audience);
    cr_assert_null(r.issuer);
    cr_assert_eq(r.leeway_s, 0);
    tp__jwt_rules_clear(&r);
    json_decref(v);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- Claims ---- */

/* An HS256 token over claims (a JSON text). */
static char *
hs(const char *claims)
{
    return sign_token("HS256", NULL, SECRET32, NULL, claims);
}

static tp__jwt_keys *
hs_keys(void)
{
    return keys_from("[{\"alg\":\"HS256\",\"secret_env\":\"S32\"}]");
}

Test(jwt, exp_and_nbf_at_the_edges_of_the_leeway)
{
    tp__jwt_keys *keys = hs_keys();
    tp__jwt_rules r = {.tenant_claim = "sub", .leeway_s = 30};
    char *t = hs("{\"sub\":\"alice\",\"exp\":1000,\"nbf\":500}");
    tp__jwt_claims c = expect_at(keys, &r, t, 1029, TP__JWT_OK);
    cr_assert_eq(c.exp, 1000);
    cr_assert_eq(c.expires_at, 1030);
    expect_at(keys, &r, t, 1030, TP__JWT_EXPIRED);
    expect_message(keys, &r, t, 1030, "token expired: exp: expired 30 s ago (leeway 30 s)");
    expect_at(keys, &r, t, 470, TP__JWT_OK);
    expect_at(keys, &r, t, 469, TP__JWT_NOT_YET_VALID);
    expect_message(keys, &r, t, 469, "token not_yet_valid: nbf: valid in 31 s (leeway 30 s)");
    tp__jwt_rules strict = {.tenant_claim = "sub"};
    expect_at(keys, &strict, t, 999, TP__JWT_OK);
    expect_at(keys, &strict, t, 1000, TP__JWT_EXPIRED);
    expect_at(keys, &strict, t, 500, TP__JWT_OK);
    expect_at(keys, &strict, t, 499, TP__JWT_NOT_YET_VALID);
    free(t);
    /* A fractional NumericDate: valid before 1000.5, so at 1000, not 1001. */
    t = hs("{\"sub\":\"alice\",\"exp\":1000.5,\"nbf\":499.5}");
    c = expect_at(keys, &strict, t, 1000, TP__JWT_OK);
    cr_assert_eq(c.exp, 1001);
    expect_at(keys, &strict, t, 1001, TP__JWT_EXPIRED);
    expect_at(keys, &strict, t, 499, TP__JWT_NOT_YET_VALID);
    free(t);
    /* exp is required, and must be a NumericDate. */
    const char *bad[] = {
        "{\"sub\":\"alice\"}",
        "{\"sub\":\"alice\",\"exp\":\"1000\"}",
        "{\"sub\":\"alice\",\"exp\":null}",
        "{\"sub\":\"alice\",\"exp\":-1}",
        "{\"sub\":\"alice\",\"exp\":1e300}",
        "{\"sub\":\"alice\",\"exp\":253402300800}",
        "{\"sub\":\"alice\",\"exp\":1000,\"nbf\":true}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = hs(bad[i]);
        expect_at(keys, &strict, t, 10, TP__JWT_MALFORMED);
        free(t);
    }
    t = hs("{\"sub\":\"alice\"}");
    expect_message(keys, &strict, t, 10, "token malformed: exp: missing (a token must expire)");
    free(t);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, audience_and_issuer)
{
    tp__jwt_keys *keys = hs_keys();
    tp__jwt_rules r = {.tenant_claim = "sub", .audience = "my-app", .issuer = "https://id.example"};
    struct {
        const char *claims;
        tp__jwt_result want;
    } cases[] = {
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":\"my-app\",\"iss\":\"https://id.example\"}",
         TP__JWT_OK},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":[\"x\",\"my-app\"],\"iss\":\"https://id.example\"}",
         TP__JWT_OK},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":\"my-ap\",\"iss\":\"https://id.example\"}",
         TP__JWT_WRONG_AUDIENCE},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":[\"x\",\"y\"],\"iss\":\"https://id.example\"}",
         TP__JWT_WRONG_AUDIENCE},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":[],\"iss\":\"https://id.example\"}",
         TP__JWT_WRONG_AUDIENCE},
        {"{\"sub\":\"a\",\"exp\":2e9,\"iss\":\"https://id.example\"}", TP__JWT_WRONG_AUDIENCE},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":[\"my-app\",7],\"iss\":\"https://id.example\"}",
         TP__JWT_MALFORMED},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":{\"my-app\":1},\"iss\":\"https://id.example\"}",
         TP__JWT_MALFORMED},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":\"my-app\",\"iss\":\"https://id.example/\"}",
         TP__JWT_WRONG_ISSUER},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":\"my-app\"}", TP__JWT_WRONG_ISSUER},
        {"{\"sub\":\"a\",\"exp\":2e9,\"aud\":\"my-app\",\"iss\":[\"https://id.example\"]}",
         TP__JWT_WRONG_ISSUER},
    };
    tp__jwt_rules unchecked = {.tenant_claim = "sub"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = hs(cases[i].claims);
        expect_at(keys, &r, t, NOW, cases[i].want);
        /* Without audience and issuer in the rules, neither is checked. */
        expect_at(keys, &unchecked, t, NOW, TP__JWT_OK);
        free(t);
    }
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, the_tenant_claim)
{
    tp__jwt_keys *keys = hs_keys();
    tp__jwt_rules r = rules_plain();
    char long_sub[400];
    char name[300];
    memset(name, 'x', TP__JWT_MAX_TENANT);
    name[TP__JWT_MAX_TENANT] = '\0';
    snprintf(long_sub, sizeof long_sub, "{\"sub\":\"%s\",\"exp\":2e9}", name);
    char *t = hs(long_sub);
    tp__jwt_claims c = expect(keys, t, TP__JWT_OK);
    cr_assert_str_eq(c.tenant, name);
    free(t);
    snprintf(long_sub, sizeof long_sub, "{\"sub\":\"%sx\",\"exp\":2e9}", name);
    t = hs(long_sub);
    expect_message(keys, &r, t, NOW, "token no_tenant: sub: expected 1 to 255 bytes");
    free(t);
    const char *bad[] = {
        "{\"exp\":2e9}",
        "{\"sub\":42,\"exp\":2e9}",
        "{\"sub\":null,\"exp\":2e9}",
        "{\"sub\":[\"alice\"],\"exp\":2e9}",
        "{\"sub\":\"\",\"exp\":2e9}",
        "{\"sub\":\"al\\nice\",\"exp\":2e9}",
        "{\"sub\":\"al\\u007fice\",\"exp\":2e9}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = hs(bad[i]);
        expect(keys, t, TP__JWT_NO_TENANT);
        free(t);
    }
    /* "\u0000" inside a string: jansson refuses it, so the claim set is malformed. */
    t = hs("{\"sub\":\"al\\u0000ice\",\"exp\":2e9}");
    expect(keys, t, TP__JWT_MALFORMED);
    free(t);
    /* Another claim as the tenant; UTF-8 is kept as it is. */
    tp__jwt_rules tid = {.tenant_claim = "tid"};
    t = hs("{\"sub\":\"alice\",\"tid\":\"\xc3\xa9quipe\",\"exp\":2e9}");
    c = expect_at(keys, &tid, t, NOW, TP__JWT_OK);
    cr_assert_str_eq(c.tenant, "\xc3\xa9quipe");
    free(t);
    t = hs("{\"sub\":\"alice\",\"exp\":2e9}");
    expect_message(keys, &tid, t, NOW, "token no_tenant: tid: missing");
    free(t);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- Form ---- */

Test(jwt, malformed_tokens)
{
    tp__jwt_keys *keys = hs_keys();
    tp__jwt_rules r = rules_plain();
    char *good = hs(CLAIMS);
    expect(keys, good, TP__JWT_OK);
    char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
    size_t n = strlen(good);
    char t[2048];
    /* Segment counts. */
    const char *shapes[] = {"", ".", "..", "...", "a.b", "a.b.c.d", "a.b.c.d.e", "abc"};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        expect(keys, shapes[i], TP__JWT_MALFORMED);
    snprintf(t, sizeof t, "%s.", good);
    expect_message(keys, &r, t, NOW,
                   "token malformed: expected three base64url segments separated by '.'");
    snprintf(t, sizeof t, "%s.%s", good, dot2 + 1); /* a fourth segment */
    expect(keys, t, TP__JWT_MALFORMED);
    /* An empty header, an empty claim set. */
    snprintf(t, sizeof t, "%s", dot1);
    expect_message(keys, &r, t, NOW, "token malformed: the header is empty");
    snprintf(t, sizeof t, "%.*s.%s", (int)(dot1 - good), good, dot2);
    expect_message(keys, &r, t, NOW, "token malformed: the claim set is not unpadded base64url");
    /* base64url strictness, in each segment: padding, the standard
     * alphabet's + and /, white space, a bad character, a length of 4k+1. */
    const char *inserts[] = {"=", "==", "+", "/", " ", "\n", "*", "A"};
    size_t cuts[] = {(size_t)(dot1 - good), (size_t)(dot2 - good), n};
    for (size_t i = 0; i < sizeof inserts / sizeof inserts[0]; i++)
        for (size_t j = 0; j < 3; j++) {
            snprintf(t, sizeof t, "%.*s%s%s", (int)cuts[j], good, inserts[i], good + cuts[j]);
            tp_error err = {0};
            tp__jwt_result got = tp__jwt_verify(keys, &r, t, strlen(t), NOW, NULL, &err);
            /* Some inserts still decode (an 'A' completes a group, a
             * padding character ends a 4k+2 segment): what matters is
             * that nothing altered verifies. */
            cr_assert_neq(got, TP__JWT_OK, "accepted %s", t);
            cr_assert(got == TP__JWT_MALFORMED || got == TP__JWT_BAD_SIGNATURE, "%s", err.message);
        }
    /* Non-canonical trailing bits: the HS256 signature is 32 bytes, 43
     * characters, whose last carries 2 unused bits; setting one gives a
     * different text for the same bytes, which is refused. */
    cr_assert_eq(strlen(dot2 + 1), 43);
    snprintf(t, sizeof t, "%s", good);
    char *last = t + strlen(t) - 1;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t v = (size_t)(strchr(alphabet, *last) - alphabet);
    *last = alphabet[v | 1];
    if (v & 1)
        *last = alphabet[v & ~(size_t)1];
    expect_message(keys, &r, t, NOW, "token malformed: the signature is not unpadded base64url");
    /* A NUL inside the token: its length is given, NUL is no base64url. */
    memcpy(t, good, n);
    t[5] = '\0';
    tp_error err = {0};
    cr_assert_eq(tp__jwt_verify(keys, &r, t, n, NOW, NULL, &err), TP__JWT_MALFORMED);
    free(good);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, header_rules)
{
    tp__jwt_keys *keys = hs_keys();
    tp__jwt_rules r = rules_plain();
    struct {
        const char *header;
        tp__jwt_result want;
    } cases[] = {
        {"{\"alg\":\"HS256\"}", TP__JWT_OK},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", TP__JWT_OK},
        {"{\"alg\":\"HS256\",\"typ\":\"jwt\"}", TP__JWT_OK},
        {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", TP__JWT_OK},
        {"{\"alg\":\"HS256\",\"typ\":\"application/at+JWT\"}", TP__JWT_OK},
        {"{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"secevent+jwt\"}", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":1}", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"alg\":\"HS256\"}", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"alg\":\"none\"}", TP__JWT_MALFORMED},
        {"{\"alg\":[\"HS256\"]}", TP__JWT_MALFORMED},
        {"[\"HS256\"]", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\"", TP__JWT_MALFORMED},
        {"{\"alg\":\"HS256\",\"x\":\"\xff\"}", TP__JWT_MALFORMED},
        /* Key-carrying headers are ignored, never used: the signature is
         * checked with the configured key. */
        {"{\"alg\":\"HS256\",\"jku\":\"https://evil.example/jwks\",\"jwk\":{\"kty\":\"oct\","
         "\"k\":\"AAAA\"}}",
         TP__JWT_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = sign_with("HS256", NULL, SECRET32, cases[i].header, CLAIMS);
        expect(keys, t, cases[i].want);
        free(t);
    }
    char *t = sign_with("HS256", NULL, SECRET32, "{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", CLAIMS);
    expect_message(keys, &r, t, NOW,
                   "token malformed: header: crit names extensions not supported");
    free(t);
    t = sign_with("HS256", NULL, SECRET32, "{\"alg\":\"HS256\",\"alg\":\"none\"}", CLAIMS);
    expect_message(keys, &r, t, NOW,
                   "token malformed: the header is not a JSON object without duplicate members");
    free(t);
    /* Duplicate claims: two subs mean whatever a parser picks. */
    t = hs("{\"sub\":\"alice\",\"sub\":\"bob\",\"exp\":2e9}");
    expect_message(keys, &r, t, NOW,
                   "token malformed: the claim set is not a JSON object without duplicate members");
    free(t);
    /* A claim set that is not an object. */
    t = hs("[\"alice\"]");
    expect_message(keys, &r, t, NOW, "token malformed: the claim set is not a JSON object");
    free(t);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* Nested arrays: depth levels around a claim, inside an object. */
static char *
nested_claims(int depth)
{
    size_t n = 64 + 2 * (size_t)depth;
    char *s = malloc(n);
    int at = snprintf(s, n, "{\"sub\":\"alice\",\"exp\":2e9,\"x\":");
    for (int i = 0; i < depth - 1; i++)
        s[at++] = '[';
    for (int i = 0; i < depth - 1; i++)
        s[at++] = ']';
    s[at++] = '}';
    s[at] = '\0';
    return s;
}

Test(jwt, size_and_depth_bounds)
{
    tp__jwt_keys *keys = hs_keys();
    tp__jwt_rules r = rules_plain();
    /* Depth: the claim set itself is level 1. */
    char *c = nested_claims(TP__JWT_MAX_DEPTH);
    char *t = hs(c);
    expect(keys, t, TP__JWT_OK);
    free(t);
    free(c);
    c = nested_claims(TP__JWT_MAX_DEPTH + 1);
    t = hs(c);
    expect_message(keys, &r, t, NOW, "token malformed: the claim set nests deeper than 16 levels");
    free(t);
    free(c);
    /* Far deeper than jansson's own limit, still under the size bound. */
    c = nested_claims(3000);
    t = hs(c);
    expect(keys, t, TP__JWT_MALFORMED);
    free(t);
    free(c);
    /* A deep header, unsigned (the header is read before the signature). */
    char deep[200] = "{\"alg\":\"HS256\",\"x\":";
    for (int i = 0; i < 20; i++)
        strcat(deep, "[");
    for (int i = 0; i < 20; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    t = sign_with("HS256", NULL, SECRET32, deep, CLAIMS);
    expect_message(keys, &r, t, NOW, "token malformed: the header nests deeper than 16 levels");
    free(t);
    /* Size: the longest token accepted is TP__JWT_MAX_TOKEN bytes. Pad a
     * claim until the token is exactly that long, then one step past. */
    char *at_bound = NULL, *past = NULL;
    char claims[TP__JWT_MAX_TOKEN];
    for (size_t pad = 5000; pad < 6500 && (at_bound == NULL || past == NULL); pad++) {
        int len = snprintf(claims, sizeof claims, "{\"sub\":\"alice\",\"exp\":2e9,\"p\":\"");
        memset(claims + len, 'p', pad);
        snprintf(claims + len + pad, sizeof claims - (size_t)len - pad, "\"}");
        char *tok = hs(claims);
        size_t n = strlen(tok);
        if (n == TP__JWT_MAX_TOKEN && at_bound == NULL)
            at_bound = tok;
        else if (n > TP__JWT_MAX_TOKEN && past == NULL)
            past = tok;
        else
            free(tok);
    }
    cr_assert_not_null(at_bound);
    cr_assert_not_null(past);
    expect(keys, at_bound, TP__JWT_OK);
    expect_message(keys, &r, past, NOW, "token malformed: longer than 8192 bytes");
    free(at_bound);
    free(past);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, ecdsa_signatures_of_the_wrong_form)
{
    EVP_PKEY *p256 = keygen("EC", "P-256"), *p384 = keygen("EC", "P-384");
    write_pub("es.pem", p256);
    tp__jwt_keys *keys = keys_from("[{\"alg\":\"ES256\",\"public_key_file\":\"es.pem\"}]");
    tp__jwt_rules r = rules_plain();
    const char *header = "{\"alg\":\"ES256\"}";
    char *h = b64url(header, strlen(header)), *c = b64url(CLAIMS, strlen(CLAIMS));
    size_t n = strlen(h) + strlen(c) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, c);
    unsigned char sig[200];
    size_t len = sign_raw("ES256", p256, NULL, input, sig);
    cr_assert_eq(len, 64);
    char *t = assemble(h, c, sig, 64);
    expect(keys, t, TP__JWT_OK);
    free(t);
    /* One byte short, one byte long. */
    t = assemble(h, c, sig, 63);
    expect_message(keys, &r, t, NOW,
                   "token bad_signature: the signature has the wrong length for ES256");
    free(t);
    sig[64] = 0;
    t = assemble(h, c, sig, 65);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    /* S || R instead of R || S. */
    unsigned char swapped[64];
    memcpy(swapped, sig + 32, 32);
    memcpy(swapped + 32, sig, 32);
    t = assemble(h, c, swapped, 64);
    expect_message(keys, &r, t, NOW,
                   "token bad_signature: the signature does not verify with ES256");
    free(t);
    /* All zeros (r = s = 0 is never a valid signature). */
    unsigned char zeros[64] = {0};
    t = assemble(h, c, zeros, 64);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    /* The DER form OpenSSL makes is not JOSE's. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t der_len = sizeof der;
    cr_assert_eq(EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, p256, NULL), 1);
    cr_assert_eq(EVP_DigestSign(ctx, der, &der_len, (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    t = assemble(h, c, der, der_len);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    /* A P-384 signature (96 bytes) under ES256. */
    len = sign_raw("ES384", p384, NULL, input, sig);
    t = assemble(h, c, sig, len);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    free(input);
    free(h);
    free(c);
    tp__jwt_keys_free(keys);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(jwt, hmac_signatures_of_the_wrong_form)
{
    tp__jwt_keys *keys = hs_keys();
    const char *header = "{\"alg\":\"HS256\"}";
    char *h = b64url(header, strlen(header)), *c = b64url(CLAIMS, strlen(CLAIMS));
    size_t n = strlen(h) + strlen(c) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, c);
    unsigned char sig[64];
    size_t len = sign_raw("HS256", NULL, SECRET32, input, sig);
    /* A truncated MAC (the first 16 bytes are right), and a wrong secret. */
    char *t = assemble(h, c, sig, 16);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    sig[31] ^= 1;
    t = assemble(h, c, sig, len);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    t = sign_token("HS256", NULL, SECRET_OTHER, NULL, CLAIMS);
    expect(keys, t, TP__JWT_BAD_SIGNATURE);
    free(t);
    free(input);
    free(h);
    free(c);
    tp__jwt_keys_free(keys);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- PyJWT's tokens (tests/cases/jwt/) ---- */

static json_t *pyjwt_env;

static const char *
pyjwt_getenv(const char *name, void *user)
{
    (void)user;
    return json_string_value(json_object_get(pyjwt_env, name));
}

Test(jwt, tokens_signed_by_pyjwt)
{
    json_t *cases = tpt_load_json(TP_CASES_DIR "/jwt/cases.json");
    pyjwt_env = json_object_get(cases, "env");
    json_t *auth = json_object_get(cases, "auth");
    tp__jwt_keys_config cfg = {.base_dir = TP_CASES_DIR "/jwt", .getenv = pyjwt_getenv};
    tp_error err = {0};
    tp__jwt_keys *keys = tp__jwt_keys_new(json_object_get(auth, "keys"), &cfg, &err);
    cr_assert_not_null(keys, "%s", err.message);
    tp__jwt_rules rules;
    cr_assert_eq(tp__jwt_rules_load(&rules, auth, NULL, &err), TP_OK, "%s", err.message);
    int64_t now = json_integer_value(json_object_get(cases, "now"));
    size_t i, ok = 0;
    json_t *c;
    json_array_foreach(json_object_get(cases, "cases"), i, c)
    {
        const char *token = json_string_value(json_object_get(c, "token"));
        const char *want = json_string_value(json_object_get(c, "expect"));
        tp__jwt_claims claims;
        tp__jwt_result got = tp__jwt_verify(keys, &rules, token, strlen(token), now, &claims, &err);
        cr_assert_str_eq(tp__jwt_result_name(got), want, "%s: %s",
                         json_string_value(json_object_get(c, "name")), err.message);
        if (got == TP__JWT_OK) {
            cr_assert_str_eq(claims.tenant, json_string_value(json_object_get(c, "tenant")));
            ok++;
        } else
            no_token_in(err.message, token);
    }
    cr_assert_geq(i, 25);
    cr_assert_geq(ok, 12);
    tp__jwt_rules_clear(&rules);
    tp__jwt_keys_free(keys);
    json_decref(cases);
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- Threads ---- */

typedef struct race {
    const tp__jwt_keys *keys;
    char *tokens[4];
    int ok; /* verifications that gave TP__JWT_OK and the right tenant */
} race;

static void *
race_run(void *arg)
{
    race *r = arg;
    tp__jwt_rules rules = rules_plain();
    for (int i = 0; i < 50; i++)
        for (int t = 0; t < 4; t++) {
            tp__jwt_claims c;
            tp_error err;
            if (tp__jwt_verify(r->keys, &rules, r->tokens[t], strlen(r->tokens[t]), NOW, &c,
                               &err) == TP__JWT_OK &&
                strcmp(c.tenant, "alice") == 0)
                r->ok++;
        }
    return NULL;
}

/* jwt.h says a key set may be shared by threads: four verify the same
 * tokens at once, through the contexts every key prepared at load. */
Test(jwt, threads_share_a_key_set)
{
    tp_set_allocator(NULL); /* the counting allocator is not thread-safe */
    EVP_PKEY *rsa = keygen("RSA", NULL), *p = keygen("EC", "P-256"), *ed = keygen("ED25519", NULL);
    write_pub("rs.pem", rsa);
    write_pub("es.pem", p);
    write_pub("ed.pem", ed);
    tp__jwt_keys *keys = keys_from("[{\"alg\":\"HS256\",\"secret_env\":\"S32\"},"
                                   "{\"alg\":\"PS256\",\"public_key_file\":\"rs.pem\"},"
                                   "{\"alg\":\"ES256\",\"public_key_file\":\"es.pem\"},"
                                   "{\"alg\":\"EdDSA\",\"public_key_file\":\"ed.pem\"}]");
    race r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i].keys = keys;
        r[i].ok = 0;
        r[i].tokens[0] = sign_token("HS256", NULL, SECRET32, NULL, CLAIMS);
        r[i].tokens[1] = sign_token("PS256", rsa, NULL, NULL, CLAIMS);
        r[i].tokens[2] = sign_token("ES256", p, NULL, NULL, CLAIMS);
        r[i].tokens[3] = sign_token("EdDSA", ed, NULL, NULL, CLAIMS);
    }
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, race_run, &r[i]), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(r[i].ok, 200, "thread %d: %d of 200 verified", i, r[i].ok);
        for (int t = 0; t < 4; t++)
            free(r[i].tokens[t]);
    }
    tp__jwt_keys_free(keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p);
    EVP_PKEY_free(ed);
}

/* ---- Out of memory ---- */

Test(jwt, every_failed_allocation_is_clean)
{
    EVP_PKEY *p = keygen("EC", "P-256");
    char *jp = jwk_p256(p, "p", NULL);
    write_jwks("jwks.json", jp, NULL);
    json_t *entries = json_loads("[{\"alg\":\"HS256\",\"secret_env\":\"S32\"},"
                                 "{\"jwks_file\":\"jwks.json\"}]",
                                 0, NULL);
    char *t = sign_token("ES256", p, NULL, "p", CLAIMS);
    tp__jwt_keys_config cfg = {.getenv = test_env};
    json_t *auth = json_loads("{\"audience\":\"a\",\"issuer\":\"i\"}", 0, NULL);
    long live = tpt_alloc.live;
    int done = 0;
    for (long n = 1; !done && n < 10000; n++) {
        tpt_fail_after(n);
        tp_error err = {0};
        tp__jwt_keys *keys = tp__jwt_keys_new(entries, &cfg, &err);
        tp__jwt_rules rules;
        int rc = tp__jwt_rules_load(&rules, auth, NULL, &err);
        if (keys != NULL && rc == TP_OK) {
            tp__jwt_rules plain = {.tenant_claim = "sub"};
            tp__jwt_result got = tp__jwt_verify(keys, &plain, t, strlen(t), NOW, NULL, &err);
            if (!tpt_alloc.tripped) {
                cr_assert_eq(got, TP__JWT_OK, "%s", err.message);
                done = 1;
            } else
                /* jansson does not always say that a parse failed for
                 * memory (a string's buffer, for one): then the segment
                 * reads as malformed. Never accepted wrongly, never a leak. */
                cr_assert(got == TP__JWT_OK || got == TP__JWT_INTERNAL || got == TP__JWT_MALFORMED,
                          "%ld: %s: %s", n, tp__jwt_result_name(got), err.message);
        } else {
            cr_assert(tpt_alloc.tripped);
            cr_assert(err.code == TP_ENOMEM || err.code == TP_EINVALID, "%ld: %s", n, err.message);
        }
        if (rc == TP_OK)
            tp__jwt_rules_clear(&rules);
        tp__jwt_keys_free(keys);
        tpt_fail_disarm();
        cr_assert_eq(tpt_alloc.live, live, "leak after failing allocation %ld", n);
    }
    cr_assert(done);
    free(t);
    free(jp);
    json_decref(auth);
    json_decref(entries);
    EVP_PKEY_free(p);
    cr_assert_eq(tpt_alloc.live, 0);
}
