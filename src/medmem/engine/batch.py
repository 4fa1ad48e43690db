"""Batches for `medmem segment`: many volumes (a folder or a JSON manifest), over one or many processes.

    medmem segment cases/ --out results/ --prompts prompts/ --checkpoint w.pt
    torchrun --nproc_per_node 4 -m medmem.cli segment cases.json --out results/ --checkpoint w.pt
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m medmem.cli segment cases.json --out /shared/results --checkpoint w.pt

Case i of the listing goes to rank i % WORLD_SIZE. A case whose outputs are complete is skipped
(:func:`is_complete`); a failed case is reported and the others go on; rank 0 gathers one row per
case and writes ``summary.json`` and ``summary.csv``.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import click

from .cli import _one_line, _read

STATUSES = ("done", "skipped", "failed")


class BatchError(ValueError):
    """A batch that cannot start (bad manifest, two cases writing the same files)."""


@dataclass(frozen=True)
class Case:
    """One input of a batch: its position in the listing, the image, and its own prompt file, if any."""

    index: int
    image: Path
    prompts: Optional[Path] = None

    @property
    def name(self) -> str:
        from ..io.filenames import strip_suffix

        return strip_suffix(self.image.name)

    def mask(self, out: Path) -> Path:
        return out / f"{self.name}_mask.nii.gz"

    def overlay(self, out: Path) -> Path:
        return out / f"{self.name}_overlay.png"

    def report(self, out: Path) -> Path:
        return out / f"{self.name}_report.json"


def list_cases(input_path: Path) -> Tuple[List[Case], bool]:
    """The cases of INPUT and whether it is a batch: a JSON manifest (``{"cases": [{"image": PATH,
    "prompts": PATH?}]}``, paths relative to the manifest's folder) or a folder of volume files is a
    batch; anything else (a file, a DICOM or frame folder) is one case. Raises :class:`BatchError`."""
    from ..io.filenames import is_volume_file

    if input_path.is_file() and input_path.suffix == ".json":
        try:
            man = json.loads(input_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise BatchError(f"{input_path}: not a readable JSON manifest ({_one_line(e)})") from None
        entries = man.get("cases") if isinstance(man, dict) else None
        if not isinstance(entries, list) or not all(
                isinstance(c, dict) and isinstance(c.get("image"), str)
                and isinstance(c.get("prompts", ""), str) for c in entries):
            raise BatchError(f"{input_path}: a manifest needs a 'cases' list of "
                             f"{{\"image\": PATH, \"prompts\": PATH (optional)}} entries")

        def resolve(p: str) -> Path:
            return Path(p) if os.path.isabs(p) else input_path.parent / p

        cases = [Case(i, resolve(c["image"]), resolve(c["prompts"]) if c.get("prompts") else None)
                 for i, c in enumerate(entries)]
        _check_names(cases, input_path)
        return cases, True
    if input_path.is_dir():
        vols = sorted(p for p in input_path.iterdir() if p.is_file() and is_volume_file(p))
        if vols:
            cases = [Case(i, p) for i, p in enumerate(vols)]
            _check_names(cases, input_path)
            return cases, True
    return [Case(0, input_path)], False


def _check_names(cases: Sequence[Case], source: Path) -> None:
    """Two cases with the same name would write the same output files: refuse before any work."""
    if not cases:
        raise BatchError(f"{source}: the batch has no cases")
    seen: Dict[str, Case] = {}
    for c in cases:
        if c.name in seen:
            raise BatchError(f"{source}: cases {seen[c.name].image} and {c.image} would both write "
                             f"{c.name}_mask.nii.gz; give them different file names")
        seen[c.name] = c


def split(n: int, rank: int, world: int) -> List[int]:
    """The case indices rank `rank` of `world` runs: i % world == rank (a partition of range(n))."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    return list(range(rank, n, world))


def fingerprint(path: Optional[Path]) -> Optional[Dict[str, Any]]:
    """Size and modification time of a file, or of a folder's files (count, total size, newest
    mtime, hidden files ignored): what tells that an input changed since its outputs were written."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        stats = [p.stat() for p in files]
        return {"name": path.name, "files": len(stats), "size": sum(s.st_size for s in stats),
                "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class SegmentOptions:
    """What decides a case's result besides its image and prompt file (the `medmem segment` options)."""

    prompts_file: Optional[Path] = None      # one prompt file for every case, or a folder of NAME.json
    box: Optional[str] = None
    slice_idx: Optional[int] = None
    points: Tuple[str, ...] = ()
    policy: str = "fifo"
    policy_opts: Tuple[str, ...] = ()
    policy_kwargs: Dict[str, Any] = field(default_factory=dict)
    axis: Any = None
    axes: Optional[List[str]] = None
    direction: str = "both"
    intensity: str = "auto"
    checkpoint: Optional[str] = None
    config: Optional[str] = None
    model_name: Optional[str] = None
    backend: str = "torch"
    precision: str = "auto"                  # auto | fp32 | bf16 (autocast; `engine.autocast.precision_dtype`)

    def prompt_file(self, case: Case) -> Optional[Path]:
        """The prompt file of a case: its own (manifest), else --prompts (a folder: NAME.json in it)."""
        if case.prompts is not None:
            return case.prompts
        if self.prompts_file is not None and self.prompts_file.is_dir():
            return self.prompts_file / f"{case.name}.json"
        return self.prompts_file

    def settings(self) -> Dict[str, Any]:
        """The options as JSON, recorded in each report; a case made with other settings is redone."""
        return {"box": self.box, "slice": self.slice_idx, "points": list(self.points), "policy": self.policy,
                "policy_opts": list(self.policy_opts), "axis": None if self.axis is None else str(self.axis),
                "axes": self.axes, "direction": self.direction, "intensity": self.intensity,
                "checkpoint": fingerprint(Path(self.checkpoint)) if self.checkpoint else None,
                "config": self.config, "model": self.model_name, "backend": self.backend,
                "precision": self.precision}


def case_objects(vol, case: Case, opts: SegmentOptions) -> list:
    """The prompts of one case as ObjectPrompts: its prompt file, or the --box/--point options."""
    from ..io import load_prompts
    from .pipeline import parse_cli_prompts

    pf = opts.prompt_file(case)
    if pf is not None:
        return load_prompts(pf, vol)
    return parse_cli_prompts(vol, opts.axis, opts.box, opts.slice_idx, list(opts.points))


def run_segmentation(model, vol, objects: list, opts: SegmentOptions, progress: bool):
    """`segment_volume`, or `segment_multi_axis` with --axes: the one Segmentation of a case."""
    from .autocast import precision_dtype

    dtype = precision_dtype(opts.precision)
    if opts.axes:
        from .multi_axis import segment_multi_axis

        return segment_multi_axis(model, vol, objects, axes=opts.axes, policy=opts.policy,
                                  policy_options=opts.policy_kwargs, intensity=opts.intensity, dtype=dtype)
    from .pipeline import segment_volume

    return segment_volume(model, vol, objects, policy=opts.policy, axis=opts.axis, direction=opts.direction,
                          progress=progress, intensity=opts.intensity, policy_kwargs=opts.policy_kwargs,
                          dtype=dtype)


def provenance(case: Case, out: Path, opts: SegmentOptions) -> Dict[str, Any]:
    """What a complete case's report records under "batch": the input's and prompt file's fingerprints,
    the settings, and the names of the mask and overlay written with it."""
    pf = opts.prompt_file(case)
    return {"input": fingerprint(case.image), "prompts": fingerprint(pf) if pf is not None and pf.exists() else None,
            "settings": opts.settings(), "mask": case.mask(out).name, "overlay": case.overlay(out).name}


def is_complete(case: Case, out: Path, opts: SegmentOptions) -> Optional[dict]:
    """The report of a case whose outputs are complete, else None.

    Complete: the report exists (it is written last, and every write is atomic, so a file that exists
    is whole), it names this case's mask and overlay, both exist, and it records the same input and
    prompt file (size and mtime) and the same settings as this run.
    """
    rp, mask, png = case.report(out), case.mask(out), case.overlay(out)
    if not (rp.is_file() and mask.is_file() and png.is_file()):
        return None
    try:
        rep = json.loads(rp.read_text(encoding="utf-8"))
        want = json.loads(json.dumps(provenance(case, out, opts)))
    except (ValueError, OSError):
        return None
    if not isinstance(rep, dict) or rep.get("batch") != want or Path(str(rep.get("output", ""))).name != mask.name:
        return None
    return rep


def _objects(rep: dict) -> List[Dict[str, Any]]:
    """Per object: volume (mL) and confidence (mean predicted IoU over the slices where it is present,
    number of slices to review) from a report; confidence is None where the report has none (--axes)."""
    rows = []
    for o in rep.get("objects", []):
        per = [r for r in o.get("per_slice", []) if r.get("present") and "iou" in r]
        rows.append({"id": o["id"], "name": o.get("name"), "volume_ml": o.get("volume_ml"),
                     "mean_iou": round(sum(r["iou"] for r in per) / len(per), 4) if per else None,
                     "slices_to_review": len(o["slices_to_review"]) if "slices_to_review" in o else None})
    return rows


class _Abort(Exception):
    """This rank cannot go on (the model cannot be loaded): its remaining cases are not run."""


def run_case(case: Case, out: Path, opts: SegmentOptions, get_model: Callable[[], Any], rank: int = 0,
             progress: bool = False) -> Dict[str, Any]:
    """Run one case unless it is complete → its summary row (status done / skipped / failed).

    Outputs are written only after the whole case succeeded: mask, overlay, then the report (last,
    so that a report means a complete case). Any error of the case → status failed with a one-line
    message; an error loading the model raises :class:`_Abort`.
    """
    from ..io.writers import check_mask_output

    t0 = time.perf_counter()
    row: Dict[str, Any] = {"index": case.index, "case": case.name, "input": str(case.image), "rank": rank,
                           "output": str(case.mask(out)), "report": str(case.report(out))}
    rep = is_complete(case, out, opts)
    if rep is not None:
        return {**row, "status": "skipped", "seconds": round(time.perf_counter() - t0, 3), "error": None,
                "objects": _objects(rep)}
    try:
        vol = _read(case.image)
        check_mask_output(case.mask(out), vol)
        objects = case_objects(vol, case, opts)
        try:
            model = get_model()
        except click.ClickException as e:
            raise _Abort(e.message) from None
        result = run_segmentation(model, vol, objects, opts, progress)
        rep = result.report
        rep["input"] = str(case.image)
        rep["output"] = str(case.mask(out))
        rep["batch"] = provenance(case, out, opts)
        result.write(vol, case.mask(out), case.overlay(out), case.report(out),
                     {int(o.id): o.name for o in objects if o.name})
    except _Abort:
        raise
    except Exception as e:  # noqa: BLE001 -- one failed case never stops the batch
        msg = _one_line(e)
        known = isinstance(e, (ValueError, KeyError, OSError))  # bad input, prompts, unwritable output
        return {**row, "status": "failed", "output": None, "report": None,
                "seconds": round(time.perf_counter() - t0, 3),
                "error": msg if known else f"{type(e).__name__}: {msg}", "objects": []}
    return {**row, "status": "done", "seconds": round(time.perf_counter() - t0, 3), "error": None,
            "objects": _objects(rep)}


class _Tally:
    """Cases finished across ranks: a counter in the process group's store (or local, one process)."""

    def __init__(self, world: int, prefix: str):
        self.world, self.prefix, self.count = world, prefix, 0
        self.store = None
        if world > 1:
            import torch.distributed as dist

            self.store = dist.distributed_c10d._get_default_store()

    def add(self, n: int = 1) -> int:
        """Count n finished cases; → cases finished so far on all ranks."""
        self.count = self.store.add(self.prefix + "cases", n) if self.store is not None else self.count + n
        return self.count

    def wait_for_ranks(self, on_progress: Callable[[int], None]) -> None:
        """Say this rank is through its cases, then wait (outside any collective, so without its
        timeout) until every rank is; `on_progress(cases finished)` on each change meanwhile."""
        if self.store is None:
            return
        self.store.add(self.prefix + "ranks", 1)
        seen = self.count
        while True:
            ranks = self.store.add(self.prefix + "ranks", 0)
            now = self.store.add(self.prefix + "cases", 0)
            if now != seen:
                on_progress(now)
                seen = now
            if ranks >= self.world:
                return
            time.sleep(0.2)


_RUNS = [0]  # batches run in this process group (store keys of one run never meet another's)


def run_batch(cases: Sequence[Case], out: Path, opts: SegmentOptions, load_model: Callable[[Optional[str]], Any],
              device: Optional[str] = None, quiet: bool = False) -> List[Dict[str, Any]]:
    """Run the cases, split over the ranks of a torchrun launch (WORLD_SIZE > 1; gloo on CPU, NCCL on
    CUDA) or all in this process; → all rows, in listing order, on every rank. Rank 0 writes
    summary.json and summary.csv into `out` and prints progress. `load_model(device)` is called once,
    on the first case that needs the model (device: this rank's device, or None: the user's choice).
    Raises ClickException when the model cannot be loaded (after the summary is written) or when
    every case failed."""
    from ..train.ddp import cleanup, init_distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = init_distributed(device if opts.backend == "torch" else "cpu") if world > 1 else None
    rank = info.rank if info is not None else 0
    model_device = str(info.device) if info is not None and opts.backend == "torch" else device
    _RUNS[0] += 1
    tally = _Tally(world, f"medmem/segment/{_RUNS[0]}/")
    total = len(cases)
    model: List[Any] = []

    def get_model():
        if not model:
            model.append(load_model(model_device))
        return model[0]

    def echo_progress(k: int) -> None:
        if rank == 0 and not quiet:
            click.echo(f"[{k}/{total}] cases finished")

    rows: List[Dict[str, Any]] = []
    abort: Optional[str] = None
    try:
        mine = [cases[i] for i in split(total, rank, world)]
        for n, case in enumerate(mine):
            try:
                row = run_case(case, out, opts, get_model, rank, progress=not quiet and world == 1)
            except _Abort as e:
                abort = str(e)
                rows += [_not_run(c, out, rank, abort) for c in mine[n:]]
                tally.add(len(mine) - n)
                break
            rows.append(row)
            k = tally.add()
            _echo_row(row, k, total, rank, world, quiet)
        tally.wait_for_ranks(echo_progress)
        rows = _gather(rows, world)
        if rank == 0:
            write_summary(rows, out, world)
            if not quiet:
                counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in STATUSES)
                click.echo(f"{total} cases: {counts}; summary: {out / 'summary.json'}, {out / 'summary.csv'}")
        if world > 1:
            import torch.distributed as dist

            dist.barrier()  # nobody exits (and makes torchrun stop the others) before rank 0 has written
    finally:
        if info is not None:
            cleanup(info)
    if abort is not None:
        raise click.ClickException(abort)
    if rows and all(r["status"] == "failed" for r in rows):
        raise click.ClickException("every case failed")
    return rows


