"""NodeInfo 2.0 and 2.1 documents validate against the published schemas."""

import json
from pathlib import Path

import jsonschema
import pytest
from jsonschema.validators import validator_for

from protocol.nodeinfo import (
    VERSIONS,
    NodeStats,
    media_type,
    render_discovery,
    render_nodeinfo,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "fixtures" / "nodeinfo"
STATS = NodeStats(
    software_version="0.1.0",
    node_name="Kith Test",
    node_description="A test community.",
    open_registrations=True,
    users_total=12,
    users_active_month=5,
    users_active_halfyear=9,
    local_posts=340,
)


def _validator(version: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"schema-{version}.json").read_text(encoding="utf-8"))
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_shipped_schemas_are_draft_04() -> None:
    # validator_for picks the draft from $schema; make sure we really validate as draft-04.
    for version in VERSIONS:
        assert isinstance(_validator(version), jsonschema.Draft4Validator)


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_nodeinfo_document_validates_against_its_schema(version: str) -> None:
    errors = list(_validator(version).iter_errors(render_nodeinfo(version, STATS)))
    assert errors == []


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_nodeinfo_with_zero_counts_and_closed_registrations_validates(version: str) -> None:
    stats = NodeStats("0.0.1", "", "", False, 0, 0, 0, 0)
    errors = list(_validator(version).iter_errors(render_nodeinfo(version, stats)))
    assert errors == []


def test_schema_validation_would_catch_a_wrong_document() -> None:
    # Guards the tests above: the validator really rejects what the schema forbids.
    document = render_nodeinfo("2.0", STATS)
    document["version"] = "2.1"
    assert list(_validator("2.0").iter_errors(document)) != []


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_nodeinfo_reports_the_stats(version: str) -> None:
    document = render_nodeinfo(version, STATS)
    assert document["version"] == version
    assert document["software"] == {"name": "kith", "version": "0.1.0"}
    assert document["protocols"] == ["activitypub"]
    assert document["openRegistrations"] is True
    assert document["usage"] == {
        "users": {"total": 12, "activeMonth": 5, "activeHalfyear": 9},
        "localPosts": 340,
    }
    assert document["metadata"]["nodeName"] == "Kith Test"


@pytest.mark.parametrize("version", ["1.0", "1.1", "2.2", "", "2"])
def test_unknown_nodeinfo_version_is_refused(version: str) -> None:
    with pytest.raises(ValueError, match="not served"):
        render_nodeinfo(version, STATS)


def test_discovery_links_both_versions_with_their_schema_rel() -> None:
    discovery = render_discovery("https://kith.example/nodeinfo/{version}")
    assert discovery == {
        "links": [
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                "href": "https://kith.example/nodeinfo/2.0",
            },
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                "href": "https://kith.example/nodeinfo/2.1",
            },
        ]
    }


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_discovery_rel_matches_the_schema_id(version: str) -> None:
    schema = json.loads((SCHEMAS / f"schema-{version}.json").read_text(encoding="utf-8"))
    rels = {link["rel"] for link in render_discovery("https://k/{version}")["links"]}
    assert schema["id"].rstrip("#") in rels


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_media_type_carries_the_schema_profile(version: str) -> None:
    assert media_type(version) == (
        f'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/{version}#"'
    )
