/*
 * The key set: loading HMAC secrets, PEM public keys and JWKS files into
 * keys that are each bound to one algorithm (RFC 8725 section 3.1), so that
 * a token's header can only pick among configured (alg, kid) pairs, never a
 * key type. See docs/internals/auth.md, "Keys".
 */
#include "auth/keys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "util/alloc.h"
#include "util/error.h"

/* ---- Algorithms ---- */

static const tp__jwt_alg algs[] = {
    {"HS256", TP__JWT_HMAC, "SHA256", 32, NULL, NULL},
    {"HS384", TP__JWT_HMAC, "SHA384", 48, NULL, NULL},
    {"HS512", TP__JWT_HMAC, "SHA512", 64, NULL, NULL},
    {"RS256", TP__JWT_RSA, "SHA256", 0, NULL, NULL},
    {"RS384", TP__JWT_RSA, "SHA384", 0, NULL, NULL},
    {"RS512", TP__JWT_RSA, "SHA512", 0, NULL, NULL},
    {"PS256", TP__JWT_PSS, "SHA256", 0, NULL, NULL},
    {"PS384", TP__JWT_PSS, "SHA384", 0, NULL, NULL},
    {"PS512", TP__JWT_PSS, "SHA512", 0, NULL, NULL},
    {"ES256", TP__JWT_EC, "SHA256", 32, "prime256v1", "P-256"},
    {"ES384", TP__JWT_EC, "SHA384", 48, "secp384r1", "P-384"},
    {"ES512", TP__JWT_EC, "SHA512", 66, "secp521r1", "P-521"},
    {"EdDSA", TP__JWT_EDDSA, NULL, 0, NULL, NULL},
};

const tp__jwt_alg *
tp__jwt_alg_find(const char *name)
{
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (strcmp(algs[i].name, name) == 0)
            return &algs[i];
    return NULL;
}

/* RSA keys shorter than this are refused (RFC 7518 3.3 and 3.5). */
#define MIN_RSA_BITS 2048
/* The longest kid kept. */
#define MAX_KID 256

/* ---- base64url ---- */

static int
b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int
tp__b64url_decode(const char *s, size_t n, unsigned char *out, size_t *out_len)
{
    if (n % 4 == 1 || n > (size_t)INT32_MAX / 2)
        return -1;
    /* The strict part is ours: the alphabet, and a last partial group whose
     * left-over bits are zero. The decoding itself is OpenSSL's (standard
     * base64), on a copy translated to the standard alphabet and padded. */
    for (size_t i = 0; i < n; i++)
        if (b64url_value((unsigned char)s[i]) < 0)
            return -1;
    size_t rest = n % 4;
    if (rest == 2 && (b64url_value((unsigned char)s[n - 1]) & 0x0F) != 0)
        return -1;
    if (rest == 3 && (b64url_value((unsigned char)s[n - 1]) & 0x03) != 0)
        return -1;
    /* In chunks through a buffer on the stack: no allocation, so that a
     * failure here always means the text, never the memory. */
    size_t done = 0, written = 0;
    while (done < n) {
        unsigned char chunk[256 + 4];
        size_t take = n - done > 256 ? 256 : n - done, padded = take;
        for (size_t i = 0; i < take; i++) {
            char c = s[done + i];
            chunk[i] = c == '-' ? '+' : c == '_' ? '/' : (unsigned char)c;
        }
        while (padded % 4 != 0)
            chunk[padded++] = '=';
        int got = EVP_DecodeBlock(out + written, chunk, (int)padded);
        /* EVP_DecodeBlock counts 3 bytes for every group, padded ones too. */
        if (got < 0 || (size_t)got != padded / 4 * 3)
            return -1;
        written += (size_t)got - (padded - take);
        done += take;
    }
    *out_len = written;
    return 0;
}

/* ---- Messages ---- */

/* Where a message is about: "auth.keys[1].public_key_file" and the like. */
typedef struct where {
    char at[160];
    tp_error *err;
} where;

static int fail(where *w, int code, const char *fmt, ...) TP__PRINTF(3, 4);

static int
fail(where *w, int code, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tp__error_set(w->err, code, "%s: %s", w->at, msg);
}

/* Appends ".name" to where a message is about. */
static void
at_push(where *w, const char *name)
{
    size_t len = strlen(w->at);
    snprintf(w->at + len, sizeof w->at - len, ".%s", name);
}

