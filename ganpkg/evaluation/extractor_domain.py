"""A small classifier trained on the prepared labels, used as torch-fidelity's feature extractor.

Inception features mean little on digits, medical or microscopy images, and its weights may
not be obtainable at all. This classifier is trained once per data version (dvc stage
`train_extractor`), registered with torch-fidelity as ``ganpkg-domain``, and then gives
FID/KID/PR on its penultimate features and IS on its logits through torch-fidelity's own code.
Its file is a weights-only ``torch.save`` (no pickle) with the metadata needed to rebuild it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from ganpkg.data.prepared import PreparedDataset, uint8_to_float
from ganpkg.device import resolve_device
from ganpkg.errors import UserError
from ganpkg.evaluation.reference_stats import prepared_md5, split_indices
from ganpkg.files import hash_file, write_atomic
from ganpkg.runtime import cpu_code_paths, reproducible

if TYPE_CHECKING:
    from ganpkg.config import EvalConfig

DOMAIN_FORMAT = "ganpkg-domain-extractor/1"
SELFSUP_FORMAT = "ganpkg-selfsup-extractor/1"  # extractor_selfsup.py


class DomainNet(nn.Module):
    """Conv net for any square resolution: features (pre-activation) and class logits."""

    def __init__(self, channels: int, num_classes: int, width: int, feature_dim: int,
                 first_stride: int = 1):
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(channels, width, first_stride), *block(width, 2 * width, 2),
            *block(2 * width, 4 * width, 2), *block(4 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.features = nn.Linear(4 * width, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.body(x))
        return features, self.head(features)


PROTOTYPE_TEMPERATURE = 0.1  # label-free logits: cosine / 0.1, a clear nearest centre takes most


class PrototypeHead(nn.Module):
    """Logits of the label-free extractor: cosine similarity of the features to fixed centres."""

    def __init__(self, n_prototypes: int, feature_dim: int):
        super().__init__()
        self.register_buffer("prototypes", torch.zeros(n_prototypes, feature_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ self.prototypes.t() / PROTOTYPE_TEMPERATURE


# file format → (the params key naming the file, the dvc stage that trains it)
EXTRACTOR_FILES = {
    DOMAIN_FORMAT: ("eval.domain.weights", "train_extractor"),
    SELFSUP_FORMAT: ("eval.selfsup.weights", "train_selfsup"),
}


def read_extractor_file(path: str | Path, expected: str = DOMAIN_FORMAT) -> dict:
    """A trained extractor file (weights-only torch.save) of format ``expected``, validated."""
    key, stage = EXTRACTOR_FILES[expected]
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        # torch.load fails on junk in many ways (struct.error, UnpicklingError, EOFError, ...);
        # whatever the way, the file is the user's to replace.
        raise UserError(f"{key}: {path} is not readable ({err.__class__.__name__}); "
                        f"retrain it with `dvc repro {stage}`") from None
    if not isinstance(blob, dict) or blob.get("format") != expected:
        raise UserError(f"{key}: {path} is not a ganpkg extractor of format {expected}; "
                        f"retrain it with `dvc repro {stage}`")
    return blob


def build_extractor_net(meta: dict) -> DomainNet:
    """The network an extractor file describes (weights not loaded): the classifier, or the
    label-free encoder with its prototype head."""
    if meta["format"] == SELFSUP_FORMAT:
        n = int(meta["n_prototypes"])
        net = DomainNet(int(meta["channels"]), n, int(meta["width"]), int(meta["feature_dim"]),
                        int(meta["first_stride"]))
        net.head = PrototypeHead(n, int(meta["feature_dim"]))
        return net
    return DomainNet(int(meta["channels"]), len(meta["classes"]), int(meta["width"]),
                     int(meta["feature_dim"]))


class FeatureExtractorDomain(FeatureExtractorBase):
    """torch-fidelity feature extractor over a trained ``DomainNet`` (the classifier, or the
    label-free encoder: ``expected_format`` of the subclass).

    Takes what every torch-fidelity extractor takes, uint8 B×3×H×W, so it works on the
    generator in memory and on PNG folders alike (the `fidelity` CLI included).
    """

    expected_format = DOMAIN_FORMAT

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        stage = EXTRACTOR_FILES[self.expected_format][1]
        vassert(feature_extractor_weights_path is not None,
                f"{name} needs feature_extractor_weights_path (train it: dvc repro {stage})")
        meta = read_extractor_file(feature_extractor_weights_path, self.expected_format)
        self.channels = int(meta["channels"])
        self.resolution = int(meta["resolution"])
        self.net = build_extractor_net(meta)
        self.net.load_state_dict(meta["state_dict"])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """uint8 B×3×H×W → tuple of the requested features, in `features_list` order."""
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting uint8 images")
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {x.shape}")
        x = uint8_to_float(x)
        if self.channels == 1:
            # exact for grayscale repeated to RGB (3a/3 == a in float32)
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=True)
        features, logits = self.net(x)
        out = {"features": features.float(), "logits": logits.float()}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, 8, 8]) * 255).to(torch.uint8)


class FeatureExtractorSelfSup(FeatureExtractorDomain):
    """torch-fidelity feature extractor over the label-free encoder (extractor_selfsup.py)."""

    expected_format = SELFSUP_FORMAT


def register_domain_extractor(name: str, cls: type = FeatureExtractorDomain) -> str:
    """Register a trained extractor class with torch-fidelity under ``name`` (idempotent)."""
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, cls)
    return name


def _labels_to_classes(labels: np.ndarray, root: Path) -> tuple[np.ndarray, np.ndarray]:
    if (labels < 0).any():
        raise UserError(f"{root}: some prepared images have no label; the domain extractor "
                        f"needs labels: use eval.extractor=inception-v3-compat")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise UserError(f"{root}: the labels have a single class; the domain extractor needs "
                        f"at least two: use eval.extractor=inception-v3-compat")
    return classes, np.searchsorted(classes, labels)


@torch.no_grad()
def _accuracy(net: nn.Module, dataset: PreparedDataset, indices: np.ndarray, targets: np.ndarray,
              device: torch.device, batch_size: int) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        x = uint8_to_float(dataset.batch_uint8(idx)).to(device)
        pred = net(x)[1].argmax(1).cpu().numpy()
        correct += int((pred == targets[idx]).sum())
    return correct / max(1, len(indices))


def _fit(dataset: PreparedDataset, dom, n_classes: int, targets: np.ndarray,
         train_idx: np.ndarray, dev: torch.device,
         progress: Callable[[int, int], None] | None = None) -> DomainNet:
    """Adam + one-cycle on the given images, in a fixed order drawn from eval.domain.seed;
    ``progress(batches done, batches in all)`` about every tenth of the way."""
    net = DomainNet(dataset.channels, n_classes, dom.width, dom.feature_dim).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=dom.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=dom.lr, total_steps=dom.epochs * -(-len(train_idx) // dom.batch_size))
    rng = np.random.RandomState(dom.seed)
    total = sched.total_steps
    every, done = max(1, total // 10), 0
    for _ in range(dom.epochs):
        net.train()
        order = rng.permutation(train_idx)
        for start in range(0, len(order), dom.batch_size):
            idx = order[start:start + dom.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on one image
                continue
            x = uint8_to_float(dataset.batch_uint8(idx)).to(dev)
            y = torch.from_numpy(targets[idx]).to(dev)
            loss = F.cross_entropy(net(x)[1], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if progress is not None and (done % every == 0 or done == total):
                progress(done, total)
    return net


def train_domain_extractor(dataset: PreparedDataset, cfg: EvalConfig, out: str | Path | None = None,
                           device: str = "auto",
                           progress: Callable[[int, int], None] | None = None) -> dict:
    """Train the domain classifier on the `train` split, test it on `holdout`, save it.

    Bit-reproducible on CPU: the same data and eval.domain params give the same file bytes on
    any machine of the same kind (one thread, deterministic kernels, a fixed data order), so a
    fresh clone reproduces the committed dvc.lock. On a GPU the bytes may differ; the weights'
    sha256 in the evaluation protocol then keeps the two yardsticks apart at the gate.

    Returns the info also written as JSON to eval.domain.report (or beside `out`): test
    accuracy, data md5, sha256, so a dvc stage can declare that JSON as its metrics file.
    """
    dom = cfg.domain
    report = Path(out).with_suffix(".json") if out else Path(dom.report)
    out = Path(out or dom.weights)
    classes, targets = _labels_to_classes(np.asarray(dataset.labels), Path(dataset.root))
    splits = split_indices(len(dataset), cfg.holdout_fraction)
    dev = resolve_device(device, "the domain extractor's device")
    with reproducible(dom.seed):
        net = _fit(dataset, dom, len(classes), targets, splits["train"], dev, progress)
        accuracy = _accuracy(net, dataset, splits["holdout"], targets, dev, 4 * dom.batch_size)
    meta = {
        "format": DOMAIN_FORMAT, "channels": dataset.channels, "resolution": dataset.resolution,
        "classes": [int(c) for c in classes], "width": dom.width, "feature_dim": dom.feature_dim,
        "data_md5": prepared_md5(dataset), "test_accuracy": accuracy,
        "n_train": len(splits["train"]), "n_test": len(splits["holdout"]), "device": dev.type,
        "cpu_code_paths": cpu_code_paths(),
    }
    return save_extractor(net, meta, out, report)


def save_extractor(net: nn.Module, meta: dict, out: Path, report: Path) -> dict:
    """Write a trained extractor (weights-only torch.save of meta + state dict) and its report
    JSON (meta, path, sha256: the DVC metrics file); returns the report."""
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    write_atomic(out, lambda f: torch.save({**meta, "state_dict": state}, f))
    info = {**meta, "weights": str(out), "sha256": hash_file(out, "sha256")}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(info, indent=2, sort_keys=True))
    return info
