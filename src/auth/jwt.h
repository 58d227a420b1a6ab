/*
 * JWT verification (RFC 7519, RFC 7515) for auth mode "jwt", with the
 * rules of RFC 8725 (JWT Best Current Practices). See docs/internals/auth.md.
 *
 * Two objects:
 *   - a key set (tp__jwt_keys), built once from the config's "auth.keys"
 *     array: HMAC secrets from environment variables, public keys from PEM
 *     files, JWKS files. Every key is bound to exactly one algorithm when it
 *     is loaded; a token's header never chooses a key type. A key set is
 *     immutable, so reloading (JWKS rotation) is building a new one and
 *     swapping the pointer, then freeing the old one once no verification
 *     uses it;
 *   - the rules (tp__jwt_rules): which claim is the tenant, the audience,
 *     the issuer, the clock leeway.
 *
 * tp__jwt_verify checks one token against both and gives the tenant and the
 * expiry. Its messages never hold the token, its signature or a claim's
 * value (a token is a credential, and messages reach logs).
 *
 * Thread: a key set and rules are read-only once built; any number of
 * threads may verify against them at once.
 */
#ifndef TP_AUTH_JWT_H
#define TP_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "transports.h"

/* ---- Bounds ---- */

/* The longest token accepted, in bytes (a header with a kid and a few
 * claims is under 1 KiB; an RS512 signature is 683 characters). */
#define TP__JWT_MAX_TOKEN 8192
/* The deepest JSON nesting accepted in a header or a claim set (the claims
 * read are at depth 1; aud is an array at depth 2). */
#define TP__JWT_MAX_DEPTH 16
/* The longest tenant (the tenant claim's value), in bytes. */
#define TP__JWT_MAX_TENANT 255
/* The most keys in a set, every JWKS file counted; a token without a kid
 * may be tried against every key of its algorithm. */
#define TP__JWT_MAX_KEYS 64
/* The largest PEM file and JWKS file read. */
#define TP__JWT_MAX_PEM_BYTES (64 * 1024)
#define TP__JWT_MAX_JWKS_BYTES (1024 * 1024)
/* The largest leeway a config may set (one hour). */
#define TP__JWT_MAX_LEEWAY_S 3600

/* ---- Key sets ---- */

typedef struct tp__jwt_keys tp__jwt_keys;

/* tp__jwt_getenv_fn returns the value of an environment variable, or NULL
 * when it is not set (getenv's contract, with a user pointer). */
typedef const char *(*tp__jwt_getenv_fn)(const char *name, void *user);

typedef struct tp__jwt_keys_config {
    /* Relative public_key_file and jwks_file paths are resolved from here
     * (the config file's directory); NULL: the working directory. */
    const char *base_dir;
    /* The environment; NULL: getenv. */
    tp__jwt_getenv_fn getenv;
    void *getenv_user;
    /* The name of the keys array in messages; NULL: "auth.keys". */
    const char *field;
} tp__jwt_keys_config;

/*
 * tp__jwt_keys_new builds a key set from the JSON array of key entries
 * (docs/internals/auth.md, "Keys"):
 *   {"alg": "HS256", "secret_env": "NAME"}       an HMAC secret (HS256/384/512)
 *   {"alg": "RS256", "public_key_file": "PATH"}  a PEM public key (SubjectPublicKeyInfo)
 *   {"jwks_file": "PATH"}                        a JWKS (RFC 7517) file; "alg" optional
 * each with an optional "kid". The set must hold at least one key.
 * Ownership: borrows keys and config; returns new (tp__jwt_keys_free).
 * Errors: NULL with TP_EINVALID and a message naming the field
 * ("auth.keys[1].public_key_file: cannot read keys/rs.pem: No such file or
 * directory"), or TP_ENOMEM.
 */
tp__jwt_keys *tp__jwt_keys_new(const json_t *keys, const tp__jwt_keys_config *config,
                               tp_error *err);

/* tp__jwt_keys_free releases a key set. NULL is allowed. */
void tp__jwt_keys_free(tp__jwt_keys *keys);

/* tp__jwt_keys_count returns the number of keys in the set (each JWKS key
 * counts, keys skipped as not for signatures do not). */
size_t tp__jwt_keys_count(const tp__jwt_keys *keys);

