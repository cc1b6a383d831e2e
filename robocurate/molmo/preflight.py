"""Preflight checks for publishing a post-processed MolmoSpaces dataset."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from robocurate.hub.preflight import CheckResult, register
from robocurate.io.h5safe import TEMP_SUFFIX
from robocurate.molmo.layout import AGGREGATE_NAME, INDEX_NAME, data_files, split_dirs


@register("molmo", "molmo_postprocessed")
def postprocessed(folder: Path, files: list[Path]) -> CheckResult:
    """Every split has its index and aggregate statistics (the pipeline ran to the end)."""
    missing = [str(s / name) for s in split_dirs(folder) for name in (INDEX_NAME, AGGREGATE_NAME)
               if not (s / name).is_file()]
    for s in split_dirs(folder):
        index = s / INDEX_NAME
        if index.is_file():
            try:
                json.loads(index.read_text())
            except ValueError:
                missing.append(f"{index} (not valid JSON)")
    return CheckResult("molmo_postprocessed", not missing,
                       "run `robocurate molmo postprocess` first: missing outputs" if missing
                       else "index and aggregate statistics present in every split", missing)


@register("molmo", "molmo_files_readable")
def readable(folder: Path, files: list[Path]) -> CheckResult:
    """No unreadable data file and no leftover temporary file of an interrupted run."""
    bad = [str(p) for p in files if p.name.endswith(TEMP_SUFFIX)]
    for split in split_dirs(folder):
        for h5 in data_files(split):
            try:
                with h5py.File(h5, "r") as f:
                    if "valid_traj_mask" not in f:
                        bad.append(f"{h5} (not validated)")
            except OSError:
                bad.append(f"{h5} (unreadable)")
    return CheckResult("molmo_files_readable", not bad,
                       f"{len(bad)} data files unreadable, unvalidated or temporary" if bad
                       else "every data file readable and validated", bad)
