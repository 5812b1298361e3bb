"""Password hashes with scrypt, a memory-hard KDF from the standard library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 2^15 × 8 × 128 bytes = 32 MiB per hash: expensive to brute-force on GPUs, ~0.1 s here.
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_SALT_BYTES = 16
_KEY_BYTES = 32
PASSWORD_LENGTH_MIN = 8
PASSWORD_LENGTH_MAX = 1024


class WeakPassword(ValueError):
    """A password that does not meet the length rules."""


def check_password_rules(password: str) -> None:
    """Raise WeakPassword with the reason when the password is too short or too long."""
    if len(password) < PASSWORD_LENGTH_MIN:
        raise WeakPassword(f"passwords have at least {PASSWORD_LENGTH_MIN} characters")
    if len(password) > PASSWORD_LENGTH_MAX:
        raise WeakPassword(f"passwords have at most {PASSWORD_LENGTH_MAX} characters")


def hash_password(password: str) -> str:
    """A self-describing hash: `scrypt$N$r$p$salt$key` (base64)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(key)])


def verify_password(password: str, encoded: str | None) -> bool:
    """Whether `password` matches the stored hash (constant-time compare)."""
    if not encoded:
        return False
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError, OverflowError, MemoryError):
        return False  # a corrupt stored hash is a failed login, never a crash
    return hmac.compare_digest(actual, expected)


def generate_password() -> str:
    """A random password for operators who do not choose one."""
    return secrets.token_urlsafe(18)


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
