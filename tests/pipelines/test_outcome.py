"""What `ganpkg run` prints at the end points at the store the run went to."""

from rich.console import Console

from pipelines.main import print_outcome

OUTCOME = {"status": "trained", "name": "ganpkg-generator", "version": "3", "alias": "champion",
           "reason": "first version", "metrics": {"fid_domain": 12.5},
           "seconds": {"data": 3.0, "train": 130.0, "evaluate": 14.0, "flow": 150.0}}


def printed(outcome: dict) -> str:
    console = Console(record=True, width=200)
    print_outcome(outcome, console)
    return console.export_text()


def test_local_store_points_at_make_ui_and_reports_the_flow_overhead(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    text = printed(OUTCOME)
    assert "make ui" in text and "ganpkg-generator v3 → @champion" in text
    assert "outside train and evaluate 6s (4.0%)" in text  # 150 - 130 - 14 = 6 s


def test_tracking_server_is_named_instead_of_make_ui(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    text = printed(OUTCOME)
    assert "http://127.0.0.1:5001" in text and "make ui" not in text


def test_skipped_run_says_why():
    assert "nothing changed: same data" in printed({"status": "skipped", "reason": "same data"})
