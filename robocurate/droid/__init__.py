"""DROID training data: contact tracks, 1 mm flow, projections, extrinsics and quality
from raw DROID episodes (metadata mode), plus depth (full mode, see depth.py).

Modules: layout (discovery and ordering), calibration (intrinsics sources), kinematics
(Robotiq 2F-85 contact tracks), flow_resample (arc-length resampling), extrinsics,
projection, episode (one episode, staged and moved into place).
"""
