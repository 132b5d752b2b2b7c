"""Evaluation with torch-fidelity: FID, IS, KID and precision/recall on a generator in memory.

Modules, in the order data flows through them:

- ``weights``: which extractor weights a protocol uses, sha256-checked; ``check_eval_ready``
  fails fast (before training) when they cannot be had.
- ``extractor_domain``: the small domain classifier trained on the prepared labels, registered
  with torch-fidelity as the feature extractor ``ganpkg-domain``.
- ``reference_stats``: the real images as torch-fidelity input, and the cache names that key
  reference features/statistics by (data md5, split, n, extractor, weights sha256).
- ``fidelity``: ``evaluate_generator`` / ``evaluate_checkpoint`` (``calculate_metrics`` on the
  generator wrapped as a torch-fidelity generative model; no PNGs).
- ``memorization``: nearest training image of each sample in feature space.
- ``protocol``: what a number was measured with, so only like is compared with like.

Importing this package imports nothing heavy and registers nothing; registration with
torch-fidelity happens on first use.
"""
