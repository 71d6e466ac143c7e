"""The parameters' one definition (``dlcprune.core.params``) and what derives from it: the checks,
the job API's request schemas and the score cache's keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.jobs.schemas import BaselineParamsIn, DLCParamsIn
from dlcprune.core.errors import ParameterError
from dlcprune.core.params import BASELINES, BaselineParams, DLCParams, params_of


@pytest.mark.parametrize(
    ("cls", "schema"), [(DLCParams, DLCParamsIn), (BaselineParams, BaselineParamsIn)]
)
def test_the_api_schema_is_the_definition(cls: type, schema: type) -> None:
    fields = schema.model_fields  # type: ignore[attr-defined]
    for p in params_of(cls):
        if p.spec.execution:
            assert p.name not in fields, "execution details are worker settings"
            continue
        field = fields[p.name]
        assert field.default == p.default and field.description == p.spec.help
    assert set(fields) == {p.name for p in params_of(cls) if not p.spec.execution}


def test_the_api_takes_every_engine_option() -> None:
    body = DLCParamsIn(early_stop=True, early_stop_tol=0.99, precision="bf16")  # type: ignore[call-arg]
    params = DLCParams(**body.model_dump()).validate()
    assert (params.early_stop, params.early_stop_tol, params.precision) == (True, 0.99, "bf16")
    for bad in ({"precision": "fp16"}, {"early_stop_tol": 0}, {"batch_size": 8}):
        with pytest.raises(ValidationError):
            DLCParamsIn(**bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": -1}, "levels must be a whole number in [0, 1000], got -1"),
        ({"levels": True}, "levels must be a whole number"),
        ({"step": 0.0}, "step must be a number in (0, 1), got 0.0"),
        ({"start": float("nan")}, "start must be a number in [0, 1]"),
        ({"schedule": "cosine"}, "schedule must be one of linear, geometric"),
        ({"early_stop_tol": 0}, "early_stop_tol must be a number in (0, 1]"),
        ({"early_stop": 1}, "early_stop must be true or false"),
        ({"draws": 2}, "draws > 1 needs random masking"),
        ({"schedule": "linear", "start": 0.5, "end": 0.1}, "start must not be above end"),
        ({"template": "{question}"}, "template must contain {instruction}"),
        ({"template": "x" * 10_001}, "template must be at most 10000 characters"),
    ],
)
def test_dlc_checks_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError) as err:
        DLCParams(**kwargs).validate()
    assert message in str(err.value)


def test_baseline_checks_come_from_the_same_definition() -> None:
    BaselineParams().validate()
    with pytest.raises(ParameterError, match=r"lr must be a number in \(0, 10\), got 10"):
        BaselineParams(lr=10).validate()
    with pytest.raises(ParameterError, match=r"seeds must be a whole number in \[1, 20\]"):
        BaselineParams(seeds=0).validate()


def test_cache_keys_are_the_ones_stored_before() -> None:
    """Score sets are found by these keys: they must not change with a refactor (a score set
    made under the earlier default, linear with 10 levels, is found when asked for explicitly)."""
    assert DLCParams().identity("image") == {
        "levels": 50,
        "schedule": "geometric",
        "masking": "l1",
        "scope": "global",
        "image_size": None,
        "step": 0.02,
    }
    assert DLCParams(schedule="linear", levels=10).identity("image") == {
        "levels": 10,
        "schedule": "linear",
        "masking": "l1",
        "scope": "global",
        "image_size": None,
        "start": 0.02,
        "end": 0.98,
    }
    assert DLCParams(batch_size=8, start=0.1, end=0.5).identity("vector") == DLCParams().identity(
        "vector"
    )
    assert DLCParams().identity("instruction") == {
        "levels": 3,
        "schedule": "geometric",
        "masking": "l1",
        "scope": "global",
        "max_length": 512,
        "template": None,
        "truncation": "right",
        "step": 0.2,
    }
    random = DLCParams(
        schedule="linear",
        levels=10,
        masking="random",
        draws=2,
        seed=4,
        early_stop=True,
        precision="fp32",
    )
    assert random.identity("text") == {
        "levels": 10,
        "schedule": "linear",
        "masking": "random",
        "scope": "global",
        "max_length": 256,
        "start": 0.02,
        "end": 0.98,
        "draws": 2,
        "seed": 4,
        "early_stop": [0.999, 3, 6],
        "precision": "fp32",
    }
    base = BaselineParams()
    keys = {m: set(base.identity(m)) for m in BASELINES}
    assert keys["random"] == {"seed"}
    assert keys["herding"] == keys["moderate"] == {"image_size", "max_length"}
    assert keys["kcenter_greedy"] == {"image_size", "max_length", "seed"}
    assert keys["el2n"] == {
        "image_size",
        "max_length",
        "seed",
        "seeds",
        "epochs",
        "lr",
        "head_lr",
        "train_batch_size",
    }
