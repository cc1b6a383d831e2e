"""Intrinsics sources: factory .conf (rectified with OpenCV), table JSON, ZED SDK message."""

import json

import numpy as np
import pytest

from robocurate.droid import calibration as cal
from robocurate.samples.droid import conf_text

CONF = """[LEFT_CAM_HD]
cx=655.92
cy=360.28
fx=699.25
fy=699.25
k1=0
k2=0
p1=0
p2=0
k3=0

[RIGHT_CAM_HD]
cx=655.92
cy=360.28
fx=699.25
fy=699.25
k1=0
k2=0
p1=0
p2=0
k3=0

[STEREO]
Baseline=62.65
TY=0
TZ=0
CV_HD=0
RX_HD=0
RZ_HD=0
"""


def test_identity_stereo_keeps_the_raw_intrinsics():
    rec = cal.rectified_from_conf(cal.parse_zed_conf(CONF))
    assert (rec["width"], rec["height"]) == (1280, 720)
    assert rec["fx"] == pytest.approx(699.25) and rec["cy"] == pytest.approx(360.28)
    assert rec["baseline_m"] == pytest.approx(0.06265)
    assert all(rec[k] == 0.0 for k in ("k1", "k2", "p1", "p2", "k3"))


def test_realistic_factory_file_is_rectified():
    text = conf_text(np.random.default_rng(4), wrist=False)
    conf = cal.parse_zed_conf(text)
    rec = cal.rectified_from_conf(conf)
    raw = conf["LEFT_CAM_HD"]
    assert abs(rec["fx"] / raw["fx"] - 1) < 0.05
    assert rec["baseline_m"] == pytest.approx(conf["STEREO"]["baseline"] / 1000, rel=5e-3)
    assert rec["fx"] == rec["fy"]  # rectified cameras share one focal length
    vga = cal.rectified_from_conf(conf, "VGA")
    assert (vga["width"], vga["height"]) == (672, 376) and vga["fx"] < rec["fx"]


def test_conf_files_by_serial(tmp_path):
    (tmp_path / "SN123.conf").write_text(CONF)
    (tmp_path / "SN456.conf").write_text("[LEFT_CAM_HD]\nfx=1\n")
    (tmp_path / "SN789.conf").write_text("this is not an ini file")
    assert cal.conf_intrinsics(tmp_path, "123")["fx"] == pytest.approx(699.25)
    for serial, words in (("999", "no SN999.conf"), ("456", "SN456.conf"), ("789", "SN789.conf")):
        with pytest.raises(cal.CalibrationError, match=words):
            cal.conf_intrinsics(tmp_path, serial)
    written = cal.intrinsics_json(cal.conf_intrinsics(tmp_path, "123"))
    assert list(written) == list(cal.FIELDS)
    assert isinstance(written["width"], int)


def test_table_formats(tmp_path):
    entry = {"fx": 500, "fy": 501, "cx": 320, "cy": 240, "width": 640, "height": 480,
             "k1": 0.1, "k2": 0, "p1": 0, "p2": 0, "k3": 0}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"111": entry, "EP+1": {"222": [600, 630, 601, 350]}}))
    table = cal.load_table(path)
    assert cal.table_intrinsics(table, "111")["k1"] == 0.1
    karl = cal.table_intrinsics(table, "222", episode_id="EP+1")  # fx, cx, fy, cy order
    assert (karl["fx"], karl["cx"], karl["fy"], karl["cy"]) == (600, 630, 601, 350)
    with pytest.raises(cal.CalibrationError, match="333"):
        cal.table_intrinsics(table, "333")
    with pytest.raises(cal.CalibrationError, match="lacks"):
        cal.table_intrinsics({"1": {"fx": 1}}, "1")


def test_source_checks_name_the_alternatives(tmp_path):
    with pytest.raises(ValueError, match="calib-dir"):
        cal.check_source("conf", calib_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="intrinsics-table"):
        cal.check_source("table")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(ValueError, match="not readable JSON"):
        cal.check_source("table", table_path=str(bad))
    try:
        import pyzed.sl  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError) as exc:
            cal.check_source("zed")
        assert "conf" in str(exc.value) and "table" in str(exc.value)
        with pytest.raises(cal.CalibrationError, match="pyzed"):
            cal.zed_intrinsics(tmp_path / "x.svo")


def test_stereo_calibration_for_depth():
    rec = cal.rectified_from_conf(cal.parse_zed_conf(CONF))
    sc = cal.stereo_calibration(rec)
    assert sc["baseline_m"] == pytest.approx(0.06265) and len(sc["distortion"]) == 5
    no_b = {k: v for k, v in rec.items() if k != "baseline_m"}
    assert cal.stereo_calibration(no_b, 0.12)["baseline_m"] == 0.12
