"""MegaDetector weights: a known release (``MDV5A``) downloaded once into a private folder and checked against
the megadetector package's MD5 for it, or a file.

The package itself downloads into a world-writable folder of the system's temporary space, where another user
could leave a file for it to load; a ``.pt`` file is code (``torch.load`` unpickles it). So trapline fetches
the package's known releases itself, into a folder only its user can write, with a progress bar and a time
limit, and says plainly why a download failed (no network: download the file elsewhere and give its path).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared.errors import ModelFileError

DOWNLOAD_TIMEOUT_S = 30  # per network read: a machine without network fails in seconds, never hangs
CHUNK = 1 << 20


def release(name: str) -> tuple[str, dict[str, Any]] | None:
    """(version, the package's table entry: url, md5, …) of a known model name such as ``MDV5A``, else None."""
    from megadetector.detection.run_detector import known_models, model_string_to_model_version

    key = name.lower()
    version = model_string_to_model_version.get(key, key)
    return (version, known_models[version]) if version in known_models else None


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def release_of_file(path: Path) -> str | None:
    """The MegaDetector release whose published MD5 this file has (its bytes are the release's), or None."""
    from megadetector.detection.run_detector import known_models

    digest = md5_of(path)
    return next((version for version, info in known_models.items() if info.get("md5") == digest), None)


def private_folder(folder: Path) -> Path:
    """``folder``, created readable and writable by this user only."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def fetch(name: str, folder: Path, progress: bool = False) -> Path:
    """The weights of the known release ``name`` in ``folder``, downloaded if missing or damaged."""
    found = release(name)
    if found is None:
        raise ModelFileError(f"{name} is not a MegaDetector model the megadetector package knows",
                             "give a known name (MDV5A, MDV5B) or a path to a .pt file")
    version, info = found
    target = private_folder(folder) / info["url"].rsplit("/", 1)[-1]
    if target.is_file() and md5_of(target) == info["md5"]:
        return target
    _download(info["url"], target, name, progress)
    if md5_of(target) != info["md5"]:
        target.unlink(missing_ok=True)
        raise ModelFileError(f"the download of {name} ({version}) does not have the published MD5",
                             "try again; if it persists, download the file yourself and give its path")
    return target


def _download(url: str, target: Path, name: str, progress: bool) -> None:
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    os.close(handle)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _bar(total, name) if progress else None
            while chunk := response.read(CHUNK):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise ModelFileError(f"cannot download {name} from {url}: {getattr(error, 'reason', error)}",
                             f"without network, download {url.rsplit('/', 1)[-1]} on another machine and set "
                             f"TRAPLINE_DETECTOR__WEIGHTS=/path/to/{url.rsplit('/', 1)[-1]}") from error
    finally:
        Path(partial).unlink(missing_ok=True)


def _bar(total: int | None, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", file=sys.stderr)


def resolve(source: str, folder: Path, progress: bool = False, trusted: bool = True) -> Path:
    """A local weights file for ``source``: a known model name is fetched (:func:`fetch`), a path is taken.
    ``trusted`` False: a file must be a known release (its MD5 the package's), since loading it runs it."""
    if release(source) is not None and not Path(source).exists():
        return fetch(source, folder, progress)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelFileError(f"detector weights {path} not found", "set TRAPLINE_DETECTOR__WEIGHTS to a .pt file "
                             "or to a model name such as MDV5A")
    if not trusted and release_of_file(path) is None:
        raise UnregisteredModel(path)
    return path


class UnregisteredModel(ModelFileError):
    """A detector file that is neither a known MegaDetector release nor registered: it is not loaded."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is not a registered detector nor a known MegaDetector release (by MD5); a .pt "
                         "file is code, run when it is loaded",
                         f"if it comes from a source you trust: trapline models import detector --file {path}")
