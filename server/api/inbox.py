"""The ActivityPub inboxes: the shared one, each user's, and the instance actor's."""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from protocol.httpsig import HttpRequest, SignatureError
from server.api.errors import ApiError, json_error
from server.appkeys import CLOCK, CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import find_account

routes = web.RouteTableDef()


@routes.post("/inbox")
@routes.post("/actor/inbox")
@routes.post("/users/{username}/inbox")
async def inbox(request: web.Request) -> web.Response:
    """Take one activity: verified and stored now (202), applied by the inbox worker; or, for
    the few that answer at once when asked to (a payment offer), applied now and answered."""
    name = request.match_info.get("username")
    if name is not None:
        async with request.app[DATABASE].read() as conn:
            account = await find_account(conn, name)
        if account is None or account.is_deleted:
            raise ApiError(404, "not found", "no such inbox")
    limit = request.app[CONFIG].federation.inbox_body_bytes_max
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload too large", f"the inbox takes at most {limit} bytes")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise ApiError(413, "payload too large", f"the inbox takes at most {limit} bytes")
    # Signatures cover the URL the peer addressed: our public base URL, not the proxy's view.
    # The same goes for a signed `Host`: the one we answer to, so that a request signed for
    # another server and replayed here does not verify, whatever Host header it carries.
    base_url = request.app[URLS].base_url
    url = base_url + request.path_qs
    headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
    headers.append(("Host", URL(base_url).raw_authority))
    try:
        signed = HttpRequest(request.method, url, headers, body)
    except SignatureError as exc:
        raise ApiError(400, "bad request", str(exc)) from None
    receipt = await request.app[FEDERATION].inbox.receive(signed, request.app[CLOCK]())
    if receipt.status == 202:
        return web.Response(status=202)
    if receipt.answer is not None:
        return web.json_response(
            receipt.answer,
            status=receipt.status,
            content_type="application/activity+json",
            headers={"Preference-Applied": "return=representation"},
        )
    return json_error(receipt.status, receipt.reason, headers=dict(receipt.headers))
