"""Keys, tokens and certificates for the authentication tests, made at run time.

Tokens are signed by PyJWT (python3-jwt) with keys from python3-cryptography, an
implementation independent of the daemon's (OpenSSL through src/auth). Tokens PyJWT will
not make (alg none, an HMAC keyed with a PEM public key) are built by hand here.
Certificates are made by the `openssl` command.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

AUDIENCE = "transports-test"
ISSUER = "https://id.test"
LEEWAY = 5

HS_SECRETS = {
    "HS256": "s" * 32 + "-hs256",
    "HS384": "t" * 48 + "-hs384",
    "HS512": "u" * 64 + "-hs512",
}
HS_ENV = {"HS256": "TP_TEST_HS256", "HS384": "TP_TEST_HS384", "HS512": "TP_TEST_HS512"}


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_ec(key, kid):
    n = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64u(n.x.to_bytes(size, "big")), "y": b64u(n.y.to_bytes(size, "big"))}


class Keys:
    """Every key the test daemon trusts, and the means to sign with each."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        self.p384 = ec.generate_private_key(ec.SECP384R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        # A JWKS of two ES256 keys told apart by kid (a rotation in progress).
        self.k1 = ec.generate_private_key(ec.SECP256R1())
        self.k2 = ec.generate_private_key(ec.SECP256R1())
        # A key nobody trusts.
        self.stranger = ec.generate_private_key(ec.SECP256R1())

    def write(self, directory):
        """Writes the public keys next to the config; returns the config's keys array."""
        files = {"rsa.pem": pem_public(self.rsa), "p256.pem": pem_public(self.p256),
                 "p384.pem": pem_public(self.p384), "ed.pem": pem_public(self.ed)}
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        with open(os.path.join(directory, "jwks.json"), "w") as f:
            json.dump({"keys": [jwk_ec(self.k1, "k1"), jwk_ec(self.k2, "k2")]}, f)
        keys = [{"alg": a, "secret_env": HS_ENV[a]} for a in ("HS256", "HS384", "HS512")]
        keys += [{"alg": a, "public_key_file": "rsa.pem"}
                 for a in ("RS256", "RS384", "RS512", "PS256")]
        keys += [{"alg": "ES256", "public_key_file": "p256.pem"},
                 {"alg": "ES384", "public_key_file": "p384.pem"},
                 {"alg": "EdDSA", "public_key_file": "ed.pem"},
                 {"jwks_file": "jwks.json"}]
        return keys

    def env(self):
        env = dict(os.environ)
        for alg, name in HS_ENV.items():
            env[name] = HS_SECRETS[alg]
        return env

    def signing_key(self, alg):
        if alg in HS_SECRETS:
            return HS_SECRETS[alg]
        return {"RS256": self.rsa, "RS384": self.rsa, "RS512": self.rsa, "PS256": self.rsa,
                "ES256": self.p256, "ES384": self.p384, "EdDSA": self.ed}[alg]

    def token(self, alg="ES256", sub="alice", exp_in=600, key=None, headers=None, **claims):
        """A token: aud and iss as configured unless given (None drops them)."""
        now = int(time.time())
        payload = {"sub": sub, "aud": AUDIENCE, "iss": ISSUER, "iat": now}
        if exp_in is not None:
            payload["exp"] = now + exp_in
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key if key is not None else self.signing_key(alg),
                          algorithm=alg, headers=headers)


def unsigned_token(alg="none", sub="alice", exp_in=600):
    header = b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64u(json.dumps({"sub": sub, "aud": AUDIENCE, "iss": ISSUER,
                            "exp": int(time.time()) + exp_in}).encode())
    return "%s.%s." % (header, body)


def hmac_token(secret, alg="HS256", sub="alice", exp_in=600):
    """An HS256 token keyed with any bytes: the RSA public key's PEM, for the classic
    algorithm confusion (RFC 8725 2.1)."""
    header = b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64u(json.dumps({"sub": sub, "aud": AUDIENCE, "iss": ISSUER,
                            "exp": int(time.time()) + exp_in}).encode())
    signing = ("%s.%s" % (header, body)).encode()
    sig = hmac.new(secret, signing, hashlib.sha256).digest()
    return "%s.%s.%s" % (header, body, b64u(sig))


def make_cert(directory, name, cn="127.0.0.1"):
    """A self-signed P-256 certificate for 127.0.0.1 made by `openssl`; returns
    (cert path, key path)."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key
