"""Hypothesize: crop boxes, clustering, concept scores (against numpy references) and an end-to-end run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from helpers import copy_run, jobs_run, make_image_folder, run_snakemake, tiny_config
from sieve.crops import crop_box, neuron_boxes, upsample_map
from sieve.hypothesize import (
    HypothesizeError,
    cluster_embeddings,
    concept_scores,
    run_hypothesize,
    silhouette_score,
    top_concepts,
    top_k_indices,
    ward_labels,
)
from tinyclip import make_tiny_clip

# ------------------------------------------------------------------------------------------------ crops


def _contains(box, x0, y0, x1, y1):
    return box[0] <= x0 and box[1] <= y0 and box[2] >= x1 and box[3] >= y1


@pytest.mark.parametrize("cell", [(1, 2), (5, 5), (0, 6), (3, 0)])
def test_region_box_contains_planted_hot_spot(cell):
    rng = np.random.default_rng(0)
    fmap = rng.uniform(0, 0.1, size=(7, 7))
    cy, cx = cell
    fmap[cy, cx] = 5.0
    fmap[(cy + 3) % 7, (cx + 4) % 7] = 2.0  # a weaker, separate blob: below threshold 0.5, outside the box
    size, stride = 56, 8
    up = upsample_map(fmap, size)
    box = crop_box(up, "region", threshold=0.5, min_size=0.25)
    # the hot cell's centre pixel region is inside, the box is square, inside the image, >= min size
    assert _contains(box, cx * stride + 2, cy * stride + 2, cx * stride + 6, cy * stride + 6)
    assert box[2] - box[0] == box[3] - box[1] >= 14
    assert 0 <= box[0] and 0 <= box[1] and box[2] <= size and box[3] <= size
    assert box[2] - box[0] < size // 2  # a crop, not the whole image
    wy, wx = (cy + 3) % 7, (cx + 4) % 7
    assert not _contains(box, wx * stride + 3, wy * stride + 3, wx * stride + 5, wy * stride + 5)


def test_region_box_grows_with_region_and_threshold():
    fmap = np.zeros((8, 8))
    fmap[2:6, 1:7] = 1.0  # a 4 x 6 cell plateau = 32 x 48 pixels at 64
    fmap[3, 3] = 1.2
    up = upsample_map(fmap, 64)
    box = crop_box(up, "region", threshold=0.5, min_size=0.1)
    assert _contains(box, 10, 18, 54, 46)
    assert box[2] - box[0] == box[3] - box[1]  # squared around the wide region
    tight = crop_box(up, "region", threshold=0.99, min_size=0.1)
    assert tight[2] - tight[0] < box[2] - box[0]


def test_window_box_and_edge_cases():
    fmap = np.zeros((4, 4))
    fmap[0, 3] = 1.0  # corner
    up = upsample_map(fmap, 32)
    box = crop_box(up, "window", window=0.5)
    assert box == (16, 0, 32, 16)  # 16 x 16 window shifted inside the image
    assert crop_box(np.zeros((32, 32)), "region") == (0, 0, 32, 32)  # flat map: whole image
    neg = -np.ones((4, 4))
    neg[2, 1] = -0.1  # all negative (ViT tokens): threshold on the min-max normalised map
    b = crop_box(upsample_map(neg, 32), "region", threshold=0.5, min_size=0.25)
    assert _contains(b, 10, 18, 14, 22)
    with pytest.raises(ValueError, match="crop.method"):
        crop_box(up, "bogus")
    boxes = neuron_boxes(np.stack([fmap, neg]), 32, {"method": "region", "threshold": 0.5, "min_size": 0.25})
    assert boxes.shape == (2, 4) and boxes.dtype == np.int32


def _region_box_reference(up, threshold, min_size):
    """``method: region`` spelled out: every pixel of the peak's 8-connected region, then the square fit."""
    from scipy import ndimage

    from sieve.crops import _fit_square

    size = up.shape[0]
    lo, hi = up.min(), up.max()
    py, px = np.unravel_index(np.argmax(up), up.shape)
    mask = up >= threshold * hi if hi > 0 else (up - lo) / (hi - lo) >= threshold
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    ys, xs = np.nonzero(labels == labels[py, px])
    side = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min(), int(np.ceil(min_size * size)))
    return _fit_square((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2, side, size)


@pytest.mark.parametrize("seed", range(3))
def test_region_boxes_equal_the_reference_and_threads_change_nothing(seed):
    from sieve.backends.models import Preprocess
    from sieve.crops import TopImages, crop_boxes

    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(6, 5, 7, 7)).astype(np.float32)
    maps[:, :2] = np.maximum(maps[:, :2], 0) ** 3  # several separate blobs
    maps[:, 4] -= 10  # every value negative (ViT tokens)
    crop = {"method": "region", "threshold": 0.4, "min_size": 0.1}
    ups = upsample_map(maps.reshape(-1, 7, 7), 48)
    want = np.array([_region_box_reference(u.astype(np.float64), 0.4, 0.1) for u in ups]).reshape(6, 5, 4)
    top = TopImages(Preprocess(input_size=48), np.arange(6), 5, *(np.zeros((6, 5)),) * 3, maps, {})
    np.testing.assert_array_equal(crop_boxes(top, crop), want)
    np.testing.assert_array_equal(crop_boxes(top, crop, threads=3), want)
    assert len({tuple(b) for b in want.reshape(-1, 4)}) > 10  # boxes of many sizes and places


