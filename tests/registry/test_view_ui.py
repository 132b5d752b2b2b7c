"""What a reviewer sees in the MLflow UI, in headless Chromium: the version page (alias, model
card, its image), the logged model (linked to its version, with the evaluation's metrics), the
run page (Source, Created by, the dataset) and the sample grid at the slider's first position.

Chromium runs against `mlflow server` on 127.0.0.1 and a free port (the session fixture
``ui_server``); the tests skip only where Chromium is absent (apt: chromium). Screenshots are
kept in $GANPKG_TEST_ARTIFACTS/ui (default .test-artifacts/ui in the project folder).
"""

import html
import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from registry_helpers import METRICS
from ui_helpers import CHROMIUM, chromium, wait_healthy

from ganpkg.metrics import parse

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
SHOTS = Path(os.environ.get("GANPKG_TEST_ARTIFACTS",
                            Path(__file__).parents[2] / ".test-artifacts")) / "ui"
MODEL = "ganpkg-generator"


@pytest.fixture(scope="module")
def ui(ui_server, registered):
    base, server, log = ui_server
    assert wait_healthy(server, base), log.read_text()[-2000:]
    SHOTS.mkdir(parents=True, exist_ok=True)
    run = MlflowClient(registered.uri).get_run(registered.run_id)
    return base, run


def page(url: str, shot: str, height: int = 1400, budget_ms: int = 20000) -> str:
    """The rendered DOM of ``url`` (charts drawn too), and its screenshot kept as ``shot``.
    Charts below the window are not drawn: ``height`` makes it tall enough for them."""
    flags = (f"--virtual-time-budget={budget_ms}", "--run-all-compositor-stages-before-draw",
             f"--window-size=1400,{height}")
    chromium(*flags, f"--screenshot={SHOTS / shot}", url)
    return chromium(*flags, "--dump-dom", url)


def text_of(dom: str) -> str:
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


def served(base: str, src: str) -> bytes:
    with urllib.request.urlopen(f"{base}/{html.unescape(src).lstrip('/')}", timeout=30) as reply:
        assert reply.status == 200
        return reply.read()


def test_version_page_shows_alias_card_and_its_image(ui, registered):
    base, run = ui
    dom = page(f"{base}/#/models/{MODEL}/versions/{registered.version}", "version.png")
    for text in ("champion", f"{MODEL} v{registered.version}", "fid_domain", "flow-run-42",
                 run.info.run_name):
        assert text in dom, text
    # The card's sample grid: an image the version page links to and the server serves.
    src = f"/get-artifact?path=model_card%2Fsamples.png&amp;run_uuid={registered.run_id}"
    assert src in dom, "no sample grid image in the version page"
    assert served(base, src)[:8] == b"\x89PNG\r\n\x1a\n"
    assert (SHOTS / "version.png").stat().st_size > 50_000  # a rendered page, not a blank one


def test_logged_model_links_its_version_and_shows_the_evaluation(ui, registered):
    base, run = ui
    mv = MlflowClient(registered.uri).get_model_version(MODEL, registered.version)
    model_id = mv.model_id or mv.source.removeprefix("models:/")
    dom = page(f"{base}/#/experiments/{run.info.experiment_id}/models/{model_id}",
               "logged_model.png")
    assert f'href="#/models/{MODEL}/versions/{registered.version}"' in dom  # "Registered"
    text = text_of(dom)
    # Metrics table rows: name, the reference data it measured, the run, the value.
    assert re.search(r"eval/fid_domain reference-\S+ \(#cdcdcd", text), text[:3000]
    assert f"eval/fid_domain reference-all (#{'cd' * 16}) {run.info.run_name} 10 " in text
    assert f"{MODEL} v{registered.version} → @champion" in text  # its Description: the verdict


