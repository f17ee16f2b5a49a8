"""Pure image functions for Onboard: sniff an upload, then make its derivatives.

No Flask and no Celery here: the uploads blueprint calls :func:`sniff` on the first
bytes of a request, and the ``images`` Celery task calls :func:`make_derivatives` on
the stored original. Both raise :class:`ImageRejected` with a sentence a person can
read when the file is not acceptable; the task stores that sentence as the upload's
``error`` and does not retry. :class:`ImageProcessingError` is for our own failures
(disk full, libvips missing a saver), which a retry may fix.

Rules and where they come from:

* Allow-list JPEG, PNG and WebP, recognised by their magic bytes (JPEG: ITU T.81
  SOI marker ``FF D8 FF``; PNG: the 8-byte signature of RFC 2083; WebP: ``RIFF``
  ``WEBP`` container of RFC 9649). HEIC is refused: the libvips in ``pyvips-binary``
  8.18 ships libheif with the AV1 codec only; loading a real HEIC (made with
  Debian's ``heif-enc``) fails with "Support for this compression format has not
  been built in: HEVC (a suitable decoder plugin is libde265)". SVG and
  every other libvips loader are blocked for the whole process (see
  :func:`configure_vips`), so a mislabelled file never reaches them.
* Limits (50 megapixels, 12,000 px a side) are checked on the *declared* size in
  the header, before any pixel is decoded, and again on what libvips' loader reads
  from the whole file before :func:`make_derivatives` decodes it.
* Decode memory is bounded by what the header declares: an interlaced PNG (bit
  depth, colour type and interlace method from the IHDR chunk, RFC 2083 section
  4.1.1) or a progressive JPEG (component sampling from the SOF segment, ITU T.81
  B.2.2) must be held whole while decoding; one whose buffer would exceed
  :data:`MAX_DECODE_BYTES` is refused before any pixel is decoded.
* Derivatives are decoded once with libvips ``thumbnail`` (shrink-on-load: JPEG
  DCT scaling, WebP scaled decode), auto-rotated from EXIF ``Orientation``,
  converted to sRGB when an embedded ICC profile is not sRGB, flattened on white,
  and saved with ``keep="none"`` so no EXIF (GPS included), XMP, IPTC or ICC leaves
  the server. JPEG settings were chosen with ``bench/images.py``; the figures are
  in ``bench/IMAGES.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import pyvips

ImageFormat = Literal["jpeg", "png", "webp"]

#: How many leading bytes of an upload :func:`sniff` wants. 64 KiB holds the header
#: of almost every photo; 256 KiB also covers JPEGs whose EXIF + XMP + ICC segments
#: come before the frame header (each APPn segment may be up to 64 KiB).
SNIFF_BYTES = 256 * 1024

#: Default limits (pixels). 50 MP is above every phone camera sold today (the 48 and
#: 50 MP "quad-Bayer" sensors save 12 MP by default) and keeps one decode under about
#: 150 MB of RAM even without shrink-on-load.
MAX_PIXELS = 50_000_000
MAX_SIDE = 12_000

#: Default bound (bytes) on the pixel or coefficient buffer a decoder must hold at
#: once, computed from the header by :func:`decode_buffer_bytes`: 50 MP of 8-bit RGB,
#: the "150 MB for 50 MP" above. Most files stream (a baseline JPEG or a
#: non-interlaced PNG is decoded a few rows at a time with shrink-on-load) and need
#: no buffer; an Adam7-interlaced PNG and a progressive (multi-scan) JPEG do, and
#: libvips can't shrink them on load. Measured with tests/test_imaging.py: a ~380 KB
#: interlaced 16-bit RGBA 7000x7000 PNG (392 MB buffer) took the process to 478 MiB
#: peak RSS against 85 MiB for a small photo; a 147 MB buffer to 236 MiB.
MAX_DECODE_BYTES = 150_000_000

#: Derivative sizes (pixels).
DISPLAY_SIZE = 1600
AVATAR_SIZE = 256

#: Display JPEG settings, picked with bench/images.py (see bench/IMAGES.md): mozjpeg's
#: ImageMagick quant table (``quant_table=3``), Huffman optimisation and progressive
#: scans give 0.82-0.84x the bytes of libjpeg-turbo q85 at equal SSIM (within
#: 0.001) for about +10 ms. ``trellis_quant``, ``overshoot_deringing`` and
#: ``optimize_scans`` (at Q86 for equal SSIM) save only another 1-3.5 % but cost
#: 80-100 ms CPU per 1600 px image, against a budget of the whole pipeline within
#: 1.5x of a plain libvips thumbnail, so they are off by default; pass
#: ``jpeg_options`` to turn them on.
DISPLAY_JPEG_QUALITY = 84
DISPLAY_JPEG_OPTIONS: dict[str, object] = {
    "optimize_coding": True,
    "interlace": True,  # progressive: a blurry whole picture first on slow links
    "quant_table": 3,
}
AVATAR_JPEG_QUALITY = 85
#: WebP at effort 0 (libwebp "method 0") costs ~30 ms for a 1600 px image; effort 4
#: (the default) saves ~20 % more bytes but takes ~130 ms, again over the budget.
DISPLAY_WEBP_QUALITY = 80
DISPLAY_WEBP_EFFORT = 0

_WHITE = [255, 255, 255]
_FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}
_ALLOWED_LOADERS = ("VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp")


class ImageRejected(ValueError):
    """The upload is not an image we accept; ``reason`` is a sentence for the user.

    Permanent: retrying the same file gives the same answer.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageProcessingError(RuntimeError):
    """Our side failed (writing a file, a libvips saver missing); may be retried."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`sniff` learnt from an upload's header.

    ``width`` and ``height`` are the stored pixel dimensions (before EXIF rotation).
    """

    format: ImageFormat
    width: int
    height: int

    @property
    def mime_type(self) -> str:
        """The MIME type to store and serve, e.g. ``image/jpeg``."""
        return f"image/{self.format}"

    @property
    def pixels(self) -> int:
        """``width * height``."""
        return self.width * self.height


