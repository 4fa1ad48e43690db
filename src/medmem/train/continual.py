"""Continual multi-task schedule: tasks arrive in sequence, each trained for ``steps_per_task`` steps;
after each task every task seen so far is evaluated. The Dice matrix R[i][j] (after task i, on
task j ≤ i) gives forgetting: for each earlier task, the best Dice it ever had minus its final
Dice (Chaudhry et al.), and backward transfer: mean of R[last][j] − R[j][j].

Run the same schedule with ``memory="fifo"`` and ``memory="confidence"`` and compare the two
``continual.json`` files with `compare` to measure what the confidence memory buys.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..atomic import atomic_path


def task_index(step: int, steps_per_task: int, num_tasks: int) -> int:
    """Index of the task trained at optimizer step ``step`` (0-based)."""
    return min(step // steps_per_task, num_tasks - 1)


@dataclass
class ContinualLog:
    """Evaluation rows of a continual run: after task i, metric per seen task."""

    tasks: List[str]
    memory: str = "fifo"
    dice: List[Dict[str, float]] = field(default_factory=list)
    nsd: List[Dict[str, float]] = field(default_factory=list)
    steps: List[int] = field(default_factory=list)

    def add(self, step: int, result: dict) -> None:
        """Record an evaluation (`medmem.train.validate.evaluate` output) made after a task."""
        self.steps.append(int(step))
        self.dice.append({t: float(v["dice"]) for t, v in result["per_task"].items()})
        self.nsd.append({t: float(v["nsd"]) for t, v in result["per_task"].items()})

    def matrix(self, metric: str = "dice") -> List[List[Optional[float]]]:
        """R[i][j]: ``metric`` on task j after training task i (None before task j was seen)."""
        rows = self.dice if metric == "dice" else self.nsd
        return [[row.get(t) if j <= i else None for j, t in enumerate(self.tasks)] for i, row in enumerate(rows)]

    def summary(self, metric: str = "dice") -> dict:
        r = self.matrix(metric)
        if not r:
            return {}
        last = r[-1]
        seen = [v for v in last if v is not None]
        out: dict = {"final_mean": _mean(seen)}
        if len(r) == len(self.tasks) and len(self.tasks) > 1:
            forget, bwt = {}, []
            for j, t in enumerate(self.tasks[:-1]):
                hist = [r[i][j] for i in range(j, len(r) - 1) if r[i][j] is not None]
                if hist and last[j] is not None:
                    forget[t] = max(hist) - last[j]
                if r[j][j] is not None and last[j] is not None:
                    bwt.append(last[j] - r[j][j])
            out["forgetting"] = forget
            out["avg_forgetting"] = _mean(list(forget.values()))
            out["backward_transfer"] = _mean(bwt)
        return out

    def to_dict(self) -> dict:
        return {"tasks": self.tasks, "memory": self.memory, "steps": self.steps,
                "dice": self.matrix("dice"), "nsd": self.matrix("nsd"),
                "summary": {"dice": self.summary("dice"), "nsd": self.summary("nsd")}}

    @staticmethod
    def from_dict(d: dict) -> "ContinualLog":
        log = ContinualLog(list(d["tasks"]), d.get("memory", "fifo"))
        log.steps = list(d.get("steps", []))
        for key, dest in (("dice", log.dice), ("nsd", log.nsd)):
            for row in d.get(key, []):
                dest.append({t: v for t, v in zip(log.tasks, row) if v is not None})
        return log

    def write(self, path: Union[str, Path]) -> Path:
        """Write ``to_dict()`` as JSON, atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def _mean(v: Sequence[float]) -> float:
    v = [x for x in v if x is not None and not math.isnan(x)]
    return float(sum(v) / len(v)) if v else float("nan")


def compare(*paths: Union[str, Path]) -> List[dict]:
    """Rows {memory, final_mean_dice, avg_forgetting, backward_transfer} for continual.json files."""
    rows = []
    for p in paths:
        d = json.loads(Path(p).read_text())
        s = d["summary"]["dice"]
        rows.append({"file": str(p), "memory": d.get("memory"), "final_mean_dice": s.get("final_mean"),
                     "avg_forgetting": s.get("avg_forgetting"), "backward_transfer": s.get("backward_transfer")})
    return rows
