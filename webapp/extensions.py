"""Extensions, created once and bound to each app in create_app (the init_app pattern)."""
from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect


def rate_limit_key() -> str:
    """Signed-in people are limited per account, everyone else per address."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"  # the account: get_id() is the session secret, and "" for a token
    return f"ip:{request.remote_addr or 'unknown'}"


login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=rate_limit_key, strategy="fixed-window")
