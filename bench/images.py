"""Benchmark Onboard's image pipeline against simpler ways of making a display JPEG.

Run ``python bench/images.py`` (full: two real photos, 7 timed runs each, about a
minute on 2 cores) or ``python bench/images.py --quick`` (one small synthetic
image, one run, a few seconds: a smoke test).

Each approach runs in its own subprocess with ``VIPS_CONCURRENCY=1`` and the
libvips operation cache off, so figures are for one core and peak RSS is that
process's own (the child reports its VmHWM, see ``_peak_rss_kib``). Times are the
median over runs after one warm-up run, both wall clock and process CPU time; the
targets are judged on CPU time, which other jobs on a shared machine disturb less.

Quality is SSIM (scikit-image ``structural_similarity``, RGB, data range 255) of
each display image against a reference made by Pillow: full decode, EXIF
transpose, Lanczos resize to the same size. "turbo q85" is the same pixels as
ours encoded by Pillow's libjpeg-turbo at quality 85 (the byte baseline).
SSIMULACRA2 is not measured: no maintained tool for it is installed.

Approaches:

* ``pillow_naive``: ``Image.open`` -> ``resize(LANCZOS)`` -> ``save(quality=85)``;
* ``pillow_draft``: the same with ``draft()`` (JPEG DCT scaling) and ``reducing_gap``;
* ``vips_thumb``: libvips ``thumbnail`` -> ``jpegsave(Q=85)``, display JPEG only (the
  time and memory baseline);
* ``ours``: ``webapp.imaging.make_derivatives`` (display JPEG + WebP + avatar);
* ``ours_trellis``: the same with mozjpeg's trellis quantisation, overshoot
  deringing and scan optimisation on, at Q86 (not the default; shown for the
  trade-off, not judged against the targets).

Images (full run): the 20 MP and 4 MP photos from Debian packages and a 12 MP
phone-sized JPEG made from the first (``bench/photos.py``). The 20 MP photo is a
real camera file, so no upscaled "20 MP" image is needed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISPLAY = 1600
APPROACHES = ("pillow_naive", "pillow_draft", "vips_thumb", "ours", "ours_trellis")
#: mozjpeg's slow options, for the ours_trellis row (quality picked for equal SSIM).
TRELLIS = {"quality": 86, "options": {"optimize_coding": True, "interlace": True,
                                      "quant_table": 3, "trellis_quant": True,
                                      "overshoot_deringing": True, "optimize_scans": True}}
HEADER = ("| image | approach | wall ms | CPU ms | × base | peak RSS MB | × base "
          "| display bytes | × turbo q85 | SSIM | webp bytes | webp SSIM |")


# --------------------------------------------------------------------------- worker
STAGES: dict[int, dict[str, float]] = {}  # ours: CPU ms per stage, per run


def _run_once(approach: str, src: str, out: Path) -> dict[str, int]:
    """One conversion; returns output sizes in bytes. Runs inside the child."""
    if approach.startswith("pillow"):
        from PIL import Image  # imported once by worker() before timing

        with Image.open(src) as im:
            scale = DISPLAY / max(im.size)
            size = (round(im.width * scale), round(im.height * scale)) if scale < 1 else im.size
            if approach == "pillow_draft":
                im.draft("RGB", size)  # DCT scaling: decode at 1/2, 1/4 or 1/8
                small = im.convert("RGB").resize(size, Image.LANCZOS, reducing_gap=3.0)
            else:
                small = im.convert("RGB").resize(size, Image.LANCZOS)
        small.save(out / "display.jpg", quality=85)
        return {"display": (out / "display.jpg").stat().st_size}
    if approach == "vips_thumb":
        import pyvips

        thumb = pyvips.Image.thumbnail(src, DISPLAY, height=DISPLAY, size="down")
        thumb.jpegsave(str(out / "display.jpg"), Q=85, keep="none")
        return {"display": (out / "display.jpg").stat().st_size}
    if approach.startswith("ours"):
        from webapp.imaging import make_derivatives

        if approach == "ours_trellis":
            derivs = make_derivatives(src, out, "img", jpeg_quality=TRELLIS["quality"],
                                      jpeg_options=TRELLIS["options"])
        else:
            derivs = make_derivatives(src, out, "img", timings=STAGES.setdefault(len(STAGES), {}))
        for d in derivs:  # stable names for the parent
            os.replace(out / d.path, out / f"{d.name}.{'webp' if d.format == 'webp' else 'jpg'}")
        return {d.name: d.bytes for d in derivs}
    raise SystemExit(f"unknown approach {approach}")


def worker(approach: str, src: str, out: str, runs: int, warmup: int) -> None:
    """Child process entry: time ``runs`` conversions and print one JSON line."""
    sys.path.insert(0, str(ROOT))
    # Import before timing, so the first (or only) run is not charged for it.
    if approach.startswith("pillow"):
        import PIL.Image  # noqa: F401
    else:
        import pyvips

        pyvips.cache_set_max(0)  # no cached decodes between runs
        if approach.startswith("ours"):
            import webapp.imaging  # noqa: F401
    out_dir = Path(out)
    wall, cpu = [], []
    for i in range(warmup + runs):
        w0, c0 = time.perf_counter(), time.process_time()
        sizes = _run_once(approach, src, out_dir)
        if i >= warmup:
            wall.append((time.perf_counter() - w0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    stages = {}
    if STAGES:
        runs_stages = list(STAGES.values())[warmup:]
        stages = {k: statistics.median(r[k] for r in runs_stages) for k in runs_stages[0]}
    print(json.dumps({"wall": statistics.median(wall), "cpu": statistics.median(cpu),
                      "sizes": sizes, "rss_kib": _peak_rss_kib(), "stages": stages}))


def _peak_rss_kib() -> int:
    """This process's peak RSS (KiB) since exec: VmHWM from /proc/self/status.

    Not ``ru_maxrss`` from ``wait4``: Linux carries the parent's pre-exec high-water
    mark into the child's ``ru_maxrss``, so a big parent would inflate every child.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


