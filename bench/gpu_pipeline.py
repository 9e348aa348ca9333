"""One GPU, the whole pipeline, against the megadetector package's runner at its best batch size (issue 17).

1. **Baseline**: the package's ``load_and_run_detector_batch`` (its image queue on) over the first
   ``--package-images`` photographs at each of ``--package-batch-sizes``; the best images/s is the baseline.
2. **trapline**: scan → PostgreSQL → Redis → ``--detect-workers`` detect worker(s) → PostgreSQL, with the detect
   options and worker settings given here, over ``--copies`` copies of the photographs (each copy another site).
   Timed from the scan's start to the last detect batch's finish (workers warmed up first, as bench/end_to_end.py).
   Classify workers (Keras on the backend this environment has: PyTorch where TensorFlow is missing) take the
   classify batches the detect workers send, with random-weight ResNet-50s of ``--classifier-size`` px; their
   rate and how long after the last detect batch they finish say whether classification keeps up.
3. **GPU busy**: ``nvidia-smi`` sampled every 100 ms (bench/gpu_busy.py); the mean utilisation between the first
   detect batch's start and the last one's finish.

Prints the card, driver and versions, every figure and the ratio trapline / package; asserts nothing.

    python -m bench.gpu_pipeline [--weights md_v5a.0.0.pt | --cfg hub/yolov5x6.yaml --image-size 1280]
        [--copies 4] [--package-batch-sizes 1,8,16,32] [--batch-size 256] [--infer-batch 32] [--decode-threads 12]
        [--decode device] [--precision fp16] [--channels-last] [--cudnn-benchmark] [--torch-compile off]
        [--classify-workers 1] [--classifier-size 224] [--crop-batch 128] [--redis-url URL --database-url URL]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.deployment import Pipeline, WorkerConfig, distributed_run, file_sources, services, start_workers
from bench.gpu_busy import GpuBusy
from bench.workload import SHARED_PHOTOGRAPHS, copies, random_checkpoint
from shared.schemas import DetectionOptions, ModelKind, Stage
from tests.support.workers import WorkerProcesses, wait_until

REGION = "bench"
WARM_UP_IMAGES = 4
CLASSIFY_TIMEOUT_S = 1800


@dataclass(frozen=True, slots=True)
class Result:
    """What one run measured (images/s; busy as a share; None where not measured)."""

    images: int
    package_best: float
    trapline: float
    gpu_busy: float | None
    classify: float | None

    @property
    def ratio(self) -> float:
        return self.trapline / self.package_best


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED_PHOTOGRAPHS)
    parser.add_argument("--copies", type=int, default=4, help="the photographs this many times (as other sites)")
    parser.add_argument("--limit", type=int, help="only the first N photographs")
    parser.add_argument("--weights", type=Path, help="a MegaDetector .pt file (default: random weights of --cfg)")
    parser.add_argument("--cfg", default="hub/yolov5x6.yaml", help="YOLOv5 config of the random checkpoint "
                        "(hub/yolov5x6.yaml: MDv5a's architecture)")
    parser.add_argument("--image-size", type=int, default=1280)
    parser.add_argument("--package-batch-sizes", default="1,8,16,32")
    parser.add_argument("--package-images", type=int, default=600, help="photographs of the package's runs")
    parser.add_argument("--package-best", metavar="RATE@BATCH", help="the package's best from an earlier run of this "
                        "benchmark on the same machine, checkpoint and images (e.g. 38.7@32): not measured again")
    parser.add_argument("--batch-size", type=int, default=256, help="images per task (TRAPLINE_BATCH_SIZE)")
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--decode-threads", type=int, default=12)
    parser.add_argument("--detect-workers", type=int, default=1)
    parser.add_argument("--decode", choices=("exact", "draft", "device"), default="exact")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--torch-compile", default="off", choices=("off", "default", "reduce-overhead", "max-autotune"))
    parser.add_argument("--classify-workers", type=int, default=1, help="0: detect only")
    parser.add_argument("--classifier-size", type=int, default=224, help="input side of the random ResNet-50s")
    parser.add_argument("--crop-batch", type=int, default=128, help="crops per classifier forward pass")
    parser.add_argument("--redis-url", help="a Redis database the benchmark may flush (default: a private server)")
    parser.add_argument("--database-url", help="a PostgreSQL URL allowed to create databases (default: private)")
    return parser.parse_args(argv)


def package_baseline(weights: Path, sources: list, batch_sizes: list[int]) -> dict[int, float]:
    """The package's runner at each batch size: images/s."""
    from bench.detect_throughput import _megadetector

    rates = {}
    for batch in batch_sizes:
        rate, ok = _megadetector(weights, sources, batch)
        rates[batch] = rate
        print(f"  package runner, batch {batch:>3}: {rate:8.2f} img/s ({ok} of {len(sources)} ok)", flush=True)
    return rates


