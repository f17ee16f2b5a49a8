"""Unit tests of webapp/imaging/ on real image files made in tmp_path.

Self-contained: no conftest fixtures, no services. The two real photos come from
Debian packages through bench/photos.py; those tests skip only if apt cannot fetch.

Over 300 lines on purpose: one test per image rule (format, limits, orientation,
metadata, memory), on small files made here.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere, with or without a conftest
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import imaging_samples as samples  # noqa: E402
from webapp import imaging  # noqa: E402
from webapp.imaging import Derivative, ImageRejected, make_derivatives, sniff  # noqa: E402


def by_name(derivs: list[Derivative]) -> dict[str, Derivative]:
    return {d.name: d for d in derivs}


def jpeg(tmp_path: Path, width: int, height: int, name: str = "in.jpg", **kw) -> Path:
    return samples.jpeg_with_exif(tmp_path / name, width, height, **kw)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# ------------------------------------------------------------------------- sniff
@pytest.mark.parametrize("fmt,save_kw,expected", [
    ("JPEG", {"quality": 90}, "jpeg"),
    ("PNG", {}, "png"),
    ("WEBP", {"quality": 80}, "webp"),                 # VP8 (lossy) chunk
    ("WEBP", {"lossless": True}, "webp"),             # VP8L chunk
    ("WEBP", {"quality": 80, "exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"},
     "webp"),                                         # VP8X extended header
])
def test_sniff_reads_format_and_size_from_header_only(fmt, save_kw, expected):
    buf = io.BytesIO()
    samples.photo(1203, 611).save(buf, fmt, **save_kw)
    data = buf.getvalue()
    # Only the first 200 bytes of WebP/PNG; JPEG headers (with EXIF) need a little more.
    header = data[: 4096 if fmt == "JPEG" else 200]
    assert len(header) < len(data)
    info = sniff(header)
    assert (info.format, info.width, info.height) == (expected, 1203, 611)
    assert info.mime_type == f"image/{expected}"


def test_sniff_jpeg_with_large_metadata_fits_in_sniff_bytes():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 kB APP1 segment before SOF
    samples.photo(800, 600).save(buf, "JPEG", exif=exif.tobytes())
    info = sniff(buf.getvalue()[: imaging.SNIFF_BYTES])
    assert (info.width, info.height) == (800, 600)


BAD_HEADERS = [
    (b"", "The file is empty."),
    (b"Hello, this is a plain text file renamed to photo.jpg\n" * 20,
     "This file is not a JPEG, PNG or WebP image."),
    (samples.SVG, "This file is an SVG drawing; only JPEG, PNG or WebP images are accepted."),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "This file is not a JPEG, PNG or WebP image."),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
     "HEIC/AVIF images are not accepted; please upload a JPEG, PNG or WebP image."),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "The file looks like a JPEG image but its header is damaged."),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20,
     "The file looks like a WebP image but its header is damaged."),
]


@pytest.mark.parametrize("header,message", BAD_HEADERS)
def test_sniff_rejects_non_images_with_clear_message(header, message):
    with pytest.raises(ImageRejected) as err:
        sniff(header)
    assert err.value.reason == message
    assert str(err.value) == message


def test_sniff_rejects_decompression_bomb_before_decoding(tmp_path):
    bomb = samples.png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100  # tiny file, 2.5 gigapixels declared
    with pytest.raises(ImageRejected) as err:
        sniff(bomb.read_bytes())
    assert err.value.reason == "The image is 50000×50000 pixels; the limit is 50 megapixels."


def test_sniff_rejects_long_side_and_honours_parameters(tmp_path):
    long = samples.png_bomb(tmp_path / "long.png", 13_000, 100)
    with pytest.raises(ImageRejected, match=r"13000×100 pixels; the limit is 12,000 pixels"):
        sniff(long.read_bytes())
    assert sniff(long.read_bytes(), max_side=13_000).width == 13_000
    with pytest.raises(ImageRejected, match="the limit is 1 megapixels"):
        sniff(long.read_bytes(), max_side=13_000, max_pixels=1_000_000)


# -------------------------------------------------------------- make_derivatives
def test_exif_orientation_6_gives_portrait_display(tmp_path, out):
    src = jpeg(tmp_path, 200, 100, orientation=6)
    d = by_name(make_derivatives(src, out, "u1"))
    assert (d["display"].width, d["display"].height) == (100, 200)  # rotated, not upscaled
    with Image.open(out / d["display"].path) as im:
        assert im.size == (100, 200)
        # Orientation 6 = rotate 90° clockwise: the red left strip becomes the top rows.
        r, g, b = im.convert("RGB").getpixel((50, 10))
        assert r > 180 and g < 80 and b < 80, (r, g, b)
        r, g, b = im.convert("RGB").getpixel((50, 190))
        assert g > 100, (r, g, b)  # the original's right side: not the red strip
        assert not im.getexif()  # no Orientation left to rotate it twice


def test_gps_and_all_metadata_removed(tmp_path, out):
    src = jpeg(tmp_path, 640, 480, gps=True)
    with Image.open(src) as im:  # the input really has GPS
        assert im.getexif().get_ifd(samples.GPS_IFD)[samples.GPS_LATITUDE_REF] == "N"
    for d in make_derivatives(src, out, "u2"):
        raw = (out / d.path).read_bytes()
        assert b"Exif" not in raw and b"TestCam" not in raw and b"http://ns.adobe.com/xap" not in raw
        with Image.open(out / d.path) as im:
            assert not im.getexif()
            assert "exif" not in im.info and "icc_profile" not in im.info
            assert "xmp" not in im.info


def test_sizes_formats_and_no_upscaling(tmp_path, out):
    src = jpeg(tmp_path, 3000, 2000)
    d = by_name(make_derivatives(src, out, "u3"))
    assert [x.name for x in d.values()] == ["display", "display_webp", "avatar"]
    assert (d["display"].width, d["display"].height) == (1600, 1067)
    assert d["display"].path == "u3_display.jpg" and d["display_webp"].path == "u3_display.webp"
    assert (d["avatar"].width, d["avatar"].height) == (256, 256)
    expected = {"display": ("JPEG", (1600, 1067)), "display_webp": ("WEBP", (1600, 1067)),
                "avatar": ("JPEG", (256, 256))}
    for name, (fmt, size) in expected.items():
        path = out / d[name].path
        assert d[name].bytes == path.stat().st_size > 0
        with Image.open(path) as im:
            assert (im.format, im.size, im.mode) == (fmt, size, "RGB")
            if name == "display":
                assert im.info.get("progressive") == 1
    small = by_name(make_derivatives(jpeg(tmp_path, 800, 500, "small.jpg"), out, "u4"))
    assert (small["display"].width, small["display"].height) == (800, 500)
    assert (small["avatar"].width, small["avatar"].height) == (256, 256)


def test_png_with_alpha_and_16_bit_become_rgb(tmp_path, out):
    rgba = samples.photo(300, 200).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white, not black
    rgba.save(tmp_path / "a.png")
    d = by_name(make_derivatives(tmp_path / "a.png", out, "a"))
    with Image.open(out / d["display"].path) as im:
        assert im.mode == "RGB" and min(im.getpixel((150, 100))) > 245
    Image.linear_gradient("L").resize((400, 300)).convert("I;16").save(tmp_path / "g.png")
    d = by_name(make_derivatives(tmp_path / "g.png", out, "g"))
    with Image.open(out / d["display_webp"].path) as im:
        assert im.size == (400, 300) and im.mode == "RGB"


def _rgba16_half_red(path: Path) -> None:
    import pyvips

    red = (pyvips.Image.black(300, 200, bands=3) + [65535, 0, 0]).bandjoin(32768)
    red.cast("ushort").copy(interpretation="rgb16").pngsave(str(path), bitdepth=16)


@pytest.mark.parametrize("name,make,expected", [
    ("rgba16.png", _rgba16_half_red, (255, 128, 128)),    # 50 % red over white
    ("la.png", lambda p: Image.new("LA", (300, 200), (0, 0)).save(p), (255, 255, 255)),
    ("grey16.png", lambda p: Image.new("I;16", (300, 200), 40000).save(p), (156, 156, 156)),
    ("cmyk.jpg", lambda p: Image.new("CMYK", (300, 200), (255, 0, 0, 0)).save(p),
     (0, 158, 227)),                                        # cyan via a CMYK profile
])
def test_other_pixel_formats_become_8_bit_srgb(tmp_path, out, name, make, expected):
    make(tmp_path / name)
    d = by_name(make_derivatives(tmp_path / name, out, "m"))
    with Image.open(out / d["display"].path) as im:
        assert (im.mode, im.size) == ("RGB", (300, 200))
        pixel = im.getpixel((150, 100))
    assert all(abs(a - b) <= 6 for a, b in zip(pixel, expected)), pixel


def test_deterministic_and_atomic(tmp_path, out):
    src = jpeg(tmp_path, 1900, 1300, gps=True)
    first = make_derivatives(src, out, "same")
    before = {d.path: (out / d.path).read_bytes() for d in first}
    second = make_derivatives(src, out, "same")
    assert first == second
    assert {d.path: (out / d.path).read_bytes() for d in second} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temp files left


def test_bad_files_rejected_then_good_file_still_works(tmp_path, out):
    good = jpeg(tmp_path, 1000, 700)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("Dear admin, this is not a photo.\n" * 50)
    svg = tmp_path / "drawing.jpg"
    svg.write_bytes(samples.SVG)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cases = {
        samples.png_bomb(tmp_path / "bomb.png"):
            "The image is 50000×50000 pixels; the limit is 50 megapixels.",
        truncated: "The file is damaged or incomplete (truncated JPEG).",
        text: "This file is not a JPEG, PNG or WebP image.",
        svg: "This file is an SVG drawing; only JPEG, PNG or WebP images are accepted.",
        empty: "The file is empty.",
    }
    for path, message in cases.items():
        with pytest.raises(ImageRejected) as err:
            make_derivatives(path, out, "bad")
        assert err.value.reason == message, path.name
    assert list(out.iterdir()) == []
    d = by_name(make_derivatives(good, out, "good"))
    assert (d["display"].width, d["display"].height) == (1000, 700)


def test_limits_checked_on_full_file_too(tmp_path, out):
    with pytest.raises(ImageRejected, match="1000×700 pixels; the limit is 0.5 megapixels"):
        make_derivatives(jpeg(tmp_path, 1000, 700), out, "x", max_pixels=500_000)


def test_basename_must_be_plain(tmp_path, out):
    with pytest.raises(ValueError):
        make_derivatives(jpeg(tmp_path, 10, 10), out, "../evil")


# ------------------------------------------------------------------- real photos
@pytest.fixture(scope="module")
def photos() -> list[Path]:
    from bench.photos import PhotosUnavailable, ensure_photos

    try:
        return ensure_photos()
    except PhotosUnavailable as exc:
        pytest.skip(f"real photos unavailable (apt-get download failed): {exc}")


def test_real_photos(photos, out):
    import pyvips

    kleiber, cups = photos
    src_fields = pyvips.Image.new_from_file(str(cups)).get_fields()
    assert "exif-ifd3-GPSLatitude" in src_fields and "icc-profile-data" in src_fields
    expected = {kleiber: (1600, 900), cups: (1600, 1000)}
    for src, size in expected.items():
        d = by_name(make_derivatives(src, out, src.stem))
        assert (d["display"].width, d["display"].height) == size
        assert d["display"].bytes < 0.25 * src.stat().st_size  # four times smaller at least
        for item in d.values():
            fields = pyvips.Image.new_from_file(str(out / item.path)).get_fields()
            assert not [f for f in fields if f.startswith(("exif", "xmp", "icc", "iptc"))]


def test_identical_across_processes_and_thread_counts(tmp_path, out):
    """libvips threads must not change a byte: a retried task may run elsewhere."""
    import subprocess

    src = jpeg(tmp_path, 2100, 1400)
    mine = {d.path: (out / d.path).read_bytes() for d in make_derivatives(src, out, "p")}
    other = tmp_path / "other"
    other.mkdir()
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from webapp.imaging import make_derivatives;"
            "make_derivatives(sys.argv[2], sys.argv[3], 'p')")
    env = {"PATH": "/usr/bin:/bin", "VIPS_CONCURRENCY": "3"}
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(src), str(other)],
                   check=True, env=env, timeout=60)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == mine


# ------------------------------------------------------------- decode memory bound
_PEAK_RSS = """
import json, resource, sys, tempfile
sys.path.insert(0, sys.argv[1])
from webapp import imaging
try:
    with tempfile.TemporaryDirectory() as out:
        imaging.make_derivatives(sys.argv[2], out, "m")
    result = {"status": "done", "reason": None}
