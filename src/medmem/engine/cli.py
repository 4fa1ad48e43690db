"""`medmem segment` and `medmem segment-set`."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, List, Optional

import click
import numpy as np


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (multi-line messages joined with '; ')."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return "; ".join(lines) or type(e).__name__


def _fail(e: BaseException) -> click.ClickException:
    return click.ClickException(_one_line(e))


def _load_model(checkpoint: Optional[str], config: Optional[str], device: Optional[str], name: Optional[str] = None,
                backend: str = "torch"):
    """The model from --checkpoint/--config, or a named pretrained model (--model; default: the bundled
    default model); bad weights -> a one-line error. backend: "torch", or an onnxruntime backend (CPU)."""
    if backend != "torch":
        if device not in (None, "cpu"):
            raise click.ClickException(f"--backend {backend} runs on the CPU; drop --device {device}")
        from ..export import OnnxUnavailable, as_backend

        model = _load_model(checkpoint, config, "cpu", name)
        try:
            return as_backend(model, backend)
        except (OnnxUnavailable, ValueError, RuntimeError) as e:
            raise click.ClickException(f"--backend {backend}: {_one_line(e)}") from None
    import medmem

    if checkpoint is None:
        if config is not None:
            raise click.ClickException("--config only applies with --checkpoint")
        try:
            return medmem.build_model(name or "default", pretrained=True, device=device)
        except (ValueError, KeyError, RuntimeError, FileNotFoundError) as e:
            raise click.ClickException(f"--model {name or 'default'}: {_one_line(e)}") from None
    if name is not None:
        raise click.ClickException("give --model or --checkpoint, not both")
    try:
        return medmem.build_model(config, checkpoint=checkpoint, device=device)
    except (ValueError, KeyError, RuntimeError) as e:  # CheckpointError is a ValueError
        msg = _one_line(e)
        raise click.ClickException(msg if str(checkpoint) in msg else f"--checkpoint {checkpoint}: {msg}") from None


def _model_option(f):
    from ..pretrained import PRETRAINED

    return click.option("--model", "model_name", type=click.Choice(sorted(PRETRAINED)), default=None,
                        help="a pretrained model by name (default: the bundled default model; see `medmem models`)")(f)


def _read(path: Path):
    """`read_volume` with its warnings (NaN voxels replaced, geometry repaired) echoed as one line each."""
    import warnings

    from ..io import read_volume

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_volume(path)
    for w in caught:
        if issubclass(w.category, UserWarning):  # not ResourceWarnings of the video decoder's pipes
            click.echo(f"warning: {_one_line(w.message)}", err=True)
    return vol


def exit_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into SystemExit, so that atomic writes remove their temporary files on the way out.

    Only from the main thread, and only where nobody installed a handler already. Returns a
    function that puts the previous handler back (the command restores it when it ends).
    """
    import signal
    import sys
    import threading

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous != signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return lambda: signal.signal(signal.SIGTERM, previous)


def _check_outputs(out: Path, overlay: Optional[Path], report: Optional[Path], batch: bool) -> None:
    """Refuse unusable output paths before any work (reading, model loading, segmentation) starts."""
    from ..io.writers import check_mask_output

    if batch:
        if out.exists() and not out.is_dir():
            raise click.ClickException(f"--out {out}: a batch writes into a folder, and this is a file")
        if out.suffix:
            raise click.ClickException(f"--out {out}: a batch writes into a folder; give a folder name")
    else:
        check_mask_output(out)
    for flag, path, ext in (("--overlay", overlay, ".png"), ("--report", report, ".json")):
        if path is None:
            continue
        if path.suffix.lower() != ext:
            raise click.ClickException(f"{flag} {path}: must end in {ext}")
        if path.is_dir():
            raise click.ClickException(f"{flag} {path} is a folder; give a file name")
        if not batch and path.resolve() == out.resolve():
            raise click.ClickException(f"{flag} {path} is the same file as --out")


def _resolve_input(value: str) -> Path:
    """A path, or `sample:NAME` for a sample bundled with medmem (`sample:mni152_t1`)."""
    if value.startswith("sample:"):
        from ..io import list_samples, sample_path

        name = value.split(":", 1)[1]
        try:
            return Path(sample_path(name))
        except (KeyError, ValueError, FileNotFoundError):
            raise click.BadParameter(f"no bundled sample {name!r}; samples: {', '.join(list_samples())}")
    p = Path(value)
    if not p.exists():
        raise click.BadParameter(f"{value} does not exist")
    return p


@click.command("segment")
@click.argument("input_path", callback=lambda ctx, param, v: _resolve_input(v))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="mask file (.nii.gz/.nrrd/.mha/.dcm for DICOM-SEG) or, for a batch, a folder")
@click.option("--prompts", "prompts_file", type=click.Path(exists=True, path_type=Path), help="prompt JSON (docs/io.md)")
@click.option("--box", help="X0,Y0,X1,Y1 in slice pixels (with --slice)")
@click.option("--slice", "slice_idx", type=int, help="slice index of --box along --axis")
@click.option("--point", "points", multiple=True, help="X,Y,Z[,LABEL] (LABEL 1 = foreground, 0 = background)")
@click.option("--policy", default="fifo", type=click.Choice(["fifo", "self_sorting", "confidence"]))
@click.option("--policy-opt", "policy_opts", multiple=True, metavar="KEY=VALUE",
              help="memory-policy option, repeatable (k=4, rule=released, bank=FILE, save_bank=FILE, share_bank=true)")
