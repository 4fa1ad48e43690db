"""The JSON/PNG API of the page: open, view, prompt, propagate, undo/redo, objects, download."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from .context import Context, volume_samples
from .render import DISPLAY_WINDOWS, auto_bounds, overlay_png, slice_png, window_bounds
from .session import AXES, EditSession
from .store import Busy, Entry
from .uploads import UploadError, list_data, read_input, store_uploads


class PromptIn(BaseModel):
    obj: Optional[int] = None
    axis: str = "axial"
    slice: int
    box: Optional[List[float]] = None
    points: Optional[List[List[float]]] = None
    labels: Optional[List[int]] = None
    add: bool = True


class ObjectIn(BaseModel):
    name: Optional[str] = None
    color: Optional[str] = None


def state(entry: Entry) -> dict:
    """Everything the page needs to draw itself (no pixels)."""
    e: EditSession = entry.edit
    vol = e.volume
    axes = {}
    for a in AXES:
        v = vol.slices(a)
        axes[a] = {"slices": v.num_slices, "hw": list(v.slice_shape), "pixel_spacing": list(v.pixel_spacing)}
    prompted = {}
    for s in e.history:
        prompted.setdefault(s.obj, set()).add(s.slice)
    return {
        "session_id": entry.sid, "source": entry.source, "shape": list(vol.shape), "axes": axes,
        "modality": vol.modality, "axis": e.axis, "version": e.version,
        "objects": [{"id": k, "name": o.name, "color": o.color, "prompted_slices": sorted(prompted.get(k, ()))}
                    for k, o in e.objects.items()],
        "history": [{"obj": s.obj, "slice": s.slice, "kind": s.kind(), "box": s.box, "points": s.points,
                     "labels": s.labels, "propagated": s.propagated} for s in e.history],
        "can_undo": e.can_undo, "can_redo": e.can_redo, "dirty": e.dirty_objects(),
        "job": entry.job.to_json() if entry.job else None,
        "windows": list(DISPLAY_WINDOWS),
        "default_window": "soft_tissue" if (vol.modality or "").upper() == "CT" else "auto",
    }


def build_router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix="/api")
    store = ctx.store
    auto_cache: dict = {}

    def auto(entry: Entry):
        if entry.sid not in auto_cache:
            if len(auto_cache) > 256:
                auto_cache.clear()
            auto_cache[entry.sid] = auto_bounds(entry.edit.volume)
        return auto_cache[entry.sid]

    def new_session(volume, source: dict, sid: str, folder: Path) -> dict:
        edit = EditSession(ctx.model, volume, policy=ctx.config.policy)
        entry = store.add(sid, folder, edit, source)
        return state(entry)

    @r.get("/info")
    def info() -> dict:
        return {"name": "medmem", "model": ctx.model_name, "samples": [f"sample:{s}" for s in volume_samples()],
                "data": list_data(ctx.config.data_dir), "max_upload_mb": ctx.config.max_upload_mb,
                "session_ttl_s": ctx.config.session_ttl_s, "axes": list(AXES), "windows": list(DISPLAY_WINDOWS)}

    @r.post("/sessions")
    def create(source: Optional[str] = Form(None), files: List[UploadFile] = File(default=[])) -> dict:
        sid, folder = store.new_folder()
        try:
            if files:
                path, shown = store_uploads([(f.filename, f.file) for f in files], folder,
                                            ctx.config.max_upload_bytes)
                vol = read_input(path, shown)
                src = {"kind": "upload", "name": shown, "stored": str(path.relative_to(folder))}
            elif source:
                vol, src = ctx.open_named(source)
            else:
                raise UploadError("give a file to upload or a source (sample:NAME or data:PATH)")
            return new_session(vol, src, sid, folder)
        except BaseException:
            store.discard(folder)
            raise

    @r.get("/sessions/{sid}")
    def get_state(sid: str) -> dict:
        return state(store.get(sid))

    @r.delete("/sessions/{sid}")
    def delete(sid: str) -> dict:
        store.remove(sid)
        return {"deleted": sid}

    @r.get("/sessions/{sid}/slice/{axis}/{index}.png")
    def slice_image(sid: str, axis: str, index: int, window: str = "auto") -> Response:
        entry = store.get(sid)
        if axis not in AXES:
            raise UploadError(f"axis must be one of {', '.join(AXES)}")
        lo, hi = window_bounds(window, auto(entry))
        return Response(slice_png(entry.edit.volume, axis, index, lo, hi), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=600"})

    @r.get("/sessions/{sid}/overlay/{axis}/{index}.png")
    def overlay_image(sid: str, axis: str, index: int) -> Response:
        entry = store.get(sid)
        if axis not in AXES:
            raise UploadError(f"axis must be one of {', '.join(AXES)}")
        e = entry.edit
        labels = None
        if entry.lock.acquire(blocking=not entry.busy):
            try:
                labels = e.label_volume()
            finally:
                entry.lock.release()
        else:  # a job is running: show the last finished result
            labels = e.cached_labels()
        colors = {k: o.color for k, o in e.objects.items()}
        return Response(overlay_png(e.volume, labels, axis, index, colors), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @r.post("/sessions/{sid}/objects")
    def add_object(sid: str, body: ObjectIn) -> dict:
        entry = store.get(sid)
        oid = store.run_locked(entry, lambda: entry.edit.add_object(body.name, body.color))
        return {"id": oid, "state": state(entry)}

    @r.patch("/sessions/{sid}/objects/{oid}")
    def update_object(sid: str, oid: int, body: ObjectIn) -> dict:
        entry = store.get(sid)
        store.run_locked(entry, lambda: entry.edit.update_object(oid, body.name, body.color))
        return state(entry)

    @r.delete("/sessions/{sid}/objects/{oid}")
    def delete_object(sid: str, oid: int) -> dict:
        entry = store.get(sid)
        store.run_locked(entry, lambda: entry.edit.delete_object(oid))
        return state(entry)

    @r.post("/sessions/{sid}/prompts")
    def prompt(sid: str, body: PromptIn) -> dict:
        entry = store.get(sid)
        e = entry.edit

        def run():
            if body.box is None and body.points is None:
                raise ValueError("give a box [x0, y0, x1, y1] or points [[x, y], ...] with labels")
            labels = body.labels
            if body.points is not None and labels is None:
                labels = [1] * len(body.points)
            oid = body.obj if body.obj is not None else e.add_object()
            try:
                e.prompt(oid, body.axis, body.slice, box=body.box, points=body.points, labels=labels, add=body.add)
            except ValueError:
                if body.obj is None:      # no empty object left behind by a refused first prompt
                    e.delete_object(oid)
                raise
            e.label_volume()
            return oid

        oid = store.run_sync(entry, run)
        return {"obj": oid, "state": state(entry)}

    def job_route(kind: str, fn_name: str):
        def route(sid: str) -> dict:
            entry = store.get(sid)
            e = entry.edit
            if fn_name == "propagate" and not e.dirty_objects():
                raise UploadError("nothing to propagate: prompt an object first (or it is already propagated)")
            if fn_name == "undo" and not e.can_undo:
                raise UploadError("nothing to undo")
            if fn_name == "redo" and not e.can_redo:
                raise UploadError("nothing to redo")
            store.start_job(entry, kind, lambda progress: getattr(e, fn_name)(progress))
            return state(entry)
        return route

    r.post("/sessions/{sid}/propagate")(job_route("propagate", "propagate"))
    r.post("/sessions/{sid}/undo")(job_route("undo", "undo"))
    r.post("/sessions/{sid}/redo")(job_route("redo", "redo"))

    @r.post("/sessions/{sid}/mask")
    def start_from_mask(sid: str, file: UploadFile = File(...), axis: str = Form("axial")) -> dict:
        entry = store.get(sid)
        sub = entry.folder / "masks"
        sub.mkdir(exist_ok=True)
        n = len(list(sub.iterdir()))
        path, shown = store_uploads([(file.filename, file.file)], sub / f"{n:03d}", ctx.config.max_upload_bytes)
        mvol = read_input(path, shown)
        if mvol.array.ndim != 3:
            raise UploadError(f"{shown}: a mask must be one label image, got array shape {mvol.array.shape}")
        arr = mvol.array
        store.start_job(entry, "mask", lambda progress: entry.edit.seed_from_mask(arr, axis, progress=progress))
        return state(entry)

    @r.get("/sessions/{sid}/confidence/{oid}")
    def confidence(sid: str, oid: int) -> dict:
        entry = store.get(sid)
        rows = store.run_locked(entry, lambda: entry.edit.confidence(oid)) if not entry.busy else None
        if rows is None:
            raise Busy("session is busy; ask again when the job has finished")
        return {"obj": oid, "axis": entry.edit.axis, "rows": rows,
                "review": [x["slice"] for x in rows if x.get("review")]}

    @r.get("/sessions/{sid}/download")
    def download(sid: str, format: str = "nifti") -> FileResponse:
        from ..io import write_mask

        entry = store.get(sid)
        if format not in ("nifti", "dicom-seg"):
            raise UploadError("format must be nifti or dicom-seg")
        e = entry.edit
        if format == "dicom-seg" and not e.volume.meta.get("dicom"):
            raise UploadError("DICOM-SEG needs a DICOM source: open a DICOM series (a .zip of it, several .dcm "
                              "files, or a DICOM folder under --data); this image is "
                              f"{e.volume.meta.get('format', 'not DICOM')}")
        name = "segmentation.nii.gz" if format == "nifti" else "segmentation.dcm"
        target = entry.folder / "results" / name

        def write():
            labels = e.label_volume()
            if format == "dicom-seg" and not labels.any():
                raise UploadError("nothing to export yet: the segmentation is empty")
            names = {k: o.name for k, o in e.objects.items()}
            write_mask(labels, e.volume, target, labels=names or None)

        store.run_locked(entry, write)    # no model run: does not wait for the compute slot
        media = "application/gzip" if format == "nifti" else "application/dicom"
        return FileResponse(target, media_type=media, filename=name)

    return r
