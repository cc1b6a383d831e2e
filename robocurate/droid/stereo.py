"""Depth from DROID's side-by-side stereo MP4s without the ZED SDK.

DROID's ``recordings/MP4/{serial}-stereo.mp4`` holds the rectified left view in the left
half and the rectified right view in the right half (2560x720 for HD720). For a rectified
pair a scene point at depth Z appears ``d = fx * B / Z`` pixels further left in the right
view, so ``Z = fx * B / d`` with ``fx`` the rectified left focal length in pixels and ``B``
the baseline in metres (both from the calibration; reference part 2c).

Two matchers, same output convention (disparity in pixels, float32, 0 = no match):

- ``sgbm``: OpenCV StereoSGBM (3-way, multithreaded) on the CPU;
- ``torch``: a block matcher on a cost volume (absolute differences of mean-removed
  intensity, box aggregation, winner-take-all, parabola sub-pixel refinement, uniqueness
  and left-right consistency checks), processed in row bands to bound memory. It is
  what runs on CUDA; on the CPU it is a slow reference.

Depth leaves here as uint16 millimetres with 0 = invalid (no match, failed checks,
nearer than ``min_depth`` or beyond 65.535 m), the format ``depth.mkv`` stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CalibrationError",
    "StereoConfig",
    "StereoDepth",
    "disparity_sgbm",
    "disparity_to_depth_mm",
    "disparity_torch",
    "resolve_device",
    "split_side_by_side",
    "stereo_geometry",
]

MAX_MM = 65535
_REQUIRED = ("fx", "baseline_m")


class CalibrationError(ValueError):
    """A camera's calibration cannot give a focal length and baseline."""


def stereo_geometry(calib: dict) -> tuple[float, float]:
    """(fx in pixels, baseline in metres) from a calibration dict, checked for sanity."""
    if not isinstance(calib, dict):
        raise CalibrationError(f"calibration must be a dict, got {type(calib).__name__}")
    missing = [k for k in _REQUIRED if k not in calib]
    if missing:
        raise CalibrationError(f"calibration lacks {', '.join(missing)}")
    try:
        fx = float(calib["fx"])
        baseline = float(calib["baseline_m"])
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration fx/baseline_m not numbers: {exc}") from None
    if not (math.isfinite(fx) and fx > 0):
        raise CalibrationError(f"fx must be a positive number, got {fx}")
    # ZED 2 ~0.12 m, ZED Mini ~0.063 m. A value in millimetres (e.g. 119.98) is a unit slip.
    if not (math.isfinite(baseline) and 0.005 < baseline < 2.0):
        raise CalibrationError(f"baseline_m {baseline} is not a plausible baseline in metres")
    return fx, baseline