static const char *
type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

/* ---- Keys ---- */

static void
key_clear(tp__jwt_key *k)
{
    tp__free(k->kid);
    EVP_MAC_CTX_free(k->mac);
    EVP_PKEY_free(k->pkey);
    EVP_MD_free(k->md);
    EVP_MD_CTX_free(k->init);
    memset(k, 0, sizeof *k);
}

void
tp__jwt_keys_free(tp__jwt_keys *keys)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < keys->n; i++)
        key_clear(&keys->keys[i]);
    tp__free(keys->keys);
    tp__free(keys);
}

size_t
tp__jwt_keys_count(const tp__jwt_keys *keys)
{
    return keys ? keys->n : 0;
}

size_t
tp__jwt_keys_skipped(const tp__jwt_keys *keys)
{
    return keys ? keys->skipped : 0;
}

/* Describes a public key for a message: "an EC key on secp384r1". */
static void
describe(EVP_PKEY *pkey, char *buf, size_t n)
{
    char group[64] = "";
    if (EVP_PKEY_is_a(pkey, "EC")) {
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            NULL))
            snprintf(group, sizeof group, "an unknown curve");
        snprintf(buf, n, "an EC key on %s", group);
    } else if (EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_is_a(pkey, "RSA-PSS"))
        snprintf(buf, n, "a %d-bit RSA key", EVP_PKEY_get_bits(pkey));
    else if (EVP_PKEY_is_a(pkey, "ED25519"))
        snprintf(buf, n, "an Ed25519 key");
    else if (EVP_PKEY_is_a(pkey, "ED448"))
        snprintf(buf, n, "an Ed448 key");
    else
        snprintf(buf, n, "a %s key", EVP_PKEY_get0_type_name(pkey));
}

/* Binds a public key to alg when it is the kind alg takes; takes pkey over
 * (freed on failure too). */
static int
key_init_pkey(tp__jwt_key *k, const tp__jwt_alg *alg, EVP_PKEY *pkey, where *w)
{
    char what[96];
    describe(pkey, what, sizeof what);
    int fits = 0;
    size_t sig_len = 0;
    switch (alg->family) {
    case TP__JWT_RSA:
    case TP__JWT_PSS:
        fits = EVP_PKEY_is_a(pkey, "RSA") ||
               (alg->family == TP__JWT_PSS && EVP_PKEY_is_a(pkey, "RSA-PSS"));
        if (fits && EVP_PKEY_get_bits(pkey) < MIN_RSA_BITS) {
            EVP_PKEY_free(pkey);
            return fail(w, TP_EINVALID, "%s is too short for %s (at least %d bits)", what,
                        alg->name, MIN_RSA_BITS);
        }
        sig_len = (size_t)EVP_PKEY_get_size(pkey);
        break;
    case TP__JWT_EC: {
        char group[64];
        fits = EVP_PKEY_is_a(pkey, "EC") &&
               EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                              NULL) &&
               strcmp(group, alg->group) == 0;
        sig_len = 2 * alg->size;
        break;
    }
    case TP__JWT_EDDSA:
        fits = EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448");
        sig_len = EVP_PKEY_is_a(pkey, "ED448") ? 114 : 64;
        break;
    case TP__JWT_HMAC:
        EVP_PKEY_free(pkey);
        return fail(w, TP_EINVALID, "%s is an HMAC algorithm, which takes a secret, not %s",
                    alg->name, what);
    }
    if (!fits) {
        EVP_PKEY_free(pkey);
        return fail(w, TP_EINVALID, "%s does not fit %s", what, alg->name);
    }
    if (alg->digest != NULL) {
        k->md = EVP_MD_fetch(NULL, alg->digest, NULL);
        if (k->md == NULL) {
            EVP_PKEY_free(pkey);
            ERR_clear_error();
            return fail(w, TP_EINTERNAL, "OpenSSL has no %s", alg->digest);
        }
    }
    k->alg = alg;
    k->pkey = pkey;
    k->sig_len = sig_len;
    /* Setting a context up costs OpenSSL 3 fetches and allocations worth
     * more than the verification of an HMAC: done once here, copied per
     * token (jwt.c). */
    k->init = EVP_MD_CTX_new();
    if (k->init == NULL || !tp__jwt_verify_init(k, k->init))
        return fail(w, TP_EINTERNAL, "OpenSSL cannot set up %s with %s", alg->name, what);
    return TP_OK;
}

