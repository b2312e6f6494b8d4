"""A model's preprocessing (:class:`Preprocess`), importable without torch.

Geometry (resize the short side, centre crop) and normalisation are kept apart so that later stages can cut crops
from exactly the image the model saw. :meth:`Preprocess.view` is that geometry on PIL images alone (Pillow's
resampling, as torchvision's ``resize`` and ``center_crop`` apply it to PIL images), so a job that only draws the
model's view (the neuron grids) needs no torch; :meth:`Preprocess.geometric` is the same view as a tensor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..images import RESAMPLE, center_crop, resize_short, to_chw, to_rgb
from . import BackendError

if TYPE_CHECKING:
    import torch

# The resizes that resize_like_pillow reproduces on tensors (the probe's device decode takes no other).
DEVICE_INTERPOLATIONS = ("bilinear", "bicubic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Geometry (resize the short side, centre crop) then normalisation: kept apart so that later stages can
    cut crops from exactly the image the model saw, and resize generated images on the device."""

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def view(
        self, img: Image.Image, size: int | None = None, source_size: tuple[int, int] | None = None
    ) -> Image.Image:
        """PIL image -> the model's view (RGB, ``input_size`` square) as a PIL image, without torch: the short side
        resized to ``resize`` (the long side truncated in proportion), then the centre ``input_size`` square
        (zeros where the image is smaller), as torchvision's ``resize`` and ``center_crop`` do on PIL images.

        With ``size``: the same square of the image at ``size`` x ``size`` px, resampled once from the source (a
        thumbnail of the view at the cost of one small resize). ``source_size``: the (width, height) of the file
        when ``img`` was decoded reduced (:meth:`draft_size`): the square is placed on the file's geometry, then
        cut from ``img`` at its scale."""
        if self.interpolation not in RESAMPLE:
            raise BackendError(
                f"preprocessing interpolation {self.interpolation!r} is not one of {', '.join(RESAMPLE)}"
            )
        resample = RESAMPLE[self.interpolation]
        img = to_rgb(img)
        w0, h0 = source_size or img.size
        h, w = self.resized_size(h0, w0)
        s = self.input_size
        if size is not None and s <= min(w, h):
            # the crop inside the resized image: one resample of its region
            left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
            fx, fy = w0 / w, h0 / h
            box = (left * fx, top * fy, (left + s) * fx, (top + s) * fy)
            if source_size is not None and img.size != source_size:  # decoded at 1/2, 1/4 or 1/8 (JPEG DCT)
                scale = max(1, round(w0 / img.size[0]))
                box = tuple(v / scale for v in box)
            return img.resize((size, size), resample, box=box)
        if source_size is not None and img.size != source_size:
            img = img.resize(source_size, resample)  # not a reduced decode's case (draft_size asks for none)
        img = center_crop(resize_short(img, self.resize, self.interpolation), s)
        return img if size is None or size == s else img.resize((size, size), resample)

    def draft_size(self, width: int, height: int, size: int, gap: float = 2.0) -> tuple[int, int]:
        """The smallest (width, height) a file of ``width`` x ``height`` may be decoded at for a ``size`` px
        :meth:`view` (Pillow's ``Image.draft`` request): the view's square still spans ``gap`` x ``size`` px of
        it (``gap`` 2, as Pillow's own ``thumbnail``). The full size where the view needs every pixel (an image
        smaller than the crop) or no reduction is possible."""
        h, w = self.resized_size(height, width)
        s = self.input_size
        if s > min(w, h):
            return width, height
        side = s * width / w  # the square's side in file pixels
        r = min(1.0, gap * size / side)
        return max(1, math.ceil(width * r)), max(1, math.ceil(height * r))

    def geometric(self, img: Image.Image) -> torch.Tensor:
        """PIL image -> float tensor [3, S, S] in [0, 1], the model's view before normalisation (torchvision's
        ``resize``, ``center_crop`` and ``to_tensor``, without importing torchvision: :mod:`sieve.images`)."""
        import torch

        img = resize_short(to_rgb(img), self.resize, self.interpolation)
        return torch.from_numpy(to_chw(center_crop(img, self.input_size)))

    def geometric_tensor(self, img: torch.Tensor) -> torch.Tensor:
        """:meth:`geometric` on decoded pixels: uint8 RGB [..., 3, H, W] on any device (images of one size may
        come as a batch) -> float [..., 3, S, S] in [0, 1]: the same output size, the same crop offsets, an
        antialiased resize rounded to 8 bits as Pillow's is (:func:`resize_like_pillow`: bilinear or bicubic
        only)."""
        from torchvision.transforms import functional as TF

        h, w = img.shape[-2:]
        img = resize_like_pillow(img, self.resized_size(h, w), self.interpolation)
        img = TF.center_crop(img, [self.input_size, self.input_size]).contiguous()  # small: uint8 at S x S
        return img.float().div_(255)

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) after :meth:`geometric`'s resize: the short side to ``resize``, the long side scaled
        and truncated (torchvision's rule for an int size, for PIL images and tensors alike)."""
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if h <= w else (new_long, new_short)

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


def resize_like_pillow(
    img: torch.Tensor, size: tuple[int, int], interpolation: str, uint8_kernel: bool | None = None
) -> torch.Tensor:
    """uint8 [..., 3, H, W] resized to ``size`` as Pillow resizes (antialiased), with 8-bit results, bilinear or
    bicubic (:data:`DEVICE_INTERPOLATIONS`; another mode is a ValueError: torch has no antialiased box, hamming
    or lanczos kernel, and its nearest picks other pixels than Pillow's).

    On the CPU (``uint8_kernel``, by default where ``img`` is) torch's uint8 kernel, which follows Pillow's
    arithmetic (bilinear: equal but for a rare level); elsewhere (CUDA has no uint8 kernel) the float kernel
    rounded to 8 bits: at most one level from Pillow."""
    import torch
    import torch.nn.functional as F

    if interpolation not in DEVICE_INTERPOLATIONS:
        raise ValueError(
            f"the tensor resize reproduces Pillow's {' and '.join(DEVICE_INTERPOLATIONS)} only, "
            f"not {interpolation!r}"
        )
    x = img if img.dim() == 4 else img.unsqueeze(0)
    if img.device.type == "cpu" if uint8_kernel is None else uint8_kernel:
        x = x.contiguous(memory_format=torch.channels_last)  # the kernel's fast layout
        out = F.interpolate(x, size=size, mode=interpolation, antialias=True, align_corners=False)
    else:
        out = F.interpolate(x.float(), size=size, mode=interpolation, antialias=True, align_corners=False)
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out if img.dim() == 4 else out[0]
