"""MLflow tracking: a ``TrainingCallback`` that logs a training run to MLflow.

One experiment per config name (``ganpkg-<name>``). A run holds: the resolved config as params
(flattened, ``model.z_dim``) and as ``config/config.yaml``; per-step losses, D outputs, gradient
norms and images/s; the fixed-noise sample grid under the image key ``samples`` (the UI's step
slider); checkpoint events (metric ``checkpoint_step``, tag ``checkpoint.latest``); system metrics;
lineage tags (``pipelines.run_tags``); the run's log (``logs/train.log``) and ``status.json``; the
FID curve's points (``eval/progress/…``). An evaluation is logged by ``pipelines.eval_record``.

Everything goes through an ``MlflowClient`` bound to one tracking URI and an explicit run id, so
no global "active run" leaks into the training process or into Prefect's threads.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from ganpkg.callbacks import NullCallback
from ganpkg.config import Config, flatten
from ganpkg.errors import UserError
from pipelines.registry_load import resolve_tracking_uri
from pipelines.run_tags import git_lineage, git_output, lineage_tags, source_tags

# MLflow metric namespaces: the UI groups charts by the part before "/" (system/ is MLflow's).
TRAIN = "train/"  # per-step losses, D outputs, gradient norms, images/s, checkpoint steps
EVAL = "eval/"  # evaluation: each metric's value (fid_domain, ...), the FID curve (progress/)
RUN_ID_FILE = "mlflow_run.json"  # in train.run_dir: a resumed training continues its MLflow run
LOG_FILE = "train.log"
SAMPLES_KEY = "samples"
_log = logging.getLogger("ganpkg.tracking")


def experiment_name(config: Config) -> str:
    """The experiment a config's runs go to: one per config name."""
    return f"ganpkg-{config.name}"


