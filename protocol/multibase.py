"""Multibase base58btc and the multicodec prefixes of FEP-521a `Multikey` values."""

from __future__ import annotations

from protocol.errors import InvalidKey

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {ch: i for i, ch in enumerate(_ALPHABET)}
ED25519_PUB_PREFIX = b"\xed\x01"  # multicodec ed25519-pub, varint-encoded
ED25519_KEY_BYTES = 32


def base58btc_encode(data: bytes) -> str:
    """Encode bytes as base58 (Bitcoin alphabet), keeping leading zero bytes as '1'."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(_ALPHABET[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def base58btc_decode(text: str) -> bytes:
    """Decode base58 (Bitcoin alphabet); raise InvalidKey on a character outside it."""
    number = 0
    for ch in text:
        if ch not in _INDEX:
            raise InvalidKey(f"{ch!r} is not a base58btc character")
        number = number * 58 + _INDEX[ch]
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def encode_ed25519_multikey(public_key: bytes) -> str:
    """The `publicKeyMultibase` of an Ed25519 public key: 'z' + base58btc(0xed01 ‖ key)."""
    if len(public_key) != ED25519_KEY_BYTES:
        raise InvalidKey("an Ed25519 public key is 32 bytes")
    return "z" + base58btc_encode(ED25519_PUB_PREFIX + public_key)


def decode_ed25519_multikey(value: str) -> bytes:
    """The raw Ed25519 public key inside a `publicKeyMultibase` value."""
    if not value.startswith("z"):
        raise InvalidKey("only base58btc ('z') multibase keys are supported")
    raw = base58btc_decode(value[1:])
    if not raw.startswith(ED25519_PUB_PREFIX):
        raise InvalidKey("the multikey is not an Ed25519 public key")
    key = raw[len(ED25519_PUB_PREFIX) :]
    if len(key) != ED25519_KEY_BYTES:
        raise InvalidKey("an Ed25519 public key is 32 bytes")
    return key
