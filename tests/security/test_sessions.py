"""Sessions and sign-in: no fixation, sign-out and deactivation end access, password guessing is limited.

The route-by-route matrix (anonymous, another user, non-admin), CSRF, token revocation and the basic sign-in
limit are in tests/web (test_authorization.py, test_security.py); this adds what an attacker tries next.
"""
from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import update

from db.models import User
from db.session import session_scope
from tests.web.conftest import PASSWORD, csrf_from, sign_in

SESSION_COOKIE = "session"


def cookie(client: FlaskClient, name: str = SESSION_COOKIE) -> str | None:
    found = client.get_cookie(name)
    return found.value if found else None


def signed_in(app, session_value: str | None) -> bool:
    """Whether a fresh browser holding only this session cookie is signed in."""
    fresh = app.test_client()
    if session_value:
        fresh.set_cookie(SESSION_COOKIE, session_value)
    return fresh.get("/account").status_code == 200


def from_address(app, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_session_from_before_sign_in_never_becomes_signed_in(app, client, alice):
    client.get("/login")  # an attacker plants this pre-sign-in session in the victim's browser
    planted = cookie(client)
    assert planted, "the sign-in form should start a session (it holds the CSRF token)"
    sign_in(client, alice)
    assert cookie(client) != planted
    assert signed_in(app, cookie(client))
    assert not signed_in(app, planted)


def test_signing_out_ends_the_session_even_for_a_copied_cookie(app, client, alice):
    token = sign_in(client, alice)
    stolen = cookie(client)
    assert signed_in(app, stolen)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert not signed_in(app, cookie(client))
    assert not signed_in(app, stolen), "a copy of the signed-in cookie still works after signing out"


def test_deactivating_a_user_ends_their_session_and_tokens(app, client, alice, clean_db):
    sign_in(client, alice)
    session_cookie = cookie(client)
    assert signed_in(app, session_cookie)
    with session_scope(clean_db) as session:
        session.execute(update(User).where(User.id == alice.id).values(is_active=False))
    assert not signed_in(app, session_cookie)
    assert app.test_client().get("/api/v1/jobs", headers=alice.bearer).status_code == 401
    fresh = app.test_client()
    form = csrf_from(fresh.get("/login").get_data(as_text=True))
    assert fresh.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": form}).status_code == 400


def test_password_guessing_is_limited_per_address_across_accounts(app_factory, alice, bob):
    app = app_factory(LOGIN_RATE_LIMIT="5 per minute")
    attacker = from_address(app, "203.0.113.7")
    form = csrf_from(attacker.get("/login").get_data(as_text=True))
    emails = [alice.email, bob.email, "nobody@example.com"] * 3
    codes = [attacker.post("/login", data={"email": email, "password": f"guess-{n}", "csrf_token": form}).status_code
             for n, email in enumerate(emails)]
    assert codes[:5] == [400] * 5 and set(codes[5:]) == {429}, codes
    # the right password from the attacker's address is refused too while the limit holds...
    right = attacker.post("/login", data={"email": bob.email, "password": PASSWORD, "csrf_token": form})
    assert right.status_code == 429
    # ...but the attacker cannot lock the real owner out from elsewhere
    owner = from_address(app, "198.51.100.20")
    sign_in(owner, alice)
