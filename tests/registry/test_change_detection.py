"""schedule.policy on_change: only keys that change the generator or its figures retrain, and
the reason names them."""

import pytest
from mlflow import MlflowClient

from ganpkg.config import load_config
from pipelines.policy import champion_changes
from pipelines.registry_load import using_tracking_uri

NAME = "change-detect"


@pytest.fixture(scope="module")
def champion(registered):
    """A champion made from the registered run (same tags), under a model name of its own."""
    client = MlflowClient(registered.uri)
    source = client.get_model_version("ganpkg-generator", registered.version)
    client.create_registered_model(NAME)
    with using_tracking_uri(registered.uri):
        made = client.create_model_version(NAME, source.source, run_id=registered.run_id,
                                           tags=source.tags)
    client.set_registered_model_alias(NAME, "champion", made.version)
    return registered, {"data_dvc_md5": source.tags["data.dvc_md5"]}


def changes(champion, *overrides):
    registered, lineage = champion
    config = load_config(None, [*registered.overrides, f"registry.model_name={NAME}",
                                *overrides])
    return champion_changes(config, lineage, tracking_uri=registered.uri)


def test_same_result_keys_do_not_retrain_whatever_the_schedule_gate_or_outputs(champion):
    go, reason = changes(champion, "schedule.cron=0 3 * * *", "registry.margin=0.5",
                         "train.log_every_steps=7", "train.checkpoint_every_steps=3",
                         "eval.batch_size=17", "train.run_dir=elsewhere")
    assert not go, reason
    assert "use --force" in reason


@pytest.mark.parametrize("override, said", [
    ("train.lr_g=0.0001", "train.lr_g 0.001 → 0.0001"),
    ("model.g_width=12", "model.g_width 8 → 12"),
    ("eval.n_samples=999", "eval.n_samples"),
])
def test_a_result_key_retrains_and_the_reason_names_it(champion, override, said):
    go, reason = changes(champion, override)
    assert go and said in reason, reason


def test_new_data_retrains(champion):
    registered, _ = champion
    config = load_config(None, [*registered.overrides, f"registry.model_name={NAME}"])
    go, reason = champion_changes(config, {"data_dvc_md5": "f" * 32}, registered.uri)
    assert go and "data version" in reason