# --------------------------------------------------------------------------- parent
def run_approach(approach: str, src: Path, out: Path, runs: int, warmup: int) -> dict:
    """Start a child for one approach; return its timings plus peak RSS (MiB)."""
    env = dict(os.environ, VIPS_CONCURRENCY="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", approach, str(src), str(out),
         str(runs), str(warmup)],
        capture_output=True, env=env, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{approach} on {src.name} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rss_mb"] = result["rss_kib"] / 1024
    return result


def _rgb_array(path_or_bytes):
    import numpy as np
    from PIL import Image

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


class Reference:
    """Lanczos references of one photo, by size, for SSIM."""

    def __init__(self, src: Path) -> None:
        from PIL import Image, ImageOps

        with Image.open(src) as im:
            self.full = ImageOps.exif_transpose(im).convert("RGB")
        self.cache: dict[tuple[int, int], object] = {}

    def ssim(self, candidate) -> float:
        import numpy as np
        from PIL import Image
        from skimage.metrics import structural_similarity

        size = (candidate.shape[1], candidate.shape[0])
        if size not in self.cache:
            self.cache[size] = np.asarray(self.full.resize(size, Image.LANCZOS))
        return float(structural_similarity(self.cache[size], candidate, channel_axis=2,
                                           data_range=255))


def turbo_q85(src: Path) -> bytes:
    """Our decoded display pixels encoded by Pillow's libjpeg-turbo at quality 85."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from webapp.imaging.derivatives import _decode

    image = _decode(src, DISPLAY, 10**9, 10**6)
    pil = Image.frombytes("RGB", (image.width, image.height), image.write_to_memory())
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def quick_image(directory: Path) -> Path:
    """A small photo-like JPEG (gradient + noise + shapes) for --quick."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = 900, 600
    base = Image.merge("RGB", [Image.linear_gradient("L").resize((w, h)),
                               Image.effect_noise((w, h), 40).filter(ImageFilter.GaussianBlur(1)),
                               Image.linear_gradient("L").rotate(90).resize((w, h))])
    draw = ImageDraw.Draw(base)
    for i in range(12):
        draw.ellipse((i * 70, 40 + i * 30, i * 70 + 120, 160 + i * 30),
                     fill=(40 * i % 255, 255 - 20 * i, 90))
    path = directory / "quick.jpg"
    base.save(path, quality=95)
    return path


