"""Test images made with Pillow (and one PNG header written by hand)."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw, ExifTags

GPS = {1: "N", 2: (52.0, 30.0, 1.5), 3: "E", 4: (13.0, 24.0, 0.0)}


def camera_jpeg(width: int = 640, height: int = 480, orientation: int = 6,
                gps: bool = True, noise: bool = False) -> bytes:
    """A JPEG as a phone saves it: pixels stored sideways with EXIF Orientation
    (6 = rotate 90° clockwise to display) and a GPS IFD.

    The stored image is blue with a red block in its top-left corner, so after
    rotation by 90° clockwise the red block is in the top-right corner.
    """
    if noise:
        img = Image.merge("RGB", [Image.effect_noise((width, height), 80 + 20 * i).convert("L")
                                  for i in range(3)])
    else:
        img = Image.new("RGB", (width, height), (30, 60, 200))
    ImageDraw.Draw(img).rectangle([0, 0, width // 4, height // 4], fill=(230, 20, 20))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    if gps:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(GPS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def png_bytes(width: int = 300, height: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 128, 0, 128)).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG (under 100 bytes) whose header declares ``width`` x ``height``
    pixels: the decompression-bomb shape (2.5 gigapixels, ~7.5 GB decoded)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    """A valid 1200x900 noisy JPEG cut after 55 % of its bytes: its header is fine,
    its pixel data ends early."""
    data = camera_jpeg(1200, 900, orientation=1, gps=False, noise=True)
    return data[: int(len(data) * 0.55)]


SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
       b'<script>alert(1)</script><rect width="100" height="100"/></svg>\n')

TEXT = b"This is not a photo, just some text that someone renamed to .jpg.\n" * 20