def sqlite_artifact_root(uri: str) -> Path | None:
    """``<db folder>/mlartifacts`` for an embedded sqlite store; None for a server."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"


def get_client(tracking_uri: str | None = None):
    """An MlflowClient for the explicit URI, $MLFLOW_TRACKING_URI, or ./mlflow.db."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client, name: str) -> str:
    """Experiment id for ``name``, created with artifacts beside an embedded store."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = sqlite_artifact_root(client.tracking_uri)
    # A server decides where artifacts go; only the embedded store needs a location from us,
    # or MLflow would put them under ./mlruns of whatever directory the process runs in.
    location = (root / name).as_uri() if root else None
    return client.create_experiment(name, artifact_location=location)


def _device_of(config: Config) -> str:
    from ganpkg.device import resolve_device

    try:
        return str(resolve_device(config.train.device, "train.device"))
    except UserError:  # the trainer reports a bad device itself
        return config.train.device


class MlflowTracker(NullCallback):
    """Logs one training run to MLflow (see the module docstring for what)."""

    def __init__(self, config: Config, *, tracking_uri: str | None = None,
                 flow_run_id: str | None = None, repo: str | Path = ".",
                 data_lineage: dict | None = None, system_metrics: bool = True,
                 run_name: str | None = None, config_path: str | Path | None = None,
                 run_id: str | None = None, parent_run_id: str | None = None):
        """``run_id`` attaches to a run another process created (torchrun's rank 0 logs to the
        flow task's run); ``parent_run_id`` nests a new run under a sweep's parent run."""
        self.config, self.repo, self.flow_run_id = config, Path(repo), flow_run_id
        self.data_lineage, self.system_metrics, self.run_name = data_lineage, system_metrics, run_name
        self._pace_start: tuple[int, float] | None = None  # (step, time) of the first step seen
        self.config_path = Path(config_path) if config_path else None
        self.client = get_client(tracking_uri)
        self.run_id: str | None = run_id
        self.parent_run_id = parent_run_id
        self._monitor = None
        self._handler: logging.Handler | None = None

    # -- run lifecycle ----------------------------------------------------------------------
    def _resumable_run(self, run_dir: Path) -> str | None:
        marker = run_dir / RUN_ID_FILE
        if not marker.is_file():
            return None
        saved = json.loads(marker.read_text())
        if saved.get("tracking_uri") != self.client.tracking_uri:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(saved["run_id"]).info.run_id
        except MlflowException:  # deleted, or another store: start afresh
            return None

    def open_run(self, run_dir: Path, commit: str | None = None) -> bool:
        """Set ``run_id``: the given one (attach), run_dir's earlier run (resume) or a new one,
        nested under ``parent_run_id`` when given. True when the run existed before."""
        run_dir = Path(run_dir)
        if self.run_id is None:
            self.run_id = self._resumable_run(run_dir)
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return True
        exp = ensure_experiment(self.client, experiment_name(self.config))
        # The commit on_start already read (git runs once), else read here.
        tags = source_tags(commit or git_lineage(self.repo)["git.commit"])
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        self.run_id = self.client.create_run(exp, run_name=self.run_name, tags=tags).info.run_id
        (run_dir / RUN_ID_FILE).write_text(json.dumps(
            {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri}))
        return False

    def on_start(self, config: dict, run_dir: Path) -> None:
        """Create (or resume, or attach to) the run; log params, config file and lineage tags."""
        run_dir = Path(run_dir)
        tags = lineage_tags(self.config, self.repo, self.flow_run_id, self.data_lineage,
                            _device_of(self.config))
        tags["train.run_dir"] = str(run_dir)
        resumed = self.open_run(run_dir, tags["git.commit"])
        if not resumed:
            self._log_dataset(tags.get("data.dvc_md5"))
        self._start_log_file(run_dir)
        self._log_params(flatten(config), tags)
        self._log_config_files(run_dir)
        if self.system_metrics:
            self._start_system_metrics(resume=bool(resumed))
        _log.info("mlflow run %s (%s) started in %s", self.run_id,
                  "existing" if resumed else "new", run_dir)

    def _log_dataset(self, md5: str | None) -> None:
        """The training data as the run's dataset input (the run page's Datasets): digest =
        data.dvc md5, source = where the DVC remote keeps that snapshot."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from pipelines.data import dataset_uri

        uri = dataset_uri(self.repo, md5) if md5 not in (None, "none", "unknown") else None
        if uri is None:
            return  # no committed snapshot or no remote: nothing true to point at
        with warnings.catch_warnings():  # MLflow registers its local-file source twice
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            source = resolve_dataset_source(uri)
        data = self.config.data
        dataset = MetaDataset(source, digest=md5,
                              name=f"{data.source}-{data.split}-{data.resolution}px")
        # (the client API has no log_input; this is what mlflow.log_input sends)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])])

    def _log_params(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        existing = self.client.get_run(self.run_id).data.params
        new = {k: str(v) for k, v in params.items() if k not in existing}
        # Params are immutable; a resumed run may change e.g. train.total_steps: keep it as a tag.
        changed = {f"resume.{k}": str(v) for k, v in params.items()
                   if k in existing and existing[k] != str(v)}
        items = list(new.items())
        run_tags = [RunTag(k, v) for k, v in {**tags, **changed}.items()]
        for i in range(0, max(len(items), 1), 100):  # MLflow takes ≤ 100 params per batch
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in items[i:i + 100]],
                                  tags=run_tags if i == 0 else [])

    def _log_config_files(self, run_dir: Path) -> None:
        resolved = run_dir / "config.yaml"  # written by the trainer before on_start
        if resolved.is_file():
            self.client.log_artifact(self.run_id, str(resolved), "config")
        if self.config_path and self.config_path.is_file():
            self.client.log_artifact(self.run_id, str(self.config_path), "config/source")
        diff = git_output(self.repo, "diff", "HEAD")
        if diff:  # a dirty tree is only reproducible with its diff
            self.client.log_text(self.run_id, diff, "git/diff.patch")

    def _start_log_file(self, run_dir: Path) -> None:
        self._handler = logging.FileHandler(run_dir / LOG_FILE)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                     "%(message)s"))
        logger = logging.getLogger("ganpkg")
        logger.addHandler(self._handler)
        logger.setLevel(min(logger.level or logging.INFO, logging.INFO))

    def _start_system_metrics(self, resume: bool) -> None:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=10,
                                                 resume_logging=resume,
                                                 tracking_uri=self.client.tracking_uri)
            self._monitor.start()
        except (ImportError, OSError, RuntimeError) as err:  # psutil missing etc.: never fail a run for telemetry
            _log.warning("system metrics disabled: %s", err)
            self._monitor = None

    # -- events -----------------------------------------------------------------------------
    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        """Losses, D(real)/D(fake), gradient norms and images/s at this step."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(TRAIN + k, float(v), now, step)
                                                    for k, v in metrics.items()])
        _log.info("step %d/%d %s %s", step, self.config.train.total_steps, self._eta(step),
                  " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def _eta(self, step: int) -> str:
        """'(3%, 1m12s left)': from this process's own pace (a resumed run starts afresh)."""
        total, now = self.config.train.total_steps, time.monotonic()
        if self._pace_start is None:
            self._pace_start = (step, now)
        first_step, first_time = self._pace_start
        done = 100 * step / total
        if step <= first_step:
            return f"({done:.0f}%)"
        left = (total - step) * (now - first_time) / (step - first_step)
        minutes, seconds = divmod(round(left), 60)
        return f"({done:.0f}%, {minutes}m{seconds:02d}s left)"

    def on_sample(self, step: int, grid_path: Path) -> None:
        """The fixed-noise grid as a step-indexed image (the UI's slider shows progress)."""
        from PIL import Image

        with Image.open(grid_path) as image:
            self.client.log_image(self.run_id, display_size(image), key=SAMPLES_KEY, step=step)
        _log.info("step %d sample grid %s", step, grid_path)

    def on_checkpoint(self, step: int, path: Path) -> None:
        """A checkpoint event: metric ``checkpoint_step`` and the newest path as a tag."""
        self.client.log_metric(self.run_id, f"{TRAIN}checkpoint_step", step, step=step)
        self.client.set_tag(self.run_id, "checkpoint.latest", str(path))
        _log.info("step %d checkpoint %s", step, path)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        """A point of the FID curve: ``eval/progress/<metric>`` at its step (the final full
        evaluation is ``eval/<metric>``: another sample count, another estimate)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(f"{EVAL}progress/{k}", float(v), now, step) for k, v in metrics.items()])

    def on_end(self, status: str, run_dir: Path) -> None:
        """Status, log file and status.json; the run is terminated with the training's status."""
        run_dir = Path(run_dir)
        _log.info("training %s", status)
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        self._stop_log_file()
        for name, folder in ((LOG_FILE, "logs"), ("status.json", "status")):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name), folder)
        self.client.set_tag(self.run_id, "train.status", status)
        from ganpkg.training import read_status

        stopped_by = read_status(run_dir).get("stopped_by")
        if stopped_by:  # which budget ended it: total_steps (reproducible) or max_seconds
            self.client.set_tag(self.run_id, "train.stopped_by", stopped_by)
        self.client.set_terminated(self.run_id, status if status in ("FINISHED", "KILLED")
                                   else "FAILED")

    def _stop_log_file(self) -> None:
        if self._handler is not None:
            logging.getLogger("ganpkg").removeHandler(self._handler)
            self._handler.close()
            self._handler = None


def display_size(image, target: int = 512):
    """The grid enlarged by a whole factor to about ``target`` px (nearest neighbour: nothing
    blurred, nothing invented). 8×8 digits of 32 px make a 274-px grid, which MLflow's image
    preview shows at its own size: too small to judge a stroke."""
    from PIL import Image

    scale = max(1, target // max(image.size))
    if scale == 1:
        return image.copy()
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
