"""Render a smart-onnx HTML report in headless Chromium and check the screenshot is not blank.

    python tools/screenshot_report.py report.html -o report.png [--size 1200,2400]

Needs /usr/bin/chromium (Debian: ``apt-get install -y chromium``). Exits 0 when the
screenshot has more than one distinct pixel value, 1 when it is blank, 2 when Chromium is
missing or fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CHROMIUM", "distinct_colors", "screenshot"]

CHROMIUM = "/usr/bin/chromium"
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def screenshot(page: Path, out: Path, *, size: tuple[int, int] = (1200, 2400), timeout: float = 120.0) -> Path:
    """Screenshot ``page`` (a local HTML file) into ``out`` (PNG) with headless Chromium.

    Raises:
        FileNotFoundError: Chromium is not installed.
        RuntimeError: Chromium failed or wrote no screenshot.
    """
    binary = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if binary is None:
        raise FileNotFoundError(f"{CHROMIUM} not found; install it with: apt-get install -y chromium")
    out = out.resolve()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="smart-onnx-chromium-") as profile:
        cmd = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"chromium exited {proc.returncode} without a screenshot: {' | '.join(tail)}")
    return out


def distinct_colors(png: Path) -> int:
    """How many distinct RGB values the image holds (1 means blank)."""
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG path (default: beside the HTML).")
    parser.add_argument("--size", default="1200,2400", help="Window WIDTH,HEIGHT in pixels.")
    args = parser.parse_args(argv)
    out = args.output or args.html.with_suffix(".png")
    width, height = (int(v) for v in args.size.split(","))
    try:
        screenshot(args.html, out, size=(width, height))
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    colors = distinct_colors(out)
    if colors <= 1:
        print(f"{out}: blank screenshot", file=sys.stderr)
        return 1
    print(f"{out}: {width}x{height}, {colors} distinct colors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
