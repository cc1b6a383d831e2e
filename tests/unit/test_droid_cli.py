"""The DROID command line: the sample generator and every option the issue lists."""

import json

from click.testing import CliRunner

from flows.cli import main


def test_sample_droid_writes_the_raw_layout(tmp_path):
    out = tmp_path / "raw"
    res = CliRunner().invoke(main, ["sample", "droid", str(out), "--episodes", "1", "--seed", "3",
                                    "--steps", "6", "6"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "sample_manifest.json").read_text())
    assert len(manifest["episodes"]) == 1 + 6  # one clean episode and one of each fault
    clean = manifest["episodes"][0]
    assert (out / clean["rel"] / "trajectory.h5").is_file()
    assert list((out / clean["rel"]).glob("metadata_*.json"))
    assert (out / "calibration" / f"SN{clean['wrist']}.conf").is_file()


def test_tracks_has_every_option_of_the_issue():
    res = CliRunner().invoke(main, ["droid", "tracks", "--help"])
    assert res.exit_code == 0
    for opt in ("--mode", "--episodes", "--workers", "--gpus", "--intrinsics-source",
                "--intrinsics-table", "--calib-dir", "--extrinsics-source", "--superset",
                "--points-per-finger", "--step-mm", "--min-depth", "--depth-source",
                "--publish-full", "--publish-metadata", "--skip-hub-check", "--publish-interval"):
        assert opt in res.output, opt