@dataclass(frozen=True)
class Derivative:
    """One file written by :func:`make_derivatives`.

    ``path`` is the file name relative to ``out_dir`` (e.g. ``"42_display.jpg"``),
    ``width``/``height`` are pixels after rotation, ``bytes`` is the file size and
    ``format`` is ``"jpeg"`` or ``"webp"``.
    """

    name: str
    path: str
    width: int
    height: int
    bytes: int
    format: str


_configured = False


def configure_vips() -> None:
    """Make libvips safe for untrusted input; idempotent, called by the functions here.

    Blocks every operation libvips marks untrusted (``block_untrusted_set``), then
    every loader except JPEG, PNG and WebP (``operation_block_set``, the pattern from
    the libvips docs), so SVG, PDF, TIFF, matrix and raw loaders cannot run in this
    process even if a file fools our magic-byte check. This is process-wide state,
    which is what a dedicated image worker wants.
    """
    global _configured
    if _configured:
        return
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for name in _ALLOWED_LOADERS:
        pyvips.operation_block_set(name, False)
    _configured = True


def detect_format(header: bytes) -> ImageFormat | None:
    """Return the allow-listed format named by ``header``'s magic bytes, else None.

    ``header``: the first bytes of the file (12 are enough).
    """
    if header[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if header[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "webp"
    return None


def _looks_like_svg(header: bytes) -> bool:
    head = header[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<?xml") or head.startswith(b"<svg") or b"<svg" in head


def _not_an_image(header: bytes) -> ImageRejected:
    if not header:
        return ImageRejected("The file is empty.")
    if _looks_like_svg(header):
        return ImageRejected(
            "This file is an SVG drawing; only JPEG, PNG or WebP images are accepted."
        )
    if header[4:8] == b"ftyp":
        return ImageRejected(
            "HEIC/AVIF images are not accepted; please upload a JPEG, PNG or WebP image."
        )
    return ImageRejected("This file is not a JPEG, PNG or WebP image.")


def _webp_size(header: bytes) -> tuple[int, int]:
    """Canvas size from a WebP header (RFC 9649, sections 2.5-2.7)."""
    chunk = header[12:16]
    if chunk == b"VP8X" and len(header) >= 30:
        # 24-bit little-endian "canvas width/height minus one" at offsets 24 and 27.
        w = int.from_bytes(header[24:27], "little") + 1
        h = int.from_bytes(header[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 " and len(header) >= 30 and header[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", header[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(header) >= 25 and header[20] == 0x2F:
        bits = int.from_bytes(header[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ImageRejected("The file looks like a WebP image but its header is damaged.")


def check_limits(width: int, height: int, *, max_pixels: int = MAX_PIXELS,
                 max_side: int = MAX_SIDE) -> None:
    """Raise :class:`ImageRejected` if ``width`` x ``height`` (pixels) is too large.

    ``max_pixels`` is the limit on ``width * height``; ``max_side`` on either side.
    """
    if width <= 0 or height <= 0:
        raise ImageRejected(f"The image declares an impossible size ({width}×{height}).")
    if width * height > max_pixels:
        raise ImageRejected(
            f"The image is {width}×{height} pixels; the limit is "
            f"{max_pixels / 1_000_000:g} megapixels."
        )
    if max(width, height) > max_side:
        raise ImageRejected(
            f"The image is {width}×{height} pixels; the limit is {max_side:,} pixels "
            "on the longest side."
        )


#: Samples per pixel after decoding, by PNG colour type (RFC 2083 section 4.1.1);
#: a palette (3) is expanded to RGBA in the worst case (with a tRNS chunk).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}
#: JPEG start-of-frame markers (ITU T.81 table B.1): all SOFn but DHT, JPG, DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def _png_buffer_bytes(header: bytes) -> int:
    """Bytes libvips holds at once to decode a PNG: the whole image when Adam7-interlaced
    (libspng cannot stream the passes), else 0 (decoded row by row)."""
    if len(header) < 29 or header[12:16] != b"IHDR":
        raise ImageRejected("The file looks like a PNG image but its header is damaged.")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[16:29])
    if not interlace:
        return 0
    # Bit depths below 8 are unpacked to 8-bit samples, 16 stays 16.
    return width * height * _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1)


def _jpeg_frame(header: bytes) -> tuple[int, list[tuple[int, int]]] | None:
    """``(SOF marker, [(h, v) sampling factor per component])`` from a JPEG's start-of-frame
    segment (ITU T.81 B.2.2), or None when it is not within ``header``."""
    pos = 2
    while pos + 4 <= len(header):
        if header[pos] != 0xFF:
            return None
        marker = header[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(header[pos + 2:pos + 4], "big")
        if marker in _JPEG_SOF:
            seg = header[pos + 4:pos + 2 + length]
            count = seg[5] if len(seg) > 5 else 0
            comps = [(b >> 4, b & 0x0F) for b in seg[7:6 + 3 * count:3]]
            return (marker, comps) if len(comps) == count and count else None
        pos += 2 + length
    return None


def _jpeg_buffer_bytes(header: bytes, width: int, height: int, multiscan: bool) -> int:
    """Bytes libjpeg holds at once to decode a JPEG: for a progressive or multi-scan
    file, every DCT coefficient of every component (2 bytes each, 64 per 8x8 block,
    padded to whole MCUs), whatever the shrink-on-load factor; else 0 (streamed)."""
    frame = _jpeg_frame(header)
    if frame is None or not (multiscan or frame[0] in _JPEG_PROGRESSIVE_SOF):
        return 0
    comps = frame[1]
    h_max = max(h for h, _ in comps) or 1
    v_max = max(v for _, v in comps) or 1
    mcu_cols, mcu_rows = -(-width // (8 * h_max)), -(-height // (8 * v_max))
    return sum(mcu_cols * h * mcu_rows * v * 64 * 2 for h, v in comps)


def decode_buffer_bytes(fmt: ImageFormat, header: bytes, width: int, height: int, *,
                        multiscan: bool = False) -> int:
    """Bytes of pixels or DCT coefficients a decoder must hold at once for this file.

    Args:
        fmt: the sniffed format.
        header: the file's first bytes (:data:`SNIFF_BYTES`), holding the PNG IHDR
            or the JPEG start-of-frame segment.
        width, height: the declared size, pixels.
        multiscan: libvips' ``jpeg-multiscan`` (a JPEG whose scans each carry some
            components must be buffered even when not progressive).

    Returns:
        0 for what libvips decodes row by row with shrink-on-load (baseline JPEG,
        non-interlaced PNG, WebP's scaled decode); else the buffer size in bytes,
        e.g. ``7000 * 7000 * 4 * 2`` = 392,000,000 for an interlaced 16-bit RGBA PNG.
        Measured on libvips 8.18 (tests/test_imaging.py): peak RSS grows by about
        this much over a small photo's.

    Raises:
        ImageRejected: a PNG without a readable IHDR.
    """
    if fmt == "png":
        return _png_buffer_bytes(header)
    if fmt == "jpeg":
        return _jpeg_buffer_bytes(header, width, height, multiscan)
    return 0


def check_decode_memory(fmt: ImageFormat, needed: int, *,
                        max_decode_bytes: int = MAX_DECODE_BYTES) -> None:
    """Raise :class:`ImageRejected` when ``needed`` (from :func:`decode_buffer_bytes`,
    bytes) exceeds ``max_decode_bytes``, telling the user how to save the file instead."""
    if needed <= max_decode_bytes:
        return
    kind, fix = (("interlaced PNG", "without interlacing") if fmt == "png"
                 else ("progressive JPEG", "as a baseline (non-progressive) JPEG"))
    raise ImageRejected(
        f"This {kind} would need {needed / 1e6:,.0f} MB of memory to decode; the limit is "
        f"{max_decode_bytes / 1e6:,.0f} MB. Save it {fix}, or smaller, and upload it again."
    )


def sniff(header: bytes, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
          max_decode_bytes: int = MAX_DECODE_BYTES) -> ImageInfo:
    """Identify an upload from its first bytes, without decoding any pixel.

    ``header``: the first :data:`SNIFF_BYTES` (or fewer, if the file is shorter)
    bytes of the upload. ``max_pixels``/``max_side``: limits in pixels;
    ``max_decode_bytes``: limit on :func:`decode_buffer_bytes`, bytes.

    The format comes from magic bytes (never from the file name or the browser's
    Content-Type). Width and height come from libvips' JPEG/PNG header readers,
    which are lazy and read no pixel data, and for WebP from the RIFF chunk header
    (libvips and Pillow both need the whole WebP file to read its header).
    Returns :class:`ImageInfo`; raises :class:`ImageRejected` for an empty file, a
    non-image (text, HTML, SVG, PDF, HEIC...), a damaged header, a declared size
    over the limits, or an interlaced PNG / progressive JPEG whose decode buffer
    would exceed ``max_decode_bytes``.
    """
    configure_vips()
    fmt = detect_format(header)
    if fmt is None:
        raise _not_an_image(header)
    multiscan = False
    if fmt == "webp":
        width, height = _webp_size(header)
    else:
        loader = pyvips.Image.jpegload_buffer if fmt == "jpeg" else pyvips.Image.pngload_buffer
        try:
            image = loader(header)
            width, height = image.width, image.height
            multiscan = bool(fmt == "jpeg" and image.get_typeof("jpeg-multiscan")
                             and image.get("jpeg-multiscan"))
        except pyvips.Error:
            name = _FORMAT_NAMES[fmt]
            raise ImageRejected(
                f"The file looks like a {name} image but its header is damaged."
            ) from None
    check_limits(width, height, max_pixels=max_pixels, max_side=max_side)
    check_decode_memory(fmt, decode_buffer_bytes(fmt, header, width, height,
                                                 multiscan=multiscan),
                        max_decode_bytes=max_decode_bytes)
    return ImageInfo(format=fmt, width=width, height=height)


def _is_srgb(icc: bytes) -> bool:
    """True if an ICC profile's description names sRGB (the rule imgproxy/sharp use)."""
    from PIL import ImageCms  # Pillow's bundled LittleCMS reads the profile tags

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile
    except (OSError, ImageCms.PyCMSError):
        return False
    return "srgb" in (profile.profile_description or "").lower()


def _decode_error(fmt: ImageFormat, error: pyvips.Error) -> ImageRejected:
    message = f"{error.message} {error.detail}".lower()
    name = _FORMAT_NAMES[fmt]
    if any(s in message for s in ("truncat", "premature end", "out of data",
                                  "unexpected end", "not enough data", "read error")):
        return ImageRejected(f"The file is damaged or incomplete (truncated {name}).")
    return ImageRejected(f"The file is damaged and cannot be read as a {name} image.")


def _save_atomically(out_dir: Path, filename: str, save: Callable[[str], object]) -> int:
    """Write with ``save(tmp_path)`` then rename over ``out_dir/filename``; return bytes.

    Readers never see a half-written file, and a retried task overwrites cleanly.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the media server must read it
        os.replace(tmp, out_dir / filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return (out_dir / filename).stat().st_size


def _decode(src: Path, size: int, max_pixels: int, max_side: int) -> pyvips.Image:
    """Decode ``src`` once, shrunk to fit ``size`` x ``size``, upright, 8-bit sRGB."""
    source = pyvips.Source.new_from_file(str(src))  # no "[options]" parsing of the path
    header = pyvips.Image.new_from_source(source, "", access="sequential",
                                          fail_on="truncated")
    # The loader has now read the real header of the whole file: check its size
    # again (a WebP canvas or an APNG could disagree with what the first bytes said).
    check_limits(header.width, header.height, max_pixels=max_pixels, max_side=max_side)
    options: dict[str, object] = {}
    if "icc-profile-data" in header.get_fields() and not _is_srgb(
        header.get("icc-profile-data")
    ):
        # Converted after shrinking, by thumbnail itself; skipped for sRGB profiles,
        # where LittleCMS would spend ~12 ms per image for an identity transform.
        options["output_profile"] = "srgb"
    # fail_on must go in option_string: thumbnail_source ignores a fail_on keyword
    # (libvips 8.18; measured: a truncated JPEG then decodes as grey with no error).
    image = pyvips.Image.thumbnail_source(
        source, size, height=size, size="down", option_string="fail_on=truncated",
        **options,
    )
    if image.hasalpha():
        image = image.flatten(background=_WHITE)
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")  # grey, 16-bit PNG, CMYK leftovers -> sRGB
    if image.bands > 3:
        image = image.extract_band(0, n=3)
    # Decode now, once; all derivatives are cut from this memory image.
    image = image.cast("uchar").copy_memory()
    release_free_memory()
    return image


_malloc_trim = None


def release_free_memory() -> None:
    """Return freed heap pages to the OS with glibc ``malloc_trim(0)``; no-op elsewhere.

    Why: libvips decodes in worker threads, whose glibc malloc arenas keep the
    freed decode buffers, so the encoders (other threads, other arenas) would stack
    their memory on top. Trimming after the decode lowered peak RSS of the whole
    pipeline on the 20 MP photo from 88 MiB to 72 MiB (bench/IMAGES.md), and keeps
    a long-lived image worker small between tasks. Costs well under 1 ms.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (musl, macOS)
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def make_derivatives(
    src_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    basename: str,
    *,
    display_size: int = DISPLAY_SIZE,
    avatar_size: int = AVATAR_SIZE,
    jpeg_quality: int = DISPLAY_JPEG_QUALITY,
    jpeg_options: dict[str, object] | None = None,
    webp_quality: int = DISPLAY_WEBP_QUALITY,
    webp_effort: int = DISPLAY_WEBP_EFFORT,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
    max_decode_bytes: int = MAX_DECODE_BYTES,
    timings: dict[str, float] | None = None,
) -> list[Derivative]:
    """Decode the original once and write its derivatives into ``out_dir``.

    Arguments: ``src_path`` the stored original; ``out_dir`` an existing directory;
    ``basename`` a plain file-name stem (no ``/``), e.g. the upload id;
    ``display_size`` and ``avatar_size`` in pixels; ``jpeg_quality``/``webp_quality``
    libvips ``Q`` (1-100); ``jpeg_options`` extra ``jpegsave`` keywords replacing
    :data:`DISPLAY_JPEG_OPTIONS`; ``webp_effort`` 0-6; limits in pixels, and
    ``max_decode_bytes`` on the decode buffer in bytes (see :func:`sniff`);
    ``timings``, if given, is filled with milliseconds (process CPU time) per stage:
    ``decode``, ``display``, ``display_webp``, ``avatar`` (for logs and the bench).

    Writes and returns, in this order:

    * ``display``: ``<basename>_display.jpg``, long edge at most ``display_size``
      (never upscaled), progressive optimised JPEG (mozjpeg settings, see module);
    * ``display_webp``: ``<basename>_display.webp``, same pixels as WebP;
    * ``avatar``: ``<basename>_avatar.jpg``, exactly ``avatar_size`` square, centre
      crop (small originals are upscaled so the avatar is always that size).

    AVIF is not made: libheif's AV1 encoder in pyvips-binary took 83 ms CPU (369 ms
    wall) at effort 0 and 334 ms CPU at effort 2 for a 1600x1000 image with
    ``VIPS_CONCURRENCY=1``, more than decode + JPEG + WebP together; WebP already
    gives browsers a file about 0.55x the display JPEG.

    The same input and arguments always give byte-identical files (each is written
    to a temporary file and renamed with ``os.replace``), so a retried task is
    harmless. Raises :class:`ImageRejected` (not an accepted image, too large,
    damaged or truncated) or :class:`ImageProcessingError` (writing failed).
    """
    configure_vips()
    if not basename or "/" in basename or os.sep in basename or basename.startswith("."):
        raise ValueError(f"basename must be a plain file-name stem, not {basename!r}")
    src = Path(src_path)
    out = Path(out_dir)
    with open(src, "rb") as fh:
        info = sniff(fh.read(SNIFF_BYTES), max_pixels=max_pixels, max_side=max_side,
                     max_decode_bytes=max_decode_bytes)
    clock = time.process_time()
    try:
        image = _decode(src, display_size, max_pixels, max_side)
    except pyvips.Error as error:
        raise _decode_error(info.format, error) from None
    if timings is not None:
        timings["decode"] = (time.process_time() - clock) * 1000

    jpeg_kwargs = dict(DISPLAY_JPEG_OPTIONS if jpeg_options is None else jpeg_options)
    # Centre square first, then shrink: cheaper than thumbnail_image(crop=...) on
    # the whole display image (measured 4.1 vs 5.3 ms).
    side = min(image.width, image.height)
    avatar = image.crop((image.width - side) // 2, (image.height - side) // 2, side, side)
    avatar = avatar.thumbnail_image(avatar_size, height=avatar_size, size="both")
    plan = [
        ("display", "jpg", "jpeg", image,
         lambda im, p: im.jpegsave(p, Q=jpeg_quality, keep="none", **jpeg_kwargs)),
        ("display_webp", "webp", "webp", image,
         lambda im, p: im.webpsave(p, Q=webp_quality, effort=webp_effort, keep="none")),
        ("avatar", "jpg", "jpeg", avatar,
         lambda im, p: im.jpegsave(p, Q=AVATAR_JPEG_QUALITY, keep="none",
                                   optimize_coding=True, quant_table=3)),
    ]
    derivatives: list[Derivative] = []
    for name, ext, fmt, im, save in plan:
        filename = f"{basename}_{name.removesuffix('_webp')}.{ext}"
        clock = time.process_time()
        try:
            size = _save_atomically(out, filename, lambda p, im=im, save=save: save(im, p))
        except (OSError, pyvips.Error) as error:
            raise ImageProcessingError(f"could not write {filename}: {error}") from error
        if timings is not None:
            timings[name] = (time.process_time() - clock) * 1000
        derivatives.append(Derivative(name=name, path=filename, width=im.width,
                                      height=im.height, bytes=size, format=fmt))
    del image, avatar, plan
    release_free_memory()  # leave the worker process small between tasks
    return derivatives
