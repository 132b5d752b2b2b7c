"""`ganpkg data ingest|prepare`: config resolution, --set overrides, summary lines."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from ganpkg.errors import UserError
from pipelines.cli import data as cli_data


@pytest.fixture
def app() -> typer.Typer:
    # Only this stage's commands: the test guards cli_data, not the other stages' modules.
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """ganpkg (test app)."""

    cli_data.register(app)
    return app


def test_ingest_and_prepare_print_config_and_summary(app, workdir, bad_folder):
    (workdir / "params.yaml").write_text(
        f"data:\n  source: image_folder\n  source_path: {bad_folder}\n  channels: 3\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["data", "ingest"])
    assert result.exit_code == 0, result.output
    assert "source: image_folder" in result.output  # resolved config printed first
    assert "ingest: 9 files" in result.output
    result = runner.invoke(app, ["data", "prepare", "-c", "params.yaml",
                                 "--set", "data.resolution=64"])
    assert result.exit_code == 0, result.output
    assert "rejected images/b/bomb.png: decompression bomb" in result.output
    assert "prepare: 3 accepted, 6 rejected" in result.output
    assert "3×3×64×64" in result.output


def test_bad_override_is_a_user_error(app, workdir):
    result = CliRunner().invoke(app, ["data", "prepare", "--set", "data.channels=2"])
    assert isinstance(result.exception, UserError)
    assert "data.channels" in str(result.exception)
