#!/usr/bin/env bash
# Issue 17's device check, as one command on a GPU machine without network: installs the bundle scripts/gpu-bundle
# built (carried as .gpu), then measures, each log written to $OUT and its result lines printed:
#   machine.txt            card, driver, library versions;
#   fast_modes.txt         bench/fast_modes.py: each fast mode's agreement and speed against the exact mode;
#   pipeline_exact.txt     bench/gpu_pipeline.py in the exact mode: the package's runner at each batch size, then the
#                          whole pipeline (scan → PostgreSQL → Redis → detect and classify workers), GPU busy share;
#   pipeline_fast.txt      the same pipeline with decode=device, fp16, channels-last, cuDNN autotuning.
# MDv5a's architecture (random-weight YOLOv5x6 at 1280 px), or MDv5a itself where GPU_RUN_WEIGHTS names its file.
#
#   here:    scripts/gpu-bundle
#   device:  run(command="bash bench/gpu_run.sh", carry=[".gpu"], timeout_s=590)     # about 7 minutes
#   rehearsal on a CPU machine (small sizes, this checkout's .venv/detect): GPU_RUN_REHEARSAL=1 bash bench/gpu_run.sh
#   then, if one process leaves the card idle: GPU_RUN_ONLY=replicas GPU_RUN_PACKAGE_BEST=<rate@batch of the first
#   call> bash bench/gpu_run.sh (two detect workers on the card, fast mode)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
export KERAS_BACKEND=${KERAS_BACKEND:-torch}  # the classifiers on PyTorch: such a machine has no TensorFlow
if [[ -n ${GPU_RUN_REHEARSAL:-} ]]; then
  PYTHON=.venv/detect/bin/python
  MODEL=(--cfg yolov5n.yaml --image-size 320)
  MODES=(--limit 6 --modes device,bf16 --threads 2)
  PACKAGE=(--package-batch-sizes 1,2 --package-images 6)
  PIPELINE=(--copies 1 --limit 12 --batch-size 8 --infer-batch 4 --decode-threads 2 --classifier-size 32 --crop-batch 16)
  FAST=(--decode device --precision bf16 --channels-last)
else
  PYTHON=python3
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
    || { echo "gpu_run: installing .gpu/whl failed (run scripts/gpu-bundle here and carry .gpu)"; exit 3; }
  export PYTHONPATH=/tmp/site
  export PATH=$PWD/.gpu/redis:$PATH LD_LIBRARY_PATH=$PWD/.gpu/redis${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export TRAPLINE_POSTGRES_BIN=/tmp/site/pgserver/pginstall/bin
  chmod +x "$TRAPLINE_POSTGRES_BIN"/* .gpu/redis/redis-server
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres  # PostgreSQL refuses to run as root
  MODEL=(--cfg hub/yolov5x6.yaml --image-size 1280 ${GPU_RUN_WEIGHTS:+--weights "$GPU_RUN_WEIGHTS"})
  MODES=(--limit 48 --modes draft,device,bf16,fp16,channels-last,fastest --batch 16 --threads 12)
  PACKAGE=(--package-batch-sizes 1,8,16,32 --package-images 400)
  PIPELINE=(--copies 16 --batch-size 256 --infer-batch 32 --decode-threads 12 --classifier-size 224 --crop-batch 128)
  FAST=(--decode device --precision fp16 --channels-last --cudnn-benchmark)
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
IMAGES=.gpu/photographs
[[ -d $IMAGES ]] || IMAGES=../shared/data/camera-traps
{
  date -u; nvidia-smi || echo "no nvidia-smi"
  $PYTHON -c "import sys, torch, torchvision, megadetector, keras, celery, sqlalchemy; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'torchvision', \
torchvision.__version__, 'keras', keras.__version__, 'celery', celery.__version__, 'sqlalchemy', sqlalchemy.__version__)"
  redis-server --version; "${TRAPLINE_POSTGRES_BIN:-$(ls -d /usr/lib/postgresql/*/bin | tail -1)}/postgres" --version
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
step() {  # step NAME SECONDS ARGS…: one benchmark, its log in $OUT/NAME.txt, its result lines printed
  local name=$1 seconds=$2; shift 2
  timeout "$seconds" "$PYTHON" "$@" > "$OUT/$name.txt" 2>&1
  echo "== $name (exit $?)"
  grep -E "^(fast modes|exact|mode|decode|precision|channels|torch_compile|device|boxes|gpu pipeline|  |package|trapline|ratio|GPU|classify)" \
    "$OUT/$name.txt" | grep -v "INFO\|Warning\|warn(" | tail -30
}
if [[ ${GPU_RUN_ONLY:-} == replicas ]]; then  # a second call: two detect workers (model replicas) on the one card
  step pipeline_replicas 400 -m bench.gpu_pipeline --images "$IMAGES" "${MODEL[@]}" --detect-workers 2 \
    ${GPU_RUN_PACKAGE_BEST:+--package-best "$GPU_RUN_PACKAGE_BEST"} "${PACKAGE[@]}" "${PIPELINE[@]}" "${FAST[@]}"
  exit
fi
step fast_modes 170 -m bench.fast_modes --images "$IMAGES" "${MODEL[@]}" "${MODES[@]}"
step pipeline_exact 200 -m bench.gpu_pipeline --images "$IMAGES" "${MODEL[@]}" "${PACKAGE[@]}" "${PIPELINE[@]}"
best=$(grep -oE "package runner's best: [0-9.]+@[0-9]+" "$OUT/pipeline_exact.txt" | grep -oE "[0-9.]+@[0-9]+")
step pipeline_fast 170 -m bench.gpu_pipeline --images "$IMAGES" "${MODEL[@]}" ${best:+--package-best "$best"} \
  "${PACKAGE[@]}" "${PIPELINE[@]}" "${FAST[@]}"
echo "logs: $OUT"
