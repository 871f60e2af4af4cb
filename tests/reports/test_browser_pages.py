"""What a person sees, checked in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium;
nothing is downloaded at test time): the report page's charts and pictures load, its class table has one row
per class and its gallery the N worst images; in the demo page an uploaded image gives an overlay of the
image's size, the opacity slider works, a file that is not an image gets its message; in the detector's
page the picture with the boxes has the image's size, the detections list has entries, the threshold slider
empties it.

Without the browser these tests skip with one line saying what to install; `make test` installs it where it can
and sets SETR_BROWSER_TESTS=required, under which a missing browser is a failure."""
from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

INSTALL = ("headless browser tests need Chromium and its driver: apt-get install chromium chromium-driver "
           "(Debian), and pip install selenium")


def _find_browser() -> tuple[str, str] | None:
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    found = _find_browser()
    if found is None:
        if os.environ.get("SETR_BROWSER_TESTS") == "required":
            pytest.fail(INSTALL, pytrace=False)
        pytest.skip(INSTALL)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def test_report_page(browser, tmp_path):
    from setr.reports.segmentation import SegmentationReport

    rng = np.random.default_rng(0)
    names = ["road", "car", "person", "sky", "tree"]
    rep = SegmentationReport(5, names, [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in names], worst=4)
    for i in range(6):
        gt = rng.integers(0, 5, (24, 40))
        pred = np.where(rng.random((24, 40)) < 0.1 * i, rng.integers(0, 5, (24, 40)), gt)
        rep.add(f"img_{i}", pred, gt, rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    per_class = [{"class": n, "IoU": 0.5 + 0.1 * k, "Acc": 0.6} for k, n in enumerate(names)]
    page = rep.write(tmp_path / "report", {"aAcc": 0.9, "mIoU": 0.7, "mAcc": 0.6, "per_class": per_class},
                     {"preset": "tiny", "checkpoint": "m.safetensors", "precision": "fp32"})
    browser.get(page.as_uri())
    wait_for(browser, "return document.readyState === 'complete'")
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.id || i.className, i.complete, i.naturalWidth]);")
    assert len(sizes) == 2 + 4 * 4  # two charts; image, ground truth, prediction, errors for each worst image
    assert all(complete and width > 0 for _, complete, width in sizes), sizes
    assert [s[0] for s in sizes[:2]] == ["per-class-chart", "confusion-chart"]
    assert browser.execute_script("return document.querySelectorAll('#classes tr.class-row').length") == 5
    assert browser.execute_script("return document.querySelectorAll('#worst-images .gallery-item').length") == 4
    shown = browser.execute_script("return document.getElementById('classes').rows[1].cells[0].textContent")
    assert shown == "road"


@pytest.fixture
def app_url():
    from setr.app import SegmentationDemo, default_examples, make_server

    from test_app import tiny_segmenter

    srv = make_server(SegmentationDemo(tiny_segmenter(), default_examples(1, 48), title="tiny"), 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_demo_page_upload_overlay_slider_and_errors(browser, app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(photo)
    browser.get(app_url)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait_for(browser, "const m = document.getElementById('mask'); return m.complete && m.naturalWidth > 0;")
    size = browser.execute_script("const m = document.getElementById('mask'), i = document.getElementById("
                                  "'input-image'); return [m.naturalWidth, m.naturalHeight, i.naturalWidth, "
                                  "i.naturalHeight, m.getBoundingClientRect().width, "
                                  "i.getBoundingClientRect().width];")
    assert size[:4] == [70, 45, 70, 45] and size[4] == pytest.approx(size[5])  # the overlay covers the image
    rows = browser.find_elements(By.CSS_SELECTOR, "#legend li.legend-row")
    shares = [float(r.text.rsplit(": ", 1)[1].rstrip("%")) for r in rows]
    assert rows and sum(shares) == pytest.approx(100, abs=0.1 * len(rows))
    slider = browser.find_element(By.ID, "opacity")
    before = float(browser.execute_script("return getComputedStyle(document.getElementById('mask')).opacity"))
    slider.send_keys(Keys.HOME)
    after = float(browser.execute_script("return getComputedStyle(document.getElementById('mask')).opacity"))
    assert before == pytest.approx(0.6) and after == 0.0
    # a file that is not an image: the message, and the last result stays
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait_for(browser, "return document.getElementById('error').textContent.length > 0")
    assert browser.find_element(By.ID, "error").text == ("notes.txt: not a readable image (not an image OpenCV or "
                                                         "Pillow can decode)")
    # an example, picked with a click
    browser.find_element(By.CSS_SELECTOR, "button.example").click()
    wait_for(browser, "return document.getElementById('mask').naturalWidth === 48 && "
                      "document.getElementById('error').textContent === ''")


@pytest.fixture
def detector_url():
    from setr.app import DetectionDemo, default_examples, make_server

    from test_app import tiny_detector

    srv = make_server(DetectionDemo(tiny_detector(), default_examples(1, 48), title="tiny detector"), 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_detector_page_upload_boxes_list_threshold(browser, detector_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    photo = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(photo)
    browser.get(detector_url)
    assert browser.find_element(By.ID, "threshold-value").text == "0.30"
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait_for(browser, "const m = document.getElementById('boxes'); return m.complete && m.naturalWidth > 0;")
    size = browser.execute_script("const m = document.getElementById('boxes'); "
                                  "return [m.naturalWidth, m.naturalHeight];")
    assert size == [80, 50]
    rows = browser.execute_script("return Array.from(document.querySelectorAll('#detections tr.det-row'))"
                                  ".map(r => Array.from(r.cells).map(c => c.textContent));")
    assert rows
    for cells in rows:
        assert len(cells) == 6 and cells[0] in ("circle", "square") and 0.3 <= float(cells[1]) <= 1
        x1, y1, x2, y2 = map(float, cells[2:])
        assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 50
    assert browser.find_element(By.ID, "detections-title").text.startswith(f"{len(rows)} detection(s) with score "
                                                                           ">= 0.30")
    # the slider at its top: nothing left above it, the list empties
    browser.find_element(By.ID, "threshold").send_keys(Keys.END)
    wait_for(browser, "return document.querySelectorAll('#detections tr.det-row').length === 0")
    assert browser.find_element(By.ID, "detections-title").text.startswith("0 detection(s) with score >= 1.00")
    # a file that is not an image: the one-line message
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait_for(browser, "return document.getElementById('error').textContent.length > 0")
    assert browser.find_element(By.ID, "error").text == ("notes.txt: not a readable image (not an image OpenCV or "
                                                         "Pillow can decode)")
