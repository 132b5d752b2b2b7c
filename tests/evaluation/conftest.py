"""Tiny labelled data (32×32, four shape classes) and a domain extractor trained on it once.

Everything runs through torch-fidelity's real code with ganpkg's registered extractor; no
Inception weights are needed (the tests of the Inception path build random ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from eval_helpers import N_IMAGES, make_shapes, tiny_eval_config

from ganpkg.config import EvalConfig
from ganpkg.data.prepared import PreparedDataset, open_prepared, write_prepared


@dataclass
class Tiny:
    root: Path
    dataset: PreparedDataset
    cfg: EvalConfig


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Tiny:
    """Prepared tiny data + its trained domain extractor (trained once per test session)."""
    from ganpkg.evaluation.extractor_domain import train_domain_extractor

    tmp = tmp_path_factory.mktemp("eval")
    images, labels = make_shapes(N_IMAGES, seed=0)
    root = write_prepared(tmp / "prepared", images, labels, {"source": "shapes"})
    dataset = open_prepared(root)
    cfg = tiny_eval_config(tmp)
    torch.manual_seed(0)
    train_domain_extractor(dataset, cfg, device="cpu")
    return Tiny(root, dataset, cfg)