/* tp__jwt_keys_skipped returns how many JWKS keys were skipped because
 * they are not signature keys ("use" other than "sig", or "key_ops"
 * without "verify"), for a log line at load. */
size_t tp__jwt_keys_skipped(const tp__jwt_keys *keys);

/* ---- Rules ---- */

typedef struct tp__jwt_rules {
    char *tenant_claim; /* the claim holding the tenant; "sub" by default */
    char *audience;     /* NULL: aud is not checked */
    char *issuer;       /* NULL: iss is not checked */
    int64_t leeway_s;   /* clock skew allowed on exp and nbf, 0..TP__JWT_MAX_LEEWAY_S */
} tp__jwt_rules;

/*
 * tp__jwt_rules_load reads tenant_claim, audience, issuer and leeway_s from
 * an "auth" config object (other members are the caller's: mode, keys) and
 * fills rules (strings copied). field names the object in messages (NULL:
 * "auth"). Returns TP_OK, TP_EINVALID ("auth.leeway_s: expected an integer
 * from 0 to 3600") or TP_ENOMEM; on failure rules holds nothing to clear.
 */
int tp__jwt_rules_load(tp__jwt_rules *rules, const json_t *auth, const char *field, tp_error *err);

/* tp__jwt_rules_clear frees what tp__jwt_rules_load copied. */
void tp__jwt_rules_clear(tp__jwt_rules *rules);

/* ---- Verifying ---- */

/* Why a token is refused. Every refusal is HTTP 401 at a handshake (4401
 * on a live connection); the class is for logs and metrics. */
typedef enum tp__jwt_result {
    TP__JWT_OK = 0,
    TP__JWT_MALFORMED,     /* not a compact JWS, bad base64url or JSON, bad header or claim types */
    TP__JWT_UNSIGNED,      /* alg "none" (in any case) */
    TP__JWT_NO_KEY,        /* no configured key has the token's alg (and kid) */
    TP__JWT_BAD_SIGNATURE, /* no candidate key verifies the signature */
    TP__JWT_EXPIRED,       /* now >= exp + leeway */
    TP__JWT_NOT_YET_VALID, /* now < nbf - leeway */
    TP__JWT_WRONG_AUDIENCE, /* audience configured, not in aud */
    TP__JWT_WRONG_ISSUER,   /* issuer configured, iss differs */
    TP__JWT_NO_TENANT,      /* the tenant claim is missing, not a string, empty or unfit */
    TP__JWT_INTERNAL        /* out of memory, or OpenSSL failed */
} tp__jwt_result;

/* tp__jwt_result_name returns a short name for a class ("bad_signature"). */
const char *tp__jwt_result_name(tp__jwt_result result);

typedef struct tp__jwt_claims {
    char tenant[TP__JWT_MAX_TENANT + 1]; /* the tenant claim's value */
    int64_t exp;                         /* exp, rounded up to a whole second */
    int64_t expires_at;                  /* exp + leeway: from this second on, refused */
    const char *alg;                     /* the algorithm verified ("ES256"; static) */
} tp__jwt_claims;

/*
 * tp__jwt_verify checks a compact JWS token of len bytes (no NUL needed) at
 * time now_s (seconds since the epoch): its form, its header (alg bound to a
 * configured key; no crit; typ, when present, JWT or at+jwt), its signature
 * against the candidate keys (those of its alg whose kid matches, or that
 * have none), then its claims (exp required; nbf; aud and iss when the rules
 * name them; the tenant claim, a string of 1 to TP__JWT_MAX_TENANT bytes
 * without control characters).
 * Ownership: borrows everything; out (may be NULL) is filled on TP__JWT_OK.
 * Errors: a class other than TP__JWT_OK, with err (may be NULL) set to
 * TP_EFORBIDDEN (TP_ENOMEM or TP_EINTERNAL for TP__JWT_INTERNAL) and a
 * message that holds no part of the token but the algorithm's name.
 */
tp__jwt_result tp__jwt_verify(const tp__jwt_keys *keys, const tp__jwt_rules *rules,
                              const char *token, size_t len, int64_t now_s, tp__jwt_claims *out,
                              tp_error *err);

#endif /* TP_AUTH_JWT_H */
