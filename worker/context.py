"""What one worker process builds once and keeps: the database engine and the loaded models.

A model that cannot be loaded (a download that fails, a file that is not a model, a checksum that does not
match) raises ``ModelUnavailable``: the batch that needed it records why and stays queued, so `trapline run`
stops with the reason and `trapline status` shows it, instead of the batch being retried forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.config import Settings
from shared.db import ModelVersion
from shared.errors import TraplineError
from shared.schemas import CLASSIFIER_PREPROCESSING


class ModelUnavailable(TraplineError):
    """A worker cannot load a model that a batch needs."""


@dataclass
class WorkerContext:
    """Built lazily on first use, so a prefork parent never holds a connection or a model that its children
    would inherit."""

    settings: Settings
    models: dict[int, object] = field(default_factory=dict)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return store.make_sessionmaker(store.make_engine(self.settings.database_url))

    def detector(self, version: ModelVersion):  # worker.ml.detector.MegaDetector
        """The detector of a version, loaded once; ``ModelUnavailable`` says why it cannot be."""
        if version.id not in self.models:
            from worker.ml.detector import load_megadetector

            with self.sessions() as session:
                registered = bool(version.sha256) and store.model_versions.detector_file_registered(
                    session, version.sha256)
            try:
                detector = load_megadetector(version.source, version.sha256, trusted=registered,
                                             force_cpu=self.settings.detector.force_cpu,
                                             torch_threads=self.settings.detector.torch_threads,
                                             channels_last=self.settings.detector.channels_last,
                                             cudnn_benchmark=self.settings.detector.cudnn_benchmark,
                                             torch_compile=self.settings.detector.torch_compile,
                                             download_dir=self.settings.model_root / "megadetector")
            except Exception as error:  # whatever the package raised: a download, a file, a checksum
                raise ModelUnavailable(f"cannot load the detector {version.name} ({version.source}): "
                                       f"{type(error).__name__}: {error}") from error
            with self.sessions.begin() as session:
                store.model_versions.record_model_checksum(session, version.id, detector.sha256, detector.manifest())
            self.models[version.id] = detector
        return self.models[version.id]

    def classifier(self, version: ModelVersion):  # worker.ml.classification.LoadedClassifier
        """A registered Keras model, loaded only if its file still has the registered SHA-256."""
        if version.id not in self.models:
            from shared.checksums import verified_sha256
            from worker.ml.classification import LoadedClassifier
            from worker.ml.classifier import load_model

            try:
                path = Path(version.source)
                verified_sha256(path, version.sha256)
                self.tensorflow_memory_growth()
                loaded = load_model(path)
            except Exception as error:
                raise ModelUnavailable(f"cannot load the {version.kind.value} model {version.name}: "
                                       f"{type(error).__name__}: {error}") from error
            manifest = version.manifest or {}
            self.models[version.id] = LoadedClassifier(
                version.id, loaded, tuple(manifest["classes"]), manifest.get("regions") or {},
                manifest.get("preprocessing", CLASSIFIER_PREPROCESSING),
            )
        return self.models[version.id]

    @staticmethod
    def tensorflow_memory_growth() -> None:
        try:
            import tensorflow as tf
        except ImportError:  # Keras on another backend
            return
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: growth was set on the first load
                pass
