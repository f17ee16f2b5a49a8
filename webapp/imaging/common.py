"""Shared parts of :mod:`webapp.imaging`: the accepted formats, the limits, the
derivative settings (chosen with ``bench/images.py``, figures in
``bench/IMAGES.md``), the two exceptions, the result types, and libvips'
hardening for untrusted input."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
