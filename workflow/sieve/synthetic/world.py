"""The world's spec (a user-editable YAML file) and its renderer.

The renderer is the world's only way of making pictures: probe scenes (0..3 objects with their ground
truth) and generated images of a prompt both go through :func:`draw_object`, so what the model was built to
see, what the probe shows and what the generator draws are the same thing by construction.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw

KNOWN_SHAPES = ("circle", "square", "triangle", "star")
KNOWN_TEXTURES = ("stripes", "dots", "checkerboard")
KINDS = ("detector", "polysemantic", "attribute", "redundant", "promiscuous", "dead")
# words of a prompt that name a texture (the concept list uses the first form)
TEXTURE_WORDS = {
    "stripes": "stripes",
    "stripe": "stripes",
    "striped": "stripes",
    "dots": "dots",
    "dot": "dots",
    "dotted": "dots",
    "spotted": "dots",
    "checkerboard": "checkerboard",
    "checkered": "checkerboard",
    "checker": "checkerboard",
    "checkers": "checkerboard",
    "chequered": "checkerboard",
}
BLACK = 0.05
WHITE = 0.95
SUPERSAMPLE = 4


class SpecError(ValueError):
    """The world spec is wrong: the message names the file, the key and the problem."""


@dataclass(frozen=True)
class Neuron:
    index: int
    kind: str
    concepts: tuple[str, ...]


@dataclass(frozen=True)
class World:
    """A parsed, validated world spec."""

    source: str  # "default" (the packaged world), the spec file's path, or "<dict>"
    image_size: int
    colours: dict[str, tuple[float, float, float]]
    shapes: tuple[str, ...]
    textures: tuple[str, ...]
    texture_period: int
    sizes: tuple[int, ...]
    generated_size: int
    background_level: tuple[float, float]
    noise: float
    max_objects: int
    gap: int
    distractors: tuple[str, ...]
    neurons: tuple[Neuron, ...]
    raw: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)

    # ------------------------------------------------------------------ vocabulary
    @property
    def object_concepts(self) -> list[str]:
        """What a probe scene can hold: every colour x shape, and every texture."""
        return [f"{c} {s}" for c in self.colours for s in self.shapes] + list(self.textures)

    def concept_list(self) -> list[str]:
        """The world's concept set: colour x shape, colours, shapes, textures, then distractor words."""
        out = self.object_concepts[: len(self.colours) * len(self.shapes)]
        out += list(self.colours) + list(self.shapes) + list(self.textures) + list(self.distractors)
        seen: set[str] = set()
        return [c for c in out if not (c in seen or seen.add(c))]

    def parse(self, prompt: str) -> dict[str, str | None]:
        """Prompt -> {colour, shape, texture}; unknown words are ignored (None where nothing is named)."""
        words = re.findall(r"[a-z]+", prompt.lower())
        colour = shape = texture = None
        for w in words:
            base = w[:-1] if w.endswith("s") and w[:-1] in self.shapes else w
            if colour is None and w in self.colours:
                colour = w
            elif shape is None and base in self.shapes:
                shape = base
            elif texture is None and TEXTURE_WORDS.get(w) in self.textures:
                texture = TEXTURE_WORDS[w]
        return {"colour": colour, "shape": shape, "texture": texture}

    def all_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.sizes) | {self.generated_size}))


def _err(source: str, key: str, msg: str) -> SpecError:
    return SpecError(f"synthetic world spec {source}: {key}: {msg}")


PACKAGED = "default"  # the name of the packaged world, in the config and in what the results record


def is_packaged(spec: str | os.PathLike[str] | None) -> bool:
    """Whether a spec names the packaged world (``"default"``, or no spec at all) rather than a file."""
    return spec in (None, "", PACKAGED)


def resolve_spec_path(spec: str | os.PathLike[str] | None) -> str:
    """``None`` or ``"default"`` -> the packaged default.yaml; otherwise a path that must exist."""
    if is_packaged(spec):
        return str(resources.files("sieve.synthetic").joinpath("default.yaml"))
    path = Path(os.path.expanduser(str(spec)))
    if not path.is_file():
        raise SpecError(f"synthetic world spec not found: {path} (use 'default' for the packaged world)")
    return str(path)


