"""CLIP-like embedders (an image side and a text side in one space), keyed by ``source``.

Contract for every builder registered in ``EMBEDDERS``: ``builder(spec: dict, device) -> Embedder``.

Sources:

- ``open_clip``: ``arch`` (an open_clip model name such as ``ViT-B-16``) and ``pretrained`` (a tag such as
  ``openai``, a local checkpoint path, or null for random weights), all through :func:`load_open_clip`, the
  one function that hub tags and local files go through. ``model_config: path/to/arch.json`` (open_clip's
  JSON model config: ``embed_dim``, ``vision_cfg``, ``text_cfg``) registers a custom architecture under the
  name given in ``arch``, so small or private CLIP models load the same way.
- ``python``: ``factory: "package.module:function"`` called with ``kwargs`` (plus ``device=``
  if it has a ``device`` parameter), returning an object with
  ``encode_images``, ``encode_text`` and ``dim`` (see :class:`Embedder`).
- ``synthetic``: the planted world's embedder (:mod:`sieve.synthetic.backends`, a plugin listed in
  :data:`sieve.backends.PLUGINS`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from . import BackendError, Registry, import_factory
from .refs import parse_ref

log = logging.getLogger(__name__)

EMBEDDERS = Registry("embedder")


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float in [0, 1] (any H, W) -> [B, dim] float32, L2-normalised, on the CPU."""
        ...

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """N strings -> [N, dim] float32, L2-normalised, on the CPU."""
        ...


def load_embedder(spec: dict[str, Any], device: torch.device | str = "cpu") -> Embedder:
    """The one entry point: config ``embedder:`` spec -> Embedder."""
    return EMBEDDERS.get(spec.get("source"))(spec, torch.device(device))


def embedder_image_size(embedder: Any, default: int = 224) -> int:
    """The square input side an embedder prefers (``image_size`` attribute), for resizing crops once."""
    size = getattr(embedder, "image_size", None)
    return int(size) if size else default


# ----------------------------------------------------------------------------------------------------------
# open_clip


class OpenClipEmbedder:
    """An open_clip model in eval mode; images are preprocessed on the device with the model's own
    settings (resize mode, size, interpolation, mean/std), so callers pass plain [0, 1] tensors."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device,
        preprocess_cfg: dict[str, Any],
    ) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        size = preprocess_cfg.get("size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = torch.tensor(preprocess_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(
            1, 3, 1, 1
        )
        self.std = torch.tensor(preprocess_cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(
            1, 3, 1, 1
        )
        self.interpolation = (
            "bicubic" if preprocess_cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear"
        )
        self.resize_mode = preprocess_cfg.get("resize_mode", "shortest")
        self.dim = int(self._text_dim())
        self.autocast = device.type == "cuda"
        self.autocast_dtype = (
            torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
        )

    def _text_dim(self) -> int:
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1]

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        s = self.image_size
        h, w = x.shape[-2:]
        if (h, w) != (s, s):
            if self.resize_mode == "squash":
                x = F.interpolate(
                    x, size=(s, s), mode=self.interpolation, antialias=True, align_corners=False
                )
            else:  # shortest: short side to s, then centre crop (open_clip's default for CLIP)
                scale = s / min(h, w)
                nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
                x = F.interpolate(
                    x, size=(nh, nw), mode=self.interpolation, antialias=True, align_corners=False
                )
                top, left = (nh - s) // 2, (nw - s) // 2
                x = x[..., top : top + s, left : left + s]
        x = x.clamp(0, 1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_images expects [B, 3, H, W], got {tuple(images.shape)}")
        x = self._prepare(images)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast):
            z = self.model.encode_image(x)
        return F.normalize(z.float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast):
            z = self.model.encode_text(tokens)
        return F.normalize(z.float(), dim=-1).cpu()


def register_model_config(arch: str, config_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Register open_clip's JSON model config at ``config_path`` under the name ``arch`` (whatever the file
    is called), through open_clip's public ``add_model_config``."""
    import open_clip

    path = Path(os.path.expanduser(str(config_path)))
    if not path.is_file():
        raise BackendError(f"embedder.model_config: file not found: {path}")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"embedder.model_config {path}: not valid JSON ({exc})") from None
    missing = [
        k for k in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(cfg, dict) or k not in cfg
    ]
    if missing:
        raise BackendError(f"embedder.model_config {path}: not an open_clip model config, missing {missing}")
    # open_clip names a config after its file stem: write a copy named after ``arch``.
    folder = Path(tempfile.mkdtemp(prefix="sieve_open_clip_"))
    (folder / f"{arch}.json").write_text(json.dumps(cfg), encoding="utf-8")
    open_clip.add_model_config(folder / f"{arch}.json")
    if arch not in open_clip.list_models():
        raise BackendError(f"embedder.model_config {path}: open_clip did not register it as {arch!r}")
    return cfg


