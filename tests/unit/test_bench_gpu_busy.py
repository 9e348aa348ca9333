"""bench/gpu_busy.py: the busy share is the mean utilisation of the samples inside the window."""

from __future__ import annotations

from bench.gpu_busy import GpuBusy


def test_busy_is_the_mean_of_the_samples_in_the_window() -> None:
    sampler = GpuBusy(samples=[(10.0, 100.0, 500.0), (10.1, 50.0, 900.0), (10.2, 0.0, 700.0), (11.0, 100.0, 600.0)])

    assert sampler.busy(10.0, 10.2) == 0.5  # (100 + 50 + 0) / 3 %
    assert sampler.busy(10.05, 11.0) == 0.5  # (50 + 0 + 100) / 3 %
    assert sampler.busy(20.0, 30.0) is None  # no sample: not measured, never 0
    assert sampler.peak_memory_mib() == 900.0


def test_without_nvidia_smi_nothing_is_sampled(monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)

    with GpuBusy() as sampler:
        pass

    assert GpuBusy.card() is None and sampler.samples == [] and sampler.busy(0, 1e12) is None
