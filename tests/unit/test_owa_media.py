"""Screen frames: media_ref resolution, frame choice, forward decoding, missing media."""

from __future__ import annotations

import base64
import io
import pickle
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from robocurate.owa.media import FrameLoader, MediaError, parse_screen, resolve_media_path
from tests.conftest import SHARED_DATA

REPO_DATA = Path(__file__).resolve().parents[1] / "data" / "owa-mcap"


def _source(name: str) -> Path | None:
    """A real sample file: tests/data copy (named as referenced) or the shared one."""
    for cand in (REPO_DATA / name, SHARED_DATA / "owa-mcap" / f"test-{name}"):
        if cand.is_file():
            return cand
    return None


@pytest.fixture
def recording(tmp_path):
    """0.5.1.mcap + 0.5.1.mkv in tmp_path (the video named as the recording refers to it)."""
    mcap, mkv = _source("0.5.1.mcap"), _source("0.5.1.mkv")
    if mcap is None or mkv is None:
        pytest.skip("OWA sample recording 0.5.1 not available")
    shutil.copy(mcap, tmp_path / "0.5.1.mcap")
    shutil.copy(mkv, tmp_path / "0.5.1.mkv")
    return tmp_path / "0.5.1.mcap"


def _screens(mcap: Path) -> list[tuple[int, bytes]]:
    from mcap.reader import make_reader

    with open(mcap, "rb") as f:
        return [(m.log_time, m.data) for _, c, m in make_reader(f).iter_messages(log_time_order=True)
                if c.topic == "screen"]


def _all_frames(mkv: Path) -> dict[int, np.ndarray]:
    import av

    with av.open(str(mkv)) as c:
        s = c.streams.video[0]
        return {int(f.pts * s.time_base * 1_000_000_000): f.to_ndarray(format="rgb24")
                for f in c.decode(s)}


def test_resolve_media_path():
    assert resolve_media_path("a.mkv", "/data/rec/x.mcap") == "/data/rec/a.mkv"
    assert resolve_media_path("/abs/a.mkv", "/data/rec/x.mcap") == "/abs/a.mkv"
    assert resolve_media_path("file:///abs/a%20b.mkv", None) == "/abs/a b.mkv"
    assert resolve_media_path("https://h/a.mkv", "/x.mcap") == "https://h/a.mkv"
    ref = parse_screen(b'{"utc_ns":1,"shape":[4,3],"media_ref":{"uri":"v.mkv","pts_ns":7}}', "/r/e.mcap")
    assert (ref.path, ref.pts_ns, ref.shape) == ("/r/v.mkv", 7, (4, 3))
    legacy = parse_screen({"path": "v.mkv", "pts": 9, "utc_ns": 1}, "/r/e.mcap")
    assert (legacy.path, legacy.pts_ns) == ("/r/v.mkv", 9)
    with pytest.raises(MediaError, match="media_ref"):
        parse_screen(b'{"utc_ns":1}', "/r/e.mcap")


def test_frames_are_the_decoded_frames_at_pts_sequentially_without_reseeking(recording):
    frames = _all_frames(recording.with_suffix(".mkv"))
    loader = FrameLoader()
    screens = _screens(recording)
    assert screens
    for ts, payload in screens:
        pts = orjson.loads(payload)["media_ref"]["pts_ns"]
        arr = loader.load_rgb(payload, recording, ts)
        # the video is stored 1026x1018 (even sizes), the screen was 1025x1017
        assert arr.shape == (1017, 1025, 3)
        assert np.array_equal(arr, frames[pts][:1017, :1025])
    assert loader.seeks == 1  # one initial seek, then forward decoding only


def test_random_access_and_between_frames(recording):
    frames = _all_frames(recording.with_suffix(".mkv"))
    times = sorted(frames)
    loader = FrameLoader()
    uri = {"shape": [1025, 1017], "media_ref": {"uri": "0.5.1.mkv", "pts_ns": 0}}
    for pts in (times[-1], times[2], times[0], times[5], times[1]):  # backwards jumps seek
        uri["media_ref"]["pts_ns"] = pts
        assert np.array_equal(loader.load_rgb(uri, recording), frames[pts][:1017, :1025])
    # a time between two frames shows the earlier one; past the end, the last one
    uri["media_ref"]["pts_ns"] = (times[3] + times[4]) // 2
    assert np.array_equal(loader.load_rgb(uri, recording), frames[times[3]][:1017, :1025])
    uri["media_ref"]["pts_ns"] = times[-1] + 10**9
    assert np.array_equal(loader.load_rgb(uri, recording), frames[times[-1]][:1017, :1025])


def test_missing_video_error_names_mcap_uri_and_time(recording):
    recording.with_suffix(".mkv").unlink()
    payload = _screens(recording)[3]
    with pytest.raises(MediaError) as err:
        FrameLoader().load_rgb(payload[1], recording, payload[0])
    msg = str(err.value)
    assert str(recording) in msg and "0.5.1.mkv" in msg and str(payload[0]) in msg
    assert "pts_ns=" in msg and "not found" in msg
    loader = FrameLoader(placeholder=True)
    black = loader.load_rgb(payload[1], recording, payload[0])
    assert black.shape == (1017, 1025, 3) and not black.any()
    assert len(loader.failures) == 1 and "0.5.1.mkv" in loader.failures[0]


def test_corrupt_video_is_a_media_error(tmp_path):
    (tmp_path / "v.mkv").write_bytes(b"\x1aE\xdf\xa3 not really a matroska file" * 10)
    with pytest.raises(MediaError, match="v.mkv"):
        FrameLoader().load_rgb({"media_ref": {"uri": "v.mkv", "pts_ns": 0}}, tmp_path / "e.mcap")


def test_lru_of_open_containers_and_pickling(recording, tmp_path):
    other = tmp_path / "copy.mkv"
    shutil.copy(recording.with_suffix(".mkv"), other)
    loader = FrameLoader(max_open=1)
    loader.load_rgb({"media_ref": {"uri": "0.5.1.mkv", "pts_ns": 0}}, recording)
    loader.load_rgb({"media_ref": {"uri": "copy.mkv", "pts_ns": 0}}, recording)
    assert list(loader._readers) == [str(other)]
    clone = pickle.loads(pickle.dumps(loader))  # DataLoader workers get a loader without containers
    assert not clone._readers
    assert clone.load_rgb({"media_ref": {"uri": "copy.mkv", "pts_ns": 0}}, recording).shape[2] == 3


def test_data_uri_image():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 20, 30)).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    arr = FrameLoader().load_rgb({"media_ref": {"uri": uri}})
    assert arr.shape == (2, 3, 3) and tuple(arr[0, 0]) == (10, 20, 30)
