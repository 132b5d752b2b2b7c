"""The promotion gate: a worse model never becomes champion; promote and rollback by hand."""

import math

import pytest
from mlflow import MlflowClient
from registry_helpers import PROTOCOL
from typer.testing import CliRunner

from ganpkg.config import RegistryConfig
from ganpkg.errors import UserError
from ganpkg.evaluation.protocol import PACKED_TAG, packed_tag, protocol_tags
from pipelines import registry
from pipelines.gate import progress
from pipelines.registry import CHALLENGER, CHAMPION, PREVIOUS, apply_gate, decide
from pipelines.registry_load import using_tracking_uri

CFG = RegistryConfig(primary_metric="fid_domain", margin=0.5, max_memorized_fraction=0.05)


def tags(fid=None, memorized=0.01, se=None, baseline=1000.0, floor=1.0, **protocol):
    out = protocol_tags({**PROTOCOL, **protocol})
    if fid is not None:
        out["metric.fid_domain"] = repr(fid)
    for qualifier, value in (("se", se), ("baseline", baseline), ("floor", floor)):
        if value is not None:
            out[f"metric.fid_domain_{qualifier}"] = repr(value)
    if memorized is not None:
        out["metric.memorized_fraction_domain"] = repr(memorized)
    return out


@pytest.mark.parametrize("fid, expected", [
    (12.0, CHALLENGER),  # worse
    (10.0, CHALLENGER),  # equal
    (9.6, CHALLENGER),   # better, but not by more than the margin
    (9.4, CHAMPION),     # better by more than the margin
    (float("nan"), CHALLENGER),
])
def test_decide_against_a_champion(fid, expected):
    decision = decide(tags(fid), tags(10.0), "1", CFG)
    assert decision.alias == expected, decision.reason
    assert decision.compared_with == (None if math.isnan(fid) else "1")


def test_decide_refuses_what_is_not_comparable_or_memorized():
    champion = tags(10.0)
    assert "reference_md5" in decide(tags(1.0, reference_md5="other"), champion, "1", CFG).reason
    assert "extractor_weights_sha256" in decide(tags(1.0, extractor_weights_sha256="x"),
                                                champion, "1", CFG).reason
    assert decide(tags(1.0, seed=5), champion, "1", CFG).alias == CHAMPION  # seed may differ
    assert "memorization check failed" in decide(tags(1.0, memorized=0.5), champion, "1",
                                                 CFG).reason
    assert "memorization check missing" in decide(tags(1.0, memorized=None), None, None,
                                                  CFG).reason
    assert decide({"metric.fid_domain": "1.0"}, None, None, CFG).alias == CHALLENGER


def test_a_version_packed_protocol_compares_with_an_older_versions_per_field_tags():
    metrics = {k: v for k, v in tags(9.0).items() if k.startswith("metric.")}
    packed = {**metrics, **packed_tag(PROTOCOL)}  # what register_run writes now
    assert decide(packed, tags(10.0), "1", CFG).alias == CHAMPION
    assert decide(tags(9.0), {**packed, "metric.fid_domain": "10.0"}, "1", CFG).alias == CHAMPION
    other = {**metrics, **packed_tag({**PROTOCOL, "reference_md5": "other"})}
    assert "eval.reference_md5" in decide(other, tags(10.0), "1", CFG).reason
    garbled = {**metrics, PACKED_TAG: "{not json"}
    assert "no evaluation protocol" in decide(garbled, None, None, CFG).reason


def test_first_version_needs_the_absolute_threshold_and_direction_follows_the_metric():
    strict = CFG.model_copy(update={"first_champion_threshold": 20.0})
    assert decide(tags(25.0), None, None, strict).alias == CHALLENGER
    assert decide(tags(15.0), None, None, strict).alias == CHAMPION
    isc = RegistryConfig(primary_metric="is_domain", margin=0.0)
    higher = {**tags(), "metric.is_domain": "3.0"}
    assert decide(higher, {**tags(), "metric.is_domain": "2.0"}, "1", isc).alias == CHAMPION
    assert decide({**tags(), "metric.is_domain": "1.0"}, {**tags(), "metric.is_domain": "2.0"},
                  "1", isc).alias == CHALLENGER