def _not_run(case: Case, out: Path, rank: int, why: str) -> Dict[str, Any]:
    return {"index": case.index, "case": case.name, "input": str(case.image), "rank": rank,
            "output": None, "report": None, "status": "failed", "seconds": 0.0,
            "error": f"not run: {why}", "objects": []}


def _echo_row(row: Dict[str, Any], k: int, total: int, rank: int, world: int, quiet: bool) -> None:
    """A failure: one line on stderr, from any rank. Progress: on rank 0 only, unless --quiet."""
    where = f" (rank {rank})" if world > 1 else ""
    if row["status"] == "failed":
        click.echo(f"{row['input']}: FAILED{where}: {row['error']}", err=True)
        return
    if rank != 0 or quiet:
        return
    if row["status"] == "skipped":
        click.echo(f"[{k}/{total}] {row['input']}: skipped (complete in {Path(row['output']).parent})")
        return
    vols = ", ".join(f"object {o['id']}: {o['volume_ml']} mL" for o in row["objects"])
    click.echo(f"[{k}/{total}] {row['input']} -> {row['output']} ({row['seconds']} s; {vols})")


def _gather(rows: List[Dict[str, Any]], world: int) -> List[Dict[str, Any]]:
    """Every rank's rows on every rank (no de-duplication: a case run twice would show twice), in
    listing order."""
    if world > 1:
        import torch.distributed as dist

        parts: List[Any] = [None] * world
        dist.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    return sorted(rows, key=lambda r: (r["index"], r["rank"]))


