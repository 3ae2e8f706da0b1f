"""History filters from query-string arguments, shared by the history page, its exports and the API."""
from __future__ import annotations

from datetime import date

from werkzeug.datastructures import MultiDict

from db.history import HistoryError, HistoryFilter
from webapp.errors import UserError

FILTER_ARGS = ("q", "topic", "emotion", "state", "from", "to", "model_version", "sort")


def _date(args: MultiDict, name: str) -> date | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise UserError(400, "invalid_date", f"`{name}` must be a date like 2025-01-31, not {raw!r}.") from None


def history_filter(args: MultiDict, owner_id: int) -> HistoryFilter:
    def text(name: str) -> str | None:
        return (args.get(name) or "").strip() or None

    try:
        return HistoryFilter(
            owner_id=owner_id, q=text("q") or "", topic=text("topic"), emotion=text("emotion"),
            state=text("state"), date_from=_date(args, "from"), date_to=_date(args, "to"),
            model_version=text("model_version"), sort=text("sort") or "newest",
        )
    except HistoryError as exc:
        raise UserError(400, "invalid_filter", str(exc)) from None


def filter_args(args: MultiDict) -> dict[str, str]:
    """The filters in force, to carry into page links and export links."""
    return {name: args[name] for name in FILTER_ARGS if args.get(name)}
