"""train.max_seconds: a wall-clock budget ends training with a checkpoint, says so, and a larger
budget continues the same run from there (its resumptions count together)."""

import json

from ganpkg.checkpoint import latest_checkpoint, load_checkpoint
from ganpkg.config import load_config
from ganpkg.training import train


def test_a_spent_time_budget_stops_with_a_checkpoint_and_a_larger_one_resumes(tiny_overrides):
    budget = ["train.total_steps=100000", "train.log_every_steps=2",
              "train.checkpoint_every_steps=1000"]
    first = train(load_config(None, [*tiny_overrides, *budget, "train.max_seconds=0.5"]))
    assert first.stopped_by == "max_seconds" and 0 < first.step < 100000
    assert first.step % 2 == 0  # the clock is read at log steps
    state = load_checkpoint(latest_checkpoint(first.run_dir / "checkpoints"))
    assert state["step"] == first.step and state["train_seconds"] >= 0.5
    status = json.loads((first.run_dir / "status.json").read_text())
    assert status == {"status": "FINISHED", "step": first.step, "message": "",
                      "stopped_by": "max_seconds"}
    # a budget already spent stops at the next log step; a larger one trains on from there
    again = train(load_config(None, [*tiny_overrides, *budget, "train.max_seconds=1.5"]))
    assert again.stopped_by == "max_seconds" and again.step > first.step
    assert load_checkpoint(latest_checkpoint(again.run_dir / "checkpoints"))[
        "train_seconds"] >= 1.5
    # the step budget stays the reproducible default
    more = f"train.total_steps={again.step + 2}"
    done = train(load_config(None, [*tiny_overrides, *budget[1:], more]))
    assert done.stopped_by == "total_steps" and done.step == again.step + 2
