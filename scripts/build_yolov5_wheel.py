"""Build a wheel of ``ultralytics-yolov5==0.1.1`` without network access at build time.

The sdist's ``setup.py`` downloads the upstream README from GitHub to use as its long
description, so ``pip install`` fails on machines that reach only the package registries.
This shim fetches the sdist from PyPI (checked against its published SHA-256), replaces that
download with the README shipped inside the sdist, and builds a wheel into ``WHEEL_DIR``.
``megadetector`` is then installed with ``--find-links WHEEL_DIR``.

Usage: python scripts/build_yolov5_wheel.py WHEEL_DIR
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

SDIST_URL = (
    "https://files.pythonhosted.org/packages/96/30/"
    "75569405437893eaa6ca177f2b8493d6d54318a62b45cf693463e51ef572/ultralytics-yolov5-0.1.1.tar.gz"
)
SDIST_SHA256 = "d9dfa1defd3388fcae4b7262b829a41cdc6d50b2842ca89f005de8d9f89b36fd"
README_FETCH = (
    "README = request.urlopen('https://raw.githubusercontent.com/ultralytics/yolov5/master/README.md')"
    ".read().decode('utf-8')"
)
README_LOCAL = "README = open('README.md', encoding='utf-8').read()"

log = logging.getLogger("build_yolov5_wheel")


def fetch_sdist(dest: Path) -> Path:
    path = dest / "ultralytics-yolov5-0.1.1.tar.gz"
    with urllib.request.urlopen(SDIST_URL, timeout=120) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"sdist checksum mismatch: {digest} != {SDIST_SHA256}")
    path.write_bytes(data)
    return path


def patch_setup(source: Path) -> None:
    setup_py = source / "setup.py"
    text = setup_py.read_text()
    if README_FETCH not in text:
        raise SystemExit("setup.py changed upstream; the shim no longer applies")
    setup_py.write_text(text.replace(README_FETCH, README_LOCAL))


def main(wheel_dir: Path) -> None:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    if any(wheel_dir.glob("ultralytics_yolov5-0.1.1-*.whl")):
        log.info("wheel already built in %s", wheel_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sdist = fetch_sdist(Path(tmp))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = Path(tmp) / "ultralytics-yolov5-0.1.1"
        patch_setup(source)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps",
             "-w", str(wheel_dir), str(source)],
            check=True,
        )
    log.info("built ultralytics-yolov5 0.1.1 into %s", wheel_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
