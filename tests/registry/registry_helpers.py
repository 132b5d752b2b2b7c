"""Shared test data for the registry tests (plain module: conftest files cannot be imported)."""

import importlib.util
from pathlib import Path

# The root conftest's tiny-config helpers, loaded by path under a name of their own.
_spec = importlib.util.spec_from_file_location("_ganpkg_root_conftest",
                                               Path(__file__).parents[1] / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
TINY: list = _root.TINY
make_prepared = _root.make_prepared

# What evaluation hands over (plain dicts); the gate reads fid_domain and the memorized fraction.
PROTOCOL = {"extractor": "domain", "extractor_weights_sha256": "ab" * 32, "n_samples": 64,
            "seed": 0, "reference_split": "all", "reference_n": 128, "reference_md5": "cd" * 16,
            "resize": "none", "isc_splits": 10, "kid_subsets": 100, "kid_subset_size": 64,
            "prc_neighborhood": 3, "torch_fidelity": "0.4.0", "extractor_test_accuracy": 0.9}
METRICS = {"fid_domain": 10.0, "kid_domain": 0.01, "is_domain": 1.5,
           "memorized_fraction_domain": 0.01,
           # what evaluation records beside the value; 10 is 67% of the way (log scale) from
           # the baseline to the floor, so this first version earns champion
           "fid_domain_se": 0.1, "fid_domain_baseline": 1000.0, "fid_domain_floor": 1.0}
