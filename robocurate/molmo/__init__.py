"""MolmoSpaces post-processing: repair video paths, validate trajectories, statistics."""
