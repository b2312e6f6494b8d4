"""Target vision models: one loader per ``source``, one rule for the analysed layer.

Every loader returns ``(model, Preprocess)``; :func:`load_model` then resolves the layer and wraps both in a
:class:`LoadedModel` that records, for any batch, each neuron's pooled activation and its spatial map.

Layer rule (``layer: penultimate``):

- a model may name its own layer with an attribute ``sieve_penultimate = "module.name"`` (the synthetic
  world and python factories can use this);
- ResNet-like models (torchvision/timm ResNet, ResNeXt, Wide ResNet, Places365 ResNets): ``layer4``,
  map C x 7 x 7, pooled value = spatial mean (what ``avgpool`` gives);
- Vision Transformers (torchvision ``VisionTransformer``: ``encoder.ln``; timm ``VisionTransformer``:
  ``norm``): the final encoder output after its LayerNorm; pooled value = class token, map = patch tokens
  as a square grid (14 x 14 for ViT-B/16 at 224);
- any other model: the last top-level child module (or child of ``features``) whose output is a 4-D map
  with more than one spatial position, found by tracing one dummy batch (DenseNet, VGG, EfficientNet,
  MobileNet, ConvNeXt ...);
- otherwise a clear error listing the module names to pick from.

``source: torchvision`` passes ``kwargs`` to the architecture's builder; ``arch: ResNet`` or
``arch: VisionTransformer`` builds torchvision's class itself from ``kwargs`` (a ResNet with one block per
stage, a small ViT: see :func:`build_torchvision_class`), and the rules above apply to it unchanged.

Any module name can be given instead (``layer: layer3``); a 4-D output is a conv map (pooled = mean),
a 3-D ``[B, tokens, D]`` output is a transformer (pooled = first token, map = remaining tokens as a grid),
a 2-D ``[B, C]`` output (e.g. ``fc``) is one value per neuron (map 1 x 1).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import schema_default
from . import TORCHVISION_CLASSES, BackendError, Registry, import_factory
from .preprocess import Preprocess
from .refs import parse_ref

log = logging.getLogger(__name__)

MODELS = Registry("model")

PLACES365_URL = "http://places2.csail.mit.edu/models_places365/{arch}_places365.pth.tar"


@dataclass
class LoadedModel:
    """A model in eval mode on its device, with the analysed layer resolved."""

    name: str
    model: nn.Module
    layer: str
    preprocess: Preprocess
    device: torch.device
    dtype: torch.dtype = torch.float32
    info: dict[str, Any] = field(default_factory=dict)
    _captured: list[torch.Tensor] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        module = dict(self.model.named_modules())[self.layer]
        module.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._captured.append(output)

    @torch.inference_mode()
    def activations(self, x: torch.Tensor, maps: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised input batch -> (pooled [B, C] float32, maps [B, C, h, w] float32 or None)."""
        self._captured.clear()
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.dtype != torch.float32 and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            self.model(x)
        if not self._captured:
            raise BackendError(
                f"model {self.name!r}: layer {self.layer!r} was not reached by the forward pass"
            )
        out = self._captured[-1].float()
        self._captured.clear()
        pooled, fmap = split_layer_output(out, self.model)
        return pooled, (fmap if maps else None)

    @property
    def n_neurons(self) -> int:
        return int(self.info["n_neurons"])

    @property
    def map_size(self) -> tuple[int, int]:
        return tuple(self.info["map_size"])  # type: ignore[return-value]


def split_layer_output(
    out: torch.Tensor, model: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer output -> (pooled [B, C], map [B, C, h, w]) following the module docstring's rule."""
    if out.dim() == 4:
        return out.mean(dim=(2, 3)), out
    if out.dim() == 3:
        n_prefix = int(getattr(model, "num_prefix_tokens", 1)) if model is not None else 1
        cls_tok = out[:, 0]
        patches = out[:, n_prefix:]
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise BackendError(f"token layer has {patches.shape[1]} patch tokens, not a square grid")
        fmap = patches.transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)
        return cls_tok, fmap
    if out.dim() == 2:
        return out, out[:, :, None, None]
    raise BackendError(f"cannot interpret a layer output of shape {tuple(out.shape)}")