int
tp__jwt_verify_init(const tp__jwt_key *k, EVP_MD_CTX *ctx)
{
    EVP_PKEY_CTX *pctx = NULL;
    int ok = EVP_DigestVerifyInit(ctx, &pctx, k->md, NULL, k->pkey) > 0;
    /* RSA_PSS_SALTLEN_DIGEST accepts exactly a salt of the hash's size. */
    if (ok && k->alg->family == TP__JWT_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, k->md) > 0;
    else if (ok && k->alg->family == TP__JWT_RSA)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    if (!ok)
        ERR_clear_error();
    return ok;
}

/* Binds an HMAC secret to alg: a copy lives only inside OpenSSL's MAC
 * context, which every verification duplicates. */
static int
key_init_secret(tp__jwt_key *k, const tp__jwt_alg *alg, const unsigned char *secret, size_t len,
                where *w)
{
    if (alg->family != TP__JWT_HMAC)
        return fail(w, TP_EINVALID, "%s takes a public key, not a secret", alg->name);
    /* RFC 7518 3.2: a key of the same size as the hash output or larger. */
    if (len < alg->size)
        return fail(w, TP_EINVALID, "the secret is %zu bytes, %s needs at least %zu", len,
                    alg->name, alg->size);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)alg->digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (k->mac == NULL || !EVP_MAC_init(k->mac, secret, len, params)) {
        ERR_clear_error();
        return fail(w, TP_EINTERNAL, "OpenSSL cannot set up HMAC with %s", alg->digest);
    }
    k->alg = alg;
    k->sig_len = alg->size;
    return TP_OK;
}

/* The next free key of the set, or an error when it is full. */
static tp__jwt_key *
key_add(tp__jwt_keys *keys, where *w)
{
    if (keys->n == TP__JWT_MAX_KEYS) {
        fail(w, TP_EINVALID, "more than %d keys in all", TP__JWT_MAX_KEYS);
        return NULL;
    }
    tp__jwt_key *k = &keys->keys[keys->n];
    memset(k, 0, sizeof *k);
    return k;
}

static int
set_kid(tp__jwt_key *k, const json_t *kid, where *w, const char *at)
{
    if (kid == NULL)
        return TP_OK;
    /* at: the JWK's place in its file; "" for a config entry, whose w->at
     * then already ends with ".kid". */
    const char *name = at[0] ? "kid: " : "";
    if (!json_is_string(kid))
        return fail(w, TP_EINVALID, "%s%sexpected a string, got %s", at, name, type_name(kid));
    size_t len = json_string_length(kid);
    if (len == 0 || len > MAX_KID || strlen(json_string_value(kid)) != len)
        return fail(w, TP_EINVALID, "%s%sexpected a string of 1 to %d bytes", at, name, MAX_KID);
    k->kid = tp__strdup(json_string_value(kid));
    return k->kid ? TP_OK : tp__error_set(w->err, TP_ENOMEM, "out of memory");
}

/* ---- Files ---- */