def _version(client, name, source, run_id, fid, memorized=0.01):
    """A version of the registered generator with metrics we control."""
    with using_tracking_uri(client.tracking_uri):  # the registry resolves models:/m-… globally
        mv = client.create_model_version(name, source, run_id=run_id, tags=tags(fid, memorized))
    return str(mv.version), apply_gate(client, name, str(mv.version), CFG)


def _alias(client, name, alias):
    return str(client.get_model_version_by_alias(name, alias).version)


def test_worse_never_champion_then_better_then_rollback_and_promote(registered):
    client = MlflowClient(registered.uri)
    source = client.get_model_version("ganpkg-generator", registered.version).source
    name = "gate-test"
    client.create_registered_model(name)
    v1, d1 = _version(client, name, source, registered.run_id, 10.0)
    assert d1.alias == CHAMPION
    for fid in (12.0, 10.0, 9.9):  # worse, equal, within the margin: never champion
        v, d = _version(client, name, source, registered.run_id, fid)
        assert d.alias == CHALLENGER, d.reason
        assert _alias(client, name, CHAMPION) == v1
        assert _alias(client, name, CHALLENGER) == v
        assert client.get_model_version(name, v).tags["gate.decision"] == CHALLENGER
    v_mem, d = _version(client, name, source, registered.run_id, 1.0, memorized=0.9)
    assert d.alias == CHALLENGER and "memorization" in d.reason
    v_good, d = _version(client, name, source, registered.run_id, 8.0)
    assert d.alias == CHAMPION and d.compared_with == v1
    assert "beats champion v1" in client.get_model_version(name, v_good).tags["gate.reason"]
    assert _alias(client, name, PREVIOUS) == v1
    # Rollback: previous-champion is champion again; the alias walks back, not in circles.
    assert registry.rollback(name, "bad samples", registered.uri) == v1
    assert _alias(client, name, CHAMPION) == v1
    assert client.get_model_version(name, v_good).tags["rollback.rolled_back"] == "true"
    with pytest.raises(UserError, match="nothing to roll back"):
        registry.rollback(name, "again", registered.uri)
    # Manual promotion overrides the gate, with a reason.
    assert registry.promote(name, v_mem, "reviewed by hand", registered.uri) == v1
    promoted = client.get_model_version(name, v_mem)
    assert "champion" in promoted.aliases and promoted.tags["promotion.reason"] == \
        "reviewed by hand"
    assert _alias(client, name, PREVIOUS) == v1
    with pytest.raises(UserError, match="--reason"):
        registry.promote(name, v1, " ", registered.uri)


def test_promote_refuses_a_version_that_cannot_be_served(registered, tmp_path):
    client = MlflowClient(registered.uri)
    source = client.get_model_version("ganpkg-generator", registered.version).source
    name = "gone-test"
    client.create_registered_model(name)
    v1, _ = _version(client, name, source, registered.run_id, 10.0)
    gone = tmp_path / "gone"  # a version whose model files were deleted
    (gone / "data").mkdir(parents=True)
    (gone / "MLmodel").write_text("flavors: {}\n")
    v2 = client.create_model_version(name, str(gone), run_id=registered.run_id).version
    with pytest.raises(UserError, match=rf"{name} v{v2} cannot be served, so no alias moves"):
        registry.promote(name, v2, "looks fine", registered.uri)
    assert _alias(client, name, CHAMPION) == v1
    assert "promotion.reason" not in client.get_model_version(name, v2).tags


def test_promote_cli(registered, monkeypatch, tmp_path):
    import typer

    from pipelines.cli import registry as cli_registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.uri)
    monkeypatch.chdir(tmp_path)  # no params.yaml: embedded defaults
    client = MlflowClient(registered.uri)
    name = "cli-test"
    client.create_registered_model(name)
    source = client.get_model_version("ganpkg-generator", registered.version).source
    v1, _ = _version(client, name, source, registered.run_id, 10.0)
    v2, _ = _version(client, name, source, registered.run_id, 11.0)
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """ganpkg (test app)."""

    cli_registry.register(app)
    runner = CliRunner()
    base = ["--set", f"registry.model_name={name}"]
    result = runner.invoke(app, ["promote", "--version", v2, "--reason", "sharper", *base])
    assert result.exit_code == 0, result.output
    assert _alias(client, name, CHAMPION) == v2
    result = runner.invoke(app, ["promote", "--rollback", *base])
    assert result.exit_code == 0, result.output
    assert _alias(client, name, CHAMPION) == v1
    result = runner.invoke(app, ["promote", *base])
    assert isinstance(result.exception, UserError)


