/*
 * auth_bench: the JWT verifier's share of a handshake (src/auth/jwt.h),
 * verifications per second on one thread for each algorithm, and the cost
 * of the refusals a client can provoke cheaply.
 *
 *   (a) a good token, for HS256, RS256 (2048-bit), PS256, ES256, EdDSA
 *       (Ed25519): the whole verification (form, header, signature with
 *       OpenSSL's EVP, claims);
 *   (b) refusals: a bad HS256 and a bad RS256 signature, an algorithm no
 *       key has (no signature computed), alg none, a token over 8 KiB;
 *   (c) the candidate loop: an ES256 token without kid against 8 ES256
 *       keys, the last one signing it (the worst case a key set of that
 *       size allows; a kid makes it one key).
 *
 * Keys are made at start with OpenSSL, tokens signed here (as in
 * tests/unit/auth/test_jwt.c). Each figure is the median of --runs runs of
 * --seconds of the thread's CPU time each (default 5 runs of 0.5 s;
 * --quick: 3 of 0.1 s), so it reads as verifications per CPU second.
 *
 * Usage: auth_bench [--quick] [--runs N] [--seconds S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "auth/jwt.h"
#include "transports.h"

#define NOW 1800000000LL
#define SECRET "bench-secret-bench-secret-bench-secret!!"
#define CLAIMS                                                                                     \
    "{\"sub\":\"alice\",\"aud\":\"my-app\",\"iss\":\"https://id.example\",\"exp\":1800000600,"     \
    "\"nbf\":1799999990,\"iat\":1799999990}"

static int runs = 5;
static double seconds = 0.5;

/* The thread's CPU time: on a machine shared with other work, wall time
 * counts the time slices others take; CPU time counts only ours. */
static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "auth_bench: %s\n", what);
    exit(1);
}

/* ---- Signing (OpenSSL, independent of the verifier) ---- */

static char *
b64url(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out == NULL)
        die("out of memory");
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

static char *
sign(const char *alg, EVP_PKEY *pkey, const char *header)
{
    char *h = b64url(header, strlen(header)), *c = b64url(CLAIMS, strlen(CLAIMS));
    size_t n = strlen(h) + strlen(c) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, c);
    unsigned char sig[1024];
    size_t len = sizeof sig;
    if (strcmp(alg, "HS256") == 0) {
        unsigned int l = 0;
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)input, strlen(input), sig,
             &l);
        len = l;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        const char *md = strcmp(alg, "EdDSA") == 0 ? NULL : "SHA256";
        if (EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, pkey, NULL) != 1)
            die("sign init");
        if (alg[0] == 'P' && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
                              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0))
            die("pss");
        if (EVP_DigestSign(ctx, sig, &len, (unsigned char *)input, strlen(input)) != 1)
            die("sign");
        EVP_MD_CTX_free(ctx);
        if (strcmp(alg, "ES256") == 0) {
            const unsigned char *p = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
            if (es == NULL)
                die("ecdsa");
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            ECDSA_SIG_free(es);
            len = 64;
        }
    }
    char *s = b64url(sig, len);
    size_t tn = strlen(input) + strlen(s) + 2;
    char *token = malloc(tn);
    snprintf(token, tn, "%s.%s", input, s);
    free(s);
    free(h);
    free(c);
    free(input);
    return token;
}

static void
write_pub(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || PEM_write_PUBKEY(f, k) != 1)
        die("write a PEM file");
    fclose(f);
}

/* ---- Timing ---- */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Verifications per second of token against keys, median of the runs;
 * checks the class once first. */
static double
rate(const tp__jwt_keys *keys, const tp__jwt_rules *rules, const char *token, tp__jwt_result want)
{
    size_t len = strlen(token);
    tp_error err;
    tp__jwt_result got = tp__jwt_verify(keys, rules, token, len, NOW, NULL, &err);
    if (got != want) {
        fprintf(stderr, "auth_bench: got %s (%s), want %s\n", tp__jwt_result_name(got), err.message,
                tp__jwt_result_name(want));
        exit(1);
    }
    double rates[64];
    for (int r = 0; r < runs; r++) {
        long n = 0;
        double t0 = now_s(), t;
        do {
            for (int i = 0; i < 64; i++)
                tp__jwt_verify(keys, rules, token, len, NOW, NULL, NULL);
            n += 64;
            t = now_s();
        } while (t - t0 < seconds);
        rates[r] = (double)n / (t - t0);
    }
    qsort(rates, (size_t)runs, sizeof rates[0], cmp_double);
    return rates[runs / 2];
}

