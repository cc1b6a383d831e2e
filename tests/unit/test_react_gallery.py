"""React gallery GIF: frame sampling, shared palette, colour order, the 4 MB cap."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from robocurate.react.calibration import write_sample_calibration
from robocurate.react.gallery import (GALLERY_MAX_BYTES, encode_gif, gallery_indices,
                                      gallery_path, write_gallery)
from robocurate.samples.react import REALSENSE_SERIALS, generate_react_dataset

H, W = 48, 64


def write_solid_episode(path: Path, T: int, cams: dict, gels: dict) -> Path:
    """Raw episode with solid-colour streams (cams BGR, GelSight RGB) and moving poses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_group("metadata").attrs["realsense_serials"] = list(REALSENSE_SERIALS)
        f["timestamps"] = 1000.0 + np.arange(T) / 30.0
        for c, col in cams.items():
            f[f"realsense/cam{c}/color"] = np.broadcast_to(np.array(col, np.uint8), (T, H, W, 3))
        for side, col in gels.items():
            f[f"gelsight/{side}/frames"] = np.broadcast_to(np.array(col, np.uint8), (T, H, W, 3))
        ot_t = 999.9 + np.arange(4 * T + 40) / 120.0
        for body in ("motherboard", "sensor_left", "sensor_right"):
            pose = np.tile([0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 1.0], (len(ot_t), 1))
            pose[:, 0] += np.arange(len(ot_t)) * 1e-4
            f[f"optitrack/{body}/timestamps"] = ot_t
            f[f"optitrack/{body}/pose"] = pose
    return path


def gif_frames_rgb(path_or_bytes) -> list[np.ndarray]:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")))
        return out


def test_gallery_indices_span_2_to_98_percent():
    idx = gallery_indices(1000)
    assert len(idx) == 60
    assert idx[0] == round(0.02 * 999) and idx[-1] == round(0.98 * 999)
    assert (np.diff(idx) > 0).all()
    assert len(gallery_indices(10)) == 60 and gallery_indices(10).max() <= 9
    assert len(gallery_indices(0)) == 0


def test_gallery_gif_colour_order_and_default_path(tmp_path):
    # cam1 (left tile) BGR (255, 0, 0) is blue; GelSight left RGB (255, 0, 0) is red.
    cams = {0: (0, 255, 0), 1: (255, 0, 0), 2: (0, 0, 255)}
    gels = {"left": (255, 0, 0), "right": (0, 0, 255)}
    h5 = write_solid_episode(tmp_path / "data" / "motherboard" / "2026-06-01" / "episode_007.h5",
                             T=90, cams=cams, gels=gels)
    res = write_gallery(h5, projection=False,
                        ref_frames={s: np.full((H, W, 3), c, np.uint8) for s, c in gels.items()})
    assert res["ok"], res["findings"]
    out = gallery_path(tmp_path, "motherboard", "2026-06-01", "episode_007")
    assert Path(res["output"]) == out and out.is_file()
    assert out.stat().st_size == res["bytes"] <= GALLERY_MAX_BYTES
    assert res["frames"] == 60 and res["colors"] == 256 and res["size"] == [1280, 480]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    fr = gif_frames_rgb(out)[10].astype(int)
    assert fr.shape == (480, 1280, 3)
    assert np.abs(fr[120, 160] - (0, 0, 255)).max() <= 8   # left = cam1: blue
    assert np.abs(fr[120, 480] - (255, 0, 0)).max() <= 8   # middle = cam2: red
    assert np.abs(fr[360, 120] - (255, 0, 0)).max() <= 8   # GelSight L raw: RGB red stays red
    assert np.abs(fr[360, 600] - (0, 0, 255)).max() <= 8   # GelSight R raw: blue


