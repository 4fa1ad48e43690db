"""A MONAI Label-compatible subset (`/info/`, `/auth/`, `/session/`, `/infer/{model}`) for 3D Slicer.

Requests carry clicks and an ROI in voxel indices (i, j, k) of the uploaded image (i = column,
j = row, k = slice): `params = {"label", "foreground": [[i, j, k], ...], "background": [...],
"roi": [i0, i1, j0, j1, k0, k1], "result_extension": ".nrrd"}`. The reply is multipart, as MONAI
Label sends it: a `params` JSON part and the label image as a file part named `image`.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from .context import Context
from .security import token_ok
from .session import EditSession
from .store import Entry
from .uploads import UploadError, read_input, store_uploads

MODELS = {"medmem_3d": 3, "medmem_2d": 2}
LABELS = ["object"]
RESULT_EXTENSIONS = (".nrrd", ".nii.gz", ".nii", ".mha")


def parse_params(text: str) -> dict:
    try:
        p = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise UploadError(f"params is not JSON: {e}")
    if not isinstance(p, dict):
        raise UploadError("params must be a JSON object")
    return p


def _voxels(v, name: str, shape_zyx) -> np.ndarray:
    """A list of [i, j, k] voxel indices, checked against the image."""
    try:
        a = np.asarray(v if v is not None else [], dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise UploadError(f"{name} must be a list of [i, j, k] voxel indices")
    if not np.all(np.isfinite(a)):
        raise UploadError(f"{name} holds NaN or inf")
    z, y, x = shape_zyx
    bad = (a[:, 0] < 0) | (a[:, 0] >= x) | (a[:, 1] < 0) | (a[:, 1] >= y) | (a[:, 2] < 0) | (a[:, 2] >= z)
    if bad.any():
        raise UploadError(f"{name} point(s) outside the image (i < {x}, j < {y}, k < {z}): {a[bad].tolist()[:3]}")
    return np.round(a).astype(int)


def _roi(v, shape_zyx) -> Optional[tuple]:
    """[i0, i1, j0, j1, k0, k1] (either order in each pair, as Slicer sends it) → clipped sorted bounds."""
    if not v:
        return None
    try:
        r = [float(x) for x in v]
    except (TypeError, ValueError):
        raise UploadError("roi must be [i0, i1, j0, j1, k0, k1]")
    if len(r) != 6 or not all(np.isfinite(r)):
        raise UploadError("roi must be 6 finite numbers [i0, i1, j0, j1, k0, k1]")
    z, y, x = shape_zyx
    out = []
    for (a, b), n in zip(((r[0], r[1]), (r[2], r[3]), (r[4], r[5])), (x, y, z)):
        lo, hi = int(round(min(a, b))), int(round(max(a, b)))
        lo, hi = max(lo, 0), min(hi, n - 1)
        if hi < lo:
            raise UploadError(f"roi {v} lies outside the image")
        out.append((lo, hi))
    return tuple(out)


def segment_request(model, volume, params: dict, dimension: int) -> np.ndarray:
    """The label map (Z, Y, X) uint8 (1 = the object) for one infer request; slices are k = array axis 0."""
    shape = volume.shape
    fg = _voxels(params.get("foreground"), "foreground", shape)
    bg = _voxels(params.get("background"), "background", shape)
    roi = _roi(params.get("roi"), shape)
    if not len(fg) and roi is None:
        raise UploadError("give foreground clicks or an ROI box")
    k_lo, k_hi = (roi[2] if roi is not None else (0, shape[0] - 1))
    if dimension == 2:
        k = params.get("slice")
        if k is None:
            k = int(fg[-1][2]) if len(fg) else (k_lo + k_hi) // 2
        k_lo = k_hi = int(k)
        if not 0 <= k_lo < shape[0]:
            raise UploadError(f"slice {k} outside the image (0..{shape[0] - 1})")
    # the session covers slices k_lo..k_hi (the ROI's extent) of array axis 0
    sub = volume
    if (k_lo, k_hi) != (0, shape[0] - 1):
        from ..io import Volume

        sub = Volume(volume.array[k_lo:k_hi + 1], volume.spacing, volume.origin, volume.direction.copy(),
                     volume.modality, "volume" if k_hi > k_lo else "image", {})
    edit = EditSession(model, sub)
    oid = edit.add_object(str(params.get("label") or LABELS[0]))
    prompted = False
    if roi is not None:
        kc = (roi[2][0] + roi[2][1]) // 2 if dimension == 3 else k_lo
        edit.prompt(oid, _axis0(sub), kc - k_lo,
                    box=[roi[0][0], roi[1][0], roi[0][1], roi[1][1]])  # inclusive voxels, as docs/io.md
        prompted = True
    pts = [(p, 1) for p in fg] + [(p, 0) for p in bg]
    by_k = {}
    for (i, j, k), lab in pts:
        if k_lo <= k <= k_hi:
            by_k.setdefault(int(k), []).append(([i, j], lab))  # pixel centres at integers
    for k, pl in sorted(by_k.items()):
        if not any(lab for _, lab in pl) and not prompted:
            continue  # background clicks alone do not start an object
        edit.prompt(oid, _axis0(sub), k - k_lo, points=[p for p, _ in pl], labels=[lab for _, lab in pl], add=True)
        prompted = True
    if not prompted:
        raise UploadError("no foreground click lies inside the ROI")
    if dimension == 3:
        edit.propagate()
    part = (edit.label_volume() > 0).astype(np.uint8)
    out = np.zeros(shape, np.uint8)
    out[k_lo:k_hi + 1] = part
    if roi is not None:
        keep = np.zeros(shape, bool)
        keep[roi[2][0]:roi[2][1] + 1, roi[1][0]:roi[1][1] + 1, roi[0][0]:roi[0][1] + 1] = True
        out[~keep] = 0
    return out


def _axis0(volume) -> str:
    """The anatomical name of array axis 0 (the k index), so the session slices along k."""
    from ..io import array_axis_for

    for name in ("axial", "coronal", "sagittal"):
        if array_axis_for(name, volume.direction) == 0:
            return name
    raise UploadError("cannot tell the slicing axis of this image")  # pragma: no cover


def multipart_reply(params: dict, file_path: Path, filename: str) -> Response:
    """multipart/form-data with a `params` JSON part and an `image` file part."""
    boundary = secrets.token_hex(16)
    data = file_path.read_bytes()
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return Response(body, media_type=f"multipart/form-data; boundary={boundary}")


def build_router(ctx: Context) -> APIRouter:
    r = APIRouter()
    store = ctx.store

    @r.get("/info/")
    def info() -> dict:
        models = {name: {"type": "deepgrow", "labels": LABELS, "dimension": dim,
                         "description": f"medmem {ctx.model_name}: clicks and/or an ROI box"
                                        + (", propagated through the volume" if dim == 3 else " on one slice"),
                         "config": {}} for name, dim in MODELS.items()}
        from .. import __version__

        return {"name": "medmem", "description": "medmem promptable segmentation (MONAI Label-compatible subset)",
                "version": str(__version__), "labels": LABELS, "models": models, "trainers": {}, "strategies": {},
                "scoring": {}, "train_stats": {}, "datastore": {"total": 0, "completed": 0}}

    @r.get("/auth/")
    def auth() -> dict:
        return {"enabled": bool(ctx.config.token)}

    @r.post("/auth/token")
    async def auth_token(request: Request):
        form = await request.form()
        if not ctx.config.token:
            return {"access_token": "", "token_type": "Bearer"}
        if not token_ok(str(form.get("password") or ""), ctx.config.token):
            return JSONResponse({"detail": "wrong token (give the server token as the password)"}, status_code=401)
        return {"access_token": ctx.config.token, "token_type": "Bearer"}

    @r.get("/auth/token/valid")
    def auth_valid() -> dict:
        return {"valid": True}   # the Guard has already checked the token

    def session_json(entry: Entry) -> dict:
        return {"name": entry.source.get("name"), "path": entry.source.get("name"),
                "image": entry.source.get("name"), "meta": {"shape": list(entry.edit.volume.shape)},
                "create_ts": int(entry.created), "last_access_ts": int(entry.last_access),
                "expiry": int(ctx.config.session_ttl_s)}

    @r.put("/session/")
    def create_session(files: List[UploadFile] = File(...), expiry: int = 0, uncompress: bool = False) -> dict:
        sid, folder = store.new_folder()
        try:
            path, shown = store_uploads([(f.filename, f.file) for f in files], folder, ctx.config.max_upload_bytes)
            vol = read_input(path, shown)
            entry = store.add(sid, folder, EditSession(ctx.model, vol, policy=ctx.config.policy),
                              {"kind": "monai-label", "name": shown, "stored": str(path.relative_to(folder))})
        except BaseException:
            store.discard(folder)
            raise
        return {"session_id": sid, "session_info": session_json(entry)}

    @r.get("/session/{sid}")
    def get_session(sid: str, image: bool = False):
        entry = store.get(sid)
        return session_json(entry)

    @r.delete("/session/{sid}")
    def remove_session(sid: str) -> dict:
        entry = store.get(sid)
        out = session_json(entry)
        store.remove(sid)
        return out

    @r.post("/infer/{model}")
    def infer(model: str, image: str = "", session_id: str = "", output: Optional[str] = None,
              params: str = Form("{}"), file: Optional[UploadFile] = File(None),
              label: Optional[UploadFile] = File(None)):
        if model not in MODELS:
            raise KeyError(f"no model {model!r}; models: {', '.join(MODELS)}")
        p = parse_params(params)
        ext = str(p.get("result_extension") or ".nii.gz")
        if ext not in RESULT_EXTENSIONS:
            raise UploadError(f"result_extension must be one of {', '.join(RESULT_EXTENSIONS)}")
        if session_id:
            entry = store.get(session_id)
        elif file is not None:
            sid, folder = store.new_folder()
            try:
                path, shown = store_uploads([(file.filename, file.file)], folder, ctx.config.max_upload_bytes)
                entry = store.add(sid, folder, EditSession(ctx.model, read_input(path, shown)),
                                  {"kind": "monai-label", "name": shown, "stored": str(path.relative_to(folder))})
            except BaseException:
                store.discard(folder)
                raise
        else:
            raise UploadError("give session_id (PUT /session/ first) or upload the image as 'file'")
        t0 = time.perf_counter()
        vol = entry.edit.volume
        out_dir = entry.folder / "results"
        target = out_dir / f"infer_{secrets.token_hex(4)}{ext}"

        def run():
            from ..io import write_mask

            lab = segment_request(ctx.model, vol, p, MODELS[model])
            write_mask(lab, vol, target)
            return lab

        lab = store.run_sync(entry, run)
        name = str(p.get("label") or LABELS[0])
        reply = {"label_names": {name: 1}, "latencies": {"total": round(time.perf_counter() - t0, 3)},
                 "voxels": int(lab.sum()), "model": model}
        if output == "json":
            return reply
        if output == "image":
            return FileResponse(target, media_type="application/octet-stream", filename=target.name)
        return multipart_reply(reply, target, target.name)

    return r