/* Reads a whole file of at most max bytes (NUL-terminated). */
static char *
read_file(const char *path, size_t max, size_t *len, where *w, const char *shown)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail(w, TP_EINVALID, "cannot read %s: %s", shown, strerror(errno));
        return NULL;
    }
    char *buf = tp__malloc(max + 2);
    if (buf == NULL) {
        fclose(f);
        tp__error_set(w->err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        tp__free(buf);
        fail(w, TP_EINVALID, "cannot read %s", shown);
        return NULL;
    }
    if (n > max) {
        tp__free(buf);
        fail(w, TP_EINVALID, "%s is larger than %zu bytes", shown, max);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The path of a file named in the config: relative ones from base_dir. */
static char *
resolve(const char *base_dir, const char *path)
{
    if (base_dir == NULL || base_dir[0] == '\0' || path[0] == '/')
        return tp__strdup(path);
    size_t a = strlen(base_dir), b = strlen(path);
    char *full = tp__malloc(a + 1 + b + 1);
    if (full != NULL) {
        memcpy(full, base_dir, a);
        full[a] = '/';
        memcpy(full + a + 1, path, b + 1);
    }
    return full;
}

/* Loads the SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY", what
 * `openssl pkey -pubout` writes) of a file. */
static EVP_PKEY *
load_pem(const char *path, where *w, const char *shown)
{
    size_t len;
    char *text = read_file(path, TP__JWT_MAX_PEM_BYTES, &len, w, shown);
    if (text == NULL)
        return NULL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (bio != NULL) {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    if (pkey == NULL) {
        /* A verifier needs only public keys: a private key here is a
         * mistake worth naming, and it is not read. */
        if (strstr(text, "PRIVATE KEY-----") != NULL)
            fail(w, TP_EINVALID,
                 "%s holds a private key; give its public key (openssl pkey -pubout)", shown);
        else
            fail(w, TP_EINVALID, "%s holds no PEM public key (BEGIN PUBLIC KEY)", shown);
    }
    OPENSSL_cleanse(text, len);
    tp__free(text);
    return pkey;
}

/* ---- JWKS (RFC 7517, key parameters from RFC 7518 section 6 and RFC 8037) ---- */

/* Decodes a base64url member of a JWK; *out is new (tp__free). */
static int
jwk_bytes(const json_t *jwk, const char *name, unsigned char **out, size_t *len, where *w,
          const char *at)
{
    const json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return fail(w, TP_EINVALID, "%s%s: expected a base64url string, got %s", at, name,
                    v ? type_name(v) : "nothing");
    size_t n = json_string_length(v);
    *out = tp__malloc(n * 3 / 4 + 3);
    if (*out == NULL)
        return tp__error_set(w->err, TP_ENOMEM, "out of memory");
    if (n == 0 || tp__b64url_decode(json_string_value(v), n, *out, len) != 0) {
        tp__free(*out);
        *out = NULL;
        return fail(w, TP_EINVALID, "%s%s: not base64url (RFC 7515 section 2)", at, name);
    }
    return TP_OK;
}

/* Builds a public key from OSSL_PARAMs (RSA's n and e, an EC point). */
static EVP_PKEY *
from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = bld ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    EVP_PKEY *pkey = NULL;
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    /* The point must be on the curve, n and e sane: check what came in. */
    if (pkey != NULL) {
        EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (check == NULL || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    OSSL_PARAM_free(params);
    ERR_clear_error();
    return pkey;
}

static EVP_PKEY *
jwk_rsa(const json_t *jwk, where *w, const char *at)
{
    unsigned char *n = NULL, *e = NULL;
    size_t n_len, e_len;
    if (jwk_bytes(jwk, "n", &n, &n_len, w, at) != TP_OK)
        return NULL;
    if (jwk_bytes(jwk, "e", &e, &e_len, w, at) != TP_OK) {
        tp__free(n);
        return NULL;
    }
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
        pkey = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    tp__free(n);
    tp__free(e);
    if (pkey == NULL)
        fail(w, TP_EINVALID, "%sn, e: not an RSA public key", at);
    return pkey;
}

static EVP_PKEY *
jwk_ec(const json_t *jwk, const tp__jwt_alg *alg, where *w, const char *at)
{
    unsigned char *x = NULL, *y = NULL;
    size_t x_len, y_len;
    if (jwk_bytes(jwk, "x", &x, &x_len, w, at) != TP_OK)
        return NULL;
    if (jwk_bytes(jwk, "y", &y, &y_len, w, at) != TP_OK) {
        tp__free(x);
        return NULL;
    }
    EVP_PKEY *pkey = NULL;
    /* RFC 7518 6.2.1.2: x and y are exactly the curve's size. */
    if (x_len != alg->size || y_len != alg->size) {
        fail(w, TP_EINVALID, "%sx, y: expected %zu bytes each for %s", at, alg->size, alg->crv);
    } else {
        unsigned char point[1 + 2 * 66];
        point[0] = 0x04; /* uncompressed (SEC 1 2.3.3) */
        memcpy(point + 1, x, x_len);
        memcpy(point + 1 + x_len, y, y_len);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, alg->group, 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                             1 + x_len + y_len))
            pkey = from_params("EC", bld);
        OSSL_PARAM_BLD_free(bld);
        if (pkey == NULL)
            fail(w, TP_EINVALID, "%sx, y: not a point of %s", at, alg->crv);
    }
    tp__free(x);
    tp__free(y);
    return pkey;
}

static EVP_PKEY *
jwk_okp(const json_t *jwk, const char *crv, where *w, const char *at)
{
    unsigned char *x = NULL;
    size_t x_len;
    if (jwk_bytes(jwk, "x", &x, &x_len, w, at) != TP_OK)
        return NULL;
    int ed448 = strcmp(crv, "Ed448") == 0;
    EVP_PKEY *pkey = NULL;
    if (x_len == (ed448 ? 57u : 32u))
        pkey = EVP_PKEY_new_raw_public_key_ex(NULL, ed448 ? "ED448" : "ED25519", NULL, x, x_len);
    ERR_clear_error();
    tp__free(x);
    if (pkey == NULL)
        fail(w, TP_EINVALID, "%sx: not an %s public key", at, crv);
    return pkey;
}

/* Whether a JWK is for signatures: "use" absent or "sig", "key_ops" absent
 * or holding "verify" (RFC 7517 4.2, 4.3). */
static int
jwk_for_signing(const json_t *jwk)
{
    const json_t *use = json_object_get(jwk, "use");
    if (use != NULL && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0))
        return 0;
    const json_t *ops = json_object_get(jwk, "key_ops");
    if (ops == NULL)
        return 1;
    size_t i;
    const json_t *op;
    json_array_foreach(ops, i, op)
    {
        if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
            return 1;
    }
    return 0;
}

/* The algorithm of a JWK: its "alg", else the config entry's, else the one
 * its curve allows (EC and OKP keys). RSA and oct keys fit several, so they
 * need an "alg" somewhere: guessing would unbind them. */
static const tp__jwt_alg *
jwk_alg(const json_t *jwk, const char *kty, const tp__jwt_alg *entry_alg, where *w, const char *at)
{
    const json_t *v = json_object_get(jwk, "alg");
    const tp__jwt_alg *alg = NULL;
    if (v != NULL) {
        if (!json_is_string(v)) {
            fail(w, TP_EINVALID, "%salg: expected a string, got %s", at, type_name(v));
            return NULL;
        }
        alg = tp__jwt_alg_find(json_string_value(v));
        if (alg == NULL) {
            fail(w, TP_EINVALID, "%salg: %.20s is not a supported JWS algorithm", at,
                 json_string_value(v));
            return NULL;
        }
        if (entry_alg != NULL && alg != entry_alg) {
            fail(w, TP_EINVALID, "%salg: %s, but the entry's alg is %s", at, alg->name,
                 entry_alg->name);
            return NULL;
        }
        return alg;
    }
    if (entry_alg != NULL)
        return entry_alg;
    const json_t *crv = json_object_get(jwk, "crv");
    const char *c = json_is_string(crv) ? json_string_value(crv) : "";
    if (strcmp(kty, "EC") == 0) {
        for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
            if (algs[i].crv != NULL && strcmp(algs[i].crv, c) == 0)
                return &algs[i];
    } else if (strcmp(kty, "OKP") == 0) {
        if (strcmp(c, "Ed25519") == 0 || strcmp(c, "Ed448") == 0)
            return tp__jwt_alg_find("EdDSA");
    } else {
        fail(w, TP_EINVALID,
             "%salg: a %s key fits several algorithms, so it needs \"alg\" (in the key, or "
             "in the config entry)",
             at, kty);
        return NULL;
    }
    fail(w, TP_EINVALID, "%scrv: expected a supported curve for kty %s", at, kty);
    return NULL;
}

/* A where for messages about the JWK itself: at ("j.json: keys[0].")
 * without its final dot, after w's place. */
static where *
jwk_where(const where *w, const char *at, where *inner)
{
    *inner = *w;
    size_t len = strlen(at);
    /* A cut message is fine: the return value is read only to say so. */
    int n = snprintf(inner->at, sizeof inner->at, "%s: %.*s", w->at, (int)(len ? len - 1 : 0), at);
    if (n < 0 || (size_t)n >= sizeof inner->at)
        inner->at[sizeof inner->at - 1] = '\0';
    return inner;
}

/* Adds one JWK of a JWKS file to the set (or skips it: not a signature key). */
static int
add_jwk(tp__jwt_keys *keys, const json_t *jwk, const tp__jwt_alg *entry_alg, where *w,
        const char *at)
{
    if (!json_is_object(jwk))
        return fail(w, TP_EINVALID, "%s expected an object, got %s", at, type_name(jwk));
    if (!jwk_for_signing(jwk)) {
        keys->skipped++;
        return TP_OK;
    }
    const json_t *kty_v = json_object_get(jwk, "kty");
    if (!json_is_string(kty_v))
        return fail(w, TP_EINVALID, "%skty: expected a string, got %s", at,
                    kty_v ? type_name(kty_v) : "nothing");
    const char *kty = json_string_value(kty_v);
    /* A verifier's JWKS holds public keys: private parts are a leak to fix
     * at its source, not something to load. */
    static const char *const private_parts[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};
    if (strcmp(kty, "oct") != 0)
        for (size_t i = 0; i < sizeof private_parts / sizeof private_parts[0]; i++)
            if (json_object_get(jwk, private_parts[i]) != NULL)
                return fail(w, TP_EINVALID,
                            "%s%s: a private key part; the JWKS must hold public keys only", at,
                            private_parts[i]);
    if (strcmp(kty, "RSA") != 0 && strcmp(kty, "EC") != 0 && strcmp(kty, "OKP") != 0 &&
        strcmp(kty, "oct") != 0)
        return fail(w, TP_EINVALID, "%skty: %.20s is not RSA, EC, OKP or oct", at, kty);
    const tp__jwt_alg *alg = jwk_alg(jwk, kty, entry_alg, w, at);
    if (alg == NULL)
        return w->err ? w->err->code : TP_EINVALID;
    tp__jwt_key *k = key_add(keys, w);
    if (k == NULL)
        return TP_EINVALID;
    where inner;
    int rc;
    if (strcmp(kty, "oct") == 0) {
        unsigned char *secret;
        size_t len;
        rc = jwk_bytes(jwk, "k", &secret, &len, w, at);
        if (rc == TP_OK) {
            rc = key_init_secret(k, alg, secret, len, jwk_where(w, at, &inner));
            OPENSSL_cleanse(secret, len);
            tp__free(secret);
        }
    } else {
        EVP_PKEY *pkey = NULL;
        if (alg->family == TP__JWT_HMAC)
            return fail(w, TP_EINVALID, "%salg: %s needs kty oct, not %s", at, alg->name, kty);
        if (strcmp(kty, "RSA") == 0) {
            if (alg->family != TP__JWT_RSA && alg->family != TP__JWT_PSS)
                return fail(w, TP_EINVALID, "%salg: %s does not take an RSA key", at, alg->name);
            pkey = jwk_rsa(jwk, w, at);
        } else if (strcmp(kty, "EC") == 0) {
            const json_t *crv = json_object_get(jwk, "crv");
            if (alg->family != TP__JWT_EC)
                return fail(w, TP_EINVALID, "%salg: %s does not take an EC key", at, alg->name);
            if (!json_is_string(crv) || strcmp(json_string_value(crv), alg->crv) != 0)
                return fail(w, TP_EINVALID, "%scrv: %s needs %s", at, alg->name, alg->crv);
            pkey = jwk_ec(jwk, alg, w, at);
        } else {
            const json_t *crv = json_object_get(jwk, "crv");
            const char *c = json_is_string(crv) ? json_string_value(crv) : "";
            if (alg->family != TP__JWT_EDDSA)
                return fail(w, TP_EINVALID, "%salg: %s does not take an OKP key", at, alg->name);
            if (strcmp(c, "Ed25519") != 0 && strcmp(c, "Ed448") != 0)
                return fail(w, TP_EINVALID, "%scrv: EdDSA needs Ed25519 or Ed448", at);
            pkey = jwk_okp(jwk, c, w, at);
        }
        if (pkey == NULL)
            return w->err ? w->err->code : TP_EINVALID;
        rc = key_init_pkey(k, alg, pkey, jwk_where(w, at, &inner));
    }
    if (rc == TP_OK)
        rc = set_kid(k, json_object_get(jwk, "kid"), w, at);
    if (rc != TP_OK) {
        key_clear(k);
        return rc;
    }
    keys->n++;
    return TP_OK;
}

static int
load_jwks(tp__jwt_keys *keys, const char *path, const char *shown, const tp__jwt_alg *entry_alg,
          where *w)
{
    size_t len;
    char *text = read_file(path, TP__JWT_MAX_JWKS_BYTES, &len, w, shown);
    if (text == NULL)
        return w->err ? w->err->code : TP_EINVALID;
    json_error_t jerr;
    json_t *jwks = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    OPENSSL_cleanse(text, len); /* it may hold oct secrets */
    tp__free(text);
    if (jwks == NULL && json_error_code(&jerr) == json_error_out_of_memory)
        return tp__error_set(w->err, TP_ENOMEM, "out of memory");
    if (jwks == NULL)
        return fail(w, TP_EINVALID, "%s: line %d: %s", shown, jerr.line, jerr.text);
    const json_t *list = json_object_get(jwks, "keys");
    int rc = TP_OK;
    if (!json_is_array(list)) {
        rc = fail(w, TP_EINVALID, "%s: expected an object with a \"keys\" array (RFC 7517 5)",
                  shown);
    } else {
        size_t i;
        const json_t *jwk;
        json_array_foreach(list, i, jwk)
        {
            char at[96];
            const json_t *kid = json_object_get(jwk, "kid");
            if (json_is_string(kid))
                snprintf(at, sizeof at, "%s: keys[%zu] (kid \"%.32s\").", shown, i,
                         json_string_value(kid));
            else
                snprintf(at, sizeof at, "%s: keys[%zu].", shown, i);
            rc = add_jwk(keys, jwk, entry_alg, w, at);
            if (rc != TP_OK)
                break;
        }
    }
    /* Any oct secrets in the parsed tree are released with it; jansson
     * does not wipe them, so they live in freed memory until reused. */
    json_decref(jwks);
    return rc;
}

/* ---- Config entries ---- */

static const char *
getenv_default(const char *name, void *user)
{
    (void)user;
    return getenv(name);
}

/* A config string member, or NULL (with an error when present and wrong). */
static int
get_string(const json_t *entry, const char *name, const char **out, where *w)
{
    const json_t *v = json_object_get(entry, name);
    *out = NULL;
    if (v == NULL)
        return TP_OK;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        at_push(w, name);
        return fail(w, TP_EINVALID, "expected a non-empty string, got %s",
                    json_is_string(v) ? "\"\"" : type_name(v));
    }
    *out = json_string_value(v);
    return TP_OK;
}

