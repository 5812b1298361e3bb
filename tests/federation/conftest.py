"""Three real nodes on loopback, each with its own database, federating over real HTTP."""

from __future__ import annotations

import pytest

from tests.harness import Node, NodeFactory


@pytest.fixture
async def trio(nodes: NodeFactory) -> tuple[Node, Node, Node]:
    return await nodes.start(), await nodes.start(), await nodes.start()
