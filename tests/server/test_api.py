"""The page's API over HTTP: open, view, prompt, propagate with progress, undo/redo, objects,
confidence, start from a mask, downloads (NIfTI with geometry; DICOM-SEG for DICOM sources)."""
from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from server_live import need_serve_extra, start_server
from helpers import jreq, post_form, request, wait_job
from medmem.io import read_volume

need_serve_extra()


def _open(server, source="data:blob.nii.gz") -> dict:
    code, st = post_form(server.url + "/api/sessions", {"source": source})
    assert code == 200, st
    return st


def _png(server, path) -> np.ndarray:
    code, headers, data = request("GET", server.url + path)
    assert code == 200 and headers["content-type"] == "image/png", data[:200]
    return np.asarray(Image.open(io.BytesIO(data)))


def test_page_and_static_files(server):
    code, headers, body = request("GET", server.url + "/")
    assert code == 200 and b"<canvas" in body and b"/static/app.js" in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert b"Shortcuts" in body and b"Ctrl+Z" in body
    assert request("GET", server.url + "/static/app.js")[0] == 200
    assert request("GET", server.url + "/static/other.js")[0] == 404
    code, info = jreq("GET", server.url + "/api/info")
    assert "sample:mni152_t1" in info["samples"] and info["data"] == ["blob.nii.gz"]


def test_prompt_propagate_undo_redo_download(server, data_dir):
    st = _open(server)
    sid, base = st["session_id"], f"{server.url}/api/sessions/{st['session_id']}"
    assert st["axes"]["axial"]["slices"] == 8 and st["axes"]["axial"]["hw"] == [48, 40]
    code, r = jreq("POST", base + "/prompts", {"axis": "axial", "slice": 4, "box": [8, 10, 32, 38]})
    assert code == 200, r
    oid, st = r["obj"], r["state"]
    assert st["objects"][0]["color"] == "#ff4040" and st["dirty"] == [oid]
    ov = _png(server, f"/api/sessions/{sid}/overlay/axial/4.png")
    assert ov.shape == (48, 40, 4) and (ov[..., 3] > 0).sum() > 100
    assert (ov[ov[..., 3] > 0][:, :3] == [255, 64, 64]).all()
    assert (_png(server, f"/api/sessions/{sid}/overlay/axial/0.png")[..., 3] == 0).all(), "not propagated yet"

    code, st = jreq("POST", base + "/propagate")
    assert code == 200 and st["job"]["kind"] == "propagate"
    st = wait_job(server.url, sid)
    assert st["job"]["state"] == "done" and st["job"]["done"] == st["job"]["total"] == 8, st["job"]
    assert st["dirty"] == [] and st["history"][0]["propagated"]
    assert jreq("POST", base + "/propagate")[0] == 400, "nothing left to propagate"
    code, conf = jreq("GET", f"{base}/confidence/{oid}")
    assert code == 200 and len(conf["rows"]) == 8 and all(r["segmented"] for r in conf["rows"])
    assert conf["rows"][4]["prompted"] and isinstance(conf["review"], list)

    entry = server.ctx.store.get(sid)
    propagated = entry.edit.label_volume().copy()
    assert (propagated > 0).sum() > (propagated[4] > 0).sum(), "propagation added nothing"
    code, headers, data = request("GET", base + "/download?format=nifti")
    assert code == 200 and "segmentation.nii.gz" in headers["content-disposition"]
    out = entry.folder / "check.nii.gz"
    out.write_bytes(data)
    lab, src = read_volume(out), read_volume(data_dir / "blob.nii.gz")
    np.testing.assert_array_equal(lab.array, propagated)
    np.testing.assert_allclose(lab.spacing, src.spacing)
    np.testing.assert_allclose(lab.origin, src.origin)
    np.testing.assert_allclose(lab.direction, src.direction)

    code, r = jreq("POST", base + "/prompts", {"obj": oid, "axis": "axial", "slice": 6, "points": [[20, 24]],
                                              "labels": [0]})
    assert code == 200
    jreq("POST", base + "/propagate")
    st = wait_job(server.url, sid)
    corrected = entry.edit.label_volume().copy()
    assert not np.array_equal(corrected, propagated)
    jreq("POST", base + "/undo")
    st = wait_job(server.url, sid)
    assert st["can_redo"] and len(st["history"]) == 1
    np.testing.assert_array_equal(entry.edit.label_volume(), propagated)
    jreq("POST", base + "/redo")
    st = wait_job(server.url, sid)
    np.testing.assert_array_equal(entry.edit.label_volume(), corrected)

    code, body = jreq("POST", base + "/prompts", {"obj": oid, "axis": "coronal", "slice": 3, "box": [1, 1, 9, 5]})
    assert code == 400 and "axial" in body["detail"]
    code, body = jreq("POST", base + "/prompts", {"obj": oid, "axis": "axial", "slice": 3, "box": [90, 90, 99, 99]})
    assert code == 400 and "outside" in body["detail"]
    code, body = jreq("POST", base + "/prompts", {"obj": oid, "axis": "axial", "slice": "x", "box": [1, 1, 2, 2]})
    assert code == 422
    code, body = jreq("GET", base + "/download?format=dicom-seg")
    assert code == 400 and "DICOM-SEG needs a DICOM source" in body["detail"]