static int
add_entry(tp__jwt_keys *keys, const json_t *entry, const tp__jwt_keys_config *cfg, where *w)
{
    if (!json_is_object(entry))
        return fail(w, TP_EINVALID, "expected an object, got %s", type_name(entry));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)entry, key, v)
    {
        if (strcmp(key, "alg") != 0 && strcmp(key, "kid") != 0 && strcmp(key, "secret_env") != 0 &&
            strcmp(key, "public_key_file") != 0 && strcmp(key, "jwks_file") != 0) {
            at_push(w, key);
            return fail(w, TP_EINVALID, "unknown key");
        }
    }
    const char *alg_name, *secret_env, *pem_file, *jwks_file;
    int rc;
    if ((rc = get_string(entry, "alg", &alg_name, w)) != TP_OK ||
        (rc = get_string(entry, "secret_env", &secret_env, w)) != TP_OK ||
        (rc = get_string(entry, "public_key_file", &pem_file, w)) != TP_OK ||
        (rc = get_string(entry, "jwks_file", &jwks_file, w)) != TP_OK)
        return rc;
    if ((secret_env != NULL) + (pem_file != NULL) + (jwks_file != NULL) != 1)
        return fail(w, TP_EINVALID,
                    "expected exactly one of secret_env, public_key_file, jwks_file");
    const tp__jwt_alg *alg = NULL;
    if (alg_name != NULL) {
        alg = tp__jwt_alg_find(alg_name);
        if (alg == NULL) {
            at_push(w, "alg");
            return fail(w, TP_EINVALID,
                        "%.20s is not one of HS256, HS384, HS512, RS256, RS384, RS512, "
                        "PS256, PS384, PS512, ES256, ES384, ES512, EdDSA",
                        alg_name);
        }
    } else if (jwks_file == NULL) {
        at_push(w, "alg");
        return fail(w, TP_EINVALID, "missing (each key is bound to one algorithm)");
    }

    if (jwks_file != NULL) {
        if (json_object_get(entry, "kid") != NULL) {
            at_push(w, "kid");
            return fail(w, TP_EINVALID, "not allowed with jwks_file (its keys have their own)");
        }
        char *path = resolve(cfg->base_dir, jwks_file);
        if (path == NULL)
            return tp__error_set(w->err, TP_ENOMEM, "out of memory");
        at_push(w, "jwks_file");
        size_t before = keys->n;
        rc = load_jwks(keys, path, jwks_file, alg, w);
        tp__free(path);
        if (rc == TP_OK && keys->n == before)
            rc = fail(w, TP_EINVALID, "%s holds no signature key", jwks_file);
        return rc;
    }
    tp__jwt_key *k = key_add(keys, w);
    if (k == NULL)
        return TP_EINVALID;
    size_t len = strlen(w->at);
    if (secret_env != NULL) {
        snprintf(w->at + len, sizeof w->at - len, ".secret_env");
        if (alg->family != TP__JWT_HMAC)
            return fail(w, TP_EINVALID,
                        "%s takes a public key (public_key_file or jwks_file), not a secret",
                        alg->name);
        tp__jwt_getenv_fn get = cfg->getenv ? cfg->getenv : getenv_default;
        const char *secret = get(secret_env, cfg->getenv_user);
        if (secret == NULL || secret[0] == '\0')
            return fail(w, TP_EINVALID, "%.64s is not set", secret_env);
        rc = key_init_secret(k, alg, (const unsigned char *)secret, strlen(secret), w);
    } else {
        snprintf(w->at + len, sizeof w->at - len, ".public_key_file");
        /* The classic confusion (RFC 8725 2.1) starts here: a PEM file is
         * never an HMAC secret. */
        if (alg->family == TP__JWT_HMAC)
            return fail(w, TP_EINVALID, "%s takes a secret (secret_env), not a public key",
                        alg->name);
        char *path = resolve(cfg->base_dir, pem_file);
        if (path == NULL)
            return tp__error_set(w->err, TP_ENOMEM, "out of memory");
        EVP_PKEY *pkey = load_pem(path, w, pem_file);
        tp__free(path);
        if (pkey == NULL)
            return w->err ? w->err->code : TP_EINVALID;
        rc = key_init_pkey(k, alg, pkey, w);
    }
    if (rc == TP_OK) {
        snprintf(w->at + len, sizeof w->at - len, ".kid");
        rc = set_kid(k, json_object_get(entry, "kid"), w, "");
    }
    if (rc != TP_OK) {
        key_clear(k);
        return rc;
    }
    keys->n++;
    return TP_OK;
}

