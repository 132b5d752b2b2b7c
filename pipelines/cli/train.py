"""`ganpkg train` and `ganpkg sample`: training alone and drawing images.

Both run where only PyTorch is installed (a bare GPU box): they import ganpkg alone, except
`sample --model`, which needs mlflow to resolve the registry URI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from ganpkg.errors import UserError
from pipelines.cli.common import ConfigOpt, SetOpt, console, resolve_config, say

ResumeOpt = Annotated[bool, typer.Option(help="Continue from run_dir's newest checkpoint.")]
DryRunOpt = Annotated[bool, typer.Option(help="Validate and print the config, then stop.")]


def train(config: ConfigOpt = Path("params.yaml"), set_: SetOpt = None, resume: ResumeOpt = True,
          dry_run: DryRunOpt = False) -> None:
    """Train a GAN on the prepared data (train.run_dir holds checkpoints and sample grids).

    Under torchrun (`torchrun --nproc_per_node=N -m pipelines train`) each rank trains its
    slice of every batch and rank 0 writes.
    """
    cfg = resolve_config(config, set_)  # before importing torch: a bad value answers at once
    say(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if dry_run:
        return
    from ganpkg.progress import RichProgress
    from ganpkg.training import TrainingDiverged
    from ganpkg.training import train as run_training

    bar = RichProgress(cfg.train.total_steps, console)
    try:
        result = run_training(cfg, [bar, *curve(cfg, bar)], resume)
    except TrainingDiverged as err:
        say(f"error: {err}")
        raise typer.Exit(1) from None
    say(f"final checkpoint: {result.checkpoint}")


def curve(cfg, bar) -> list:
    """The FID curve's callback where its extractor is ready for this data (eval.extractor auto
    decided by the prepared data's labels, as the flow does), else [] and one line saying why.
    Under torchrun rank 0 measures, as in the flow. Resolving ``auto`` makes ``cfg`` concrete
    in place, so the run's config.yaml and checkpoints record the extractor the curve used."""
    import os

    from ganpkg.data.prepared import open_prepared
    from ganpkg.evaluation.extractors import resolve_auto, resolve_extractor
    from ganpkg.evaluation.progress import progress_callbacks

    cfg = resolve_auto(cfg)
    found = progress_callbacks(cfg, [bar])
    if not found or os.environ.get("RANK", "0") != "0":
        return []
    try:
        from ganpkg.evaluation.fidelity import check_extractor_matches

        check_extractor_matches(resolve_extractor(cfg.eval, download=False),
                                open_prepared(cfg.data.prepared_dir))
    except (UserError, ImportError) as err:  # a bare box may lack torch-fidelity
        say(f"no FID curve: {err}")
        return []
    return found


OutOpt = Annotated[Path, typer.Option(help="A .png path for one grid, else a folder.")]
CheckpointOpt = Annotated[Path | None, typer.Option(help="A ganpkg checkpoint (.pt).")]
ModelOpt = Annotated[str | None, typer.Option(
    help="An MLflow model URI, e.g. models:/ganpkg-generator@champion.")]
CountOpt = Annotated[int, typer.Option(min=1, help="Number of images.")]
SeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the latent draws.")]
InterpolateOpt = Annotated[int, typer.Option(
    min=0, help="Instead of random draws: this many rows of latent interpolations.")]
StepsOpt = Annotated[int, typer.Option(min=2, help="Images per interpolation row.")]


def sample(out: OutOpt, checkpoint: CheckpointOpt = None, model: ModelOpt = None,
           n: CountOpt = 64, seed: SeedOpt = 0, interpolate: InterpolateOpt = 0,
           steps: StepsOpt = 8) -> None:
    """Draw images from a trained generator: a PNG grid, a folder of PNGs, or interpolations."""
    if (checkpoint is None) == (model is None):
        raise UserError("give exactly one of --checkpoint PATH or --model URI")
    import torch

    from ganpkg.sampling import generate, interpolation_latents, save_grid, save_images

    if checkpoint is not None:
        from ganpkg.checkpoint import load_generator

        g, info = load_generator(checkpoint)
        z_dim = info["z_dim"]
    else:
        from pipelines.preflight import check_store_exists
        from pipelines.registry_load import load_registered_generator

        check_store_exists()
        g, z_dim = load_registered_generator(model)
    count = interpolate * steps if interpolate else n
    grid = out.suffix.lower() == ".png"
    if grid and count > MAX_GRID:
        raise UserError(f"--n {count}: one grid holds at most {MAX_GRID} images; give a folder "
                        f"as --out for more")
    draws = torch.Generator().manual_seed(seed)
    if grid or interpolate:
        z = (interpolation_latents(interpolate, steps, z_dim, seed) if interpolate
             else torch.randn(n, z_dim, generator=draws))
        if grid:
            save_grid(g, z, out, nrow=steps if interpolate else None)
            say(f"wrote grid of {count} images: {out}")
        else:
            say(f"wrote {len(save_images(generate(g, z), out))} images to {out}/")
        return
    written = 0  # in chunks: memory stays that of one chunk whatever --n is
    for start in range(0, n, SAMPLE_CHUNK):
        images = generate(g, torch.randn(min(SAMPLE_CHUNK, n - start), z_dim, generator=draws))
        if start == 0:  # refused before the first file is written
            check_room(out, n, images[0].numel())
        written += len(save_images(images, out, first_index=start))
    say(f"wrote {written} images to {out}/")


MAX_GRID = 4096  # a 64 × 64 grid; more is no longer a picture anyone reads
SAMPLE_CHUNK = 1024


def check_room(folder: Path, n: int, values_per_image: int) -> None:
    """--n images of this size must fit on the disk under ``folder`` (a PNG is at most about
    its raw bytes): refused before the first one is written."""
    import shutil

    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    need = n * (values_per_image + 200)
    if need > free:
        raise UserError(f"--n {n}: about {need / 2**30:.1f} GiB of PNGs and {existing} has "
                        f"{free / 2**30:.1f} GiB free; at most about "
                        f"{free // (values_per_image + 200)} images there")


def register(root: typer.Typer) -> None:
    """Add these commands to the main app."""
    root.command()(train)
    root.command()(sample)
