"""Contact indexing of raw React episodes (robocurate.react.contact, reference 1.1-1.3)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import hdf5plugin
import numpy as np
import pytest
import torch

from robocurate.react.contact import (
    TRIM_REASON_NONE,
    TRIM_REASON_OT,
    contact_scalars,
    index_episode,
    mean_l2,
    pick_p01_reference,
    resolve_device,
    trim_offset_for,
)
from robocurate.react.thumbs import thumbnail, thumbnails_into
from robocurate.samples.react import generate_react_dataset

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GELSIGHT_VIDEO = SHARED_DATA / "gelsight-mini" / "video_2.avi"

T0 = 1_780_000_000.0
FPS = 30.0
META_KEYS = {
    "formula_version", "tau", "rgb_norm", "reference_strategy",
    "ref_first_left", "ref_first_right", "ref_p01_left", "ref_p01_right",
    "ref_p01_idx_left", "ref_p01_idx_right", "drift_left", "drift_right", "drift_warning",
    "trim_offset", "trim_reason", "pre_trim_n_frames", "active_sensors",
    "gelsight_lag_frames",
}
PER_FRAME_THUMBS = ("view", "view_left", "view_middle", "view_right",
                    "tactile_left", "tactile_right")
METRICS = [f"tactile_{s}_{m}" for s in ("left", "right") for m in ("intensity", "area", "mixed")]


# --------------------------------------------------------------------------- fixtures


def _blosc():
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def _cam_frames(T, H, W, c, rng):
    base = rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    shift = (np.arange(T, dtype=np.int64)[:, None, None, None] * (3 + c)) % 256
    return ((base.astype(np.int64) + shift) % 256).astype(np.uint8)


def _gel_frames(T, H, W, rng, press=(), drift_first=0):
    """Flat grey gel with per-pixel texture; `press` frames get a strong blob."""
    base = np.clip(120 + rng.normal(0, 6, (H, W, 3)), 0, 255)
    frames = np.repeat(base[None], T, axis=0)
    yy, xx = np.mgrid[0:H, 0:W]
    blob = np.exp(-((yy - H / 2) ** 2 + (xx - W / 2) ** 2) / (2 * (H / 5) ** 2))
    for t in (p for p in press if p < T):
        frames[t] += blob[..., None] * np.array([80.0, 40.0, -40.0])
    if drift_first:
        frames[0] += drift_first  # a brightness change only in the first frame
    return np.clip(frames, 0, 255).astype(np.uint8)


def _ot(ts_first, ts_last, rng, hz=120.0):
    t = np.arange(ts_first, ts_last, 1.0 / hz)
    pos = np.cumsum(rng.normal(0, 1e-3, (len(t), 3)), axis=0) + [0.1, 0.0, 0.8]
    q = rng.normal(0, 1, (len(t), 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return t, np.concatenate([pos, q], axis=1)


def write_episode(path, *, T=40, H=24, W=32, seed=0, gel_left=None, gel_right=None,
                  ot_start=None, empty_ot=(), press=(12, 13, 14), drift_first=0, mutate=None):
    """A raw episode in the recorder layout (1.1), small, with full control of each part."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(T) / FPS
    ot_start = ot_start or {}
    with h5py.File(path, "w") as f:
        f.create_group("metadata").attrs["fps"] = 30
        f.create_dataset("timestamps", data=ts)
        for c in range(3):
            f.create_dataset(f"realsense/cam{c}/color", data=_cam_frames(T, H, W, c, rng),
                             chunks=(1, H, W, 3), **_blosc())
        for side, gel in (("left", gel_left), ("right", gel_right)):
            if gel is None:
                gel = _gel_frames(T, H, W, rng, press=press, drift_first=drift_first)
            f.create_dataset(f"gelsight/{side}/frames", data=gel,
                             chunks=(1,) + gel.shape[1:], **_blosc())
        for body in ("motherboard", "sensor_left", "sensor_right"):
            side = body.removeprefix("sensor_")
            if side in empty_ot:
                t, pose = np.zeros(0), np.zeros((0, 7))
            else:
                t, pose = _ot(ot_start.get(side, ts[0] - 0.05), ts[-1] + 0.05, rng)
            f.create_dataset(f"optitrack/{body}/timestamps", data=t)
            f.create_dataset(f"optitrack/{body}/pose", data=pose)
        if mutate is not None:
            mutate(f)
    return path


