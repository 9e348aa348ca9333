"""Repeat detection elimination (WORKFLOW.md, "Repeat Detection Elimination"), in one place:

- ``clustering``: finding boxes that recur at one place in a camera's images (pure functions);
- ``search``: running it over a camera's stored detections and storing suspected clusters, on demand
  (`trapline rde`) or by the detect workers as each camera completes;
- ``decisions``: a person's confirm or reject, which suppresses or restores the boxes and relabels the
  images from their stored outputs.

This package imports nothing at import time, so that ``shared.store`` can use the pure ``clustering``.
"""
