"""Evaluation with torch-fidelity: FID, IS, KID and precision/recall on a generator in memory.

Modules, in the order data flows through them:

- ``extractors``: the registered extractors and their weights, sha256-checked;
  ``check_eval_ready`` fails fast (before training) when they cannot be had.
- ``extractor_domain``: the small domain classifier trained on the prepared labels, registered
  with torch-fidelity as the feature extractor ``ganpkg-domain``.
- ``reference_stats``: the real images as torch-fidelity input, and their features cached
  (``.npy``, no pickle) by data md5, split, n, extractor and weights sha256.
- ``fidelity``: ``evaluate_generator`` / ``evaluate_checkpoint`` (torch-fidelity's metric
  functions on the generator's features, in memory; no PNGs) with ``uncertainty``'s bootstrap.
- ``memorization``: nearest training image of each sample in feature space.
- ``protocol``: what a number was measured with, so only like is compared with like.

Importing this package imports nothing heavy and registers nothing; registration with
torch-fidelity happens on first use.
"""