def split_side_by_side(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, 2W[, C]) side-by-side frame -> (left, right) views, each (H, W[, C])."""
    w2 = frame.shape[1]
    if w2 % 2:
        raise ValueError(f"side-by-side frame width {w2} is odd")
    return frame[:, : w2 // 2], frame[:, w2 // 2:]


def disparity_to_depth_mm(disp: np.ndarray, fx: float, baseline_m: float, *,
                          min_depth: float = 0.1, max_depth: float | None = None) -> np.ndarray:
    """Disparity (pixels, <= 0 invalid) -> uint16 millimetres, 0 where invalid or out of range."""
    disp = np.asarray(disp, np.float32)
    valid = disp > 0
    z_mm = np.zeros(disp.shape, np.float64)
    np.divide(fx * baseline_m * 1000.0, disp, out=z_mm, where=valid)
    z_mm = np.rint(z_mm)
    hi = MAX_MM if max_depth is None else min(MAX_MM, max_depth * 1000.0)
    valid &= (z_mm >= min_depth * 1000.0) & (z_mm <= hi)
    return np.where(valid, z_mm, 0).astype(np.uint16)


def _round16(n: float) -> int:
    return int(math.ceil(n / 16.0) * 16)


@dataclass(frozen=True)
class StereoConfig:
    """Matching parameters. ``max_disparity`` None = enough for ``min_depth``, capped at
    ``disparity_cap`` (nearer than fx*B/cap is then not measured)."""

    min_depth: float = 0.1
    max_depth: float | None = None
    max_disparity: int | None = None
    disparity_cap: int = 256
    block_size: int = 5            # SGBM window (odd)
    torch_block: int = 9           # block-matching window (odd), larger: no smoothness term
    uniqueness: int = 10           # percent, both matchers
    downscale: int = 1             # match at 1/downscale resolution (speed), depth at full size

    def num_disparities(self, fx: float, baseline_m: float) -> int:
        if self.max_disparity:
            return max(16, _round16(self.max_disparity / self.downscale))
        need = fx * baseline_m / max(self.min_depth, 1e-3) / self.downscale
        return max(16, min(_round16(need), _round16(self.disparity_cap / self.downscale)))


def _gray(view: np.ndarray) -> np.ndarray:
    if view.ndim == 2:
        return np.ascontiguousarray(view)
    import cv2
    return cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_RGB2GRAY)


def _make_sgbm(num_disp: int, block: int, uniqueness: int):
    import cv2
    cn = 1
    return cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num_disp, blockSize=block,
        P1=8 * cn * block * block, P2=32 * cn * block * block,
        disp12MaxDiff=1, preFilterCap=63, uniquenessRatio=uniqueness,
        speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)


def disparity_sgbm(left: np.ndarray, right: np.ndarray, *, num_disparities: int, block_size: int = 5,
                   uniqueness: int = 10, matcher=None) -> np.ndarray:
    """OpenCV SGBM disparity in pixels (float32), 0 where there is no valid match."""
    sgbm = matcher or _make_sgbm(num_disparities, block_size, uniqueness)
    raw = sgbm.compute(_gray(left), _gray(right))  # int16, disparity * 16, invalid < 0
    disp = raw.astype(np.float32) / 16.0
    disp[raw <= 0] = 0.0
    return disp


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'. Other values pass through."""
    if device != "auto":
        return device
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def disparity_torch(left: np.ndarray, right: np.ndarray, *, max_disparity: int, block: int = 9,
                    uniqueness: int = 10, lr_max_diff: float = 1.0, device: str = "cpu",
                    band_elements: int = 48_000_000) -> np.ndarray:
    """Cost-volume block matching in torch; disparity in pixels (float32), 0 = invalid."""
    import torch
    import torch.nn.functional as F

    if block % 2 == 0:
        raise ValueError("block must be odd")
    with torch.no_grad():
        lt = _prefilter(torch.as_tensor(_gray(left), device=device).float(), F)
        rt = _prefilter(torch.as_tensor(_gray(right), device=device).float(), F)
        h, w = lt.shape
        d = int(min(max_disparity, w - 1))
        r = block // 2
        out = torch.zeros((h, w), dtype=torch.float32, device=device)
        band = max(8, int(band_elements // max(1, w * d)))
        for y0 in range(0, h, band):
            y1 = min(h, y0 + band)
            a, b = max(0, y0 - r), min(h, y1 + r)
            disp = _match_band(lt[a:b], rt[a:b], d, block, uniqueness / 100.0, lr_max_diff, F, torch)
            out[y0:y1] = disp[y0 - a: y1 - a]
        return out.cpu().numpy()


def _prefilter(img, F):
    # Remove the local mean and clip, like OpenCV's prefilter: a brightness or gain
    # difference between the two cameras then no longer shifts the matching cost.
    mean = F.avg_pool2d(img[None, None], 9, stride=1, padding=4, count_include_pad=False)[0, 0]
    return (img - mean).clamp(-40, 40)


def _match_band(lt, rt, d, block, uniq, lr_max_diff, F, torch):
    h, w = lt.shape
    r = block // 2
    cost = torch.empty((d, h, w), dtype=torch.float32, device=lt.device)
    cost[0] = (lt - rt).abs()
    for k in range(1, d):
        cost[k, :, k:] = (lt[:, k:] - rt[:, : w - k]).abs()
        cost[k, :, :k] = 80.0  # no partner pixel: worst possible per-pixel cost
    agg = F.avg_pool2d(cost[None], block, stride=1, padding=r, count_include_pad=False)[0]
    del cost
    xs = torch.arange(w, device=lt.device)
    ds = torch.arange(d, device=lt.device)
    agg.masked_fill_((ds[:, None] > xs[None, :])[:, None, :], float("inf"))

    best_c, best_d = agg.min(0)
    # Parabola through the costs at best-1, best, best+1 (sub-pixel).
    dm = (best_d - 1).clamp(min=0)
    dp = (best_d + 1).clamp(max=d - 1)
    cm = agg.gather(0, dm[None])[0]
    cp = agg.gather(0, dp[None])[0]
    denom = cm - 2 * best_c + cp
    inner = (best_d > 0) & (best_d < d - 1) & torch.isfinite(cm) & torch.isfinite(cp) & (denom > 1e-6)
    offset = torch.where(inner, (cm - cp) / (2 * denom.clamp(min=1e-6)), torch.zeros_like(best_c))
    disp = best_d.float() + offset.clamp(-0.5, 0.5)

    # Uniqueness: the best cost must beat every cost outside best +-1 by the margin.
    idx = torch.stack([dm, best_d, dp])
    masked = agg.scatter(0, idx, float("inf"))
    second = masked.min(0).values
    valid = torch.isfinite(best_c) & (best_c <= second * (1.0 - uniq))

    # Left-right check: the right view's best disparity at the matched pixel must agree.
    agg_r = torch.full_like(agg, float("inf"))
    for k in range(d):
        agg_r[k, :, : w - k] = agg[k, :, k:]
    best_r = agg_r.argmin(0)
    xr = (xs[None, :] - best_d).clamp(min=0)
    back = best_r.gather(1, xr)
    valid &= (back - best_d).abs() <= lr_max_diff
    return torch.where(valid & (disp > 0), disp, torch.zeros_like(disp))


class StereoDepth:
    """Depth (uint16 mm) for a stream of side-by-side frames of one camera.

    ``method`` 'sgbm' (CPU, OpenCV) or 'torch' (``device`` 'cuda'/'cpu'). The SGBM matcher
    is built once and reused across frames.
    """

    def __init__(self, calib: dict, *, method: str = "sgbm", device: str = "cpu",
                 config: StereoConfig | None = None):
        self.fx, self.baseline_m = stereo_geometry(calib)
        self.config = config or StereoConfig()
        if method not in ("sgbm", "torch"):
            raise ValueError(f"unknown stereo method {method!r}")
        self.method = method
        self.device = device
        c = self.config
        self.num_disparities = c.num_disparities(self.fx, self.baseline_m)
        self._sgbm = (_make_sgbm(self.num_disparities, c.block_size, c.uniqueness)
                      if method == "sgbm" else None)

    @property
    def min_measurable_depth_m(self) -> float:
        """Nearer than this the disparity search range cannot reach."""
        return self.fx * self.baseline_m / (self.num_disparities * self.config.downscale)

    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        f = self.config.downscale
        if f > 1:
            import cv2
            h, w = left.shape[:2]
            small = (w // f, h // f)
            left_s = cv2.resize(_gray(left), small, interpolation=cv2.INTER_AREA)
            right_s = cv2.resize(_gray(right), small, interpolation=cv2.INTER_AREA)
            disp = self._disparity(left_s, right_s) * f
            return cv2.resize(disp, (w, h), interpolation=cv2.INTER_NEAREST)
        return self._disparity(left, right)

    def _disparity(self, left, right):
        if self.method == "sgbm":
            return disparity_sgbm(left, right, num_disparities=self.num_disparities, matcher=self._sgbm)
        c = self.config
        return disparity_torch(left, right, max_disparity=self.num_disparities, block=c.torch_block,
                               uniqueness=c.uniqueness, device=self.device)

    def depth_mm(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        disp = self.disparity(left, right)
        return disparity_to_depth_mm(disp, self.fx, self.baseline_m,
                                     min_depth=self.config.min_depth, max_depth=self.config.max_depth)

    def frame_depth_mm(self, sbs: np.ndarray) -> np.ndarray:
        left, right = split_side_by_side(sbs)
        return self.depth_mm(left, right)
