"""``leximind create-user`` and ``leximind reset-password``, and the first admin a fresh database gets."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable
from typing import Any

from leximind.config import Settings

FIRST_ADMIN_EMAIL = "admin@localhost.localdomain"


def _in_account_session(settings: Settings, action: Callable[[Any], Any]) -> Any:
    """``action(session)`` on the installation's database, committed; None (after an 'error: ...' line) when
    there is no installation here or the action refuses with an AccountError."""
    from db.accounts import AccountError
    from db.session import session_scope
    from leximind.cli import prepare_services, require_installation

    if not require_installation(settings):
        return None
    services = prepare_services(settings)
    try:
        with session_scope(services.database_url) as session:
            return action(session)
    except AccountError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    from db.accounts import create_user, issue_token
    from db.models import Role

    password = args.password or secrets.token_urlsafe(12)

    def create(session: Any) -> tuple[str, str]:
        user = create_user(session, args.email, password, Role.ADMIN.value if args.admin else Role.USER.value)
        return user.email, issue_token(session, user.id, "created by leximind create-user").secret

    created = _in_account_session(settings, create)
    if created is None:
        return 1
    email, token = created
    _print_credentials(email, password if not args.password else None, token, admin=args.admin)
    return 0


def cmd_reset_password(args: argparse.Namespace, settings: Settings) -> int:
    """A new password for an account (the only way back in when the one printed at first start is lost);
    every browser signed in as that account is signed out. API tokens keep working."""
    from db.accounts import end_other_sessions, get_user_by_email, set_password

    password = args.password or secrets.token_urlsafe(12)

    def reset(session: Any) -> tuple[str, int] | None:
        user = get_user_by_email(session, args.email)
        if user is None:
            print(f"error: no user {args.email!r}; create one with `leximind create-user`", file=sys.stderr)
            return None
        set_password(session, user, password)
        return user.email, end_other_sessions(session, user.id, None)

    done = _in_account_session(settings, reset)
    if done is None:
        return 1
    email, signed_out = done
    print(f"new password for {email}" + (f":  {password}" if not args.password else " set")
          + f" ({signed_out} browser session(s) signed out; API tokens unchanged)", flush=True)
    return 0


def ensure_first_admin(database_url: str) -> None:
    """On a fresh database, create an admin and print how to sign in (the only time it is shown)."""
    from db.accounts import count_admins, create_user, issue_token
    from db.models import Role
    from db.session import session_scope

    with session_scope(database_url) as session:
        if count_admins(session) > 0:
            return
        password = secrets.token_urlsafe(12)
        user = create_user(session, FIRST_ADMIN_EMAIL, password, Role.ADMIN.value)
        token = issue_token(session, user.id, "first admin")
    _print_credentials(user.email, password, token.secret, admin=True, first=True)


def _print_credentials(
    email: str, password: str | None, token: str, *, admin: bool, first: bool = False
) -> None:
    kind = "admin" if admin else "user"
    lines = [
        f"{'First ' if first else ''}{kind} account (shown once; keep it somewhere safe):",
        f"  email:     {email}",
    ]
    if password:
        lines.append(f"  password:  {password}")
    lines += [f"  API token: {token}", f"  use it as: Authorization: Bearer {token}"]
    print("\n".join(lines), flush=True)
