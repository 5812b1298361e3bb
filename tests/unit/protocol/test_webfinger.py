"""WebFinger (RFC 7033): resource parsing, JRD documents and host-meta (RFC 6415)."""

import xml.etree.ElementTree as ET

import pytest

from protocol.errors import InvalidResource, ProtocolError
from protocol.webfinger import (
    PROFILE_PAGE_REL,
    RESOURCE_LENGTH_MAX,
    AcctResource,
    UrlResource,
    normalize_host,
    parse_resource,
    render_host_meta_json,
    render_host_meta_xrd,
    render_jrd,
)

ACTOR = "https://kith.example/users/alice"
PROFILE = "https://kith.example/@alice"
XRD_NS = "{http://docs.oasis-open.org/ns/xri/xrd-1.0}"
TEMPLATE = "https://kith.example/.well-known/webfinger?resource={uri}"


# --- parse_resource: the forms clients and servers send ---------------------------------


def test_acct_resource_yields_username_and_host() -> None:
    assert parse_resource("acct:alice@kith.example") == AcctResource("alice", "kith.example")


def test_bare_user_at_host_is_read_as_an_acct_resource() -> None:
    assert parse_resource("alice@kith.example") == AcctResource("alice", "kith.example")


@pytest.mark.parametrize("resource", ["@alice@kith.example", "acct:@alice@kith.example"])
def test_a_leading_at_sign_is_ignored(resource: str) -> None:
    assert parse_resource(resource) == AcctResource("alice", "kith.example")


def test_acct_prefix_is_case_insensitive() -> None:
    assert parse_resource("ACCT:alice@kith.example") == AcctResource("alice", "kith.example")


def test_percent_encoded_acct_resource_is_decoded() -> None:
    assert parse_resource("acct:alice%40kith.example") == AcctResource("alice", "kith.example")


def test_percent_encoded_at_in_the_userpart_stays_in_the_username() -> None:
    # RFC 7565 §7: acct:juliet%40capulet.example@shoppingsite.example names the user
    # "juliet@capulet.example" at shoppingsite.example; the host is after the last @.
    parsed = parse_resource("acct:juliet%40capulet.example@shoppingsite.example")
    assert parsed == AcctResource("juliet@capulet.example", "shoppingsite.example")


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_resource("  acct:alice@kith.example\n") == AcctResource("alice", "kith.example")


def test_acct_host_keeps_its_port() -> None:
    assert parse_resource("acct:alice@localhost:8080") == AcctResource("alice", "localhost:8080")


def test_acct_host_is_lowercased_but_username_is_not() -> None:
    assert parse_resource("acct:Alice@KITH.Example") == AcctResource("Alice", "kith.example")


def test_acct_host_trailing_dot_is_dropped() -> None:
    assert parse_resource("acct:alice@kith.example.") == AcctResource("alice", "kith.example")


def test_internationalised_acct_host_is_turned_into_its_idna_form() -> None:
    assert parse_resource("acct:alice@bücher.example") == AcctResource(
        "alice", "xn--bcher-kva.example"
    )


def test_https_url_resource_yields_host_and_path() -> None:
    assert parse_resource(ACTOR) == UrlResource(url=ACTOR, host="kith.example", path="/users/alice")


def test_url_resource_keeps_an_explicit_port_in_the_host() -> None:
    parsed = parse_resource("http://127.0.0.1:8080/users/alice")
    assert isinstance(parsed, UrlResource)
    assert parsed.host == "127.0.0.1:8080"
    assert parsed.path == "/users/alice"


def test_url_resource_host_is_normalised_and_the_url_kept_verbatim() -> None:
    url = "HTTPS://Bücher.Example:8443/users/alice"
    parsed = parse_resource(url)
    assert parsed == UrlResource(url=url, host="xn--bcher-kva.example:8443", path="/users/alice")


def test_url_resource_without_a_path_has_the_root_path() -> None:
    parsed = parse_resource("https://kith.example")
    assert isinstance(parsed, UrlResource)
    assert parsed.path == "/"


