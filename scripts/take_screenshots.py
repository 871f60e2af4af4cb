#!/usr/bin/env python3
"""The README's screenshots, taken in headless Chromium (Debian's chromium + chromium-driver, Selenium).

    python scripts/take_screenshots.py --report out/report.html --checkpoint work_dirs/demo/final.safetensors \
        --example work_dirs/demo/data/images/val/val_0003.png --out docs

writes ``docs/report.png`` (the top of the report page), ``docs/report_worst.png`` (its worst-images gallery) and
``docs/app.png`` (the demo page after the example was dropped in), each a 256-colour PNG kept under 300 KB.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

from PIL import Image


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        sys.exit("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def save_small(png: bytes, path: Path, limit: int = 300_000) -> None:
    import io

    im = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64):
        im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size < limit:
            break
    print(f"{path}: {im.size[0]}x{im.size[1]}, {path.stat().st_size // 1024} KB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", required=True, help="a report.html written by setr test --report")
    ap.add_argument("--checkpoint", required=True, help="the model the demo page serves")
    ap.add_argument("--example", required=True, help="the image dropped into the demo page")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    driver = browser(1100, 1500)
    try:
        driver.get(Path(args.report).resolve().as_uri())
        save_small(driver.get_screenshot_as_png(), out / "report.png")
        driver.execute_script("document.getElementById('worst-images').scrollIntoView()")
        driver.execute_script("window.scrollBy(0, -60)")
        save_small(driver.get_screenshot_as_png(), out / "report_worst.png")
    finally:
        driver.quit()

    from setr.app import SegmentationDemo, default_examples, make_server
    from setr.inference import Segmenter

    seg = Segmenter.from_checkpoint(args.checkpoint, device="cpu", precision="fp32")
    server = make_server(SegmentationDemo(seg, default_examples(), title="setr demo: " + Path(args.checkpoint).name), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = browser(1100, 760)
    try:
        from selenium.webdriver.common.by import By

        driver.get(f"http://127.0.0.1:{server.server_port}/")
        driver.execute_script("document.getElementById('stage').style.width = '420px'")
        driver.find_element(By.ID, "file").send_keys(str(Path(args.example).resolve()))
        for _ in range(300):
            if driver.execute_script("return document.getElementById('mask').naturalWidth > 0"):
                break
            time.sleep(0.1)
        time.sleep(0.3)
        save_small(driver.get_screenshot_as_png(), out / "app.png")
    finally:
        driver.quit()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
