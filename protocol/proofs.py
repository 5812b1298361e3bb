"""Object integrity proofs (FEP-8b32): Data Integrity `eddsa-jcs-2022` with Ed25519 keys.

A proof signs the JCS canonical form (RFC 8785) of the document without its proof, together
with the proof's own options: SHA-256 of each, concatenated, signed with Ed25519, the signature
written as base58btc multibase. Proofs we make carry the document's `@context` inside them (the
current cryptosuite text); proofs without it (earlier FEP-8b32 examples) still verify. Pure: the
caller finds the key for `verificationMethod` and checks that it belongs to the right actor.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from protocol.errors import ProtocolError
from protocol.multibase import base58btc_decode, base58btc_encode

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-jcs-2022"


class ProofError(ProtocolError):
    """A proof that is missing, malformed or does not verify, with why."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS): keys sorted by UTF-16 code units, ECMAScript number forms, no spaces."""
    if _plain(value):
        # Without numbers that are not integers and with ASCII keys, the standard library
        # writes JCS (it escapes strings as ECMAScript does), five times faster.
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return _canonical(value).encode("utf-8")


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        return all(
            type(key) is str and key.isascii() and _plain(item) for key, item in value.items()
        )
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False


def _canonical(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ProofError("JSON object keys must be strings")
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(value[k])}" for k in keys) + "}"
    raise ProofError(f"not a JSON value: {type(value).__name__}")


def _number(value: float) -> str:
    """ECMAScript's Number::toString from the shortest round-tripping digits."""
    if not math.isfinite(value):
        raise ProofError("JSON has no NaN or Infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(value))).as_tuple()[1:]
    digits = "".join(map(str, digits_tuple)).rstrip("0")
    exponent += len("".join(map(str, digits_tuple))) - len(digits)  # type: ignore[operator]
    k = len(digits)
    n = k + exponent  # type: ignore[operator]
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        power = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"
    return sign + text


def sign_object(
    document: dict[str, Any],
    seed: bytes,
    verification_method: str,
    created: str,
    purpose: str = "assertionMethod",
) -> dict[str, Any]:
    """A copy of `document` with an `eddsa-jcs-2022` proof by the Ed25519 key `seed`."""
    if "proof" in document:
        raise ProofError("the document already has a proof")
    options: dict[str, Any] = {
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "verificationMethod": verification_method,
        "proofPurpose": purpose,
        "created": created,
    }
    if "@context" in document:
        options["@context"] = document["@context"]
    signature = SigningKey(seed).sign(_hash_data(options, document)).signature
    return {**document, "proof": {**options, "proofValue": "z" + base58btc_encode(signature)}}


def proof_of(document: dict[str, Any]) -> dict[str, Any]:
    """The document's one proof, checked for shape (not yet verified)."""
    proof = document.get("proof")
    if not isinstance(proof, dict):
        raise ProofError("the document has no proof (or more than one)")
    if proof.get("type") != PROOF_TYPE or proof.get("cryptosuite") != CRYPTOSUITE:
        raise ProofError(f"the proof is not a {PROOF_TYPE} with {CRYPTOSUITE}")
    for key in ("verificationMethod", "proofPurpose", "proofValue"):
        if not isinstance(proof.get(key), str):
            raise ProofError(f"the proof has no {key}")
    if "@context" in proof and proof["@context"] != document.get("@context"):
        raise ProofError("the proof's @context is not the document's")
    return proof


def verify_object(
    document: dict[str, Any], public_key: bytes, purpose: str = "assertionMethod"
) -> dict[str, Any]:
    """Check the document's proof with the Ed25519 `public_key`; returns the proof."""
    proof = proof_of(document)
    if proof["proofPurpose"] != purpose:
        raise ProofError(f"the proof's purpose is not {purpose}")
    value = proof["proofValue"]
    if not value.startswith("z"):
        raise ProofError("the proofValue is not base58btc multibase")
    try:
        signature = base58btc_decode(value[1:])
    except ValueError:
        raise ProofError("the proofValue is not base58btc") from None
    options = {key: item for key, item in proof.items() if key != "proofValue"}
    unsigned = {key: item for key, item in document.items() if key != "proof"}
    try:
        VerifyKey(public_key).verify(_hash_data(options, unsigned), signature)
    except (BadSignatureError, ValueError, TypeError):
        raise ProofError("the proof does not verify") from None
    return proof


def _hash_data(options: dict[str, Any], unsigned: dict[str, Any]) -> bytes:
    return (
        hashlib.sha256(canonical_json(options)).digest()
        + hashlib.sha256(canonical_json(unsigned)).digest()
    )
