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


def read_history_filter(args: MultiDict, owner_id: int) -> tuple[HistoryFilter, dict[str, UserError]]:
    """The filter with every argument that can be read, and the problem with each one that cannot (by
    argument name), so a page can keep the good filters and say which one to fix."""
    def text(name: str) -> str | None:
        return (args.get(name) or "").strip() or None

    problems: dict[str, UserError] = {}
    dates: dict[str, date | None] = {}
    for name in ("from", "to"):
        try:
            dates[name] = _date(args, name)
        except UserError as exc:
            problems[name], dates[name] = exc, None
    values = {"q": text("q") or "", "topic": text("topic"), "emotion": text("emotion"),
              "model_version": text("model_version"), "state": text("state"), "sort": text("sort") or "newest",
              "date_from": dates["from"], "date_to": dates["to"]}
    # HistoryFilter checks these; try each on its own to know which argument a refusal is about
    for name, fields, fallback in (("sort", ("sort",), {"sort": "newest"}), ("state", ("state",), {"state": None}),
                                   ("to", ("date_from", "date_to"), {"date_to": None})):
        try:
            HistoryFilter(owner_id=owner_id, **{f: values[f] for f in fields})
        except HistoryError as exc:
            problems[name] = UserError(400, "invalid_filter", str(exc))
            values.update(fallback)
    return HistoryFilter(owner_id=owner_id, **values), problems


def history_filter(args: MultiDict, owner_id: int) -> HistoryFilter:
    """The filter, or a 400 about the first argument that cannot be read (for the API and exports)."""
    flt, problems = read_history_filter(args, owner_id)
    if problems:
        raise next(iter(problems.values()))
    return flt


def filter_args(args: MultiDict) -> dict[str, str]:
    """The filters in force, to carry into page links and export links."""
    return {name: args[name] for name in FILTER_ARGS if args.get(name)}
