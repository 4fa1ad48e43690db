"""Safe by default: token on every request, loopback Host check, upload limit, bad uploads, paths, expiry."""
from __future__ import annotations

import gzip
import io
import re
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from server_live import need_serve_extra, start_server
from helpers import jreq, multipart, post_form, request

need_serve_extra()

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def token_server(model, tmp_path_factory):
    s = start_server(model, tmp_path_factory.mktemp("tok"), token=TOKEN, max_upload_mb=1)
    yield s
    s.stop()


def test_token_required_on_every_request(token_server):
    u = token_server.url
    for path in ("/", "/api/info", "/health", "/info/", "/session/abc", "/static/app.js"):
        code, _, body = request("GET", u + path)
        assert code == 401, (path, code)
        assert b"token" in body
    assert request("GET", u + "/api/info", headers={"Authorization": "Bearer wrong-token"})[0] == 401
    assert request("GET", u + "/api/info", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    code, headers, _ = request("GET", u + f"/?token={TOKEN}")
    assert code == 200 and "medmem_token=" in headers.get("set-cookie", "") and "HttpOnly" in headers["set-cookie"]
    assert request("GET", u + "/api/info", headers={"Cookie": f"medmem_token={TOKEN}"})[0] == 200
    assert request("GET", u + "/api/info", headers={"Cookie": "medmem_token=nope"})[0] == 401


def test_monai_label_login_with_the_token(token_server):
    """3D Slicer asks /auth/ (no token), logs in at /auth/token, then sends 'Authorization: Bearer ...'."""
    u = token_server.url
    assert jreq("GET", u + "/auth/") == (200, {"enabled": True})
    form = b"username=slicer&password=wrong&grant_type=password"
    ct = {"Content-Type": "application/x-www-form-urlencoded"}
    assert request("POST", u + "/auth/token", form, ct)[0] == 401
    code, _, body = request("POST", u + "/auth/token", f"username=slicer&password={TOKEN}&grant_type=password".encode(), ct)
    assert code == 200
    import json

    tok = json.loads(body)
    hdr = {"Authorization": f"{tok['token_type']} {tok['access_token']}"}
    assert request("GET", u + "/auth/token/valid", headers=hdr)[0] == 200
    assert request("GET", u + "/auth/token/valid")[0] == 401
    assert request("GET", u + "/info/", headers=hdr)[0] == 200


def _raw_post(port: int, headers: dict, body: bytes, chunked: bool) -> int:
    """POST with http.client (the server may answer before the body is sent in full): status and the
    first two words of the error."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/api/sessions")
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.putheader("Transfer-Encoding", "chunked") if chunked else conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    try:
        for i in range(0, len(body), 1 << 16):
            part = body[i:i + (1 << 16)]
            conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part)
        if chunked:
            conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = conn.getresponse()
    import json

    return r.status, " ".join(json.loads(r.read())["detail"].split()[:2])


def test_upload_limit_and_server_keeps_serving(token_server):
    u, hdr = token_server.url, {"Authorization": f"Bearer {TOKEN}"}
    body, ct = multipart({}, [("files", "big.nii.gz", b"\0" * (2 << 20))])
    assert _raw_post(token_server.port, {**hdr, "Content-Type": ct}, body, chunked=False) == (413, "request body")
    # a chunked body (no Content-Length) is counted as it arrives, before any route sees the file
    assert _raw_post(token_server.port, {**hdr, "Content-Type": ct}, body, chunked=True) == (413, "request body")
    small, ct = multipart({}, [("files", "small.nii.gz", b"\0" * (256 << 10))])
    code, _, data = request("POST", u + "/api/sessions", small, {**hdr, "Content-Type": ct})
    assert code == 400, "a small upload must get past the size check (and fail as an image)"
    assert request("GET", u + "/health", headers=hdr)[0] == 200
    assert not list((token_server.ctx.store.root).iterdir()), "a refused upload left a session folder"


def test_loopback_server_refuses_foreign_host_headers(server):
    """DNS rebinding: a page on another site that resolves to 127.0.0.1 sends its own Host."""
    assert request("GET", server.url + "/api/info", headers={"Host": "evil.example:80"})[0] == 403
    assert request("GET", server.url + "/api/info", headers={"Host": f"localhost:{server.port}"})[0] == 200


def _nifti_bytes(arr: np.ndarray) -> bytes:
    img = nib.Nifti1Image(arr, np.eye(4))
    return gzip.compress(img.to_bytes())


def _zip(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


BAD_UPLOADS = [
    ("truncated.nii.gz", lambda: _nifti_bytes(np.random.default_rng(0).random((16, 16, 16), np.float32))[:2000],
     "truncated or corrupt"),
    ("notes.nii.gz", lambda: b"this is not an image at all", "corrupt"),
    ("photo.png", lambda: b"\x89PNG\r\n\x1a\n garbage", "PNG"),
    ("series4d.nii.gz", lambda: _nifti_bytes(np.zeros((8, 8, 8, 3), np.float32)), "4 dimensions"),
    ("nan.nii.gz", lambda: _nifti_bytes(np.where(np.eye(8)[None] > 0, np.nan, 1.0).repeat(8, 0).astype(np.float32)),
     "NaN"),
    ("empty.nii.gz", lambda: b"", "empty"),
    ("slip.zip", lambda: _zip([("../../evil.dcm", b"x")]), "unsafe entry"),
    ("broken.zip", lambda: b"PK\x03\x04 not really", "not a zip"),
]


@pytest.mark.parametrize("name,make,message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_gets_a_clear_error(server, name, make, message):
    root = server.ctx.store.root
    before = set(root.iterdir())
    code, body = post_form(server.url + "/api/sessions", {}, [("files", name, make())])
    assert code == 400, body
    assert message.lower() in body["detail"].lower(), body["detail"]
    assert str(root) not in body["detail"], "server paths leak into the message"
    assert set(root.iterdir()) == before, "a failed upload left files behind"
    assert request("GET", server.url + "/health")[0] == 200


def test_no_client_named_paths(server):
    for source in ("data:../../../etc/passwd", "data:/etc/passwd", "sample:../../etc/passwd", "/etc/passwd"):
        code, body = post_form(server.url + "/api/sessions", {"source": source})
        assert code == 400, (source, body)
    assert request("GET", server.url + "/api/sessions/..%2F..%2Fetc")[0] == 404
    assert request("GET", server.url + "/static/..%2F__init__.py")[0] == 404
    assert request("GET", server.url + "/api/sessions/" + "A" * 20 + "/slice/axial/0.png")[0] == 404


def test_inputs_are_never_written_and_results_live_in_the_session(server, data_dir):
    src = data_dir / "blob.nii.gz"
    before = src.read_bytes()
    code, st = post_form(server.url + "/api/sessions", {"source": "data:blob.nii.gz"})
    assert code == 200, st
    sid = st["session_id"]
    code, r = jreq("POST", f"{server.url}/api/sessions/{sid}/prompts", {"axis": "axial", "slice": 4, "box": [8, 10, 32, 38]})
    assert code == 200, r
    code, _, data = request("GET", f"{server.url}/api/sessions/{sid}/download?format=nifti")
    assert code == 200 and data[:2] == b"\x1f\x8b"
    assert src.read_bytes() == before and sorted(p.name for p in data_dir.iterdir()) == ["blob.nii.gz"]
    folder = server.ctx.store.get(sid).folder
    assert (folder / "results" / "segmentation.nii.gz").is_file()
    assert folder.parent == server.ctx.store.root


def test_sessions_expire_with_their_folder(server):
    code, st = post_form(server.url + "/api/sessions", {"source": "data:blob.nii.gz"})
    sid = st["session_id"]
    entry = server.ctx.store.get(sid)
    assert entry.folder.is_dir()
    entry.last_access = time.time() - server.ctx.config.session_ttl_s - 1
    code, body = jreq("GET", f"{server.url}/api/sessions/{sid}")
    assert code == 404 and "expired" in body["detail"]
    assert not entry.folder.exists()


def test_no_pickle_in_the_server():
    src = Path(__file__).parents[2] / "src" / "medmem" / "server"
    for p in src.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert not re.search(r"\bpickle\b|torch\.load\(|joblib", text), p


def test_non_loopback_host_generates_a_token(monkeypatch):
    from click.testing import CliRunner

    import medmem.server.app as app_mod
    from medmem.cli import main

    seen = {}
    monkeypatch.setattr(app_mod, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(app_mod, "create_app", lambda cfg, model: seen.setdefault("cfg", cfg))
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("run", kw))
    res = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert res.exit_code == 0, res.output
    tok = seen["cfg"].token
    assert tok and len(tok) >= 24 and f"?token={tok}" in res.output
    assert seen["run"]["host"] == "0.0.0.0"
    res = CliRunner().invoke(main, ["serve"])
    assert res.exit_code == 0 and "?token=" not in res.output
    res = CliRunner().invoke(main, ["serve", "--token", "short"])
    assert res.exit_code != 0 and "at least 8" in res.output


def test_serve_takes_a_pretrained_model_by_name(monkeypatch):
    """`medmem serve --model NAME` builds that pretrained model (as `medmem segment --model` does)."""
    from click.testing import CliRunner

    import medmem.server.app as app_mod
    from medmem.cli import main
    from medmem.server.models import load_model

    seen = {}
    monkeypatch.setattr(app_mod, "load_model", lambda *a: seen.setdefault("args", a) and object())
    monkeypatch.setattr(app_mod, "create_app", lambda cfg, model: object())
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    res = CliRunner().invoke(main, ["serve", "--model", "medmem_small_256"])
    assert res.exit_code == 0, res.output
    assert seen["args"][2] == "medmem_small_256"
    assert load_model(device="cpu", name="medmem_small_256").cfg.name == "medmem_small_256"
    with pytest.raises(ValueError, match="not both"):
        load_model("weights.pt", "cpu", "medmem_small_256")
