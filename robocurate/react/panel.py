"""The 1280x480 BGR preview panel and its sensor projection overlay (reference 1.6).

Layout (x ranges in pixels)::

    row 1, y 0..240   | cam1 "left" 0..320 | cam2 "middle" 320..640 | cam0 "right" 640..960 | OptiTrack 960..1280 |
    row 2, y 240..480 | L raw 0..240 | L diff 240..480 | R raw 480..720 | R diff 720..960 | blank (legend, status) 960..1280 |

Camera thumbnails are resized with ``INTER_NEAREST``; a camera the overlay covers is
instead drawn on a 2x canvas (the native 640x480 frame itself for real recordings) and
brought down with ``INTER_AREA``, which anti-aliases the dots and axes.

Channel order (seed, "Channel-order gotcha"): RealSense frames are BGR in the file and
go in as they are; GelSight frames are RGB in the file and are converted to BGR exactly
once, after they are shrunk to their 240x240 tile (cheaper than converting the full
frame). The panel is BGR; only a PIL/GIF consumer converts it, once, at the very end.

GelSight tiles are the centre square of the frame (the same crop as the ``.pt``
thumbnails, reference 1.2) resized to 240x240; the difference tile is
``clip(frame - ref + 128, 0, 255)`` computed on the tiles.

Pure library: no Prefect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from robocurate.react.calibration import Calibration, CameraCalibration, pose7_to_T, project_mm
from robocurate.react.layout import CAMERA_SIDE, DISPLAY_ORDER, OT_BODIES, SIDES

__all__ = [
    "AXIS_COLORS",
    "BODY_COLORS",
    "CAM_TILE",
    "FROZEN_COLOR",
    "GEL_TILE",
    "GREY",
    "PANEL_SIZE",
    "PanelRenderer",
    "ProjectionOverlay",
    "SIDE_COLORS",
    "cam_tile_origin",
    "gel_tile",
    "gel_tile_origin",
]

PANEL_SIZE = (1280, 480)  # (w, h)
CAM_TILE = (320, 240)
GEL_TILE = 240
GREY = 128
AXIS_TIP_MM = 120.0
SUPERSAMPLE = 2

# BGR. OptiTrack body colours as the reference gives them.
BODY_COLORS = {"motherboard": (255, 200, 0), "sensor_left": (0, 255, 120),
               "sensor_right": (0, 180, 255)}
# Wong (2011) colour-blind-safe palette, BGR: sensor dots orange / blue, axes
# vermillion / bluish green / sky blue for x / y / z.
SIDE_COLORS = {"left": (0, 159, 230), "right": (178, 114, 0)}
AXIS_COLORS = ((0, 94, 213), (115, 158, 0), (233, 180, 86))
FROZEN_COLOR = (0, 0, 255)
TEXT_COLOR = (235, 235, 235)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_H = 18
_DOT_R = 4      # effective radius in tile pixels
_RING_R = 6     # reference: "red FROZEN ring (r=6 effective)"
_SHIFT = 4      # cv2 fixed-point bits for sub-pixel drawing
_COORD_LIMIT = 1.0e4  # keeps far-off projections from overflowing fixed point


def cam_tile_origin(slot: int) -> tuple[int, int]:
    """(x, y) of display slot 0/1/2 (left/middle/right)."""
    return slot * CAM_TILE[0], 0


def gel_tile_origin(side: str, diff: bool) -> tuple[int, int]:
    k = SIDES.index(side) * 2 + int(diff)
    return k * GEL_TILE, CAM_TILE[1]


def gel_tile(frame_rgb: np.ndarray) -> np.ndarray:
    """GelSight frame (H, W, 3) RGB -> 240x240 BGR tile (centre square, INTER_AREA)."""
    h, w = frame_rgb.shape[:2]
    if w > h:
        c = (w - h) // 2
        sq = frame_rgb[:, c:c + h]
    else:
        c = (h - w) // 2
        sq = frame_rgb[c:c + w, :]
    tile = cv2.resize(sq, (GEL_TILE, GEL_TILE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)  # the one RGB -> BGR conversion


def _text(img, s, org, color=TEXT_COLOR, scale=0.42, thick=1) -> None:
    cv2.putText(img, s, org, _FONT, scale, color, thick, cv2.LINE_AA)


class ProjectionOverlay:
    """Draws each sensor's gel centre, its rigid-body axes and a FROZEN ring.

    ``serials[i]`` is the serial of H5 camera ``i`` (``metadata.realsense_serials``);
    a camera without calibration is simply not overlaid.
    """

    def __init__(self, calibration: Calibration, serials: Sequence[str]):
        self.calibration = calibration
        self.cams: dict[int, CameraCalibration] = {}
        for i, serial in enumerate(serials):
            cam = calibration.cameras.get(str(serial))
            if cam is not None:
                self.cams[i] = cam
        self.gel = {side: np.append(np.asarray(v, float), 1.0)
                    for side, v in calibration.gel_center_in_rigid_mm.items()}

    def covers(self, cam_index: int) -> bool:
        return cam_index in self.cams

    def sensor_points(self, poses: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """side -> (4, 3) mocap mm: gel centre, then x/y/z axis tips 120 mm away."""
        out = {}
        for side in SIDES:
            pose = poses.get(f"sensor_{side}")
            T = pose7_to_T(pose) if pose is not None else None
            if T is None or side not in self.gel:
                continue
            c = (T @ self.gel[side])[:3]
            out[side] = np.vstack([c, c + T[:3, :3].T * AXIS_TIP_MM])
        return out

    def project(self, cam_index: int, points: dict[str, np.ndarray],
                size: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        cam = self.cams[cam_index]
        return {side: project_mm(cam, pts, size) for side, pts in points.items()}

    def draw(self, canvas: np.ndarray, cam_index: int, points: dict[str, np.ndarray],
             marks: Mapping[str, str], scale: float) -> None:
        """Draw on ``canvas`` (BGR); ``scale`` = canvas pixels per final tile pixel;
        ``marks``: side -> label of a red ring (``FROZEN``, or the event kind of a clip)."""
        h, w = canvas.shape[:2]
        one = 1 << _SHIFT
        for side, (uv, front) in self.project(cam_index, points, (w, h)).items():
            if not front[0]:
                continue
            fp = np.clip(uv, -_COORD_LIMIT, _COORD_LIMIT) * one
            c = (int(round(fp[0, 0])), int(round(fp[0, 1])))
            for k in range(3):
                if front[k + 1]:
                    tip = (int(round(fp[k + 1, 0])), int(round(fp[k + 1, 1])))
                    cv2.line(canvas, c, tip, AXIS_COLORS[k], max(1, round(scale)),
                             cv2.LINE_AA, _SHIFT)
            cv2.circle(canvas, c, int(round(_DOT_R * scale * one)), SIDE_COLORS[side], -1,
                       cv2.LINE_AA, _SHIFT)
            cv2.circle(canvas, c, int(round(_DOT_R * scale * one)), (0, 0, 0),
                       max(1, round(scale / 2)), cv2.LINE_AA, _SHIFT)
            if side in marks:
                cv2.circle(canvas, c, int(round(_RING_R * scale * one)), FROZEN_COLOR,
                           max(1, round(scale)), cv2.LINE_AA, _SHIFT)
                x, y = int(uv[0, 0] + _RING_R * scale + 2), int(uv[0, 1] - _RING_R * scale)
                if -1000 < x < w and -1000 < y < h + 1000:
                    _text(canvas, marks[side], (x, y), FROZEN_COLOR, 0.4 * scale,
                          max(1, round(scale)))


class PanelRenderer:
    """Composes panels for one episode; static parts (labels, legend) are drawn once.

    ``refs_rgb``: side -> GelSight reference frame (RGB, any size; None = no diff tile).
    """

    def __init__(self, *, overlay: ProjectionOverlay | None = None,
                 refs_rgb: Mapping[str, np.ndarray | None] | None = None,
                 title: str = ""):
        self.overlay = overlay
        # diff = clip(tile - ref + 128) as two saturating uint8 ops: with off = 128 - ref,
        # add max(off, 0) then subtract max(-off, 0); at most one is non-zero per pixel,
        # so the result equals the clipped int16 expression (4x faster than numpy int16).
        self.ref_tiles: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for side, ref in (refs_rgb or {}).items():
            if ref is not None:
                off = 128 - gel_tile(np.asarray(ref)).astype(np.int16)
                self.ref_tiles[side] = (np.clip(off, 0, 255).astype(np.uint8)[_LABEL_H:],
                                        np.clip(-off, 0, 255).astype(np.uint8)[_LABEL_H:])
        self.template = self._template(title)
        self._label_rows = self.template[:_LABEL_H]

    # ------------------------------------------------------------------ static parts

    def _template(self, title: str) -> np.ndarray:
        W, H = PANEL_SIZE
        t = np.zeros((H, W, 3), np.uint8)
        for slot, cam in enumerate(DISPLAY_ORDER):
            x, _ = cam_tile_origin(slot)
            _text(t, f"{CAMERA_SIDE[cam]} (cam{cam})", (x + 5, 13))
        for side in SIDES:
            for diff in (False, True):
                x, y = gel_tile_origin(side, diff)
                _text(t, f"{side[0].upper()} {'diff' if diff else 'raw'}", (x + 5, y + 13))
        x0 = 4 * GEL_TILE
        _text(t, title[:40], (x0 + 8, CAM_TILE[1] + 22))
        for k, side in enumerate(SIDES):
            y = CAM_TILE[1] + 50 + 22 * k
            cv2.circle(t, (x0 + 16, y - 4), 5, SIDE_COLORS[side], -1, cv2.LINE_AA)
            _text(t, f"sensor_{side} gel centre", (x0 + 28, y))
        y = CAM_TILE[1] + 50 + 44
        cv2.circle(t, (x0 + 16, y - 4), _RING_R, FROZEN_COLOR, 1, cv2.LINE_AA)
        _text(t, "frozen pose (OT loss)", (x0 + 28, y))
        for k, name in enumerate("xyz"):
            xx = x0 + 10 + 40 * k
            cv2.line(t, (xx, y + 22), (xx + 14, y + 22), AXIS_COLORS[k], 2, cv2.LINE_AA)
            _text(t, name, (xx + 17, y + 26))
        return t

    # ------------------------------------------------------------------ per frame

    def render(self, cams: Sequence[np.ndarray | None], gels: Mapping[str, np.ndarray | None],
               poses: Mapping[str, np.ndarray | None], *,
               marks: Mapping[str, str] | None = None, status: str = "",
               scratch: bool = False) -> np.ndarray:
        """One 480x1280x3 BGR panel.

        ``cams``: H5 camera index -> BGR frame (None = grey tile); ``gels``: side -> RGB
        frame (None = grey tiles); ``poses``: body -> pose7 (None = "no data");
        ``marks``: side -> label (``FROZEN``, or an event kind in clips): the sensor is
        circled in red in every camera tile, its GelSight tiles framed in red and its
        OptiTrack line labelled. ``scratch=True``: the camera frames are the caller's
        throw-away buffers and the overlay may draw on them in place (saves a copy of each
        640x480 frame; the streamed readers pass it).
        """
        marks = dict(marks or {})
        panel = self.template.copy()
        cw, ch = CAM_TILE
        points = (self.overlay.sensor_points(poses) if self.overlay is not None else {})
        for slot, cam in enumerate(DISPLAY_ORDER):
            x, y = cam_tile_origin(slot)
            panel[y + _LABEL_H:y + ch, x:x + cw] = self._cam_tile(cam, cams[cam], points,
                                                                  marks, scratch)[_LABEL_H:]
        for side in SIDES:
            raw = gels.get(side)
            xr, yr = gel_tile_origin(side, False)
            xd, yd = gel_tile_origin(side, True)
            rows = slice(yr + _LABEL_H, yr + GEL_TILE)
            if raw is None:
                panel[rows, xr:xr + GEL_TILE] = GREY
                panel[rows, xd:xd + GEL_TILE] = GREY
            else:
                tile = gel_tile(raw)
                panel[rows, xr:xr + GEL_TILE] = tile[_LABEL_H:]
                ref = self.ref_tiles.get(side)
                if ref is None:
                    panel[rows, xd:xd + GEL_TILE] = GREY
                else:
                    panel[rows, xd:xd + GEL_TILE] = cv2.subtract(
                        cv2.add(tile[_LABEL_H:], ref[0]), ref[1])
            if side in marks:
                cv2.rectangle(panel, (xr + 1, yr + 1), (xd + GEL_TILE - 2, yr + GEL_TILE - 2),
                              FROZEN_COLOR, 3)
                _text(panel, marks[side], (xd + GEL_TILE - 80, yr + 13), FROZEN_COLOR, 0.45)
        self._ot_tile(panel, poses, marks)
        if status:
            _text(panel, status[:44], (4 * GEL_TILE + 8, PANEL_SIZE[1] - 10))
        return panel

    def _cam_tile(self, cam: int, frame: np.ndarray | None, points, marks,
                  scratch: bool) -> np.ndarray:
        cw, ch = CAM_TILE
        if frame is None:
            return np.full((ch, cw, 3), GREY, np.uint8)
        ov = self.overlay
        if ov is None or not ov.covers(cam):
            return cv2.resize(frame, (cw, ch), interpolation=cv2.INTER_NEAREST)
        sw, sh = cw * SUPERSAMPLE, ch * SUPERSAMPLE
        if frame.shape[:2] == (sh, sw):  # real 640x480: the frame is the 2x canvas
            canvas = frame if scratch and frame.flags.c_contiguous and frame.flags.writeable \
                else np.array(frame, order="C")
        else:
            canvas = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_NEAREST)
        if points:
            ov.draw(canvas, cam, points, marks, float(SUPERSAMPLE))
        return cv2.resize(canvas, (cw, ch), interpolation=cv2.INTER_AREA)

    def _ot_tile(self, panel: np.ndarray, poses, marks) -> None:
        x0, y = 3 * CAM_TILE[0], 0
        _text(panel, "OptiTrack  p [mm]  q [xyzw]", (x0 + 6, y + 16))
        y += 40
        for body in OT_BODIES:
            color = BODY_COLORS[body]
            p = poses.get(body)
            side = body.removeprefix("sensor_") if body.startswith("sensor_") else None
            name = body + (f"  {marks[side]}" if side in marks else "")
            _text(panel, name, (x0 + 6, y), FROZEN_COLOR if side in marks else color, 0.45)
            if p is None or pose7_to_T(p) is None:
                _text(panel, "  no data", (x0 + 6, y + 20), color)
            else:
                p = np.asarray(p, float)
                _text(panel, f"  {p[0] * 1e3:+8.1f} {p[1] * 1e3:+8.1f} {p[2] * 1e3:+8.1f}",
                      (x0 + 6, y + 20), color)
                _text(panel, f"  {p[3]:+.3f} {p[4]:+.3f} {p[5]:+.3f} {p[6]:+.3f}",
                      (x0 + 6, y + 40), color)
            y += 66
