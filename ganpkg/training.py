"""The training loop: checkpoints, resume, samples, divergence guard, DDP.

Its helpers live beside it: the data order and device copy in ``batches``, the resume checks in
``resume_checks``, status.json and the time budget in ``run_status``.

``train(config)`` is the one entry point. It reads the prepared dataset, resumes from the newest
checkpoint in ``train.run_dir`` when there is one, and reports through callbacks only.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganpkg import checkpoint as ckpt
from ganpkg.batches import DEVICE_MEMORY_SHARE, DataOrder, images_on_device, to_device
from ganpkg.callbacks import CallbackList, NullCallback, TrainingCallback
from ganpkg.config import Config, save_config
from ganpkg.data.prepared import PreparedDataset, open_prepared, uint8_to_float
from ganpkg.errors import UserError, is_interrupt
from ganpkg.losses import GANLoss, build_loss
from ganpkg.networks import build_networks
from ganpkg.resume_checks import (
    RESULT_KEYS,
    TRAIN_DEFAULTS,
    check_resumable,
    check_same_data,
    data_md5,
    result_differences,
)
from ganpkg.run_status import out_of_memory, read_status, time_budget_spent, write_status
from ganpkg.runtime import (
    Runtime,
    capture_rng,
    restore_rng,
    seed_everything,
    start_runtime,
    stop_runtime,
)
from ganpkg.sampling import fixed_noise, save_grid
from ganpkg.step import GANStep, ema_decay_at, grad_norm, unwrap, update_ema

# This module's own public names and those still imported from here that moved out.
__all__ = [
    "DEVICE_MEMORY_SHARE", "RESULT_KEYS", "TRAIN_DEFAULTS", "DataOrder", "DivergenceGuard",
    "TrainResult", "Trainer", "TrainingDiverged", "data_md5", "images_on_device",
    "learning_rate_factor", "out_of_memory", "read_status", "result_differences", "train",
    "write_status",
]


def learning_rate_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of train.lr_g/lr_d for the update that makes step ``step + 1``: a function
    of the step alone, so a resumed run continues the same schedule."""
    if schedule == "linear":
        return 1.0 - step / total_steps
    return 1.0


class TrainingDiverged(RuntimeError):
    """The run stopped because its losses went non-finite or the discriminator collapsed."""


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    status: str
    step: int
    stopped_by: str = "total_steps"  # or "max_seconds": which budget ended the run


class DivergenceGuard:
    """Non-finite or exploding losses, or a D loss stuck near zero (D won), stop the run."""

    def __init__(self, config: Config, loss: GANLoss | None = None):
        t = config.train
        loss = loss or build_loss(t.loss)
        self.max_abs, self.floor, self.patience = t.max_abs_loss, t.collapse_d_loss, t.collapse_patience
        self.check_collapse = loss.has_floor  # a D loss stuck at its floor means D won
        self.low_since: int | None = None
        self.first_bad: torch.Tensor | None = None  # on the device: -1, or the first bad step

    def observe(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        """Every step, without a host sync: remember on the device the first step whose
        losses were non-finite or beyond train.max_abs_loss (``check`` reads it)."""
        values = torch.stack([v.detach().float() for v in losses.values()])
        bad = (~torch.isfinite(values) | (values.abs() > self.max_abs)).any()
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=values.device)
        step_t = torch.full((), step, dtype=torch.long, device=values.device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), step_t, self.first_bad)

    def check(self, step: int, losses: dict[str, float]) -> None:
        """At a log step: raise if any step so far went bad (``observe``) or these values are."""
        first = int(self.first_bad) if self.first_bad is not None else -1  # the one sync
        bad = [(k, v) for k, v in losses.items() if not math.isfinite(v) or abs(v) > self.max_abs]
        if bad or first >= 0:
            what = f"{bad[0][0]}={bad[0][1]}" if bad else f"losses back in range by step {step}"
            raise TrainingDiverged(
                f"training diverged at step {first if first >= 0 else step}: {what} "
                f"(train.max_abs_loss={self.max_abs}); lower the learning rates or try "
                f"train.loss=hinge"
            )
        if self.check_collapse and losses["loss_d"] < self.floor:
            self.low_since = step if self.low_since is None else self.low_since
            if step - self.low_since >= self.patience:
                raise TrainingDiverged(
                    f"discriminator collapsed: loss_d < {self.floor} since step {self.low_since} "
                    f"(train.collapse_patience={self.patience}); the generator gets no signal"
                )
        else:
            self.low_since = None


