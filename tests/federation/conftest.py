"""Three real nodes on loopback, each with its own database, federating over real HTTP."""

from __future__ import annotations

import pytest

from tests.federation.fake_peer import peer  # noqa: F401  (a fixture)
from tests.harness import Node, NodeFactory


@pytest.fixture
async def trio(nodes: NodeFactory) -> tuple[Node, Node, Node]:
    return await nodes.start(), await nodes.start(), await nodes.start()
