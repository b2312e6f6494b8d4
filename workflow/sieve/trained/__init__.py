"""The trained world: models trained (not set by hand) on pictures from the planted world's renderer.

The planted world proves the pipeline on a network whose weights were set by hand; this one gives Select,
Hypothesize and Verify what real models have: learned, graded, signed activations and a classifier head
with class names.

- :mod:`.spec`: the trained-world spec (``default.yaml`` here, or any YAML file of the same form): the world
  spec it renders from, the classes, picture counts and seeds, and each model's torchvision class and
  training settings;
- :mod:`.data`: training pictures (one main object naming the class, plus clutter) drawn with the world's
  own renderer, and the class-name file (CLIP-Dissect's ``imagenet_labels.txt`` format);
- :mod:`.train`: deterministic training of torchvision's ``ResNet`` and ``VisionTransformer`` classes, the
  held-out accuracy floor (:class:`~.train.TrainingFailed`), and plain ``state_dict`` checkpoints that the
  workflow's ``source: torchvision`` loader reads as a user's (:func:`~.train.model_spec`).
"""

from __future__ import annotations

from .data import class_names, render_picture, render_split, write_class_names
from .spec import ModelSettings, TrainedSpecError, TrainedWorld, load_trained_world
from .train import TrainingFailed, TrainResult, model_spec, run_train, train_model

__all__ = [
    "ModelSettings",
    "TrainResult",
    "TrainedSpecError",
    "TrainedWorld",
    "TrainingFailed",
    "class_names",
    "load_trained_world",
    "model_spec",
    "render_picture",
    "render_split",
    "run_train",
    "train_model",
    "write_class_names",
]