class Trainer:
    """Holds one run's state; ``run()`` trains to ``train.total_steps``."""

    def __init__(self, config: Config, data: PreparedDataset, runtime: Runtime,
                 callback: TrainingCallback):
        self.config, self.data, self.rt, self.cb = config, data, runtime, callback
        t = config.train
        self.run_dir = Path(t.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        if t.batch_size % runtime.world_size:
            raise UserError(f"train.batch_size {t.batch_size} must divide by the "
                            f"{runtime.world_size} processes")
        if t.batch_size > len(data):
            raise UserError(f"train.batch_size {t.batch_size} is more than the {len(data)} "
                            f"prepared images: at most {len(data)}")
        self.local_batch = t.batch_size // runtime.world_size
        # channels_last speeds convolutions on CUDA and on oneDNN CPUs alike (benchmarks/).
        self.channels_last = t.channels_last
        self.device_images = images_on_device(data, runtime.device, t.data_on_device)

        seed_everything(t.seed, t.deterministic)
        g, d = build_networks(config.model, data.channels, data.resolution)
        self.g_ema = copy.deepcopy(g).eval().requires_grad_(False)
        if runtime.distributed and runtime.device.type == "cuda":
            g = nn.SyncBatchNorm.convert_sync_batchnorm(g)
            d = nn.SyncBatchNorm.convert_sync_batchnorm(d)
        loss = build_loss(t.loss)
        if runtime.distributed and loss.needs_gradient_penalty:
            raise UserError(f"train.loss={t.loss} needs a gradient penalty (double backward), "
                            "which DDP does not support; use bce or hinge for multi-process "
                            "training")
        if runtime.distributed and runtime.device.type != "cuda" and "batch" in (
                config.model.g_norm, config.model.d_norm):
            raise UserError("multi-process training on CPU needs model.g_norm=none and "
                            "model.d_norm=none (SyncBatchNorm runs on CUDA only)")
        if runtime.distributed and t.r1_gamma > 0:
            raise UserError("train.r1_gamma > 0 needs a double backward, which DDP does not "
                            "support; set train.r1_gamma=0 for multi-process training")
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        g, d = g.to(runtime.device, memory_format=fmt), d.to(runtime.device, memory_format=fmt)
        self.g_ema.to(runtime.device)
        self.g_plain, self.d_plain = g, d
        # fused Adam runs one kernel per step on CPU and CUDA alike.
        self.opt_g = torch.optim.Adam(g.parameters(), t.lr_g, (t.beta1, t.beta2), fused=True)
        self.opt_d = torch.optim.Adam(d.parameters(), t.lr_d, (t.beta1, t.beta2), fused=True)
        if runtime.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            g, d = DDP(g, device_ids=ids), DDP(d, device_ids=ids)
        if t.compile:
            g, d = torch.compile(g), torch.compile(d)
        use_bf16 = t.bf16 and runtime.device.type == "cuda"
        self.step_fn = GANStep(g, d, self.opt_g, self.opt_d, loss, t.gp_weight,
                               torch.bfloat16 if use_bf16 else None, d_for_g=unwrap(d) if
                               runtime.distributed else None, r1_gamma=t.r1_gamma,
                               r1_every=t.r1_every)
        self.noise = torch.Generator().manual_seed(t.seed)
        self.order = DataOrder(len(data), t.batch_size, t.seed)
        self.step = 0
        self.train_seconds = 0.0  # of earlier sessions of this run (from the checkpoint)
        self._session_start = time.perf_counter()
        self.fixed_z = fixed_noise(t.sample_grid_size, config.model.z_dim, t.seed)
        self.guard = DivergenceGuard(config, loss)
        self.data_md5 = data_md5(data)

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": ckpt.FORMAT_VERSION,
            "step": self.step,
            "data_order": self.order.state(),
            "g": ckpt.strip_compile_prefix(self.g_plain.state_dict()),
            "d": ckpt.strip_compile_prefix(self.d_plain.state_dict()),
            "g_ema": self.g_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": capture_rng(self.noise),
            "config": self.config.model_dump(mode="json"),
            "channels": self.data.channels,
            "resolution": self.data.resolution,
            "data_md5": self.data_md5,
            "torch_version": str(torch.__version__),
            "device": str(self.rt.device),
            "world_size": self.rt.world_size,
            "train_seconds": self.train_seconds + time.perf_counter() - self._session_start,
        }

    def resume(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, map_location=self.rt.device)
        check_same_data(state, self.data, self.data_md5, path)
        check_resumable(state, self.config, path)
        self.g_plain.load_state_dict(state["g"])
        self.d_plain.load_state_dict(state["d"])
        self.g_ema.load_state_dict(state["g_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.order = DataOrder(len(self.data), self.config.train.batch_size,
                               self.config.train.seed, **state["data_order"])
        restore_rng({k: v.cpu() if torch.is_tensor(v) else v for k, v in state["rng"].items()},
                    self.noise)
        self.step = state["step"]
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def save_checkpoint(self) -> Path:
        path = ckpt.save_atomic(self.state(), self.ckpt_dir / ckpt.checkpoint_name(self.step))
        ckpt.prune_checkpoints(self.ckpt_dir, self.config.train.keep_checkpoints)
        self.cb.on_checkpoint(self.step, path)
        return path

    # -- one iteration ---------------------------------------------------------------------
    def _inputs(self) -> tuple[list, list, list]:
        t, rt = self.config.train, self.rt
        lo, hi = rt.rank * self.local_batch, (rt.rank + 1) * self.local_batch
        reals, zs, alphas = [], [], []
        for _ in range(t.n_critic):
            # Every rank draws the whole global batch's indices and noise and keeps its slice,
            # so N ranks compute exactly what one process would on the global batch.
            idx = self.order.next()[lo:hi]
            z = torch.randn(t.batch_size, self.config.model.z_dim, generator=self.noise)[lo:hi]
            alpha = torch.rand(t.batch_size, generator=self.noise)[lo:hi]
            if self.device_images is not None:  # no host copy per step
                real = uint8_to_float(self.device_images[torch.from_numpy(idx).to(rt.device)])
            else:
                real = uint8_to_float(self.data.batch_uint8(idx))
            reals.append(to_device(real, rt.device, self.channels_last))
            zs.append(z.to(rt.device))
            alphas.append(alpha.to(rt.device))
        return reals, zs, alphas

    def run(self) -> TrainResult:
        t = self.config.train
        if self.rt.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")
            self.cb.on_start(self.config.model_dump(mode="json"), self.run_dir)
        last_path = ckpt.latest_checkpoint(self.ckpt_dir)
        if self.rt.is_main and self.step == 0:  # the grid slider's first position: untrained G
            self._sample()
        tick, tick_step = time.perf_counter(), self.step
        self._session_start = time.perf_counter()
        stopped_by = "total_steps"
        while self.step < t.total_steps:
            factor = learning_rate_factor(t.lr_schedule, self.step, t.total_steps)
            for opt, lr in ((self.opt_g, t.lr_g), (self.opt_d, t.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * factor
            losses = self.step_fn(*self._inputs(), step=self.step)
            self.step += 1
            self.guard.observe(self.step, losses)  # device-side; read at the next log step
            update_ema(self.g_ema, self.g_plain,
                       ema_decay_at(self.step, t.ema_decay, t.ema_start_step))
            out_of_time = time_budget_spent(t, self.step, self.train_seconds,
                                            self._session_start, self.rt)
            due_ckpt = (self.step % t.checkpoint_every_steps == 0 or self.step == t.total_steps
                        or out_of_time)
            if self.step % t.log_every_steps == 0 or due_ckpt:
                values = {k: float(v) for k, v in losses.items()}
                self.guard.check(self.step, values)
                now = time.perf_counter()
                values["images_per_s"] = ((self.step - tick_step) * t.batch_size * t.n_critic
                                          / max(now - tick, 1e-9))
                values["grad_norm_g"] = grad_norm(self.g_plain)
                values["grad_norm_d"] = grad_norm(self.d_plain)
                tick, tick_step = now, self.step
                if self.rt.is_main:
                    self.cb.on_step(self.step, values)
            if self.rt.is_main and (self.step % t.sample_every_steps == 0
                                    or self.step == t.total_steps or out_of_time):
                self._sample()
            if self.rt.is_main and due_ckpt:
                last_path = self.save_checkpoint()
            if out_of_time:
                stopped_by = "max_seconds"
                break
        return TrainResult(self.run_dir, last_path, "FINISHED", self.step, stopped_by)

    def _sample(self) -> None:
        """The EMA generator's grid of the fixed noise at this step (own noise: no RNG used)."""
        grid = save_grid(self.g_ema, self.fixed_z,
                         self.run_dir / "samples" / f"step-{self.step:08d}.png")
        self.cb.on_sample(self.step, grid)


def train(config: Config, callbacks: list[TrainingCallback] | None = None,
          resume: bool = True) -> TrainResult:
    """Train to ``config.train.total_steps``, resuming from ``run_dir``'s newest checkpoint.

    Raises TrainingDiverged (status FAILED written to run_dir/status.json) when the guard trips.
    """
    callback = CallbackList(callbacks or [NullCallback()])
    runtime = start_runtime(config.train.device)
    trainer = None
    try:
        data = open_prepared(config.data.prepared_dir)
        trainer = Trainer(config, data, runtime, callback)
        if runtime.is_main:
            ckpt.remove_partial_writes(trainer.ckpt_dir)
        existing = ckpt.latest_checkpoint(trainer.ckpt_dir)
        if existing is not None:
            if not resume:
                raise UserError(f"{trainer.run_dir} already holds checkpoints; resume it or "
                                f"choose a new train.run_dir")
            trainer.resume(existing)
        result = trainer.run()
        if runtime.is_main:
            write_status(result.run_dir, "FINISHED", result.step, stopped_by=result.stopped_by)
            callback.on_end("FINISHED", result.run_dir)
        return result
    except TrainingDiverged as err:
        if runtime.is_main and trainer is not None:
            write_status(trainer.run_dir, "FAILED", trainer.step, str(err))
            callback.on_end("FAILED", trainer.run_dir)
        raise
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        step = trainer.step if trainer is not None else 0
        message = (f"out of memory at step {step} (train.batch_size {config.train.batch_size}, "
                   f"model.g_width {config.model.g_width}, model.d_width "
                   f"{config.model.d_width}): lower them")
        if runtime.is_main:
            with contextlib.suppress(OSError):
                write_status(Path(config.train.run_dir), "FAILED", step, message)
            if trainer is not None:
                callback.on_end("FAILED", trainer.run_dir)
        raise UserError(message) from None
    except OSError as err:  # a full or read-only disk: say so where the run can still be read
        if runtime.is_main and trainer is not None:
            try:
                write_status(trainer.run_dir, "FAILED", trainer.step,
                              f"{err.filename or 'a file'}: {err.strerror or err}")
            except OSError:
                pass  # the disk refuses even this; the command line still says why
        raise
    except BaseException as err:
        if is_interrupt(err) and runtime.is_main and trainer is not None:
            with contextlib.suppress(OSError):
                write_status(trainer.run_dir, "KILLED", trainer.step,
                             "interrupted; the next run of the same config resumes it")
        raise
    finally:
        stop_runtime(runtime)
