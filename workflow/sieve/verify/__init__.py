"""Verify stage: generate images of every hypothesised concept, measure the neurons on them, Activation Rate.

Four steps, four rules (``workflow/rules/verify.smk``), one module each:

1. :func:`.requests.run_requests` gathers every distinct concept that any hypotheses folder names (all models,
   probes, concept sets and baseline methods) into ``results/generate/requests.json``. A concept's prompt is the
   ``generator.prompt`` template filled with its text; its shard is ``stable_hash(prompt) mod shards``, so it
   does not depend on which other concepts exist. The control pool of every concept set
   (:mod:`.controls`: ``verify.controls`` of its concepts and the neutral prompts) joins the same requests.
2. :func:`.plan.plan_generation` (a CPU job, the Snakemake checkpoint ``generation_plan``) audits the cache and
   decides which shards have anything to generate or measure; only those become GPU jobs. For the others it
   writes the manifest a job would have written (``results/generate/plan/shards/{shard}.json``), so adding a
   concept set whose concepts were all generated before, or a ``select.tau`` that names no new concept, queues
   no GPU job.
3. :func:`.shard.run_shard` (one job per shard with work, on a GPU) loads the generator and every configured
   target model once, generates the shard's missing (prompt, seed) images in batches, resizes each batch on the
   device to every model's input and records the pooled activation of every neuron of the analysed layer.
   Results go to a content-addressed cache and a manifest ``results/generate/shards/{shard}.json`` lists them.
   Its planning phase (:func:`.shard.plan_shard`) needs no torch.
4. :func:`.activation_rate.run_activation_rate` (one CPU job per model/probe/concept set, or per baseline
   method) computes AR = share of a concept's images on which the neuron's pooled activation is above its probe
   threshold (the 99th percentile from Select), its Wilson interval and its scores against the concept set's
   control pool (:mod:`.controls`, :mod:`sieve.verify_stats`), applies both filters (the paper's, at the
   initial mean AR, and the specificity filter) and writes ``ar.csv``, ``summary.json``,
   ``neuron_concepts.csv`` and ``generated.json`` under the filter ``verify.filter`` names.

Cache layout (:mod:`.cache`, ``results/generate/cache/``; no concept text ever appears in a path)::

    {generator_key}/{prompt_key[:2]}/{prompt_key}/
        prompt.json                 the prompt and the generator settings
        acts/{model_key}.npz        seeds [n] int64, pooled [n, C] float32 (one row per image)
        thumbs/{seed}.jpg           keep_images: thumbnails (thumbnail_size px JPEG)
        images/{seed}.png           keep_images: full
        (every file)  + .sha256     its SHA-256, recorded when it was written
    resolved/{resolution_key}.json  the keys a shard job resolved for these settings (an ``auto`` dtype depends
                                    on the job's device): how a CPU job finds the entries the GPU jobs use

``generator_key`` hashes the settings that change pixels (source, model and a fingerprint of a local folder,
steps, guidance, resolution, resolved dtype, factory kwargs), ``prompt_key`` the prompt, ``model_key`` the target
model's spec and resolved dtype. Seeds are ``generator.seed + i`` for image i, so raising
``images_per_concept`` only generates the new seeds.

What is guaranteed:

- Kill-safe: every file is written under a temporary name and renamed, then its checksum is recorded; ``acts``
  is written last and is the completion marker, so a killed shard loses at most the concepts in flight (and the
  writes of its last batch, which a writer thread does beside generation), and the
  rerun deletes leftover temporary files before it regenerates them (a job that shares the cache and finds its
  temporary file deleted that way writes it again). A file killed between its rename and its checksum has no
  recorded checksum: like a file of a cache from before checksums, it is used if it loads, and gets its
  checksum at the next plan.
- Checksummed: every read of an activation file (the shard's plan, the generation plan, the parse-time audit,
  Activation Rate) checks it against its recorded SHA-256, and kept images and thumbnails are checked before
  they are trusted. A missing, truncated, empty or altered file counts as missing; the jobs log its path.
  Files of a cache written before checksums existed are accepted when they load and get their checksum from
  the next plan, so an existing cache stays valid.
- Self-healing: when the workflow is parsed (dry runs too; the audit only reads), :func:`.plan.audit_plan`
  checks every entry the last plan relies on. Damage changes a param of the request rules and the plan, so a
  plain ``snakemake`` plans again and regenerates what is missing or damaged, and only that: shards whose
  entries are intact stay without a job, and the run after the repair has nothing to do. Activation Rate stops
  with an error naming the file when the cache is damaged while the run is under way (the next run heals it).

Images are quantised to 8 bits before they are measured (what any saved image holds), so activations measured
on the fly equal those measured later from ``keep_images: full`` PNGs (used when a model is added).
"""

from __future__ import annotations


class VerifyError(ValueError):
    """Bad or missing input for Verify: the message names the file, neuron and concept."""
