"""torch-fidelity's own `fidelity` CLI with ganpkg's extractor registered, and a runner for it.

A separate `fidelity` process cannot see registrations made in ours, so this entry point
registers ``ganpkg-domain`` and then runs torch-fidelity's unmodified ``main``:

    python -m ganpkg.evaluation.fidelity_cli --input1 fakes/ --input2 reals/ --fid --kid \\
        --feature-extractor ganpkg-domain --feature-extractor-weights-path extractor/domain.pt

It is the baseline that parity tests and benchmarks/eval_speed.py compare against.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ganpkg.config import EvalConfig


def cli_args(fakes: str | Path, reals: str | Path, cfg: EvalConfig, spec,
             kid_subset_size: int, reals_cache_name: str | None = None) -> list[str]:
    """The `fidelity` arguments that reproduce ganpkg's protocol on two PNG folders."""
    args = ["--input1", str(fakes), "--input2", str(reals), "--json", "--silent",
            "--feature-extractor", spec.fidelity_name,
            "--feature-extractor-weights-path", str(spec.weights_path),
            "--batch-size", str(cfg.batch_size), "--rng-seed", str(cfg.seed),
            "--isc-splits", str(cfg.isc_splits), "--kid-subsets", str(cfg.kid_subsets),
            "--kid-subset-size", str(kid_subset_size),
            "--prc-neighborhood", str(cfg.prc_neighborhood), "--cache-root", str(cfg.cache_dir)]
    args += [flag for flag, on in (("--fid", cfg.fid), ("--isc", cfg.isc), ("--kid", cfg.kid),
                                   ("--prc", cfg.prc)) if on]
    if reals_cache_name:
        args += ["--input2-cache-name", reals_cache_name]
    if cfg.device == "cpu":
        args.append("--cpu")
    return args


def run_fidelity_cli(args: list[str]) -> dict[str, float]:
    """Run the CLI in a fresh process (as a user would) and return its JSON metrics."""
    done = subprocess.run([sys.executable, "-m", "ganpkg.evaluation.fidelity_cli", *args],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fidelity CLI failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout[done.stdout.index("{"):])


def main() -> None:
    """Register ganpkg's extractors, then hand over to torch-fidelity's CLI."""
    from torch_fidelity.fidelity import main as fidelity_main

    from ganpkg.evaluation.extractor_domain import register_domain_extractor
    from ganpkg.evaluation.extractors import DomainExtractor

    register_domain_extractor(DomainExtractor.fidelity_name)
    fidelity_main()


if __name__ == "__main__":
    main()
