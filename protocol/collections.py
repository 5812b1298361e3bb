"""ActivityStreams OrderedCollection documents with pages, as Mastodon serves them."""

from __future__ import annotations

from protocol.vocab import AS2_CONTEXT


def render_ordered_collection(collection_id: str, total_items: int, first_page: str) -> dict:
    """The collection's root document: a count and a link to its first page."""
    return {
        "@context": AS2_CONTEXT,
        "id": collection_id,
        "type": "OrderedCollection",
        "totalItems": total_items,
        "first": first_page,
    }


def render_ordered_collection_page(
    page_id: str,
    collection_id: str,
    items: list,
    total_items: int,
    next_page: str | None = None,
    prev_page: str | None = None,
) -> dict:
    """One page of items, newest first, linked to its neighbours."""
    page: dict = {
        "@context": AS2_CONTEXT,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": collection_id,
        "totalItems": total_items,
        "orderedItems": items,
    }
    if next_page:
        page["next"] = next_page
    if prev_page:
        page["prev"] = prev_page
    return page
