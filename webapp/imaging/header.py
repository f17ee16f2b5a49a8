"""Header checks of an upload, before anything is stored or decoded: the format
by its magic bytes, the declared size, and the memory a decoder would need."""
from __future__ import annotations

import struct

import pyvips

from webapp.imaging.common import (MAX_DECODE_BYTES, MAX_PIXELS, MAX_SIDE, _FORMAT_NAMES,
                                   ImageFormat, ImageInfo, ImageRejected, configure_vips)

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
