"""CLIP-Dissect's SoftWPMI against a plain numpy transcription of the published formulas."""

from __future__ import annotations

import numpy as np
import pytest

from sieve.evaluate.clip_dissect import (
    BaselineError,
    example_weights,
    labels_from_scores,
    soft_wpmi,
    top_rows,
)


def numpy_soft_wpmi(image_emb, text_emb, acts, k, alpha=10.0, lam=1.0, p_start=0.998, p_end=0.97):
    """Straight from the issue / CLIP-Dissect's similarity.soft_wpmi, loop by loop."""
    x = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    t = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    sim = alpha * (x @ t.T)
    p_cond = np.exp(sim - sim.max(axis=1, keepdims=True))
    p_cond /= p_cond.sum(axis=1, keepdims=True)  # softmax over concepts
    n_neurons = acts.shape[1]
    log_p_t_n = np.zeros((n_neurons, t.shape[0]))
    for n in range(n_neurons):
        order = sorted(range(acts.shape[0]), key=lambda i: (-acts[i, n], i))[:k]
        for j, i in enumerate(order):
            p_j = p_start - j / k * (p_start - p_end)
            log_p_t_n[n] += np.log(1 + p_j * (p_cond[i] - 1) + 1e-7)
    m = log_p_t_n.max(axis=0)
    log_p_t = m + np.log(np.exp(log_p_t_n - m).sum(axis=0)) - np.log(n_neurons)
    return log_p_t_n - lam * log_p_t


@pytest.mark.parametrize("alpha,lam,k", [(10.0, 1.0, 7), (3.0, 0.5, 12), (10.0, 0.0, 1)])
def test_soft_wpmi_matches_numpy_transcription(alpha, lam, k):
    rng = np.random.default_rng(1)
    n_img, n_neurons, n_concepts, d = 30, 9, 11, 6
    acts = rng.random((n_img, n_neurons))
    acts[3, 2] = acts[4, 2] = acts[:, 2].max() + 1  # a tie: the earlier image ranks first
    image_emb = rng.normal(size=(n_img, d))
    text_emb = rng.normal(size=(n_concepts, d))
    top = top_rows(acts, k)
    assert top[2, 0] == 3 and (k == 1 or top[2, 1] == 4)
    # the function sees only the images of the union of top sets, re-indexed (what the rule stores)
    rows = np.unique(top)
    pos = {int(r): i for i, r in enumerate(rows)}
    top_local = np.vectorize(pos.get)(top)
    want = numpy_soft_wpmi(image_emb, text_emb, acts, k, alpha, lam)
    for max_elements in (1 << 24, 13):  # one chunk, and many tiny chunks
        got = soft_wpmi(image_emb[rows], text_emb, top_local, alpha=alpha, lam=lam, max_elements=max_elements)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(labels_from_scores(got), want.argmax(axis=1))


def test_weights_and_planted_label():
    w = example_weights(100)
    assert (
        w[0] == pytest.approx(0.998)
        and np.all(np.diff(w) < 0)
        and w[-1] == pytest.approx(0.998 - 0.99 * 0.028)
    )
    # neuron 0's top images all point at concept 2, neuron 1's at concept 0: SoftWPMI recovers them
    rng = np.random.default_rng(0)
    text = np.eye(4)
    images = np.concatenate(
        [text[[2] * 5] + 0.05 * rng.normal(size=(5, 4)), text[[0] * 5] + 0.05 * rng.normal(size=(5, 4))]
    )
    acts = np.zeros((10, 2))
    acts[:5, 0] = 1 + rng.random(5)
    acts[5:, 1] = 1 + rng.random(5)
    scores = soft_wpmi(images, text, top_rows(acts, 5))
    assert labels_from_scores(scores).tolist() == [2, 0]


def test_bad_inputs_are_named():
    with pytest.raises(BaselineError, match="embedding dimension"):
        soft_wpmi(np.ones((3, 4)), np.ones((2, 5)), np.zeros((1, 2), int))
    with pytest.raises(BaselineError, match="out of range"):
        soft_wpmi(np.ones((3, 4)), np.ones((2, 4)), np.array([[0, 3]]))


def test_image_embeddings_with_too_few_top_images_are_refused(tmp_path):
    """image_embeddings.h5 keeps K top images per neuron; asking SoftWPMI for more than K (when the probe has more
    than K images) must stop with a message, not silently score fewer images."""
    import h5py
    from PIL import Image

    from sieve.backends.imagesets import open_image_set
    from sieve.evaluate.clip_dissect import run_clip_dissect, run_embed_probe_images
    from sieve.hypothesize import run_embed_concepts
    from sieve.io import write_json
    from tinyclip import ProjectionEmbedder

    rng = np.random.default_rng(0)
    (tmp_path / "imgs/a").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"imgs/a/{i}.png")
    probe = open_image_set("pics", {"kind": "imagefolder", "path": str(tmp_path / "imgs")})
    acts = rng.random((6, 3)).astype(np.float32)
    with h5py.File(tmp_path / "acts.h5", "w") as f:
        f["activations"] = acts
        f["images"] = np.array([str(p).encode() for p in probe.paths])
        f["probe_index"] = np.arange(6)
        f["labels"] = np.zeros(6, dtype=np.int64)
        f["topk/index"] = top_rows(acts, 2).T
        f["topk/value"] = np.zeros((2, 3), dtype=np.float32)
        f.attrs["complete"] = 1
    spec = {"source": "python", "factory": "tinyclip:projection_embedder"}
    emb = ProjectionEmbedder()
    write_json(
        tmp_path / "concepts.json",
        {"concept_set": "w", "concepts": [{"id": t, "text": t} for t in ("red", "blue")]},
    )
    run_embed_concepts(str(tmp_path / "concepts.json"), str(tmp_path / "concepts.h5"), emb, spec)
    write_json(
        tmp_path / "select.json", {"n_neurons": 3, "neurons": {str(n): {"selected": True} for n in range(3)}}
    )

    def clip_dissect(images_h5, top_images):
        return run_clip_dissect(
            str(images_h5),
            str(tmp_path / "select.json"),
            str(tmp_path / "concepts.json"),
            str(tmp_path / "concepts.h5"),
            str(tmp_path / "hyp"),
            str(tmp_path / "labels.csv"),
            top_images=top_images,
        )

    run_embed_probe_images(
        str(tmp_path / "acts.h5"), probe, emb, spec, str(tmp_path / "top2.h5"), top_images=2
    )
    assert clip_dissect(tmp_path / "top2.h5", 2)["n_neurons"] == 3
    with pytest.raises(BaselineError, match="top2.h5 keeps 2 top images per neuron.*top_images is 4"):
        clip_dissect(tmp_path / "top2.h5", 4)
    # a probe smaller than top_images: every image is a top image, nothing is missing
    run_embed_probe_images(
        str(tmp_path / "acts.h5"), probe, emb, spec, str(tmp_path / "top10.h5"), top_images=10
    )
    assert clip_dissect(tmp_path / "top10.h5", 10)["n_neurons"] == 3
