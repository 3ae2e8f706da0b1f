"""Signing in and out, the account page (API tokens), and user management for admins."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from db import accounts
from webapp.auth import SignedInUser, admin_required, public, safe_next
from webapp.database import get_db
from webapp.errors import UserError
from webapp.extensions import limiter
from webapp.forms import ActionForm, LoginForm, NewUserForm, TokenForm, form_problems

bp = Blueprint("auth", __name__)


def login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _by_address() -> str:
    return f"ip:{request.remote_addr or 'unknown'}"


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(login_limit, key_func=_by_address, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if form.validate_on_submit():
        session = get_db()
        user = accounts.authenticate(session, form.email.data, form.password.data)
        if user is not None:
            secret = accounts.start_session(session, user.id)
            session.commit()
            login_user(SignedInUser.from_row(user, session_secret=secret), remember=form.remember.data)
            return redirect(safe_next(request.args.get("next")))
        flash("That email and password do not match an account. Check both and try again.", "error")
    return render_template("login.html", form=form), 200 if request.method == "GET" else 400


@bp.post("/logout")
def logout():
    """Ends this browser's session record too: a copy of the cookie stops working with it."""
    if current_user.session_secret:
        session = get_db()
        accounts.end_session(session, current_user.session_secret)
        session.commit()
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def _account_page(new_token: str | None = None, status: int = 200):
    session = get_db()
    return render_template(
        "account.html", tokens=accounts.list_tokens(session, current_user.id), token_form=TokenForm(formdata=None),
        action_form=ActionForm(), new_token=new_token, sessions=accounts.count_sessions(session, current_user.id),
    ), status


@bp.get("/account")
def account():
    return _account_page()


@bp.post("/account/tokens")
def create_token():
    form = TokenForm()
    if not form.validate():
        raise UserError(400, "invalid_token_name", "Give the token a name of at most 100 characters.")
    session = get_db()
    issued = accounts.issue_token(session, current_user.id, form.name.data)
    session.commit()
    # shown once, in this response only: the secret never goes into the (signed, not encrypted) session cookie
    return _account_page(new_token=issued.secret, status=201)


@bp.post("/account/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int):
    session = get_db()
    if not accounts.revoke_token(session, current_user.id, token_id):
        raise UserError(404, "not_found", "That token does not exist, is not yours or is already revoked.")
    session.commit()
    flash("Token revoked. Programs using it can no longer sign in.", "info")
    return redirect(url_for("auth.account"))


@bp.post("/account/sessions/end-others")
def end_other_sessions():
    session = get_db()
    ended = accounts.end_other_sessions(session, current_user.id, current_user.session_secret)
    session.commit()
    flash(f"Signed out of {ended} other browser{'' if ended == 1 else 's'}.", "info")
    return redirect(url_for("auth.account"))


@bp.route("/admin/users", methods=["GET", "POST"])
@admin_required
def users():
    session = get_db()
    form = NewUserForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.create_user(session, form.email.data, form.password.data, form.role.data)
            session.commit()
            flash(f"Created {user.email} ({user.role}).", "info")
            return redirect(url_for("auth.users"))
        except accounts.AccountError as exc:
            session.rollback()
            flash(str(exc), "error")
            status = 400
    elif request.method == "POST":
        flash("The user was not added. " + form_problems(form), "error")
        status = 400
    return render_template("users.html", users=accounts.list_users(session), form=form), status