# ----------------------------------------------------------------------------------------------------------
# checkpoints


def load_checkpoint(path_or_url: str) -> dict[str, torch.Tensor]:
    """A state dict from a local file or URL (cached in TORCH_HOME), always with ``weights_only=True``.

    Accepts bare state dicts and the common wrappers (``state_dict``, ``model``), and strips a
    ``module.`` prefix (DataParallel checkpoints such as CSAIL's Places365 ones). ``path_or_url`` is read by
    :func:`~sieve.backends.refs.parse_ref` (a URL, or a local file, ``file:`` prefix allowed)."""
    ref = parse_ref(path_or_url, hub_ids=False)
    if ref.kind == "hub":
        raise BackendError(
            f"checkpoint {path_or_url!r}: a hub repository is not a checkpoint file (give a local "
            "file or a URL)"
        )
    if ref.kind == "url":
        from .offline import require_online

        require_online(path_or_url, "model checkpoint")
        obj = torch.hub.load_state_dict_from_url(
            path_or_url, map_location="cpu", weights_only=True, check_hash=False, progress=False
        )
    else:
        path = Path(ref.value)
        if not path.is_file():
            raise BackendError(f"checkpoint file not found: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors, truncated files
            raise BackendError(
                f"cannot read checkpoint {path} (loaded with weights_only=True): {exc}"
            ) from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackendError(f"checkpoint {path_or_url} does not hold a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], where: str, arch: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            k = sorted(shapes)[0]
            parts.append(
                f"shape mismatch at {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            )
        raise BackendError(
            f"checkpoint {where} does not fit arch {arch!r}: " + ("; ".join(parts) or str(exc))
        ) from None


# ----------------------------------------------------------------------------------------------------------
# sources


@MODELS.register("torchvision")
def _torchvision(spec: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    import torchvision

    arch = spec.get("arch")
    if not arch:
        raise BackendError("models: source torchvision needs 'arch' (e.g. resnet50)")
    weights = spec.get("weights")
    kwargs: dict[str, Any] = dict(spec.get("kwargs") or {})
    if spec.get("num_classes"):
        kwargs["num_classes"] = int(spec["num_classes"])
    if arch in TORCHVISION_CLASSES:
        model = build_torchvision_class(arch, kwargs)
        if weights:
            load_state_into(model, load_checkpoint(weights), weights, arch)
        size = int(spec.get("input_size", kwargs.get("image_size", 224)))
        return model, Preprocess(input_size=size, resize=int(round(size / 0.875)))
    available = torchvision.models.list_models()
    if arch not in available:
        close = [a for a in available if arch.split("_")[0] in a][:8]
        raise BackendError(
            f"unknown torchvision arch {arch!r}" + (f" (did you mean {close}?)" if close else "")
        )
    if weights and parse_ref(weights, hub_ids=False).kind == "name":  # a weights name, else a file or URL
        from .offline import require_online

        try:
            w = torchvision.models.get_weight(
                weights if "." in weights else f"{_weights_enum(arch)}.{weights}"
            )
        except (ValueError, KeyError, AttributeError) as exc:
            raise BackendError(f"unknown torchvision weights {weights!r} for arch {arch!r}: {exc}") from None
        require_online(w.url, f"torchvision weights {weights}")
        model = torchvision.models.get_model(arch, weights=w, **kwargs)
        t = w.transforms()
        pre = Preprocess(
            input_size=int(t.crop_size[0]),
            resize=int(t.resize_size[0]),
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=t.interpolation.value,
        )
        return model, pre
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    if weights:
        load_state_into(model, load_checkpoint(weights), weights, arch)
    size = int(spec.get("input_size", 224))
    return model, Preprocess(input_size=size, resize=int(round(size / 0.875)))


def build_torchvision_class(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """One of torchvision's own model classes built from its constructor's keyword arguments.

    For architectures no registered builder makes (a ResNet with one block per stage, a ViT of 4 blocks of
    width 128): ``arch: ResNet`` takes ``block`` by name (``BasicBlock`` or ``Bottleneck``) and ``layers``;
    ``arch: VisionTransformer`` takes ``image_size``, ``patch_size``, ``num_layers``, ``num_heads``,
    ``hidden_dim``, ``mlp_dim``. The layer rules (``layer4`` / ``encoder.ln``, ``fc`` / ``heads.head``) apply
    as to the registered builders, which make these very classes."""
    from torchvision.models import resnet, vision_transformer

    kw = dict(kwargs)
    try:
        if arch == "ResNet":
            blocks = {"BasicBlock": resnet.BasicBlock, "Bottleneck": resnet.Bottleneck}
            if kw.get("block") not in blocks:
                raise BackendError(
                    f"arch ResNet: kwargs.block must be one of {', '.join(blocks)}, got {kw.get('block')!r}"
                )
            kw["block"] = blocks[kw["block"]]
            return resnet.ResNet(**kw)
        if arch == "VisionTransformer":
            return vision_transformer.VisionTransformer(**kw)
    except (TypeError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, BackendError):
            raise
        raise BackendError(f"arch {arch!r}: cannot build it from kwargs {kwargs}: {exc}") from None
    raise BackendError(f"arch {arch!r} is not one of torchvision's classes {TORCHVISION_CLASSES}")


def _weights_enum(arch: str) -> str:
    import torchvision

    return type(torchvision.models.get_model_weights(arch).DEFAULT).__name__


@MODELS.register("timm")
def _timm(spec: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    import timm
    import timm.data

    arch = spec.get("arch")
    if not arch:
        raise BackendError("models: source timm needs 'arch' (e.g. vit_base_patch16_224)")
    if not timm.is_model(arch):
        raise BackendError(f"unknown timm arch {arch!r}")
    weights = spec.get("weights")
    kwargs: dict[str, Any] = {}
    if spec.get("num_classes"):
        kwargs["num_classes"] = int(spec["num_classes"])
    if weights in (None, "none", "random"):
        model = timm.create_model(arch, pretrained=False, **kwargs)
    elif weights == "pretrained":
        from .offline import require_timm

        require_timm(arch)
        model = timm.create_model(arch, pretrained=True, **kwargs)
    else:
        model = timm.create_model(arch, pretrained=False, **kwargs)
        load_state_into(model, load_checkpoint(weights), weights, arch)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    pre = Preprocess(
        input_size=size,
        resize=int(math.floor(size / cfg.get("crop_pct", 0.875))),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bilinear"),
    )
    return model, pre


@MODELS.register("places365")
def _places365(spec: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    """CSAIL's Places365 CNNs: torchvision arch with 365 classes, ``.pth.tar`` with a ``module.`` prefix."""
    import torchvision

    arch = spec.get("arch", "resnet18")
    if arch not in torchvision.models.list_models():
        raise BackendError(f"unknown arch {arch!r} for source places365")
    model = torchvision.models.get_model(arch, weights=None, num_classes=int(spec.get("num_classes", 365)))
    weights = spec.get("weights") or PLACES365_URL.format(arch=arch)
    load_state_into(model, load_checkpoint(weights), weights, arch)
    return model, Preprocess(input_size=224, resize=256)


@MODELS.register("python")
def _python(spec: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    if "factory" not in spec:
        raise BackendError("models: source python needs 'factory: package.module:function'")
    fn = import_factory(spec["factory"], "models factory")
    result = fn(**spec.get("kwargs", {}))
    if isinstance(result, tuple):
        model, pre = result
    else:
        model, pre = result, None
    if not isinstance(model, nn.Module):
        raise BackendError(
            f"factory {spec['factory']!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model, Preprocess.coerce(pre)


# ----------------------------------------------------------------------------------------------------------
# layer resolution


def _trace_shapes(model: nn.Module, names: list[str], size: int) -> dict[str, tuple[int, ...]]:
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for n in names:

        def hook(_m: nn.Module, _i: Any, out: Any, n: str = n) -> None:
            if isinstance(out, (tuple, list)):
                out = out[0]
            if isinstance(out, torch.Tensor):
                shapes[n] = tuple(out.shape)

        handles.append(modules[n].register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size, device=next(iter(model.parameters())).device))
    finally:
        for h in handles:
            h.remove()
    return shapes


def resolve_layer(model: nn.Module, layer: str, arch: str = "?", input_size: int = 224) -> str:
    """The module name of the analysed layer (see the module docstring for the penultimate rule)."""
    names = [n for n, _ in model.named_modules() if n]
    if layer != "penultimate":
        if layer not in dict(model.named_modules()):
            top = [n for n in names if n.count(".") <= 1]
            raise BackendError(
                f"layer {layer!r} does not exist in arch {arch!r}; valid module names include: "
                + ", ".join(top[:60])
                + (" ..." if len(top) > 60 else "")
            )
        return layer
    own = getattr(model, "sieve_penultimate", None)
    if isinstance(own, str):
        if own not in dict(model.named_modules()):
            raise BackendError(
                f"arch {arch!r}: its sieve_penultimate names {own!r}, which is not a module; "
                "valid module names include: " + ", ".join(names[:60])
            )
        return own
    children = dict(model.named_children())
    if "layer4" in children and ("fc" in children or "head" in children or "avgpool" in children):
        return "layer4"
    cls = type(model).__name__
    if cls == "VisionTransformer":
        if "encoder" in children and hasattr(children["encoder"], "ln"):
            return "encoder.ln"  # torchvision
        if "norm" in children and not isinstance(children["norm"], nn.Identity):
            return "norm"  # timm (global_pool='token')
    candidates = list(children)
    if "features" in children:
        candidates += [f"features.{n}" for n, _ in children["features"].named_children()]
    try:
        shapes = _trace_shapes(model, candidates, input_size)
    except Exception as exc:  # noqa: BLE001 - report any failure of the dummy pass
        raise BackendError(f"cannot trace arch {arch!r} to find its penultimate layer: {exc}") from exc
    order = [n for n in shapes if len(shapes[n]) == 4 and shapes[n][2] * shapes[n][3] > 1]
    if order:
        return order[-1]
    raise BackendError(
        f"no penultimate-layer rule applies to arch {arch!r} ({cls}); set 'layer:' to one of: "
        + ", ".join(names[:60])
    )


def load_model(
    name: str, spec: dict[str, Any], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """The one entry point: config spec (``source``, ``arch``, ``weights``, ``layer`` ...) -> LoadedModel."""
    source = spec.get("source")
    builder: Callable[[dict[str, Any]], tuple[nn.Module, Preprocess]] = MODELS.get(source)
    model, pre = builder(spec)
    model.eval().requires_grad_(False)
    device = torch.device(device)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    requested = spec.get("layer", schema_default("models.*.layer"))
    layer = resolve_layer(model, requested, spec.get("arch", source), pre.input_size)
    shapes = _trace_shapes(model, [layer], pre.input_size)
    if layer not in shapes:
        raise BackendError(f"model {name!r}: layer {layer!r} produced no tensor output")
    dummy = torch.zeros(shapes[layer])
    _, fmap = split_layer_output(dummy, model)
    info = {
        "model": name,
        "source": source,
        "arch": spec.get("arch", spec.get("factory", "")),
        "weights": spec.get("weights") or "",
        "layer": layer,
        "layer_requested": requested,
        "n_neurons": int(fmap.shape[1]),
        "map_size": [int(fmap.shape[2]), int(fmap.shape[3])],
        "preprocess": pre.as_dict(),
    }
    log.info(
        "model %s: %s layer %s, %d neurons, map %s",
        name,
        info["arch"],
        layer,
        info["n_neurons"],
        info["map_size"],
    )
    return LoadedModel(
        name=name, model=model, layer=layer, preprocess=pre, device=device, dtype=dtype, info=info
    )
