// medmem viewer: slices and overlays are rendered by the server; this page draws them and sends prompts.
"use strict";
const $ = (id) => document.getElementById(id);
const S = { sid: null, st: null, axis: "axial", slice: { axial: 0, coronal: 0, sagittal: 0 }, window: "auto",
            tool: "box", obj: null, overlay: true, drag: null, conf: null, polling: false };
const imgC = $("img"), ovC = $("ov"), trackC = $("track");
const slideImg = new Image(), ovImg = new Image();

function status(msg, isError) { const el = $("status"); el.textContent = msg; el.className = isError ? "error" : ""; }

async function api(method, url, body, isForm) {
  const opt = { method, headers: {} };
  if (body !== undefined) {
    if (isForm) opt.body = body; else { opt.body = JSON.stringify(body); opt.headers["Content-Type"] = "application/json"; }
  }
  const r = await fetch(url, opt);
  const ct = r.headers.get("content-type") || "";
  const data = ct.includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error((data && data.detail) || `${r.status} ${r.statusText}`);
  return data;
}

function base() { return `/api/sessions/${S.sid}`; }
function nSlices() { return S.st ? S.st.axes[S.axis].slices : 0; }

// ------------------------------------------------------------------ open
async function init() {
  try {
    const info = await api("GET", "/api/info");
    $("model").textContent = info.model;
    for (const s of info.samples) $("sample").add(new Option(s, s));
    if (info.data.length) for (const d of info.data) $("data").add(new Option(d, "data:" + d));
    else $("data-row").style.display = "none";
    for (const w of info.windows) $("window").add(new Option(w.replace("_", " "), w));
    $("open-sample").disabled = !info.samples.length; $("open-data").disabled = !info.data.length;
  } catch (e) { status(e.message, true); return; }
  const hash = new URLSearchParams(location.hash.slice(1));
  const sid = hash.get("s") || localStorage.getItem("medmem.sid");
  if (sid) {
    try { S.sid = sid; setState(await api("GET", base()), true); status("session restored"); }
    catch (e) { S.sid = null; localStorage.removeItem("medmem.sid"); status("open an image to start"); }
  }
}

async function openWith(form) {
  status("opening…");
  try { S.sid = null; setState(await api("POST", "/api/sessions", form, true), true); status("opened " + S.st.source.name); }
  catch (e) { status(e.message, true); }
}
$("open-sample").onclick = () => { const f = new FormData(); f.append("source", $("sample").value); openWith(f); };
$("open-data").onclick = () => { const f = new FormData(); f.append("source", $("data").value); openWith(f); };
$("upload").onchange = () => {
  const files = $("upload").files; if (!files.length) return;
  const f = new FormData(); for (const x of files) f.append("files", x, x.name); openWith(f); $("upload").value = "";
};
$("mask-upload").onchange = async () => {
  const file = $("mask-upload").files[0]; if (!file || !S.sid) return;
  const f = new FormData(); f.append("file", file, file.name); f.append("axis", S.st.axis || S.axis);
  try { setState(await api("POST", base() + "/mask", f, true)); poll(); } catch (e) { status(e.message, true); }
  $("mask-upload").value = "";
};

// ------------------------------------------------------------------ state
function setState(st, fresh) {
  S.st = st; S.sid = st.session_id;
  localStorage.setItem("medmem.sid", S.sid);
  history.replaceState(null, "", "#s=" + S.sid);
  document.body.dataset.version = st.version;
  document.body.dataset.job = st.job ? st.job.state : "idle";
  if (fresh) {
    for (const a of ["axial", "coronal", "sagittal"]) S.slice[a] = Math.floor(st.axes[a].slices / 2);
    S.axis = st.axis || "axial"; S.window = st.default_window; $("window").value = S.window;
  }
  if (!st.objects.find((o) => o.id === S.obj)) S.obj = st.objects.length ? st.objects[st.objects.length - 1].id : null;
  $("dl-nifti").href = base() + "/download?format=nifti";
  $("dl-seg").href = base() + "/download?format=dicom-seg";
  $("undo").disabled = !st.can_undo; $("redo").disabled = !st.can_redo;
  $("propagate").disabled = !st.dirty.length;
  renderObjects(); setAxis(S.axis, true); loadConfidence();
}

