"""Accept-header negotiation (RFC 9110 §12.5.1): q-values, specificity, 406."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.api.errors import ApiError
from server.api.negotiation import MediaRange, negotiate, parse_accept, require

AS2 = "application/activity+json"
LD = "application/ld+json"
HTML = "text/html"
JSON = "application/json"
OFFERS = [HTML, AS2, LD]

MASTODON_ACCEPT = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


# --- parse_accept ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_or_blank_header_accepts_anything(header: str | None) -> None:
    assert parse_accept(header) == [MediaRange("*", "*", 1.0)]


def test_parse_accept_reads_types_and_q_values_in_order() -> None:
    assert parse_accept("text/html;q=0.5, application/json, */*;q=0.1") == [
        MediaRange("text", "html", 0.5),
        MediaRange("application", "json", 1.0),
        MediaRange("*", "*", 0.1),
    ]


def test_parse_accept_lowercases_media_types_and_tolerates_spaces() -> None:
    assert parse_accept(" Text/HTML ; Q = 0.3 ") == [MediaRange("text", "html", 0.3)]


def test_parse_accept_ignores_parameters_other_than_q() -> None:
    assert parse_accept(MASTODON_ACCEPT) == [
        MediaRange("application", "activity+json", 1.0),
        MediaRange("application", "ld+json", 1.0),
    ]


@pytest.mark.parametrize(("q", "expected"), [("2", 1.0), ("-1", 0.0), ("abc", 0.0), ("", 0.0)])
def test_parse_accept_clamps_or_zeroes_bad_q_values(q: str, expected: float) -> None:
    assert parse_accept(f"text/html;q={q}") == [MediaRange("text", "html", expected)]


@pytest.mark.parametrize("header", ["garbage", "text", "/html", "text/", ",,,", ";q=1", "; ; ;"])
def test_parse_accept_skips_ranges_that_are_not_type_slash_subtype(header: str) -> None:
    assert parse_accept(header) == []


def test_parse_accept_keeps_valid_ranges_among_garbage() -> None:
    assert parse_accept("garbage, text/html, /x") == [MediaRange("text", "html", 1.0)]


# --- negotiate ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "*/*"])
def test_anything_goes_picks_the_first_offer(header: str | None) -> None:
    assert negotiate(header, OFFERS) == HTML
    assert negotiate(header, [AS2, HTML]) == AS2


def test_exact_match_is_chosen_over_earlier_offers() -> None:
    assert negotiate(AS2, OFFERS) == AS2


def test_mastodon_accept_gets_activity_json() -> None:
    assert negotiate(MASTODON_ACCEPT, OFFERS) == AS2


def test_browser_accept_gets_html() -> None:
    assert negotiate(FIREFOX_ACCEPT, [AS2, HTML]) == HTML


def test_higher_q_wins_over_header_order() -> None:
    assert negotiate("text/html;q=0.5, application/activity+json", OFFERS) == AS2


def test_equal_q_and_specificity_lets_the_earlier_offer_win() -> None:
    assert negotiate("application/ld+json, application/activity+json", OFFERS) == AS2
    assert negotiate("application/ld+json, application/activity+json", [LD, AS2]) == LD


def test_a_more_specific_range_decides_the_q_of_an_offer() -> None:
    # text/html;q=0 excludes HTML even though text/* would accept it.
    assert negotiate("text/*, text/html;q=0", [HTML]) is None
    assert negotiate("text/*, text/html;q=0", [HTML, "text/plain"]) == "text/plain"


def test_a_specific_range_can_raise_the_q_over_a_wildcard() -> None:
    assert negotiate("text/*;q=0.1, text/plain;q=0.9", [HTML, "text/plain"]) == "text/plain"


def test_type_wildcard_only_matches_its_type() -> None:
    assert negotiate("application/*", OFFERS) == AS2
    assert negotiate("image/*", OFFERS) is None


def test_exact_match_beats_a_wildcard_at_the_same_q() -> None:
    assert negotiate("*/*, application/ld+json", OFFERS) == LD


def test_wildcard_with_lower_q_still_admits_other_offers() -> None:
    assert negotiate("application/json, */*;q=0.1", [HTML, JSON]) == JSON
    assert negotiate("image/png, */*;q=0.1", [HTML, JSON]) == HTML


def test_q_zero_excludes_the_type() -> None:
    assert negotiate("application/activity+json;q=0", [AS2]) is None
    assert negotiate("*/*;q=0", OFFERS) is None


@pytest.mark.parametrize("q", ["0", "0.0", "0.000", "abc", "-3"])
def test_q_values_that_mean_zero_exclude_the_type(q: str) -> None:
    assert negotiate(f"application/json;q={q}", [JSON]) is None


@pytest.mark.parametrize("q", ["nan", "NaN", "-nan"])
def test_a_nan_q_value_is_garbage_and_excludes_the_type_like_other_garbage(q: str) -> None:
    # "q=abc" means 0 (excluded); "q=nan" parses as a float but is no qvalue either, and a
    # NaN in the score makes every comparison false.
    assert negotiate(f"application/json;q={q}", [JSON]) is None


def test_matching_is_case_insensitive() -> None:
    assert negotiate("Application/Activity+JSON", OFFERS) == AS2


def test_nothing_acceptable_gives_none() -> None:
    assert negotiate("image/png", OFFERS) is None


@pytest.mark.parametrize("header", ["garbage", ",,,", "text"])
def test_header_of_only_garbage_accepts_nothing(header: str) -> None:
    assert negotiate(header, OFFERS) is None


def test_no_offers_gives_none() -> None:
    assert negotiate("*/*", []) is None


def test_very_long_header_is_cut_not_fatal() -> None:
    header = "application/activity+json, " + "x/y, " * 10_000
    assert negotiate(header, OFFERS) == AS2


@given(st.text(max_size=300))
def test_negotiate_never_raises_and_only_returns_an_offer(header: str) -> None:
    assert negotiate(header, OFFERS) in [None, *OFFERS]


# --- require --------------------------------------------------------------------------------


def test_require_returns_the_negotiated_type() -> None:
    assert require(FIREFOX_ACCEPT, [AS2, HTML]) == HTML


def test_require_raises_406_listing_the_available_types() -> None:
    with pytest.raises(ApiError) as excinfo:
        require("image/png", [AS2, HTML])
    assert excinfo.value.status == 406
    assert excinfo.value.error == "not acceptable"
    assert AS2 in excinfo.value.description
    assert HTML in excinfo.value.description


def test_require_raises_406_when_q_zero_excludes_the_only_offer() -> None:
    with pytest.raises(ApiError) as excinfo:
        require("application/activity+json;q=0", [AS2])
    assert excinfo.value.status == 406
