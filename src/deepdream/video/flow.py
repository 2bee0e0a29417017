"""Optical flow between input frames, warping along it, which pixels it can be trusted for, and the
measures of how steady a video is (warp error, frame difference)."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def dis_flow(preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> FlowFn:
    """OpenCV's DIS flow (fast, copes with large motion): (gray a, gray b) -> H x W x 2, a's pixels in b."""
    dis = cv2.DISOpticalFlow_create(preset)
    return lambda a, b: dis.calc(a, b, None)


def dis_fast_flow() -> FlowFn:
    """DIS at its fast preset: half the time of the medium one at 320x240 (live dreaming's default), a few
    more pixels fail the forward-backward check."""
    return dis_flow(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def farneback_flow() -> FlowFn:
    """Farneback's polynomial-expansion flow: smoother, slower than DIS."""
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)


# name -> factory of a flow function (built once per video; DIS keeps state); None: plain per-frame dreaming
FLOWS: dict[str, Callable[[], FlowFn] | None] = {
    "dis": dis_flow,
    "dis-fast": dis_fast_flow,
    "farneback": farneback_flow,
    "none": None,
}


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Sample `image` at (x, y) + flow(x, y): carries the previous frame onto the current frame's pixels."""
    h, w = flow.shape[:2]
    ys, xs = np.indices((h, w), dtype=np.float32)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def square_length(flow: np.ndarray) -> np.ndarray:
    """|v|^2 of an H x W x 2 field (numpy's sum over a last axis of 2 costs ten times this)."""
    return flow[..., 0] ** 2 + flow[..., 1] ** 2


def visible(flow: FlowFn, frame: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flow from `frame` to `prev` (H x W x 2) and where it can be trusted (H x W bool).

    A pixel is visible in both frames when the flow there and back returns near where it started,
    lands inside the previous frame, and is not on a motion boundary: the forward-backward check of
    Sundaram et al. 2010 and Ruder et al. 2016. Occluded and newly uncovered pixels fail it.
    """
    a, b = gray(frame), gray(prev)
    back = flow(a, b)  # H x W x 2: where each pixel of `frame` was in `prev`
    there = warp(flow(b, a), back)  # the forward flow at the pixel's old place
    loop = square_length(there + back)
    ok = loop <= 0.01 * (square_length(there) + square_length(back)) + 0.5
    du_y, du_x = np.gradient(back[..., 0])
    dv_y, dv_x = np.gradient(back[..., 1])
    ok &= du_x**2 + du_y**2 + dv_x**2 + dv_y**2 <= 0.01 * square_length(back) + 0.002
    h, w = ok.shape
    ys, xs = np.indices((h, w), dtype=np.float32)
    x, y = xs + back[..., 0], ys + back[..., 1]
    return back, ok & (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)  # landed inside the frame


def agreement(frame: np.ndarray, prev: np.ndarray, back: np.ndarray, tolerance: float = 0.15) -> np.ndarray:
    """1 where the previous input warped along `back` looks like the current input, falling to 0 at
    `tolerance` (mean RGB difference in [0, 1], smoothed): catches scene cuts the flow cannot."""
    before = warp(prev.astype(np.float32) / 255, back)
    error = cv2.GaussianBlur(np.abs(before - frame.astype(np.float32) / 255).mean(axis=2), (0, 0), 2)
    return np.clip(1 - error / tolerance, 0, 1)  # H x W


def warp_error(outputs: Sequence[np.ndarray], sources: Sequence[np.ndarray], flow: FlowFn | None = None) -> float:
    """Mean |out[t] - out[t-1] warped along the sources' flow| (0..255) over pixels visible in both frames.

    The measure of boiling: zero when the output moves exactly as the source does, whatever it looks
    like. The flow comes from the source frames (DIS by default), so every mode is judged alike.
    """
    flow = flow or dis_flow()
    errors = []
    for t in range(1, min(len(outputs), len(sources))):
        back, ok = visible(flow, sources[t], sources[t - 1])
        moved = warp(outputs[t - 1].astype(np.float32), back)
        diff = np.abs(outputs[t].astype(np.float32) - moved).mean(axis=2)
        if ok.any():
            errors.append(float(diff[ok].mean()))
    return float(np.mean(errors)) if errors else 0.0


def flicker(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames, in 0..255 units."""
    diffs, prev = [], None
    for frame in frames:
        frame = frame.astype(np.float32)
        if prev is not None:
            diffs.append(float(np.abs(frame - prev).mean()))
        prev = frame
    return float(np.mean(diffs)) if diffs else 0.0
