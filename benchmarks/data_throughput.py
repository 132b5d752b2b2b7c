"""Data throughput: prepare images/s, loader images/s vs torchvision ImageFolder, flat memory.

    python benchmarks/data_throughput.py [--n 10000] [--batch-size 64]

1. Writes N MNIST test digits (from the offline idx files) as 32×32 grey PNGs in class folders.
2. prepare: ingest + prepare that folder with the real stage code → images/s.
3. loader: training-shaped reads from prepared/ (a fresh shuffle per epoch, batches of
   --batch-size, uint8 → float [-1, 1]) vs torchvision ImageFolder + DataLoader over the same
   PNGs (ToTensor + Normalize; the faster of num_workers 0 and 2, steady-state epoch).
4. memory: peak RSS of a fresh process reading the same number of batches from a prepared
   dataset of N' and 10×N' images; flat means the memmap is never read whole.

Last line: ``ratio: N.NN (loader images/s from prepared/ vs torchvision ImageFolder ...)``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ganpkg.config import DataConfig
from ganpkg.data.ingest import ingest
from ganpkg.data.prepare import prepare
from ganpkg.data.prepared import open_prepared, uint8_to_float, write_prepared

RSS_PROBE = """
import sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from ganpkg.data.prepared import open_prepared, uint8_to_float

def mib():  # resident memory, split: private (anonymous) and file-backed (mapped page cache)
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "RssAnon", "RssFile")}

path, batches, batch, whole = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
before = mib()
if whole:  # the contrast: what reading the array whole would cost
    images = np.load(path + "/images.npy")
else:
    ds = open_prepared(path)
    rng = np.random.default_rng(0)
    for _ in range(batches):
        x = uint8_to_float(ds.batch_uint8(rng.integers(0, len(ds), batch)))