@click.option("--axis", default=None, help="slicing axis: axial | coronal | sagittal | 0 | 1 | 2")
@click.option("--axes", default=None,
              help="multi-orientation: comma list of axial,coronal,sagittal, fused (each object needs a 3D box)")
@click.option("--direction", default="both", type=click.Choice(["both", "forward", "backward"]))
@click.option("--intensity", default="auto",
              help="scaling to [0, 1]: auto | percentile | minmax | a CT window name (soft_tissue, lung, bone, ...) [auto]")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="weights (.pt/.safetensors)")
@click.option("--config", "config", help="model config name (default: inferred from the checkpoint)")
@_model_option
@click.option("--device", default=None, help="cpu | cuda | mps (default: best available)")
@click.option("--backend", default="torch", type=click.Choice(["torch", "onnxruntime", "onnxruntime-int8"]),
              help="run the network in PyTorch, or as ONNX graphs in onnxruntime on the CPU (fp32, or dynamic int8; "
                   "needs medmem[onnx]; docs/export.md) [torch]")
@click.option("--precision", default="auto", type=click.Choice(["auto", "fp32", "bf16"]),
              help="autocast precision of the PyTorch backend: auto = bf16 on CUDA and on CPUs with AMX "
                   "(1.3x faster there, Dice within 0.001), fp32 on other CPUs, where bf16 is slower (AVX512-BF16 "
                   "alone) or emulated; MEDMEM_CPU_BF16=0 keeps auto at fp32 on the CPU (docs/speed.md) [auto]")
@click.option("--overlay", type=click.Path(path_type=Path), help="PNG mosaic of slices with contours")
@click.option("--report", type=click.Path(path_type=Path), help="JSON report with per-slice confidence")
@click.option("--reference", "reference", callback=lambda ctx, param, v: None if v is None else _resolve_input(v),
              help="reference mask (path or sample:NAME) to score the result against: Dice, NSD@2mm, HD95 "
                   "per object, in the report")
@click.option("--quiet", is_flag=True)
def segment_cmd(input_path: Path, out: Path, prompts_file, box, slice_idx, points, policy, policy_opts, axis, axes,
                direction, intensity, checkpoint, config, model_name, device, overlay, report, reference, quiet,
                backend="torch", precision="auto"):
    """Segment a volume (NIfTI, NRRD, MHA, MGZ, DICOM folder, video, image) from prompts on any slice.

    Outputs are checked before any work starts; every file is written atomically, and only after the
    whole case succeeded. Bad input ends in a one-line error, exit code 1, and no output file.

    A folder of volumes or a JSON manifest is a batch: complete cases are skipped, a failed case does
    not stop the others, summary.json/.csv at the end; under torchrun the cases are split over the
    processes (docs/batch.md).
    """
    restore = exit_on_sigterm()
    try:
        _segment(input_path, out, prompts_file, box, slice_idx, points, policy, policy_opts, axis, axes, direction,
                 intensity, checkpoint, config, model_name, device, overlay, report, reference, quiet, backend=backend,
                 precision=precision)
    finally:
        restore()


def _note_emulated_bf16(model, precision: str, quiet: bool):
    """The model, after a note on stderr when --precision bf16 will run emulated (a CPU without AVX512-BF16/AMX)."""
    from .autocast import cpu_has_native_bf16

    if precision == "bf16" and not quiet and model.device.type == "cpu" and not cpu_has_native_bf16():
        click.echo("note: this CPU has no native bf16 (AVX512-BF16 / AMX): --precision bf16 is emulated here and "
                   "several times slower than fp32", err=True)
    return model


