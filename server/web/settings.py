"""Settings: the profile (name, bio, picture), privacy (a locked account, read receipts in
chats), the password, the apps the user has authorised (revoke one), and a download of the
user's own data (posts, follows, wallet history).

Each section is its own form; bad input re-renders that section with the messages next to
the fields and a 4xx status, and changes nothing. The same domain calls as the APIs do the work:
server/social/profiles.py (Update(Person) to followers), server/social/chats.py (read
receipts), server/identity/password_resets.set_password (signed out everywhere else),
server/identity/tokens.py (authorised apps).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import zipfile
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.api.errors import ApiError
from server.api.mastodon.entities import Presenter
from server.api.oauth import LOGIN_LIMITER
from server.api.payments import HistoryFilter, transactions_csv_text
from server.appkeys import CLOCK, CONFIG, DATABASE, FEDERATION, URLS
from server.identity.accounts import Account, get_account, password_hash_of
from server.identity.password_resets import set_password
from server.identity.passwords import (
    PASSWORD_LENGTH_MAX,
    PASSWORD_LENGTH_MIN,
    WeakPassword,
    check_password_rules,
    hash_password,
    verify_password,
)
from server.identity.tokens import authorised_apps, issue_token, revoke_token_of
from server.media import AVATAR_BYTES_MAX, MediaRejected, remove_files, store_avatar
from server.social import chats, profiles
from server.social.statuses import status_from_row
from server.storage.tables import accounts, follows, statuses
from server.web.pages import (
    FormErrors,
    is_partial,
    page,
    read_form,
    render,
    render_fragment,
    require_viewer,
    see_other,
    text_field,
)
from server.web.sessions import (
    SESSION_LIFETIME,
    WEB_CLIENT_ID,
    cookies,
    open_session,
    session_grant,
    web_client,
)
from server.web.wallet_view import WalletView

routes = web.RouteTableDef()
SECTIONS = ("profile", "privacy", "password", "apps", "export")
_EXPORT_BATCH = 200
_WALLET_ROWS_MAX = 100_000


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


@routes.get("/settings")
@page
async def settings(request: web.Request) -> web.Response:
    me = await require_viewer(request)
    saved = request.query.get("saved")
    return await _settings(request, me, saved=saved if saved in SECTIONS else None)


async def _settings(
    request: web.Request,
    me: Account,
    status: int = 200,
    section: str | None = None,
    errors: FormErrors | None = None,
    values: dict[str, str] | None = None,
    saved: str | None = None,
) -> web.Response:
    """The whole page, or (for kith.js, after a form) just the section it changed."""
    now = request.app[CLOCK]()
    async with request.app[DATABASE].read() as conn:
        fresh = await get_account(conn, me.id) or me
        apps = await authorised_apps(conn, me.id, now)
        read_receipts = await chats.shares_read_receipts(conn, me.id)
    grant = await session_grant(request)
    urls = request.app[URLS]
    page_values = {
        "viewer": fresh,
        "me": fresh,
        "avatar_url": urls.media(fresh.avatar_file) if fresh.avatar_file else None,
        "handle": urls.handle(fresh),
        "apps": apps,
        "this_token": grant.token_id if grant is not None else None,
        "web_client": WEB_CLIENT_ID,
        "read_receipts": read_receipts,
        "section": section,
        "errors": errors or FormErrors(),
        "values": values or {},
        "saved": saved,
        "limits": {
            "display_name": profiles.DISPLAY_NAME_MAX,
            "note": profiles.NOTE_MAX,
            "avatar_mb": AVATAR_BYTES_MAX // (1024 * 1024),
            "password": PASSWORD_LENGTH_MIN,
        },
    }
    if section is not None and is_partial(request):
        return await render_fragment(request, "web/settings_fragment.html", status, **page_values)
    return await render(request, "web/settings.html", status, **page_values)


async def _done(request: web.Request, me: Account, section: str) -> web.Response:
    """After a change: the section again (kith.js), or the page (Post/Redirect/Get)."""
    if is_partial(request):
        return await _settings(request, me, section=section, saved=section)
    return see_other(f"/settings?saved={section}#{section}")


# --- profile ----------------------------------------------------------------------------------


@routes.post("/settings/profile")
@page
async def save_profile(request: web.Request) -> web.Response:
    """Name, bio and picture; followers' servers hear of the change (Update)."""
    me = await require_viewer(request)
    try:
        form = await read_form(request)
    except web.HTTPRequestEntityTooLarge:
        errors = FormErrors({"avatar": _too_big()})
        return await _settings(request, me, 413, "profile", errors)
    values = {
        "display_name": text_field(form, "display_name", profiles.DISPLAY_NAME_MAX).strip(),
        "note": text_field(form, "note", profiles.NOTE_MAX).strip(),
    }
    errors = FormErrors()
    if len(values["display_name"]) > profiles.DISPLAY_NAME_MAX:
        errors["display_name"] = f"A name has at most {profiles.DISPLAY_NAME_MAX} characters."
    if len(values["note"]) > profiles.NOTE_MAX:
        errors["note"] = f"A bio has at most {profiles.NOTE_MAX} characters."
    status, picture = await _picture(request, form.get("avatar"), errors)
    if errors:
        return await _settings(request, me, status, "profile", errors, values)
    remove = form.get("remove_avatar") == "1" and picture is None
    urls, data_dir = request.app[URLS], request.app[CONFIG].data_dir

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        return await profiles.update_profile(
            conn, urls, me, now, values["display_name"], values["note"],
            avatar_file=picture, remove_avatar=remove,
        )  # fmt: skip

    try:
        await request.app[FEDERATION].perform(act)
    except BaseException:
        remove_files(data_dir, picture)
        raise
    return await _done(request, me, "profile")


