"""ganpkg: GAN training, evaluation and sampling in pure PyTorch.

Importing ganpkg touches nothing: no folders are created, no global state is set.
Orchestration (Prefect), tracking (MLflow) and data versioning (DVC) live in
``pipelines/`` and talk to ganpkg through plain functions and callbacks.
"""

__version__ = "0.1.0"
