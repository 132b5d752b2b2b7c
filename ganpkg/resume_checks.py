"""Whether a checkpoint may be resumed: on the data it was trained on, with the same result keys.

A resumed run must compute what the original run would have; ``Trainer.resume`` refuses with
one line otherwise, and ``pipelines.resume`` uses ``result_differences`` to say why a run
directory cannot be continued.
"""

from __future__ import annotations

from pathlib import Path

from ganpkg.config import Config
from ganpkg.data.prepared import PreparedDataset
from ganpkg.errors import UserError
from ganpkg.files import hash_bytes, hash_file

# Train keys that change what a resumed run computes; the rest (frequencies, paths, the step
# budget, the device) may differ between the original run and its resumption.
RESULT_KEYS = ("loss", "n_critic", "gp_weight", "batch_size", "lr_g", "lr_d", "lr_schedule",
               "beta1", "beta2", "ema_decay", "ema_start_step", "r1_gamma", "r1_every", "seed")


# Result keys newer than some checkpoints: what an older checkpoint's config meant by them.
TRAIN_DEFAULTS = {"lr_schedule": "constant", "r1_gamma": 0.0, "r1_every": 16}


def data_md5(data: PreparedDataset) -> str:
    """md5 of the prepared images and labels: which data a checkpoint was trained on (cached
    by path, size and mtime, so saving a checkpoint does not rehash 60 MB)."""
    from ganpkg.data.prepared import IMAGES, LABELS

    return hash_bytes("".join(hash_file(data.root / name, "md5") for name in (IMAGES, LABELS))
                      .encode(), "md5")


def check_same_data(state: dict, data: PreparedDataset, now: str, path: Path) -> None:
    """A resumed run continues on the data it started on, or stops with one line (other data
    of the same shape would train silently; another shape would fail in load_state_dict)."""
    shape = (state["channels"], state["resolution"])
    if shape != (data.channels, data.resolution):
        raise UserError(f"{path}: checkpoint was trained on {shape[0]}-channel {shape[1]} px "
                        f"images, {data.root} holds {data.channels}-channel {data.resolution} px; "
                        f"prepare the same data again or choose a new train.run_dir")
    saved = state.get("data_md5")  # ``now``: data_md5(data), computed once by the Trainer
    if saved is not None and saved != now:
        raise UserError(f"{path}: checkpoint was trained on other data (prepared md5 "
                        f"{saved[:12]}…, {data.root} now {now[:12]}…); resume on the same "
                        f"data or choose a new train.run_dir")


def result_differences(old: dict, config: Config) -> list[str]:
    """The model and result-affecting train keys in which a saved config (a checkpoint's or a
    run directory's config.yaml, as a dict) differs from ``config``."""
    new = config.model_dump(mode="json")
    keys = RESULT_KEYS
    if new["train"]["lr_schedule"] != "constant":  # the schedule's length is the step budget
        keys = (*keys, "total_steps")
    diffs = [f"model.{k}" for k in new["model"] if old["model"].get(k) != new["model"][k]]
    return diffs + [f"train.{k}" for k in keys
                    if old["train"].get(k, TRAIN_DEFAULTS.get(k)) != new["train"][k]]


def check_resumable(state: dict, config: Config, path: Path) -> None:
    """A checkpoint's model and result keys match ``config``, or a one-line UserError."""
    diffs = result_differences(state["config"], config)
    if diffs:
        raise UserError(
            f"{path}: checkpoint was trained with different {', '.join(diffs)}; "
            f"resume with the same values or choose a new train.run_dir"
        )
