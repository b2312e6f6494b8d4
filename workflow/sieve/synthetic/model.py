"""The target model: a convolutional network built (not trained) from the world spec.

Every weight is set by construction, so what each neuron of the analysed layer (``neurons``, its last conv
layer) responds to is known:

1. ``colour_diff`` + ``colour``: two 1x1 conv layers computing, per palette colour, a mask that is 1 on pixels
   of that colour (L1 distance to the colour below ``R_IN``) and 0 elsewhere (beyond ``R_OUT``);
2. ``shape``: matched filters (+1 on the shape, -1 on a thin ring around it) for every shape and size on the
   union of colour masks; a response near 1 means "this shape, this size, centred here";
3. ``and``-ing the shape peak with the colour at the centre, then ``paint``: a box filter of the object's size
   spreads the peak over the object's bounding box, so every detected object lights up a box of 1s whatever
   its shape (equal response per area);
4. ``texture``: quadrature grating filters on the luminance give stripe/checker energies, and a 1x1
   nearest-prototype layer turns them into one channel per texture;
5. concept channels (colour x shape, colour, texture) are average-pooled 4x4 and ``neurons`` (1x1 conv + ReLU)
   combines them following the spec: detectors, polysemantic (two concepts), attribute (a colour),
   redundant (weak response to everything), promiscuous and dead neurons; their maps are rounded to
   multiples of :data:`MAP_STEP`, so pooled activations are exact and equal on every CPU (ties among probe
   images, which the planted world has many of, are broken by image order, not by rounding noise);
6. only when the spec has a promiscuous neuron: a ``large object`` channel, the object map (every detected
   object's box, solid or textured, whatever its colour, shape or texture) eroded by a window of
   ``max(sizes) - 2`` pixels, so it is non-zero only inside objects at least as large as the largest probe
   object, and grows with the square of the excess (a 21 px object leaves a 3 x 3 core, the generated 29 px
   one an 11 x 11 core). The promiscuous neuron reads it: it fires on any large object, which probe scenes
   rarely hold (so its median is 0 and it passes Select at any tau) and every generated picture does (so AR
   verifies whatever concept it is given). A neuron that fired on every object whatever its size could not
   pass Select here: most probe scenes hold an object, and the top 1% (three large ones) is only ~4 times
   the median scene.

The forward pass always runs in float32 (thresholds are tight), and returns each neuron's spatial mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .world import World, draw_object, shape_mask

R_IN, R_OUT = 0.22, 0.38  # colour mask: 1 below R_IN (L1 distance to the colour), 0 beyond R_OUT
SHAPE_THRESHOLD = 0.9  # matched-filter response counted as a detection (1 = perfect match)
RING = 2  # pixels of the negative ring around each shape template
RING_WEIGHT = 1.0
POOL = 4  # analysed layer: image_size / POOL squared positions
REDUNDANT_BIAS = 0.25
REDUNDANT_WEIGHT = 0.05
LARGE_OBJECT = "large object"  # the promiscuous neuron's channel (only in a world that has one)
# The analysed layer's maps are rounded to multiples of 2**-12: every pooled mean is then an exact float32 sum
# (a map holds at most 2**8 positions of at most 2**3), whatever the CPU's vector width or the order of the
# additions, so a run gives the same activations, top images and ties on every machine.
MAP_STEP = 2.0**-12


class Quantize(nn.Module):
    """Rounds to the nearest multiple of ``step`` (no parameters: the state dict is unchanged)."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x / self.step) * self.step


def concept_channels(world: World) -> list[str]:
    """Names of the concept channels, in order: colour x shape, then colours, then textures."""
    return (
        [f"{c} {s}" for c in world.colours for s in world.shapes] + list(world.colours) + list(world.textures)
    )


