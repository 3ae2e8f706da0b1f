"""schemathesis against /api/v1/openapi.json: generated requests for every documented operation.

Valid requests (positive mode) and invalid ones (negative mode), as a signed-in user over the web tests'
seeded world: every answer must be a documented status with a body of the documented shape and never a
5xx, and invalid requests must be refused. Examples per operation and mode are bounded (FUZZ_EXAMPLES) to
keep the run short on two cores. (schemathesis' pytest plugin does not run under pytest 9, so each
operation's strategy is driven by hypothesis here.)
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = [pytest.mark.slow]

FUZZ_EXAMPLES = 12
# "schema-valid data must be accepted": a PNG is a valid `binary` and any string a valid cursor, yet both are
# refused, rightly, with a 400 that says why; a schema cannot express either rule. "Schema-violating data
# must be refused": an empty filter (`from=&sort=`, what an untouched form field sends) means "not given".
SEMANTIC = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]


def test_every_operation_answers_as_documented(app, world, alice):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    bearer = {"Authorization": f"Bearer {alice.token}"}
    failures: dict[str, str] = {}
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in schemathesis.GenerationMode:
            tried.append(f"{operation.label} ({mode.value})")

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def exercise(case) -> None:
                case.call_and_validate(headers=bearer, excluded_checks=SEMANTIC)

            try:
                exercise()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation's failure
                failures[tried[-1]] = str(exc)[:2000]
    assert len(tried) >= 20, tried
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
