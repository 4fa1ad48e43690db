"""A client that sends requests as 3D Slicer's MONAI Label extension does (written for these tests).

Facts taken from the extension's source (MONAILabelLib/client.py, MONAILabel.py): JSON GETs with
http.client; `PUT /session/` as a `requests` multipart upload (form field `client_id`, files in the
field `files`); `POST /infer/{model}?image=ID&session_id=SID` as a hand-built multipart body with the
boundary `----------lImIt_of_THE_fIle_eW_$` and one form field `params` (JSON, with `client_id`,
`result_extension` ".nrrd" and `result_dtype` "uint8" added by the extension); the multipart reply is
parsed with `cgi.FieldStorage`, file parts saved under their file name; `Authorization` is
"{token_type} {access_token}" from `POST /auth/token`.
"""
from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import quote_plus, urlencode

BOUNDARY = "----------lImIt_of_THE_fIle_eW_$"


class SlicerLikeClient:
    def __init__(self, host: str, port: int, tmpdir: Path, client_id: str = "user-xyz") -> None:
        self.host, self.port, self.tmpdir, self.client_id = host, port, Path(tmpdir), client_id
        self.headers: Dict[str, str] = {}

    # ---------------------------------------------------------------- transport
    def _send(self, method: str, selector: str, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        conn.request(method, selector, body=body, headers={**self.headers, **(headers or {})})
        r = conn.getresponse()
        ctype = r.getheader("content-type", "application/json")
        if "multipart" in ctype and r.status == 200:
            form, files = _parse_multipart(r)
            return r.status, form, files
        return r.status, r.read(), None

    def _json(self, method: str, selector: str, body: Optional[dict] = None):
        data, hdr = None, {}
        if body:
            data = json.dumps(body)
            hdr = {"content-type": "application/json", "content-length": str(len(data))}
        status, resp, _ = self._send(method, selector, data, hdr)
        return status, (json.loads(resp) if status == 200 else resp)

    # ---------------------------------------------------------------- API
    def auth_enabled(self) -> bool:
        status, resp, _ = self._send("GET", "/auth/")
        return status == 200 and bool(json.loads(resp).get("enabled"))

    def login(self, username: str, password: str) -> int:
        data = urlencode({"username": username, "password": password, "grant_type": "password"})
        status, resp, _ = self._send("POST", "/auth/token", data, {
            "content-type": "application/x-www-form-urlencoded", "content-length": str(len(data))})
        if status == 200:
            tok = json.loads(resp)
            self.headers["Authorization"] = f"{tok['token_type']} {tok['access_token']}"
        return status

    def info(self):
        return self._json("GET", "/info/")

    def create_session(self, image: Path):
        """As `requests.put(url, files=[("files", (name, fh))], data={"client_id": ...})` encodes it."""
        b = "0b1a0c0e9d8f4f3aa1c2e5f7d9b3c4a6"
        body = (f"--{b}\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n{self.client_id}\r\n"
                f"--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{os.path.basename(image)}\""
                "\r\n\r\n").encode() + Path(image).read_bytes() + f"\r\n--{b}--\r\n".encode()
        status, resp, _ = self._send("PUT", "/session/", body, {
            "Content-Type": f"multipart/form-data; boundary={b}", "Content-Length": str(len(body))})
        return status, (json.loads(resp) if status == 200 else resp)

    def get_session(self, session_id: str):
        return self._json("GET", f"/session/{quote_plus(session_id)}")

    def remove_session(self, session_id: str):
        return self._json("DELETE", f"/session/{quote_plus(session_id)}")

    def infer(self, model: str, image_id: str, params: dict, session_id: Optional[str] = None
              ) -> Tuple[int, Optional[Path], object]:
        params = dict(params, client_id=self.client_id, result_extension=".nrrd", result_dtype="uint8")
        selector = f"/infer/{quote_plus(model)}?image={quote_plus(image_id)}"
        if session_id:
            selector += f"&session_id={quote_plus(session_id)}"
        lines = [f"--{BOUNDARY}", 'Content-Disposition: form-data; name="params"', "", json.dumps(params),
                 f"--{BOUNDARY}--", ""]
        body = bytearray()
        for line in lines:
            body.extend(line.encode("utf-8") + b"\r\n")
        status, form, files = self._send("POST", selector, bytes(body), {
            "content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": str(len(body))})
        if status != 200:
            return status, None, form
        out_params = form.get("params") if files else form
        out_params = json.loads(out_params) if isinstance(out_params, (str, bytes)) else out_params
        result = None
        for name, data in (files or {}).items():      # the extension saves the first file under its name
            result = self.tmpdir / name
            result.write_bytes(data if isinstance(data, bytes) else data.encode())
            break
        return status, result, out_params


def _parse_multipart(response) -> Tuple[dict, dict]:
    """form fields and files of a multipart reply, the way the extension reads them (cgi.FieldStorage)."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import cgi
    except ImportError:  # Python >= 3.13 has no cgi: the same split with the email parser
        return _parse_with_email(response)
    fs = cgi.FieldStorage(fp=response.fp if response.fp else response, environ={"REQUEST_METHOD": "POST"},
                          headers=response.msg, keep_blank_values=True)
    form, files = {}, {}
    for f in fs.list or []:
        if f.filename:
            files[f.filename] = f.value
        else:
            form[f.name] = f.value
    return form, files


def _parse_with_email(response) -> Tuple[dict, dict]:
    from email.parser import BytesParser
    from email.policy import HTTP

    raw = b"Content-Type: " + response.getheader("content-type").encode() + b"\r\n\r\n" + response.read()
    msg = BytesParser(policy=HTTP).parsebytes(raw)
    form, files = {}, {}
    for part in msg.iter_parts():
        name, filename = part.get_param("name", header="content-disposition"), part.get_filename()
        data = part.get_payload(decode=True)
        if filename:
            files[filename] = data
        else:
            form[name] = data.decode()
    return form, files
