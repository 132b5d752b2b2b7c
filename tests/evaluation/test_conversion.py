"""uint8 ↔ float conversion is exact, and in-memory samples equal what PNG files would give."""

from __future__ import annotations

import torch
from eval_helpers import LinearGenerator
from torch_fidelity.datasets import ImagesPathDataset

from ganpkg.data.prepared import float_to_uint8, uint8_to_float
from ganpkg.evaluation.fidelity import GeneratorSampler
from ganpkg.evaluation.reference_stats import UInt8Images
from ganpkg.sampling import save_images


def test_uint8_float_uint8_is_exact_for_every_value():
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    as_float = uint8_to_float(every)
    assert as_float.min() == -1.0 and as_float.max() == 1.0
    assert torch.equal(float_to_uint8(as_float), every)


def test_float_to_uint8_rounds_to_nearest_and_clamps():
    step = 2 / 255  # one uint8 level in [-1, 1]
    x = torch.tensor([-1.7, -1.0, -1.0 + 0.49 * step, -1.0 + 0.51 * step, 1.0, 1.3])
    assert float_to_uint8(x).tolist() == [0, 0, 0, 1, 255, 255]


def test_in_memory_samples_equal_the_same_samples_read_back_from_png(tmp_path):
    # torch-fidelity's own PNG loader is the reference: parity with the CLI rests on this.
    g = LinearGenerator(channels=1).eval()
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        in_memory = GeneratorSampler(g)(z)
        files = save_images(g(z), tmp_path)
    from_png = torch.stack([ImagesPathDataset([str(f)])[0] for f in files])
    assert in_memory.dtype == torch.uint8 and in_memory.shape == (8, 3, 32, 32)
    assert torch.equal(in_memory, from_png)


def test_reference_images_are_grayscale_repeated_exactly():
    gray = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    item = UInt8Images(gray.numpy())[2]
    assert item.shape == (3, 8, 8)
    assert all(torch.equal(item[c], gray[2, 0]) for c in range(3))
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(UInt8Images(rgb.numpy())[1], rgb[1])
