"""db.accounts: users, hashed passwords, API tokens stored as sha256, revocation."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from db import accounts
from db.models import ApiToken, User
from db.session import session_scope


def test_users_passwords_and_roles(clean_db):
    with session_scope(clean_db) as s:
        user = accounts.create_user(s, "  Ada@Example.com ", "long enough", "admin")
        assert user.email == "ada@example.com" and user.is_admin
        assert user.password_hash != "long enough" and user.password_hash.startswith(("scrypt:", "pbkdf2:"))
        assert accounts.authenticate(s, "ADA@example.com", "long enough").id == user.id
        assert accounts.authenticate(s, "ada@example.com", "wrong") is None
        assert accounts.authenticate(s, "nobody@example.com", "long enough") is None
        user.is_active = False
        assert accounts.authenticate(s, "ada@example.com", "long enough") is None
        assert accounts.count_admins(s) == 1
    for email, password, role, words in [("ada@example.com", "long enough", "user", "already exists"),
                                         ("not-an-email", "long enough", "user", "not an email"),
                                         ("b@example.com", "short", "user", "at least 8"),
                                         ("c@example.com", "long enough", "root", "Unknown role")]:
        with session_scope(clean_db) as s, pytest.raises(accounts.AccountError, match=words):
            accounts.create_user(s, email, password, role)


def test_tokens_are_hashed_checked_and_revoked(clean_db):
    with session_scope(clean_db) as s:
        user = accounts.create_user(s, "ada@example.com", "long enough")
        other = accounts.create_user(s, "bob@example.com", "long enough")
        issued = accounts.issue_token(s, user.id, "script")
    assert issued.secret.startswith("lm_") and len(issued.secret) > 40
    with session_scope(clean_db) as s:
        stored = s.scalar(select(ApiToken))
        assert stored.token_hash == accounts.hash_token(issued.secret) and stored.prefix == issued.secret[:10]
        assert accounts.user_for_token(s, issued.secret).id == user.id
        assert accounts.user_for_token(s, issued.secret + "x") is None
    with session_scope(clean_db) as s:
        assert s.scalar(select(ApiToken.last_used_at)) is not None
        assert not accounts.revoke_token(s, other.id, issued.token.id)  # not Bob's to revoke
        assert accounts.revoke_token(s, user.id, issued.token.id)
        assert not accounts.revoke_token(s, user.id, issued.token.id)  # already revoked
    with session_scope(clean_db) as s:
        assert accounts.user_for_token(s, issued.secret) is None
        s.get(User, user.id)
        assert [t.name for t in accounts.list_tokens(s, user.id)] == ["script"]
