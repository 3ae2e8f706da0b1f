"""Print the figures in test-artifacts/reliability/*.json as the Markdown table of docs/reliability.md.

    python -m tests.faults.report
"""
from __future__ import annotations

import json
import sys

from tests.faults.figures import REPORT_DIR

HEADER = ("| run | documents in | done | failed (reason) | lost | duplicated | leases left | wall s | notes |\n"
          "|---|---:|---:|---|---:|---:|---:|---:|---|")
NOTES = {  # detail fields worth a column of prose
    "inference-sigkill": lambda d: f"{len(d['kills'])} SIGKILLs mid-batch, {d['claimed_again']} claimed again, "
                                   f"{d['documents_per_s']} docs/s",
    "redis-restart": lambda d: f"{d['waiting_at_kill']} waiting at the kill, {d['uploaded_during_outage']} uploaded "
                               f"during a {d['outage_s']} s outage, recovered in {d['recovery_s']} s",
    "postgres-restart": lambda d: f"states at crash {d['states_at_crash']}, {d['outage_s']} s down, API "
                                  f"{d['api_during_outage']} meanwhile, recovered in {d['recovery_s']} s",
    "extraction-kill": lambda d: f"orphaned parser held until its parse ended: "
                                 f"{d.get('orphan_held_after_its_pool_died')}, then exited: "
                                 f"{d['orphan_parser_exited']}, others done while leased: "
                                 f"{d['others_done_while_leased']}, back {d['recovery_after_kill_s']} s after the kill",
    "hostile-uploads": lambda d: f"refused at upload: {sorted(set(d['refused_at_upload'].values()))}",
}


def row(figures: dict) -> str:
    failed = ", ".join(f"{code} {n}" for code, n in figures["failed_by_reason"].items()) or "-"
    name = figures["test"]
    details = figures.get("details", {})
    if name in NOTES:
        note = NOTES[name](details)
    elif name == "graceful-shutdown":
        note = "; ".join(f"SIGTERM to the {how}: stopped in {s['stop_s']} s, {s['processing_after_stop']} left "
                         f"processing, {s['done_at_stop']} done at the stop" for how, s in details["stops"].items())
    else:
        note = ""
    return (f"| {name} | {figures['documents_in']} | {figures['done']} | {figures['failed']} ({failed}) | "
            f"{figures['lost']} | {figures['duplicated']} | {figures['leases_left']} | {figures['wall_s']} | {note} |")


def main() -> int:
    files = sorted(p for p in REPORT_DIR.glob("*.json") if p.name != "load.json")
    if not files:
        print(f"no figures in {REPORT_DIR}; run `pytest tests/faults tests/security` first", file=sys.stderr)
        return 1
    print(HEADER)
    for path in files:
        print(row(json.loads(path.read_text())))
    load = REPORT_DIR / "load.json"
    if load.exists():
        s = json.loads(load.read_text())
        print(f"\nload: {s['pollers']} pollers, {s['documents']} documents: {s['requests_per_s']} requests/s, API p50 "
              f"{s['api_p50_ms']} ms, p99 {s['api_p99_ms']} ms (idle p99 {s['idle']['p99_ms']} ms), end to end p50 "
              f"{s['e2e_p50_s']} s, p99 {s['e2e_p99_s']} s, {s['documents_per_s']} documents/s, errors "
              f"{s['api_errors']}, load average {s.get('load_average_1m')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
