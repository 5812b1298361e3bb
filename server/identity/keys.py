"""Key pairs for actors: RSA-2048 for HTTP Signatures, Ed25519 for object proofs."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nacl.signing import SigningKey

RSA_KEY_BITS = 2048


@dataclass(frozen=True)
class ActorKeys:
    """A new actor's key material. The private halves never print (repr=False)."""

    rsa_public_pem: str
    ed25519_public: bytes
    rsa_private_pem: str = field(repr=False)
    ed25519_seed: bytes = field(repr=False)


@dataclass(frozen=True)
class Ed25519Key:
    public: bytes
    seed: bytes = field(repr=False)


def generate_ed25519_key() -> Ed25519Key:
    signing = SigningKey.generate()
    return Ed25519Key(public=bytes(signing.verify_key), seed=bytes(signing))


def generate_actor_keys() -> ActorKeys:
    """Fresh keys: the RSA public key as SPKI PEM ("BEGIN PUBLIC KEY"), as peers require."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    ed25519 = generate_ed25519_key()
    return ActorKeys(
        rsa_public_pem=public_pem,
        ed25519_public=ed25519.public,
        rsa_private_pem=private_pem,
        ed25519_seed=ed25519.seed,
    )