def test_run_page_shows_source_author_and_dataset(ui, registered):
    base, run = ui
    dom = page(f"{base}/#/experiments/{run.info.experiment_id}/runs/{registered.run_id}",
               "run.png")
    text = text_of(dom)
    data = registered.config.data
    name = f"{data.source}-{data.split}-{data.resolution}px"
    assert f"Datasets {name} ({run.data.tags['data.dvc_md5']}) train" in text, text[:3000]
    assert f"Created by {run.data.tags['mlflow.user']}" in text
    assert f"Source {run.data.tags['mlflow.source.name']}" in text
    assert f"{MODEL} v{registered.version}" in text  # the logged model, registered
    # The verdict in the run's Description: the gate's decision, the metric in words.
    assert f"{MODEL} v{registered.version} → @champion" in text, text[:3000]
    assert "the best a generator can reach" in text and "Checkpoint: step" in text, text[:3000]


def test_the_cards_page_renders_with_its_image_in_the_artifact_viewer(ui, registered):
    base, run = ui
    dom = page(f"{base}/#/experiments/{run.info.experiment_id}/runs/{registered.run_id}"
               "/artifacts/model_card/model_card.html", "card_html.png")
    shown = html.unescape(dom)
    assert "data:image/png;base64," in shown, text_of(dom)[:2000]  # the grid, inside the page
    assert (SHOTS / "card_html.png").stat().st_size > 50_000


def test_sample_grid_shows_at_the_sliders_first_position(ui, registered):
    base, run = ui
    url = f"{base}/#/experiments/{run.info.experiment_id}/runs/{registered.run_id}/model-metrics"
    # The image card is the page's last, drawn after 14 charts: on a loaded 2-core machine the
    # virtual-time budget can end before it, so a longer budget and one reload.
    for _ in range(2):
        dom = page(url, "model_metrics.png", height=5000, budget_ms=40000)
        # The image card opens at step 0: the untrained generator's grid, logged before step 1.
        src = re.search(r'src="(get-artifact\?path=images%2Fsamples%2Bstep%2B0%2B[^"]+)"', dom)
        if src:
            break
    assert "No image logged at this step" not in dom
    assert src, "no step-0 sample grid in the run's charts"
    assert served(base, src.group(1))[:4] == b"RIFF"  # the card's compressed webp
    assert (SHOTS / "model_metrics.png").stat().st_size > 50_000
    # The chart sections: the evaluation's values alone (no one-dot chart of an se, interval,
    # floor or baseline: those are the summary table), and the FID curve with its se.
    text = text_of(dom)
    values = [k for k in METRICS if parse(k).qualifier is None]
    assert f"eval ({len(values)})" in text and "eval/progress (2)" in text, text[:2000]
    # The curve's chart draws what the server gives it: a point per checkpoint.
    query = (f"run_ids={registered.run_id}&metric_key=eval/progress/fid_domain&max_results=320")
    reply = json.loads(served(base, f"/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
                                    f"{query}"))
    steps = [m["step"] for m in reply["metrics"]]
    assert len(steps) >= 4 and steps == sorted(steps), reply


def test_the_summary_table_opens_in_the_artifact_viewer(ui, registered):
    base, run = ui
    dom = page(f"{base}/#/experiments/{run.info.experiment_id}/runs/{registered.run_id}"
               "/artifacts/evaluation/summary.json", "summary_table.png")
    text = text_of(dom)
    for word in ("fid_domain", "times_floor", "baseline"):
        assert word in text, text[:2000]


def test_two_runs_of_one_config_and_seed_have_two_names_in_the_runs_list(ui, registered,
                                                                         tmp_path):
    """Training seeds Python's random; it once did so before MLflow drew the run's name, and
    runs of one config and seed all got the same name. (This adds a run to the session's
    registered store: this module runs last in tests/registry.)"""
    from ganpkg.config import load_config
    from ganpkg.training import train
    from pipelines.tracking import MlflowTracker

    base, run = ui
    config = load_config(None, [*registered.overrides, f"train.run_dir={tmp_path / 'again'}"])
    assert config.train.seed == registered.config.train.seed
    tracker = MlflowTracker(config, tracking_uri=registered.uri,
                            repo=Path(__file__).parents[2], system_metrics=False)
    train(config, [tracker])
    again = MlflowClient(registered.uri).get_run(tracker.run_id).info.run_name
    assert again != run.info.run_name
    text = text_of(page(f"{base}/#/experiments/{run.info.experiment_id}/runs", "runs.png"))
    assert run.info.run_name in text and again in text, text[:2000]
