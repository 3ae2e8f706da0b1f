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


def test_adding_a_user_with_a_short_password_says_why(client, admin, clean_db):
    """The admin page used to answer 400 with no message when the form's own length check failed."""
    from tests.web.conftest import sign_in

    token = sign_in(client, admin)
    response = client.post("/admin/users", data={"email": "new@example.com", "password": "abcde", "role": "user",
                                                 "csrf_token": token})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"Passwords need at least {accounts.MIN_PASSWORD_LENGTH} characters" in page
    assert 'class="flash flash-error"' in page and 'class="field-error"' in page
    with session_scope(clean_db) as s:
        assert accounts.get_user_by_email(s, "new@example.com") is None


def test_the_sign_in_messages_sit_in_the_sign_in_card(client, alice):
    """A wrong password's message used to sit beside the card, on the far left of the screen: the page centres
    its children in a row."""
    from tests.web.conftest import PASSWORD, csrf_from

    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": alice.email, "password": "wrong", "csrf_token": token})
    page = response.get_data(as_text=True)
    card = page[page.index('<section class="auth-card card">'):page.index("</section>")]
    assert response.status_code == 400 and "do not match an account" in card
    assert page.count("do not match an account") == 1

    token = csrf_from(page)
    client.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": token})
    page = client.post("/logout", data={"csrf_token": csrf_from(client.get("/account").get_data(as_text=True))},
                       follow_redirects=True).get_data(as_text=True)
    card = page[page.index('<section class="auth-card card">'):page.index("</section>")]
    assert "You are signed out." in card
