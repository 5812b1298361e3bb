"""OrderedCollection root and page documents, shaped as Mastodon serves them."""

from protocol.collections import render_ordered_collection, render_ordered_collection_page

AS2 = "https://www.w3.org/ns/activitystreams"
OUTBOX = "https://kith.example/users/alice/outbox"


def test_collection_root_has_count_and_first_page_and_no_items() -> None:
    assert render_ordered_collection(OUTBOX, 42, f"{OUTBOX}?page=true") == {
        "@context": AS2,
        "id": OUTBOX,
        "type": "OrderedCollection",
        "totalItems": 42,
        "first": f"{OUTBOX}?page=true",
    }


def test_page_links_to_its_collection_and_keeps_item_order() -> None:
    items = ["https://kith.example/activities/3", "https://kith.example/activities/2"]
    page = render_ordered_collection_page(f"{OUTBOX}?page=true", OUTBOX, items, 2)
    assert page == {
        "@context": AS2,
        "id": f"{OUTBOX}?page=true",
        "type": "OrderedCollectionPage",
        "partOf": OUTBOX,
        "totalItems": 2,
        "orderedItems": items,
    }


def test_page_without_neighbours_has_no_next_or_prev() -> None:
    page = render_ordered_collection_page(f"{OUTBOX}?page=true", OUTBOX, [], 0)
    assert "next" not in page
    assert "prev" not in page
    assert page["orderedItems"] == []


def test_page_links_to_next_and_prev_when_given() -> None:
    page = render_ordered_collection_page(
        f"{OUTBOX}?page=2",
        OUTBOX,
        [{"id": "https://kith.example/activities/1", "type": "Create"}],
        30,
        next_page=f"{OUTBOX}?page=3",
        prev_page=f"{OUTBOX}?page=1",
    )
    assert page["next"] == f"{OUTBOX}?page=3"
    assert page["prev"] == f"{OUTBOX}?page=1"
    assert page["orderedItems"] == [{"id": "https://kith.example/activities/1", "type": "Create"}]
