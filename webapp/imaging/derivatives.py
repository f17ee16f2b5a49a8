"""Derivatives of a stored original: one shrink-on-load decode, auto-rotation,
sRGB, metadata stripped, each file written atomically."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import pyvips

from webapp.imaging.common import (AVATAR_JPEG_QUALITY, AVATAR_SIZE, DISPLAY_JPEG_OPTIONS,
                                   DISPLAY_JPEG_QUALITY, DISPLAY_SIZE, DISPLAY_WEBP_EFFORT,
                                   DISPLAY_WEBP_QUALITY, MAX_DECODE_BYTES, MAX_PIXELS, MAX_SIDE,
                                   SNIFF_BYTES, _FORMAT_NAMES, _WHITE, Derivative, ImageFormat,
                                   ImageProcessingError, ImageRejected, configure_vips)
from webapp.imaging.header import check_limits, sniff

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
