"""A DVC stage that refuses its input is the user's error, in one line, with DVC's outputs put
back; only failures a second try can fix are retried by the flow."""

import errno

import pytest
from conftest import enter_project, make_project, write_params
from prefect.states import Failed

from ganpkg.config import load_config
from ganpkg.data.ingest import ingest
from ganpkg.errors import UserError
from pipelines.data import repro
from pipelines.flows import transient


def test_a_stage_that_refuses_its_input_is_one_line_and_its_outputs_are_restored(
        tmp_path, monkeypatch):
    root = enter_project(make_project(tmp_path), monkeypatch)
    repro(root, "prepare")
    manifest = (root / "prepared" / "manifest.json").read_bytes()
    write_params(root, data={"strict": True})
    (tmp_path / "images" / "left" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    ingest(load_config(root / "params.yaml").data)  # a new snapshot with the broken file
    with pytest.raises(UserError, match=r"broken\.png: .*data\.strict is true.*"
                                        r"\(DVC stage prepare; outputs restored\)$"):
        repro(root, "prepare")
    # DVC removed prepared/ before running the stage; `dvc checkout` put it back
    assert (root / "prepared" / "manifest.json").read_bytes() == manifest


def test_only_what_a_second_try_can_fix_is_retried():
    assert not transient(None, None, Failed(data=UserError("data.strict: a bad file")))
    assert not transient(None, None, Failed(data=OSError(errno.ENOSPC, "No space left")))
    assert not transient(None, None, Failed(data=NotADirectoryError(errno.ENOTDIR, "a file")))
    assert transient(None, None, Failed(data=ConnectionResetError(errno.ECONNRESET, "reset")))
    assert transient(None, None, Failed(data=RuntimeError("dvc push failed (exit 1)")))
