"""Parsing untrusted JSON: size and nesting are bounded, and every failure has a reason."""

from __future__ import annotations

import json
from typing import Any

from protocol.errors import ProtocolError

DEPTH_MAX = 32


def parse_json_document(data: bytes | str, depth_max: int = DEPTH_MAX) -> dict[str, Any]:
    """A JSON object from a peer; ProtocolError if it is not one or nests deeper than allowed."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ProtocolError("the JSON nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("the JSON is not an object")
    if _nests_deeper_than(value, depth_max):
        raise ProtocolError(f"the JSON nests deeper than {depth_max} levels")
    return value


def _nests_deeper_than(value: Any, depth_max: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > depth_max:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False