def test_resource_of_exactly_the_maximum_length_is_accepted() -> None:
    host = "kith.example"
    username = "a" * (RESOURCE_LENGTH_MAX - len("acct:@") - len(host))
    resource = f"acct:{username}@{host}"
    assert len(resource) == RESOURCE_LENGTH_MAX
    assert parse_resource(resource) == AcctResource(username, host)


# --- parse_resource: malformed input ---------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("   \t\n", id="whitespace"),
        pytest.param("alice", id="no-at"),
        pytest.param("acct:alice", id="acct-without-at"),
        pytest.param("acct:@kith.example", id="no-username"),
        pytest.param("@kith.example", id="bare-no-username"),
        pytest.param("acct:alice@", id="no-host"),
        pytest.param("acct:@", id="only-at"),
        pytest.param("/", id="slash"),
        pytest.param("acct:alice@kith.example/users", id="slash-in-host"),
        pytest.param("acct:al/ice@kith.example", id="slash-in-username"),
        pytest.param("acct:alice@kith.example?x=1", id="query"),
        pytest.param("acct:alice@kith.example#frag", id="fragment"),
        pytest.param("acct:al ice@kith.example", id="space-in-username"),
        pytest.param("acct:alice@kith .example", id="space-in-host"),
        pytest.param("acct:al%20ice@kith.example", id="encoded-space"),
        pytest.param("acct:alice@kith.example:http", id="port-not-a-number"),
        pytest.param("acct:alice@kith.example:", id="empty-port"),
        pytest.param("acct:alice@:8080", id="port-without-host"),
        pytest.param("https://", id="url-without-host"),
        pytest.param("https:///users/alice", id="url-with-empty-host"),
        pytest.param("https://kith.example:http/users/alice", id="url-port-not-a-number"),
        pytest.param("https://kith.example:99999/users/alice", id="url-port-out-of-range"),
        pytest.param("acct:alice@" + "a" * RESOURCE_LENGTH_MAX, id="too-long"),
    ],
)
def test_malformed_resource_raises_invalid_resource(resource: str | None) -> None:
    with pytest.raises(InvalidResource):
        parse_resource(resource)


def test_too_long_resource_is_refused_even_when_padding_is_whitespace() -> None:
    # The length limit protects the parser, so it applies to what was received.
    with pytest.raises(InvalidResource, match="too long"):
        parse_resource("acct:alice@kith.example" + " " * RESOURCE_LENGTH_MAX)


def test_missing_resource_reason_says_it_is_required() -> None:
    with pytest.raises(InvalidResource, match="required"):
        parse_resource(None)


def test_invalid_resource_is_a_protocol_error() -> None:
    # The HTTP edge translates ProtocolError into a 400; InvalidResource must be one.
    with pytest.raises(ProtocolError):
        parse_resource("nonsense")


@pytest.mark.parametrize("port", ["70000", "65536", "99999999"])
def test_acct_host_with_out_of_range_port_is_refused(port: str) -> None:
    # The URL form refuses these ports (urlsplit checks the range); the acct form must too.
    with pytest.raises(InvalidResource):
        parse_resource(f"acct:alice@kith.example:{port}")


@pytest.mark.parametrize("port", ["²", "٨٠"])
def test_acct_host_port_must_be_ascii_digits(port: str) -> None:
    # str.isdigit() is true for superscripts and Arabic-Indic digits; a port is ASCII.
    with pytest.raises(InvalidResource):
        parse_resource(f"acct:alice@kith.example:{port}")


# --- normalize_host --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Kith.Example", "kith.example"),
        (" kith.example. ", "kith.example"),
        ("KITH.example:443", "kith.example:443"),
        ("münchen.example", "xn--mnchen-3ya.example"),
        ("MÜNCHEN.example:8080", "xn--mnchen-3ya.example:8080"),
        ("localhost:8080", "localhost:8080"),
    ],
)
def test_normalize_host_lowercases_and_idna_encodes(raw: str, normalised: str) -> None:
    assert normalize_host(raw) == normalised