static void
row(const char *what, double r)
{
    printf("  %-46s %10.0f /s %9.2f us\n", what, r, 1e6 / r);
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            runs = 3;
            seconds = 0.1;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = (int)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], NULL);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--runs N] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 64 || !(seconds > 0))
        die("--runs is 1 to 64, --seconds above 0");

    char dir[] = "/tmp/auth_bench-XXXXXX";
    if (mkdtemp(dir) == NULL || chdir(dir) != 0)
        die("a temporary directory");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec[8];
    for (int i = 0; i < 8; i++)
        ec[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (rsa == NULL || ed == NULL)
        die("keygen");
    write_pub("rs.pem", rsa);
    write_pub("ed.pem", ed);
    char many[2048] = "[";
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "es%d.pem", i);
        write_pub(name, ec[i]);
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 "%s{\"alg\":\"ES256\",\"public_key_file\":\"%s\",\"kid\":\"k%d\"}", i ? "," : "",
                 name, i);
    }
    snprintf(many + strlen(many), sizeof many - strlen(many), "]");
    setenv("AUTH_BENCH_SECRET", SECRET, 1);
    const char *config = "[{\"alg\":\"HS256\",\"secret_env\":\"AUTH_BENCH_SECRET\"},"
                         "{\"alg\":\"RS256\",\"public_key_file\":\"rs.pem\"},"
                         "{\"alg\":\"PS256\",\"public_key_file\":\"rs.pem\"},"
                         "{\"alg\":\"ES256\",\"public_key_file\":\"es0.pem\"},"
                         "{\"alg\":\"EdDSA\",\"public_key_file\":\"ed.pem\"}]";
    tp_error err;
    json_t *v = json_loads(config, 0, NULL);
    tp__jwt_keys *keys = tp__jwt_keys_new(v, NULL, &err);
    json_decref(v);
    v = json_loads(many, 0, NULL);
    tp__jwt_keys *eight = tp__jwt_keys_new(v, NULL, &err);
    json_decref(v);
    if (keys == NULL || eight == NULL)
        die(err.message);
    tp__jwt_rules rules = {.tenant_claim = "sub",
                           .audience = "my-app",
                           .issuer = "https://id.example",
                           .leeway_s = 30};

    printf("auth_bench: verifications per CPU second, one thread (%d runs of %.2f s of CPU, "
           "median)\n",
           runs, seconds);
    printf("(a) a good token\n");
    const char *algs[] = {"HS256", "RS256", "PS256", "ES256", "EdDSA"};
    EVP_PKEY *pk[] = {NULL, rsa, rsa, ec[0], ed};
    char *good[5];
    for (int i = 0; i < 5; i++) {
        char header[64], what[64];
        snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);
        good[i] = sign(algs[i], pk[i], header);
        snprintf(what, sizeof what, "%s (%zu-byte token)", algs[i], strlen(good[i]));
        row(what, rate(keys, &rules, good[i], TP__JWT_OK));
    }

    printf("(b) refusals\n");
    char *bad_hs = strdup(good[0]), *bad_rs = strdup(good[1]);
    bad_hs[strlen(bad_hs) - 2] = bad_hs[strlen(bad_hs) - 2] == 'A' ? 'B' : 'A';
    bad_rs[strlen(bad_rs) - 2] = bad_rs[strlen(bad_rs) - 2] == 'A' ? 'B' : 'A';
    row("HS256, bad signature", rate(keys, &rules, bad_hs, TP__JWT_BAD_SIGNATURE));
    row("RS256, bad signature", rate(keys, &rules, bad_rs, TP__JWT_BAD_SIGNATURE));
    char *no_key = sign("HS256", NULL, "{\"alg\":\"HS512\"}");
    row("HS512: no key has it (nothing computed)", rate(keys, &rules, no_key, TP__JWT_NO_KEY));
    char *none = strdup("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.");
    row("alg none", rate(keys, &rules, none, TP__JWT_UNSIGNED));
    char *huge = malloc(TP__JWT_MAX_TOKEN + 2);
    memset(huge, 'A', TP__JWT_MAX_TOKEN + 1);
    huge[TP__JWT_MAX_TOKEN + 1] = '\0';
    row("8193 bytes", rate(keys, &rules, huge, TP__JWT_MALFORMED));

    printf("(c) 8 ES256 keys\n");
    char *with_kid = sign("ES256", ec[7], "{\"alg\":\"ES256\",\"kid\":\"k7\"}");
    char *no_kid = sign("ES256", ec[7], "{\"alg\":\"ES256\"}");
    row("kid k7: one key tried", rate(eight, &rules, with_kid, TP__JWT_OK));
    row("no kid: 8 keys tried, the last verifies", rate(eight, &rules, no_kid, TP__JWT_OK));

    for (int i = 0; i < 5; i++)
        free(good[i]);
    free(bad_hs);
    free(bad_rs);
    free(no_key);
    free(none);
    free(huge);
    free(with_kid);
    free(no_kid);
    tp__jwt_keys_free(keys);
    tp__jwt_keys_free(eight);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "es%d.pem", i);
        unlink(name);
        EVP_PKEY_free(ec[i]);
    }
    unlink("rs.pem");
    unlink("ed.pem");
    if (chdir("/") == 0)
        rmdir(dir);
    return 0;
}
