"""Registration settings and sign-up rules: the config keys (and the old one), Mastodon's
field errors, invite states, and the mail sender's defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.config import ConfigError, SmtpConfig, load_config
from server.identity.invites import EXPIRED, REVOKED, USED_UP, VALID, Invite
from server.identity.registration import (
    APPROVAL,
    CLOSED,
    INVITE,
    OPEN,
    Policy,
    SignUp,
    check_fields,
    refusal,
)
from server.mail import Mailer

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _config(tmp_path: Path, text: str = "", **environ: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ, cwd=tmp_path)


def test_registrations_are_closed_by_default_and_email_is_optional(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.instance.registrations == CLOSED
    assert config.instance.require_email is False
    assert config.smtp.host == ""


@pytest.mark.parametrize(("old", "mode"), [("true", OPEN), ("false", CLOSED)])
def test_the_old_open_registrations_key_is_still_read(tmp_path: Path, old: str, mode: str) -> None:
    assert _config(
        tmp_path, f"[instance]\nopen_registrations = {old}\n"
    ).instance.registrations == (mode)
    from_env = _config(tmp_path, KITH_INSTANCE__OPEN_REGISTRATIONS=old)
    assert from_env.instance.registrations == mode


def test_the_new_key_wins_over_the_old_one(tmp_path: Path) -> None:
    text = '[instance]\nopen_registrations = true\nregistrations = "approval"\n'
    assert _config(tmp_path, text).instance.registrations == APPROVAL
    both = _config(
        tmp_path,
        KITH_INSTANCE__OPEN_REGISTRATIONS="true",
        KITH_INSTANCE__REGISTRATIONS="invite",
    )
    assert both.instance.registrations == INVITE


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[instance]\nregistrations = "maybe"\n', "instance.registrations"),
        ("[instance]\nopen_registrations = 3\n", "instance.open_registrations"),
        ('[smtp]\nsecurity = "tls13"\n', "smtp.security"),
        ("[smtp]\nport = 0\n", "smtp.port"),
        ('[smtp]\nhost = "smtp://mail.example"\n', "smtp.host"),
        ('[smtp]\nfrom_address = "nobody"\n', "smtp.from_address"),
        ("[api]\nsign_up_attempts_per_window = 0\n", "api.sign_up_attempts_per_window"),
    ],
)
def test_bad_registration_settings_are_refused_by_name(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _config(tmp_path, text)
    assert excinfo.value.key == key


def test_the_smtp_password_is_not_in_the_configs_repr(tmp_path: Path) -> None:
    config = _config(tmp_path, '[smtp]\nhost = "mail.example"\npassword = "hunter2"\n')
    assert config.smtp.password == "hunter2"
    assert "hunter2" not in repr(config)


def test_mail_comes_from_notifications_at_the_domain_unless_configured() -> None:
    assert Mailer(SmtpConfig(), "example.org:8443").sender == "notifications@example.org"
    named = Mailer(SmtpConfig(from_address="Kith <k@example.org>"), "example.org")
    assert named.sender == "Kith <k@example.org>"
    assert not Mailer(SmtpConfig(), "example.org").enabled


def test_the_modes_admit_as_mastodon_does() -> None:
    plain, invited = SignUp("alice", "password1"), SignUp("alice", "password1", invite_code="c")
    assert refusal(Policy(CLOSED), invited) is not None
    assert refusal(Policy(INVITE), plain) is not None
    assert refusal(Policy(INVITE), invited) is None
    assert refusal(Policy(OPEN), plain) is None
    assert refusal(Policy(APPROVAL), plain) is None
    assert [Policy(m).enabled for m in (OPEN, APPROVAL, INVITE, CLOSED)] == [
        True,
        True,
        False,
        False,
    ]


def _codes(sign_up: SignUp, policy: Policy | None = None) -> dict[str, str]:
    return {e.field: e.error for e in check_fields(sign_up, policy or Policy(OPEN))}


def test_fields_are_checked_with_mastodons_codes() -> None:
    good = SignUp("alice", "password1", "a@example.com", agreement=True, locale="pt-BR")
    assert _codes(good) == {}
    assert _codes(SignUp("Root", "password1", agreement=True)) == {"username": "ERR_RESERVED"}
    assert _codes(SignUp("a.b", "password1", agreement=True)) == {"username": "ERR_INVALID"}
    assert _codes(SignUp("alice", "pw", "a@b", agreement=True)) == {"password": "ERR_TOO_SHORT"}
    assert _codes(SignUp("alice", "password1", "a b@c", agreement=True)) == {"email": "ERR_INVALID"}
    assert _codes(SignUp("alice", "password1")) == {"agreement": "ERR_ACCEPTED"}
    required = Policy(APPROVAL, require_email=True, require_reason=True)
    assert _codes(SignUp("alice", "password1", agreement=True), required) == {
        "email": "ERR_BLANK",
        "reason": "ERR_BLANK",
    }
    # An invite needs no reason: it skips approval.
    invited = SignUp("alice", "password1", "a@b", agreement=True, invite_code="c")
    assert _codes(invited, required) == {}


def _invite(**changes: object) -> Invite:
    values: dict = {
        "id": 1,
        "code": "c",
        "created_by_id": None,
        "comment": None,
        "max_uses": 2,
        "uses": 0,
        "expires_at": NOW + timedelta(days=1),
        "revoked_at": None,
        "created_at": NOW,
    }
    return Invite(**{**values, **changes})


def test_an_invite_says_why_it_cannot_be_used() -> None:
    assert _invite().state(NOW) == VALID
    assert _invite(uses=2).state(NOW) == USED_UP
    assert _invite(max_uses=None, uses=1000).state(NOW) == VALID
    assert _invite().state(NOW + timedelta(days=1)) == EXPIRED
    assert _invite(expires_at=None).state(NOW + timedelta(days=999)) == VALID
    assert _invite(revoked_at=NOW, uses=2).state(NOW) == REVOKED
