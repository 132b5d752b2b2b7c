"""The FID curve's choice of checkpoint: the best step only where it beats the last beyond both
95% intervals (the minimum of noisy values favours luck), else the last."""

import json

from ganpkg.evaluation.progress import BEST_FILE, PROGRESS_FILE, best_point, choose_checkpoint


def curve(run_dir, *points):
    run_dir.mkdir(exist_ok=True)
    lines = [json.dumps({"step": s, "fid_domain": v, "fid_domain_se": se, "n_samples": 2000})
             for s, v, se in points]
    (run_dir / PROGRESS_FILE).write_text("\n".join(lines) + "\n")
    (run_dir / BEST_FILE).write_bytes(b"a copy of the best checkpoint")


def test_the_best_step_wins_only_beyond_the_noise(tmp_path):
    last = tmp_path / "step-3000.pt"
    curve(tmp_path, (1000, 9.0, 0.2), (2000, 5.0, 0.2), (3000, 7.0, 0.3))
    chosen = choose_checkpoint(tmp_path, last, 3000, "fid_domain")
    assert (chosen.checkpoint, chosen.step) == (tmp_path / BEST_FILE, 2000)
    assert chosen.reason.startswith("best step 2000 beats the last beyond the 95% intervals")

    curve(tmp_path, (1000, 9.0, 0.2), (2000, 6.5, 0.2), (3000, 7.0, 0.3))  # 0.5 < 1.96 · 0.5
    chosen = choose_checkpoint(tmp_path, last, 3000, "fid_domain")
    assert (chosen.checkpoint, chosen.step) == (last, 3000)
    assert "within the 95% intervals" in chosen.reason

    curve(tmp_path, (1000, 9.0, 0.2), (3000, 7.0, 0.3))
    assert choose_checkpoint(tmp_path, last, 3000, "fid_domain").checkpoint == last


def test_higher_is_better_metrics_and_no_curve(tmp_path):
    points = [{"step": 1, "is_domain": 2.0}, {"step": 2, "is_domain": 3.0}]
    assert best_point(points, "is_domain")["step"] == 2
    chosen = choose_checkpoint(tmp_path / "none", tmp_path / "last.pt", 5, "fid_domain")
    assert chosen.checkpoint == tmp_path / "last.pt" and "no curve point" in chosen.reason
