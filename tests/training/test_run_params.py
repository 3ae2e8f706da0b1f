"""Run parameters as the web app and API send them become a valid run spec."""
import pytest

from model.training.config import TrainConfig
from model.training.run import RunSpecError, spec_from_params, steps_for_epochs
from webapp.training_params import parse_training_request


def test_params_from_the_web_form_make_a_run_spec():
    params = parse_training_request({"datasets": ["bbc"], "tasks": ["topic"], "epochs": 2,
                                     "learning_rate": "0.0003", "method": "lora"})
    spec = spec_from_params(params)
    assert spec.epochs == 2
    assert spec.datasets == ["bbc"]
    assert spec.train.mode == "lora"
    assert spec.train.learning_rate == pytest.approx(3e-4)


def test_epochs_become_steps_over_the_train_split():
    train = TrainConfig(batch_size=16, grad_accum_steps=2)
    assert steps_for_epochs(1, 64, train) == 2
    assert steps_for_epochs(3, 65, train) == 7  # ceil(195 / 32)
    assert steps_for_epochs(1, 0, train) == 1
    with pytest.raises(RunSpecError):
        steps_for_epochs(0, 10, train)
