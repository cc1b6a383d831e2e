"""robocurate: robot-learning recordings to validated, training-ready, published datasets.

This package is the domain library: plain Python with no Prefect import, so every
step can be called, tested and benchmarked without an orchestrator. Prefect lives in
the top-level ``tasks`` and ``flows`` packages.
"""

__version__ = "0.1.0"