def import_classifiers(pipeline: Pipeline, folder: Path, size: int) -> None:
    """Random-weight quality and crop ResNet-50s, built and registered with this interpreter's Keras."""
    from producer.registry import import_model
    from shared.crop_model import CROP_CLASSES
    from tests.support.classifiers import build

    paths = build(folder / "classifiers", input_size=size)
    with pipeline.sessions.begin() as session:
        import_model(session, python=sys.executable, model_root=folder / "models", kind=ModelKind.QUALITY,
                     file=paths["quality"], classes=["Bad", "Good"], region=REGION)
        import_model(session, python=sys.executable, model_root=folder / "models", kind=ModelKind.CROPS,
                     file=paths["crops"], classes=list(CROP_CLASSES))


def main(argv: list[str] | None = None) -> Result:
    args = arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.classify_workers and "KERAS_BACKEND" not in os.environ:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            os.environ["KERAS_BACKEND"] = "torch"  # this process's Keras and every worker it starts
    import torch

    from worker.ml.detector import load_megadetector

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    options = DetectionOptions(decode=args.decode, precision=args.precision)
    runtime = (("TRAPLINE_DETECTOR__CHANNELS_LAST", str(args.channels_last).lower()),
               ("TRAPLINE_DETECTOR__CUDNN_BENCHMARK", str(args.cudnn_benchmark).lower()),
               ("TRAPLINE_DETECTOR__TORCH_COMPILE", args.torch_compile),
               ("TRAPLINE_CROPS__BATCH_SIZE", str(args.crop_batch)))
    with tempfile.TemporaryDirectory(prefix="trapline-gpu-") as tmp:
        folder = Path(tmp)
        weights = args.weights or random_checkpoint(folder / "random.pt", args.cfg, args.image_size)
        archive = copies(args.images, folder / "archive", args.copies, args.limit)
        warm_up = copies(args.images, folder / "warm-up", 1, WARM_UP_IMAGES)
        sources = file_sources(archive)
        print(f"gpu pipeline: {device}; {GpuBusy.card() or 'no nvidia-smi'}; torch {torch.__version__}, "
              f"python {sys.version.split()[0]}, keras backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}")
        print(f"  {weights.name}{'' if args.weights else f' ({args.cfg}, random weights)'} at {args.image_size} "
              f"px; {len(sources)} images ({args.copies} x {args.images}); options {options.key() or 'exact'}; "
              f"{' '.join(_setting(k, v) for k, v in runtime)}; batch {args.batch_size}, "
              f"infer batch {args.infer_batch}, decode threads {args.decode_threads}", flush=True)
        if args.package_best:
            rate, batch = args.package_best.split("@")
            baseline = {int(batch): float(rate)}
            print(f"  package runner, batch {int(batch):>3}: {float(rate):8.2f} img/s (measured by an earlier run)")
        else:
            baseline = package_baseline(weights, sources[:args.package_images],
                                        [int(b) for b in args.package_batch_sizes.split(",")])
        best_batch = max(baseline, key=baseline.get)

        config = WorkerConfig(weights, batch_size=args.batch_size, decode_threads=args.decode_threads,
                              infer_batch=args.infer_batch, options=options,
                              settings=(*runtime, ("TRAPLINE_MODEL_ROOT", str(folder / "models"))))
        load_megadetector(str(weights))  # the package's own first-load work (checks, caches) outside the timing
        with services(args.redis_url, args.database_url) as servers:
            database_url = servers.new_database("trapline_bench_gpu")
            pipeline = Pipeline(database_url, servers.redis_url, config)
            if args.classify_workers:
                import_classifiers(pipeline, folder, args.classifier_size)
            warm_up_id, _ = pipeline.register(warm_up, REGION)
            detect = start_workers(config, servers, database_url, folder / "logs", args.detect_workers)
            classify = WorkerProcesses(config.environment(servers.redis_url, database_url), folder / "logs",
                                       "classify", python=sys.executable)
            classify.start(args.classify_workers)
            try:
                pipeline.warm_up(warm_up_id, detect, args.detect_workers)
                if args.classify_workers:
                    wait_until(lambda: pipeline.detected(warm_up_id, Stage.CLASSIFY) > 0, 600, classify)
                after = pipeline.last_batch_id()
                with GpuBusy() as gpu:
                    started = time.time()
                    run = distributed_run(pipeline, archive, detect)
                    if args.classify_workers:
                        wait_until(lambda: pipeline.detected(run.archive_id, Stage.CLASSIFY) >= run.images,
                                   CLASSIFY_TIMEOUT_S, classify)
                    first, last, _, _ = pipeline.span(after)
                    busy = gpu.busy(first.timestamp(), last.timestamp())
                    whole_busy = gpu.busy(started, time.time())
            finally:
                detect.stop()
                classify.stop()
            classified = pipeline.span(after, Stage.CLASSIFY) if args.classify_workers else None
    return _report(run, baseline, best_batch, busy, whole_busy, gpu.peak_memory_mib(), classified, last)


