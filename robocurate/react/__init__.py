"""React tactile-visual recordings (RealSense + GelSight + OptiTrack HDF5): integrity, compression."""
