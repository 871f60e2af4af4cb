"""``setr app``: a local demo page for a segmentation model or a detector, served on the loopback interface only.

Drop an image (or pick an example). For a segmentation model the page shows the model's classes over it, with
an opacity slider and the legend of the classes present with their pixel shares; for a detector, the picture
with the boxes drawn and the list of detections (label, score, box) above a score threshold set with a slider.
Everything runs offline, on the CPU by default: the page is one HTML document with its own script (no CDN),
served by the standard library's ``http.server``, so the demo needs nothing beyond the base install.

One server, two kinds of "demo" object with the same interface (:class:`SegmentationDemo`,
:class:`DetectionDemo`): ``title``, ``examples`` (name, bytes), ``page()`` -> the HTML and
``predict(data, name, options)`` -> a JSON-able dict (``options``: the query string of ``/predict``, e.g.
``score_thresh``), raising :class:`SetrError` for an input the user should fix.

Routes: ``GET /`` the page; ``GET /examples`` the example names; ``GET /example/<i>`` an example's bytes;
``POST /predict[?score_thresh=T]`` (body: the file's bytes; header ``X-Filename``) -> JSON with ``width``,
``height`` and ``image`` (a PNG ``data:`` URI of the image's size) and, for segmentation, ``mask`` and
``legend``; for detection, ``detections`` (label, class, score, box) and the boxes drawn in ``image``; or
``{error}`` with status 400 for a file that is not an image.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import parse_qs, unquote

import numpy as np

from .errors import SetrError
from .reports.html import esc, png_uri

HOST = "127.0.0.1"  # loopback only: the demo is never reachable from another machine
MAX_UPLOAD = 50 * 1024 * 1024
DEFAULT_SCORE_THRESH = 0.3
log = logging.getLogger(__name__)


def _decode(data: bytes, name: str) -> np.ndarray:
    from .io.images import decode_image

    if not data:
        raise SetrError(f"{name}: empty file, expected an image (PNG, JPEG, ...)")
    return decode_image(data, name)


class SegmentationDemo:
    """What the page calls: an image's bytes -> the class colours and the legend."""

    def __init__(self, segmenter, examples: Sequence[tuple[str, bytes]] = (), title: str = "setr demo"):
        self.segmenter = segmenter
        self.examples = list(examples)
        self.title = title
        self._lock = threading.Lock()  # one forward pass at a time (the model is not re-entrant on every device)

    def predict(self, data: bytes, name: str = "upload", options: Mapping[str, str] | None = None) -> dict:
        from .inference import colorize

        image = _decode(data, name)
        with self._lock:
            labels = np.asarray(self.segmenter.predict(image))
        palette = self.segmenter.palette
        names = self.segmenter.class_names
        ids, counts = np.unique(labels, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        legend = []
        for i in order:
            c = int(ids[i])
            colour = palette[c] if c < len(palette) else (0, 0, 0)
            legend.append({"id": c, "class": names[c] if c < len(names) else str(c),
                           "colour": "#{:02x}{:02x}{:02x}".format(*(int(v) for v in colour)),
                           "share": float(counts[i] / labels.size)})
        h, w = labels.shape
        return {"name": name, "width": int(w), "height": int(h), "image": png_uri(image),
                "mask": png_uri(colorize(labels, palette)), "legend": legend}

    def page(self) -> str:
        return _page(self.title, "segmenting", SEG_CONTROLS, SEG_RESULT, SEG_SCRIPT)


class DetectionDemo:
    """What the detector's page calls: an image's bytes and a score threshold -> the picture with the boxes drawn
    and the detections above the threshold. The last images' detections are kept (by the bytes' digest), so that
    moving the threshold redraws without running the model again."""

    def __init__(self, detector, examples: Sequence[tuple[str, bytes]] = (), title: str = "setr demo",
                 score_thresh: float = DEFAULT_SCORE_THRESH, cache: int = 4):
        self.detector = detector
        self.examples = list(examples)
        self.title = title
        self.score_thresh = float(score_thresh)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[np.ndarray, object]] = {}
        self._cache_size = cache

    def _threshold(self, options: Mapping[str, str] | None) -> float:
        raw = (options or {}).get("score_thresh")
        if raw is None:
            return self.score_thresh
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise SetrError(f"score_thresh={raw!r}: expected a number from 0 to 1")
        return value

    def detect(self, data: bytes, name: str = "upload"):
        """(the decoded image, every detection the model keeps), from the cache when these bytes were seen."""
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        image = _decode(data, name)
        with self._lock:
            dets = self.detector.predict(image)
            self._cache[key] = (image, dets)
            while len(self._cache) > self._cache_size:
                self._cache.pop(next(iter(self._cache)))
        return image, dets

    def predict(self, data: bytes, name: str = "upload", options: Mapping[str, str] | None = None) -> dict:
        from .detection.evaluation import draw

        thresh = self._threshold(options)
        image, dets = self.detect(data, name)
        shown = dets.above(thresh)
        names = self.detector.class_names
        rows = []
        for box, score, label in zip(shown.boxes.float().tolist(), shown.scores.float().tolist(),
                                     shown.labels.tolist()):
            rows.append({"label": int(label), "class": names[label] if label < len(names) else str(label),
                         "score": float(score), "box": [round(float(v), 1) for v in box]})
        h, w = image.shape[:2]
        return {"name": name, "width": int(w), "height": int(h), "score_thresh": thresh,
                "image": png_uri(draw(image, shown, names)), "detections": rows, "total": len(dets)}

    def page(self) -> str:
        controls = DET_CONTROLS.replace("{{THRESH}}", str(round(100 * self.score_thresh)))
        return _page(self.title, "detecting", controls, DET_RESULT, DET_SCRIPT)


