"""Two gates at once cannot lose the better champion; registering twice makes one version."""

import contextlib
import threading

import pytest
from mlflow import MlflowClient
from test_gate import CFG, tags

from pipelines import registration, registry
from pipelines.registry import CHALLENGER, CHAMPION, apply_gate
from pipelines.registry_load import using_tracking_uri


def _setup(registered, name):
    """A registered model with champion v1 (FID 12) and two unjudged versions: FID 11 and 8."""
    client = MlflowClient(registered.uri)
    source = client.get_model_version("ganpkg-generator", registered.version).source
    client.create_registered_model(name)
    versions = []
    with using_tracking_uri(client.tracking_uri):
        for fid in (12.0, 11.0, 8.0):
            versions.append(str(client.create_model_version(
                name, source, run_id=registered.run_id, tags=tags(fid, se=0.05)).version))
    assert apply_gate(client, name, versions[0], CFG).alias == CHAMPION
    return client, versions


def _gate_both(client, name, versions):
    """Gate v2 (worse of the two) and v3 at once, both starting from the same state; the worse
    one finishes last, which is the order that lost the better champion before."""
    errors = []

    def one(version):
        try:
            apply_gate(MlflowClient(client.tracking_uri), name, version, CFG)
        except BaseException as err:  # noqa: BLE001  reported on the main thread
            errors.append(err)

    threads = [threading.Thread(target=one, args=(v,)) for v in versions[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def _check_consistent(client, name, better):
    """The better version holds champion; every other version tagged champion was replaced by
    a later champion judged against it (tags agree with aliases)."""
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert str(champion.version) == better
    found = client.search_model_versions(f"name='{name}'")
    crowned = {str(mv.version): mv.tags for mv in found
               if mv.tags.get("gate.decision") == CHAMPION}
    assert better in crowned
    replaced = {t.get("gate.compared_with") for t in crowned.values()}
    for version in crowned:
        assert version == better or version in replaced, (version, crowned)
    previous = client.get_model_version_by_alias(name, "previous-champion")
    assert str(previous.version) != better


def _barrier_before_gate(monkeypatch, lock_too: bool):
    """Both threads wait at a barrier right after reading the champion and deciding: the
    worst point for a read-decide-set without a lock. With ``lock_too`` the lock is real and
    the barrier sits before it (waiting inside the lock would deadlock)."""
    barrier = threading.Barrier(2, timeout=30)
    if lock_too:
        real_lock = registry.registry_lock

        @contextlib.contextmanager
        def lock_after_barrier(client, **kw):
            barrier.wait()
            with real_lock(client, **kw):
                yield

        monkeypatch.setattr(registry, "registry_lock", lock_after_barrier)
        return
    # A store without a lock (a server): both decide against v1, then v3 sets first.
    monkeypatch.setattr(registry, "registry_lock", lambda client, **kw: contextlib.nullcontext())
    real_decide = registry.decide
    order = threading.Semaphore(0)

    def decide_then_wait(candidate, current, current_version, cfg):
        decision = real_decide(candidate, current, current_version, cfg)
        if threading.current_thread().name.startswith("Thread") and current_version == "1":
            barrier.wait()
            if candidate.get("metric.fid_domain") == repr(11.0):
                order.acquire(timeout=30)  # the worse one moves the alias last
            else:
                threading.Timer(0.5, order.release).start()
        return decision

    monkeypatch.setattr(registry, "decide", decide_then_wait)


@pytest.mark.parametrize("lock", [True, False], ids=["sqlite-lock", "no-lock-repair"])
def test_overlapping_gates_keep_the_better_champion(registered, monkeypatch, lock):
    name = f"race-{'lock' if lock else 'repair'}"
    client, versions = _setup(registered, name)
    _barrier_before_gate(monkeypatch, lock_too=lock)
    _gate_both(client, name, versions)
    _check_consistent(client, name, better=versions[2])
    loser = client.get_model_version(name, versions[1])
    if lock:  # serialized: v3 first (v2 then loses to it), or v2 first and then beaten by v3
        winner = client.get_model_version(name, versions[2])
        assert (loser.tags["gate.decision"] == CHALLENGER
                or winner.tags["gate.compared_with"] == versions[1]), (loser.tags, winner.tags)
    else:  # the repair says what happened
        assert loser.tags["gate.decision"] == CHALLENGER
        assert loser.tags["gate.race"] == f"lost to v{versions[2]}"


def test_rollback_starts_a_new_round(registered):
    """An old winner of an earlier reign does not compete again after a rollback."""
    name = "race-rollback"
    client, versions = _setup(registered, name)
    assert apply_gate(client, name, versions[2], CFG).alias == CHAMPION  # v3 (8) beats v1
    registry.rollback(name, "bad samples", registered.uri)  # v1 again, a new reign
    assert apply_gate(client, name, versions[1], CFG).alias == CHAMPION  # v2 (11) beats v1
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == versions[1]


def test_register_retry_reuses_its_version(registered):
    """The register task retried after a failure that followed create_model_version."""
    client = MlflowClient(registered.uri)
    before = client.search_model_versions(f"name='ganpkg-generator' and run_id='{registered.run_id}'")
    from registry_helpers import METRICS, PROTOCOL

    again = registration.register_run(registered.run_id, registered.checkpoint, METRICS, PROTOCOL,
                                  registered.config, tracking_uri=registered.uri)
    after = client.search_model_versions(f"name='ganpkg-generator' and run_id='{registered.run_id}'")
    assert again.version == registered.version
    assert len(after) == len(before)
