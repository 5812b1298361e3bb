"""Password hashing with scrypt: round trip, salting, malformed hashes, length rules."""

import base64

import pytest

from server.identity.passwords import (
    PASSWORD_LENGTH_MAX,
    PASSWORD_LENGTH_MIN,
    WeakPassword,
    check_password_rules,
    generate_password,
    hash_password,
    verify_password,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


def test_hash_verifies_with_the_same_password(stored: str) -> None:
    assert verify_password(PASSWORD, stored) is True


@pytest.mark.parametrize(
    "attempt",
    [
        "correct horse battery stapl",
        "Correct horse battery staple",
        PASSWORD + " ",
        "",
        "wrong password",
    ],
)
def test_hash_refuses_any_other_password(stored: str, attempt: str) -> None:
    assert verify_password(attempt, stored) is False


def test_hash_is_self_describing_scrypt_with_salt_and_key(stored: str) -> None:
    scheme, n, r, p, salt, key = stored.split("$")
    assert scheme == "scrypt"
    assert int(n) >= 2**14
    assert int(r) >= 8
    assert int(p) >= 1
    assert len(base64.b64decode(salt)) >= 16
    assert len(base64.b64decode(key)) >= 32


def test_hash_does_not_contain_the_password(stored: str) -> None:
    assert PASSWORD not in stored


def test_two_hashes_of_one_password_differ_by_salt_and_both_verify(stored: str) -> None:
    other = hash_password(PASSWORD)
    assert other != stored
    assert other.split("$")[4] != stored.split("$")[4]
    assert verify_password(PASSWORD, other)


def test_non_ascii_password_round_trips() -> None:
    password = "pässwörd-日本語-🔑"
    stored = hash_password(password)
    assert verify_password(password, stored)
    assert not verify_password("passwort-日本語-🔑", stored)


def test_tampered_key_fails_verification(stored: str) -> None:
    parts = stored.split("$")
    key = bytearray(base64.b64decode(parts[5]))
    key[0] ^= 1
    parts[5] = base64.b64encode(bytes(key)).decode("ascii")
    assert verify_password(PASSWORD, "$".join(parts)) is False


def test_tampered_salt_fails_verification(stored: str) -> None:
    parts = stored.split("$")
    parts[4] = base64.b64encode(b"\0" * 16).decode("ascii")
    assert verify_password(PASSWORD, "$".join(parts)) is False


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("plaintext", id="no-separators"),
        pytest.param("scrypt$16384$8$1$c2FsdA==", id="too-few-fields"),
        pytest.param("scrypt$16384$8$1$c2FsdA==$a2V5$extra", id="too-many-fields"),
        pytest.param("bcrypt$16384$8$1$c2FsdA==$a2V5", id="other-scheme"),
        pytest.param("scrypt$abc$8$1$c2FsdA==$a2V5", id="n-not-a-number"),
        pytest.param("scrypt$1.5$8$1$c2FsdA==$a2V5", id="n-fraction"),
        pytest.param("scrypt$16383$8$1$c2FsdA==$a2V5", id="n-not-power-of-two"),
        pytest.param("scrypt$16384$0$1$c2FsdA==$a2V5", id="r-zero"),
        pytest.param("scrypt$16384$8$0$c2FsdA==$a2V5", id="p-zero"),
        pytest.param("scrypt$1048576$8$1$c2FsdA==$a2V5", id="n-over-memory-limit"),
        pytest.param("scrypt$16384$8$1$!!!$a2V5", id="salt-not-base64"),
        pytest.param("scrypt$16384$8$1$c2FsdA==$a2V", id="key-bad-padding"),
        pytest.param("scrypt$16384$8$1$sälz$a2V5", id="salt-not-ascii"),
        pytest.param("scrypt$-16384$8$1$c2FsdA==$a2V5", id="n-negative"),
        pytest.param("scrypt$16384$-8$1$c2FsdA==$a2V5", id="r-negative"),
        pytest.param(f"scrypt${2**64}$8$1$c2FsdA==$a2V5", id="n-overflows"),
    ],
)
def test_malformed_stored_hash_is_a_failed_verification_not_an_error(
    encoded: str | None,
) -> None:
    assert verify_password(PASSWORD, encoded) is False


def test_generated_passwords_pass_the_rules_and_differ() -> None:
    first, second = generate_password(), generate_password()
    check_password_rules(first)
    check_password_rules(second)
    assert first != second


def test_password_of_minimum_length_is_accepted() -> None:
    check_password_rules("x" * PASSWORD_LENGTH_MIN)
    check_password_rules("x" * PASSWORD_LENGTH_MAX)


def test_password_shorter_than_the_minimum_is_refused_with_the_rule() -> None:
    with pytest.raises(WeakPassword, match=str(PASSWORD_LENGTH_MIN)):
        check_password_rules("x" * (PASSWORD_LENGTH_MIN - 1))


def test_password_longer_than_the_maximum_is_refused_with_the_rule() -> None:
    with pytest.raises(WeakPassword, match=str(PASSWORD_LENGTH_MAX)):
        check_password_rules("x" * (PASSWORD_LENGTH_MAX + 1))


def test_length_rules_count_characters_not_bytes() -> None:
    check_password_rules("日" * PASSWORD_LENGTH_MIN)
