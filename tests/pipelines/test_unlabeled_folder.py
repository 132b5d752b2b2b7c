"""A folder of images without labels, on the defaults: the label-free yardstick is trained by
its DVC stage, the label classifier's stage is left out, and the flow ends in a registered
version with a metric measured on the label-free encoder."""

import subprocess
import sys
from pathlib import Path

from conftest import enter_project, make_project, write_params

from ganpkg.errors import UserError
from pipelines.flows import retrain
from pipelines.tracking import get_client


def test_a_folder_without_labels_gets_a_version_on_the_label_free_yardstick(
        tmp_path, monkeypatch, prefect_server):
    root = enter_project(make_project(tmp_path, labeled=False), monkeypatch)
    result = retrain()
    assert result["status"] == "trained", result
    assert "fid_selfsup" in result["metrics"] and "fid_domain" not in result["metrics"]
    version = get_client().get_model_version(result["name"], result["version"])
    assert "selfsup" in version.tags["eval.protocol"]
    assert (root / "extractor" / "selfsup.pt").is_file()
    assert not (root / "extractor" / "domain.pt").exists()
    # What DVC ran is recorded: the label classifier's stage is the one left out.
    status = subprocess.run([str(Path(sys.executable).with_name("dvc")), "status"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    stages = {line.rstrip(":") for line in status.splitlines() if line and line[0] != "\t"}
    assert stages == {"train_extractor"}, status


def test_the_label_classifier_on_a_folder_without_labels_is_one_line(
        tmp_path, monkeypatch, prefect_server):
    enter_project(make_project(tmp_path, labeled=False), monkeypatch)
    write_params(Path.cwd(), eval={"extractor": "domain"}, registry={"primary_metric": "fid"})
    state = retrain(return_state=True)
    assert state.is_failed()
    try:
        state.result()
    except UserError as err:
        assert "eval.extractor=auto or selfsup" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("the flow did not refuse eval.extractor=domain")