def load_world(spec: str | os.PathLike[str] | dict[str, Any] | None = None) -> World:
    """Read and validate a world spec (a path, ``"default"``/None, or an already-parsed dict). The packaged world's
    ``source`` is ``"default"``, not the file's path: results record it, and the path changes when the checkout
    moves or the package is reinstalled."""
    if isinstance(spec, dict):
        return _parse(spec, "<dict>")
    path = resolve_spec_path(spec)
    return _load_cached(path, os.path.getmtime(path), PACKAGED if is_packaged(spec) else path)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime: float, name: str) -> World:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise SpecError(f"synthetic world spec {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"synthetic world spec {path}: must be a mapping of keys, got {type(raw).__name__}")
    return _parse(raw, path, name)


def _parse(raw: dict[str, Any], src: str, name: str | None = None) -> World:
    """Validate a spec, section by section; keys it leaves out come from the packaged default world. ``src`` names
    the file in errors, ``name`` (default ``src``) is the world's ``source``."""
    with resources.files("sieve.synthetic").joinpath("default.yaml").open(encoding="utf-8") as fh:
        default_raw: dict[str, Any] = yaml.safe_load(fh)
    known = set(default_raw) | {"neurons"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _err(src, unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    get = {**default_raw, **raw}.get
    size = _parse_image_size(src, get("image_size"))
    colours = _parse_colours(src, get("colours"))
    shapes, textures = _parse_shapes_textures(src, get("shapes"), get("textures"))
    period = _parse_texture_period(src, get("texture_period"))
    sizes, gen = _parse_sizes(src, get("sizes"), get("generated_size"), size)
    level, noise = _parse_background(src, get("background") or {})
    max_obj, gap = _parse_scenes(src, get("scenes") or {})
    world = World(
        source=name or src,
        image_size=size,
        colours=colours,
        shapes=shapes,
        textures=textures,
        texture_period=period,
        sizes=sizes,
        generated_size=gen,
        background_level=level,
        noise=noise,
        max_objects=max_obj,
        gap=gap,
        distractors=tuple(str(d) for d in (get("distractors") or ())),
        neurons=(),
        raw=raw,
    )
    neurons = _parse_neurons(src, raw.get("neurons", default_raw.get("neurons")), world)
    return World(**{**world.__dict__, "neurons": neurons})


def _parse_image_size(src: str, size: Any) -> int:
    if not isinstance(size, int) or not 24 <= size <= 512:
        raise _err(src, "image_size", f"must be an integer in 24..512, got {size!r}")
    return size


def _parse_colours(src: str, colours_raw: Any) -> dict[str, tuple[float, float, float]]:
    """Colour names -> RGB, each saturated enough and far enough from the others to be told apart."""
    if not isinstance(colours_raw, dict) or not colours_raw:
        raise _err(src, "colours", "must be a non-empty mapping name: [r, g, b]")
    colours: dict[str, tuple[float, float, float]] = {}
    for name, rgb in colours_raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z]+", name):
            raise _err(src, f"colours.{name}", "colour names are single lowercase words")
        if (
            not isinstance(rgb, (list, tuple))
            or len(rgb) != 3
            or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in rgb)
        ):
            raise _err(src, f"colours.{name}", f"must be [r, g, b] with values in [0, 1], got {rgb!r}")
        rgb_t = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
        if max(rgb_t) - min(rgb_t) < 0.4:
            raise _err(
                src,
                f"colours.{name}",
                "too grey (max - min channel < 0.4): it would vanish in the "
                "background or the black/white textures",
            )
        for other, orgb in colours.items():
            if sum(abs(a - b) for a, b in zip(rgb_t, orgb, strict=True)) < 0.5:
                raise _err(src, f"colours.{name}", f"too close to {other} (L1 distance < 0.5)")
        colours[name] = rgb_t
    return colours


def _parse_shapes_textures(
    src: str, shapes_raw: Any, textures_raw: Any
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    shapes = tuple(shapes_raw or ())
    bad = [s for s in shapes if s not in KNOWN_SHAPES]
    if not shapes or bad:
        raise _err(
            src,
            "shapes",
            f"unknown shape {bad[0]!r} (known: {', '.join(KNOWN_SHAPES)})"
            if bad
            else "at least one shape is needed",
        )
    textures = tuple(textures_raw or ())
    bad = [t for t in textures if t not in KNOWN_TEXTURES]
    if bad:
        raise _err(src, "textures", f"unknown texture {bad[0]!r} (known: {', '.join(KNOWN_TEXTURES)})")
    return shapes, textures


def _parse_texture_period(src: str, period: Any) -> int:
    if not isinstance(period, int) or period < 4 or period % 4:
        raise _err(src, "texture_period", f"must be a multiple of 4 (>= 4), got {period!r}")
    return period


def _parse_sizes(src: str, sizes: Any, gen: Any, image_size: int) -> tuple[tuple[int, ...], int]:
    """Probe object sizes (odd, >= 7) and the larger size of a generated image's one object."""
    if (
        not isinstance(sizes, list)
        or not sizes
        or not all(isinstance(s, int) and s % 2 == 1 and 7 <= s for s in sizes)
    ):
        raise _err(src, "sizes", f"must be a list of odd integers >= 7, got {sizes!r}")
    if not isinstance(gen, int) or gen % 2 == 0 or gen <= max(sizes) or gen > image_size - 4:
        raise _err(
            src,
            "generated_size",
            f"must be an odd integer larger than every probe size "
            f"({max(sizes)}) and at most image_size - 4 ({image_size - 4}), got {gen!r}",
        )
    return tuple(sizes), gen


def _parse_background(src: str, bg: dict[str, Any]) -> tuple[tuple[float, float], float]:
    level = bg.get("level", [0.4, 0.6])
    noise = bg.get("noise", 0.03)
    if not isinstance(level, list) or len(level) != 2 or not 0.25 <= level[0] <= level[1] <= 0.75:
        raise _err(src, "background.level", f"must be [lo, hi] within [0.25, 0.75], got {level!r}")
    if not isinstance(noise, (int, float)) or not 0 <= noise <= 0.1:
        raise _err(src, "background.noise", f"must be a number in [0, 0.1], got {noise!r}")
    return (float(level[0]), float(level[1])), float(noise)


def _parse_scenes(src: str, sc: dict[str, Any]) -> tuple[int, int]:
    max_obj = sc.get("max_objects", 3)
    gap = sc.get("gap", 3)
    if not isinstance(max_obj, int) or not 0 <= max_obj <= 8:
        raise _err(src, "scenes.max_objects", f"must be an integer in 0..8, got {max_obj!r}")
    if not isinstance(gap, int) or gap < 3:
        raise _err(src, "scenes.gap", f"must be an integer >= 3, got {gap!r}")
    return max_obj, gap


def _parse_neurons(src: str, neurons_raw: Any, world: World) -> tuple[Neuron, ...]:
    if not isinstance(neurons_raw, list) or not neurons_raw:
        raise _err(src, "neurons", "must be a non-empty list of {kind: ...} entries")
    objects = set(world.object_concepts)
    neurons = []
    for i, n in enumerate(neurons_raw):
        key = f"neurons[{i}]"
        _check_neuron_entry(src, key, n)
        neurons.append(Neuron(i, n["kind"], _neuron_concepts(src, key, n, world, objects)))
    return tuple(neurons)


def _check_neuron_entry(src: str, key: str, n: Any) -> None:
    if not isinstance(n, dict) or n.get("kind") not in KINDS:
        raise _err(src, key, f"needs kind: one of {', '.join(KINDS)}; got {n!r}")
    extra = sorted(set(n) - {"kind", "concept", "concepts"})
    if extra:
        raise _err(src, f"{key}.{extra[0]}", "unknown key (a neuron has kind, concept or concepts)")


def _neuron_concepts(
    src: str, key: str, n: dict[str, Any], world: World, objects: set[str]
) -> tuple[str, ...]:
    """The planted concepts of one neuron entry, by kind (detector: one object, polysemantic: two, attribute:
    a colour, redundant, promiscuous and dead: none)."""
    kind = n["kind"]
    if kind == "detector":
        c = n.get("concept")
        if c not in objects:
            raise _err(
                src,
                f"{key}.concept",
                f"{c!r} is not a colour x shape or texture of this world (e.g. {world.object_concepts[0]!r})",
            )
        return (c,)
    if kind == "polysemantic":
        cs = n.get("concepts")
        if not isinstance(cs, list) or len(cs) != 2 or cs[0] == cs[1]:
            raise _err(
                src, f"{key}.concepts", f"a polysemantic neuron needs two different concepts, got {cs!r}"
            )
        for c in cs:
            if c not in objects:
                raise _err(src, f"{key}.concepts", f"{c!r} is not a colour x shape or texture of this world")
        return (cs[0], cs[1])
    if kind == "attribute":
        c = n.get("concept")
        if c not in world.colours:
            raise _err(
                src,
                f"{key}.concept",
                f"an attribute neuron names a colour ({', '.join(world.colours)}), got {c!r}",
            )
        return (c,)
    if "concept" in n or "concepts" in n:
        raise _err(src, key, f"a {kind} neuron has no concept")
    return ()


# ------------------------------------------------------------------------------------------------ rendering


@lru_cache(maxsize=256)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Coverage in [0, 1] of ``shape`` drawn in a ``size`` x ``size`` box (supersampled, deterministic)."""
    s = size * SUPERSAMPLE
    img = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse([0, 0, s - 1, s - 1], fill=255)
    elif shape == "square":
        d.rectangle([0, 0, s - 1, s - 1], fill=255)
    elif shape == "triangle":
        d.polygon([(s / 2, 0), (s - 1, s - 1), (0, s - 1)], fill=255)
    elif shape == "star":
        r_out, r_in = s / 2, s / 2 * 0.4
        cx, cy = s / 2, s / 2 + (r_out - r_out * np.cos(np.pi / 5)) / 2
        pts = []
        for k in range(10):
            r = r_out if k % 2 == 0 else r_in
            a = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + r * np.cos(a), cy + r * np.sin(a)))
        d.polygon(pts, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    a.setflags(write=False)
    return a


def texture_pattern(texture: str, h: int, w: int, period: int) -> np.ndarray:
    """Luminance pattern (BLACK/WHITE) of a texture, phase anchored at the patch's top-left corner."""
    y, x = np.mgrid[0:h, 0:w]
    half = period // 2
    if texture == "stripes":
        dark = (y % period) < half
    elif texture == "checkerboard":
        dark = ((y // half) + (x // half)) % 2 == 0
    elif texture == "dots":
        cy = (y % period) - (period - 1) / 2
        cx = (x % period) - (period - 1) / 2
        dark = cy**2 + cx**2 <= (period * 0.3) ** 2
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return np.where(dark, BLACK, WHITE).astype(np.float32)


def background(world: World, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    s = size or world.image_size
    lo, hi = world.background_level
    return np.full((s, s, 3), rng.uniform(lo, hi), dtype=np.float32)


def draw_object(
    canvas: np.ndarray,
    world: World,
    top: int,
    left: int,
    size: int,
    colour: str | None,
    shape: str | None,
    texture: str | None,
) -> None:
    """Paint one object into ``canvas`` (H, W, 3 float) in place. A texture without a shape is a square patch;
    a textured object is black/white (dark parts in ``colour`` if one is named)."""
    cover = shape_mask(shape, size) if shape else np.ones((size, size), np.float32)
    if texture:
        lum = texture_pattern(texture, size, size, world.texture_period)
        if colour:
            dark = np.array(world.colours[colour], np.float32)
            t = (lum - BLACK) / (WHITE - BLACK)
            rgb = dark[None, None, :] * (1 - t[..., None]) + WHITE * t[..., None]
        else:
            rgb = np.repeat(lum[..., None], 3, axis=2)
    else:
        rgb = np.broadcast_to(np.array(world.colours[colour], np.float32), (size, size, 3))
    region = canvas[top : top + size, left : left + size]
    region[...] = region * (1 - cover[..., None]) + rgb * cover[..., None]


def finish(canvas: np.ndarray, world: World, rng: np.random.Generator) -> np.ndarray:
    """Add the pixel noise, clip and quantise to 8 bits (what a saved PNG holds)."""
    if world.noise > 0:
        canvas = canvas + rng.normal(0.0, world.noise, canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)


def _seed_words(*parts: Any) -> list[int]:
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _place(
    rng: np.random.Generator,
    image: int,
    size: int,
    boxes: list[tuple[int, int, int]],
    gap: int,
    tries: int = 200,
) -> tuple[int, int] | None:
    for _ in range(tries):
        top = int(rng.integers(1, image - size))
        left = int(rng.integers(1, image - size))
        if all(
            top + size + gap <= t or t + s + gap <= top or left + size + gap <= lft or lft + s + gap <= left
            for t, lft, s in boxes
        ):
            return top, left
    return None


def place_object(
    canvas: np.ndarray,
    world: World,
    rng: np.random.Generator,
    concept: str,
    size: int,
    boxes: list[tuple[int, int, int]],
) -> tuple[dict[str, Any], tuple[int, int]] | None:
    """Draw ``concept`` at a free place of ``canvas`` (``gap`` pixels from every box in ``boxes``, which it
    joins) and return its parsed parts and (top, left); None when it does not fit. Probe scenes and the trained
    world's pictures place their objects through this one step."""
    pos = _place(rng, world.image_size, size, boxes, world.gap)
    if pos is None:
        return None
    parts = world.parse(concept)
    draw_object(canvas, world, pos[0], pos[1], size, parts["colour"], parts["shape"], parts["texture"])
    boxes.append((pos[0], pos[1], size))
    return parts, pos


def render_scene(world: World, seed: int, index: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Probe scene ``index`` of ``seed``: (uint8 H x W x 3, objects with concept, box [top, left, size])."""
    rng = np.random.default_rng(_seed_words("scene", seed, index))
    canvas = background(world, rng)
    n = int(rng.integers(0, world.max_objects + 1))
    objects: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int]] = []
    used_colours: set[str] = set()
    used_textures: set[str] = set()
    pool = world.object_concepts
    for _ in range(n):
        free = [
            c
            for c in pool
            if (c in world.textures and c not in used_textures)
            or (c not in world.textures and c.split(" ", 1)[0] not in used_colours)
        ]
        if not free:
            break
        concept = free[int(rng.integers(len(free)))]
        size = int(world.sizes[int(rng.integers(len(world.sizes)))])
        placed = place_object(canvas, world, rng, concept, size, boxes)
        if placed is None:
            continue
        parts, pos = placed
        if parts["texture"]:
            used_textures.add(parts["texture"])
        else:
            used_colours.add(parts["colour"])  # type: ignore[arg-type]
        objects.append({"concept": concept, **parts, "box": [pos[0], pos[1], size]})
    return finish(canvas, world, rng), objects


def render_prompt(
    world: World, prompt: str, seed: int, resolution: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The world's text-to-image generator: one prototypical object of the prompt at ``generated_size``.

    A colour without a shape gets a random shape, a shape without a colour a random colour; a prompt with no
    word of the world (``"dog"``) gives a bare background: a fair negative, never an error."""
    rng = np.random.default_rng(_seed_words("prompt", prompt, seed))
    parts = world.parse(prompt)
    canvas = background(world, rng)
    colour, shape, texture = parts["colour"], parts["shape"], parts["texture"]
    drawn: dict[str, Any] = {"colour": None, "shape": None, "texture": None, "box": None}
    if colour or shape or texture:
        if not texture:
            colour = colour or list(world.colours)[int(rng.integers(len(world.colours)))]
            shape = shape or world.shapes[int(rng.integers(len(world.shapes)))]
        size = world.generated_size
        top = int(rng.integers(1, world.image_size - size))
        left = int(rng.integers(1, world.image_size - size))
        draw_object(canvas, world, top, left, size, colour, shape, texture)
        drawn = {"colour": colour, "shape": shape, "texture": texture, "box": [top, left, size]}
    img = finish(canvas, world, rng)
    if resolution and resolution != world.image_size:
        img = np.asarray(Image.fromarray(img).resize((resolution, resolution), Image.BILINEAR))
    return img, drawn