class PlantedNet(nn.Module):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.sieve_penultimate = "neurons"
        cols = list(world.colours)
        nc, ns = len(cols), len(world.shapes)
        self.sizes = world.all_sizes()
        self.channels = concept_channels(world)
        # 6. the large-object channel, only when a neuron reads it (the other worlds compute exactly as before)
        self.erode = 0
        if any(n.kind == "promiscuous" for n in world.neurons):
            self.erode = max(world.sizes) - 2
            self.channels = [*self.channels, LARGE_OBJECT]

        # 1. colours: |x_k - p_ck| = relu(x_k - p_ck) + relu(p_ck - x_k); mask = clamp((R_OUT - L1) / width)
        self.colour_diff = nn.Conv2d(3, 6 * nc, 1)
        self.colour = nn.Conv2d(6 * nc, nc, 1)
        w1 = torch.zeros(6 * nc, 3, 1, 1)
        b1 = torch.zeros(6 * nc)
        w2 = torch.zeros(nc, 6 * nc, 1, 1)
        b2 = torch.full((nc,), R_OUT / (R_OUT - R_IN))
        for c, name in enumerate(cols):
            for k in range(3):
                p = world.colours[name][k]
                w1[6 * c + 2 * k, k] = 1.0
                b1[6 * c + 2 * k] = -p
                w1[6 * c + 2 * k + 1, k] = -1.0
                b1[6 * c + 2 * k + 1] = p
            w2[c, 6 * c : 6 * c + 6] = -1.0 / (R_OUT - R_IN)
        self._set(self.colour_diff, w1, b1)
        self._set(self.colour, w2, b2)

        # 2. shape matched filters on the foreground (any colour), one per (size, shape), centred
        k = max(self.sizes) + 2 * RING
        self.shape = nn.Conv2d(1, len(self.sizes) * ns, k, padding=k // 2, bias=False)
        ws = torch.zeros(len(self.sizes) * ns, 1, k, k)
        for i, size in enumerate(self.sizes):
            for j, shape in enumerate(world.shapes):
                m = torch.from_numpy(np.pad(shape_mask(shape, size), RING))
                t = m - RING_WEIGHT * (1 - m)
                t = t / (m * t).sum()  # the exact object gives 1
                off = (k - m.shape[0]) // 2
                ws[i * ns + j, 0, off : off + m.shape[0], off : off + m.shape[0]] = t
        self._set(self.shape, ws)

        # 3. paint: separable box filters of each size, depthwise over (size, colour, shape) channels
        self.paint = nn.ModuleList()
        for size in self.sizes:
            conv = nn.Conv2d(nc * ns, nc * ns, (size, 1), padding=(size // 2, 0), groups=nc * ns, bias=False)
            conv2 = nn.Conv2d(nc * ns, nc * ns, (1, size), padding=(0, size // 2), groups=nc * ns, bias=False)
            self._set(conv, torch.ones_like(conv.weight))
            self._set(conv2, torch.ones_like(conv2.weight))
            self.paint.append(nn.Sequential(conv, conv2))

        # 4. textures: luminance -> grating filters -> energies -> nearest texture prototype
        self.luminance = nn.Conv2d(3, 1, 1)
        self._set(self.luminance, torch.full((1, 3, 1, 1), 1 / 3), torch.tensor([-0.5]))
        period = world.texture_period
        self.grating_pad = nn.ZeroPad2d((period // 2 - 1, period // 2, period // 2 - 1, period // 2))
        self.grating = nn.Conv2d(1, 8, period, bias=False)
        self.grating.weight.data.copy_(self._gratings(period))
        self.grating.requires_grad_(False)
        self.smooth = nn.AvgPool2d(period + 1, stride=1, padding=period // 2, count_include_pad=True)
        self.grow = nn.MaxPool2d(period - 1, stride=1, padding=period // 2 - 1)
        self.texture_diff = nn.Conv2d(3, 6 * max(1, len(world.textures)), 1)
        self.texture = nn.Conv2d(6 * max(1, len(world.textures)), max(1, len(world.textures)), 1)
        self._init_textures()

        # 5. the analysed layer
        self.pool = nn.AvgPool2d(POOL)
        n = len(world.neurons)
        self.neurons = nn.Sequential(nn.Conv2d(len(self.channels), n, 1), nn.ReLU(), Quantize(MAP_STEP))
        wn = torch.zeros(n, len(self.channels), 1, 1)
        bn = torch.zeros(n)
        index = {c: i for i, c in enumerate(self.channels)}
        for neuron in world.neurons:
            if neuron.kind in ("detector", "polysemantic", "attribute"):
                for c in neuron.concepts:
                    wn[neuron.index, index[c]] = 1.0
            elif neuron.kind == "redundant":
                wn[neuron.index, : len(concept_channels(world))] = (
                    REDUNDANT_WEIGHT  # not the large-object one
                )
                bn[neuron.index] = REDUNDANT_BIAS
            elif neuron.kind == "promiscuous":
                # a generated object's core is (g - e + 1)^2 pixels: scaled to the g^2 a detector's box gives
                core = world.generated_size - self.erode + 1
                wn[neuron.index, index[LARGE_OBJECT]] = world.generated_size**2 / core**2
            else:  # dead
                bn[neuron.index] = -1.0
        self._set(self.neurons[0], wn, bn)

    # ------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _set(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        conv.weight.data.copy_(weight)
        if bias is not None:
            conv.bias.data.copy_(bias)
        conv.requires_grad_(False)

    @staticmethod
    def _gratings(period: int) -> torch.Tensor:
        """8 kernels: horizontal-stripe (y) and vertical-stripe (x) square waves at phases 0 and a quarter
        period, and the four checker products; |responses| summed per pair are phase-invariant."""
        half, q = period // 2, period // 4
        idx = np.arange(period)

        def sq(shift: int) -> np.ndarray:
            return np.where(((idx + shift) % period) < half, 1.0, -1.0)

        y0, y1 = sq(0), sq(q)
        ks = [
            np.outer(y0, np.ones(period)),
            np.outer(y1, np.ones(period)),
            np.outer(np.ones(period), y0),
            np.outer(np.ones(period), y1),
            np.outer(y0, y0),
            np.outer(y0, y1),
            np.outer(y1, y0),
            np.outer(y1, y1),
        ]
        return torch.tensor(np.stack(ks)[:, None] / (period * period), dtype=torch.float32)

    def _energies(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, 3, H, W] energies (horizontal stripes, vertical stripes, checker)."""
        g = self.grating(self.grating_pad(self.luminance(x))).abs()
        e = torch.stack([g[:, 0] + g[:, 1], g[:, 2] + g[:, 3], g[:, 4:].sum(1)], dim=1)
        return self.smooth(e)

    def _texture_maps(self, x: torch.Tensor) -> torch.Tensor:
        tex = F.hardtanh(self.texture(F.relu(self.texture_diff(self._energies(x)))), 0.0, 1.0)
        return self.grow(tex)  # the energies fade within half a period of the patch's edge: grow it back

    def _init_textures(self) -> None:
        w = self.world
        nt = max(1, len(w.textures))
        w1 = torch.zeros(6 * nt, 3, 1, 1)
        b1 = torch.zeros(6 * nt)
        w2 = torch.zeros(nt, 6 * nt, 1, 1)
        b2 = torch.full((nt,), -1.0)  # no texture: channel always 0
        self.texture_prototypes = {}
        side = 4 * w.texture_period
        for t, name in enumerate(w.textures):
            canvas = np.full((side, side, 3), 0.5, np.float32)
            draw_object(canvas, w, 0, 0, side, None, None, name)
            x = torch.from_numpy(canvas).permute(2, 0, 1)[None]
            with torch.no_grad():
                proto = self._energies(x)[0, :, side // 2, side // 2]
            self.texture_prototypes[name] = proto.tolist()
            scale = float(proto.abs().sum())  # L1 radius relative to the prototype's own energy
            r_in, r_out = 0.2 * scale, 0.35 * scale
            for k in range(3):
                w1[6 * t + 2 * k, k] = 1.0
                b1[6 * t + 2 * k] = -proto[k]
                w1[6 * t + 2 * k + 1, k] = -1.0
                b1[6 * t + 2 * k + 1] = proto[k]
            w2[t, 6 * t : 6 * t + 6] = -1.0 / (r_out - r_in)
            b2[t] = r_out / (r_out - r_in)
        self._set(self.texture_diff, w1, b1)
        self._set(self.texture, w2, b2)
        # equal response per area: a generated patch gives the same pooled value as a solid square
        gains = torch.ones(nt)
        size = w.generated_size
        for t, name in enumerate(w.textures):
            canvas = np.full((w.image_size, w.image_size, 3), 0.5, np.float32)
            draw_object(canvas, w, 2, 2, size, None, None, name)
            x = torch.from_numpy(canvas).permute(2, 0, 1)[None]
            with torch.no_grad():
                total = float(self._texture_maps(x)[0, t].sum())
            gains[t] = size * size / max(total, 1e-6)
        self.register_buffer("texture_gain", gains.view(1, nt, 1, 1))

    # ------------------------------------------------------------------------------------------- forward
    def concept_maps(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> concept channels [B, n_channels, H, W], each ~1 on its objects' boxes."""
        nc, ns = len(self.world.colours), len(self.world.shapes)
        masks = F.hardtanh(self.colour(F.relu(self.colour_diff(x))), 0.0, 1.0)  # [B, nc, H, W]
        fg = masks.sum(1, keepdim=True).clamp(0, 1)
        resp = self.shape(fg)  # [B, S*ns, H, W]
        peaks = F.hardtanh((resp - SHAPE_THRESHOLD) / (1 - SHAPE_THRESHOLD), 0.0, 1.0)
        centre = F.avg_pool2d(masks, 3, stride=1, padding=1)  # colour at centre
        b, _, h, w = x.shape
        per_size = []
        for i, paint in enumerate(self.paint):
            p = peaks[:, i * ns : (i + 1) * ns]  # [B, ns, H, W]
            anded = F.relu(p[:, None] + centre[:, :, None] - 1).reshape(b, nc * ns, h, w)  # colour x shape
            per_size.append(F.hardtanh(paint(anded), 0.0, 1.0))
        cs = torch.stack(per_size, 0).amax(0)  # [B, nc*ns, H, W]
        colour_any = cs.reshape(b, nc, ns, h, w).amax(2)
        tex = self._texture_maps(x) * self.texture_gain
        if not self.world.textures:
            tex = tex[:, :0]
        if not self.erode:
            return torch.cat([cs, colour_any, tex], dim=1)
        return torch.cat([cs, colour_any, tex, self._large_objects(cs, tex)], dim=1)

    def _large_objects(self, cs: torch.Tensor, tex: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W]: the union of every object's box (solid or textured), eroded by ``self.erode`` pixels
        (a min filter, outside the image counting as empty): non-zero only inside objects of at least that
        size, on their core of (size - erode + 1)^2 pixels."""
        objects = cs.amax(1, keepdim=True)
        if tex.shape[1]:
            objects = torch.maximum(objects, tex.amax(1, keepdim=True))
        objects = objects.clamp(0, 1)
        r = self.erode // 2
        padded = F.pad(objects, (r, self.erode - 1 - r, r, self.erode - 1 - r), value=0.0)
        return -F.max_pool2d(-padded, self.erode, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input (mean 0, std 1 preprocessing: plain [0, 1] pixels) -> pooled neurons [B, N]."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            out = self.neurons(self.pool(self.concept_maps(x)))
        return out.mean(dim=(2, 3))


def build_model(world: World) -> tuple[PlantedNet, dict]:
    model = PlantedNet(world)
    pre = {
        "input_size": world.image_size,
        "resize": world.image_size,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "interpolation": "bilinear",
    }
    return model, pre
