/*
 * The key set's insides, shared by keys.c (loading) and jwt.c (verifying)
 * and by nothing else: callers hold a tp__jwt_keys through jwt.h.
 */
#ifndef TP_AUTH_KEYS_H
#define TP_AUTH_KEYS_H

#include <stddef.h>

#include <openssl/evp.h>

#include "auth/jwt.h"

/* The families of JWS algorithms (RFC 7518 section 3.1, RFC 8037). */
typedef enum tp__jwt_family {
    TP__JWT_HMAC,  /* HS256/384/512: HMAC with SHA-2 */
    TP__JWT_RSA,   /* RS256/384/512: RSASSA-PKCS1-v1_5 */
    TP__JWT_PSS,   /* PS256/384/512: RSASSA-PSS, MGF1 with the same hash, salt = hash size */
    TP__JWT_EC,    /* ES256/384/512: ECDSA, the signature JOSE's raw R || S */
    TP__JWT_EDDSA, /* EdDSA: Ed25519 or Ed448 */
} tp__jwt_family;

typedef struct tp__jwt_alg {
    const char *name;      /* the JWS "alg" value */
    tp__jwt_family family; /* what kind of key it takes */
    const char *digest;    /* OpenSSL's digest name; NULL for EdDSA */
    size_t size;           /* HMAC: the MAC's length, which is also the shortest
                              secret (RFC 7518 3.2); EC: the length of R and of S */
    const char *group;     /* EC: OpenSSL's name of the curve */
    const char *crv;       /* EC: JWK's name of the curve (RFC 7518 6.2.1.1) */
} tp__jwt_alg;

/* tp__jwt_alg_find returns the algorithm called name (exact, as RFC 7515
 * says "alg" values are case-sensitive), or NULL. */
const tp__jwt_alg *tp__jwt_alg_find(const char *name);

/* One key, bound to one algorithm for its whole life (RFC 8725 3.1). */
typedef struct tp__jwt_key {
    const tp__jwt_alg *alg;
    char *kid;        /* NULL: the key has no kid and matches any token's */
    EVP_MAC_CTX *mac; /* HMAC: initialised with the secret; duplicated per use */
    EVP_PKEY *pkey;   /* the other families: the public key */
    EVP_MD *md;       /* RSA, PSS, EC: the digest, fetched once */
    EVP_MD_CTX *init; /* RSA, PSS, EC, EdDSA: set up to verify; copied per use */
    size_t sig_len;   /* the exact length of a signature, in bytes */
} tp__jwt_key;

struct tp__jwt_keys {
    tp__jwt_key *keys;
    size_t n;
    size_t skipped; /* JWKS keys that are not signature keys */
};

/*
 * tp__jwt_verify_init sets ctx up to verify with key k: EVP_DigestVerifyInit
 * with the key's digest and, for RS* and PS*, the padding (PS*: MGF1 with
 * the same hash and a salt of the hash's size, RFC 7518 3.5). Returns 1, or
 * 0 when OpenSSL fails (its error queue is then cleared).
 */
int tp__jwt_verify_init(const tp__jwt_key *k, EVP_MD_CTX *ctx);

/*
 * tp__b64url_decode decodes n characters of unpadded base64url (RFC 7515
 * section 2, RFC 4648 section 5) into out, which has room for n * 3 / 4 + 3
 * bytes, and sets *out_len. Strict: only the URL-safe alphabet, no padding,
 * no white space, no length of the form 4k + 1, and the bits a last partial
 * group leaves over must be zero (so every byte string has exactly one
 * encoding and a token cannot be altered without breaking its signature).
 * Returns 0, or -1 for anything else.
 */
int tp__b64url_decode(const char *s, size_t n, unsigned char *out, size_t *out_len);

#endif /* TP_AUTH_KEYS_H */
