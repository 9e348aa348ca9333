"""Random-weight YOLOv5 checkpoints that the megadetector package loads like MegaDetector.

Built in seconds without network access. The objectness bias is raised so that random weights
still produce boxes: about 6 per image, large, at conf ≈ 0.44 (above the 0.1 counting and crop thresholds).
"""

from __future__ import annotations

import math
from pathlib import Path


def build_random_yolov5(
    path: Path, *, cfg: str = "yolov5n.yaml", image_size: int = 320, objectness: float = 0.5, seed: int = 0,
    every_anchor: bool = False,
) -> Path:
    """Write a checkpoint ``{'model': Model}`` of YOLOv5 ``cfg`` with 3 classes (animal, person,
    vehicle) and MegaDetector metadata (model type, image size) to ``path``. ``every_anchor`` raises
    the objectness of every anchor instead of one: thousands of overlapping candidates per image."""
    import torch
    import yolov5.models
    from megadetector.detection.pytorch_detector import add_metadata_to_megadetector_model_file
    from yolov5.models.yolo import Model

    torch.manual_seed(seed)
    cfg_path = Path(cfg) if Path(cfg).is_file() else Path(yolov5.models.__file__).parent / cfg
    model = Model(str(cfg_path), ch=3, nc=3)
    detect = model.model[-1]
    with torch.no_grad():
        for level, conv in enumerate(detect.m):
            bias = conv.bias.view(detect.na, -1)
            # Only the largest anchor of the coarsest level gets the raised objectness, so an image
            # yields a few dozen boxes rather than MegaDetector's cap of 300.
            bias[:, 4] = math.log(objectness / (1 - objectness)) if every_anchor else -20.0
            if level == len(detect.m) - 1:
                bias[-1, 4] = math.log(objectness / (1 - objectness))
            bias[:, 5:] = torch.tensor([2.0, 0.0, -1.0])  # mostly animal, some person/vehicle
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.pt")
    torch.save({"model": model.float(), "epoch": -1}, raw)
    add_metadata_to_megadetector_model_file(str(raw), str(path), {"model_type": "yolov5", "image_size": image_size})
    raw.unlink()
    return path
