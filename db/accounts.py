"""Users, passwords, API tokens and browser sessions. Callers own the session (and commit).

Passwords are hashed with werkzeug.security (scrypt). An API token is shown to its owner once; only the
sha256 of the secret is stored, so a leaked database does not leak usable tokens. A browser sign-in is a
token too (prefix `lms_`, kept inside the signed session cookie): signing out revokes it, so a copy of the
cookie stops working at once, and "sign out everywhere" is one UPDATE.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from db.models import ApiToken, Role, User

TOKEN_PREFIX = "lm_"
SESSION_PREFIX = "lms_"
SESSION_NAME = "browser session"
MIN_PASSWORD_LENGTH = 8
# name@domain: one @, something on each side, no spaces or control characters (deliverability is not checked)
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
# A fixed hash to compare against when the email is unknown, so sign-in takes as long either way.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why, for a person."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; never stored


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(session: Session, email: str, password: str, role: str = Role.USER.value) -> User:
    email = normalize_email(email)
    if not EMAIL.fullmatch(email) or len(email) > 320:
        raise AccountError(f"{email!r} is not an email address (one @ between a name and a domain, no spaces).")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")
    if role not in {r.value for r in Role}:
        raise AccountError(f"Unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}.")
    if get_user_by_email(session, email) is not None:
        raise AccountError(f"A user with the email {email} already exists.")
    user = User(email=email, password_hash=generate_password_hash(password), role=role, is_active=True)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def count_admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.role == Role.ADMIN.value)) or 0


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this email and password, else None (same work either way)."""
    user = get_user_by_email(session, email)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.is_active:
        return None
    return user


def set_password(session: Session, user: User, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = generate_password_hash(password)
    session.flush()


def issue_token(session: Session, user_id: int, name: str, *, prefix: str = TOKEN_PREFIX) -> IssuedToken:
    name = name.strip() or "API token"
    secret = prefix + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user_id, name=name[:100], prefix=secret[:10], token_hash=hash_token(secret))
    session.add(token)
    session.flush()
    return IssuedToken(token=token, secret=secret)


@dataclass(frozen=True)
class TokenOwner:
    id: int
    email: str
    role: str
    token_created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


# built once: every API call runs it, and building a statement costs more than running this one
_TOKEN_OWNER = (
    select(User.id, User.email, User.role, ApiToken.id.label("token_id"), ApiToken.created_at,
           ApiToken.last_used_at)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None),
           User.is_active.is_(True))
)


def user_for_token(session: Session, secret: str) -> TokenOwner | None:
    """The active owner of an unrevoked token, else None.

    Records when the token was last used, at most once a minute, so polling clients do not turn every
    GET into a write; then it sets `session.info["token_touched"]` for the caller to commit."""
    row = session.execute(_TOKEN_OWNER, {"token_hash": hash_token(secret)}).first()
    if row is None:
        return None
    now = datetime.now(UTC)
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        session.execute(update(ApiToken).where(ApiToken.id == row.token_id).values(last_used_at=now))
        session.info["token_touched"] = True
    return TokenOwner(row.id, row.email, row.role, row.created_at)


def _is_session(prefix_column):
    return prefix_column.startswith(SESSION_PREFIX, autoescape=True)


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """The user's API tokens (browser sessions are not listed)."""
    return list(session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ~_is_session(ApiToken.prefix)).order_by(ApiToken.id.desc())
    ))


def start_session(session: Session, user_id: int) -> str:
    """A browser sign-in: its secret goes into the signed session cookie."""
    return issue_token(session, user_id, SESSION_NAME, prefix=SESSION_PREFIX).secret


def end_session(session: Session, secret: str) -> None:
    session.execute(update(ApiToken).where(ApiToken.token_hash == hash_token(secret), ApiToken.revoked_at.is_(None))
                    .values(revoked_at=datetime.now(UTC)))


def count_sessions(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).select_from(ApiToken).where(
        ApiToken.user_id == user_id, _is_session(ApiToken.prefix), ApiToken.revoked_at.is_(None))) or 0


def end_other_sessions(session: Session, user_id: int, keep_secret: str | None) -> int:
    """Sign the user out of every browser but this one; returns how many sessions ended."""
    query = update(ApiToken).where(ApiToken.user_id == user_id, _is_session(ApiToken.prefix),
                                   ApiToken.revoked_at.is_(None))
    if keep_secret:
        query = query.where(ApiToken.token_hash != hash_token(keep_secret))
    return session.execute(query.values(revoked_at=datetime.now(UTC))).rowcount


def revoke_token(session: Session, user_id: int, token_id: int) -> bool:
    """Revoke one of the user's own tokens; False when it is not theirs or already revoked."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return result.rowcount == 1