def _page(title: str, verb: str, controls: str, result: str, script: str) -> str:
    return (PAGE.replace("{{CONTROLS}}", controls).replace("{{RESULT}}", result).replace("{{SCRIPT}}", script)
            .replace("{{VERB}}", verb).replace("{{TITLE}}", esc(title)))


# the page both kinds share: the drop zone, the examples, the upload; each kind adds its controls, its result
# area and its script (`query()`: the query string of /predict; `show(j)`: draw the answer)
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{TITLE}}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1100px;
     padding:0 1em;color:#222}
#drop{border:2px dashed #999;border-radius:8px;padding:1.5em;text-align:center;color:#555;cursor:pointer}
#drop.over{background:#eef4ff;border-color:#3b75af}
#controls{margin:1em 0;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
#stage{position:relative;width:min(640px,100%)}
#stage img{display:block;width:100%;height:auto;image-rendering:pixelated}
#mask{position:absolute;left:0;top:0;width:100%;height:100%}
#error{color:#b00020;font-weight:600}
#legend{list-style:none;padding:0}#legend li{margin:.2em 0}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #888;vertical-align:middle;margin-right:.4em}
.layout{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}
#detections{border-collapse:collapse}#detections td,#detections th{padding:.15em .6em;text-align:right}
#detections td:first-child,#detections th:first-child{text-align:left}
button.example{margin-right:.5em}
</style></head><body>
<h1>{{TITLE}}</h1>
<div id="drop">Drop an image here, or <label><u>choose a file</u>
  <input type="file" id="file" accept="image/*" style="display:none"></label></div>
<div id="controls"><span id="examples"></span>
  {{CONTROLS}}
  <span id="status"></span></div>
<div id="error" role="alert"></div>
<div class="layout">
  {{RESULT}}
</div>
<script>
const $ = (id) => document.getElementById(id);
let last = null;  // the last image that gave an answer: [blob, name]
{{SCRIPT}}
async function run(blob, name){
  $("error").textContent = ""; $("status").textContent = "{{VERB}} " + name + " ...";
  let r, j;
  try {
    r = await fetch("predict" + query(), {method: "POST", headers: {"X-Filename": encodeURIComponent(name)},
                                         body: blob});
    j = await r.json();
  } catch (e) { $("status").textContent = ""; $("error").textContent = "the server did not answer: " + e; return; }
  $("status").textContent = "";
  if (!r.ok) { $("error").textContent = j.error; return; }
  last = [blob, name];
  show(j);
}
$("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) run(f, f.name); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over");
  const f = e.dataTransfer.files[0]; if (f) run(f, f.name); });
