"""HTTP signature verifications per second, next to raw cryptography verifies in the same run.

Run: python bench/httpsig.py [--runs 5] [--seconds 0.3]
Kith's figures include parsing the request's signature headers; keys are parsed once from PEM
beforehand, as the key cache does. The ratio to the raw verify survives a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from protocol.httpsig import (
    HttpRequest,
    load_public_key_pem,
    parse_signature,
    sign_cavage,
    sign_rfc9421,
    verify,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY_ID = "https://kith.example/users/alice#main-key"
INBOX = "https://remote.example/inbox"
BODY = b'{"@context":"https://www.w3.org/ns/activitystreams","type":"Follow"}' * 8


def rate(operation: Callable[[], object], seconds: float, runs: int) -> float:
    """Median operations per second over `runs` timed runs of about `seconds` each."""
    batch = 1
    while True:  # size a batch that takes about the requested time
        start = time.perf_counter()
        for _ in range(batch):
            operation()
        if time.perf_counter() - start >= seconds / 4:
            break
        batch *= 2
    batch = max(1, int(batch * seconds / max(time.perf_counter() - start, 1e-9)))
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(batch):
            operation()
        rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates)


def signed(request: HttpRequest, headers: dict[str, str]) -> HttpRequest:
    """The request as the receiving inbox sees it, signature headers included."""
    return request.with_headers(headers)


def cases(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> list:
    """(name, bound name, operation) for every measured operation."""
    post = HttpRequest("POST", INBOX, {"Content-Type": "application/activity+json"}, BODY)
    rsa_public = load_public_key_pem(pem(rsa_key))
    ed_public = load_public_key_pem(pem(ed_key))
    cavage = signed(post, sign_cavage(post, KEY_ID, rsa_key, NOW))
    rfc_rsa = signed(post, sign_rfc9421(post, KEY_ID, rsa_key, NOW))
    rfc_ed = signed(post, sign_rfc9421(post, KEY_ID, ed_key, NOW))
    data = b"x" * 200
    rsa_sig = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    ed_sig = ed_key.sign(data)
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return [
        ("raw RSA-2048 verify", None, lambda: rsa_public.verify(rsa_sig, data, pkcs1, sha256)),
        (
            "Kith cavage rsa-sha256",
            "raw RSA-2048 verify",
            lambda: verify(parse_signature(cavage), rsa_public, NOW),
        ),
        (
            "Kith RFC 9421 rsa-v1_5",
            "raw RSA-2048 verify",
            lambda: verify(parse_signature(rfc_rsa), rsa_public, NOW),
        ),
        ("raw Ed25519 verify", None, lambda: ed_public.verify(ed_sig, data)),
        (
            "Kith RFC 9421 ed25519",
            "raw Ed25519 verify",
            lambda: verify(parse_signature(rfc_ed), ed_public, NOW),
        ),
        ("PEM parse RSA-2048", None, lambda: load_public_key_pem(pem(rsa_key))),
    ]


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def main() -> None:
    """Measure every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    measured: dict[str, float] = {}
    print(f"median of {args.runs} runs of ~{args.seconds:.2f} s each\n")
    print(f"{'operation':<26} {'per second':>12} {'µs each':>9} {'vs bound':>9}")
    print("-" * 59)
    for name, bound, operation in cases(rsa_key, ed_key):
        measured[name] = rate(operation, args.seconds, args.runs)
        ratio = f"{measured[name] / measured[bound]:.0%}" if bound else "bound"
        per = measured[name]
        print(f"{name:<26} {per:>12,.0f} {1e6 / per:>9.1f} {ratio:>9}")


if __name__ == "__main__":
    main()