def _setting(name: str, value: str) -> str:
    """TRAPLINE_DETECTOR__CHANNELS_LAST=true → detector.channels_last=true"""
    return f"{name.removeprefix('TRAPLINE_').replace('__', '.').lower()}={value}"


def _report(run, baseline: dict[int, float], best_batch: int, busy: float | None, whole_busy: float | None,
            peak_mib: float | None, classified, last_detect) -> Result:
    best = baseline[best_batch]
    print(f"package runner's best: {best:.2f}@{best_batch} (img/s at batch)")
    print(f"trapline end to end: {run.rate:.2f} img/s ({run.images} images in {run.total_s:.1f} s from the scan's "
          f"start; scan {run.scan_s:.1f} s, enqueue {run.enqueue_s:.1f} s; the workers alone {run.workers_rate:.2f} "
          f"img/s); detect_images {run.detect_s:.1f} of {run.in_tasks_s:.1f} s inside the tasks")
    print(f"ratio trapline / package's best: {run.rate / best:.2f}  (target >= 10)")
    if busy is None:
        print("GPU busy: not measured (no nvidia-smi samples)")
    else:
        print(f"GPU busy (mean nvidia-smi utilization.gpu, 100 ms samples): {busy:.1%} from the first detect batch's "
              f"start to the last one's finish, {whole_busy:.1%} over the whole run with classification; peak memory "
              f"{peak_mib:.0f} MiB  (target >= 80 %)")
    rate = None
    if classified is not None:
        first, last, workers, _ = classified
        rate = run.images / max((last - first).total_seconds(), 1e-9)
        print(f"classify: {rate:.2f} img/s over its own span ({workers} worker(s)); its last batch finished "
              f"{(last - last_detect).total_seconds():.1f} s after the last detect batch "
              f"({'keeps up' if rate >= run.workers_rate else 'slower than detection'})")
    return Result(run.images, best, run.rate, busy, rate)


if __name__ == "__main__":
    main()