def _segment(input_path: Path, out: Path, prompts_file, box, slice_idx, points, policy, policy_opts, axis, axes,
             direction, intensity, checkpoint, config, model_name, device, overlay, report, reference, quiet,
             backend: str = "torch", precision: str = "auto") -> None:
    """The body of `medmem segment` (see :func:`segment_cmd`): one input here, a batch in engine/batch.py."""
    from ..io import ImageReadError, ImageWriteError, PromptFileError, read_volume
    from ..io.writers import check_mask_output
    from ..memory.policies import parse_policy_options
    from .batch import BatchError, SegmentOptions, case_objects, list_cases, run_batch, run_segmentation

    if axis is not None and axis.isdigit():
        axis = int(axis)
    try:
        policy_kwargs = parse_policy_options(list(policy_opts), policy)
    except ValueError as e:
        raise _fail(e) from None
    axes_list = [a.strip() for a in axes.split(",") if a.strip()] if axes else None
    if precision == "bf16" and backend != "torch":
        raise click.ClickException(f"--precision bf16 applies to the PyTorch backend; --backend {backend} has its own "
                                   "precision (onnxruntime: fp32, onnxruntime-int8: int8)")
    try:
        cases, batch = list_cases(input_path)
    except BatchError as e:
        raise _fail(e) from None
    if reference is not None and batch:
        raise click.ClickException("--reference applies to a single input, not a batch")
    if not batch and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.ClickException(f"{input_path} is one input; under torchrun give a folder of volumes or a "
                                   "JSON manifest (or run without torchrun)")
    try:
        _check_outputs(out, overlay, report, batch)
    except ImageWriteError as e:
        raise _fail(e) from None
    opts = SegmentOptions(prompts_file=prompts_file, box=box, slice_idx=slice_idx, points=tuple(points),
                          policy=policy, policy_opts=tuple(policy_opts), policy_kwargs=policy_kwargs, axis=axis,
                          axes=axes_list, direction=direction, intensity=intensity, checkpoint=checkpoint,
                          config=config, model_name=model_name, backend=backend, precision=precision)
    if batch:
        if (box or points) and prompts_file is None and os.environ.get("RANK", "0") == "0":
            click.echo("note: the same --box/--point prompts are used for every case", err=True)
        run_batch(cases, out, opts,
                  lambda dev: _note_emulated_bf16(_load_model(checkpoint, config, dev, model_name, backend), precision,
                                                  quiet),
                  device=device, quiet=quiet)
        return
    case = cases[0]
    try:
        vol = _read(case.image)
        check_mask_output(out, vol)
        objects = case_objects(vol, case, opts)
        model = _note_emulated_bf16(_load_model(checkpoint, config, device, model_name, backend), precision, quiet)
        result = run_segmentation(model, vol, objects, opts, progress=not quiet)
        labels, rep = result.labels, result.report
        if reference is not None:
            from ..eval.reference import score_against_reference

            rep["reference"] = score_against_reference(labels, vol, read_volume(reference), [o.id for o in objects])
            rep["reference"]["path"] = str(reference)
    except (ImageReadError, ImageWriteError, PromptFileError, ValueError, KeyError) as e:
        raise _fail(e) from None
    names = {int(o.id): o.name for o in objects if o.name}
    rep["input"] = str(case.image)
    rep["output"] = str(out)
    try:  # write everything only after the whole case succeeded; each write is atomic
        result.write(vol, out, overlay, report, names)
    except Exception as e:  # writing failed: say so clearly
        raise click.ClickException(f"could not write outputs for {case.image}: {_one_line(e)}") from None
    if not quiet:
        vols = ", ".join(f"object {o['id']}: {o['volume_ml']} mL" for o in rep["objects"])
        click.echo(f"{case.image} -> {out} ({rep['num_slices']} slices, {rep['seconds']} s; {vols})")
        for oid, m in rep.get("reference", {}).get("objects", {}).items():
            hd = "n/a" if m["hd95"] is None else f"{m['hd95']:.2f} mm"
            click.echo(f"  object {oid} vs reference: Dice {m['dice']:.4f}  NSD@2mm {m['nsd']:.4f}  HD95 {hd}")


@click.command("segment-set")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt-image", type=int, default=0, help="index of the prompted image in IMAGES")
@click.option("--box", required=True, help="X0,Y0,X1,Y1 on the prompted image")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="output folder")
@click.option("--policy", default="self_sorting", type=click.Choice(["self_sorting", "confidence"]))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config")
@_model_option
@click.option("--device", default=None)
def segment_set_cmd(images: List[Path], prompt_image, box, out: Path, policy, checkpoint, config, model_name, device):
    """One-Prompt Segmentation: one box on one image segments every other image of the set."""
    from ..io.overlay import write_json_atomic, write_png_atomic
    from .image_set import ImageSetSession

    if out.exists() and not out.is_dir():
        raise click.ClickException(f"--out {out}: give a folder, this is a file")
    arrays = []
    for p in images:
        try:
            v = _read(p)
        except ValueError as e:
            raise _fail(e) from None
        if v.shape[0] != 1:
            raise click.ClickException(f"{p}: an image set takes 2D images; this has {v.shape[0]} slices")
        arrays.append(v.array[0])
    model = _load_model(checkpoint, config, device, model_name)
    try:
        b = [float(x) for x in box.split(",")]
        sess = ImageSetSession(model, arrays, policy=policy)
        sess.add_prompt(prompt_image, 1, box=b)
        masks = {i: m[1] for i, m in sess.propagate()}
    except ValueError as e:
        raise _fail(e) from None
    rows = []
    for i, p in enumerate(images):
        target = out / f"{p.stem}_mask.png"
        write_png_atomic(np.repeat((masks[i].astype(np.uint8) * 255)[..., None], 3, -1), target)
        rows.append({"image": str(p), "mask": str(target)})
    write_json_atomic({"policy": policy, "prompt_image": prompt_image, "images": rows, "scores": sess.confidence(1)},
                      out / "report.json")
    click.echo(f"{len(images)} images -> {out}")


commands = [segment_cmd, segment_set_cmd]
