"""`kith invite create|list|revoke`: invitations to sign up (server/identity/invites.py).

An invite admits its holder in every registration mode but "closed", without approval.
Creating and revoking one is recorded in the audit log (`kith admin log`) as "cli".
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta

from server import moderation
from server.cli_support import CommandError, load, say, with_database
from server.clock import utcnow
from server.config import Config
from server.identity.invites import Invite, InviteError, create_invite, list_invites
from server.identity.invites import revoke_invite as revoke
from server.storage.engine import Database

CLI = "cli"
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    invite = commands.add_parser("invite", help="invitations to sign up")
    sub = invite.add_subparsers(title="invite commands", metavar="COMMAND", required=True)
    create = sub.add_parser(
        "create",
        parents=[common],
        help="make an invite and print its code and link",
        description="Make an invite code and print it with its link (BASE_URL/invite/CODE). "
        "Whoever has it may sign up in any registration mode but closed, without approval, "
        "giving the code to their app (Mastodon's invite_code).",
    )
    create.add_argument("--uses", type=int, metavar="N", help="sign-ups it admits (default: any)")
    create.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="how long it is valid: 30m, 12h, 7d, 2w (default: until revoked)",
    )
    create.add_argument("--comment", metavar="TEXT", help="a note for yourself (who it is for)")
    create.set_defaults(run=cmd_invite_create)
    listed = sub.add_parser("list", parents=[common], help="list invites still usable")
    listed.add_argument(
        "--all", action="store_true", help="also the expired, used-up and revoked ones"
    )
    listed.set_defaults(run=cmd_invite_list)
    revoked = sub.add_parser(
        "revoke", parents=[common], help="revoke an invite (accounts it admitted stay)"
    )
    revoked.add_argument("code")
    revoked.set_defaults(run=cmd_invite_revoke)


def parse_duration(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` as a duration."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise CommandError(f"{text!r} is not a duration such as 30m, 12h, 7d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def invite_link(config: Config, invite: Invite) -> str:
    return f"{config.base_url}/invite/{invite.code}"


async def cmd_invite_create(args: argparse.Namespace) -> int:
    config = load(args)
    if args.uses is not None and args.uses < 1:
        raise CommandError("--uses must be at least 1")
    now = utcnow()
    expires_at = now + parse_duration(args.expires_in) if args.expires_in else None

    async def work(db: Database) -> int:
        try:
            async with db.transaction() as conn:
                invite = await create_invite(conn, now, args.uses, expires_at, args.comment)
                await moderation.record(conn, CLI, "invite_create", _target(invite), None, now)
        except InviteError as exc:
            raise CommandError(str(exc)) from None
        say(f"code: {invite.code}")
        say(f"link: {invite_link(config, invite)}")
        say(f"admits: {_uses(invite)}; expires: {_when(invite.expires_at)}")
        if config.instance.registrations == "closed":
            say(
                'note: instance.registrations is "closed", so no invite admits anyone until it '
                'is "invite", "approval" or "open"'
            )
        return 0

    return await with_database(config, work)


async def cmd_invite_list(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        now = utcnow()
        async with db.read() as conn:
            found = await list_invites(conn, now, include_unusable=args.all)
        if not found:
            say("no invites" if args.all else "no usable invites (--all lists the others)")
            return 0
        say(f"{'code':<22} {'state':<8} {'used':<9} {'expires':<16} {'created':<16} comment")
        for invite in found:
            say(
                f"{invite.code:<22} {invite.state(now):<8} "
                f"{_uses(invite):<9} {_when(invite.expires_at):<16} "
                f"{_when(invite.created_at):<16} {invite.comment or ''}"
            )
        return 0

    return await with_database(config, work)


async def cmd_invite_revoke(args: argparse.Namespace) -> int:
    config = load(args)

    async def work(db: Database) -> int:
        now = utcnow()
        try:
            async with db.transaction() as conn:
                invite = await revoke(conn, args.code.strip(), now)
                await moderation.record(conn, CLI, "invite_revoke", _target(invite), None, now)
        except InviteError as exc:
            raise CommandError(str(exc)) from None
        say(f"invite {invite.code} revoked ({invite.uses} sign-up(s) made with it stay)")
        return 0

    return await with_database(config, work)


def _target(invite: Invite) -> str:
    # Not the code itself: the log is read by people who should not be handed a live invite.
    return f"invite #{invite.id}"


def _uses(invite: Invite) -> str:
    return f"{invite.uses}/{invite.max_uses}" if invite.max_uses else f"{invite.uses}/any"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "never"
