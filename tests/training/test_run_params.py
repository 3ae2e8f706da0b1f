"""Run parameters as the web app and API send them become a valid run spec."""
import pytest

from model.training.run import RunSpecError, spec_from_params
from model.training.trainer import steps_for_epochs
from webapp.training_params import parse_training_request


def test_params_from_the_web_form_make_a_run_spec():
    params = parse_training_request({"datasets": ["bbc"], "tasks": ["topic"], "epochs": 2,
                                     "learning_rate": "0.0003", "method": "lora"})
    spec = spec_from_params(params)
    assert spec.epochs == 2
    assert spec.datasets == ["bbc"]
    assert spec.train.mode == "lora"
    assert spec.train.learning_rate == pytest.approx(3e-4)


def test_epochs_become_steps_over_the_batches_of_every_task():
    assert steps_for_epochs(1, 64, grad_accum_steps=2) == 32
    assert steps_for_epochs(3, 65, grad_accum_steps=2) == 98  # ceil(195 / 2)
    assert steps_for_epochs(1, 0, grad_accum_steps=1) == 1
    with pytest.raises(ValueError):
        steps_for_epochs(0, 10, grad_accum_steps=1)
    with pytest.raises(RunSpecError, match="epochs"):
        spec_from_params({"epochs": 0})


def test_a_starter_run_queued_by_the_workers_makes_a_run_spec():
    """The params the workers queue a starter run with (restart policy included) are a valid spec: a
    missing key here failed every starter run at once on a fresh `make run`."""
    from db.versions import STARTER_RECIPE, starter_params

    params = starter_params("no model available: OSError", tries=2, max_tries=3, retry_after_s=120.0)
    spec = spec_from_params(params)
    assert spec == spec_from_params({"recipe": STARTER_RECIPE})
    with pytest.raises(RunSpecError, match="unknown run settings"):
        spec_from_params({**params, "not_a_setting": 1})
