"""HTTP Signatures: cavage-12 and RFC 9421 round trips, every refusal, and interop both ways."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import http_message_signatures as hms
import httpsig
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from http_message_signatures import algorithms
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.errors import InvalidKey, ProtocolError
from protocol.httpsig import (
    HttpRequest,
    SignatureError,
    SignatureFailure,
    SignatureScheme,
    check_content_digest,
    check_digest,
    content_digest_header,
    digest_header,
    load_public_key_pem,
    parse_signature,
    sign_cavage,
    sign_rfc9421,
    verify,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY_ID = "https://kith.example/users/alice#main-key"
INBOX = "https://remote.example/users/bob/inbox"
OUTBOX = "https://remote.example/users/bob/outbox?page=true"
BODY = b'{"type":"Follow","actor":"https://kith.example/users/alice"}'


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def any_key(request, rsa_key, ed_key):
    return rsa_key if request.param == "rsa" else ed_key


def post(body: bytes = BODY, url: str = INBOX) -> HttpRequest:
    return HttpRequest("POST", url, {"Content-Type": "application/activity+json"}, body)


def get(url: str = OUTBOX) -> HttpRequest:
    return HttpRequest("GET", url, {"Accept": "application/activity+json"})


def cavage(request: HttpRequest, key, now: datetime = NOW, **options) -> HttpRequest:
    return request.with_headers(sign_cavage(request, KEY_ID, key, now, **options))


def rfc9421(request: HttpRequest, key, now: datetime = NOW, **options) -> HttpRequest:
    return request.with_headers(sign_rfc9421(request, KEY_ID, key, now, **options))


def check(request: HttpRequest, public_key, now: datetime = NOW) -> None:
    verify(parse_signature(request), public_key, now)


def refusal(request: HttpRequest, public_key, now: datetime = NOW) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        check(request, public_key, now)
    return caught.value


def moved(request: HttpRequest, *, url: str | None = None, body: bytes | None = None):
    """The same signed headers on a different URL or body, as a tamperer would send them."""
    return HttpRequest(
        request.method,
        url if url is not None else request.url,
        request.fields,
        body if body is not None else request.body,
    )


def pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- Round trips -----------------------------------------------------------------------------


def test_cavage_post_round_trips_with_mastodons_header_set(rsa_key):
    request = cavage(post(), rsa_key)

    parsed = parse_signature(request)

    assert parsed.scheme is SignatureScheme.CAVAGE
    assert parsed.key_id == KEY_ID
    assert parsed.algorithm == "rsa-sha256"
    assert parsed.components == ("(request-target)", "host", "date", "digest", "content-type")
    assert request.header("digest") == digest_header(BODY)
    assert request.header("date") == "Sat, 01 Mar 2025 12:00:00 GMT"
    verify(parsed, rsa_key.public_key(), NOW)


def test_cavage_get_signs_accept_and_host_without_digest(rsa_key):
    added = sign_cavage(get(), KEY_ID, rsa_key, NOW)

    assert "Digest" not in added
    assert added["Host"] == "remote.example"
    assert 'headers="(request-target) host date accept"' in added["Signature"]
    check(get().with_headers(added), rsa_key.public_key())


def test_cavage_with_ed25519_key_is_labelled_hs2019_and_round_trips(ed_key):
    request = cavage(post(), ed_key)

    assert parse_signature(request).algorithm == "hs2019"
    check(request, ed_key.public_key())


def test_rfc9421_round_trips_with_both_key_types(any_key):
    request = rfc9421(post(), any_key)

    parsed = parse_signature(request)

    assert parsed.scheme is SignatureScheme.RFC9421
    assert parsed.key_id == KEY_ID
    assert parsed.components == ("@method", "@target-uri", "content-digest")
    expected_alg = "rsa-v1_5-sha256" if isinstance(any_key, rsa.RSAPrivateKey) else "ed25519"
    assert parsed.algorithm == expected_alg
    assert request.header("content-digest") == content_digest_header(BODY)
    verify(parsed, any_key.public_key(), NOW)


def test_rfc9421_get_round_trips_without_content_digest(any_key):
    request = rfc9421(get(), any_key)

    assert request.header("content-digest") is None
    check(request, any_key.public_key())


def test_rfc9421_covers_field_names_in_lower_case_and_scheme(rsa_key):
    components = ("@method", "@scheme", "@target-uri", "Content-Type", "Content-Digest")
    signed = rfc9421(post(), rsa_key, components=components)

    assert '"content-type" "content-digest"' in signed.header("signature-input")
    check(signed, rsa_key.public_key())


def test_rfc9421_accepts_authority_and_path_instead_of_target_uri(rsa_key):
    components = ("@method", "@authority", "@path", "@query", "content-digest")
    check(rfc9421(post(url=INBOX + "?a=1"), rsa_key, components=components), rsa_key.public_key())


def test_header_names_match_case_insensitively_and_in_any_order(rsa_key):
    pairs = [("CONTENT-TYPE", "application/activity+json"), ("hOsT", "remote.example")]
    request = HttpRequest("POST", INBOX, pairs, BODY)
    order = ("digest", "date", "content-type", "host", "(request-target)")
    signed = cavage(
        request, rsa_key, headers=("Digest", "DATE", "Content-Type", "Host", "(Request-Target)")
    )

    assert parse_signature(signed).components == order
    shouting = HttpRequest("POST", INBOX, {k.upper(): v for k, v in signed.fields.items()}, BODY)
    check(shouting, rsa_key.public_key())


def test_signature_parameters_may_come_in_any_order_and_spacing(rsa_key):
    signed = cavage(post(), rsa_key)
    params = dict(re.findall(r'(\w+)="([^"]*)"', signed.header("signature")))
    reordered = ", ".join(f'{name}="{params[name]}"' for name in reversed(list(params)))

    check(signed.with_headers({"Signature": reordered}), rsa_key.public_key())


def test_authorization_signature_form_verifies_like_the_signature_header(rsa_key):
    signed = cavage(post(), rsa_key)
    fields = {k: v for k, v in signed.fields.items() if k != "signature"}
    fields["Authorization"] = "Signature " + signed.header("signature")

    check(HttpRequest("POST", INBOX, fields, BODY), rsa_key.public_key())


def test_hs2019_with_created_and_expires_round_trips(any_key):
    covered = ("(request-target)", "(created)", "(expires)", "host", "digest")
    signed = cavage(post(), any_key, headers=covered, expires=NOW + timedelta(hours=2))

    parsed = parse_signature(signed)

    assert parsed.algorithm == "hs2019"
    assert parsed.created == NOW.timestamp()
    assert parsed.expires == (NOW + timedelta(hours=2)).timestamp()
    assert "created=" in signed.header("signature")
    verify(parsed, any_key.public_key(), NOW + timedelta(hours=2, minutes=59))


def test_absent_algorithm_means_hs2019(rsa_key):
    signed = cavage(post(), rsa_key)
    without = re.sub(r'algorithm="[^"]*",', "", signed.header("signature"))

    parsed = parse_signature(signed.with_headers({"Signature": without}))

    assert parsed.algorithm == "hs2019"
    verify(parsed, rsa_key.public_key(), NOW)


def test_extra_covered_headers_are_signed_and_checked(rsa_key):
    request = post().with_headers({"User-Agent": "Kith/0.1", "X-Custom": "one"})
    covered = ("(request-target)", "host", "date", "digest", "user-agent", "x-custom")
    signed = cavage(request, rsa_key, headers=covered)

    check(signed, rsa_key.public_key())
    error = refusal(signed.with_headers({"X-Custom": "two"}), rsa_key.public_key())
    assert error.reason is SignatureFailure.BAD_SIGNATURE


def test_repeated_header_fields_are_joined_with_comma_space():
    request = HttpRequest("GET", OUTBOX, [("Accept", "a/b"), ("accept", " c/d ")])

    assert request.header("ACCEPT") == "a/b, c/d"


def test_multi_valued_and_lower_case_digest_is_accepted(rsa_key):
    sha512 = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    value = digest_header(BODY).replace("SHA-256", "sha-256") + f", SHA-512={sha512}"
    date = "Sat, 01 Mar 2025 12:00:00 GMT"
    request = post().with_headers({"Host": "remote.example", "Date": date, "Digest": value})
    # A peer's signature, built by hand so that it carries the peer's Digest verbatim.
    string = (
        f"(request-target): post /users/bob/inbox\nhost: remote.example\ndate: {date}\n"
        f"digest: {value}"
    ).encode()
    raw = rsa_key.sign(string, padding.PKCS1v15(), hashes.SHA256())
    signature = (
        f'keyId="{KEY_ID}",algorithm="rsa-sha256",headers="(request-target) host date digest",'
        f'signature="{base64.b64encode(raw).decode()}"'
    )

    check_digest(value, BODY)
    check(request.with_headers({"Signature": signature}), rsa_key.public_key())


def test_pem_keys_load_once_for_reuse(rsa_key, ed_key):
    assert isinstance(load_public_key_pem(pem(rsa_key).decode()), rsa.RSAPublicKey)
    assert isinstance(load_public_key_pem(pem(ed_key)), ed25519.Ed25519PublicKey)
    with pytest.raises(InvalidKey):
        load_public_key_pem("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


# --- Query fallback --------------------------------------------------------------------------


def test_cavage_falls_back_to_the_path_when_the_signer_dropped_the_query(rsa_key):
    signed_without_query = cavage(get("https://remote.example/users/bob/outbox"), rsa_key)

    check(moved(signed_without_query, url=OUTBOX), rsa_key.public_key())


def test_cavage_signature_over_the_query_still_verifies_with_it(rsa_key):
    signed = cavage(get(), rsa_key)

    assert (
        parse_signature(signed)
        .signing_strings[0]
        .startswith(b"(request-target): get /users/bob/outbox?page=true\n")
    )
    check(signed, rsa_key.public_key())


def test_cavage_changed_query_is_refused(rsa_key):
    signed = cavage(get(), rsa_key)

    error = refusal(moved(signed, url=OUTBOX.replace("true", "false")), rsa_key.public_key())
    assert error.reason is SignatureFailure.BAD_SIGNATURE


def test_rfc9421_has_no_query_fallback(rsa_key):
    signed = rfc9421(get("https://remote.example/users/bob/outbox"), rsa_key)

    error = refusal(moved(signed, url=OUTBOX), rsa_key.public_key())
    assert error.reason is SignatureFailure.BAD_SIGNATURE


# --- Refusals --------------------------------------------------------------------------------

SIGNERS = {"cavage": cavage, "rfc9421": rfc9421}


@pytest.mark.parametrize("scheme", SIGNERS)
def test_wrong_key_is_a_bad_signature(scheme, rsa_key, other_rsa_key):
    error = refusal(SIGNERS[scheme](post(), rsa_key), other_rsa_key.public_key())

    assert error.reason is SignatureFailure.BAD_SIGNATURE
    assert error.scheme is SignatureScheme.CAVAGE if scheme == "cavage" else SignatureScheme.RFC9421


@pytest.mark.parametrize("scheme", SIGNERS)
def test_changed_body_is_a_digest_mismatch(scheme, rsa_key):
    signed = SIGNERS[scheme](post(), rsa_key)

    error = refusal(moved(signed, body=BODY + b" "), rsa_key.public_key())
    assert error.reason is SignatureFailure.DIGEST_MISMATCH


@pytest.mark.parametrize("scheme", SIGNERS)
def test_changed_path_is_a_bad_signature(scheme, rsa_key):
    signed = SIGNERS[scheme](post(), rsa_key)

    error = refusal(moved(signed, url=INBOX.replace("bob", "carol")), rsa_key.public_key())
    assert error.reason is SignatureFailure.BAD_SIGNATURE


def test_cavage_changed_host_header_is_a_bad_signature(rsa_key):
    signed = cavage(get(), rsa_key)

    error = refusal(signed.with_headers({"Host": "evil.example"}), rsa_key.public_key())
    assert error.reason is SignatureFailure.BAD_SIGNATURE


def test_rfc9421_changed_authority_is_a_bad_signature(rsa_key):
    signed = rfc9421(get(), rsa_key)

    error = refusal(moved(signed, url=OUTBOX.replace("remote", "evil")), rsa_key.public_key())
    assert error.reason is SignatureFailure.BAD_SIGNATURE


@pytest.mark.parametrize("scheme", SIGNERS)
def test_stale_signature_is_expired(scheme, rsa_key):
    error = refusal(
        SIGNERS[scheme](post(), rsa_key), rsa_key.public_key(), NOW + timedelta(hours=2)
    )

    assert error.reason is SignatureFailure.EXPIRED


@pytest.mark.parametrize("scheme", SIGNERS)
def test_signature_from_the_future_is_refused(scheme, rsa_key):
    signed = SIGNERS[scheme](post(), rsa_key, NOW + timedelta(hours=2))

    assert refusal(signed, rsa_key.public_key()).reason is SignatureFailure.FROM_THE_FUTURE


def test_cavage_post_without_digest_is_refused(rsa_key):
    signed = cavage(
        HttpRequest("POST", INBOX, {}), rsa_key, headers=("(request-target)", "host", "date")
    )

    error = refusal(signed, rsa_key.public_key())
    assert error.reason is SignatureFailure.NOT_COVERED
    assert "digest" in error.detail


def test_cavage_post_with_digest_present_but_not_signed_is_refused(rsa_key):
    signed = cavage(post(), rsa_key, headers=("(request-target)", "host", "date", "content-type"))

    assert signed.header("digest") == digest_header(BODY)
    error = refusal(signed, rsa_key.public_key())
    assert error.reason is SignatureFailure.NOT_COVERED
    assert "must sign digest" in error.detail


def test_cavage_signed_digest_missing_from_the_request_is_malformed(rsa_key):
    signed = cavage(post(), rsa_key)
    fields = {k: v for k, v in signed.fields.items() if k != "digest"}

    with pytest.raises(SignatureError) as caught:
        parse_signature(HttpRequest("POST", INBOX, fields, BODY))
    assert caught.value.reason is SignatureFailure.MALFORMED


def test_cavage_get_without_host_signed_is_refused(rsa_key):
    signed = cavage(get(), rsa_key, headers=("(request-target)", "date", "accept"))

    error = refusal(signed, rsa_key.public_key())
    assert error.reason is SignatureFailure.NOT_COVERED
    assert "host" in error.detail


def test_cavage_without_date_or_created_is_refused(rsa_key):
    signed = cavage(get(), rsa_key, headers=("(request-target)", "host"))

    assert refusal(signed, rsa_key.public_key()).reason is SignatureFailure.NOT_COVERED


def test_cavage_without_request_target_or_digest_is_refused(rsa_key):
    signed = cavage(get(), rsa_key, headers=("host", "date"))

    assert refusal(signed, rsa_key.public_key()).reason is SignatureFailure.NOT_COVERED


@pytest.mark.parametrize("label", ["rsa-sha512", "hmac-sha256", "ecdsa-sha256"])
def test_unknown_cavage_algorithm_is_refused(label, rsa_key):
    signed = cavage(post(), rsa_key)
    value = signed.header("signature").replace("rsa-sha256", label)

    with pytest.raises(SignatureError) as caught:
        parse_signature(signed.with_headers({"Signature": value}))
    assert caught.value.reason is SignatureFailure.UNKNOWN_ALGORITHM


def test_created_pseudo_header_with_rsa_sha256_is_malformed(rsa_key):
    signed = cavage(post(), rsa_key, headers=("(request-target)", "(created)", "host", "digest"))
    value = signed.header("signature").replace("hs2019", "rsa-sha256")

    with pytest.raises(SignatureError) as caught:
        parse_signature(signed.with_headers({"Signature": value}))
    assert caught.value.reason is SignatureFailure.MALFORMED


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        'keyId="k",headers="date"',
        'keyId="k",signature="!!!notbase64!!!"',
        'keyId="k",keyId="j",signature="AAAA"',
        'keyId="k" signature="AAAA"',
        'keyId="unterminated,signature="AAAA',
    ],
)
def test_malformed_cavage_header_is_refused(value):
    request = post().with_headers({"Signature": value, "Date": "x"})

    with pytest.raises(SignatureError) as caught:
        parse_signature(request)
    assert caught.value.reason is SignatureFailure.MALFORMED
    assert isinstance(caught.value, ProtocolError)


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        ('sig1=("@method"', "sig1=:AAAA:"),
        ('sig1=("@method");created=1;keyid="k"', "sig2=:AAAA:"),
        ('sig1=("@method");created=1;keyid="k"', 'sig1="not bytes"'),
        ('sig1=("@method");created=1', "sig1=:AAAA:"),
        ('sig1=("@method");created=1.5;keyid="k"', "sig1=:AAAA:"),
        ('sig1=("@method" "@method");created=1;keyid="k"', "sig1=:AAAA:"),
        ('sig1=("@query-param";name="a");created=1;keyid="k"', "sig1=:AAAA:"),
        ('sig1=("@method"), sig1=("@path")', "sig1=:AAAA:"),
        ("", "sig1=:AAAA:"),
    ],
)
def test_malformed_rfc9421_fields_are_refused(signature_input, signature):
    request = get().with_headers({"Signature-Input": signature_input, "Signature": signature})

    with pytest.raises(SignatureError) as caught:
        parse_signature(request)
    assert caught.value.reason is SignatureFailure.MALFORMED
    assert caught.value.scheme is SignatureScheme.RFC9421


def test_unsigned_request_is_missing_a_signature():
    with pytest.raises(SignatureError) as caught:
        parse_signature(post().with_headers({"Authorization": "Bearer token"}))
    assert caught.value.reason is SignatureFailure.MISSING


def _sign_rfc9421_by_hand(
    request: HttpRequest, key, components: str, params: str, lines: list[str]
):
    """An RFC 9421 signature built from a literal signature base, independent of our signer."""
    signature_params = f"({components}){params}"
    base = "\n".join([*lines, f'"@signature-params": {signature_params}']).encode()
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(base, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.sign(base)
    return request.with_headers(
        {
            "Signature-Input": f"sig1={signature_params}",
            "Signature": f"sig1=:{base64.b64encode(raw).decode()}:",
        }
    )


def test_rfc9421_hand_built_signature_base_verifies(rsa_key):
    request = post().with_headers({"Content-Digest": content_digest_header(BODY)})
    lines = [
        '"@method": POST',
        f'"@target-uri": {INBOX}',
        f'"content-digest": {content_digest_header(BODY)}',
    ]
    params = f';created={int(NOW.timestamp())};keyid="{KEY_ID}";alg="rsa-v1_5-sha256"'
    signed = _sign_rfc9421_by_hand(
        request, rsa_key, '"@method" "@target-uri" "content-digest"', params, lines
    )

    check(signed, rsa_key.public_key())


def test_rfc9421_without_created_is_refused(rsa_key):
    lines = ['"@method": GET', f'"@target-uri": {OUTBOX}']
    signed = _sign_rfc9421_by_hand(
        get(), rsa_key, '"@method" "@target-uri"', f';keyid="{KEY_ID}"', lines
    )

    error = refusal(signed, rsa_key.public_key())
    assert error.reason is SignatureFailure.NOT_COVERED
    assert "created" in error.detail


def test_rfc9421_without_method_is_refused(rsa_key):
    signed = rfc9421(post(), rsa_key, components=("@target-uri", "content-digest"))

    error = refusal(signed, rsa_key.public_key())
    assert error.reason is SignatureFailure.NOT_COVERED
    assert "@method" in error.detail


def test_rfc9421_without_target_is_refused(rsa_key):
    signed = rfc9421(post(), rsa_key, components=("@method", "@path", "content-digest"))

    assert refusal(signed, rsa_key.public_key()).reason is SignatureFailure.NOT_COVERED


def test_rfc9421_post_without_content_digest_is_refused(rsa_key):
    signed = rfc9421(post(), rsa_key, components=("@method", "@target-uri"))

    error = refusal(signed, rsa_key.public_key())
    assert error.reason is SignatureFailure.NOT_COVERED
    assert "content-digest" in error.detail


def test_rfc9421_verifies_only_the_first_of_several_signatures(rsa_key, ed_key):
    first = rfc9421(post(), rsa_key, label="first")
    second = sign_rfc9421(post(), KEY_ID, ed_key, NOW, label="second")
    both = first.with_headers(
        {
            "Signature-Input": f"{first.header('signature-input')}, {second['Signature-Input']}",
            "Signature": f"{first.header('signature')}, {second['Signature']}",
        }
    )

    check(both, rsa_key.public_key())
    assert refusal(both, ed_key.public_key()).reason is SignatureFailure.KEY_MISMATCH
    swapped = first.with_headers(
        {
            "Signature-Input": f"{second['Signature-Input']}, {first.header('signature-input')}",
            "Signature": f"{first.header('signature')}, {second['Signature']}",
        }
    )
    check(swapped, ed_key.public_key())


def test_rfc9421_ed25519_key_with_rsa_alg_is_a_key_mismatch(ed_key):
    signed = rfc9421(post(), ed_key)
    lying = signed.header("signature-input").replace('alg="ed25519"', 'alg="rsa-v1_5-sha256"')

    error = refusal(signed.with_headers({"Signature-Input": lying}), ed_key.public_key())
    assert error.reason is SignatureFailure.KEY_MISMATCH


def test_rfc9421_rsa_key_with_ed25519_alg_is_a_key_mismatch(rsa_key):
    signed = rfc9421(post(), rsa_key)
    lying = signed.header("signature-input").replace('alg="rsa-v1_5-sha256"', 'alg="ed25519"')

    error = refusal(signed.with_headers({"Signature-Input": lying}), rsa_key.public_key())
    assert error.reason is SignatureFailure.KEY_MISMATCH


def test_cavage_rsa_sha256_label_with_ed25519_key_is_a_key_mismatch(rsa_key, ed_key):
    signed = cavage(post(), rsa_key)

    assert refusal(signed, ed_key.public_key()).reason is SignatureFailure.KEY_MISMATCH


@pytest.mark.parametrize("alg", ["rsa-pss-sha512", "ecdsa-p256-sha256", "hmac-sha256"])
def test_unknown_rfc9421_algorithm_is_refused(alg, rsa_key):
    signed = rfc9421(post(), rsa_key)
    value = signed.header("signature-input").replace("rsa-v1_5-sha256", alg)

    with pytest.raises(SignatureError) as caught:
        parse_signature(signed.with_headers({"Signature-Input": value}))
    assert caught.value.reason is SignatureFailure.UNKNOWN_ALGORITHM


def test_rfc9421_without_alg_takes_the_algorithm_from_the_key(ed_key):
    signed = rfc9421(post(), ed_key)
    bare = signed.header("signature-input").replace(';alg="ed25519"', "")
    lines = [
        '"@method": POST',
        f'"@target-uri": {INBOX}',
        f'"content-digest": {content_digest_header(BODY)}',
    ]
    params = bare.split(")", 1)[1]
    resigned = _sign_rfc9421_by_hand(
        signed, ed_key, '"@method" "@target-uri" "content-digest"', params, lines
    )

    assert parse_signature(resigned).algorithm is None
    check(resigned, ed_key.public_key())


def test_digest_helpers_refuse_what_they_cannot_check():
    with pytest.raises(SignatureError) as caught:
        check_digest("MD5=AAAA", BODY)
    assert caught.value.reason is SignatureFailure.UNKNOWN_ALGORITHM
    with pytest.raises(SignatureError) as caught:
        check_digest(digest_header(b"other"), BODY)
    assert caught.value.reason is SignatureFailure.DIGEST_MISMATCH
    with pytest.raises(SignatureError) as caught:
        check_content_digest("md5=:AAAA:", BODY)
    assert caught.value.reason is SignatureFailure.UNKNOWN_ALGORITHM
    with pytest.raises(SignatureError) as caught:
        check_content_digest(content_digest_header(b"other"), BODY)
    assert caught.value.reason is SignatureFailure.DIGEST_MISMATCH
    check_content_digest(content_digest_header(BODY), BODY)


# --- The time window, exactly ----------------------------------------------------------------

HOUR = 3600
WINDOWS = [
    # (label, expires offset from created or None, latest accepted offset of now from created)
    ("default validity", None, 5 * 60 + HOUR),
    ("short expires", 60, 60 + HOUR),
    ("long expires capped at 12 h", 100_000, 12 * HOUR + HOUR),
]


def _signed_at(scheme: str, key, expires_offset: int | None) -> HttpRequest:
    expires = NOW + timedelta(seconds=expires_offset) if expires_offset is not None else None
    if scheme == "rfc9421":
        return rfc9421(post(), key, expires=expires)
    if expires is None:
        return cavage(post(), key)  # created comes from the Date header
    covered = ("(request-target)", "(created)", "(expires)", "host", "digest")
    return cavage(post(), key, headers=covered, expires=expires)


@pytest.mark.parametrize("scheme", SIGNERS)
@pytest.mark.parametrize(("name", "expires_offset", "latest"), WINDOWS)
def test_window_end_is_exact(scheme, name, expires_offset, latest, rsa_key):
    signed = _signed_at(scheme, rsa_key, expires_offset)

    check(signed, rsa_key.public_key(), NOW + timedelta(seconds=latest))
    error = refusal(signed, rsa_key.public_key(), NOW + timedelta(seconds=latest + 1))
    assert error.reason is SignatureFailure.EXPIRED


@pytest.mark.parametrize("scheme", SIGNERS)
def test_window_start_allows_one_hour_of_clock_skew_exactly(scheme, rsa_key):
    signed = _signed_at(scheme, rsa_key, None)

    check(signed, rsa_key.public_key(), NOW - timedelta(seconds=HOUR))
    error = refusal(signed, rsa_key.public_key(), NOW - timedelta(seconds=HOUR + 1))
    assert error.reason is SignatureFailure.FROM_THE_FUTURE


def test_unsigned_created_parameter_does_not_refresh_a_stale_date(rsa_key):
    signed = cavage(post(), rsa_key)
    later = int((NOW + timedelta(hours=5)).timestamp())
    value = signed.header("signature") + f",created={later}"

    error = refusal(
        signed.with_headers({"Signature": value}), rsa_key.public_key(), NOW + timedelta(hours=5)
    )
    assert error.reason is SignatureFailure.EXPIRED


def test_naive_now_is_a_programming_error(rsa_key):
    with pytest.raises(ValueError, match="timezone-aware"):
        check(cavage(post(), rsa_key), rsa_key.public_key(), datetime(2025, 3, 1, 12))


# --- Interop with independent implementations ------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "required"),
    [
        (post(), ["(request-target)", "host", "date", "digest", "content-type"]),
        (post(url=INBOX + "?x=1&y=2"), ["(request-target)", "host", "date", "digest"]),
        (get(), ["(request-target)", "host", "date", "accept"]),
        (get("https://remote.example:8443/actor"), ["(request-target)", "host", "date"]),
    ],
)
def test_kith_cavage_signatures_verify_with_httpsig(request_, required, rsa_key):
    signed = cavage(request_, rsa_key, NOW)
    headers = dict(signed.fields)
    target = request_.target

    verifier = httpsig.HeaderVerifier(
        headers,
        pem(rsa_key),
        required,
        method=request_.method,
        path=target,
        sign_header="signature",
    )
    assert verifier.verify() is True
    headers["authorization"] = "Signature " + headers.pop("signature")
    verifier = httpsig.HeaderVerifier(headers, pem(rsa_key), required, request_.method, target)
    assert verifier.verify() is True


@pytest.mark.parametrize("sign_header", ["signature", "authorization"])
@pytest.mark.parametrize("url", [INBOX, INBOX + "?x=1"])
def test_httpsig_signatures_verify_with_kith(sign_header, url, rsa_key, other_rsa_key):
    covered = ["(request-target)", "host", "date", "digest"]
    signer = httpsig.HeaderSigner(
        KEY_ID,
        private_pem(rsa_key),
        algorithm="rsa-sha256",
        headers=covered,
        sign_header=sign_header,
    )
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    date = "Sat, 01 Mar 2025 12:00:00 GMT"
    request = HttpRequest("POST", url, {}, BODY)
    headers = signer.sign(
        {"Host": "remote.example", "Date": date, "Digest": digest},
        method="POST",
        path=request.target,
    )

    signed = HttpRequest("POST", url, dict(headers), BODY)
    check(signed, load_public_key_pem(pem(rsa_key)))
    assert refusal(signed, other_rsa_key.public_key()).reason is SignatureFailure.BAD_SIGNATURE


def _message(request: HttpRequest) -> SimpleNamespace:
    """What http_message_signatures accepts: method, url and a mutable headers mapping."""
    return SimpleNamespace(method=request.method, url=request.url, headers=dict(request.fields))


def _hms_algorithm(key):
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    return algorithms.RSA_V1_5_SHA256 if is_rsa else algorithms.ED25519


@pytest.mark.parametrize("request_", [post(), post(url=INBOX + "?x=1"), get()])
def test_kith_rfc9421_signatures_verify_with_http_message_signatures(request_, any_key):
    # The library reads the wall clock for created, so sign with it too.
    signed = rfc9421(request_, any_key, datetime.now(UTC))
    resolver = hms.MappingKeyResolver(public_keys={KEY_ID: any_key.public_key()}, private_keys={})
    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=_hms_algorithm(any_key), key_resolver=resolver
    )

    [result] = verifier.verify(
        _message(signed), body=signed.body, require_components=("@method", "@target-uri")
    )
    assert result.parameters["keyid"] == KEY_ID


@pytest.mark.parametrize("request_", [post(), post(url="https://remote.example:8443/inbox?x=1")])
def test_http_message_signatures_requests_verify_with_kith(request_, any_key, other_rsa_key):
    message = _message(request_)
    resolver = hms.MappingKeyResolver(public_keys={}, private_keys={KEY_ID: any_key})
    signer = hms.HTTPMessageSigner(
        signature_algorithm=_hms_algorithm(any_key), key_resolver=resolver
    )
    signer.sign(
        message,
        key_id=KEY_ID,
        created=NOW,
        covered_component_ids=("@method", "@authority", "@target-uri", "content-digest"),
        body=request_.body,
    )

    signed = HttpRequest(message.method, message.url, message.headers, request_.body)
    parsed = parse_signature(signed)
    assert parsed.components == ("@method", "@authority", "@target-uri", "content-digest")
    verify(parsed, any_key.public_key(), NOW)
    with pytest.raises(SignatureError):
        verify(parsed, other_rsa_key.public_key(), NOW)


# --- Tampering, by property ------------------------------------------------------------------

_PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_SEGMENT = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-._~"), min_size=1)
MUTATIONS = st.one_of(
    st.tuples(st.just("body"), st.binary(max_size=200)),
    st.tuples(st.just("path"), _SEGMENT),
    st.tuples(st.sampled_from(["host", "date", "content-type"]), _PRINTABLE),
)


def _mutate(signed: HttpRequest, where: str, value, scheme: str) -> tuple[str, dict, bytes]:
    """The URL, header fields and body a tamperer sends instead of the signed ones."""
    url, fields, body = signed.url, dict(signed.fields), signed.body
    if where == "body":
        body = value
    elif where == "path":
        url = f"https://remote.example/users/{value}/inbox"
    elif where == "host" and scheme == "rfc9421":
        # RFC 9421 signs the authority of the target URI, not the Host field.
        url = url.replace("remote.example", value.lower())
    else:
        fields[where] = value
    return url, fields, body


@pytest.fixture(scope="module")
def signed_pair(rsa_key):
    covered = ("@method", "@target-uri", "@authority", "content-digest", "content-type", "date")
    request = post().with_headers({"Date": "Sat, 01 Mar 2025 12:00:00 GMT"})
    return {
        "cavage": cavage(
            post(), rsa_key, headers=("(request-target)", "host", "date", "digest", "content-type")
        ),
        "rfc9421": rfc9421(request, rsa_key, components=covered),
    }


@pytest.mark.parametrize("scheme", SIGNERS)
@settings(max_examples=150, deadline=None)
@given(mutation=MUTATIONS)
def test_any_mutation_after_signing_fails_verification(scheme, mutation, signed_pair, rsa_key):
    signed = signed_pair[scheme]
    url, fields, body = _mutate(signed, *mutation, scheme)
    assume((url, fields, body) != (signed.url, signed.fields, signed.body))
    # Same authority spelled in another case is the same request, not a mutation.
    assume(url.lower() != signed.url.lower() or fields != signed.fields or body != signed.body)
    check(signed, rsa_key.public_key())

    with pytest.raises(SignatureError):  # building the request is part of receiving it
        check(HttpRequest(signed.method, url, fields, body), rsa_key.public_key())


_SF_SOUP = st.text(
    st.sampled_from('sig1=("@method" "@target-uri");created=1740830400;keyid="k"' + ":A?-*,\\ "),
    max_size=120,
)
_CAVAGE_SOUP = st.text(
    st.sampled_from(
        'keyId="k",algorithm="hs2019",headers="(request-target) (created) host date"'
        + 'signature="AAAA",created=12.5 \\'
    ),
    max_size=160,
)


@settings(max_examples=300, deadline=None)
@given(
    signature_input=_SF_SOUP | st.text(),
    signature=_SF_SOUP | _CAVAGE_SOUP | st.text(),
    rfc9421_=st.booleans(),
)
def test_any_header_text_is_refused_with_a_signature_error_not_a_crash(
    signature_input, signature, rfc9421_, ed_key
):
    headers = {"Signature": signature, "Date": "Sat, 01 Mar 2025 12:00:00 GMT"}
    if rfc9421_:
        headers["Signature-Input"] = signature_input

    with pytest.raises(SignatureError):
        check(HttpRequest("POST", INBOX + "?q", headers, BODY), ed_key.public_key())
