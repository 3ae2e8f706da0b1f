"""Response headers and the CSRF policy.

CSRF: every state-changing request made with a browser session must carry the form's token (forms send it
as a field, our scripts as `X-CSRFToken`). Requests that authenticate with `Authorization: Bearer` are
exempt: browsers never attach that header on their own, so another site cannot forge one. An API call with
no credentials at all is left to fail with 401, which tells the client more than a CSRF error would.
"""
from __future__ import annotations

from flask import Flask, Response, request
from flask_login import current_user

from webapp.auth import has_bearer_header, is_api_request
from webapp.extensions import csrf

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS or has_bearer_header() or request.routing_exception is not None:
        return  # (a 404 or 405 is answered as such; there is no view to protect)
    if is_api_request() and not current_user.is_authenticated:
        return
    csrf.protect()


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if not request.path.startswith("/static/"):
        # pages and API answers are per person: never kept by shared caches or the back button
        headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