def test_gallery_on_sample_episodes_with_overlay(tmp_path):
    generate_react_dataset(tmp_path, episodes=1, frames=40, height=48, width=64)
    write_sample_calibration(tmp_path)
    d = tmp_path / "data" / "motherboard" / "2026-06-01"
    good = write_gallery(d / "episode_000.h5")
    assert good["ok"] and good["projection"] and good["reference"] == "h5:frame0"
    assert Path(good["output"]).is_file()
    bad = write_gallery(d / "episode_001.h5")  # truncated
    assert not bad["ok"] and bad["output"] is None
    assert [f["rule"] for f in bad["findings"]] == ["unreadable_file"]
    assert not gallery_path(tmp_path, "motherboard", "2026-06-01", "episode_001").exists()
    # Not in a dataset layout and no out_gif: a finding, not a crash.
    lone = write_gallery(tmp_path / "episode_x.h5")
    assert not lone["ok"] and lone["findings"][0]["rule"] == "no_output_path"


def gif_colour_tables(data: bytes) -> tuple[int, int, int]:
    """(global table size, number of images, number of local colour tables) of a GIF."""
    flags = data[10]
    n_global = 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
    i, n_img, n_local = 13 + 3 * n_global, 0, 0
    while i < len(data) and data[i] != 0x3B:
        if data[i] == 0x21:                      # extension: label, then sub-blocks
            i += 2
        else:                                    # 0x2C image descriptor (+ local table), LZW size
            assert data[i] == 0x2C
            n_img += 1
            f = data[i + 9]
            i += 10
            if f & 0x80:
                n_local += 1
                i += 3 * 2 ** ((f & 7) + 1)
            i += 1
        while data[i]:
            i += data[i] + 1
        i += 1
    return n_global, n_img, n_local


def test_one_shared_palette_no_per_frame_palettes():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    frames = [np.roll(base, k, axis=1) for k in range(20)]
    data, info = encode_gif(frames, max_bytes=10**8)
    assert info["colors"] == 256
    assert gif_colour_tables(data) == (256, 20, 0)
    decoded = gif_frames_rgb(data)
    # Mapped to the nearest of 256 shared colours without dithering: close to the source.
    assert np.abs(decoded[7].astype(int) - frames[7]).mean() < 20


def test_size_cap_noise_overflowing_4mb_shrinks_then_palette_never_below_128():
    # 60 full-size panels of random noise: ~50 MB as a GIF, far over the 4 MB cap.
    # (Shifted windows of one noise image: every frame differs everywhere, cheap to make.)
    noise = np.random.default_rng(0).integers(0, 256, (480, 1280 + 60, 3), dtype=np.uint8)
    frames = [np.ascontiguousarray(noise[:, k:k + 1280]) for k in range(60)]
    data, info = encode_gif(frames)
    assert data is not None and len(data) <= 4 * 1024 * 1024
    # The probe (every 8th frame, full size, 256 colours) estimates a clear overflow...
    probe, att = info["attempts"][0], info["attempts"][1:]
    assert probe[:2] == [1.0, 256] and -probe[2] > 4 * 1024 * 1024
    # ...so spatial resolution shrinks first (palette still 256), down to half size...
    assert att[0][0] < 1.0 and att[0][1] == 256 and att[0][2] > 4 * 1024 * 1024
    first_palette_step = next(i for i, a in enumerate(att) if a[1] < 256)
    assert att[first_palette_step - 1][0] == 0.5
    # ...then the palette in steps of 32, never below 128.
    colours = [a[1] for a in att]
    assert colours[first_palette_step:first_palette_step + 4] == [224, 192, 160, 128]
    assert min(colours) == 128 and info["colors"] == 128
    n_global, n_img, n_local = gif_colour_tables(data)
    assert (n_global, n_img, n_local) == (128, 60, 0)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 60
        assert im.size == tuple(info["size"]) and im.size[0] < 1280


def test_size_cap_unreachable_writes_nothing(tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (120, 320, 3), dtype=np.uint8) for _ in range(10)]
    data, info = encode_gif(frames, max_bytes=2000)
    assert data is None
    assert min(a[1] for a in info["attempts"]) == 128
    generate_react_dataset(tmp_path, episodes=1, frames=20, height=32, width=40,
                           with_faults=False)
    h5 = next((tmp_path / "data").rglob("episode_000.h5"))
    res = write_gallery(h5, tmp_path / "g" / "e.gif", projection=False, max_bytes=2000,
                        n_frames=6)
    assert not res["ok"] and res["output"] is None
    assert [f["rule"] for f in res["findings"]] == ["gif_over_cap"]
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())