function renderObjects() {
  const ul = $("objects"); ul.innerHTML = "";
  for (const o of S.st.objects) {
    const li = document.createElement("li");
    li.dataset.id = o.id; if (o.id === S.obj) li.className = "sel";
    const sw = document.createElement("span"); sw.className = "sw"; sw.style.background = o.color;
    const nm = document.createElement("span"); nm.textContent = `${o.id}. ${o.name}`;
    li.append(sw, nm); li.onclick = () => selectObject(o.id); ul.append(li);
  }
  const cur = S.st.objects.find((o) => o.id === S.obj);
  $("obj-name").value = cur ? cur.name : ""; if (cur) $("obj-color").value = cur.color;
}

function selectObject(id) { S.obj = id; renderObjects(); loadConfidence(); drawOverlay(); }

async function addObject() {
  if (!S.sid) return;
  try { const r = await api("POST", base() + "/objects", {}); S.obj = r.id; setState(r.state); status(`object ${r.id} added`); }
  catch (e) { status(e.message, true); }
}
$("add-object").onclick = addObject;
$("obj-name").onchange = () => patchObject({ name: $("obj-name").value });
$("obj-color").onchange = () => patchObject({ color: $("obj-color").value });
async function patchObject(body) {
  if (!S.sid || S.obj === null) return;
  try { setState(await api("PATCH", `${base()}/objects/${S.obj}`, body)); refreshOverlay(); } catch (e) { status(e.message, true); }
}
$("del-object").onclick = async () => {
  if (!S.sid || S.obj === null || !confirm("Delete this object and its prompts?")) return;
  try { setState(await api("DELETE", `${base()}/objects/${S.obj}`)); refreshOverlay(); } catch (e) { status(e.message, true); }
};

// ------------------------------------------------------------------ view
function setAxis(axis, keepSlice) {
  S.axis = axis;
  for (const b of document.querySelectorAll("button.axis")) b.classList.toggle("active", b.dataset.axis === axis);
  if (!S.st) return;
  const ax = S.st.axes[axis], [h, w] = ax.hw, [sr, sc] = ax.pixel_spacing;
  const scale = Math.max(1, Math.floor(Math.min(640 / (w * sc), 640 / (h * sr)) * 4) / 4);
  const cw = Math.round(w * sc * scale), ch = Math.round(h * sr * scale);
  for (const c of [imgC, ovC]) { c.width = cw; c.height = ch; }
  $("slider").max = ax.slices - 1;
  showSlice(S.slice[axis]);
}

function showSlice(i) {
  if (!S.st) return;
  i = Math.max(0, Math.min(nSlices() - 1, i));
  S.slice[S.axis] = i; $("slider").value = i;
  $("slice-label").textContent = `${S.axis} ${i} / ${nSlices() - 1}`;
  slideImg.src = `${base()}/slice/${S.axis}/${i}.png?window=${encodeURIComponent(S.window)}`;
  refreshOverlay();
  drawTrack();
}

function refreshOverlay() {
  if (!S.st) return;
  ovImg.src = `${base()}/overlay/${S.axis}/${S.slice[S.axis]}.png?v=${S.st.version}&t=${Date.now()}`;
}

slideImg.onload = () => {
  const g = imgC.getContext("2d"); g.imageSmoothingEnabled = false;
  g.drawImage(slideImg, 0, 0, imgC.width, imgC.height);
};
ovImg.onload = () => { ovC.dataset.loaded = `${S.axis}:${S.slice[S.axis]}:${S.st.version}`; drawOverlay(); };

function toCanvas(x, y) { const [h, w] = S.st.axes[S.axis].hw; return [x / w * ovC.width, y / h * ovC.height]; }
function toSlice(ev) {
  const r = ovC.getBoundingClientRect(), [h, w] = S.st.axes[S.axis].hw;
  return [(ev.clientX - r.left) / r.width * w, (ev.clientY - r.top) / r.height * h];
}

