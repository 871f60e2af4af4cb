"""Image decoding as the original did it (OpenCV colour decoding), including what OpenCV cannot read."""
import cv2
import numpy as np
import pytest
from PIL import Image

from setr.errors import SetrError
from setr.io.images import find_images, read_image


def test_png_reads_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    assert np.array_equal(out, cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_COLOR)[:, :, ::-1])


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), dtype=np.uint8)
    img[:, :10] = 255  # white band on the left
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display" (a phone held upright)
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "phone.jpg")
    assert out.shape == (40, 20, 3)  # as people see it
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the band is now on top


def test_16bit_grey_and_palette_and_rgba(tmp_path):
    grey16 = (np.arange(6 * 8).reshape(6, 8) * 1300).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (6, 8, 3) and np.array_equal(out[..., 0], (grey16 >> 8).astype(np.uint8))
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (2, 2, 3)
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [200, 0, 0]


def test_cmyk_jpeg_is_converted(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    out = read_image(tmp_path / "cmyk.jpg")
    assert out.shape == (8, 8, 3) and out[..., 0].min() > 200


def test_unreadable_files_fail_in_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(SetrError, match=r"bad\.png: not a readable image"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SetrError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(SetrError, match="image not found"):
        read_image(tmp_path / "missing.png")


def test_find_images_sorted_and_recursive(tmp_path):
    (tmp_path / "b").mkdir()
    for p in ("z.png", "a.jpg", "b/c.tif", "notes.txt"):
        (tmp_path / p).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images([tmp_path])] == ["a.jpg", "b/c.tif", "z.png"]
