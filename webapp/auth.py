"""Who is asking: session sign-in (Flask-Login) for pages, `Authorization: Bearer` tokens for the API.

A browser session is a server-side record (a `lms_` token, db.accounts.start_session) whose secret is the
Flask-Login id inside the signed cookie: signing out revokes it, so a copied cookie dies with it, and a
session older than PERMANENT_SESSION_LIFETIME is refused. A request that carries a bearer token is judged
by the token alone: a session cookie riding along is ignored, so a revoked token never falls back to a
browser session; session secrets are not bearer tokens, nor API tokens session ids. Roles: user and admin.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import abort, current_app, g, redirect, request, url_for
from flask_login import UserMixin, current_user

from db import accounts
from db.models import User
from webapp.database import get_db
from webapp.extensions import login_manager


@dataclass
class SignedInUser(UserMixin):
    """What a request knows about its user; detached from any database session."""

    id: int
    email: str
    role: str
    via_token: bool = False
    session_secret: str | None = None  # the browser session's record (None for API tokens)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_id(self) -> str:
        """What Flask-Login keeps in the cookie: the session's secret, never the bare user id."""
        return self.session_secret or ""

    @classmethod
    def from_row(cls, user: User | accounts.TokenOwner, *, via_token: bool = False,
                 session_secret: str | None = None) -> SignedInUser:
        return cls(id=user.id, email=user.email, role=user.role, via_token=via_token, session_secret=session_secret)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def has_bearer_header() -> bool:
    return request.headers.get("Authorization", "").lower().startswith("bearer")


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def _owner(secret: str) -> accounts.TokenOwner | None:
    session = get_db()
    owner = accounts.user_for_token(session, secret)
    if session.info.pop("token_touched", False):
        session.commit()  # last_used_at
    return owner


@login_manager.user_loader
def _load_session_user(secret: str) -> SignedInUser | None:
    if has_bearer_header() or not secret.startswith(accounts.SESSION_PREFIX):
        return None
    owner = _owner(secret)
    if owner is None or datetime.now(UTC) - owner.token_created_at > current_app.permanent_session_lifetime:
        return None
    return SignedInUser.from_row(owner, session_secret=secret)


@login_manager.request_loader
def _load_token_user(_request: Any) -> SignedInUser | None:
    secret = bearer_token()
    if secret is None:
        if has_bearer_header():
            g.auth_error = "malformed_token"
        return None
    user = None if secret.startswith(accounts.SESSION_PREFIX) else _owner(secret)
    if user is None:
        g.auth_error = "invalid_token"
        return None
    return SignedInUser.from_row(user, via_token=True)


@login_manager.unauthorized_handler
def _unauthorized():
    if is_api_request() or has_bearer_header():
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def public(view: Callable) -> Callable:
    """Mark a view as open to everyone; every other view needs a signed-in user (see require_login)."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


def require_login() -> Any:
    """Runs before every request: signed-in by default, so a new route cannot forget to ask."""
    endpoint = request.endpoint
    if endpoint is None or endpoint == "static":
        return None  # 404 / 405 are answered by the error handlers
    view = current_app.view_functions.get(endpoint)
    if getattr(view, "is_public", False) or current_user.is_authenticated:
        return None
    return current_app.login_manager.unauthorized()


def admin_required(view: Callable) -> Callable:
    """Signed in and an admin: others get 403 (the page exists, the right to use it does not)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403, description="Only administrators can do this. Ask an administrator to do it for you.")
        return view(*args, **kwargs)

    return wrapped


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a path on this site, never another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.upload")


def init_app(app: Any) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    app.before_request(require_login)
