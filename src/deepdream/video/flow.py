"""Optical flow between input frames, warping along it, and the coherence that carries a dream along it."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import cv2
import numpy as np

from ..errors import SettingsError


FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def dis_flow() -> FlowFn:
    """OpenCV's DIS flow (fast, copes with large motion): (gray a, gray b) -> H x W x 2, a's pixels in b."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return lambda a, b: dis.calc(a, b, None)


def farneback_flow() -> FlowFn:
    """Farneback's polynomial-expansion flow: smoother, slower than DIS."""
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)


# name -> factory of a flow function (built once per video; DIS keeps state); None: plain per-frame dreaming
FLOWS: dict[str, Callable[[], FlowFn] | None] = {"dis": dis_flow, "farneback": farneback_flow, "none": None}


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at (x, y) + flow(x, y): carries the previous frame onto the current frame's pixels."""
    h, w = flow.shape[:2]
    ys, xs = np.indices((h, w), dtype=np.float32)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class FlowCoherence:
    """Start each frame from its input blended with the previous dream warped along the optical flow.

    The flow runs from the current input frame to the previous one, so every current pixel knows where
    it was; where the warped previous input disagrees with the current input (occlusions, new objects,
    scene cuts) the blend fades out, so the old dream does not ghost over what was not there before.

    Gradient ascent is chaotic: a 1/255 change of the input gives a different pattern. So the new dream
    each frame adds is, in effect, independent of the carried one; carried with weight b it accumulates
    to sqrt(1 / (1 - b^2)) times its own strength. Dreaming each carried frame at `refresh` =
    sqrt(1 - b^2) of the full step keeps the total as strong as one full dream, while consecutive frames
    now differ only by the small refresh: that, not the blend alone, is what removes the flicker.
    """

    def __init__(self, flow: str = "dis", blend: float = 0.8, tolerance: float = 0.15):
        if flow not in FLOWS:
            raise SettingsError(f"unknown flow '{flow}' (choose from {', '.join(FLOWS)})")
        if not 0 <= blend <= 1:
            raise SettingsError(f"blend must be in [0, 1], got {blend}")
        factory = FLOWS[flow]
        self.flow = factory() if factory is not None and blend > 0 else None
        self.blend = blend
        self.tolerance = tolerance
        # floored so that --blend 1 still dreams a little (and the step size stays positive)
        self.refresh = max(0.05, math.sqrt(1 - blend**2)) if self.flow is not None else 1.0

    def carries(self, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None) -> bool:
        """Whether a frame with these predecessors starts from a carried dream (so dreams at `refresh`)."""
        return self.flow is not None and prev_frame is not None and prev_dream is not None

    def __call__(self, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None) -> np.ndarray:
        """The image to dream for `frame` (uint8 H x W x 3) as float32 in [0, 1]."""
        current = frame.astype(np.float32) / 255
        if not self.carries(prev_frame, prev_dream):
            return current
        flow = self.flow(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.cvtColor(prev_frame, cv2.COLOR_RGB2GRAY))
        dream = warp(prev_dream.astype(np.float32) / 255, flow)
        before = warp(prev_frame.astype(np.float32) / 255, flow)
        error = cv2.GaussianBlur(np.abs(before - current).mean(axis=2), (0, 0), 2)  # H x W
        weight = self.blend * np.clip(1 - error / self.tolerance, 0, 1)[..., None]
        return current + weight * (dream - current)


def flicker(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames, in 0..255 units."""
    diffs, prev = [], None
    for frame in frames:
        frame = frame.astype(np.float32)
        if prev is not None:
            diffs.append(float(np.abs(frame - prev).mean()))
        prev = frame
    return float(np.mean(diffs)) if diffs else 0.0
