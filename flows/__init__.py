"""Prefect flows, one module per pipeline, and the ``robocurate`` command line."""
