"""`endpoints.proxyUrl`: a C2S client fetches remote objects through its server.

The fetch goes out as the node's signed GET (so servers with authorized fetch answer) under the
same SSRF guard, size and time limits as any federation fetch; the client never reaches an
address the node would refuse to reach for a peer.
"""

from __future__ import annotations

from aiohttp import web

from federation.fetch import FetchError, ForbiddenAddress
from protocol.as2 import is_http_url
from server.api.activitypub import as2_response
from server.api.auth import require_account
from server.api.errors import ApiError
from server.api.params import request_params, string
from server.appkeys import FEDERATION

routes = web.RouteTableDef()
PROXY_PATH = "/api/kith/v1/proxy"


@routes.post(PROXY_PATH)
async def proxy(request: web.Request) -> web.Response:
    """Fetch the object named by the form field `id` and answer it as AS2."""
    await require_account(request, "read")
    params = await request_params(request)
    url = string(params, "id", max_length=2048) or ""
    if not is_http_url(url):
        raise ApiError(422, "id must be an http(s) URL")
    try:
        fetched = await request.app[FEDERATION].fetcher.get_object(url)
    except ForbiddenAddress as exc:
        raise ApiError(422, "this URL may not be fetched", exc.reason) from None
    except FetchError as exc:
        if exc.status in (404, 410):
            raise ApiError(exc.status, "the object was not found", exc.reason) from None
        raise ApiError(502, "the object could not be fetched", exc.reason) from None
    response = as2_response(fetched.document, "application/activity+json")
    response.headers["Cache-Control"] = "private, no-store"
    return response
