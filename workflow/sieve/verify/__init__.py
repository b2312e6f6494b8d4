"""Verify stage: generate images of every hypothesised concept, measure the neurons on them, Activation Rate.

Three steps, three rules (``workflow/rules/verify.smk``), one module each:

1. :func:`.requests.run_requests` gathers every distinct concept that any hypotheses folder names (all models,
   probes, concept sets and baseline methods) into ``results/generate/requests.json``. A concept's prompt is the
   ``generator.prompt`` template filled with its text; its shard is ``stable_hash(prompt) mod shards``, so it
   does not depend on which other concepts exist.
2. :func:`.shard.run_shard` (one job per shard, on a GPU) loads the generator and every configured target model
   once, generates the shard's missing (prompt, seed) images in batches, resizes each batch on the device to
   every model's input and records the pooled activation of every neuron of the analysed layer. Results go to a
   content-addressed cache and a manifest ``results/generate/shards/{shard}.json`` lists them. Its planning
   phase (:func:`.shard.plan_shard`) needs no torch.
3. :func:`.activation_rate.run_activation_rate` (one CPU job per model/probe/concept set, or per baseline
   method) computes AR = share of a concept's images on which the neuron's pooled activation is above its probe
   threshold (the 99th percentile from Select), filters at the initial mean AR and writes ``ar.csv``,
   ``summary.json``, ``neuron_concepts.csv`` and ``generated.json``.

Cache layout (:mod:`.cache`, ``results/generate/cache/``; no concept text ever appears in a path)::

    {generator_key}/{prompt_key[:2]}/{prompt_key}/
        prompt.json                 the prompt and the generator settings
        acts/{model_key}.npz        seeds [n] int64, pooled [n, C] float32 (one row per image)
        thumbs/{seed}.jpg           keep_images: thumbnails (thumbnail_size px JPEG)
        images/{seed}.png           keep_images: full

``generator_key`` hashes the settings that change pixels (source, model and a fingerprint of a local folder,
steps, guidance, resolution, resolved dtype, factory kwargs), ``prompt_key`` the prompt, ``model_key`` the target
model's spec and resolved dtype. Seeds are ``generator.seed + i`` for image i, so raising
``images_per_concept`` only generates the new seeds. Every file is written under a temporary name and renamed;
``acts`` is written last and is the completion marker, so a killed shard loses at most the concepts in flight,
and the rerun deletes leftover temporary files before it regenerates them (a job that shares the cache and
finds its temporary file deleted that way writes it again).

Images are quantised to 8 bits before they are measured (what any saved image holds), so activations measured
on the fly equal those measured later from ``keep_images: full`` PNGs (used when a model is added).
"""

from __future__ import annotations


class VerifyError(ValueError):
    """Bad or missing input for Verify: the message names the file, neuron and concept."""
