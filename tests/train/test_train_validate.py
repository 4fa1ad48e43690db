import numpy as np
import pytest
import torch

import medmem
from medmem.data.prompt_sim import box_3d
from medmem.engine.volume import VolumeSession
from medmem.eval.metrics import dice
from medmem.train import validate
from medmem.train.bank import TrainingBank
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

    def oracle(model, case, obj, bank=None, amp_dtype=None):  # perfect on task a, empty on task b
        return (case.eval_label == obj) if case.task == "a" else np.zeros(case.eval_label.shape, bool)

    monkeypatch.setattr(validate, "predict_object", oracle)
    model.train()
    r = validate.evaluate(model, cases)
    assert model.training                                     # mode restored
    assert r["per_task"]["a"] == {"dice": 1.0, "nsd": 1.0, "objects": 1}
    assert r["per_task"]["b"]["objects"] == 2 and r["per_task"]["b"]["dice"] == 0.0
    assert r["dice"] == pytest.approx(0.5) and r["objects"] == 3
    assert validate.evaluate(model, cases, tasks=["a"])["per_task"].keys() == {"a"}


def _bank(model) -> TrainingBank:
    """A bank holding memories of a training case's slices (each decoded from its box)."""
    bank = TrainingBank(model.cfg, capacity=8, k=2)
    case = _held(case_3d(7, "train", size=40), model.image_size)
    feats = VolumeSession.from_model_inputs(model, case.model_input(list(range(case.num_slices))),
                                            case.source_hw).features
    pts = (torch.tensor([[[30.0, 30.0], [90.0, 90.0]]]), torch.tensor([[2, 3]], dtype=torch.int32))
    with torch.no_grad():
        for z in range(case.num_slices):
            f = feats.get(z)
            o = model.track_step(f, is_init_cond_frame=True, point_inputs=pts)
            bank.offer_all(TrainingBank.candidates(f.vision_feats, o.maskmem_features, o.maskmem_pos, o.obj_ptr,
                                                   o.heads.object_score_logits, o.heads.ious.max(-1, keepdim=True).values,
                                                   grid=bank.grid))
    assert len(bank) > 0
    return bank


@pytest.mark.parametrize("with_bank", [False, True])
def test_validation_dice_is_the_dice_of_a_volume_session_run(with_bank):
    """One tracker: validation's numbers are those of the engine's VolumeSession on the same case and prompt."""
    torch.manual_seed(0)
    model = medmem.build_model("test_tiny", device="cpu")
    bank = _bank(model) if with_bank else None
    raw = case_3d(3, "val", depth=8, size=40)
    raw.label[:2] = 0                                          # the object spans slices 2..7 of 8
    c = _held(raw, model.image_size)
    got = validate.evaluate(model, [c], bank=bank)

    gt = c.eval_label == 1
    b = box_3d(gt)
    sess = VolumeSession.from_model_inputs(model, c.model_input(list(range(b.z_min, b.z_max + 1))), c.source_hw,
                                           policy=bank.eval_policy() if with_bank else "fifo", dtype=torch.float32)
    sess.add_prompt(b.z_mid - b.z_min, 1, box=list(b.box_2d))
    for _ in sess.propagate():
        pass
    pred = np.zeros(gt.shape, bool)
    pred[b.z_min:b.z_max + 1] = sess.masks(1)
    assert got["objects"] == 1 and got["dice"] == dice(pred, gt)
    if with_bank:  # the bank was attended to on every tracked slice
        assert sess.memory_stats(1)["retrieved_per_slice_mean"] == 2