def run(tmp_path, h5, **kw):
    out = tmp_path / "out" / (Path(h5).stem + ".pt")
    manifest = index_episode(h5, out, device="cpu", **kw)
    json.dumps(manifest)  # the manifest must be JSON-serialisable
    return manifest, out


def load(out):
    return torch.load(out, weights_only=True)


def np_metrics(frames, ref, tau=8.0):
    d = np.sqrt(((frames.astype(np.float64) - ref.astype(np.float64)) ** 2).sum(axis=1))
    return d.mean(axis=(1, 2)), (d > tau).mean(axis=(1, 2)), (d * (d > tau)).mean(axis=(1, 2))


# --------------------------------------------------------------------------- schema


def test_schema_dtypes_shapes_and_weights_only_load(tmp_path):
    generate_react_dataset(tmp_path / "ds", episodes=1, frames=30, height=32, width=48,
                           with_faults=False)
    h5 = tmp_path / "ds" / "data" / "motherboard" / "2026-06-01" / "episode_000.h5"
    m, out = run(tmp_path, h5)
    assert m["status"] == "indexed" and m["findings"] == []
    assert m["pt"] == str(out) and m["frames"] == 30 and m["kept"] == 30
    assert m["device"] == "cpu" and m["active_sensors"] == ["left", "right"]
    ep = load(out)
    T = 30
    assert set(ep) == {*PER_FRAME_THUMBS, "sensor_left_pose", "sensor_right_pose",
                       "timestamps", *METRICS, "_contact_meta"}
    for k in PER_FRAME_THUMBS:
        assert ep[k].shape == (T, 3, 128, 128) and ep[k].dtype == torch.uint8
    assert torch.equal(ep["view"], ep["view_right"])
    for s in ("left", "right"):
        assert ep[f"sensor_{s}_pose"].shape == (T, 7)
        assert ep[f"sensor_{s}_pose"].dtype == torch.float32
    assert ep["timestamps"].dtype == torch.float64 and ep["timestamps"].shape == (T,)
    for k in METRICS:
        assert ep[k].dtype == torch.float32 and ep[k].shape == (T,)
    meta = ep["_contact_meta"]
    assert set(meta) == META_KEYS
    assert (meta["formula_version"], meta["tau"], meta["rgb_norm"],
            meta["reference_strategy"]) == ("v1", 8.0, "L2", "p01")
    for s in ("left", "right"):
        for k in (f"ref_first_{s}", f"ref_p01_{s}"):
            assert meta[k].shape == (3, 128, 128) and meta[k].dtype == torch.uint8
        assert type(meta[f"ref_p01_idx_{s}"]) is int
        assert type(meta[f"drift_{s}"]) is float
    assert type(meta["drift_warning"]) is bool
    assert meta["trim_offset"] == 0 and meta["trim_reason"] == TRIM_REASON_NONE
    assert meta["pre_trim_n_frames"] == T and meta["active_sensors"] == ["left", "right"]
    assert meta["gelsight_lag_frames"] == 0
    with h5py.File(h5) as f:
        assert np.array_equal(ep["timestamps"].numpy(), f["timestamps"][()])
        # The generator's press frames raise the contact metrics above the quiet frames.
        assert ep["tactile_left_intensity"].max() > 1.0
        assert ep["tactile_left_intensity"].min() == 0.0


def test_thumbnail_recipe_matches_cv2_directly(tmp_path):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    want = cv2.resize(frame[:, 8:56], (128, 128), interpolation=cv2.INTER_AREA)
    assert np.array_equal(thumbnail(frame), want.transpose(2, 0, 1))
    h5 = write_episode(tmp_path / "e.h5", T=12, H=48, W=64)
    m, out = run(tmp_path, h5)
    ep = load(out)
    with h5py.File(h5) as f:
        for key, name in (("view_left", "realsense/cam1/color"),
                          ("view_middle", "realsense/cam2/color"),
                          ("view_right", "realsense/cam0/color"),
                          ("tactile_right", "gelsight/right/frames")):
            for t in (0, 7):
                raw = f[name][t]
                direct = cv2.resize(raw[:, 8:56], (128, 128), interpolation=cv2.INTER_AREA)
                # Channel order as stored: channel 0 of the thumbnail comes from byte 0.
                assert np.array_equal(ep[key][t].numpy(), direct.transpose(2, 0, 1)), key


