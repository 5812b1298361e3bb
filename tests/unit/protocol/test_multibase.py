"""base58btc and FEP-521a Multikey values, checked against published vectors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.errors import InvalidKey
from protocol.multibase import (
    ED25519_PUB_PREFIX,
    base58btc_decode,
    base58btc_encode,
    decode_ed25519_multikey,
    encode_ed25519_multikey,
)

# The did:key method's Ed25519 test vector (w3c-ccg did-method-key, ed25519-x25519.json):
# the key pair from the all-zero 32-byte seed. Its raw public key in base58btc is
# 4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS and its did:key is
# did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp.
ZERO_SEED_PUBLIC_HEX = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
ZERO_SEED_PUBLIC_BASE58 = "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS"
ZERO_SEED_MULTIKEY = "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"

# FEP-521a's own test scenario ("Representing Ed25519 public key", fep-521a.feature).
FEP_521A_PUBLIC_HEX = "2e6fcce36701dc791488e0d0b1745cc1e33a4c1c9fcc41c63bd343dbbe0970e6"
FEP_521A_MULTIKEY = "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"

# base58 vectors from the IETF draft "The Base58 Encoding Scheme" (draft-msporny-base58 §5).
IETF_VECTORS = [
    (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
    (
        b"The quick brown fox jumps over the lazy dog.",
        "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z",
    ),
    (bytes.fromhex("0000287fb4cd"), "11233QC4"),
]


@pytest.mark.parametrize(("data", "text"), IETF_VECTORS)
def test_base58btc_encodes_the_ietf_draft_vectors(data: bytes, text: str) -> None:
    assert base58btc_encode(data) == text


@pytest.mark.parametrize(("data", "text"), IETF_VECTORS)
def test_base58btc_decodes_the_ietf_draft_vectors(data: bytes, text: str) -> None:
    assert base58btc_decode(text) == data


@pytest.mark.parametrize(
    ("data", "text"),
    [(b"", ""), (b"\0", "1"), (b"\0\0\0", "111"), (b"\0\x01", "12"), (b"\x39", "z")],
)
def test_base58btc_edge_values(data: bytes, text: str) -> None:
    assert base58btc_encode(data) == text
    assert base58btc_decode(text) == data


@given(st.binary(max_size=128))
def test_base58btc_round_trips_any_bytes(data: bytes) -> None:
    assert base58btc_decode(base58btc_encode(data)) == data


@given(st.integers(min_value=0, max_value=16), st.binary(max_size=64))
def test_base58btc_keeps_every_leading_zero_byte(zeros: int, rest: bytes) -> None:
    data = b"\0" * zeros + rest
    encoded = base58btc_encode(data)
    assert base58btc_decode(encoded) == data
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    assert encoded[:leading_zeros] == "1" * leading_zeros
    assert encoded[leading_zeros : leading_zeros + 1] != "1"


@pytest.mark.parametrize("character", ["0", "O", "I", "l", "+", "/", "=", " ", "é"])
def test_base58btc_decode_refuses_characters_outside_the_alphabet(character: str) -> None:
    with pytest.raises(InvalidKey, match="base58btc"):
        base58btc_decode("2NEpo7T" + character + "ZRRrLZSi2U")


def test_zero_seed_public_key_matches_the_did_key_vector() -> None:
    # Derive the key with libsodium so the vector is checked end to end, not copied.
    public = bytes(SigningKey(bytes(32)).verify_key)
    assert public.hex() == ZERO_SEED_PUBLIC_HEX
    assert base58btc_encode(public) == ZERO_SEED_PUBLIC_BASE58
    assert encode_ed25519_multikey(public) == ZERO_SEED_MULTIKEY


def test_did_key_vector_decodes_to_the_zero_seed_public_key() -> None:
    assert decode_ed25519_multikey(ZERO_SEED_MULTIKEY).hex() == ZERO_SEED_PUBLIC_HEX


def test_fep_521a_vector_encodes_and_decodes() -> None:
    public = bytes.fromhex(FEP_521A_PUBLIC_HEX)
    assert encode_ed25519_multikey(public) == FEP_521A_MULTIKEY
    assert decode_ed25519_multikey(FEP_521A_MULTIKEY) == public


@given(st.binary(min_size=32, max_size=32))
def test_ed25519_multikey_starts_with_z6mk_and_round_trips(public: bytes) -> None:
    encoded = encode_ed25519_multikey(public)
    assert encoded.startswith("z6Mk")
    assert decode_ed25519_multikey(encoded) == public


def test_ed25519_multikey_is_z_plus_base58_of_the_multicodec_prefixed_key() -> None:
    public = bytes(range(32))
    encoded = encode_ed25519_multikey(public)
    assert ED25519_PUB_PREFIX == b"\xed\x01"
    assert base58btc_decode(encoded[1:]) == b"\xed\x01" + public


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_encode_refuses_a_key_that_is_not_32_bytes(length: int) -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        encode_ed25519_multikey(b"\x01" * length)


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("u", id="base64url"),
        pytest.param("f", id="base16"),
        pytest.param("Z", id="capital-z"),
        pytest.param("", id="none"),
    ],
)
def test_decode_refuses_multibase_other_than_base58btc(prefix: str) -> None:
    with pytest.raises(InvalidKey, match="base58btc"):
        decode_ed25519_multikey(prefix + ZERO_SEED_MULTIKEY[1:])


def test_decode_refuses_an_x25519_multicodec_key() -> None:
    # multicodec x25519-pub is 0xec 0x01; such keys start with z6LS.
    x25519 = "z" + base58btc_encode(b"\xec\x01" + bytes(32))
    assert x25519.startswith("z6LS")
    with pytest.raises(InvalidKey, match="not an Ed25519"):
        decode_ed25519_multikey(x25519)


def test_decode_refuses_a_raw_key_without_multicodec_prefix() -> None:
    with pytest.raises(InvalidKey):
        decode_ed25519_multikey("z" + ZERO_SEED_PUBLIC_BASE58)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_decode_refuses_an_ed25519_multikey_of_the_wrong_length(length: int) -> None:
    value = "z" + base58btc_encode(ED25519_PUB_PREFIX + b"\x07" * length)
    with pytest.raises(InvalidKey, match="32 bytes"):
        decode_ed25519_multikey(value)


@pytest.mark.parametrize("character", ["0", "O", "I", "l"])
def test_decode_refuses_a_multikey_with_a_non_base58_character(character: str) -> None:
    value = ZERO_SEED_MULTIKEY[:10] + character + ZERO_SEED_MULTIKEY[11:]
    with pytest.raises(InvalidKey):
        decode_ed25519_multikey(value)