# Figures of `make run` on MNIST (domain extractor): the default recipe's fid_domain 12.18 ±
# 0.14, its generator at initialization 3072, held-out real images 0.024.
MNIST = {"baseline": 3072.0, "floor": 0.024}
NOISY = RegistryConfig(primary_metric="fid_domain", margin=0.0, max_memorized_fraction=0.05)


def test_evaluation_noise_is_not_an_improvement_but_a_clear_gain_is():
    champion = tags(12.18, se=0.14)
    lucky = tags(12.05, se=0.14)  # lower, well inside the noise
    decision = decide(lucky, champion, "1", NOISY)
    assert decision.alias == CHALLENGER
    assert "[" in decision.reason and "95% intervals" in decision.reason
    # Without standard errors (versions from before) the gate falls back to point values,
    # and the same noise would have been promoted: what the intervals are for.
    assert decide(tags(12.05), tags(12.18), "1", NOISY).alias == CHAMPION
    better = decide(tags(11.0, se=0.14), champion, "1", NOISY)
    assert better.alias == CHAMPION and "beats champion v1" in better.reason
    # The margin adds to the intervals: a real but small gain stays below a margin of 2.
    wide = NOISY.model_copy(update={"margin": 2.0})
    assert decide(tags(11.0, se=0.14), champion, "1", wide).alias == CHALLENGER


def test_a_first_version_must_clearly_beat_its_baseline():
    noise = decide(tags(1037.98, **MNIST), None, None, NOISY)
    assert noise.alias == CHALLENGER
    assert "registry.first_champion_fraction 0.3 needs fid_domain <" in noise.reason
    assert "baseline" in noise.reason and "floor" in noise.reason
    good = decide(tags(12.18, **MNIST), None, None, NOISY)
    assert good.alias == CHAMPION and "of the way from the baseline to the floor" in good.reason
    unmeasured = decide(tags(12.18, baseline=None, floor=None), None, None, NOISY)
    assert unmeasured.alias == CHALLENGER and "no baseline and floor" in unmeasured.reason
    off = NOISY.model_copy(update={"first_champion_fraction": None})
    assert decide(tags(1037.98, **MNIST), None, None, off).alias == CHAMPION
    # Higher-is-better metrics go the same way up: IS from 1 (baseline) toward 9.1 (real).
    isc = NOISY.model_copy(update={"primary_metric": "is_domain"})
    assert progress(4.6, 1.0, 9.1, lower=False) > 0.3
    first = {**tags(), "metric.is_domain": "4.6", "metric.is_domain_baseline": "1.0",
             "metric.is_domain_floor": "9.1"}
    assert decide(first, None, None, isc).alias == CHAMPION
    assert decide({**first, "metric.is_domain": "1.2"}, None, None, isc).alias == CHALLENGER


def test_a_version_a_killed_run_left_undecided_is_gated_when_its_run_is_closed(registered):
    from pipelines.resume import gate_undecided

    client = MlflowClient(registered.uri)
    source = client.get_model_version("ganpkg-generator", registered.version).source
    name = "orphan-test"
    client.create_registered_model(name)
    with using_tracking_uri(client.tracking_uri):  # registered, then the process was killed
        left = str(client.create_model_version(name, source, run_id=registered.run_id,
                                               tags=tags(10.0)).version)
    cfg = CFG.model_copy(update={"model_name": name})
    assert gate_undecided(client, registered.run_id, cfg) == [left]
    assert client.get_model_version(name, left).tags["gate.decision"] == CHAMPION
    assert gate_undecided(client, registered.run_id, cfg) == []  # decided once, never again
