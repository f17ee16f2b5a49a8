"""Real photos for the image benchmark and tests, taken from Debian packages.

``ensure_photos()`` downloads two wallpaper packages with ``apt-get download`` into
``bench/.cache/`` (gitignored), unpacks them with ``dpkg-deb -x`` and returns the
photo paths. Nothing is fetched twice. Both photos are real camera JPEGs:

* ``Kleiber_by_Lukas_Baubkus.jpg`` (lomiri-wallpapers-20.04): 6028x3391, 20.4 MP,
  so it already is the "20 MP" case and no upscaled photo has to be made;
* ``ColorfulCups/contents/images/2560x1600.jpg`` (plasma-workspace-wallpapers):
  2560x1600 with Sony EXIF, GPS position and an embedded ICC profile.

``phone_photo()`` derives a third, 12 MP 4:3 JPEG (4032x3024, the size most phone
cameras save) from the Kleiber photo: centre crop to 4:3, Lanczos downscale,
quality 92. It is made once and cached.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"

#: package -> path of the photo inside the package
PHOTOS: dict[str, str] = {
    "lomiri-wallpapers-20.04": "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
    "plasma-workspace-wallpapers":
        "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
}


class PhotosUnavailable(RuntimeError):
    """apt-get or dpkg-deb could not provide the photos (no tools, no network)."""


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def _download(package: str) -> Path:
    debs = sorted(CACHE.glob(f"{package}_*.deb"))
    if debs:
        return debs[-1]
    if not shutil.which("apt-get"):
        raise PhotosUnavailable("apt-get is not available on this machine")
    result = _run(["apt-get", "download", package], CACHE)
    if result.returncode != 0:
        # The package lists may be missing or stale on a fresh machine.
        _run(["apt-get", "update", "-qq"], CACHE)
        result = _run(["apt-get", "download", package], CACHE)
    debs = sorted(CACHE.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise PhotosUnavailable(f"apt-get download {package} failed: {result.stderr.strip()}")
    return debs[-1]


def ensure_photos() -> list[Path]:
    """Return the paths of the real photos, fetching them on first use.

    Order: the 20 MP Kleiber photo, then the 4 MP ColorfulCups photo.
    Raises :class:`PhotosUnavailable` when they cannot be fetched.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / "root"
    paths = []
    for package, inner in PHOTOS.items():
        path = root / inner
        if not path.exists():
            deb = _download(package)
            if not shutil.which("dpkg-deb"):
                raise PhotosUnavailable("dpkg-deb is not available on this machine")
            result = _run(["dpkg-deb", "-x", str(deb), str(root)], CACHE)
            if result.returncode != 0 or not path.exists():
                raise PhotosUnavailable(f"dpkg-deb -x {deb.name} failed: {result.stderr}")
        paths.append(path)
    return paths


def phone_photo(source: Path) -> Path:
    """Return a cached 4032x3024 (12.2 MP) JPEG made from ``source`` (see module doc)."""
    import pyvips

    path = CACHE / "phone_12mp_4032x3024.jpg"
    if not path.exists():
        image = pyvips.Image.new_from_file(str(source))
        width = image.height * 4 // 3
        image = image.crop((image.width - width) // 2, 0, width, image.height)
        image = image.resize(4032 / width, kernel="lanczos3")
        tmp = path.with_suffix(".tmp.jpg")
        image.jpegsave(str(tmp), Q=92, keep="none")
        tmp.replace(path)
    return path


if __name__ == "__main__":
    for p in ensure_photos():
        print(p)
