"""The integer area kernel behind React thumbnails is bit-exact with cv2's INTER_AREA."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from robocurate.react.thumbs import centre_crop, exact_plan, thumbnail, thumbnails_into


def cv2_thumbs(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(centre_crop(f), (128, 128), interpolation=cv2.INTER_AREA)
                     .transpose(2, 0, 1) for f in frames])


def smooth(rng, n, h, w):
    """Natural-looking frames: low-frequency fields, flat areas, hard edges."""
    small = rng.integers(0, 256, (n, h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    big = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_CUBIC) for s in small])
    big[:, h // 3:h // 2, :] = 255
    big[:, :, w // 4:w // 4 + 7] = 0
    return big


@pytest.mark.parametrize("h,w", [(480, 640), (240, 320), (640, 480), (128, 128),
                                 (384, 512), (160, 200), (224, 224)])
def test_integer_kernel_equals_cv2(h, w):
    assert exact_plan(h, w) is not None
    rng = np.random.default_rng(h * 7 + w)
    frames = np.concatenate([rng.integers(0, 256, (24, h, w, 3), dtype=np.uint8),
                             smooth(rng, 8, h, w),
                             np.zeros((1, h, w, 3), np.uint8),
                             np.full((1, h, w, 3), 255, np.uint8),
                             (np.indices((h, w)).sum(0) % 2 * 255).astype(np.uint8)
                             [None, :, :, None].repeat(3, axis=3)])
    got = np.empty((len(frames), 3, 128, 128), np.uint8)
    thumbnails_into(frames, got)
    assert np.array_equal(got, cv2_thumbs(frames))


@pytest.mark.parametrize("h,w", [(720, 1280), (256, 256), (200, 300), (48, 64), (100, 90)])
def test_sizes_without_an_exact_integer_form_use_cv2(h, w):
    # 720: q = 45 (halfway margin too small); 256: q = 2 (ties); 200: q = 25; <128: upscale
    assert exact_plan(h, w) is None
    frames = np.random.default_rng(1).integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    got = np.empty((3, 3, 128, 128), np.uint8)
    thumbnails_into(frames, got)
    assert np.array_equal(got, cv2_thumbs(frames))


def test_plan_weights_cover_each_cell_exactly():
    for s in (480, 240, 384, 160, 224, 128):
        plan = exact_plan(s, s + 10)
        assert plan.count.max() <= plan.weight.shape[1]
        for o in range(128):
            taps = plan.weight[o, :plan.count[o]]
            assert taps.min() > 0 and taps.sum() == plan.q, (s, o)
        assert (plan.phase.sum(axis=1) == plan.q).all()
        assert plan.start[-1] + plan.count[-1] == s


def test_strided_input_and_slices_with_repeats():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (5, 240, 320, 3), dtype=np.uint8)
    frames = base[[0, 0, 1, 2, 2, 2, 3, 4, 4]].copy()
    frames[5, 120, 160, 1] ^= 1          # inside the crop: not a repeat
    frames[8, 3, 2, 0] ^= 1              # outside the crop: same thumbnail either way
    want = cv2_thumbs(frames)
    for a, b in ((0, 9), (0, 2), (2, 9), (5, 6)):  # any slice: a repeat needs its own run
        got = np.zeros_like(want[a:b])
        thumbnails_into(frames[a:b], got, repeats=True)
        assert np.array_equal(got, want[a:b]), (a, b)
    strided = np.ascontiguousarray(frames.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    got = np.zeros_like(want)
    thumbnails_into(strided, got)
    assert np.array_equal(got, want)
    assert np.array_equal(thumbnail(frames[2]), want[2])


@pytest.mark.parametrize("size", [(48, 64), (240, 320)])  # cv2 path, integer kernel
def test_repeats_carry_across_pieces_through_previous(size):
    """A stream thumbnailed a few frames at a time (contact indexing) keeps the repeat
    test across the cuts: ``previous`` is the frame before the piece and its thumbnail."""
    rng = np.random.default_rng(5)
    distinct = rng.integers(0, 256, (4, *size, 3), dtype=np.uint8)
    frames = distinct[[0, 0, 1, 1, 1, 2, 3, 3]]
    want = np.stack([thumbnail(f) for f in frames])
    got = np.zeros_like(want)
    previous = None
    for a, b in ((0, 1), (1, 3), (3, 4), (4, 7), (7, 8)):
        thumbnails_into(frames[a:b], got[a:b], repeats=True, previous=previous)
        previous = (frames[b - 1], got[b - 1])
    assert np.array_equal(got, want)
    # The repeat is taken from ``previous``, not recomputed: a marked thumbnail shows it.
    marked = np.full((3, 128, 128), 7, np.uint8)
    out = np.zeros((2, 3, 128, 128), np.uint8)
    thumbnails_into(frames[3:5], out, repeats=True, previous=(frames[2], marked))
    assert (out == 7).all()


def test_memory_mapped_output(tmp_path):
    frames = np.random.default_rng(6).integers(0, 256, (4, 480, 640, 3), dtype=np.uint8)
    out = np.lib.format.open_memmap(tmp_path / "t.npy", mode="w+", dtype=np.uint8,
                                    shape=(4, 3, 128, 128))
    thumbnails_into(frames, out)
    out.flush()
    assert np.array_equal(np.load(tmp_path / "t.npy"), cv2_thumbs(frames))


def test_output_shape_and_dtype_are_checked():
    frames = np.zeros((2, 480, 640, 3), np.uint8)
    with pytest.raises(ValueError, match="expected uint8"):
        thumbnails_into(frames, np.empty((2, 3, 128, 128), np.float32))
    with pytest.raises(ValueError, match="expected uint8"):
        thumbnails_into(frames, np.empty((3, 3, 128, 128), np.uint8))


def test_kernel_compiles_where_numba_cannot_cache(monkeypatch):
    import numba

    from robocurate.react import thumbs

    real = numba.njit

    def njit(**kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(**kw)

    monkeypatch.setattr(thumbs.numba, "njit", njit)

    def add_one(x):
        return x + 1

    assert thumbs._compiled(add_one)(41) == 42
