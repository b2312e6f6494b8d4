"""sieve: Select, Hypothesize, Verify.

Explain what the neurons of a vision model do, and prove it. Stage modules:

- :mod:`sieve.probe`       probe activations (one streaming pass, HDF5)
- :mod:`sieve.select`      selectivity ratio p99 / median and the neurons kept
- :mod:`sieve.hypothesize` crops, CLIP clusters and concept hypotheses
- :mod:`sieve.concepts`    concept-set reading, cleaning and hashing
- :mod:`sieve.verify`      generation requests, sharded generation and its cache, Activation Rate
- :mod:`sieve.report`      the HTML report and the neuron grids it shows
- :mod:`sieve.backends`    registries of models, image sets, embedders and generators (``source:``)
- :mod:`sieve.evaluate`    CLIP-Dissect baseline, final-layer metrics, neuron ablation, tau sweep,
                           stage ablations, planted-truth comparison
- :mod:`sieve.synthetic`   the planted-concept world, a backend like any other
- :mod:`sieve.config`      config defaults, read from the schema (the one place they live)
- :mod:`sieve.io`          atomic writes, strict JSON, the one CSV writer, logging
"""

__version__ = "0.1.0"