function drawOverlay() {
  const g = ovC.getContext("2d"); g.clearRect(0, 0, ovC.width, ovC.height);
  if (!S.st) return;
  g.imageSmoothingEnabled = false;
  if (S.overlay && ovImg.complete && ovImg.naturalWidth) g.drawImage(ovImg, 0, 0, ovC.width, ovC.height);
  if (S.st.axis === S.axis) {       // prompts on this slice
    for (const h of S.st.history) {
      if (h.slice !== S.slice[S.axis]) continue;
      const o = S.st.objects.find((x) => x.id === h.obj); const col = o ? o.color : "#fff";
      g.lineWidth = 1.5;
      if (h.box) {
        const [x0, y0] = toCanvas(h.box[0], h.box[1]), [x1, y1] = toCanvas(h.box[2], h.box[3]);
        g.strokeStyle = col; g.setLineDash([5, 3]); g.strokeRect(x0, y0, x1 - x0, y1 - y0); g.setLineDash([]);
      }
      if (h.points) h.points.forEach((p, k) => {
        const [x, y] = toCanvas(p[0], p[1]);
        g.fillStyle = h.labels[k] ? "#3f3" : "#f33"; g.beginPath(); g.arc(x, y, 4, 0, 7); g.fill();
        g.strokeStyle = col; g.stroke();
      });
    }
  }
  if (S.drag && S.drag.moved) {
    const [x0, y0] = toCanvas(S.drag.x0, S.drag.y0), [x1, y1] = toCanvas(S.drag.x1, S.drag.y1);
    g.strokeStyle = "#ffe600"; g.lineWidth = 1.5; g.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
}

$("slider").oninput = () => showSlice(+$("slider").value);
for (const b of document.querySelectorAll("button.axis")) b.onclick = () => setAxis(b.dataset.axis);
$("window").onchange = () => { S.window = $("window").value; showSlice(S.slice[S.axis]); };
$("overlay-on").onchange = () => { S.overlay = $("overlay-on").checked; drawOverlay(); };
ovC.addEventListener("wheel", (ev) => { ev.preventDefault(); showSlice(S.slice[S.axis] + (ev.deltaY > 0 ? 1 : -1)); }, { passive: false });

// ------------------------------------------------------------------ prompts
function setTool(t) {
  S.tool = t; for (const b of document.querySelectorAll("button.tool")) b.classList.toggle("active", b.dataset.tool === t);
}
for (const b of document.querySelectorAll("button.tool")) b.onclick = () => setTool(b.dataset.tool);

ovC.onmousedown = (ev) => {
  if (!S.st || ev.button !== 0) return;
  const [x, y] = toSlice(ev); S.drag = { x0: x, y0: y, x1: x, y1: y, moved: false };
};
ovC.onmousemove = (ev) => {
  if (!S.drag) return;
  const [x, y] = toSlice(ev); S.drag.x1 = x; S.drag.y1 = y;
  if (Math.abs(x - S.drag.x0) + Math.abs(y - S.drag.y0) > 1.5) S.drag.moved = true;
  drawOverlay();
};
ovC.onmouseup = async () => {
  const d = S.drag; S.drag = null; if (!d) return;
  const body = { obj: S.obj, axis: S.axis, slice: S.slice[S.axis] };
  if (S.tool === "box") {
    if (!d.moved) { drawOverlay(); return; }
    body.box = [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)].map(Math.round);
  } else {
    body.points = [[Math.round(d.x0 * 2) / 2, Math.round(d.y0 * 2) / 2]]; body.labels = [S.tool === "pos" ? 1 : 0]; body.add = true;
  }
  status("segmenting the slice…");
  try {
    const r = await api("POST", base() + "/prompts", body);
    S.obj = r.obj; setState(r.state); status(`object ${r.obj}: prompt on ${S.axis} slice ${body.slice}; propagate when ready (Enter)`);
  } catch (e) { status(e.message, true); drawOverlay(); }
};

// ------------------------------------------------------------------ jobs
async function job(path, what) {
  if (!S.sid) return;
  try { setState(await api("POST", base() + path)); status(what + "…"); poll(); }
  catch (e) { status(e.message, true); }
}
$("propagate").onclick = () => job("/propagate", "propagating");
$("undo").onclick = () => job("/undo", "undoing");
$("redo").onclick = () => job("/redo", "redoing");

async function poll() {
  if (S.polling) return; S.polling = true;
  try {
    for (;;) {
      const st = await api("GET", base());
      const j = st.job;
      $("progress").value = j && j.total ? j.done / j.total : 0;
      document.body.dataset.job = j ? j.state : "idle";
      if (!j || j.state !== "running") {
        setState(st);
        $("progress").value = j && j.state === "done" ? 1 : 0;
        if (j && j.state === "error") status(`${j.kind} failed: ${j.error}`, true);
        else if (j) status(`${j.kind} done in ${j.seconds} s`);
        break;
      }
      status(`${j.kind}: ${j.done} / ${j.total} slices`);
      await new Promise((r) => setTimeout(r, 300));
    }
  } catch (e) { status(e.message, true); }
  S.polling = false;
}