def test_objects_windows_and_views(server):
    st = _open(server)
    sid, base = st["session_id"], f"{server.url}/api/sessions/{st['session_id']}"
    code, r = jreq("POST", base + "/objects", {"name": "tumour", "color": "#00ff00"})
    assert code == 200 and r["state"]["objects"] == [{"id": 1, "name": "tumour", "color": "#00ff00",
                                                      "prompted_slices": []}]
    code, r2 = jreq("POST", base + "/objects", {})
    assert r2["id"] == 2 and r2["state"]["objects"][1]["color"] != "#00ff00"
    code, st = jreq("PATCH", f"{base}/objects/2", {"name": "kidney"})
    assert st["objects"][1]["name"] == "kidney"
    assert jreq("PATCH", f"{base}/objects/2", {"color": "javascript:x"})[0] == 400
    assert jreq("DELETE", f"{base}/objects/9")[0] == 404
    code, st = jreq("DELETE", f"{base}/objects/2")
    assert [o["id"] for o in st["objects"]] == [1]
    for axis, shape in (("axial", (48, 40)), ("coronal", (8, 40)), ("sagittal", (8, 48))):
        assert _png(server, f"/api/sessions/{sid}/slice/{axis}/3.png").shape == shape
    auto = _png(server, f"/api/sessions/{sid}/slice/axial/4.png")
    bone = _png(server, f"/api/sessions/{sid}/slice/axial/4.png?window=bone")
    custom = _png(server, f"/api/sessions/{sid}/slice/axial/4.png?window=0,100")
    assert not np.array_equal(auto, bone) and not np.array_equal(auto, custom)
    assert request("GET", f"{base}/slice/axial/4.png?window=purple")[0] == 400
    assert request("GET", f"{base}/slice/axial/99.png")[0] == 400
    assert request("GET", f"{base}/slice/oblique/1.png")[0] == 400


def test_start_from_an_existing_mask(server, data_dir, tmp_path):
    from medmem.io import write_mask

    st = _open(server)
    sid, base = st["session_id"], f"{server.url}/api/sessions/{st['session_id']}"
    src = read_volume(data_dir / "blob.nii.gz")
    ref = (src.array > 110).astype(np.uint8) * 2
    write_mask(ref, src, tmp_path / "mine.nii.gz")
    code, st = post_form(base + "/mask", {"axis": "axial"}, [("file", "mine.nii.gz", (tmp_path / "mine.nii.gz").read_bytes())])
    assert code == 200, st
    st = wait_job(server.url, sid)
    assert st["job"]["state"] == "done", st["job"]
    assert [o["name"] for o in st["objects"]] == ["label 2"]
    lab = server.ctx.store.get(sid).edit.label_volume()
    dice = 2 * ((lab > 0) & (ref > 0)).sum() / ((lab > 0).sum() + (ref > 0).sum())
    assert dice > 0.8
    code, body = post_form(base + "/mask", {}, [("file", "small.nii.gz", _small_nifti())])
    assert code == 200   # accepted, then the job reports the shape mismatch
    st = wait_job(server.url, sid)
    assert st["job"]["state"] == "error" and "shape" in st["job"]["error"]


def _small_nifti() -> bytes:
    import gzip

    import nibabel as nib

    return gzip.compress(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)).to_bytes())


def _io_testutils():
    p = Path(__file__).parents[1] / "io" / "io_testutils.py"
    spec = importlib.util.spec_from_file_location("medmem_io_testutils", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dicom_series_upload_and_dicom_seg_download(server, tmp_path):
    import pydicom

    hu = np.full((6, 32, 32), -800, np.int16)
    hu[1:5, 8:24, 10:22] = 60
    files = _io_testutils().make_dicom_series(tmp_path / "series", hu, spacing=(0.8, 0.8, 2.5))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in files:
            z.write(f, f"ct/{f.name}")
    code, st = post_form(server.url + "/api/sessions", {}, [("files", "ct.zip", buf.getvalue())])
    assert code == 200, st
    assert st["modality"] == "CT" and st["default_window"] == "soft_tissue"
    sid, base = st["session_id"], f"{server.url}/api/sessions/{st['session_id']}"
    code, r = jreq("POST", base + "/prompts", {"axis": "axial", "slice": 2, "box": [8, 6, 24, 26]})
    assert code == 200, r
    jreq("PATCH", f"{base}/objects/{r['obj']}", {"name": "organ"})
    code, headers, data = request("GET", base + "/download?format=dicom-seg")
    assert code == 200, data[:300]
    seg = pydicom.dcmread(io.BytesIO(data))
    src = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "organ"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID


def test_sessions_survive_a_server_restart(model, data_dir, tmp_path):
    """Autosave: a new server on the same work folder rebuilds a session from its saved prompt log."""

    first = start_server(model, tmp_path)
    try:
        code, st = post_form(first.url + "/api/sessions", {}, [("files", "blob.nii.gz",
                                                                 (data_dir / "blob.nii.gz").read_bytes())])
        assert code == 200, st
        sid = st["session_id"]
        jreq("POST", f"{first.url}/api/sessions/{sid}/prompts", {"axis": "axial", "slice": 4, "box": [8, 10, 32, 38]})
        jreq("POST", f"{first.url}/api/sessions/{sid}/propagate")
        wait_job(first.url, sid)
        jreq("PATCH", f"{first.url}/api/sessions/{sid}/objects/1", {"name": "kept"})
        before = first.ctx.store.get(sid).edit.label_volume().copy()
    finally:
        first.stop()
    second = start_server(model, tmp_path)
    try:
        st = wait_job(second.url, sid)
        assert st["job"]["kind"] == "restore" and st["job"]["state"] == "done", st["job"]
        assert st["objects"][0]["name"] == "kept" and st["history"][0]["propagated"]
        np.testing.assert_array_equal(second.ctx.store.get(sid).edit.label_volume(), before)
        assert jreq("GET", f"{second.url}/api/sessions/{'B' * 24}")[0] == 404
    finally:
        second.stop()