def object_ids(rows: Sequence[Dict[str, Any]]) -> List[int]:
    return sorted({int(o["id"]) for r in rows for o in r["objects"]})


CSV_FIELDS = ("index", "case", "input", "status", "rank", "seconds", "output", "error")


def write_summary(rows: Sequence[Dict[str, Any]], out: Path, world: int = 1) -> Tuple[Path, Path]:
    """summary.json (the rows, and counts) and summary.csv (one row per case; per object id its
    volume_ml, mean_iou, slices_to_review columns), each written atomically."""
    from ..atomic import atomic_path
    from ..io.overlay import write_json_atomic

    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    js = write_json_atomic({"total": len(rows), **counts, "world_size": world, "cases": list(rows)},
                           out / "summary.json")
    ids = object_ids(rows)
    header = list(CSV_FIELDS) + [f"object_{i}_{k}" for i in ids for k in ("volume_ml", "mean_iou", "slices_to_review")]
    with atomic_path(out / "summary.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for r in rows:
                by_id = {int(o["id"]): o for o in r["objects"]}
                cells = ["" if r.get(k) is None else r[k] for k in CSV_FIELDS]
                for i in ids:
                    o = by_id.get(i, {})
                    cells += ["" if o.get(k) is None else o[k] for k in ("volume_ml", "mean_iou", "slices_to_review")]
                w.writerow(cells)
    return js, out / "summary.csv"
