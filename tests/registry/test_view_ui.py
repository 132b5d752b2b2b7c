"""The MLflow UI over the store shows the run (loss curves) and the version (alias, model card).

Headless Chromium against `mlflow server` on 127.0.0.1 and a free port (started by the
session fixture ``ui_server``); skipped only where Chromium is absent (apt: chromium).
Screenshots are left in the test's tmp folder.
"""

import urllib.request

import pytest
from mlflow import MlflowClient
from ui_helpers import CHROMIUM, chromium, wait_healthy

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def test_ui_shows_run_curves_and_registered_version(ui_server, registered, tmp_path):
    base, server, log = ui_server
    assert wait_healthy(server, base), log.read_text()[-2000:]
    run = MlflowClient(registered.uri).get_run(registered.run_id)
    version_url = f"{base}/#/models/ganpkg-generator/versions/{registered.version}"
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", version_url)
    for text in ("champion", f"ganpkg-generator v{registered.version}", "fid_domain",
                 "flow-run-42", run.info.run_name):
        assert text in dom, text
    # The card's sample grid: an image the version page links to and the server serves.
    src = f"/get-artifact?path=model_card%2Fsamples.png&amp;run_uuid={registered.run_id}"
    assert src in dom, "no sample grid image in the version page"
    with urllib.request.urlopen(base + src.replace("&amp;", "&"), timeout=30) as reply:
        assert reply.status == 200 and reply.read(8) == b"\x89PNG\r\n\x1a\n"
    shot = tmp_path / "metrics.png"  # loss curves: the run's model-metrics tab
    chromium("--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw",
             f"--screenshot={shot}", f"{base}/#/experiments/{run.info.experiment_id}/runs/"
                                     f"{registered.run_id}/model-metrics")
    assert shot.stat().st_size > 50_000  # a rendered page of charts, not a blank one
