"""Every error a person or client sees: a page or `{"error": {"code", "message"}}`, never a traceback.

Messages say what to do next. API paths (and clients that ask for JSON) get JSON; browsers get a page.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError
from sqlalchemy.exc import OperationalError as DBAPIOperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from webapp.auth import has_bearer_header, is_api_request

log = logging.getLogger(__name__)

# status -> (code, title, what to do)
ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "The request could not be understood",
          "Check the fields you sent and try again."),
    401: ("unauthorized", "Sign in needed",
          "Sign in, or send an API token in the `Authorization: Bearer <token>` header "
          "(create one on your account page)."),
    403: ("forbidden", "Not allowed", "Only administrators can do this. Ask an administrator to do it for you."),
    404: ("not_found", "Not found",
          "There is nothing here, or it belongs to someone else. Check the address, or go back to your history."),
    405: ("method_not_allowed", "Method not allowed",
          "This address does not accept that kind of request; see /api/v1/openapi.json for what it accepts."),
    409: ("conflict", "Not possible right now",
          "That conflicts with the current state (for example a training run is already going). Reload the page "
          "and try again."),
    413: ("payload_too_large", "Upload too large",
          "The upload is over the size limit. Send fewer or smaller files, in several uploads if need be."),
    415: ("unsupported_media_type", "Unsupported content type", "Send the body in the format the endpoint expects."),
    429: ("rate_limited", "Too many requests", "You are going faster than allowed. Wait a minute and try again."),
    500: ("internal_error", "Something went wrong on our side",
          "The error was logged. Try again in a moment; if it keeps happening, tell an administrator."),
    503: ("unavailable", "Temporarily unavailable", "A service the app needs is down. Try again in a minute."),
}

TOKEN_MESSAGES = {
    "invalid_token": "That API token is not valid: it was revoked or mistyped. Create a new one on your account page.",
    "malformed_token": "The Authorization header must be `Bearer <token>`.",
}


class UserError(Exception):
    """A request we refuse for a reason the person can fix; raised anywhere, answered as an error."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def wants_json() -> bool:
    if is_api_request() or has_bearer_header():
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(status: int, message: str | None = None, code: str | None = None,
                   details: dict | None = None) -> Response:
    default_code, title, advice = ERRORS.get(status, ERRORS[500] if status >= 500 else ERRORS[400])
    message = message or advice
    code = code or default_code
    if wants_json():
        body: dict = {"error": {"code": code, "message": message}}
        if details:
            body["error"]["details"] = details
        response = jsonify(body)
    else:
        response = make_response(render_template("error.html", status=status, title=title, message=message))
    response.status_code = status
    return response


def _message_for(exc: HTTPException) -> tuple[str | None, str | None]:
    """(code, message) for an HTTP error; None keeps the defaults above."""
    status = exc.code or 500
    if status == 401 and g.get("auth_error"):
        return g.auth_error, TOKEN_MESSAGES[g.auth_error]
    if status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length <= limit:
            # within the size limit: the form parser stopped at MAX_FORM_PARTS, i.e. far too many files
            files = current_app.config["MAX_FILES_PER_UPLOAD"]
            return "too_many_files", (f"Far more than {files} files in one upload; the limit is {files}. "
                                      "Send them in several uploads.")
        limit_mb = limit / 1024 / 1024
        return None, (f"The upload is over the {limit_mb:.0f} MB limit for one request. "
                      "Send fewer or smaller files, in several uploads if need be.")
    if status == 429:
        return None, f"Too many requests: the limit is {exc.description}. Wait a little and try again."
    # a description set where the error was raised is meant for people; Werkzeug's stock ones are not ours
    custom = exc.description if exc.description != type(exc).description else None
    return None, custom


def _from_http_exception(exc: HTTPException) -> Response:
    code, message = _message_for(exc)
    response = error_response(exc.code or 500, message, code)
    for header, value in exc.get_headers():
        if header.lower() in ("retry-after", "allow"):
            response.headers[header] = value
    if response.status_code == 401 and wants_json():
        response.headers["WWW-Authenticate"] = 'Bearer realm="leximind"'
    return response


def _csrf_error(exc: CSRFError):
    return error_response(
        400, "The form expired or came from another site (" + exc.description.rstrip(".") + "). "
        "Reload the page and send it again; API clients send `Authorization: Bearer <token>`.", "csrf_failed")


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _from_http_exception(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500)


def _database_unavailable(exc: Exception):
    """The database is down or restarting: say so (503), not "something went wrong" (500)."""
    log.warning("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
    g._login_user = current_app.login_manager.anonymous_user()  # the page must not ask the database who you are
    return error_response(503, "The database is not reachable right now (it may be restarting). Nothing you "
                               "uploaded is lost; try again in a minute.", "database_unavailable")


def _invalid_value(exc: Exception):
    """A value the database cannot hold (a number past its range, a NUL character): the request's fault."""
    log.info("invalid value on %s %s: %s", request.method, request.path, type(exc).__name__)
    return error_response(400, "A value in the request cannot be used: a number is too large, or a text holds "
                               "a NUL character. Check the parameters and try again.", "invalid_value")


def init_app(app: Flask) -> None:
    app.register_error_handler(UserError, lambda exc: error_response(exc.status, exc.message, exc.code, exc.details))
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(InternalServerError, lambda exc: error_response(500))
    app.register_error_handler(Exception, _unexpected)
    app.register_error_handler(DBAPIOperationalError, _database_unavailable)
    app.register_error_handler(DataError, _invalid_value)
