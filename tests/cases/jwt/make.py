#!/usr/bin/python3
"""Writes tests/cases/jwt/: public keys, a JWKS and tokens signed by PyJWT.

A second, independent signer for tests/unit/auth/test_jwt.c (which signs its
own tokens with OpenSSL in C): the tokens here come from PyJWT on Python's
cryptography (Debian: python3-jwt, python3-cryptography). The private keys
are made fresh and thrown away; only the public keys, the JWKS, the HMAC
secrets (as environment values) and the tokens are kept, in cases.json:

  {"now": N, "env": {NAME: SECRET}, "auth": {...config "auth" object...},
   "cases": [{"name": ..., "token": ..., "expect": "ok" | a result name,
              "tenant": ... (when ok)}]}

Run it again (from anywhere) to replace every file:

    /usr/bin/python3 tests/cases/jwt/make.py
"""
import base64
import hashlib
import hmac
import json
import os

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1800000000
LEEWAY = 30


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def jwk_of(key, kid, alg):
    d = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    d["kid"] = kid
    d["alg"] = alg
    return d


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
es256 = ec.generate_private_key(ec.SECP256R1())
es384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
other_ec = ec.generate_private_key(ec.SECP256R1())
jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwks_ec = ec.generate_private_key(ec.SECP256R1())
jwks_ed = ed25519.Ed25519PrivateKey.generate()
secret = base64.b64encode(os.urandom(48)).decode()  # 64 printable bytes
secret_other = base64.b64encode(os.urandom(48)).decode()

write("rs.pem", pem(rsa_key))
write("es256.pem", pem(es256))
write("es384.pem", pem(es384))
write("ed.pem", pem(ed))
write("jwks.json", json.dumps({"keys": [jwk_of(jwks_rsa, "rsa-1", "RS256"),
                                        jwk_of(jwks_ec, "ec-1", "ES256"),
                                        jwk_of(jwks_ed, "ed-1", "EdDSA")]}, indent=1) + "\n")

auth = {"mode": "jwt", "tenant_claim": "sub", "audience": "my-app",
        "issuer": "https://id.example", "leeway_s": LEEWAY,
        "keys": [{"alg": "HS256", "secret_env": "TP_TEST_SECRET"},
                 {"alg": "HS512", "secret_env": "TP_TEST_SECRET"},
                 {"alg": "RS256", "public_key_file": "rs.pem"},
                 {"alg": "RS512", "public_key_file": "rs.pem"},
                 {"alg": "PS256", "public_key_file": "rs.pem"},
                 {"alg": "ES256", "public_key_file": "es256.pem"},
                 {"alg": "ES384", "public_key_file": "es384.pem"},
                 {"alg": "EdDSA", "public_key_file": "ed.pem"},
                 {"jwks_file": "jwks.json"}]}


def claims(**over):
    c = {"sub": "alice", "aud": "my-app", "iss": "https://id.example",
         "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


cases = []


def case(name, token, expect, tenant=None):
    c = {"name": name, "token": token, "expect": expect}
    if tenant is not None:
        c["tenant"] = tenant
    cases.append(c)


for alg, key in [("HS256", secret), ("HS512", secret), ("RS256", rsa_key), ("RS512", rsa_key),
                 ("PS256", rsa_key), ("ES256", es256), ("ES384", es384), ("EdDSA", ed)]:
    k = key.encode() if isinstance(key, str) else key
    case(alg + " valid", jwt.encode(claims(sub="user-" + alg), k, algorithm=alg), "ok",
         "user-" + alg)
for alg, key, kid in [("RS256", jwks_rsa, "rsa-1"), ("ES256", jwks_ec, "ec-1"),
                      ("EdDSA", jwks_ed, "ed-1")]:
    case(alg + " from the JWKS by kid",
         jwt.encode(claims(sub="jwks"), key, algorithm=alg, headers={"kid": kid}), "ok", "jwks")
case("ES256 JWKS kid, signed by an EC key not configured",
     jwt.encode(claims(), other_ec, algorithm="ES256", headers={"kid": "ec-1"}), "bad_signature")
case("ES256 JWKS kid, signed by the PEM key, which has no kid and so matches any",
     jwt.encode(claims(), es256, algorithm="ES256", headers={"kid": "ec-1"}), "ok", "alice")
case("kid unknown to the JWKS, RS256 key without kid takes it",
     jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "nope"}), "ok", "alice")
case("audience in an array",
     jwt.encode(claims(aud=["other", "my-app"]), es256, algorithm="ES256"), "ok", "alice")
case("wrong audience", jwt.encode(claims(aud="other"), es256, algorithm="ES256"),
     "wrong_audience")
case("no audience", jwt.encode(claims(aud=None), es256, algorithm="ES256"), "wrong_audience")
case("wrong issuer", jwt.encode(claims(iss="https://evil.example"), ed, algorithm="EdDSA"),
     "wrong_issuer")
case("expired past the leeway",
     jwt.encode(claims(exp=NOW - LEEWAY), secret.encode(), algorithm="HS256"), "expired")
case("expired within the leeway",
     jwt.encode(claims(exp=NOW - LEEWAY + 1), secret.encode(), algorithm="HS256"), "ok", "alice")
case("not yet valid past the leeway",
     jwt.encode(claims(nbf=NOW + LEEWAY + 1), secret.encode(), algorithm="HS256"),
     "not_yet_valid")
case("nbf within the leeway",
     jwt.encode(claims(nbf=NOW + LEEWAY), secret.encode(), algorithm="HS256"), "ok", "alice")
case("no exp", jwt.encode(claims(exp=None), secret.encode(), algorithm="HS256"), "malformed")
case("no sub", jwt.encode(claims(sub=None), secret.encode(), algorithm="HS256"), "no_tenant")
case("sub a number", jwt.encode(claims(sub=42), secret.encode(), algorithm="HS256"), "no_tenant")
case("HS256 with another secret",
     jwt.encode(claims(), secret_other.encode(), algorithm="HS256"), "bad_signature")
case("RS256 by a key not configured", jwt.encode(claims(), other_rsa, algorithm="RS256"),
     "bad_signature")
case("HS384: no key has it", jwt.encode(claims(), secret.encode(), algorithm="HS384"), "no_key")
case("alg none", jwt.encode(claims(), None, algorithm="none"), "unsigned")

# The classic confusion (RFC 8725 2.1): an HS256 token whose HMAC secret is
# the RSA public key's PEM. PyJWT refuses to sign it, so it is made by hand.
head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64url(json.dumps(claims()).encode())
mac = hmac.new(pem(rsa_key), (head + "." + body).encode(), hashlib.sha256).digest()
case("HS256 signed with the RSA public key PEM as its secret", head + "." + body + "." + b64url(mac),
     "bad_signature")

write("cases.json", json.dumps({"now": NOW, "env": {"TP_TEST_SECRET": secret}, "auth": auth,
                                "cases": cases}, indent=1) + "\n")
print("wrote %d cases to %s" % (len(cases), HERE))
