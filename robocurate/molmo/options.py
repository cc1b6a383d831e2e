"""Parameters of the MolmoSpaces post-processing, shared by the CLI, flows and library."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MolmoOptions(BaseModel):
    """One typed parameter set: the CLI flags map onto it one-to-one and the Prefect UI
    renders it as a form."""

    # Not "keys": Prefect treats any object with a .keys attribute as a mapping.
    stat_keys: list[str] = Field(
        default_factory=lambda: ["actions", "obs/agent/qpos"],
        description="Trajectory keys (groups or datasets) to compute statistics for.")
    check_visibility: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(camera, object) pairs that must be visible at t=0.")
    min_steps: int = Field(3, ge=1, description="Minimum action rows, dummy and done included.")
    frames_to_check: int = Field(3, ge=0, description="Frames decoded per video.")
    check_video: bool = Field(True, description="Check video existence, length and decoding.")
    overwrite: bool = Field(True, description="Recompute results already in the files.")
