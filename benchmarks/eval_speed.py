"""In-memory evaluation vs exporting the same samples to PNG and running the `fidelity` CLI.

Both sides: the same untrained default DCGAN generator, the same z (torch-fidelity's noise
from the same seed), the same extractor (ganpkg's domain classifier, registered with
torch-fidelity), the same n, batch size and protocol, and the same cached reference
statistics (warmed before timing, so neither side pays for the real images). The baseline is
what a user without ganpkg's wrapper does: `ganpkg sample`-style PNG export, then a fresh
`fidelity` process reading the PNGs back.

    .venv/bin/python benchmarks/eval_speed.py [--n 10000] [--device cpu|cuda] [--random-inception]

`--random-inception` times torch-fidelity's Inception-v3 network instead, with weights drawn at
random (the real ones cannot be downloaded offline): the seconds are real, the metric values
are not.

The last line is `ratio: N.NN (...)`: baseline seconds / in-memory seconds (higher is better).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ganpkg.config import DomainExtractorConfig, EvalConfig, ModelConfig
from ganpkg.data.prepared import open_prepared, write_prepared
from ganpkg.evaluation.extractor_domain import train_domain_extractor
from ganpkg.evaluation.extractors import resolve_extractor
from ganpkg.evaluation.fidelity import calculate
from ganpkg.evaluation.fidelity_cli import cli_args, run_fidelity_cli
from ganpkg.evaluation.reference_stats import reference_indices, reference_input
from ganpkg.networks import build_generator
from ganpkg.sampling import save_images
from ganpkg.synthetic import labelled_shapes


def random_inception_weights(path: Path) -> str:
    """torch-fidelity's Inception-v3 with random weights, saved to `path`; returns its sha256.

    Timing only: the network is the one torch-fidelity runs, but its trained weights are a
    download this machine cannot make, so the metric values it gives mean nothing.
    """
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from ganpkg.files import hash_file

    cls = fe.FeatureExtractorInceptionV3
    # Its constructor loads the trained weights; skip that and keep PyTorch's initialisation.
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(cls, "load_state_dict", lambda self, *a, **k: None):
        net = cls("inception-v3-compat", ["2048", "logits_unbiased"])
    torch.save(net.state_dict(), path)
    return hash_file(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000,
                        help="generated samples per evaluation (eval.n_samples' default)")
    parser.add_argument("--n-real", type=int, default=5000, help="reference images")
    parser.add_argument("--random-inception", action="store_true",
                        help="time the Inception-v3 network (random weights) instead")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (best kept)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ganpkg-eval-speed-"))
    try:
        images, labels = labelled_shapes(args.n_real)
        dataset = open_prepared(write_prepared(work / "prepared", images, labels, {}))
        cfg = EvalConfig(
            extractor="domain", n_samples=args.n, batch_size=200, device=args.device,
            cache_dir=str(work / "cache"), memorization=False,
            # the same metrics the `fidelity` CLI computes: no bootstrap, floor or baseline
            bootstrap_resamples=0, floor=False, baseline=False,
            domain=DomainExtractorConfig(weights=str(work / "domain.pt"), epochs=1),
        )
        info = train_domain_extractor(dataset, cfg, device=args.device)
        extractor = f"ganpkg-domain (test accuracy {info['test_accuracy']:.3f})"
        if args.random_inception:
            path = work / "inception-random.pth"
            cfg = cfg.model_copy(update={"extractor": "inception-v3-compat",
                                         "inception_weights": str(path),
                                         "inception_weights_sha256": random_inception_weights(path)})
            extractor = "inception-v3-compat (random weights: timing only)"
        spec = resolve_extractor(cfg)
        torch.manual_seed(0)
        z_dim = ModelConfig().z_dim
        g = build_generator(ModelConfig(), 1, 32).eval().to(args.device)

        # Export the reference once and warm the shared cache: neither side is timed on it.
        reals = work / "reals"
        reals.mkdir()
        from PIL import Image

        for j, i in enumerate(reference_indices(len(dataset), cfg)):
            Image.fromarray(dataset.images[i, 0]).save(reals / f"real-{j:06d}.png")
        calculate(g, dataset, cfg.model_copy(update={"n_samples": 200}), spec, z_dim=z_dim)
        cache_name = reference_input(dataset, cfg, spec)[1]

        def ours() -> dict:
            return calculate(g, dataset, cfg, spec, z_dim=z_dim).raw

        def baseline() -> dict:
            fakes = work / "fakes"
            shutil.rmtree(fakes, ignore_errors=True)
            z = torch.from_numpy(np.random.RandomState(cfg.seed).randn(cfg.n_samples, z_dim))
            with torch.no_grad():
                for start in range(0, cfg.n_samples, cfg.batch_size):
                    chunk = z[start:start + cfg.batch_size].float().to(args.device)
                    save_images(g(chunk).cpu(), fakes, prefix=f"sample-{start:08d}")
            return run_fidelity_cli(cli_args(fakes, reals, cfg, spec,
                                             min(cfg.kid_subset_size, cfg.n_samples, len(dataset)),
                                             reals_cache_name=cache_name))

        timings: dict[str, list[float]] = {"ours": [], "baseline": []}
        results = {}
        for _ in range(args.repeats):
            for name, fn in (("ours", ours), ("baseline", baseline)):
                start = time.perf_counter()
                results[name] = fn()
                timings[name].append(time.perf_counter() - start)
        t_ours, t_base = min(timings["ours"]), min(timings["baseline"])
        fid_ours = results["ours"]["frechet_inception_distance"]
        fid_base = results["baseline"]["frechet_inception_distance"]
        device = torch.cuda.get_device_name() if args.device == "cuda" else \
            f"CPU, {torch.get_num_threads()} threads"
        print(f"extractor {extractor}, n={args.n}, reference n={len(dataset)}, device: {device}")
        print(f"FID in memory {fid_ours:.6g} | via PNG + CLI {fid_base:.6g} "
              f"(relative difference {abs(fid_ours - fid_base) / abs(fid_base):.1e})")
        print(f"in-memory evaluation:  {t_ours:7.2f} s  ({t_ours * 10_000 / args.n:.2f} s per 10k "
              f"samples)")
        print(f"PNG export + fidelity: {t_base:7.2f} s  ({t_base * 10_000 / args.n:.2f} s per 10k "
              f"samples)")
        print(f"ratio: {t_base / t_ours:.2f} (in-memory evaluation vs PNG export + fidelity CLI, "
              f"same extractor {spec.extractor}, n={args.n}, {device})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