def _images_and_boxes(n_images=4, per_image=6, size=64, seed=0):
    """Smooth random uint8 images (as ``Preprocess.geometric`` x 255) and random square boxes on them."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n_images, 3, 16, 16, generator=g)
    images = torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic").clamp(0, 1)
    images = images.mul(255).round().to(torch.uint8)
    rng = np.random.default_rng(seed)
    index, boxes = [], []
    for i in range(n_images):
        for _ in range(per_image):
            side = int(rng.integers(6, size + 1))  # boxes smaller and larger than the embedder's 32
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            index.append(i)
            boxes.append((x0, y0, x0 + side, y0 + side))
    return images, np.array(index), np.array(boxes)


def test_device_crops_match_the_host_crops():
    """roi_align (device path) against the host's antialiased resize, pixel by pixel: the whole image at the
    embedder's side is the image itself; upsampled and downsampled crops stay within a few grey levels."""
    from sieve.crops import cut_and_resize, cut_and_resize_on_device

    images, index, boxes = _images_and_boxes()
    unit = images.float() / 255
    host = torch.stack([cut_and_resize(unit[i], b, 32) for i, b in zip(index, boxes, strict=True)])
    dev = cut_and_resize_on_device(images, torch.from_numpy(index), torch.from_numpy(boxes), 32)
    assert dev.shape == host.shape == (len(boxes), 3, 32, 32) and dev.dtype == torch.float32
    assert 0 <= dev.min() and dev.max() <= 1
    assert (dev - host).abs().mean() < 0.01  # a shifted or unaligned cut is about 0.1 off
    assert (dev - host.roll(1, 0)).abs().mean() > 0.05  # (the bound above can fail)
    same = cut_and_resize_on_device(images[:1], torch.tensor([0]), torch.tensor([[16, 8, 48, 40]]), 32)
    torch.testing.assert_close(same[0], unit[0, :, 8:40, 16:48], rtol=0, atol=1e-6)
    # float [0, 1] images are taken as they are
    torch.testing.assert_close(
        cut_and_resize_on_device(unit, torch.from_numpy(index), torch.from_numpy(boxes), 32), dev
    )


def test_device_crop_embeddings_agree_with_the_host_path(tmp_path):
    """A tiny open_clip embedder: every device-path embedding has cosine >= 0.99 with its host-path crop's,
    and its own host crop is the nearest of all."""
    from sieve.backends.embedders import load_embedder
    from sieve.crops import cut_and_resize, embed_boxes_on_device

    embedder = load_embedder(make_tiny_clip(tmp_path / "clip"), "cpu")
    side = embedder.image_size
    images, index, boxes = _images_and_boxes()
    unit = images.float() / 255
    host = torch.stack([cut_and_resize(unit[i], b, side) for i, b in zip(index, boxes, strict=True)])
    z_host = embedder.encode_images(host.to(torch.float16).float())
    z_dev = embed_boxes_on_device(images, torch.from_numpy(index), torch.from_numpy(boxes), embedder, side, 5)
    assert z_dev.shape == z_host.shape == (len(boxes), embedder.dim)
    cos = z_dev @ z_host.T
    assert cos.diagonal().min() >= 0.99
    assert (cos.argmax(1) == torch.arange(len(boxes))).all()