def machine_info() -> str:
    import pyvips

    sys.path.insert(0, str(ROOT))
    from bench.machine import cpu_model

    cpu = cpu_model()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, "
            f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, "
            f"load average {load}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per approach")
    args = parser.parse_args()

    runs = args.runs or (1 if args.quick else 7)
    warmup = 0 if args.quick else 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    if args.quick:
        images = [quick_image(tmp)]
    else:
        sys.path.insert(0, str(ROOT))
        from bench.photos import ensure_photos, phone_photo

        images = ensure_photos()
        images.insert(1, phone_photo(images[0]))

    print(f"# Image pipeline benchmark ({'quick' if args.quick else 'full'}, "
          f"{runs} run(s) after {warmup} warm-up, VIPS_CONCURRENCY=1)")
    print(machine_info())
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    checks: list[str] = []
    all_ok = True
    for src in images:
        ref = Reference(src)
        res = {}
        for approach in APPROACHES:
            out = tmp / f"{src.stem}-{approach}"
            out.mkdir()
            res[approach] = run_approach(approach, src, out, runs, warmup)
            res[approach]["ssim"] = ref.ssim(_rgb_array(out / "display.jpg"))
            if approach.startswith("ours"):
                res[approach]["webp_ssim"] = ref.ssim(_rgb_array(out / "display_webp.webp"))
        turbo = turbo_q85(src)
        turbo_ssim = ref.ssim(_rgb_array(turbo))
        base = res["vips_thumb"]
        name = f"{src.name} {ref.full.width}×{ref.full.height}"
        for approach, r in res.items():
            disp = r["sizes"]["display"]
            webp = r["sizes"].get("display_webp")
            webp_cells = f"{webp:,} | {r['webp_ssim']:.4f}" if webp else "- | -"
            print(f"| {name} | {approach} | {r['wall']:.0f} | {r['cpu']:.0f} "
                  f"| {r['cpu'] / base['cpu']:.2f} | {r['rss_mb']:.1f} "
                  f"| {r['rss_mb'] / base['rss_mb']:.2f} | {disp:,} | {disp / len(turbo):.3f} "
                  f"| {r['ssim']:.4f} | {webp_cells} |")
        print(f"| {name} | turbo q85 (bytes ref) | - | - | - | - | - | {len(turbo):,} "
              f"| 1.000 | {turbo_ssim:.4f} | - | - |")
        ours = res["ours"]
        stage_text = ", ".join(f"{k} {v:.0f}" for k, v in ours["stages"].items())
        checks.append(f"- info {src.name}: ours CPU ms by stage: {stage_text} "
                      f"(vips_thumb total {base['cpu']:.0f})")
        t_ratio = ours["cpu"] / base["cpu"]
        b_ratio = ours["sizes"]["display"] / len(turbo)
        equal_q = ours["ssim"] >= turbo_ssim - 0.002
        results = [
            (t_ratio <= 1.5, f"time: whole pipeline {t_ratio:.2f}× vips thumbnail (≤ 1.5×)"),
            (ours["rss_mb"] <= base["rss_mb"],
             f"memory: peak RSS {ours['rss_mb']:.1f} MiB vs {base['rss_mb']:.1f} MiB (≤ 1.0×)"),
            (b_ratio <= 0.87 and equal_q,
             f"bytes: display JPEG {b_ratio:.3f}× turbo q85 (≤ 0.87×) at SSIM "
             f"{ours['ssim']:.4f} vs {turbo_ssim:.4f} (equal within 0.002)"),
        ]
        for ok, text in results:
            all_ok &= ok
            checks.append(f"- {verdict(ok)} {src.name}: {text}")
    print()
    print("\n".join(checks))
    print(f"\nall targets: {verdict(all_ok)}")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, approach, src, out, runs, warmup = sys.argv
        worker(approach, src, out, int(runs), int(warmup))
    else:
        sys.exit(main())
