"""The page in a real browser (Debian's chromium driven by Playwright; no browser download).

Loads the bundled sample, draws a box with the mouse, propagates, checks the overlay and that the
downloaded NIfTI equals `medmem segment` with the same box; a correction and an undo; a second
object; a page reload keeps the session. MEDMEM_SCREENSHOTS=DIR writes the screenshots there.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from server_live import need_serve_extra
from helpers import jreq
from medmem.io import read_volume

need_serve_extra()

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium; scripts/setup.sh --test does it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

BOX = (14, 14, 85, 104)     # README command 1: the brain on axial slice 37


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _shots(tmp_path) -> Path:
    d = Path(os.environ.get("MEDMEM_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _count(page, rgb_test: str) -> int:
    """Pixels of the overlay canvas whose (r, g, b, a) satisfy a JS expression."""
    return page.evaluate("""(test) => {
        const c = document.getElementById('ov'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const f = new Function('r', 'g', 'b', 'a', 'return ' + test); let n = 0;
        for (let i = 0; i < d.length; i += 4) if (f(d[i], d[i + 1], d[i + 2], d[i + 3])) n++;
        return n; }""", rgb_test)


RED = "a > 40 && r > 200 && g < 110 && b < 110"          # object 1, #ff4040
BLUE = "a > 40 && r < 110 && g > 150 && b > 200"         # object 2, #40c0ff


def _slice_to_client(page, x: float, y: float):
    r = page.evaluate("(() => { const b = document.getElementById('ov').getBoundingClientRect();"
                      " return [b.left, b.top, b.width, b.height]; })()")
    st = page.evaluate("S.st.axes[S.axis].hw")
    h, w = st
    return r[0] + x / w * r[2], r[1] + y / h * r[3]


def _go_to_slice(page, target: int):
    cur = page.evaluate("S.slice[S.axis]")
    key = "ArrowDown" if target > cur else "ArrowUp"
    for _ in range(abs(target - cur)):
        page.keyboard.press(key)
    page.wait_for_function(f"document.getElementById('ov').dataset.loaded === 'axial:{target}:' + S.st.version")


def _drag_box(page, box):
    x0, y0 = _slice_to_client(page, box[0], box[1])
    x1, y1 = _slice_to_client(page, box[2], box[3])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()


def _wait_version_above(page, v: int):
    page.wait_for_function(f"+document.body.dataset.version > {v}")
    page.wait_for_function("document.getElementById('ov').dataset.loaded === "
                           "S.axis + ':' + S.slice[S.axis] + ':' + S.st.version")


def _arm(page):
    """Mark the job flag before an action, so that waiting sees that action's job finish."""
    page.evaluate("document.body.dataset.job = 'pending'")


def _wait_job(page):
    page.wait_for_function("document.body.dataset.job === 'done' || document.body.dataset.job === 'error'")
    assert page.evaluate("document.body.dataset.job") == "done", page.inner_text("#status")
    page.wait_for_function("document.getElementById('ov').dataset.loaded === "
                           "S.axis + ':' + S.slice[S.axis] + ':' + S.st.version")


def test_segment_the_sample_in_the_browser(browser, server, tmp_path):
    shots = _shots(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True,
                            bypass_csp=True)   # the test evaluates JS strings; the page itself allows none
    page.set_default_timeout(int(os.environ.get("MEDMEM_BROWSER_TIMEOUT_MS", "300000")))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.click("#open-sample")        # enabled once the page has loaded the server's info
    page.wait_for_function("S.st && document.getElementById('ov').dataset.loaded")
    sid = page.evaluate("S.sid")
    base = f"{server.url}/api/sessions/{sid}"
    entry = server.ctx.store.get(sid)

    # scroll with the wheel and the keys to axial slice 37, draw the box with the mouse
    start = page.evaluate("S.slice.axial")
    x, y = _slice_to_client(page, 50, 50)
    page.mouse.move(x, y)
    page.mouse.wheel(0, 120)
    page.wait_for_function(f"S.slice.axial === {start + 1}")
    _go_to_slice(page, 37)
    v = int(page.evaluate("document.body.dataset.version"))
    _drag_box(page, BOX)
    _wait_version_above(page, v)
    code, st = jreq("GET", base)
    assert [h["kind"] for h in st["history"]] == ["box"] and st["history"][0]["slice"] == 37
    box = [int(round(b)) for b in st["history"][0]["box"]]
    assert all(abs(a - b) <= 1 for a, b in zip(box, BOX)), box
    assert _count(page, RED) > 2000, "no overlay on the prompted slice"

    # `medmem segment` with the same box, in the background while the browser propagates
    cli_out = tmp_path / "cli.nii.gz"
    cli = subprocess.Popen([sys.executable, "-m", "medmem.cli", "segment", "sample:mni152_t1", "--box",
                            ",".join(map(str, box)), "--slice", "37", "--axis", "axial", "--out", str(cli_out),
                            "--quiet"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _arm(page)
    page.click("#propagate")
    _wait_job(page)
    assert "propagate done" in page.inner_text("#status")
    assert page.evaluate("document.getElementById('progress').value") == 1
    _go_to_slice(page, 60)
    assert _count(page, RED) > 1000, "no overlay on a propagated slice"
    page.screenshot(path=str(shots / "server_propagated.png"))

    with page.expect_download() as dl:
        page.click("#dl-nifti")
    got = tmp_path / "page.nii.gz"
    dl.value.save_as(got)
    out, _ = cli.communicate(timeout=600)
    assert cli.returncode == 0, out.decode()
    page_mask, cli_mask = read_volume(got), read_volume(cli_out)
    assert page_mask.array.sum() > 100_000
    np.testing.assert_array_equal(page_mask.array, cli_mask.array)
    np.testing.assert_allclose(page_mask.spacing, cli_mask.spacing)
    np.testing.assert_allclose(page_mask.origin, cli_mask.origin)
    propagated = entry.edit.label_volume().copy()

    # a correction: a negative click on slice 50, re-propagate; then undo with Ctrl+Z
    _go_to_slice(page, 50)
    page.keyboard.press("n")
    v = int(page.evaluate("document.body.dataset.version"))
    page.mouse.click(*_slice_to_client(page, 50, 60))
    _wait_version_above(page, v)
    _arm(page)
    page.keyboard.press("Enter")
    _wait_job(page)
    corrected = entry.edit.label_volume().copy()
    assert not np.array_equal(corrected, propagated), "the correction changed nothing"
    _arm(page)
    page.keyboard.press("Control+z")
    _wait_job(page)
    np.testing.assert_array_equal(entry.edit.label_volume(), propagated)
    assert page.evaluate("!document.getElementById('redo').disabled")

    # a second object, from a box on slice 50
    page.keyboard.press("a")
    page.wait_for_function("S.st.objects.length === 2")
    page.keyboard.press("b")
    v = int(page.evaluate("document.body.dataset.version"))
    _drag_box(page, (30, 40, 60, 75))
    _wait_version_above(page, v)
    _arm(page)
    page.click("#propagate")
    _wait_job(page)
    assert _count(page, BLUE) > 500 and _count(page, RED) > 500
    lab = entry.edit.label_volume()
    assert set(np.unique(lab)) == {0, 1, 2}
    page.screenshot(path=str(shots / "server_two_objects.png"))

    # the session survives a reload
    page.reload()
    page.wait_for_function("S.st && S.st.objects.length === 2 && document.getElementById('ov').dataset.loaded")
    assert page.evaluate("S.sid") == sid
    assert page.locator("#objects li").count() == 2
    assert not errors, errors
    page.close()