@pytest.mark.parametrize("resize", ["host", "device"])
def test_a_top_image_gone_since_the_probe_is_an_error_naming_it_and_its_neurons(tmp_path, resize):
    """Both crop paths stop on a top image that can no longer be read, naming the file and the neurons."""
    from PIL import Image

    from sieve.backends.imagesets import open_image_set
    from sieve.backends.models import Preprocess
    from sieve.crops import TopImages, crop_jobs, embed_crop_jobs
    from sieve.hypothesize import HypothesizeError

    class Embedder:
        dim = 4

        def encode_images(self, x):
            return torch.nn.functional.normalize(x.mean(dim=(2, 3)).float().repeat(1, 2)[:, :4], dim=1)

    for i in range(3):
        Image.new("RGB", (40, 30), (60 * i, 90, 200)).save(tmp_path / f"{i}.png")
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path)})
    index = np.array([[0, 1], [2, 1]])
    top = TopImages(
        Preprocess(32, 32), np.array([5, 9]), 2, index, np.ones((2, 2)), index, np.ones((2, 2, 4, 4)), {}
    )
    jobs = crop_jobs(index, np.tile(np.array([0, 0, 16, 16]), (2, 2, 1)))
    emb, n = embed_crop_jobs(jobs, top, probe, Embedder(), 8, 4, 0, resize=resize)
    assert n == 4 and emb.shape == (2, 2, 4) and np.isfinite(emb).all()
    (tmp_path / "1.png").write_bytes(b"not an image any more")
    with pytest.raises(HypothesizeError, match=r"1\.png.* of neuron\(s\) \[5, 9\] cannot be read any more"):
        embed_crop_jobs(jobs, top, probe, Embedder(), 8, 4, 0, resize=resize)


def test_crop_resize_setting():
    """``auto`` is the host path except on CUDA; a bad value is an error naming the key (the schema too)."""
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from sieve.crops import resolve_resize

    assert resolve_resize("auto", "cpu") == "host" and resolve_resize("auto", torch.device("cpu")) == "host"
    assert resolve_resize("auto", "cuda") == "device" and resolve_resize("auto", "cuda:1") == "device"
    assert resolve_resize("device", "cpu") == "device" and resolve_resize("host", "cuda") == "host"
    with pytest.raises(HypothesizeError, match="hypothesize.crop.resize must be one of host, device, auto"):
        resolve_resize("gpu", "cpu")
    repo = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg.setdefault("hypothesize", {})["crop"] = {"resize": "gpu"}
    with pytest.raises(WorkflowError, match="'gpu' is not one of \\['host', 'device', 'auto'\\]"):
        validate(cfg, schema=str(repo / "workflow/schemas/config.schema.yaml"))


# ------------------------------------------------------------------------------------------------ clusters


def _planted(n_groups, n=20, dim=64, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim))
    truth = rng.permutation(np.arange(n) % n_groups)
    x = centres[truth] + noise * rng.normal(size=(n, dim)) * np.linalg.norm(
        centres[truth], axis=1, keepdims=True
    ) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