def _check_offline_tag(arch: str, tag: str) -> None:
    """Offline jobs: fail at once if a pretrained tag's weights are not cached."""
    from open_clip.pretrained import get_pretrained_cfg, has_hf_hub

    from .offline import is_offline, require_hub, require_online

    if not is_offline():
        return
    cfg = get_pretrained_cfg(arch, tag)
    if cfg.get("hf_hub") and has_hf_hub():
        require_hub(os.path.split(cfg["hf_hub"])[0], f"open_clip weights {arch}/{tag}")
    elif cfg.get("url"):
        cached = (Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])).is_file()
        require_online(cfg["url"], f"open_clip weights {arch}/{tag}", cached=cached)


def _pretrained_file_or_tag(arch: str, pretrained: str) -> str:
    """``embedder.pretrained`` as open_clip takes it: a tag of ``arch`` (checked against the cache offline), or
    the path of a local checkpoint (:func:`~.refs.parse_ref`, names without a ``/`` being tags; a tag wins over a
    file of the same name unless ``file:`` says otherwise)."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch) if arch in open_clip.list_models() else []
    ref = parse_ref(pretrained, hub_ids=False)
    if pretrained in tags and not ref.explicit:
        _check_offline_tag(arch, pretrained)
        return pretrained
    if ref.kind == "hub":
        raise BackendError(
            f"embedder.pretrained {pretrained!r}: open_clip takes hub models in embedder.arch "
            "('hf-hub:owner/name'), not in pretrained"
        )
    if ref.kind == "path":
        path = ref.path
        if not path.is_file():
            raise BackendError(f"embedder.pretrained: checkpoint file not found: {path}")
        return str(path)
    raise BackendError(
        f"embedder.pretrained {pretrained!r} is neither a pretrained tag of {arch!r} "
        f"(known: {', '.join(tags) or 'none'}) nor an existing file"
    )


def load_open_clip(
    arch: str,
    pretrained: str | None = None,
    model_config: str | None = None,
    device: torch.device | str = "cpu",
) -> OpenClipEmbedder:
    """One loader for hub tags and local files: (model, tokenizer, preprocessing) -> :class:`OpenClipEmbedder`.

    ``pretrained``: a tag known to open_clip for ``arch`` (downloaded once, cached), a local checkpoint file
    (loaded with ``weights_only=True``), or None for random weights. ``model_config``: a JSON config file
    registered under ``arch`` first."""
    import open_clip

    device = torch.device(device)
    if not arch:
        raise BackendError("embedder: source open_clip needs 'arch' (e.g. ViT-B-16)")
    if model_config:
        register_model_config(arch, model_config)
    elif arch not in open_clip.list_models() and not arch.startswith(("hf-hub:", "local-dir:")):
        close = [m for m in open_clip.list_models() if arch.lower()[:5] in m.lower()][:8]
        raise BackendError(
            f"embedder.arch {arch!r} is not an open_clip architecture"
            + (f" (did you mean {close}?)" if close else "")
            + "; for a custom one also give embedder.model_config: path/to/arch.json"
        )
    if pretrained:
        pretrained = _pretrained_file_or_tag(arch, pretrained)
    else:
        log.warning("embedder %s: no pretrained weights, random initialisation", arch)
    try:
        model = open_clip.create_model(arch, pretrained=pretrained or None, device=device)
    except RuntimeError as exc:
        raise BackendError(f"embedder {arch!r} with pretrained={pretrained!r}: {exc}") from exc
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(arch)
    pre = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    name = f"open_clip:{arch}:{os.path.basename(pretrained) if pretrained else 'random'}"
    return OpenClipEmbedder(name, model, tokenizer, device, pre)


@EMBEDDERS.register("open_clip")
def _open_clip(spec: dict[str, Any], device: torch.device) -> Embedder:
    return load_open_clip(spec.get("arch", ""), spec.get("pretrained"), spec.get("model_config"), device)


# ----------------------------------------------------------------------------------------------------------
# python


@EMBEDDERS.register("python")
def _python(spec: dict[str, Any], device: torch.device) -> Embedder:
    if "factory" not in spec:
        raise BackendError("embedder: source python needs 'factory: package.module:function'")
    fn = import_factory(spec["factory"], "embedder factory")
    kwargs = dict(spec.get("kwargs", {}))
    if "device" in inspect.signature(fn).parameters:
        kwargs.setdefault("device", device)
    emb = fn(**kwargs)
    missing = [a for a in ("encode_images", "encode_text", "dim") if not hasattr(emb, a)]
    if missing:
        raise BackendError(
            f"embedder factory {spec['factory']!r} returned {type(emb).__name__} without {missing}"
        )
    if not getattr(emb, "name", None):
        try:
            emb.name = spec["factory"]
        except AttributeError:
            pass
    return emb
