"""`ganpkg train` and `ganpkg sample`."""

from pathlib import Path
from typing import Annotated

import typer

from ganpkg.cli_common import ConfigOpt, SetOpt, console, resolve_config


def register(app: typer.Typer) -> None:
    """Add the training and sampling commands to the main app."""
    @app.command()
    def train(
        config: ConfigOpt = Path("params.yaml"),
        set_: SetOpt = None,
        resume: Annotated[bool, typer.Option(help="Continue from run_dir's newest checkpoint.")] = True,
        dry_run: Annotated[bool, typer.Option(help="Validate and print the config, then stop.")] = False,
    ) -> None:
        """Train a GAN on the prepared data (train.run_dir holds checkpoints and sample grids)."""
        import yaml

        from ganpkg.progress import RichProgress
        from ganpkg.training import TrainingDiverged
        from ganpkg.training import train as run_training

        cfg = resolve_config(config, set_)
        console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), highlight=False)
        if dry_run:
            return
        try:
            result = run_training(cfg, [RichProgress(cfg.train.total_steps, console)], resume)
        except TrainingDiverged as err:
            console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(1)
        console.print(f"final checkpoint: {result.checkpoint}")

    @app.command()
    def sample(
        out: Annotated[Path, typer.Option(help="A .png path for one grid, else a folder.")],
        checkpoint: Annotated[Path | None, typer.Option(help="A ganpkg checkpoint (.pt).")] = None,
        model: Annotated[str | None, typer.Option(help="An MLflow model URI, e.g. "
                                                   "models:/ganpkg-generator@champion.")] = None,
        n: Annotated[int, typer.Option(min=1, help="Number of images.")] = 64,
        seed: Annotated[int, typer.Option(min=0, help="Seed of the latent draws.")] = 0,
        interpolate: Annotated[int, typer.Option(
            min=0, help="Instead of random draws: this many rows of latent interpolations.")] = 0,
        steps: Annotated[int, typer.Option(min=2, help="Images per interpolation row.")] = 8,
    ) -> None:
        """Draw images from a trained generator: a PNG grid, a folder of PNGs, or interpolations."""
        import torch

        from ganpkg.errors import UserError
        from ganpkg.sampling import generate, interpolation_latents, save_grid, save_images

        if (checkpoint is None) == (model is None):
            raise UserError("give exactly one of --checkpoint PATH or --model URI")
        if checkpoint is not None:
            from ganpkg.checkpoint import load_generator

            g, info = load_generator(checkpoint)
            z_dim = info["z_dim"]
        else:
            from pipelines.registry_load import load_registered_generator

            g, z_dim = load_registered_generator(model)
        if interpolate:
            z, nrow = interpolation_latents(interpolate, steps, z_dim, seed), steps
        else:
            z, nrow = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)), None
        if out.suffix.lower() == ".png":
            save_grid(g, z, out, nrow=nrow)
            console.print(f"wrote grid of {len(z)} images: {out}")
        else:
            paths = save_images(generate(g, z), out)
            console.print(f"wrote {len(paths)} images to {out}/")
