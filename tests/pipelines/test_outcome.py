"""What `ganpkg run` prints at the end points at the store the run went to."""

from rich.console import Console

from pipelines.main import print_outcome

OUTCOME = {"status": "trained", "name": "ganpkg-generator", "version": "3", "alias": "champion",
           "reason": "first version", "metrics": {"fid_domain": 12.5},
           "mlflow_url": "http://127.0.0.1:5000/#/experiments/1/runs/abc",
           "seconds": {"data": 3.0, "train": 130.0, "evaluate": 14.0, "flow": 150.0}}


def printed(outcome: dict) -> str:
    console = Console(record=True, width=200)
    print_outcome(outcome, console)
    return console.export_text()


def test_local_store_points_at_make_ui_and_reports_the_flow_overhead(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    text = printed(OUTCOME)
    assert "look at it:   make ui, then open http://127.0.0.1:5000/#/experiments/1/runs/abc" \
        in text and "ganpkg-generator v3 → @champion" in text
    # 150 - 3 - 130 - 14 = 3 s; data sync is its own once-per-data-version line item
    assert "flow 150s: data 3s (once per data version), Prefect and the rest 3s (2.0%)" in text


def test_the_sample_command_is_one_line_that_runs(monkeypatch):
    import shlex
    import subprocess

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    console = Console(record=True, width=40)  # narrower than the command
    print_outcome(OUTCOME, console)
    line = next(x for x in console.export_text().splitlines() if x.startswith("sample it:"))
    command = shlex.split(line.removeprefix("sample it:"))
    assert command[-4:] == ["--n", "64", "--out", "grid.png"]
    helped = subprocess.run([*command[:command.index("sample") + 1], "--help"],
                            capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "--model" in helped.stdout


def test_tracking_server_is_named_instead_of_make_ui(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    text = printed({**OUTCOME, "mlflow_url": "http://127.0.0.1:5001/#/experiments/1/runs/abc"})
    assert "look at it:   http://127.0.0.1:5001/#/experiments/1/runs/abc" in text
    assert "make ui" not in text


def test_skipped_run_says_why():
    assert "nothing changed: same data" in printed({"status": "skipped", "reason": "same data"})