@pytest.mark.parametrize("n_groups", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustering_recovers_planted_groups(n_groups, seed):
    x, truth = _planted(n_groups, seed=seed)
    res = cluster_embeddings(x, k_max=5, silhouette_floor=0.1, min_cluster_size=2)
    assert res["k"] == n_groups
    assert adjusted_rand_score(truth, res["labels"]) == 1.0
    assert sorted(res["silhouette"]) == ["2", "3", "4", "5"]
    assert res["labels"][0] == 0  # cluster 0 holds the top-ranked crop
    members = sorted(m for c in res["clusters"] for m in c["members"])
    assert members == list(range(20)) and not res["dropped"]
    if n_groups > 1:
        assert max(res["silhouette"].values()) == res["silhouette"][str(n_groups)]


def test_small_clusters_dropped_and_ablation():
    x, truth = _planted(3, n=21, seed=3)
    x[truth == 2] = x[truth == 2][:1] + 0  # third group collapses on one point ...
    keep = np.flatnonzero(truth != 2).tolist() + [int(np.flatnonzero(truth == 2)[0])]
    x = x[sorted(keep)]  # ... and keeps one member: a singleton far from the rest
    res = cluster_embeddings(x, k_max=5, silhouette_floor=0.1, min_cluster_size=2)
    assert res["k"] == 3
    assert [d["size"] for d in res["dropped"]] == [1]
    assert "min_cluster_size 2" in res["dropped"][0]["reason"]
    assert sum(c["size"] for c in res["clusters"]) == len(x) - 1
    off = cluster_embeddings(x, enabled=False)
    assert off["k"] == 1 and off["silhouette"] == {} and off["clusters"][0]["members"] == list(range(len(x)))
    few = cluster_embeddings(x[:2])
    assert few["k"] == 1 and few["clusters"][0]["size"] == 2
    assert cluster_embeddings(np.ones((6, 4)))["k"] == 1  # identical crops: nothing to split


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ward_cut_and_silhouette_equal_scikit_learn(seed):
    """Hypothesize clusters without importing scikit-learn (issue 14): the partition of each k is
    AgglomerativeClustering's and the silhouette the very float of sklearn's silhouette_score, also with tied
    and duplicate points."""
    import warnings

    from scipy.cluster.hierarchy import ward
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score as sk_silhouette

    rng = np.random.default_rng(seed)
    for n, dim in [(20, 64), (33, 8), (7, 2)]:
        x = rng.normal(size=(3, dim))[rng.integers(0, 3, n)] + rng.normal(scale=0.5, size=(n, dim))
        if seed % 2:
            x = np.round(x, 1)
            x[: n // 3] = x[0]
        tree = ward(x)
        for k in range(2, min(6, n - 1) + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn: "Partial build of the tree ..."
                theirs = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
            ours = ward_labels(tree, k)
            assert adjusted_rand_score(theirs, ours) == 1.0 and len(set(ours)) == k, (seed, n, k)
            assert silhouette_score(x, ours) == float(sk_silhouette(x, theirs, metric="euclidean")), (n, k)


def test_ward_cut_and_silhouette_refuse_impossible_splits():
    from scipy.cluster.hierarchy import ward

    x = np.arange(8.0).reshape(4, 2)
    assert ward_labels(ward(x), 1).tolist() == [0, 0, 0, 0]
    assert ward_labels(ward(x), 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot cut 4 points into 5 clusters"):
        ward_labels(ward(x), 5)
    with pytest.raises(ValueError, match="2 to 3 non-empty clusters, got sizes \\[4\\]"):
        silhouette_score(x, np.zeros(4, dtype=int))


# ------------------------------------------------------------------------------------------------ scores


def test_scores_equal_numpy_reference_of_the_two_equations():
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(7, 12)) * rng.uniform(0.5, 3, size=(7, 1))  # not normalised on purpose
    texts = rng.normal(size=(30, 12)) * rng.uniform(0.5, 3, size=(30, 1))
    ref = np.zeros(30)
    for c in range(30):
        cos = [crops[i] @ texts[c] / (np.linalg.norm(crops[i]) * np.linalg.norm(texts[c])) for i in range(7)]
        ref[c] = np.mean(cos)
    np.testing.assert_allclose(concept_scores(crops, texts), ref, rtol=1e-12)
    top = top_concepts(ref, [f"id{i}" for i in range(30)], [f"t{i}" for i in range(30)], 3)
    assert [t["id"] for t in top] == [f"id{i}" for i in np.argsort(-ref)[:3]]
    assert [t["rank"] for t in top] == [0, 1, 2] and top[0]["score"] == pytest.approx(ref.max())
    tied = top_concepts(np.array([0.5, 0.9, 0.9, 0.1]), list("abcd"), list("ABCD"), 2)
    assert [t["id"] for t in tied] == ["b", "c"]


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    work = tmp_path_factory.mktemp("hyp_e2e")
    images = make_image_folder(work / "images", n_per_class=6, corrupt=1)
    words = work / "words.txt"
    words.write_text(
        "red\nblue\n\nred\n$(rm -rf ~)\n../../etc/passwd\n*{wild}?\n" + "long " * 300 + "\n", encoding="utf-8"
    )
    emb = make_tiny_clip(work / "clip")
    cfg = tiny_config(images, words, embedder=emb, hypothesize={"concepts_per_cluster": 3})
    proc = run_snakemake(work, cfg, targets=("results/tiny/pics/words/hypotheses", "results/tiny/pics/grids"))
    return work, cfg, proc


@pytest.mark.workflow
def test_end_to_end_outputs(e2e):
    work, cfg, proc = e2e
    ran = jobs_run(proc)
    assert all(
        ran[r] == 1
        for r in (
            "embed_crops",
            "cluster_crops",
            "hypothesize",
            "neuron_grids",
            "prepare_concepts",
            "embed_concepts",
        )
    )
    res = work / "results"
    selected = sorted(int(p.stem) for p in (res / "tiny/pics/select/neurons").glob("*.json"))
    assert selected, "the tiny model should have selected neurons"
    concepts = json.loads((res / "concepts/words/concepts.json").read_text())
    assert (concepts["n_raw"], concepts["n_blank"], concepts["n_duplicates"]) == (8, 1, 1)
    texts = [c["text"] for c in concepts["concepts"]]
    assert "$(rm -rf ~)" in texts and "../../etc/passwd" in texts
    # concept text never became a path
    for p in work.rglob("*"):
        assert "passwd" not in str(p) and "rm -rf" not in str(p) and "wild" not in str(p)

    with h5py.File(res / "tiny/pics/crops/crops.h5") as f:
        neurons = f["neurons"][()].tolist()
        emb = f["embeddings"][()]
        boxes = f["boxes"][()]
        rows = f["rows"][()]
        assert json.loads(f.attrs["embedder"])["arch"] == cfg["embedder"]["arch"]
    with h5py.File(res / "tiny/pics/activations.h5") as f:
        assert (rows == f["topk/index"][()][neurons, : rows.shape[1]]).all()
    assert neurons == selected and emb.shape[:2] == (len(selected), 5) and emb.shape[2] == 16
    np.testing.assert_allclose(np.linalg.norm(emb, axis=2), 1.0, atol=1e-5)
    assert (boxes[..., 0] < boxes[..., 2]).all() and (boxes[..., 3] <= 16).all() and (boxes >= 0).all()

    with h5py.File(res / "concepts/words/embeddings.h5") as f:
        ids = [i.decode() if isinstance(i, bytes) else i for i in f["ids"][()]]
        t_emb = f["embeddings"][()]
        assert f.attrs["template"] == "{}"
    assert ids == [c["id"] for c in concepts["concepts"]]
    np.testing.assert_allclose(np.linalg.norm(t_emb, axis=1), 1.0, atol=1e-5)

    for s, n in enumerate(neurons):
        cl = json.loads((res / f"tiny/pics/clusters/{n}.json").read_text())
        hy = json.loads((res / f"tiny/pics/words/hypotheses/{n}.json").read_text())
        assert cl["neuron"] == n and [c["rank"] for c in cl["crops"]] == list(range(5))
        assert [c["box"] for c in cl["crops"]] == boxes[s].tolist()
        kept = sorted(m for c in cl["clusters"] for m in c["members"])
        dropped = sorted(m for c in cl["dropped"] for m in c["members"])
        assert sorted(kept + dropped) == list(range(5))
        assert hy["method"] == "sieve" and hy["concept_set"] == "words"
        assert [c["cluster"] for c in hy["clusters"]] == [c["cluster"] for c in cl["clusters"]]
        for c in hy["clusters"]:
            ref = concept_scores(emb[s, c["members"]], t_emb)
            want = np.argsort(-ref, kind="stable")[:3]
            assert [x["id"] for x in c["concepts"]] == [ids[j] for j in want]
            np.testing.assert_allclose([x["score"] for x in c["concepts"]], ref[want], rtol=1e-6)
        assert (res / f"tiny/pics/grids/{n}.jpg").stat().st_size > 0


@pytest.mark.workflow
def test_crop_embedding_is_the_crop_of_the_image_the_model_saw(e2e):
    """Recompute one crop from the probe image and the stored box: same CLIP embedding."""
    from sieve.backends.embedders import load_embedder
    from sieve.backends.imagesets import open_image_set
    from sieve.backends.models import Preprocess
    from sieve.crops import cut_and_resize

    work, cfg, _ = e2e
    with h5py.File(work / "results/tiny/pics/crops/crops.h5") as f:
        pre = Preprocess.coerce(json.loads(f.attrs["preprocess"]))
        pi, box, want = int(f["probe_index"][0, 1]), f["boxes"][0, 1], f["embeddings"][0, 1]
    probe = open_image_set("pics", cfg["probes"]["pics"])
    embedder = load_embedder(cfg["embedder"], "cpu")
    x = cut_and_resize(pre.geometric(probe.load(pi)), box, embedder.image_size)
    got = embedder.encode_images(x[None].to(torch.float16).float())[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.workflow
def test_device_resize_gives_the_same_crops_and_close_embeddings(e2e, tmp_path):
    """``crop.resize: device`` (on the CPU here) against the workflow's own ``crops.h5`` (``auto`` on the CPU:
    the host path, rerun here to the same file contents): same neurons, rows and boxes, embeddings within a
    cosine of 0.99 per crop, and the path recorded in the ``crop`` attribute."""
    from sieve.backends.embedders import load_embedder
    from sieve.backends.imagesets import open_image_set
    from sieve.config import with_defaults
    from sieve.crops import run_embed_crops
    from sieve.hypothesize import read_crops

    work, cfg, _ = e2e
    res = work / "results/tiny/pics"
    crop = with_defaults(cfg.get("hypothesize", {}).get("crop"), "hypothesize.crop")  # as the workflow's
    probe = open_image_set("pics", cfg["probes"]["pics"])
    embedder = load_embedder(cfg["embedder"], "cpu")
    outs = {}
    # the host path at the workflow's batch size (its float sums depend on it); the device path at 4: several
    # flushes, each with crops of several images
    for resize, batch_size in (
        ("auto", with_defaults(cfg["embedder"], "embedder")["batch_size"]),
        ("device", 4),
    ):
        outs[resize] = tmp_path / f"{resize}.h5"
        run_embed_crops(
            str(res / "activations.h5"),
            str(res / "select/neurons"),
            probe,
            embedder,
            str(outs[resize]),
            spec=cfg["embedder"],
            crop={**crop, "resize": resize},
            batch_size=batch_size,
        )
    want, host, dev = (read_crops(str(p)) for p in (res / "crops/crops.h5", outs["auto"], outs["device"]))
    for key in ("neurons", "rows", "probe_index", "boxes", "activation"):
        np.testing.assert_array_equal(dev[key], want[key])
    np.testing.assert_array_equal(host["embeddings"], want["embeddings"])
    cos = np.einsum("skd,skd->sk", dev["embeddings"], want["embeddings"])
    assert cos.min() >= 0.99 and not np.array_equal(dev["embeddings"], want["embeddings"])
    with h5py.File(res / "crops/crops.h5") as f, h5py.File(outs["auto"]) as a, h5py.File(outs["device"]) as d:
        assert "resize" not in json.loads(f.attrs["crop"]) and a.attrs["crop"] == f.attrs["crop"]
        assert json.loads(d.attrs["crop"]) == {**json.loads(f.attrs["crop"]), "resize": "device"}


@pytest.mark.workflow
def test_changing_crop_resize_reruns_the_crops_and_what_follows(e2e, tmp_path):
    """``hypothesize.crop.resize`` is a parameter of ``embed_crops``: on a copy of the run, ``device`` reruns the
    crops and what reads them, never the probe, Select or the concept embeddings (a dry run, as
    tests/test_reruns.py; what the device path writes is test_device_resize_gives_the_same_crops_...'s)."""
    work, cfg, _ = e2e
    run = copy_run(work, tmp_path / "run")
    cfg = json.loads(json.dumps(cfg))
    targets = ("results/tiny/pics/words/hypotheses", "results/tiny/pics/grids")
    assert jobs_run(run_snakemake(run, cfg, targets=targets, extra=("-n",))) == {}  # the copy is complete
    cfg.setdefault("hypothesize", {})["crop"] = {"resize": "device"}
    proc = run_snakemake(run, cfg, targets=targets, extra=("-n",))
    assert jobs_run(proc) == {"embed_crops": 1, "cluster_crops": 1, "hypothesize": 1, "neuron_grids": 1}


@pytest.mark.workflow
def test_mismatched_embeddings_are_refused(e2e, tmp_path):
    work, _, _ = e2e
    res = work / "results"
    bad = tmp_path / "embeddings.h5"
    shutil.copy(res / "concepts/words/embeddings.h5", bad)
    with h5py.File(bad, "a") as f:
        f.attrs["embedder"] = json.dumps({"source": "open_clip", "arch": "ViT-B-16", "pretrained": "openai"})
    with pytest.raises(HypothesizeError, match="crops .* were embedded with"):
        run_hypothesize(
            str(res / "tiny/pics/clusters"),
            str(res / "tiny/pics/crops/crops.h5"),
            str(res / "concepts/words/concepts.json"),
            str(bad),
            str(tmp_path / "out"),
        )
    other = tmp_path / "concepts.json"
    doc = json.loads((res / "concepts/words/concepts.json").read_text())
    doc["concepts"] = doc["concepts"][1:]
    other.write_text(json.dumps(doc))
    with pytest.raises(HypothesizeError, match="does not hold the concepts"):
        run_hypothesize(
            str(res / "tiny/pics/clusters"),
            str(res / "tiny/pics/crops/crops.h5"),
            str(other),
            str(res / "concepts/words/embeddings.h5"),
            str(tmp_path / "out"),
        )
    assert not Path(tmp_path / "out").exists()


@pytest.mark.workflow
def test_no_selected_neuron_gives_empty_outputs(e2e, tmp_path):
    """tau above every ratio: the stage still writes valid, empty outputs instead of failing."""
    from sieve.backends.imagesets import open_image_set
    from sieve.crops import run_embed_crops
    from sieve.hypothesize import read_crops, run_cluster
    from sieve.report.grids import run_grids
    from tinyclip import projection_embedder

    work, cfg, _ = e2e
    res = work / "results"
    (tmp_path / "neurons").mkdir()
    probe = open_image_set("pics", cfg["probes"]["pics"])
    out = run_embed_crops(
        str(res / "tiny/pics/activations.h5"),
        str(tmp_path / "neurons"),
        probe,
        projection_embedder(8),
        str(tmp_path / "crops.h5"),
        spec={"source": "python"},
    )
    assert out == {"n_neurons": 0, "n_crops": 0, "n_images": 0}
    assert read_crops(str(tmp_path / "crops.h5"))["embeddings"].shape == (0, 0, 8)
    assert run_cluster(str(tmp_path / "crops.h5"), str(tmp_path / "clusters")) == 0
    assert (
        run_grids(str(tmp_path / "clusters"), str(tmp_path / "crops.h5"), probe, str(tmp_path / "grids")) == 0
    )
    assert list((tmp_path / "clusters").iterdir()) == [] and (tmp_path / "grids").is_dir()


@pytest.mark.parametrize("seed", range(6))
def test_top_k_indices_equal_a_stable_descending_sort(seed):
    """The O(C) selection keeps exactly what the full stable sort kept, ties (in concept-set order) included."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=200).astype(np.float64) / 4  # many ties, ties at the k-th place too
    if seed % 2:
        scores = rng.normal(size=2000)
    if seed == 4:
        scores[[3, 17]] = np.nan
    for k in (0, 1, 2, 7, 50, len(scores), len(scores) + 3):
        want = np.argsort(-scores, kind="stable")[:k]
        assert top_k_indices(scores, k).tolist() == want.tolist()