def test_thumbnails_at_a_real_sensor_size_match_cv2_through_recycled_buffers(tmp_path):
    """240x320 takes the integer kernel (thumbs.exact_plan); slices of 7 frames go through
    the reader's recycled buffers, so a buffer reused too early would show here."""
    h5 = write_episode(tmp_path / "e.h5", T=30, H=240, W=320)
    out = tmp_path / "e.pt"
    assert index_episode(h5, out, device="cpu", chunk_frames=7, workers=2)["status"] == \
        "indexed"
    ep = load(out)
    with h5py.File(h5) as f:
        for key, name in (("view_left", "realsense/cam1/color"),
                          ("view_right", "realsense/cam0/color"),
                          ("tactile_left", "gelsight/left/frames")):
            frames = f[name][()]
            want = np.stack([cv2.resize(fr[:, 40:280], (128, 128),
                                        interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
                             for fr in frames])
            assert np.array_equal(ep[key].numpy(), want), key


def test_slices_recycle_a_bounded_set_of_buffers(tmp_path, monkeypatch):
    from robocurate.react import contact

    handed = []

    class Counting(contact._Buffers):
        def get(self, shape, dtype):
            buf = super().get(shape, dtype)
            handed.append((shape, id(buf)))
            return buf

    monkeypatch.setattr(contact, "_Buffers", Counting)
    h5 = write_episode(tmp_path / "e.h5", T=40, H=48, W=64)
    assert index_episode(h5, tmp_path / "e.pt", device="cpu", chunk_frames=8,
                         workers=2)["status"] == "indexed"
    per_shape: dict = {}
    for shape, ident in handed:
        per_shape.setdefault(shape, set()).add(ident)
    assert len(handed) == 50  # 5 streams x 5 slices, a pair of buffers each
    assert max(len(ids) for ids in per_shape.values()) <= 4  # a pair per running worker


def test_repeated_rows_reuse_the_thumbnail_of_the_row_before():
    """GelSight rows repeat (the sensor is slower than the 30 Hz rows): a repeat reuses the
    previous thumbnail, and the result is the per-frame recipe whatever the slice."""
    rng = np.random.default_rng(4)
    distinct = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    frames = distinct[[0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5]]
    frames[7, 5, 5, 0] ^= 1  # one byte differs: not a repeat
    want = np.stack([thumbnail(f) for f in frames])
    for a, b in ((0, 13), (1, 13), (4, 9), (12, 13)):
        got = np.zeros_like(want[a:b])
        thumbnails_into(frames[a:b], got, repeats=True)
        assert np.array_equal(got, want[a:b]), (a, b)


# --------------------------------------------------------------------------- metrics


def test_metrics_against_numpy_formula():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    ref = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    frames[0] = ref  # identical frame: all zeros
    frames[1] = ref
    frames[1, 0] = np.clip(ref[0].astype(int) + 8, 0, 255)  # d == 8 where not clipped
    got = [x.numpy() for x in contact_scalars(torch.from_numpy(frames), torch.from_numpy(ref))]
    want = np_metrics(frames, ref)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert got[0][0] == 0 and got[1][0] == 0 and got[2][0] == 0
    assert got[1][1] == 0.0  # d == tau is not "above" tau (strict >)
    np.testing.assert_allclose(mean_l2(torch.from_numpy(frames), torch.from_numpy(ref)).numpy(),
                               want[0], rtol=1e-5)


def test_pt_metrics_equal_formula_on_thumbnails_vs_p01(tmp_path):
    h5 = write_episode(tmp_path / "e.h5", T=40, press=(20, 21, 22, 23))
    m, out = run(tmp_path, h5)
    ep = load(out)
    meta = ep["_contact_meta"]
    for s in ("left", "right"):
        ref = meta[f"ref_p01_{s}"].numpy()
        want = np_metrics(ep[f"tactile_{s}"].numpy(), ref)
        for name, w in zip(("intensity", "area", "mixed"), want):
            np.testing.assert_allclose(ep[f"tactile_{s}_{name}"].numpy(), w, rtol=1e-5, atol=1e-6)
        assert ep[f"tactile_{s}_intensity"][21] > 5 * ep[f"tactile_{s}_intensity"][5] + 1


def test_p01_selection_drift_and_reference(tmp_path):
    series = np.r_[np.full(10, 5.0), np.full(40, 1.0), np.full(10, 5.0)]
    idx = pick_p01_reference(series)
    w = 30
    assert idx == int(np.argmin(np.convolve(series, np.ones(w) / w, mode="same")))
    assert 10 <= idx < 50
    short = np.array([4.0, 1.0, 3.0, 0.5, 6.0])  # w = min(30, T) = 5
    assert pick_p01_reference(short) == int(np.argmin(np.convolve(short, np.ones(5) / 5, "same")))
    # Frame 0 of the gel is brighter (calibration drift), then the gel is strongly
    # deformed for 19 frames, then quiet: the smoothed minimum (np.convolve "same" pads
    # with zeros, so the edges are attenuated) lies in the quiet tail, off frame 0.
    T = 50
    gel = np.repeat(np.random.default_rng(5).integers(60, 160, (1, 24, 32, 3)), T, 0)
    gel[0] += 30
    gel[1:20] += 80
    gel = gel.astype(np.uint8)
    h5 = write_episode(tmp_path / "e.h5", T=T, gel_left=gel, gel_right=gel)
    m, out = run(tmp_path, h5)
    ep = load(out)
    meta = ep["_contact_meta"]
    for s in ("left", "right"):
        thumbs = ep[f"tactile_{s}"].numpy()
        ref_first = meta[f"ref_first_{s}"].numpy()
        with h5py.File(h5) as f:
            assert np.array_equal(ref_first, thumbnail(f[f"gelsight/{s}/frames"][0]))
        i_first = np_metrics(thumbs, ref_first)[0]
        want_idx = pick_p01_reference(i_first)
        assert meta[f"ref_p01_idx_{s}"] == want_idx != 0
        assert np.array_equal(meta[f"ref_p01_{s}"].numpy(), thumbs[want_idx])
        drift = np_metrics(ref_first[None], thumbs[want_idx])[0][0]
        assert meta[f"drift_{s}"] == pytest.approx(drift, rel=1e-5)
        assert meta[f"drift_{s}"] > 5.0
        assert ep[f"tactile_{s}_intensity"][want_idx] == 0.0
    assert meta["drift_warning"] is True and m["drift_warning"] is True


# --------------------------------------------------------------------------- alignment


def test_trim_when_ot_starts_late(tmp_path):
    T = 40
    ts = T0 + np.arange(T) / FPS
    h5 = write_episode(tmp_path / "e.h5", T=T, ot_start={"left": ts[7] + 0.001,
                                                         "right": ts[3] - 0.001})
    assert trim_offset_for(ts, [ts[7] + 0.001, ts[3]]) == 8
    m, out = run(tmp_path, h5)
    ep = load(out)
    meta = ep["_contact_meta"]
    assert m["trim_offset"] == meta["trim_offset"] == 8 and m["kept"] == T - 8
    assert meta["trim_reason"] == TRIM_REASON_OT and meta["pre_trim_n_frames"] == T
    assert np.array_equal(ep["timestamps"].numpy(), ts[8:])
    with h5py.File(h5) as f:
        assert np.array_equal(ep["view_right"][0].numpy(), thumbnail(f["realsense/cam0/color"][8]))
        assert np.array_equal(meta["ref_first_left"].numpy(),
                              thumbnail(f["gelsight/left/frames"][0]))  # pre-trim frame 0
        ot_t, ot_p = f["optitrack/sensor_left/timestamps"][()], f["optitrack/sensor_left/pose"][()]
    # Pose alignment: nearest OT sample per kept camera tick, ties to the earlier one.
    for i, t in enumerate(ts[8:]):
        j = int(np.argmin(np.abs(ot_t - t)))
        assert np.array_equal(ep["sensor_left_pose"][i].numpy(), ot_p[j].astype(np.float32))
    # ref_p01_idx is in H5 camera-frame coordinates (pt index + trim_offset).
    i_first = np_metrics(ep["tactile_left"].numpy(), meta["ref_first_left"].numpy())[0]
    assert meta["ref_p01_idx_left"] == pick_p01_reference(i_first) + 8


def test_trimmed_lagged_multi_row_chunks_thumbnail_every_kept_frame(tmp_path):
    """Slices start mid-chunk (trim 8, lag 1) and are read a few whole chunks at a time;
    held GelSight rows reuse thumbnails across those cuts: every kept frame must still
    be the per-frame cv2 recipe."""
    T, H, W = 41, 240, 320
    ts = T0 + np.arange(T) / FPS
    rng = np.random.default_rng(8)
    held = _gel_frames(T, H, W, rng, press=(15, 16, 22))[np.arange(T) // 3 * 3]

    def rechunk(f):
        for name in ("gelsight/left/frames", "realsense/cam2/color"):
            data = f[name][()]
            del f[name]
            f.create_dataset(name, data=data, chunks=(3, H, W, 3), **_blosc())

    h5 = write_episode(tmp_path / "e.h5", T=T, H=H, W=W, gel_left=held, mutate=rechunk,
                       ot_start={"left": ts[7] + 0.001})
    out = tmp_path / "e.pt"
    m = index_episode(h5, out, device="cpu", chunk_frames=7, workers=2, gelsight_lag=1)
    assert m["status"] == "indexed" and m["trim_offset"] == 8
    ep = load(out)
    with h5py.File(h5) as f:
        for key, name, first in (("tactile_left", "gelsight/left/frames", 9),
                                 ("view_middle", "realsense/cam2/color", 8)):
            frames = f[name][first:first + m["kept"]]
            want = np.stack([cv2.resize(fr[:, 40:280], (128, 128),
                                        interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
                             for fr in frames])
            assert np.array_equal(ep[key].numpy(), want), key


def test_inactive_side_gets_zero_poses_and_an_info_finding(tmp_path):
    h5 = write_episode(tmp_path / "e.h5", empty_ot=("right",))
    m, out = run(tmp_path, h5)
    assert m["status"] == "indexed" and m["active_sensors"] == ["left"]
    [fd] = m["findings"]
    assert fd["rule"] == "single_sided_recording" and fd["severity"] == "info"
    assert "single-sided recording" in fd["message"] and fd["item"] == "right"
    ep = load(out)
    assert ep["_contact_meta"]["active_sensors"] == ["left"]
    assert not ep["sensor_right_pose"].any() and ep["sensor_left_pose"].abs().sum() > 0
    # Declared inactive on a both-sided recording: zero poses too.
    h5b = write_episode(tmp_path / "b.h5")
    m, out = run(tmp_path, h5b, active_sensors=["left"])
    assert m["status"] == "indexed" and not load(out)["sensor_right_pose"].any()
    # Declared active without OT data: a failure, not a silent zero pose.
    out = tmp_path / "declared.pt"
    m = index_episode(h5, out, device="cpu", active_sensors=["left", "right"])
    assert m["status"] == "failed" and m["findings"][0]["rule"] == "no_optitrack"
    assert not out.exists()


def test_unsorted_optitrack_stream_is_resorted_with_a_warning(tmp_path):
    def shuffle_left(f):
        t = f["optitrack/sensor_left/timestamps"][()]
        p = f["optitrack/sensor_left/pose"][()]
        order = np.random.default_rng(0).permutation(len(t))
        for k, v in (("timestamps", t[order]), ("pose", p[order])):
            del f[f"optitrack/sensor_left/{k}"]
            f.create_dataset(f"optitrack/sensor_left/{k}", data=v)
    h5s = write_episode(tmp_path / "sorted.h5", seed=4)
    h5u = write_episode(tmp_path / "unsorted.h5", seed=4, mutate=shuffle_left)
    ms, outs = run(tmp_path, h5s)
    mu, outu = run(tmp_path, h5u)
    assert mu["status"] == "indexed"
    assert [(fd["rule"], fd["severity"]) for fd in mu["findings"]] == [
        ("unsorted_timestamps", "warning")]
    assert torch.equal(load(outs)["sensor_left_pose"], load(outu)["sensor_left_pose"])


def test_gelsight_lag_pairs_row_t_plus_n_with_camera_frame_t(tmp_path):
    T, lag = 30, 4
    gel = np.zeros((T, 24, 32, 3), np.uint8)
    gel[:] = (np.arange(T, dtype=np.uint8) * 5)[:, None, None, None]  # row t has value 5t
    h5 = write_episode(tmp_path / "e.h5", T=T, gel_left=gel)
    m, out = run(tmp_path, h5, gelsight_lag=lag)
    ep = load(out)
    meta = ep["_contact_meta"]
    assert m["kept"] == T - lag and meta["gelsight_lag_frames"] == lag
    assert meta["pre_trim_n_frames"] == T and meta["trim_offset"] == 0
    assert ep["tactile_left"].shape[0] == ep["view"].shape[0] == T - lag
    assert (ep["tactile_left"][:, 0, 0, 0].numpy() == 5 * np.arange(lag, T)).all()
    assert (meta["ref_first_left"] == 5 * lag).all()  # tactile frame of camera frame 0
    with h5py.File(h5) as f:
        assert np.array_equal(ep["timestamps"].numpy(), f["timestamps"][: T - lag])
        assert np.array_equal(ep["view_left"][-1].numpy(),
                              thumbnail(f["realsense/cam1/color"][T - lag - 1]))
    m, out = run(tmp_path, h5, gelsight_lag=T)
    assert m["status"] == "failed" and m["findings"][0]["rule"] == "lag_too_large"


# --------------------------------------------------------------------------- bad input


def _corrupt_chunk(path, name="gelsight/left/frames", index=20):
    """Overwrite the compressed bytes of one chunk with zeros (BLOSC cannot decode it)."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
    # filter_mask 0: the chunk really went through BLOSC (incompressible chunks are stored
    # raw, and corrupting those would only change pixel values).
    assert info.filter_mask == 0
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\x00" * info.size)


def _row(x, i, value, cols=slice(None)):
    x = x.copy()
    if x.ndim == 1:
        x[i] = value
    else:
        x[i, cols] = value
    return x


def _set(name, fn):
    def mutate(f):
        data = f[name][()]
        del f[name]
        f.create_dataset(name, data=fn(data))
    return mutate


BAD_CASES = {
    "missing_modality": dict(mutate=lambda f: f.__delitem__("realsense/cam1")),
    "frame_count_mismatch": dict(mutate=_set("timestamps", lambda x: x[:-2])),
    "gelsight_short": dict(gel_right=np.zeros((33, 24, 32, 3), np.uint8)),
    "nan_pose": dict(mutate=_set("optitrack/sensor_left/pose", lambda p: _row(p, 9, np.nan))),
    "zero_norm_quaternion": dict(mutate=_set("optitrack/sensor_right/pose",
                                             lambda p: _row(p, 4, 0.0, cols=slice(3, 7)))),
    "no_optitrack": dict(empty_ot=("left", "right")),
    "no_frames_after_trim": dict(ot_start={"left": T0 + 39 / FPS + 0.01}),
    "malformed_dataset": dict(mutate=_set("optitrack/sensor_left/pose", lambda p: p[:, :6])),
    "bad_timestamps": dict(mutate=_set("timestamps", lambda x: _row(x, 3, np.nan))),
    "read_error": dict(),  # written clean, then one chunk is overwritten
}


@pytest.mark.parametrize("rule", sorted(BAD_CASES))
def test_bad_input_gives_a_finding_and_no_pt(tmp_path, rule):
    kw = dict(BAD_CASES[rule])
    if rule == "read_error":
        h5 = write_episode(tmp_path / "e.h5", gel_left=np.full((40, 24, 32, 3), 120, np.uint8))
        _corrupt_chunk(h5)
    else:
        h5 = write_episode(tmp_path / "e.h5", **kw)
    m, out = run(tmp_path, h5, chunk_frames=8)
    assert m["status"] == "failed" and m["pt"] is None
    rules = [fd["rule"] for fd in m["findings"]]
    assert rule in rules, m["findings"]
    assert all(fd["path"] == str(h5) and fd["message"] for fd in m["findings"])
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no temp/scratch left


def test_unopenable_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    h5 = write_episode(tmp_path / "e.h5")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
    for p in (junk, cut, tmp_path / "absent.h5"):
        m, out = run(tmp_path, p)
        assert m["status"] == "failed" and m["findings"][0]["rule"] == "unreadable_file"
        assert not out.exists()


def test_sample_generator_fault_episodes(tmp_path):
    man = generate_react_dataset(tmp_path / "ds", episodes=0, frames=20, height=16, width=16)
    got = {}
    for e in man["files"]:
        m, _ = run(tmp_path, tmp_path / "ds" / e["path"])
        got[e["case"]] = (m["status"], [fd["rule"] for fd in m["findings"]])
    assert got["truncated"] == ("failed", ["unreadable_file"])
    assert got["frame_count_mismatch"] == ("failed", ["gelsight_short"])
    assert got["missing_modality"] == ("failed", ["missing_modality"])
    assert got["single_sided"] == ("indexed", ["single_sided_recording"])


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        index_episode("x.h5", "x.pt", gelsight_lag=-1)
    with pytest.raises(ValueError):
        index_episode("x.h5", "x.pt", active_sensors=["middle"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"


# --------------------------------------------------------------------------- streaming


def test_chunked_result_identical_to_one_big_chunk(tmp_path):
    h5 = write_episode(tmp_path / "e.h5", T=37, ot_start={"left": T0 + 2.5 / FPS})
    results = []
    for i, kw in enumerate([dict(chunk_frames=1000, workers=1), dict(chunk_frames=1, workers=1),
                            dict(chunk_frames=7, workers=3), dict(chunk_frames=5, spill_bytes=0)]):
        out = tmp_path / f"o{i}" / "e.pt"
        m = index_episode(h5, out, device="cpu", **kw)
        assert m["status"] == "indexed" and m["trim_offset"] == 3
        assert [p.name for p in out.parent.iterdir()] == ["e.pt"]  # scratch files removed
        results.append(load(out))
    base = results[0]
    for other in results[1:]:
        assert set(other) == set(base)
        for k, v in base.items():
            if k == "_contact_meta":
                for mk, mv in v.items():
                    o = other[k][mk]
                    assert torch.equal(mv, o) if torch.is_tensor(mv) else mv == o, mk
            else:
                assert torch.equal(v, other[k]), k


# --------------------------------------------------------------------------- real data


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))  # GelSight is RGB in the H5
    cap.release()
    return np.stack(frames)


@pytest.mark.skipif(not GELSIGHT_VIDEO.is_file(), reason="shared GelSight Mini data absent")
def test_real_gelsight_presses_raise_contact_metrics(tmp_path):
    """video_2.avi (GelSight Mini, 45 frames, 320x240): the gel is untouched for the
    first ~10 frames, pressed from ~13 to ~29, released after (seen frame by frame)."""
    gel = _read_video(GELSIGHT_VIDEO)
    T = len(gel)
    assert T == 45 and gel.shape[1:] == (240, 320, 3)
    h5 = write_episode(tmp_path / "real.h5", T=T, H=24, W=32, gel_left=gel,
                       gel_right=gel[::-1].copy())
    m, out = run(tmp_path, h5, chunk_frames=16)
    assert m["status"] == "indexed", m["findings"]
    ep = load(out)
    for s, press, quiet in (("left", slice(15, 28), slice(0, 9)),
                            ("right", slice(T - 28, T - 15), slice(T - 9, T))):
        for name, factor, floor in (("intensity", 3.0, 8.0), ("area", 3.0, 0.2),
                                    ("mixed", 3.0, 5.0)):
            x = ep[f"tactile_{s}_{name}"].numpy()
            assert x[press].min() > floor, (s, name, x)
            assert x[press].mean() > factor * x[quiet].mean() + 1e-3, (s, name, x)
