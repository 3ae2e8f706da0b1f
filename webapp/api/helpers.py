"""Small things every API module needs: the JSON body, page sizes, Location headers."""
from __future__ import annotations

from typing import Any

from flask import request

from webapp.errors import UserError


def json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise UserError(400, "invalid_json", "Send a JSON object in the body, with "
                        "`Content-Type: application/json`.")
    return data


def page_limit(default: int = 50, maximum: int = 500) -> int:
    raw = request.args.get("limit", default)
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise UserError(400, "invalid_limit", f"limit must be a whole number from 1 to {maximum}.") from None
    if not 1 <= limit <= maximum:
        raise UserError(400, "invalid_limit", f"limit must be a whole number from 1 to {maximum}.")
    return limit
