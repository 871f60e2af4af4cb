"""Building blocks of the offline report pages: pictures as base64 ``data:`` URIs, escaped text, one page."""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image

from ..errors import SetrError

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1200px;
     padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4}td.name,th.name{text-align:left}
.swatch{display:inline-block;width:.9em;height:.9em;border:1px solid #888;vertical-align:middle;margin-right:.3em}
img.chart{max-width:100%;height:auto}
.gallery-item{margin:1em 0;padding:.5em;border:1px solid #e4e4e4}
.gallery-item .row{display:flex;gap:.5em;flex-wrap:wrap}
.gallery-item figure{margin:0}.gallery-item figcaption{font-size:.8em;color:#555;text-align:center}
.gallery-item img{image-rendering:pixelated;width:230px;height:auto;border:1px solid #ccc}
.legend span{margin-right:1em;white-space:nowrap}
.meta td{text-align:left}
details{margin:.5em 0}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def png_uri(image: np.ndarray | Image.Image) -> str:
    """A ``data:image/png;base64,...`` URI of an (H, W[, 3|4]) uint8 array or a PIL image."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def figure_uri(fig) -> str:
    return "data:image/png;base64," + base64.b64encode(figure_png(fig)).decode("ascii")


def img_tag(uri: str, alt: str, cls: str = "", **attrs) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<img src="{uri}" alt="{esc(alt)}"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}{extra}>'


def key_value_table(rows: Mapping[str, object], table_id: str = "") -> str:
    body = "".join(f'<tr><th class="name">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows.items())
    return f'<table class="meta"{f" id={chr(34)}{table_id}{chr(34)}" if table_id else ""}>{body}</table>'


def page(title: str, sections: Iterable[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>\n" + "\n".join(sections) + "\n</body></html>\n")


def downscale(image: np.ndarray, max_side: int, nearest: bool) -> np.ndarray:
    """``image`` shrunk so that its longer side is at most ``max_side`` (labels: nearest neighbour)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, resample))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_report_dir(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None],
                     option: str = "--report") -> Path:
    """Refuse an output folder that is (or lies inside) one of the command's input folders: a report must never
    add files to a dataset or a prediction folder. ``inputs`` maps each option name to its path."""
    target = Path(out).expanduser().resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        src = Path(path).expanduser().resolve()
        if src.is_dir() and _inside(target, src):
            raise SetrError(f"{option} {out}: lies inside the input folder {name} {path}; write the report "
                            "elsewhere")
    return Path(out)


def write_page(out_dir: Path, name: str, text: str) -> Path:
    from ..io.atomic import atomic_write

    path = Path(out_dir) / name
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