@pytest.mark.parametrize("raw", ["", ".", "a@b", "a/b", "a\\b", "a b", "host:x"])
def test_normalize_host_refuses_what_is_not_a_host(raw: str) -> None:
    with pytest.raises(InvalidResource):
        normalize_host(raw)


# --- render_jrd -------------------------------------------------------------------------


def _links_with_rel(jrd: dict, rel: str) -> list[dict]:
    return [link for link in jrd["links"] if link["rel"] == rel]


def test_jrd_has_exactly_one_self_link_of_activity_json_type() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE)
    self_links = _links_with_rel(jrd, "self")
    assert self_links == [{"rel": "self", "type": "application/activity+json", "href": ACTOR}]


def test_jrd_has_the_profile_page_link_as_html() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE)
    assert PROFILE_PAGE_REL == "http://webfinger.net/rel/profile-page"
    assert _links_with_rel(jrd, PROFILE_PAGE_REL) == [
        {"rel": PROFILE_PAGE_REL, "type": "text/html", "href": PROFILE}
    ]


def test_jrd_subject_is_the_one_given() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE)
    assert jrd["subject"] == "acct:alice@kith.example"


def test_jrd_aliases_are_profile_and_actor() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE)
    assert jrd["aliases"] == [PROFILE, ACTOR]


def test_jrd_without_profile_has_no_profile_link_and_only_the_actor_alias() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, None)
    assert _links_with_rel(jrd, PROFILE_PAGE_REL) == []
    assert len(_links_with_rel(jrd, "self")) == 1
    assert jrd["aliases"] == [ACTOR]


def test_jrd_rel_filter_keeps_only_the_requested_rels() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE, frozenset({"self"}))
    assert [link["rel"] for link in jrd["links"]] == ["self"]


def test_jrd_rel_filter_with_several_rels_keeps_each() -> None:
    jrd = render_jrd(
        "acct:alice@kith.example", ACTOR, PROFILE, frozenset({"self", PROFILE_PAGE_REL})
    )
    assert sorted(link["rel"] for link in jrd["links"]) == sorted(["self", PROFILE_PAGE_REL])


def test_jrd_rel_filter_with_unknown_rel_leaves_no_links_but_keeps_subject_and_aliases() -> None:
    # RFC 7033 §4.3: rel only filters links; subject and aliases stay.
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE, frozenset({"urn:unknown"}))
    assert jrd["links"] == []
    assert jrd["subject"] == "acct:alice@kith.example"
    assert jrd["aliases"] == [PROFILE, ACTOR]


def test_jrd_without_rel_filter_lists_every_link() -> None:
    jrd = render_jrd("acct:alice@kith.example", ACTOR, PROFILE, None)
    assert sorted(link["rel"] for link in jrd["links"]) == sorted(["self", PROFILE_PAGE_REL])


# --- host-meta --------------------------------------------------------------------------


def test_host_meta_xrd_is_well_formed_xml_with_an_lrdd_template() -> None:
    root = ET.fromstring(render_host_meta_xrd(TEMPLATE))  # noqa: S314 - our own output
    assert root.tag == f"{XRD_NS}XRD"
    links = root.findall(f"{XRD_NS}Link")
    assert len(links) == 1
    assert links[0].get("rel") == "lrdd"
    assert links[0].get("template") == TEMPLATE


def test_host_meta_xrd_escapes_markup_in_the_template() -> None:
    template = 'https://kith.example/wf?a=1&b="2"<x>&resource={uri}'
    root = ET.fromstring(render_host_meta_xrd(template))  # noqa: S314 - our own output
    assert root.find(f"{XRD_NS}Link").get("template") == template


def test_host_meta_xrd_declares_utf8() -> None:
    assert render_host_meta_xrd(TEMPLATE).startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_host_meta_json_has_the_same_lrdd_template() -> None:
    assert render_host_meta_json(TEMPLATE) == {"links": [{"rel": "lrdd", "template": TEMPLATE}]}
