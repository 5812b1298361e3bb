"""NodeInfo 2.0 and 2.1 documents (FEP-f1d5) and their discovery document."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_REL = "http://nodeinfo.diaspora.software/ns/schema/{version}"
VERSIONS = ("2.0", "2.1")
SOFTWARE_NAME = "kith"


@dataclass(frozen=True)
class NodeStats:
    """What NodeInfo reports about a node; counts come from its database."""

    software_version: str
    node_name: str
    node_description: str
    open_registrations: bool
    users_total: int
    users_active_month: int
    users_active_halfyear: int
    local_posts: int


def media_type(version: str) -> str:
    """The schema-profiled JSON content type NodeInfo consumers expect."""
    return f'application/json; profile="{SCHEMA_REL.format(version=version)}#"'


def render_discovery(nodeinfo_url: str) -> dict:
    """`/.well-known/nodeinfo`: a link per version served (`nodeinfo_url` holds {version})."""
    return {
        "links": [
            {"rel": SCHEMA_REL.format(version=v), "href": nodeinfo_url.format(version=v)}
            for v in VERSIONS
        ]
    }


def render_nodeinfo(version: str, stats: NodeStats) -> dict:
    """A NodeInfo document of the given schema version."""
    if version not in VERSIONS:
        raise ValueError(f"NodeInfo {version} is not served")
    return {
        "version": version,
        "software": {"name": SOFTWARE_NAME, "version": stats.software_version},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": stats.open_registrations,
        "usage": {
            "users": {
                "total": stats.users_total,
                "activeMonth": stats.users_active_month,
                "activeHalfyear": stats.users_active_halfyear,
            },
            "localPosts": stats.local_posts,
        },
        "metadata": {"nodeName": stats.node_name, "nodeDescription": stats.node_description},
    }
