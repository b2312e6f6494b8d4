"""Verify beyond recall: the interval of AR, specificity against a control pool, and the specificity filter.

The paper's Activation Rate (AR, :mod:`sieve.verify.activation_rate`) is a *recall*: the share of a concept's
generated images on which the neuron fires (pooled activation strictly above its top-1% probe threshold). It
cannot tell a neuron that fires on the concept from one that fires on everything, and with a handful of images
it is a coarse estimate. This module holds the pure functions (numpy arrays in, numbers out; no torch, no files)
that add, per hypothesis:

- :func:`wilson_interval`: the Wilson 95% score interval of AR = k of n (how well 10 or 20 images pin AR down);
- :func:`control_rate`: the neuron's firing rate on a fixed pool of control images (same threshold as AR);
- :func:`roc_auc`: how well the neuron's pooled activation separates the concept's images from the controls;
- :func:`f1_at_threshold`: the precision-style score, F1 of the reliable set of Oikarinen, Yan and Weng
  (ICML 2025), with the concept's own images removed from its controls by :func:`controls_excluding`
  (:func:`average_precision`, AUPRC, is here too: it failed the missing-labels check on the planted world);
- :func:`sample_controls` / :func:`control_pool`: which concepts (plus a few neutral prompts) make the pool;
- :func:`specificity_keep`: the second filter, the paper's rule AND ``control rate <= max_control_rate``.

The figures behind the choices (planted world, ``bench/bench_specificity.py``, recorded in
``bench/results/verify_specificity.json``): hypotheses that are right for their neuron have control rates
0 to 0.18 (detectors <= 0.03, the attribute neurons up to 0.18: the controls of their colour fire), the
promiscuous neuron 0.61 to 0.70 on every concept; its ROC AUC, though, spreads from 0.30 to 1.0 and its AUPRC
from 0.03 to 1.0, because it fires harder on some shapes and textures than others, so a concept of its
favourite kind out-ranks every control. Scores that rank (AUC, AUPRC) reward a neuron's taste in magnitude;
rates at the neuron's own threshold (AR, the control rate, F1) do not.

Every score is a plain function of the activations, so a changed threshold or filter recomputes from cached
activations without generating or measuring anything again.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .config import schema_default

# z of a two-sided 95% normal interval: the 97.5th percentile of the standard normal (scipy.stats.norm.ppf).
Z95 = 1.959963984540054

# Default size of the control pool in concepts (``verify.controls``). The control images of one concept are
# alike, so the control rate moves in steps of about 1 / controls, not 1 / images: 20 concepts resolve it to
# 5 points, enough to tell a neuron that fires on a handful of concepts (rate ~0.05-0.15) from one that fires
# on most of them (rate >= 0.5), while the pool costs 20 prompts once per run, shared by every neuron,
# hypothesis and method (a real run's hypotheses already name hundreds of distinct concepts).
DEFAULT_CONTROLS: int = schema_default("verify.controls")  # 20, in config.schema.yaml

# Prompts that name no concept, added to every pool as they are (no template): what the generator draws when
# asked for "nothing in particular". A neuron that fires on them fires on the generator's style, not a concept.
NEUTRAL_PROMPTS: tuple[str, ...] = tuple(schema_default("verify.neutral_prompts"))

# The specificity condition's default: keep a hypothesis only if the neuron fires on at most 35% of the control
# images. On the planted world every right hypothesis sits at 0.18 or below and the promiscuous neuron at 0.61
# or above; 0.35 is about the geometric middle of that gap, sqrt(0.18 x 0.61) = 0.33
# (bench/results/verify_specificity.json). For a real concept set of thousands of words an honest neuron fires on
# far fewer controls, so the cap errs on the side of keeping; it is meant as a config value
# (verify.max_control_rate), to be revisited on a real model.
DEFAULT_MAX_CONTROL_RATE: float = schema_default("verify.max_control_rate")  # 0.35


class StatsError(ValueError):
    """An input the statistics cannot be computed on (no images, counts out of range, non-finite values)."""


# ------------------------------------------------------------------------------------------ interval of AR


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (default: 95%), as ``(low, high)``.

    With p = k/n::

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    Why Wilson and not the textbook p +- z sqrt(p(1-p)/n) (Wald): AR is usually 0 or 1 or near them with n = 10
    to 50 images, where the Wald interval collapses to a point (k = n gives [1, 1]) and undercovers badly;
    Wilson's interval inverts the score test, keeps its coverage near 95% at small n, stays inside [0, 1] and
    is never empty (k = n = 10 gives [0.72, 1]). The ends are clipped to [0, 1] against rounding, and exactly
    0 (k = 0) or 1 (k = n), which the formula gives in exact arithmetic.
    """
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise StatsError(f"the Wilson interval needs integer counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n <= 0:
        raise StatsError(f"the Wilson interval of k of n needs n >= 1 image, got n={n}")
    if not 0 <= k <= n:
        raise StatsError(f"the Wilson interval needs 0 <= k <= n, got k={k}, n={n}")
    if not z > 0:
        raise StatsError(f"z must be positive, got {z!r}")
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else min(1.0, max(0.0, centre - half))
    high = 1.0 if k == n else min(1.0, max(0.0, centre + half))
    return low, high


# ------------------------------------------------------------------------------------------ control scores


def _values(acts: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    """1-D float64 activations, checked: at least one, all finite."""
    a = np.asarray(acts, dtype=np.float64).ravel()
    if a.size == 0:
        raise StatsError(f"no {what}: the score needs at least one image")
    if not np.isfinite(a).all():
        raise StatsError(f"{int(np.count_nonzero(~np.isfinite(a)))} {what} are not finite")
    return a


def control_rate(control_acts: np.ndarray | Sequence[float], threshold: float) -> float:
    """Share of control images on which the neuron fires: pooled activation strictly above ``threshold``, the
    same rule and threshold as AR, so the two rates are directly comparable (AR is the rate on the concept's
    images; a specific neuron has AR high and this near the probe's 1%)."""
    a = _values(control_acts, "control activations")
    return float(np.count_nonzero(a > float(threshold)) / a.size)


def roc_auc(concept_acts: np.ndarray | Sequence[float], control_acts: np.ndarray | Sequence[float]) -> float:
    """ROC AUC of the pooled activation separating the concept's images (positives) from the controls.

    Exact Mann-Whitney form, ties counted half::

        AUC = 1 / (n1 n0) * sum_i sum_j [ 1(x_i > y_j) + 1/2 1(x_i = y_j) ]

    over concept activations x (n1) and control activations y (n0): the probability that a random image of
    the concept out-activates a random control image. It needs no threshold and does not depend on how many
    controls there are (unlike precision): 0.5 is a neuron that cannot tell the concept from the controls, 1 a
    perfect separation. Ties matter here: a ReLU neuron is exactly 0 on most images, and counting ties half
    gives 0.5 (not 0 or 1) for a neuron that is silent on both. A reported column, not the filter: a neuron
    that fires on everything, harder on some things, scores near 1 on its favourite concept (module
    docstring). Computed with sorted controls and two binary searches per positive: O((n1 + n0) log n0).
    """
    x = _values(concept_acts, "concept activations")
    y = np.sort(_values(control_acts, "control activations"))
    below = np.searchsorted(y, x, side="left")
    not_above = np.searchsorted(y, x, side="right")
    wins = below.sum() + 0.5 * (not_above - below).sum()
    return float(wins / (x.size * y.size))


def average_precision(
    concept_acts: np.ndarray | Sequence[float], control_acts: np.ndarray | Sequence[float]
) -> float:
    """AUPRC as average precision: rank every image by activation, highest first, and average the precision
    at each concept image's rank; images with equal activation enter together.

    With the distinct activation values t_1 > t_2 > ... and TP_j, FP_j the concept and control images at or
    above t_j (R_j = TP_j / n1, P_j = TP_j / (TP_j + FP_j), R_0 = 0)::

        AP = sum_j (R_j - R_{j-1}) P_j

    (scikit-learn's ``average_precision_score``, no interpolation); its floor is the share of concept images,
    n1 / (n1 + n0). Not the precision-style column: on the planted world it fails the missing-labels check.
    For the attribute neuron "blue", the partial hypothesis "blue circle" scores 0.97 and the complete "blue"
    0.935, because the neuron fires a little harder on circles than on other shapes, so the circles out-rank
    the blue controls; :func:`f1_at_threshold` gives 0.385 and 0.909. Kept for comparisons.
    """
    x = _values(concept_acts, "concept activations")
    y = _values(control_acts, "control activations")
    scores = np.concatenate([x, y])
    labels = np.concatenate([np.ones(x.size), np.zeros(y.size)])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # the last index of each run of equal scores: the thresholds t_j
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    tp = np.cumsum(labels)[last]
    fp = (last + 1) - tp
    recall = tp / x.size
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_at_threshold(
    concept_acts: np.ndarray | Sequence[float], control_acts: np.ndarray | Sequence[float], threshold: float
) -> float:
    """The precision-style score: F1 of "fires" (activation strictly above the neuron's ``threshold``, AR's
    rule) as a detector of the concept's images among concept + control images::

        F1 = 2 TP / (2 TP + FP + FN)        (0 when nothing of the concept fires)

    with TP / FN the concept's images active / not, FP the control images active (own images excluded by
    :func:`controls_excluding`). Why F1, of the scores that passed both sanity checks of Oikarinen, Yan and Weng
    ("Evaluating Neuron Explanations", ICML 2025: correlation, cosine, AUPRC, F1, IoU): it binarises the neuron
    exactly as AR and the probe threshold already do, so it combines recall (AR) and precision (against the
    controls) in the same currency and no new threshold is chosen; IoU (TP / (TP + FP + FN)) orders
    hypotheses exactly as F1 does, so it would add nothing; correlation and cosine need a meaningful 0 and scale
    of the raw activation, which a layer's units lack; AUPRC ranks by magnitude and failed the missing-labels
    check on the planted world (:func:`average_precision`). Mixing unrelated images into a concept's (extra
    labels) lowers TP; naming part of what the neuron fires on (missing labels) leaves the rest among the
    controls as FP. F1 depends on the pool's size (FP counts images), so it compares hypotheses of one run, as
    AR does; a run's ``verify.controls`` is fixed."""
    x = _values(concept_acts, "concept activations")
    y = _values(control_acts, "control activations")
    tp = int(np.count_nonzero(x > threshold))
    fp = int(np.count_nonzero(y > threshold))
    fn = x.size - tp
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


# ------------------------------------------------------------------------------------------ the control pool


@dataclass(frozen=True)
class ControlPrompt:
    """One entry of the control pool: a sampled concept (``concept_id`` and ``text``, drawn through the
    ``generator.prompt`` template like any hypothesis) or a neutral prompt (``concept_id`` None, drawn as is)."""

    concept_id: str | None
    text: str

    @property
    def neutral(self) -> bool:
        return self.concept_id is None


def control_rank(concept_id: str, seed: int) -> int:
    """The concept's place in the control lottery: the first 8 bytes of SHA-256 over the seed and the id."""
    digest = hashlib.sha256(f"sieve-control\0{int(seed)}\0{concept_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_controls(concept_ids: Iterable[str], size: int = DEFAULT_CONTROLS, seed: int = 0) -> list[str]:
    """The ``size`` concept ids of lowest :func:`control_rank` (bottom-k hash sampling), in that order.

    A seeded random sample, with the stability the control pool needs:

    - it depends on the set of ids and the seed only: not on the order of the concept file, on which concepts
      any hypothesis names, on the neuron, the model or the method, so every hypothesis of a concept set is
      scored against the same controls;
    - editing the concept set moves it as little as any fixed-size sample can: a new concept enters only if its
      own hash ranks among the ``size`` lowest, and then displaces exactly one (the highest-ranked), and removing
      a concept that is not sampled changes nothing; a ``rng.choice`` over the list would redraw everything when
      one line is added;
    - a set with no more than ``size`` concepts is taken whole.

    What it cannot give, and need not: a pool shared across concept sets would change when a set is added, so
    the integration samples one pool *per concept set* and scores a set's hypotheses against its own pool;
    adding a concept set (or a hypothesis, or a method) then never changes an existing score.
    """
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise StatsError(f"verify.controls must be a non-negative integer, got {size!r}")
    ids = sorted(set(concept_ids))
    ranked = sorted(ids, key=lambda c: (control_rank(c, seed), c))
    return ranked[: int(size)]


def control_pool(
    concepts: Mapping[str, str],
    size: int = DEFAULT_CONTROLS,
    seed: int = 0,
    neutral: Sequence[str] = NEUTRAL_PROMPTS,
) -> list[ControlPrompt]:
    """The control pool of one concept set (``concept id -> text``): :func:`sample_controls` of its ids, then the
    neutral prompts (duplicates removed). The same for every neuron, hypothesis and method of that set."""
    chosen = [ControlPrompt(c, concepts[c]) for c in sample_controls(concepts, size, seed)]
    seen: set[str] = set()
    extra = [ControlPrompt(None, p) for p in neutral if p.strip() and not (p in seen or seen.add(p))]
    return chosen + extra


def concept_words(text: str) -> frozenset[str]:
    """The lowercase words (runs of letters and digits, any script) of a concept text."""
    return frozenset(re.findall(r"[^\W_]+", text.casefold()))


def is_own_control(
    entry: ControlPrompt,
    concept_id: str | None = None,
    prompt: str | None = None,
    text: str | None = None,
    template: str = "{}",
) -> bool:
    """Is a pool entry the hypothesis' own concept, so not a negative for it?

    Own means the same concept id; or the same prompt (the very same cached pictures); or, when ``text`` is
    given, an entry whose text names every word of the hypothesis ("red triangle" for "red", "black dog" for
    "dog"): its pictures show the hypothesis, and counting them as negatives would punish the complete
    hypothesis "red" for firing on a red triangle while the partial "red triangle", whose own entry is removed,
    escapes (the missing-labels check of Oikarinen, Yan and Weng fails on the planted world without this rule).
    Dropping a control only removes a negative, so a wrong match costs a little power, never a wrong score.
    """
    if concept_id is not None and entry.concept_id == concept_id:
        return True
    entry_prompt = entry.text if entry.neutral else template.replace("{}", entry.text)
    if prompt is not None and entry_prompt == prompt:
        return True
    if text is not None:
        words = concept_words(text)
        return bool(words) and words <= concept_words(entry.text)
    return False


def controls_excluding(
    pool: Sequence[ControlPrompt],
    pool_acts: Sequence[np.ndarray],
    concept_id: str | None = None,
    prompt: str | None = None,
    text: str | None = None,
    template: str = "{}",
) -> np.ndarray:
    """The control activations a hypothesis is scored against: every pool entry's activations (``pool_acts[i]``
    holds entry i's images, shape [n_i] or [n_i, C]) concatenated, except the entries that are the hypothesis'
    own (:func:`is_own_control`: same id, same prompt, or naming every word of ``text``). ``template`` fills
    concept texts into prompts the way the generator does; neutral entries are prompts already. The pool is the
    same for every hypothesis; only this per-hypothesis exclusion differs, so scores never depend on which
    other hypotheses exist.
    """
    if len(pool) != len(pool_acts):
        raise StatsError(f"the control pool has {len(pool)} entries but {len(pool_acts)} activation arrays")
    keep = [
        np.asarray(acts)
        for entry, acts in zip(pool, pool_acts, strict=True)
        if not is_own_control(entry, concept_id, prompt, text, template)
    ]
    if not keep:
        raise StatsError(
            "no control images are left once the concept's own are excluded: raise verify.controls"
        )
    return np.concatenate(keep, axis=0)


# ------------------------------------------------------------------------------------------ the filter


def specificity_keep(
    paper_kept: np.ndarray | Sequence[bool],
    control_rates: np.ndarray | Sequence[float],
    max_control_rate: float = DEFAULT_MAX_CONTROL_RATE,
) -> np.ndarray:
    """The specificity filter: the paper's rule (``paper_kept``: AR >= initial mean AR, from
    :func:`sieve.verify.activation_rate.filter_hypotheses`, whose exact comparison it reuses) AND
    ``control_rate <= max_control_rate`` (an equal rate is kept).

    Why the control rate and not the AUC: both compare the concept with the controls, but the control rate
    counts firing at the neuron's own threshold, the very event AR counts, so "AR high, control rate low" reads
    as "fires on this concept and not on others", and the two rates share a scale. The AUC compares
    magnitudes, and a neuron that fires on everything but a little harder on circles gets AUC ~1 for "circle"
    (planted world: the promiscuous neuron's AUCs spread over 0.30-1.0 while its control rate is 0.61-0.70 on
    every concept, and every right hypothesis is at 0.18 or below; :data:`DEFAULT_MAX_CONTROL_RATE`).
    """
    kept = np.asarray(paper_kept, dtype=bool)
    rate = np.asarray(control_rates, dtype=np.float64)
    if kept.shape != rate.shape:
        raise StatsError(f"{kept.size} filter decisions but {rate.size} control rates")
    if not 0.0 <= float(max_control_rate) <= 1.0:
        raise StatsError(f"verify.max_control_rate must be in [0, 1], got {max_control_rate!r}")
    if np.isnan(rate[kept]).any():
        raise StatsError("a hypothesis the paper's rule keeps has no control rate (no control images)")
    return kept & (np.nan_to_num(rate, nan=1.0) <= float(max_control_rate))
