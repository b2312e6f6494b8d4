"""A model's preprocessing (:class:`Preprocess`), importable without torch.

Geometry (resize the short side, centre crop) and normalisation are kept apart so that later stages can cut crops
from exactly the image the model saw. :meth:`Preprocess.view` is that geometry on PIL images alone (Pillow's
resampling, as torchvision's ``resize`` and ``center_crop`` apply it to PIL images), so a job that only draws the
model's view (the neuron grids) needs no torch; :meth:`Preprocess.geometric` is the same view as a tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..images import to_rgb
from . import BackendError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's InterpolationMode values -> Pillow's resampling filters (torchvision's own table for PIL images)
PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocess:
    """Geometry (resize the short side, centre crop) then normalisation: kept apart so that later stages can
    cut crops from exactly the image the model saw, and resize generated images on the device."""

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def view(self, img: Image.Image, size: int | None = None) -> Image.Image:
        """PIL image -> the model's view (RGB, ``input_size`` square) as a PIL image, without torch: the short side
        resized to ``resize`` (the long side truncated in proportion), then the centre ``input_size`` square
        (zeros where the image is smaller), as torchvision's ``resize`` and ``center_crop`` do on PIL images.

        With ``size``: the same square of the image at ``size`` x ``size`` px, resampled once from the source (a
        thumbnail of the view at the cost of one small resize)."""
        if self.interpolation not in PIL_RESAMPLE:
            raise BackendError(
                f"preprocessing interpolation {self.interpolation!r} is not one of {', '.join(PIL_RESAMPLE)}"
            )
        resample = PIL_RESAMPLE[self.interpolation]
        img = to_rgb(img)
        w0, h0 = img.size
        short, long = (w0, h0) if w0 <= h0 else (h0, w0)
        new_long = int(self.resize * long / short)
        w, h = (self.resize, new_long) if w0 <= h0 else (new_long, self.resize)
        s = self.input_size
        left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
        if size is not None and s <= min(
            w, h
        ):  # the crop inside the resized image: one resample of its region
            fx, fy = w0 / w, h0 / h
            return img.resize(
                (size, size), resample, box=(left * fx, top * fy, (left + s) * fx, (top + s) * fy)
            )
        if (w, h) != img.size:
            img = img.resize((w, h), resample)
        if (w, h) != (s, s):
            if (
                s > w or s > h
            ):  # torchvision pads with zeros (left/top half rounded down), then crops the centre
                left = -((s - w) // 2) + int(round((max(w, s) - s) / 2.0)) if s > w else left
                top = -((s - h) // 2) + int(round((max(h, s) - s) / 2.0)) if s > h else top
            img = img.crop((left, top, left + s, top + s))
        return img if size is None or size == s else img.resize((size, size), resample)

    def geometric(self, img: Image.Image) -> torch.Tensor:
        """PIL image -> float tensor [3, S, S] in [0, 1], the model's view before normalisation."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        mode = InterpolationMode(self.interpolation)
        img = to_rgb(img)
        img = TF.resize(img, self.resize, interpolation=mode)
        img = TF.center_crop(img, [self.input_size, self.input_size])
        return TF.to_tensor(img)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a [B, 3, S, S] (or [3, S, S]) tensor in [0, 1]."""
        import torch

        shape = (-1, 1, 1) if x.dim() == 3 else (1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape)
        return (x - mean) / std

    def from_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Generated images [B, 3, H, W] in [0, 1], on any device -> normalised model input, on the device."""
        import torch.nn.functional as F

        if x.shape[-2:] != (self.input_size, self.input_size):
            short = min(x.shape[-2:])
            if x.shape[-1] != x.shape[-2]:
                top = (x.shape[-2] - short) // 2
                left = (x.shape[-1] - short) // 2
                x = x[..., top : top + short, left : left + short]
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        return self.normalize(x.clamp(0, 1))

    @classmethod
    def coerce(cls, obj: Any) -> Preprocess:
        if isinstance(obj, Preprocess):
            return obj
        if obj is None:
            return cls()
        if isinstance(obj, dict):
            known = {k: v for k, v in obj.items() if k in cls.__dataclass_fields__}
            if "input_size" in known and "resize" not in known:
                known["resize"] = int(round(known["input_size"] / 0.875))
            for key in ("mean", "std"):
                if key in known:
                    known[key] = tuple(float(v) for v in known[key])
            return cls(**known)
        raise BackendError(f"preprocessing must be a Preprocess or a dict, got {type(obj).__name__}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
