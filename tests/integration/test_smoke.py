from tests.harness import AS2, NodeFactory


async def test_started_node_serves_its_users_actor(nodes: NodeFactory) -> None:
    node = await nodes.start()
    await node.create_user("alice")
    async with node.http.get("/users/alice", headers=AS2) as response:
        assert response.status == 200
        body = await response.json(content_type=None)
    assert body["id"] == node.url("/users/alice")
