"""OAuth scopes (Mastodon's names): parsing and which grant covers which requirement."""

import pytest

from server.identity.tokens import (
    DEFAULT_SCOPES,
    KNOWN_SCOPES,
    InvalidScope,
    parse_scopes,
    scope_allows,
)


def test_parse_scopes_keeps_order() -> None:
    assert parse_scopes("write read:statuses follow") == ("write", "read:statuses", "follow")


def test_parse_scopes_drops_repeats_keeping_the_first() -> None:
    assert parse_scopes("read write read push write") == ("read", "write", "push")


def test_parse_scopes_splits_on_any_whitespace() -> None:
    assert parse_scopes("  read\twrite\n follow ") == ("read", "write", "follow")


@pytest.mark.parametrize("text", ["read bogus", "READ", "read:everything", "admin", "read,write"])
def test_parse_scopes_refuses_unknown_scopes_naming_them(text: str) -> None:
    unknown = next(s for s in text.split() if s not in KNOWN_SCOPES)
    with pytest.raises(InvalidScope, match=repr(unknown)):
        parse_scopes(text)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_parse_scopes_refuses_an_empty_list(text: str) -> None:
    with pytest.raises(InvalidScope, match="at least one"):
        parse_scopes(text)


def test_default_scopes_are_known_and_parse() -> None:
    assert parse_scopes(" ".join(DEFAULT_SCOPES)) == DEFAULT_SCOPES


@pytest.mark.parametrize(
    ("granted", "required"),
    [
        ({"read"}, "read"),
        ({"read"}, "read:statuses"),
        ({"read"}, "read:notifications"),
        ({"write"}, "write:media"),
        ({"admin:read"}, "admin:read:accounts"),
        ({"admin:write"}, "admin:write:reports"),
        ({"follow"}, "read:follows"),
        ({"follow"}, "write:follows"),
        ({"follow"}, "read:blocks"),
        ({"follow"}, "write:blocks"),
        ({"follow"}, "read:mutes"),
        ({"follow"}, "write:mutes"),
        ({"read:statuses"}, "read:statuses"),
        ({"push", "read:statuses"}, "push"),
    ],
)
def test_grant_covers(granted: set[str], required: str) -> None:
    assert scope_allows(frozenset(granted), required)


@pytest.mark.parametrize(
    ("granted", "required"),
    [
        ({"write"}, "read"),
        ({"write"}, "read:statuses"),
        ({"read"}, "write:statuses"),
        ({"read:statuses"}, "read"),
        ({"read:statuses"}, "read:accounts"),
        ({"read"}, "admin:read:accounts"),
        ({"read"}, "admin:read"),
        ({"admin:read"}, "admin:write:accounts"),
        ({"admin:read:accounts"}, "admin:read"),
        ({"follow"}, "read:statuses"),
        ({"follow"}, "write:statuses"),
        ({"follow"}, "read"),
        ({"read", "write", "follow"}, "push"),
        (set(), "read"),
    ],
)
def test_grant_does_not_cover(granted: set[str], required: str) -> None:
    assert not scope_allows(frozenset(granted), required)


def test_every_known_scope_is_covered_by_granting_it() -> None:
    for scope in KNOWN_SCOPES:
        assert scope_allows(frozenset({scope}), scope)


def test_read_and_write_together_cover_everything_non_admin_except_push_and_profile() -> None:
    granted = frozenset({"read", "write"})
    for scope in KNOWN_SCOPES:
        expected = scope.startswith(("read", "write"))
        assert scope_allows(granted, scope) is expected, scope
