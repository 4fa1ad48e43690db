"""Access control as one ASGI middleware: token on every request, Host check, upload size limit."""
from __future__ import annotations

import hmac
import json
import secrets
from http.cookies import SimpleCookie
from typing import Optional
from urllib.parse import parse_qs

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
COOKIE = "medmem_token"
# reachable without a token: MONAI Label clients ask /auth/ whether to log in, then log in at /auth/token
OPEN_PATHS = {"/auth/", "/auth", "/auth/token", "/favicon.ico"}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_ok(given: Optional[str], token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class Guard:
    """Wraps the app: rejects requests without the token (when one is set), requests whose Host
    is not loopback on a loopback-only server (DNS rebinding), and bodies above `max_body` bytes."""

    def __init__(self, app, token: Optional[str], max_body: int, loopback_only: bool) -> None:
        self.app, self.token, self.max_body, self.loopback_only = app, token, max_body, loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if self.loopback_only and not self.token:
            host = headers.get("host", "").rsplit(":", 1)[0].strip("[]") if headers.get("host") else ""
            if host and not is_loopback(host):
                return await _reply(send, 403, f"Host {host!r} refused: this server only answers on the loopback")
        set_cookie = False
        if self.token and path not in OPEN_PATHS:
            given = _bearer(headers.get("authorization"))
            if given is None:
                given = _cookie(headers.get("cookie"))
            if given is None:
                q = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
                given = q[0] if q else None
                set_cookie = given is not None
            if not token_ok(given, self.token):
                return await _reply(send, 401, "a token is required: open the address printed by "
                                    "'medmem serve' (it ends in ?token=...) or send 'Authorization: Bearer TOKEN'")
        cl = headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.max_body:
            return await _reply(send, 413, f"request body larger than the limit of {self.max_body // (1 << 20)} MB "
                                "(--max-upload-mb)")
        seen = 0
        over = False

        async def counted_receive():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:   # a body without Content-Length, counted as it arrives
                    over = True
                    return {"type": "http.disconnect"}
            return msg

        swallow = False

        async def send_wrapper(msg):
            nonlocal swallow
            if swallow:
                return
            if msg["type"] == "http.response.start":
                if over:        # whatever the app made of the cut body, the answer is 413
                    swallow = True
                    return await _reply(send, 413, f"request body larger than the limit of "
                                        f"{self.max_body // (1 << 20)} MB (--max-upload-mb)")
                if set_cookie:
                    msg = dict(msg)
                    msg["headers"] = list(msg.get("headers", [])) + [
                        (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())]
            await send(msg)

        await self.app(scope, counted_receive, send_wrapper)


def _bearer(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    parts = value.split(None, 1)
    return parts[1].strip() if len(parts) == 2 and parts[0].lower() == "bearer" else None


def _cookie(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    c = SimpleCookie()
    try:
        c.load(value)
    except Exception:
        return None
    return c[COOKIE].value if COOKIE in c else None


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
