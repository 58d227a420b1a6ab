#!/usr/bin/python3
"""Writes the seeds of fuzz_jwt: tests/fuzz/corpus/fuzz_jwt/seed-*.

fuzz_jwt.c verifies against fixed keys whose private halves are here
(derived from constants, so that they never change): an HS256 secret, a
P-256 key and an Ed25519 key. The seeds are tokens signed with them by PyJWT
(Debian: python3-jwt, python3-cryptography), good and bad in every way the
verifier tells apart, 'S' inputs (header and claims that the target signs)
and 'J' inputs (JWKS texts). Run it again after changing the target's input
format:

    /usr/bin/python3 tests/fuzz/make-jwt-seeds.py

It also checks that fuzz_jwt.c holds these keys' public halves.
"""
import base64
import json
import os

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_jwt")
NOW = 1800000000
SECRET = b"fuzz-secret-fuzz-secret-fuzz-sec"
SEP = "\n%%\n"

EC = ec.derive_private_key(int.from_bytes(bytes(range(1, 33)), "big"), ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def check_target():
    with open(os.path.join(HERE, "fuzz_jwt.c"), encoding="utf-8") as f:
        src = f.read()
    nums = EC.public_key().public_numbers()
    raw = ED.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for what, value in [("EC x", b64url(nums.x.to_bytes(32, "big"))),
                        ("EC y", b64url(nums.y.to_bytes(32, "big"))),
                        ("Ed25519 x", b64url(raw)), ("secret", b64url(SECRET))]:
        if value not in src:
            raise SystemExit("fuzz_jwt.c does not hold the %s %s" % (what, value))
    for key in (EC, ED):
        for line in pem(key).splitlines():
            if line not in src:
                raise SystemExit("fuzz_jwt.c does not hold the PEM line %s" % line)


def write(name, data):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "seed-" + name), "wb") as f:
        f.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)


def claims(**over):
    c = {"sub": "alice", "aud": "my-app", "iss": "https://id.example", "exp": NOW + 600,
         "nbf": NOW - 10, "iat": NOW - 10}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def compact(v):
    return json.dumps(v, separators=(",", ":"))


check_target()
for f in os.listdir(OUT) if os.path.isdir(OUT) else []:
    if f.startswith("seed-"):
        os.remove(os.path.join(OUT, f))

keys = {"HS256": SECRET, "ES256": EC, "EdDSA": ED}
kids = {"HS256": "h", "ES256": "e", "EdDSA": "d"}
for alg, key in keys.items():
    write("ok-" + alg, jwt.encode(claims(), key, algorithm=alg))
    write("ok-kid-" + alg, jwt.encode(claims(), key, algorithm=alg, headers={"kid": kids[alg]}))
    write("wrong-kid-" + alg, jwt.encode(claims(), key, algorithm=alg, headers={"kid": "x"}))
    write("expired-" + alg, jwt.encode(claims(exp=NOW - 30), key, algorithm=alg))
    t = jwt.encode(claims(), key, algorithm=alg)
    write("bad-sig-" + alg, t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"))
write("ok-aud-array", jwt.encode(claims(aud=["x", "my-app"]), SECRET, algorithm="HS256"))
write("ok-real-exp", jwt.encode(claims(exp=NOW + 0.5), SECRET, algorithm="HS256"))
write("ok-typ-at-jwt", jwt.encode(claims(), EC, algorithm="ES256", headers={"typ": "at+jwt"}))
write("wrong-aud", jwt.encode(claims(aud="other"), SECRET, algorithm="HS256"))
write("wrong-iss", jwt.encode(claims(iss="x"), ED, algorithm="EdDSA"))
write("nbf-future", jwt.encode(claims(nbf=NOW + 31), SECRET, algorithm="HS256"))
write("no-sub", jwt.encode(claims(sub=None), SECRET, algorithm="HS256"))
write("no-exp", jwt.encode(claims(exp=None), SECRET, algorithm="HS256"))
write("alg-none", jwt.encode(claims(), None, algorithm="none"))
write("alg-hs384", jwt.encode(claims(), SECRET + SECRET, algorithm="HS384"))
write("crit", jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": ["b64"]}))
write("typ-jose", jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": "JOSE"}))
# ES256 with the DER signature OpenSSL makes rather than JOSE's R || S.
h = b64url(compact({"alg": "ES256"}).encode())
c = b64url(compact(claims()).encode())
from cryptography.hazmat.primitives import hashes  # noqa: E402
der = EC.sign((h + "." + c).encode(), ec.ECDSA(hashes.SHA256()))
write("es256-der", h + "." + c + "." + b64url(der))
write("two-segments", h + "." + c)
write("padding", jwt.encode(claims(), SECRET, algorithm="HS256") + "=")
write("empty", "")

# 'S': the target signs these with the HS256 secret.
plain = compact({"alg": "HS256"})
for name, cl in [("ok", claims()), ("expired", claims(exp=NOW - 30)),
                 ("exp-edge", claims(exp=NOW - 29)), ("nbf-edge", claims(nbf=NOW + 30)),
                 ("aud-array", claims(aud=["my-app", "b"])), ("aud-bad", claims(aud=["a", 1])),
                 ("sub-number", claims(sub=7)), ("sub-empty", claims(sub="")),
                 ("sub-control", claims(sub="a\u0001b")), ("sub-utf8", claims(sub="\u00e9quipe")),
                 ("exp-real", claims(exp=1.8e9 + 0.25)), ("exp-huge", claims(exp=1e300)),
                 ("deep", dict(claims(), x=[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]))]:
    write("S-" + name, "S" + plain + SEP + compact(cl))
write("S-dup-sub", "S" + plain + SEP + '{"sub":"a","sub":"b","exp":2e9,"aud":"my-app",'
      '"iss":"https://id.example"}')
write("S-kid", "S" + compact({"alg": "HS256", "kid": "h", "typ": "JWT"}) + SEP + compact(claims()))
write("S-alg-es256", "S" + compact({"alg": "ES256"}) + SEP + compact(claims()))
write("S-not-object", "S" + plain + SEP + "[1,2]")

# 'J': JWKS texts.
nums = EC.public_key().public_numbers()
ec_jwk = {"kty": "EC", "crv": "P-256", "kid": "e", "x": b64url(nums.x.to_bytes(32, "big")),
          "y": b64url(nums.y.to_bytes(32, "big"))}
write("J-ec", "J" + compact({"keys": [ec_jwk]}))
write("J-oct", "J" + compact({"keys": [{"kty": "oct", "alg": "HS256", "k": b64url(SECRET)}]}))
write("J-okp", "J" + compact({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(
    ED.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))}]}))
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA.public_key()))
write("J-rsa", "J" + compact({"keys": [dict(rsa_jwk, alg="RS256", kid="r")]}))
write("J-rsa-pss", "J" + compact({"keys": [dict(rsa_jwk, alg="PS256", kid="r"),
                                          dict(ec_jwk, alg="ES256")]}))
write("J-rsa-no-alg", "J" + compact({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}))
write("J-private", "J" + compact({"keys": [dict(ec_jwk, d="AAAA")]}))
write("J-enc", "J" + compact({"keys": [dict(ec_jwk, use="enc"), ec_jwk]}))
print("fuzz_jwt seeds in", OUT)
print(pem(EC) + pem(ED))
