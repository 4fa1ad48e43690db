import json

import pytest

from medmem.train import TrainConfig, train
from medmem.train.continual import ContinualLog, compare, task_index

from train_helpers import case_2d, case_3d


def _res(d):
    return {"per_task": {t: {"dice": v, "nsd": v / 2} for t, v in d.items()}}


def test_forgetting_and_backward_transfer_by_hand(tmp_path):
    log = ContinualLog(["a", "b", "c"], "fifo")
    log.add(10, _res({"a": 0.8}))
    log.add(20, _res({"a": 0.6, "b": 0.7}))
    log.add(30, _res({"a": 0.5, "b": 0.75, "c": 0.9}))
    assert log.matrix() == [[0.8, None, None], [0.6, 0.7, None], [0.5, 0.75, 0.9]]
    s = log.summary()
    assert s["final_mean"] == pytest.approx((0.5 + 0.75 + 0.9) / 3)
    assert s["forgetting"] == {"a": pytest.approx(0.3), "b": pytest.approx(-0.05)}
    assert s["avg_forgetting"] == pytest.approx(0.125)
    assert s["backward_transfer"] == pytest.approx(((0.5 - 0.8) + (0.75 - 0.7)) / 2)
    p = log.write(tmp_path / "c.json")
    again = ContinualLog.from_dict(json.loads(p.read_text()))
    assert again.matrix() == log.matrix() and again.matrix("nsd")[2][0] == pytest.approx(0.25)
    rows = compare(p)
    assert rows[0]["avg_forgetting"] == pytest.approx(0.125) and rows[0]["memory"] == "fifo"
    assert [task_index(s, 10, 3) for s in (0, 9, 10, 29, 30)] == [0, 0, 1, 2, 2]


def test_continual_schedule_runs_tasks_in_sequence(tmp_path):
    cases = [case_2d(0, task="t_disk"), case_2d(1, task="t_disk"), case_2d(9, "val", task="t_disk"),
             case_3d(0, task="t_ball", depth=4), case_3d(9, "val", task="t_ball", depth=4)]
    cfg = TrainConfig(model="test_tiny", out=str(tmp_path), schedule="continual", tasks=("t_disk", "t_ball"), steps_per_task=2,
                      batch_size=1, clip_len=2, warmup=1, memory="confidence", bank_threshold=0.0, progress=False,
                      save_every=0)
    assert cfg.steps == 4
    res = train(cfg, cases)
    d = json.loads((tmp_path / "continual.json").read_text())
    assert d["tasks"] == ["t_disk", "t_ball"] and d["steps"] == [2, 4] and d["memory"] == "confidence"
    assert d["dice"][0][1] is None and all(v is not None for v in d["dice"][1])
    assert "avg_forgetting" in d["summary"]["dice"]
    assert res.continual == d
    # each task's steps drew only that task's samples
    from medmem.train import Trainer
    tr = Trainer(TrainConfig(**{**cfg.to_dict(), "out": str(tmp_path / "x")}), cases)
    tasks = [tr.data.train[r.case].task for s in range(4) for r in tr._refs(s, 0)]
    assert tasks == ["t_disk", "t_disk", "t_ball", "t_ball"]
    with pytest.raises(ValueError):
        TrainConfig(schedule="continual", tasks=("a",), steps_per_task=0)