/* Two keys of one algorithm with the same kid: a token naming it would be
 * tried against both, and a JWKS rotation would be ambiguous. */
static int
check_unique(const tp__jwt_keys *keys, const char *field, tp_error *err)
{
    for (size_t i = 0; i < keys->n; i++)
        for (size_t j = i + 1; j < keys->n; j++)
            if (keys->keys[i].kid && keys->keys[j].kid && keys->keys[i].alg == keys->keys[j].alg &&
                strcmp(keys->keys[i].kid, keys->keys[j].kid) == 0)
                return tp__error_set(err, TP_EINVALID, "%s: two %s keys with kid \"%.32s\"", field,
                                     keys->keys[i].alg->name, keys->keys[i].kid);
    return TP_OK;
}

tp__jwt_keys *
tp__jwt_keys_new(const json_t *entries, const tp__jwt_keys_config *config, tp_error *err)
{
    tp__jwt_keys_config none = {0};
    const tp__jwt_keys_config *cfg = config ? config : &none;
    const char *field = cfg->field ? cfg->field : "auth.keys";
    if (!json_is_array(entries) || json_array_size(entries) == 0) {
        tp__error_set(err, TP_EINVALID, "%s: expected a non-empty array of keys, got %s", field,
                      entries == NULL          ? "nothing"
                      : json_is_array(entries) ? "[]"
                                               : type_name(entries));
        return NULL;
    }
    tp__jwt_keys *keys = tp__calloc(1, sizeof *keys);
    if (keys != NULL)
        keys->keys = tp__calloc(TP__JWT_MAX_KEYS, sizeof *keys->keys);
    if (keys == NULL || keys->keys == NULL) {
        tp__jwt_keys_free(keys);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    size_t i;
    const json_t *entry;
    json_array_foreach(entries, i, entry)
    {
        where w = {.err = err};
        snprintf(w.at, sizeof w.at, "%.64s[%zu]", field, i);
        if (add_entry(keys, entry, cfg, &w) != TP_OK) {
            tp__jwt_keys_free(keys);
            return NULL;
        }
    }
    if (check_unique(keys, field, err) != TP_OK) {
        tp__jwt_keys_free(keys);
        return NULL;
    }
    return keys;
}
