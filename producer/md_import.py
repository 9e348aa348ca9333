"""`trapline import md-json`: adopt another tool's MegaDetector results mid-project. The producer names the
detector version the results become (kind detector, source ``md-json import``) and hands the file to the detect
environment, where ``worker.md_import`` validates it with the megadetector package, matches its paths to the
archive and stores the outcomes; then `trapline enqueue --stage classify --detector NAME` classifies them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from producer import environments
from shared.calls import ImportMdJson, MdJsonImported
from shared.checksums import file_sha256
from shared.config import Settings
from shared.errors import UsageProblem
from shared.schemas import ModelKind
from shared.store import images, model_versions

SOURCE = "md-json import"  # the source of every imported detector version
IMPORT_TIMEOUT_S = 7 * 24 * 3600.0  # an import is as long as its archive; the call is followed, not timed


@dataclass(frozen=True, slots=True)
class Imported:
    detector_version: str
    detector_version_id: int
    result: MdJsonImported
    unmatched_file: Path

    def lines(self) -> list[str]:
        r = self.result
        made = f" (made by {r.detector})" if r.detector else ""
        lines = [f"imported {r.imported:,} of {r.images:,} images{made} as detector version "
                 f"{self.detector_version!r} (id {self.detector_version_id}): {r.boxes:,} boxes, {r.failed:,} failed "
                 "in the other tool"]
        if r.unmatched:
            lines.append(f"{r.unmatched:,} path(s) match no registered image, all listed in {self.unmatched_file}: "
                         + ", ".join(r.unmatched_shown) + (", …" if r.unmatched > len(r.unmatched_shown) else ""))
        lines.append(f"next: trapline enqueue --stage classify --detector {self.detector_version_id}")
        return lines


def import_md_json(sessions: sessionmaker, settings: Settings, file: Path, archive_root: Path, name: str | None,
                   prefix: str, unmatched_file: Path) -> Imported:
    """Register the detector version, then import in the detect environment (module doc)."""
    if not file.is_file():
        raise UsageProblem(f"{file} is not a file", "give the MegaDetector results (.json) to import")
    with sessions.begin() as session:
        archive = images.archives_at(session, archive_root)[0]
        version = model_versions.ensure_model_version(
            session, ModelKind.DETECTOR, name or f"{file.name} (imported)", SOURCE, file_sha256(file),
            {"imported_from": str(file.resolve())})
        archive_id, version_id, version_name = archive.id, version.id, version.name
    request = ImportMdJson(path=str(file.resolve()), archive_id=archive_id, detector_version_id=version_id,
                           prefix=prefix.strip("/"), unmatched_file=str(unmatched_file.resolve()))
    result = environments.call(environments.detect_python(settings), request, MdJsonImported,
                               f"importing {file.name}", IMPORT_TIMEOUT_S, quiet=False)
    if result.images and not result.imported:
        raise UsageProblem(f"none of the {result.images:,} paths of {file.name} names an image of {archive_root} "
                           f"(the first: {result.unmatched_shown[0]}; all in {unmatched_file})",
                           "give --prefix: the folder below the archive root that the other tool ran on")
    return Imported(version_name, version_id, result, unmatched_file)