except imaging.ImageRejected as exc:
    result = {"status": "failed", "reason": exc.reason}
result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(result))
"""


def _process_in_child(src: Path) -> dict:
    """Run make_derivatives (default limits) in a fresh interpreter; its result and
    peak RSS in bytes (``getrusage(RUSAGE_SELF).ru_maxrss`` of the child)."""
    import json
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "VIPS_CONCURRENCY": "1"}
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(ROOT), str(src)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interlaced_16_bit_png_stays_within_the_decode_memory_bound(tmp_path):
    """A ~380 KB interlaced 16-bit RGBA 7000x7000 PNG declares 392 MB of pixels
    that libvips must hold at once (Adam7 cannot be streamed): the image task's
    peak memory stays within the documented bound, the baseline process (same
    interpreter, a small photo) plus ``MAX_DECODE_BYTES``."""
    bomb = samples.zero_png(tmp_path / "adam7.png", 7000, 7000, bit_depth=16, color_type=6)
    assert bomb.stat().st_size < 1_000_000
    baseline = _process_in_child(jpeg(tmp_path, 1200, 800))
    result = _process_in_child(bomb)
    print(f"baseline peak {baseline['peak_rss'] / 2**20:.0f} MiB, interlaced PNG peak "
          f"{result['peak_rss'] / 2**20:.0f} MiB, {result['status']}: {result['reason']}")
    assert baseline["status"] == "done"
    assert result["peak_rss"] <= baseline["peak_rss"] + imaging.MAX_DECODE_BYTES
    assert result["status"] == "failed"
    assert "interlaced" in result["reason"] and "392 MB" in result["reason"]


@pytest.mark.parametrize("interlace,depth,colour,expected", [
    (True, 16, 6, 7000 * 7000 * 4 * 2),   # Adam7 must be held whole, at 16 bits
    (True, 8, 2, 7000 * 7000 * 3),
    (True, 16, 0, 7000 * 7000 * 2),
    (False, 16, 6, 0),                    # streamed row by row
])
def test_png_decode_buffer_read_from_ihdr(tmp_path, interlace, depth, colour, expected):
    path = samples.zero_png(tmp_path / "p.png", 7000, 7000, bit_depth=depth,
                            color_type=colour, interlace=interlace)
    header = path.read_bytes()[: imaging.SNIFF_BYTES]
    assert imaging.decode_buffer_bytes("png", header, 7000, 7000) == expected
    if expected > imaging.MAX_DECODE_BYTES:
        with pytest.raises(ImageRejected, match="interlaced PNG would need"):
            sniff(header)
    else:
        assert sniff(header).width == 7000
    assert sniff(header, max_decode_bytes=expected).height == 7000


@pytest.mark.parametrize("subsampling,per_pixel", [(0, 3 * 2), (2, 1.5 * 2)])  # 4:4:4, 4:2:0
def test_progressive_jpeg_decode_buffer_from_sof(tmp_path, subsampling, per_pixel):
    """Progressive JPEGs keep every DCT coefficient (2 bytes) of every component;
    baseline ones stream. Sampling factors come from the SOF segment."""
    im = samples.photo(1600, 1200)
    prog, base = tmp_path / "prog.jpg", tmp_path / "base.jpg"
    im.save(prog, "JPEG", quality=80, progressive=True, subsampling=subsampling)
    im.save(base, "JPEG", quality=80, subsampling=subsampling)
    need = imaging.decode_buffer_bytes("jpeg", prog.read_bytes(), 1600, 1200)
    assert need == 1600 * 1200 * per_pixel
    assert imaging.decode_buffer_bytes("jpeg", base.read_bytes(), 1600, 1200) == 0
    with pytest.raises(ImageRejected, match="progressive JPEG would need .* baseline"):
        sniff(prog.read_bytes(), max_decode_bytes=need - 1)
    assert sniff(base.read_bytes(), max_decode_bytes=1).width == 1600
    # The worker's own check refuses the same file before decoding it.
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImageRejected, match="progressive JPEG"):
        make_derivatives(prog, out, "p", max_decode_bytes=need - 1)
    assert len(make_derivatives(prog, out, "p", max_decode_bytes=need)) == 3
