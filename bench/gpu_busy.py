"""How busy the GPU was during a window of a benchmark, sampled with ``nvidia-smi`` in the background.

``nvidia-smi --query-gpu=utilization.gpu -lms N`` prints, every N ms, the share of the driver's last sample
period during which at least one kernel was running on the GPU. The mean of the samples that fall inside a window
is the share of that window the GPU was busy: the figure issue 17 asks to reach 80 %. It says nothing about how
well each kernel uses the card (that would take Nsight); it does say whether the GPU waits for the CPU side.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

QUERY = "utilization.gpu,memory.used"


@dataclass
class GpuBusy:
    """Samples of (wall-clock time, utilisation %, memory used MiB) of GPU ``index``, while in a ``with`` block."""

    interval_ms: int = 100
    index: int = 0
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("nvidia-smi") is not None

    @staticmethod
    def card() -> str | None:
        """Name, driver and memory of the GPU, as nvidia-smi reports them (None without nvidia-smi)."""
        if not GpuBusy.available():
            return None
        found = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else None

    def __enter__(self) -> GpuBusy:
        if self.available():
            self.process = subprocess.Popen(
                ["nvidia-smi", f"--id={self.index}", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits",
                 f"--loop-ms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.reader = threading.Thread(target=self._read, name="gpu-busy", daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                utilisation, memory = (float(v) for v in line.split(","))
            except ValueError:  # "[N/A]" on cards that do not report it
                continue
            self.samples.append((time.time(), utilisation, memory))

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)

    def busy(self, start: float, end: float) -> float | None:
        """The mean utilisation (0–1) of the samples taken between ``start`` and ``end`` (``time.time()`` seconds);
        None without samples there."""
        inside = [u for t, u, _ in self.samples if start <= t <= end]
        return sum(inside) / len(inside) / 100 if inside else None

    def peak_memory_mib(self) -> float | None:
        return max((m for _, _, m in self.samples), default=None)
