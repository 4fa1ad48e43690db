"""Small HTTP helpers (stdlib only) for the server tests."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Dict, List, Optional, Tuple


def request(method: str, url: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
            timeout: float = 300) -> Tuple[int, Dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def jreq(method: str, url: str, obj=None, headers: Optional[Dict[str, str]] = None) -> Tuple[int, dict]:
    h = dict(headers or {})
    body = None
    if obj is not None:
        body = json.dumps(obj).encode()
        h["Content-Type"] = "application/json"
    code, _, data = request(method, url, body, h)
    try:
        return code, json.loads(data or b"null")
    except json.JSONDecodeError:
        return code, {"raw": data.decode("latin-1")}


def multipart(fields: Dict[str, str], files: List[Tuple[str, str, bytes]]) -> Tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request; files = [(field, filename, data)]."""
    b = uuid.uuid4().hex
    out = bytearray()
    for k, v in fields.items():
        out += f"--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
    for field, name, data in files:
        out += (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{b}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={b}"


def post_form(url: str, fields: Dict[str, str], files: List[Tuple[str, str, bytes]] = (),
              headers: Optional[Dict[str, str]] = None) -> Tuple[int, dict]:
    body, ct = multipart(fields, list(files))
    code, _, data = request("POST", url, body, {**(headers or {}), "Content-Type": ct})
    return code, json.loads(data or b"null")


def wait_job(base: str, sid: str, timeout: float = 600) -> dict:
    """Poll a session until its job is no longer running; returns the state."""
    t0 = time.time()
    while True:
        code, st = jreq("GET", f"{base}/api/sessions/{sid}")
        assert code == 200, st
        if not st["job"] or st["job"]["state"] != "running":
            return st
        if time.time() - t0 > timeout:
            raise TimeoutError(f"job still running after {timeout} s: {st['job']}")
        time.sleep(0.2)
