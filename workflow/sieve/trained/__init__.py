"""The trained world: models trained (not set by hand) on pictures from the planted world's renderer.

The planted world proves the pipeline on a network whose weights were set by hand; this one gives Select,
Hypothesize and Verify what real models have: learned, graded, signed activations and a classifier head
with class names.

- :mod:`.spec`: the trained-world spec (``default.yaml`` here, or any YAML file of the same form): the world
  spec it renders from, the classes, picture counts and seeds, and each model's torchvision class and
  training settings;
- :mod:`.params`: what the workflow reads of a spec when it parses (model names, the training rule's params,
  the ``models:`` entry a checkpoint is loaded with), with ``yaml`` alone;
- :mod:`.data`: training pictures (one main object naming the class, plus clutter) drawn with the world's
  own renderer, the held-out pictures as an image folder, and the class-name file (CLIP-Dissect's
  ``imagenet_labels.txt`` format);
- :mod:`.train`: deterministic training of torchvision's ``ResNet`` and ``VisionTransformer`` classes, the
  held-out accuracy floor (:class:`~.train.TrainingFailed`), and plain ``state_dict`` checkpoints that the
  workflow's ``source: torchvision`` loader reads as a user's (:func:`~.train.model_spec`).

The names below are imported on first use (PEP 562), so that the Snakefile can import :mod:`.params` without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "class_names": "data",
    "render_picture": "data",
    "render_split": "data",
    "write_class_names": "data",
    "write_pictures": "data",
    "ModelSettings": "spec",
    "TrainedSpecError": "spec",
    "TrainedWorld": "spec",
    "load_trained_world": "spec",
    "TrainingFailed": "train",
    "TrainResult": "train",
    "model_spec": "train",
    "run_train": "train",
    "train_model": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
