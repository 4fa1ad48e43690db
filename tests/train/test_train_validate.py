import numpy as np
import pytest
import torch

import medmem
from medmem.train import validate
from medmem.train.data import prepare_case

from train_helpers import case_2d, case_3d


def _held(raw, size=32):
    return prepare_case(raw, size, keep_eval_label=True)


def test_pick_cases_round_robin_over_tasks():
    cases = [_held(case_2d(i, "val", task="a")) for i in range(4)] + [_held(case_2d(i, "val", task="b"))
                                                                      for i in range(2)]
    got = validate.pick_cases(cases, 3)
    assert [c.task for c in got] == ["a", "b", "a"]
    assert len(validate.pick_cases(cases, 0)) == 6


def test_predict_object_shapes_and_z_range():
    torch.manual_seed(0)
    model = medmem.build_model("test_tiny", device="cpu")
    raw = case_3d(0, "val", depth=6, size=40, two_objects=True)
    raw.label[0] = 0                                          # object 1 absent from slice 0
    raw.label[0][raw.label[1] == 2] = 2
    c = _held(raw, 128)
    pred = validate.predict_object(model, c, 1)
    assert pred.shape == raw.label.shape and pred.dtype == bool
    assert not pred[0].any()                                  # outside the object's z-range: nothing
    p2 = validate.predict_object(model, _held(case_2d(0, "val", size=40), 128), 1)
    assert p2.shape == (1, 40, 40)
    with pytest.raises(ValueError, match="prepared at 32"):
        validate.predict_object(model, _held(case_2d(0, "val")), 1)


def test_evaluate_aggregates_dice_and_nsd(monkeypatch):
    model = medmem.build_model("test_tiny", device="cpu")
    cases = [_held(case_2d(0, "val", task="a")), _held(case_3d(0, "val", task="b", two_objects=True))]

    def oracle(model, case, obj, bank=None):                 # perfect on task a, empty on task b
        return (case.eval_label == obj) if case.task == "a" else np.zeros(case.eval_label.shape, bool)

    monkeypatch.setattr(validate, "predict_object", oracle)
    model.train()
    r = validate.evaluate(model, cases)
    assert model.training                                     # mode restored
    assert r["per_task"]["a"] == {"dice": 1.0, "nsd": 1.0, "objects": 1}
    assert r["per_task"]["b"]["objects"] == 2 and r["per_task"]["b"]["dice"] == 0.0
    assert r["dice"] == pytest.approx(0.5) and r["objects"] == 3
    assert validate.evaluate(model, cases, tasks=["a"])["per_task"].keys() == {"a"}
