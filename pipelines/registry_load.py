"""Load a registered generator by URI with nothing but mlflow and torch.

The registry stores the EMA generator as a torch.export program (MLflow's ``pt2`` format): the
graph and weights, no pickled classes, so loading needs neither ganpkg's code nor trust in the
file. This module deliberately imports nothing from ganpkg.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else ``./mlflow.db`` made absolute.

    Absolute, because MLflow resolves a relative sqlite path against whatever directory the
    process happens to be in.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global (fluent) tracking and registry URIs at ``uri`` for APIs that only
    read the globals, e.g. ``mlflow.pytorch.log_model`` and registering a logged model; restore
    them afterwards, and the $MLFLOW_TRACKING_URI/$MLFLOW_REGISTRY_URI that MLflow's setters
    also write (left behind, they would send a later call, or a child process, elsewhere)."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils

    saved = (utils._tracking_uri, registry_utils._registry_uri)
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exported_wrapper_class():
    from torch import nn

    class ExportedGenerator(nn.Module):
        """An exported program behaves like the generator, but refuses ``train()``/``eval()``
        (its graph is frozen in eval mode); this wrapper makes them no-ops so callers that
        toggle modes (ganpkg.sampling.generate) work unchanged."""

        def __init__(self, program: nn.Module, z_dim: int):
            super().__init__()
            self.program, self.z_dim = program, z_dim

        def forward(self, z):
            return self.program(z)

        def train(self, mode: bool = True):
            self.training = mode
            return self

    return ExportedGenerator


def load_registered_generator(uri: str, tracking_uri: str | None = None):
    """(generator, z_dim) from an MLflow model URI, e.g. ``models:/ganpkg-generator@champion``.

    z_dim comes from the model's signature (input ``z``: float32 (N, z_dim)). The generator is
    on CPU, in eval mode, without gradients.
    """
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    store = resolve_tracking_uri(tracking_uri)
    # Nothing from the registry may execute: MLflow then refuses pickle-format models and
    # checks that a pt2 archive holds no pickle payload (for this whole process).
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    with using_tracking_uri(store):  # models:/ URIs resolve only through the global URI
        try:
            info = get_model_info(uri)
        except (MlflowException, OSError) as err:
            raise _user_error(f"--model {uri}: cannot resolve it in {store} "
                              f"({err.__class__.__name__}: {str(err)[:200]})") from None
        signature = info.signature
        if signature is None or not signature.inputs.is_tensor_spec():
            raise _user_error(f"--model {uri}: no tensor signature; not a ganpkg generator")
        z_dim = int(signature.inputs.inputs[0].shape[1])
        try:
            program = mlflow.pytorch.load_model(uri)
        except MlflowException as err:
            if "pickle" not in str(err).lower():
                raise
            raise _user_error(f"--model {uri}: refused: not a pickle-free pt2 generator (loading "
                              f"it could run code it carries); register it with "
                              f"serialization_format='pt2'") from None
    generator = _exported_wrapper_class()(program, z_dim).eval().requires_grad_(False)
    return generator, z_dim


def _user_error(message: str) -> Exception:
    # ganpkg's CLI prints its UserError as one line; fall back to ValueError without ganpkg.
    try:
        from ganpkg.errors import UserError
    except ImportError:
        return ValueError(message)
    return UserError(message)
