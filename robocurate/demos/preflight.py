"""Preflight checks for publishing demonstration HDF5 files."""

from __future__ import annotations

from pathlib import Path

from robocurate.demos.check import check_file
from robocurate.hub.preflight import CheckResult, register


@register("demos", "demos_check_clean")
def check_clean(folder: Path, files: list[Path]) -> CheckResult:
    """Every demonstration file passes ``robocurate demos check`` without errors."""
    h5 = [p for p in files if p.suffix in (".hdf5", ".h5")]
    if not h5:
        return CheckResult("demos_check_clean", False, "no .hdf5/.h5 demonstration file")
    bad = []
    for p in h5:
        m = check_file(p)
        if m["errors"]:
            rules = sorted({f["rule"] for f in m["findings"] if f["severity"] == "error"})
            bad.append(f"{p} ({', '.join(rules)})")
    return CheckResult("demos_check_clean", not bad,
                       f"{len(bad)} of {len(h5)} files have check errors" if bad
                       else f"{len(h5)} files pass the checker", bad)