def _too_big() -> str:
    return (
        f"The picture is larger than {AVATAR_BYTES_MAX // (1024 * 1024)} MB. Choose a smaller one."
    )


async def _picture(request: web.Request, upload: Any, errors: FormErrors) -> tuple[int, str | None]:
    """A chosen picture, checked, cut to a square and written under media/: its file name
    (None when no file was chosen), or the error and the status to answer."""
    if not isinstance(upload, web.FileField) or not upload.filename:
        return 422, None
    data = await asyncio.to_thread(upload.file.read, AVATAR_BYTES_MAX + 1)
    if len(data) > AVATAR_BYTES_MAX:
        errors["avatar"] = _too_big()
        return 413, None
    if errors:
        return 422, None
    config = request.app[CONFIG]
    try:
        name = await asyncio.to_thread(store_avatar, config.data_dir, data, config.media.max_pixels)
    except MediaRejected as exc:
        errors["avatar"] = _sentence(str(exc))
        return exc.status, None
    return 200, name


# --- privacy ----------------------------------------------------------------------------------


@routes.post("/settings/privacy")
@page
async def save_privacy(request: web.Request) -> web.Response:
    """A locked account (followers need approval) and read receipts in chats."""
    me = await require_viewer(request)
    form = await read_form(request)
    locked = form.get("locked") == "1"
    share = form.get("read_receipts") == "1"
    urls = request.app[URLS]

    async def act(conn: AsyncConnection, now: datetime) -> Any:
        updated, outbound = await profiles.update_profile(conn, urls, me, now, locked=locked)
        await chats.share_read_receipts(conn, me.id, share)
        return updated, outbound

    await request.app[FEDERATION].perform(act)
    return await _done(request, me, "privacy")


# --- password ---------------------------------------------------------------------------------


@routes.post("/settings/password")
@page
async def change_password(request: web.Request) -> web.Response:
    """A new password, after the current one: every other session and app is signed out;
    this browser gets a new session."""
    me = await require_viewer(request)
    form = await read_form(request)
    current = text_field(form, "current_password", PASSWORD_LENGTH_MAX)
    new = text_field(form, "new_password", PASSWORD_LENGTH_MAX)
    errors = FormErrors()
    if not await _password_is(request, me, current):
        errors["current_password"] = "That is not your current password."  # noqa: S105
    try:
        check_password_rules(new)
    except WeakPassword as exc:
        errors["new_password"] = _sentence(str(exc))
    if new != text_field(form, "new_password_confirmation", PASSWORD_LENGTH_MAX):
        errors["new_password_confirmation"] = "The two new passwords differ."  # noqa: S105
    if errors:
        return await _settings(request, me, 422, "password", errors)
    encoded = await asyncio.to_thread(hash_password, new)
    urls, now = request.app[URLS], request.app[CLOCK]()
    async with request.app[DATABASE].transaction() as conn:
        await set_password(conn, me, encoded, now)
        client = await web_client(conn, urls, now)
        issued = await issue_token(
            conn, me.id, client.scopes, client.name, now, application_id=client.id
        )
        session_id = await open_session(conn, issued.access_token, now)
    response = see_other("/settings?saved=password#password")
    names = cookies(request)
    names.set(response, names.session, session_id, int(SESSION_LIFETIME.total_seconds()))
    return response


async def _password_is(request: web.Request, me: Account, password: str) -> bool:
    """Whether `password` is the user's; wrong guesses count as failed sign-ins do."""
    limiter, now = request.app[LOGIN_LIMITER], request.app[CLOCK]()
    key = f"user:{me.username.lower()}"
    if limiter.peek(key, now):
        raise ApiError(429, "Too many wrong passwords", "Wait a few minutes and try again.")
    async with request.app[DATABASE].read() as conn:
        stored = await password_hash_of(conn, me.id)
    if await asyncio.to_thread(verify_password, password, stored):
        return True
    limiter.hit(key, now)
    return False


