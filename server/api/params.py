"""Reading client parameters the way Mastodon's apps send them: query, form or JSON."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server.api.errors import ApiError

_TRUE = frozenset({"1", "true", "t", "on", "yes"})
_FALSE = frozenset({"0", "false", "f", "off", "no", ""})
_JSON_BYTES_MAX = 1024 * 1024


async def request_params(request: web.Request) -> dict[str, Any]:
    """Query parameters overlaid by the body's (form-encoded, multipart or JSON).

    Repeated keys and `name[]` keys become lists, as Rails (and so Mastodon) reads them.
    """
    params = _collect(request.query.items())
    if request.method in ("POST", "PUT", "PATCH") and request.body_exists:
        if request.content_type == "application/json":
            params.update(await _json_body(request))
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update(_collect((k, v) for k, v in form.items() if isinstance(v, str)))
    return params


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(_JSON_BYTES_MAX + 1)
    if len(raw) > _JSON_BYTES_MAX:
        raise ApiError(413, "payload too large")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(422, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "the JSON body must be an object")
    return {key.removesuffix("[]"): value for key, value in body.items()}


def _collect(pairs: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        elif key in params:
            existing = params[key]
            params[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            params[key] = value
    return params


def boolean(params: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean in any of the spellings apps use (true/false, 1/0, on/off)."""
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(422, f"{name} must be true or false")


def string(
    params: dict[str, Any], name: str, default: str | None = None, max_length: int = 5000
) -> str | None:
    """A string parameter, or `default`; 422 if it is another type or too long."""
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(422, f"{name} must be a string")
    text = str(value)
    if len(text) > max_length:
        raise ApiError(422, f"{name} is longer than {max_length} characters")
    return text


def required(params: dict[str, Any], name: str, max_length: int = 5000) -> str:
    value = string(params, name, max_length=max_length)
    if value is None or not value.strip():
        raise ApiError(422, f"{name} is required")
    return value


def integer(
    params: dict[str, Any],
    name: str,
    default: int | None = None,
    low: int = 0,
    high: int = 2**63 - 1,
) -> int | None:
    """A non-negative integer (ids, limits), bounded; 422 otherwise."""
    value = params.get(name)
    if value is None or value == "":
        return default
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ApiError(422, f"{name} must be a whole number")
    number = int(text)
    if not low <= number <= high:
        raise ApiError(422, f"{name} must be between {low} and {high}")
    return number


def string_list(params: dict[str, Any], name: str, max_items: int = 100) -> list[str]:
    """A list parameter (`name[]=a&name[]=b`, JSON array, or one value)."""
    value = params.get(name)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > max_items or not all(isinstance(item, str) for item in items):
        raise ApiError(422, f"{name} must be a list of at most {max_items} strings")
    return items


_ID_MAX = 2**63 - 1


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path; anything else (or out of range) names nothing: 404."""
    text = request.match_info[name]
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _ID_MAX:
        raise ApiError(404, "Record not found")
    return int(text)