after = mib()
print(after["VmHWM"], after["RssAnon"] - before["RssAnon"], after["RssFile"] - before["RssFile"])
"""


def mnist_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n MNIST digits (train then test), 28×28 uint8, with labels."""
    from ganpkg.data.source_mnist import MnistSource

    work = Path(tempfile.mkdtemp(prefix="bench-mnist-"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        cfg = DataConfig(split="all")
        ingest(cfg)
        listing = MnistSource().items(Path("data"), {}, cfg)
        fetched = [item.fetch() for item in listing.items[:n]]
    finally:
        os.chdir(cwd)
    images = np.stack([np.asarray(f.image) for f in fetched])
    return images, np.array([f.label for f in fetched])


def write_pngs(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Each digit as a 32×32 grey PNG in <root>/<label>/<i>.png (ImageFolder's layout)."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).resize((32, 32), Image.Resampling.LANCZOS).save(folder / f"{i}.png")


def ours_images_per_s(prepared: Path, batch: int, epochs: int) -> float:
    """Shuffled, training-shaped epochs over prepared/ (uint8 memmap → float batches)."""
    ds = open_prepared(prepared)
    rng = np.random.default_rng(0)
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(ds))
        for i in range(0, len(order) - batch + 1, batch):
            x = uint8_to_float(ds.batch_uint8(order[i:i + batch]))
            seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def imagefolder_images_per_s(root: Path, batch: int, workers: int) -> float:
    """torchvision ImageFolder + DataLoader, steady state (second epoch, workers kept alive)."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Grayscale(1), transforms.ToTensor(),
                             transforms.Normalize((0.5,), (0.5,))])
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root), transform=tf), batch_size=batch, shuffle=True,
        num_workers=workers, persistent_workers=workers > 0, drop_last=True)
    rate = 0.0
    for _ in range(2):  # the first epoch pays worker start-up; report the second
        seen, start = 0, time.perf_counter()
        for x, _ in loader:
            seen += x.shape[0]
        rate = seen / (time.perf_counter() - start)
    return rate


def memory(prepared: Path, batches: int, batch: int, whole: bool = False) -> list[float]:
    """[peak RSS, private RSS growth, file-backed RSS growth] in MiB, from a fresh process."""
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(prepared), str(batches),
                          str(batch), "1" if whole else "0"], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return [float(v) for v in out.stdout.split()]


def synthetic_prepared(root: Path, digits: np.ndarray, count: int) -> Path:
    """A prepared/ of `count` 1×32×32 images tiled from real digits (written via a memmap)."""
    scratch = np.lib.format.open_memmap(root.with_suffix(".npy"), mode="w+", dtype=np.uint8,
                                        shape=(count, 1, 32, 32))
    tile = np.zeros((len(digits), 1, 32, 32), np.uint8)
    tile[:, 0, 2:30, 2:30] = digits
    for i in range(0, count, len(tile)):
        scratch[i:i + len(tile)] = tile[: count - i]
    scratch.flush()
    write_prepared(root, scratch, np.zeros(count, np.int64), {"note": "benchmark"})
    del scratch
    os.remove(root.with_suffix(".npy"))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="PNG images (≤ 70000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rss-images", type=int, default=60_000, help="1× size for the RSS probe")
    args = parser.parse_args()
    # One intra-op thread for both loaders: on 2 shared cores, OpenMP's spinning workers make
    # small uint8→float ops ~100× slower whenever another process is busy.
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    os.chdir(work)
    digits, labels = mnist_digits(args.n)
    write_pngs(work / "pngs", digits, labels)
    print(f"dataset: {args.n} MNIST digits as 32x32 grey PNGs under {work / 'pngs'}")

    cfg = DataConfig(source="image_folder", source_path=str(work / "pngs"))
    start = time.perf_counter()
    ingest(cfg)
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    result = prepare(cfg)
    prepare_s = time.perf_counter() - start
    assert result.accepted == args.n, result.rejected[:3]
    print(f"ingest: {args.n / ingest_s:,.0f} images/s ({ingest_s:.2f} s, byte copy + md5)")
    print(f"prepare: {args.n / prepare_s:,.0f} images/s ({prepare_s:.2f} s, decode + convert + "
          f"Lanczos resize, {os.cpu_count()} CPU cores)")

    ours = ours_images_per_s(Path("prepared"), args.batch_size, epochs=5)
    print(f"loader (prepared/ memmap, shuffled batches of {args.batch_size}): "
          f"{ours:,.0f} images/s (target >= 20,000)")
    base = {w: imagefolder_images_per_s(work / "pngs", args.batch_size, w) for w in (0, 2)}
    for w, rate in base.items():
        print(f"baseline torchvision ImageFolder + DataLoader(num_workers={w}): "
              f"{rate:,.0f} images/s")
    baseline = max(base.values())

    batches = args.rss_images // args.batch_size // 2  # half an epoch of the 1× dataset
    grown = {}
    for factor in (1, 10):
        root = synthetic_prepared(work / f"rss{factor}", digits, factor * args.rss_images)
        size_mb = (root / "images.npy").stat().st_size / 2**20
        peak, anon, file = memory(root, batches, args.batch_size)
        grown[factor] = anon
        print(f"memory, {factor:>2}x dataset ({factor * args.rss_images:,} images, "
              f"{size_mb:,.0f} MiB): {batches} shuffled batches: peak RSS {peak:,.0f} MiB "
              f"(torch itself ~500), private +{anon:,.0f} MiB, mapped file pages +{file:,.0f} MiB")
    peak, anon, _ = memory(root, batches, args.batch_size, whole=True)
    print(f"contrast, np.load of the 10x array without mmap: private +{anon:,.0f} MiB")
    print(f"private RSS growth 1x -> 10x dataset: {grown[1]:.0f} -> {grown[10]:.0f} MiB (flat); "
          "mapped file pages are page cache: shared, reclaimable, bounded by the pages touched")
    print(f"ratio: {ours / baseline:.2f} (loader images/s from prepared/ vs torchvision "
          f"ImageFolder on the same PNGs)")


if __name__ == "__main__":
    main()