# --- authorised apps --------------------------------------------------------------------------


@routes.post("/settings/apps/{token_id}/revoke")
@page
async def revoke_app(request: web.Request) -> web.Response:
    """Take back an app's access (its token); this browser's own session is signed out
    with "Sign out" instead."""
    me = await require_viewer(request)
    await read_form(request)
    raw = request.match_info["token_id"]
    token_id = int(raw) if re.fullmatch(r"[0-9]{1,19}", raw) else 0
    grant = await session_grant(request)
    if grant is not None and grant.token_id == token_id:
        errors = FormErrors({"": "That is this browser: use “Sign out” to end it."})
        return await _settings(request, me, 422, "apps", errors)
    async with request.app[DATABASE].transaction() as conn:
        revoked = await revoke_token_of(conn, me.id, token_id, request.app[CLOCK]())
    if not revoked:
        errors = FormErrors({"": "That app has no access to your account any more."})
        return await _settings(request, me, 404, "apps", errors)
    return await _done(request, me, "apps")


# --- export -----------------------------------------------------------------------------------


@routes.get("/settings/export.zip")
@page
async def export(request: web.Request) -> web.Response:
    """The user's own data in one zip: profile, posts (as the Mastodon API shows them),
    follows (Mastodon's CSV columns), wallet history (the payments API's CSV)."""
    me = await require_viewer(request)
    urls = request.app[URLS]
    async with request.app[DATABASE].read() as conn:
        me = await get_account(conn, me.id) or me
        posts = await _posts(conn, request, me)
        following = await _follows(conn, urls.domain, me, outgoing=True)
        followers = await _follows(conn, urls.domain, me, outgoing=False)
        view = WalletView(request, me)
        history = await view.history(conn, HistoryFilter(), _WALLET_ROWS_MAX)
    wallet = [{k: v for k, v in item.items() if k != "record"} for item in history]
    profile = {
        "username": me.username,
        "address": urls.handle(me),
        "actor": urls.actor(me),
        "display_name": me.display_name,
        "note": me.note,
        "locked": me.is_locked,
        "created_at": me.created_at.isoformat(),
        "avatar": urls.media(me.avatar_file) if me.avatar_file else None,
    }
    files = {
        "profile.json": json.dumps(profile, indent=2, ensure_ascii=False),
        "posts.json": json.dumps(posts, indent=2, ensure_ascii=False),
        "following_accounts.csv": _csv_lines(
            ["Account address", "Show boosts", "Notify on new posts", "Languages"], following
        ),
        "followers.csv": _csv_lines(["Account address"], [[row[0]] for row in followers]),
        "wallet.csv": transactions_csv_text(wallet),
    }
    body = await asyncio.to_thread(_zip, files)
    day = request.app[CLOCK]().strftime("%Y-%m-%d")
    return web.Response(
        body=body,
        content_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="kith-{me.username}-{day}.zip"',
            "Cache-Control": "no-store",
        },
    )


async def _posts(conn: AsyncConnection, request: web.Request, me: Account) -> list[dict]:
    """Every post of the user's (direct messages too), oldest first, as entities."""
    presenter = Presenter(conn, request.app[URLS], me)
    found: list[dict] = []
    after = 0
    while True:
        rows = await conn.execute(
            select(statuses)
            .where(statuses.c.account_id == me.id, statuses.c.id > after)
            .order_by(statuses.c.id)
            .limit(_EXPORT_BATCH)
        )
        batch = [status_from_row(row) for row in rows]
        if not batch:
            return found
        found += await presenter.statuses(batch)
        after = batch[-1].id


async def _follows(
    conn: AsyncConnection, local_domain: str, me: Account, outgoing: bool
) -> list[list[str]]:
    """Accepted follows by the user (or of the user), as addresses and Mastodon's flags."""
    mine, theirs = follows.c.account_id, follows.c.target_account_id
    if not outgoing:
        mine, theirs = theirs, mine
    rows = await conn.execute(
        select(accounts.c.username, accounts.c.domain, follows.c.show_reblogs, follows.c.notify)
        .join(accounts, accounts.c.id == theirs)
        .where(mine == me.id, follows.c.state == "accepted")
        .order_by(follows.c.id)
    )
    return [
        [
            f"{row.username}@{row.domain or local_domain}",
            _flag(row.show_reblogs),
            _flag(row.notify),
            "",
        ]
        for row in rows
    ]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _csv_lines(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _zip(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()
