"""bench/gpu_pipeline.py on the CPU at a tiny size, as CI's smoke test of issue 17's device check: the package's
runner, then scan → PostgreSQL → Redis → a detect worker with the fast modes on → a classify worker running Keras on
the PyTorch backend (the detect environment has no TensorFlow), every image through both stages. Nothing about
time is asserted; the GPU's figures are in bench/RESULTS.md."""

from __future__ import annotations

import pytest

from bench import gpu_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.detect]


def test_the_gpu_benchmark_runs_the_whole_pipeline_on_a_cpu(camera_traps, postgres_server_url, redis_url, capsys,
                                                            monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # as bench/gpu_run.sh sets it; undone after the test
    measured = gpu_pipeline.main([
        "--images", str(camera_traps / "hannaboe-camera_trap_workflow"), "--limit", "10", "--copies", "1",
        "--cfg", "yolov5n.yaml", "--image-size", "320", "--package-batch-sizes", "1,4", "--package-images", "4",
        "--batch-size", "4", "--infer-batch", "2", "--decode-threads", "2", "--classifier-size", "32",
        "--crop-batch", "8", "--decode", "device", "--precision", "bf16", "--channels-last",
        "--redis-url", redis_url, "--database-url", postgres_server_url])

    assert measured.images == 10
    assert measured.package_best > 0 and measured.trapline > 0 and measured.classify > 0
    assert measured.gpu_busy is None  # no nvidia-smi here: said, not invented
    output = capsys.readouterr().out
    assert "keras backend torch" in output and "options device decode, bf16" in output
    assert "package runner, batch   4" in output and "ratio trapline / package's best" in output
