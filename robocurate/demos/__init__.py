"""Robot demonstration HDF5 (robomimic-style and the seed's layout): check, stats,
normalisation, lazy loading."""