// ------------------------------------------------------------------ confidence track
async function loadConfidence() {
  S.conf = null;
  if (!S.st || S.obj === null || (S.st.job && S.st.job.state === "running")) { drawTrack(); return; }
  try { S.conf = await api("GET", `${base()}/confidence/${S.obj}`); } catch (e) { S.conf = null; }
  const rv = $("review"); rv.innerHTML = "";
  if (S.conf) {
    if (!S.conf.review.length) rv.textContent = S.conf.rows.some((r) => r.segmented) ? "none" : "–";
    for (const s of S.conf.review) {
      const b = document.createElement("button"); b.textContent = s;
      b.onclick = () => { if (S.conf.axis) setAxis(S.conf.axis); showSlice(s); }; rv.append(b);
    }
  }
  drawTrack();
}

function drawTrack() {
  const g = trackC.getContext("2d"), W = trackC.width, H = trackC.height;
  g.clearRect(0, 0, W, H);
  if (!S.st) return;
  const n = (S.conf && S.conf.axis) ? S.st.axes[S.conf.axis].slices : nSlices(), bw = W / Math.max(n, 1);
  const o = S.st.objects.find((x) => x.id === S.obj);
  if (S.conf) for (const r of S.conf.rows) {
    if (!r.segmented) continue;
    const h = r.present ? Math.max(2, r.iou * (H - 8)) : 2;
    g.fillStyle = r.present ? (o ? o.color : "#8c8") : "#555";
    g.fillRect(r.slice * bw, H - h, Math.max(1, bw - 0.5), h);
    if (r.prompted) { g.fillStyle = "#fff"; g.fillRect(r.slice * bw, 0, Math.max(1, bw - 0.5), 4); }
    if (r.review) { g.fillStyle = "#ff9900"; g.fillRect(r.slice * bw, 6, Math.max(1, bw - 0.5), 5); }
  }
  if (!S.conf || S.conf.axis === S.axis || !S.conf.axis) {
    g.fillStyle = "#ffe600"; g.fillRect(S.slice[S.axis] * bw, 0, Math.max(1, bw), H);
  }
}
trackC.onclick = (ev) => {
  if (!S.st) return;
  const r = trackC.getBoundingClientRect();
  const ax = (S.conf && S.conf.axis) || S.axis, n = S.st.axes[ax].slices;
  if (ax !== S.axis) setAxis(ax);
  showSlice(Math.floor((ev.clientX - r.left) / r.width * n));
};

// ------------------------------------------------------------------ keys
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" && ev.target.type !== "range" && ev.target.type !== "checkbox") return;
  if (ev.target.tagName === "SELECT") return;
  const k = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
  if (ctrl && (k === "z" || k === "Z")) { ev.preventDefault(); job(ev.shiftKey ? "/redo" : "/undo", ev.shiftKey ? "redoing" : "undoing"); return; }
  if (ctrl && (k === "y" || k === "Y")) { ev.preventDefault(); job("/redo", "redoing"); return; }
  if (ctrl) return;
  const step = { ArrowUp: -1, ArrowLeft: -1, PageUp: -5, ArrowDown: 1, ArrowRight: 1, PageDown: 5 }[k];
  if (step) { ev.preventDefault(); showSlice(S.slice[S.axis] + step); return; }
  const lower = k.toLowerCase();
  if (k === "1") setAxis("axial"); else if (k === "2") setAxis("coronal"); else if (k === "3") setAxis("sagittal");
  else if (lower === "b") setTool("box"); else if (lower === "f") setTool("pos"); else if (lower === "n") setTool("neg");
  else if (lower === "t") setTool(S.tool === "pos" ? "neg" : "pos");
  else if (k === "Enter") { ev.preventDefault(); job("/propagate", "propagating"); }
  else if (lower === "a") addObject();
  else if (lower === "e" && S.st && S.st.objects.length) {
    const ids = S.st.objects.map((o) => o.id), i = ids.indexOf(S.obj);
    selectObject(ids[(i + (ev.shiftKey ? -1 : 1) + ids.length) % ids.length]);
  }
  else if (lower === "w") { const opts = [...$("window").options].map((o) => o.value); S.window = opts[(opts.indexOf(S.window) + 1) % opts.length]; $("window").value = S.window; showSlice(S.slice[S.axis]); }
  else if (lower === "o") { S.overlay = !S.overlay; $("overlay-on").checked = S.overlay; drawOverlay(); }
  else if (lower === "r" && S.conf && S.conf.review.length) {
    const cur = S.slice[S.conf.axis || S.axis], next = S.conf.review.find((s) => s > cur);
    if (S.conf.axis && S.conf.axis !== S.axis) setAxis(S.conf.axis);
    showSlice(next !== undefined ? next : S.conf.review[0]);
  }
});

init();