fetch("examples").then((r) => r.json()).then((names) => names.forEach((n, i) => {
  const b = document.createElement("button"); b.className = "example"; b.textContent = n;
  b.addEventListener("click", async () => run(await (await fetch("example/" + i)).blob(), n));
  $("examples").appendChild(b);
}));
</script></body></html>
"""

SEG_CONTROLS = '<label>opacity <input type="range" id="opacity" min="0" max="100" value="60"></label>'
SEG_RESULT = """<div id="stage" hidden><img id="input-image" alt="input image"><img id="mask" alt="predicted classes"></div>
  <div><h3 id="legend-title" hidden>classes present</h3><ul id="legend"></ul></div>"""
SEG_SCRIPT = """function setOpacity(){ $("mask").style.opacity = $("opacity").value / 100; }
$("opacity").addEventListener("input", setOpacity); setOpacity();
function query(){ return ""; }
function show(j){
  $("input-image").src = j.image; $("mask").src = j.mask; $("stage").hidden = false;
  $("stage").dataset.name = j.name;
  const ul = $("legend"); ul.innerHTML = "";
  for (const c of j.legend) {
    const li = document.createElement("li"); li.className = "legend-row";
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = c.colour;
    li.appendChild(sw);
    li.appendChild(document.createTextNode(c["class"] + ": " + (100 * c.share).toFixed(1) + "%"));
    ul.appendChild(li);
  }
  $("legend-title").hidden = false;
}"""

DET_CONTROLS = ('<label>score threshold <input type="range" id="threshold" min="0" max="100" value="{{THRESH}}">'
                ' <output id="threshold-value"></output></label>')
DET_RESULT = """<div id="stage" hidden><img id="boxes" alt="the image with the detected boxes"></div>
  <div><h3 id="detections-title" hidden></h3>
  <table id="detections"><thead><tr><th>class</th><th>score</th><th>x1</th><th>y1</th><th>x2</th><th>y2</th></tr>
  </thead><tbody></tbody></table></div>"""
DET_SCRIPT = """function thresh(){ return ($("threshold").value / 100).toFixed(2); }
function showThresh(){ $("threshold-value").textContent = thresh(); }
$("threshold").addEventListener("input", showThresh); showThresh();
$("threshold").addEventListener("change", () => { if (last) run(last[0], last[1]); });
function query(){ return "?score_thresh=" + thresh(); }
function show(j){
  $("boxes").src = j.image; $("stage").hidden = false; $("stage").dataset.name = j.name;
  const body = $("detections").tBodies[0]; body.innerHTML = "";
  for (const d of j.detections) {
    const tr = body.insertRow(); tr.className = "det-row";
    for (const v of [d["class"], d.score.toFixed(3), ...d.box.map((x) => x.toFixed(1))])
      tr.insertCell().textContent = v;
  }
  $("detections-title").textContent = j.detections.length + " detection(s) with score >= " +
    j.score_thresh.toFixed(2) + " (" + j.total + " in all)";
  $("detections-title").hidden = false;
}"""


def _handler(demo):
    class Handler(BaseHTTPRequestHandler):
        server_version = "setr-app"

        def log_message(self, fmt, *args):  # requests go to the library log, not to stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, demo.page().encode(), "text/html; charset=utf-8")
            elif path == "/examples":
                self._json(200, [name for name, _ in demo.examples])
            elif path.startswith("/example/") and path[9:].isdigit() and int(path[9:]) < len(demo.examples):
                self._send(200, demo.examples[int(path[9:])][1], "application/octet-stream")
            else:
                self._json(404, {"error": f"{path}: not found"})

        def do_POST(self):  # noqa: N802
            path, _, qs = self.path.partition("?")
            if path != "/predict":
                return self._json(404, {"error": f"{path}: not found"})
            options = {k: v[-1] for k, v in parse_qs(qs).items()}
            name = unquote(self.headers.get("X-Filename") or "upload")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._json(400, {"error": "bad Content-Length"})
            if length > MAX_UPLOAD:
                return self._json(413, {"error": f"{name}: {length / 2**20:.0f} MB, more than the "
                                                 f"{MAX_UPLOAD // 2**20} MB this demo takes"})
            data = self.rfile.read(length)
            try:
                result = demo.predict(data, name, options)
            except SetrError as exc:
                return self._json(400, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - the page shows the reason; the server keeps serving
                log.exception("prediction failed")
                return self._json(500, {"error": f"{name}: {type(exc).__name__}: {exc}"})
            self._json(200, result)

    return Handler


def make_server(demo, port: int = 7860) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:``port`` (0: any free port; read ``server.server_port``)."""
    try:
        server = ThreadingHTTPServer((HOST, port), _handler(demo))
    except OSError as exc:
        raise SetrError(f"--port {port}: cannot listen on {HOST}:{port} ({exc.strerror or exc}); pick another "
                        "port or --port 0 for any free one") from None
    server.daemon_threads = True
    return server


def default_examples(n: int = 3, size: int = 128) -> list[tuple[str, bytes]]:
    """Generated scenes of textured shapes (the demo dataset's kind), as PNG bytes."""
    import io

    from PIL import Image

    from .data.synthetic import make_scene

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = make_scene(rng, size, size)[0]
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append((f"shapes_{i}.png", buf.getvalue()))
    return out


def examples_from(paths: Sequence[str | Path]) -> list[tuple[str, bytes]]:
    from .io.images import find_images

    files = find_images(paths)
    if not files:
        raise SetrError(f"--examples {' '.join(str(p) for p in paths)}: no image files")
    return [(f.name, f.read_bytes()) for f in files]
