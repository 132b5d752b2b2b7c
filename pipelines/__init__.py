"""Prefect flows, MLflow tracking/registry and DVC glue: where the three tools meet."""
