"""Small things every API module needs: the JSON body, page sizes, Location headers."""
from __future__ import annotations

from typing import Any

from flask import request

from webapp.errors import UserError

MAX_ID = 2_147_483_647  # ids are PostgreSQL integers: a larger one cannot name a row


def json_body() -> dict[str, Any]:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes (silent= covers only malformed JSON)
        data = None
    if not isinstance(data, dict):
        raise UserError(400, "invalid_json", "Send a JSON object in the body, with "
                        "`Content-Type: application/json`.")
    return data


def page_limit(default: int = 50, maximum: int = 500) -> int:
    limit = whole_number_arg("limit", minimum=1, maximum=maximum, code="invalid_limit")
    return default if limit is None else limit


def whole_number_arg(name: str, *, minimum: int = 1, maximum: int | None = None,
                     code: str = "invalid_parameter") -> int | None:
    """The query argument `name` as a whole number in range, None when absent; anything else is a 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
    message = f"{name} must be a whole number {bounds}, not {raw!r}."
    try:
        value = int(raw)
    except ValueError:
        raise UserError(400, code, message) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise UserError(400, code, message)
    return value
