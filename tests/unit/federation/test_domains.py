"""Which hosts a node refuses: suspended domains (with subdomains and ports), suspended actors,
and in allowlist mode every domain not listed."""

from __future__ import annotations

from federation.domains import DomainRules, matches


def test_a_domain_covers_its_subdomains_and_ports_but_not_lookalikes() -> None:
    blocked = frozenset({"bad.example"})
    assert matches("bad.example", blocked)
    assert matches("BAD.example:8443", blocked)
    assert matches("media.bad.example", blocked)
    assert not matches("notbad.example", blocked)
    assert not matches("bad.example.org", blocked)


def test_an_entry_with_a_port_names_that_authority_only() -> None:
    blocked = frozenset({"127.0.0.1:8001"})
    assert matches("127.0.0.1:8001", blocked)
    assert not matches("127.0.0.1:8002", blocked)
    assert not matches("127.0.0.1", blocked)


def test_suspended_domains_and_actors_are_refused_and_the_rules_can_change() -> None:
    rules = DomainRules(suspended=["bad.example"])
    assert rules.refuses("https://bad.example/users/x")
    assert rules.refuses("https://ok.example/users/a", "https://a.bad.example/key")
    assert not rules.refuses("https://ok.example/users/a")
    rules.update([], None, actors=["https://ok.example/users/spammer"])
    assert rules.refuses("https://ok.example/users/spammer")
    assert not rules.refuses("https://ok.example/users/a")
    assert not rules.refuses("https://bad.example/users/x")
    assert not rules.refuses("", "not a url")


def test_in_allowlist_mode_only_listed_domains_federate() -> None:
    rules = DomainRules(suspended=["bad.friend.example"], allowed=["friend.example"])
    assert not rules.refuses_host("friend.example")
    assert not rules.refuses_host("social.friend.example:443")
    assert rules.refuses_host("bad.friend.example")  # a suspension wins
    assert rules.refuses_host("stranger.example")
