"""FEP-8b32 object integrity proofs (eddsa-jcs-2022) and JCS (RFC 8785)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.multibase import base58btc_decode
from protocol.proofs import ProofError, _canonical, canonical_json, sign_object, verify_object

# FEP-8b32's published example: its key, document, time and resulting proof.
FEP_SEED = base58btc_decode("3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq")[2:]
FEP_DOCUMENT = {
    "@context": [
        "https://www.w3.org/ns/activitystreams",
        "https://w3id.org/security/data-integrity/v1",
    ],
    "type": "Create",
    "actor": "https://server.example/users/alice",
    "object": {"type": "Note", "content": "Hello world"},
}
FEP_PROOF = {
    "type": "DataIntegrityProof",
    "cryptosuite": "eddsa-jcs-2022",
    "verificationMethod": "https://server.example/users/alice#ed25519-key",
    "proofPurpose": "assertionMethod",
    "proofValue": (
        "z3sXaxjKs4M3BRicwWA9peyNPJvJqxtGsDmpt1jjoHCjgeUf71TRFz56osPSfDErszyLp5Ks1EhYSgpDaNM977Rg2"
    ),
    "created": "2023-02-24T23:36:38Z",
}


def _public(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


def test_the_fep_example_proof_verifies() -> None:
    signed = {**FEP_DOCUMENT, "proof": FEP_PROOF}
    assert verify_object(signed, _public(FEP_SEED)) == FEP_PROOF


def test_our_proofs_carry_the_context_and_verify() -> None:
    signed = sign_object(
        FEP_DOCUMENT,
        FEP_SEED,
        "https://server.example/users/alice#ed25519-key",
        "2023-02-24T23:36:38Z",
    )
    assert signed["proof"]["@context"] == FEP_DOCUMENT["@context"]
    assert verify_object(signed, _public(FEP_SEED))["cryptosuite"] == "eddsa-jcs-2022"
    assert "proof" not in FEP_DOCUMENT  # the input is left as it was


def _tampered(change: str) -> dict:
    signed = sign_object(FEP_DOCUMENT, FEP_SEED, "https://server.example/k", "2026-12-05T00:00:00Z")
    forged = copy.deepcopy(signed)
    if change == "content":
        forged["object"]["content"] = "Hello w0rld"
    elif change == "created":
        forged["proof"]["created"] = "2026-12-06T00:00:00Z"
    elif change == "context":
        forged["proof"]["@context"] = ["https://www.w3.org/ns/activitystreams"]
    elif change == "suite":
        forged["proof"]["cryptosuite"] = "eddsa-rdfc-2022"
    elif change == "purpose":
        forged["proof"]["proofPurpose"] = "authentication"
    elif change == "value":
        forged["proof"]["proofValue"] = "z" + "1" * 86
    elif change == "missing":
        del forged["proof"]
    return forged


@pytest.mark.parametrize(
    "change", ["content", "created", "context", "suite", "purpose", "value", "missing"]
)
def test_a_changed_document_or_proof_is_refused(change: str) -> None:
    with pytest.raises(ProofError):
        verify_object(_tampered(change), _public(FEP_SEED))


def test_another_key_does_not_verify() -> None:
    signed = sign_object(FEP_DOCUMENT, FEP_SEED, "https://server.example/k", "2026-12-05T00:00:00Z")
    with pytest.raises(ProofError, match="does not verify"):
        verify_object(signed, _public(bytes(32)))


def test_jcs_sorts_keys_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3's example: the emoji (a surrogate pair) sorts before U+FB33.
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    ordered = list(json.loads(canonical_json(dict.fromkeys(keys, 0))))
    assert ordered == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1e30, "1e+30"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (0.000000000000000000000000001, "1e-27"),
        (333333333.33333329, "333333333.3333333"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (0.000001, "0.000001"),
        (0.0000001, "1e-7"),
        (-1.5e-9, "-1.5e-9"),
        (123456789012, "123456789012"),
    ],
)
def test_jcs_writes_numbers_as_ecmascript_does(number: float, text: str) -> None:
    assert canonical_json(number) == text.encode()


def test_jcs_escapes_strings_minimally_and_drops_whitespace() -> None:
    value = {"b": ["\u00e9", "\n", '"', "\u001f"], "a": {"y": None, "x": True}}
    assert (
        canonical_json(value)
        == '{"a":{"x":true,"y":null},"b":["é","\\n","\\"","\\u001f"]}'.encode()
    )


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON)
def test_jcs_is_the_same_whichever_way_it_is_written(value: object) -> None:
    # The standard library's shortcut (integers, ASCII keys) and the full writer agree.
    assert canonical_json(value) == _canonical(value).encode()
