"""Size of one undo snapshot of `medmem serve` (docs/server.md): the engine state of one object after propagation.

Before each prompt step the server keeps `copy.deepcopy(VolumeSession.objects[obj])` for instant undo
(`medmem.server.session`, up to `SNAPSHOTS` copies). This measures that object's size on the bundled sample:
README command 1's box on axial slice 37, the default model, propagated both ways through 94 slices. Size =
the bytes of every numpy array and torch tensor reachable from the copy (each counted once), and, as a cross-check,
the length of its pickle.

    python benchmarks/undo_snapshot.py --out benchmarks/results_undo_snapshot.json
"""
from __future__ import annotations

import argparse
import copy
import json
import pickle
from pathlib import Path


def _nbytes(obj, seen) -> int:
    import numpy as np
    import torch

    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_nbytes(k, seen) + _nbytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(_nbytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return _nbytes(vars(obj), seen)
    if hasattr(obj, "__slots__"):
        return sum(_nbytes(getattr(obj, s), seen) for s in obj.__slots__ if hasattr(obj, s))
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import medmem
    from medmem.engine.pipeline import segment_volume
    from medmem.io import BoxPrompt, ObjectPrompts, read_volume, sample_path

    vol = read_volume(sample_path("mni152_t1"))
    model = medmem.build_model("default", device="cpu")
    seg = segment_volume(model, vol, [ObjectPrompts(id=1, prompts=[BoxPrompt(slice=37, box=(14, 14, 85, 104))],
                                                    axis="axial")], axis="axial")
    snap = copy.deepcopy(seg.session.objects[1])
    arrays = _nbytes(snap, set())
    res = dict(command=f"python benchmarks/undo_snapshot.py --out {a.out}", slices=seg.session.num_slices,
               model=model.cfg.name, array_bytes=arrays, array_mb=round(arrays / 1e6, 2),
               pickle_bytes=len(pickle.dumps(snap)), pickle_mb=round(len(pickle.dumps(snap)) / 1e6, 2))
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
