"""Load test of `medmem serve` on the loopback: N concurrent clients, each running one session
(upload the bundled sample, a box, propagate, download the NIfTI, delete), for R rounds.

Reports p50/p95/max latency per step, failed requests, and the server's resident memory (RSS)
before, at peak, and after each round (sessions come and go: memory should not climb per round).

    python benchmarks/server_load.py                       # 8 clients, 2 rounds -> benchmarks/server_load.json
    python benchmarks/server_load.py --clients 4 --rounds 1 --out /tmp/load.json
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

BOX = {"axis": "axial", "slice": 37, "box": [14, 14, 85, 104]}


def _req(method, url, body=None, headers=None, timeout=3600):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _upload(base, data):
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"mni152_t1.nii.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return _req("POST", base + "/api/sessions", body, {"Content-Type": f"multipart/form-data; boundary={b}"})


def _rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def client(base, data, times, failures, lock):
    def timed(step, fn):
        t0 = time.perf_counter()
        code, body = fn()
        dt = time.perf_counter() - t0
        with lock:
            times.setdefault(step, []).append(dt)
            if code >= 300:
                failures.append({"step": step, "status": code, "body": body[:200].decode("latin-1")})
        return code, body

    code, body = timed("upload", lambda: _upload(base, data))
    if code != 200:
        return
    sid = json.loads(body)["session_id"]
    s = f"{base}/api/sessions/{sid}"
    code, _ = timed("box", lambda: _req("POST", s + "/prompts", json.dumps(BOX).encode(),
                                        {"Content-Type": "application/json"}))
    if code != 200:
        return

    def propagate():
        code, body = _req("POST", s + "/propagate")
        if code != 200:
            return code, body
        while True:
            time.sleep(0.25)
            code, body = _req("GET", s)
            if code != 200:
                return code, body
            job = json.loads(body)["job"]
            if job["state"] != "running":
                return (200 if job["state"] == "done" else 500), body

    code, _ = timed("propagate", propagate)
    if code != 200:
        return
    code, body = timed("download", lambda: _req("GET", s + "/download?format=nifti"))
    if code == 200 and body[:2] != b"\x1f\x8b":
        failures.append({"step": "download", "status": code, "body": "not a gzip file"})
    timed("delete", lambda: _req("DELETE", s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("server_load.json"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # stop the server child too (finally below)

    from medmem.io import sample_path

    data = Path(sample_path("mni152_t1")).read_bytes()
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    work = tempfile.mkdtemp(prefix="medmem-load-")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))}
    proc = subprocess.Popen([sys.executable, "-m", "medmem.cli", "serve", "--port", str(port), "--workdir", work],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while not _healthy(base):
        if proc.poll() is not None or time.time() - t0 > 120:
            raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    rss = {"idle": _rss_mb(proc.pid), "peak": 0.0, "after_round": []}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            v = _rss_mb(proc.pid)
            if v:
                rss["peak"] = max(rss["peak"], v)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    times, failures, lock = {}, [], threading.Lock()
    load0 = os.getloadavg()
    wall0 = time.perf_counter()
    try:
        for r in range(args.rounds):
            ts = [threading.Thread(target=client, args=(base, data, times, failures, lock))
                  for _ in range(args.clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            time.sleep(1.0)
            rss["after_round"].append(_rss_mb(proc.pid))
        sessions = json.loads(_req("GET", base + "/health")[1])["sessions"]
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - wall0

    def summary(v):
        v = sorted(v)
        return {"n": len(v), "p50_s": round(statistics.median(v), 3),
                "p95_s": round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], 3), "max_s": round(v[-1], 3)}

    out = {
        "clients": args.clients, "rounds": args.rounds, "volume": "sample:mni152_t1 (94 x 116 x 98)",
        "prompt": BOX, "steps": {k: summary(v) for k, v in times.items()},
        "failed_requests": len(failures), "failures": failures[:20], "sessions_left": sessions,
        "server_rss_mb": {k: (round(v, 1) if isinstance(v, float) else [round(x, 1) for x in v])
                          for k, v in rss.items()},
        "wall_s": round(wall, 1), "cpu_count": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load0],
        "compute_slots": 1, "omp_num_threads": env["OMP_NUM_THREADS"],
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


def _healthy(base) -> bool:
    try:
        return _req("GET", base + "/health", timeout=5)[0] == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


if __name__ == "__main__":
    main()
