"""How each video frame follows the one before: a steady dream that moves with the picture (default), or
an evolving one (`--evolve`).

Both carry the previous frame's dream along the optical flow from the current input frame to the
previous one. They differ in what the new frame may change: the steady look lets the network only
refine what is already there and dream freely where the flow finds nothing to carry (Ruder et al.
2016's temporal consistency, as a constraint on the pixels); the evolving look re-dreams every frame.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import cv2
import numpy as np

from ..errors import SettingsError
from .flow import FLOWS, FlowFn, agreement, gray, visible, warp

# (image H x W x 3, uint8 or float in [0, 1]; strength, a factor on the step size) -> its dream, uint8
DreamFn = Callable[[np.ndarray, float], np.ndarray]


class Coherence(Protocol):
    def dream_frame(
        self, dream: DreamFn, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None
    ) -> np.ndarray: ...


def _flow(name: str, blend: float) -> FlowFn | None:
    """The flow function (built once per video: DIS keeps state), None for plain per-frame dreaming."""
    if name not in FLOWS:
        raise SettingsError(f"unknown flow '{name}' (choose from {', '.join(FLOWS)})")
    if not 0 <= blend <= 1:
        raise SettingsError(f"blend must be in [0, 1], got {blend}")
    factory = FLOWS[name]
    return factory() if factory is not None and blend > 0 else None


class SteadyCoherence:
    """Each frame keeps the previous dream where the scene holds still or moves, and dreams only what is new.

    The dream's detail (dream - input) of the previous frame is warped onto the current input, on the
    pixels the forward-backward flow check finds visible in both frames (`visible`) and whose warped
    previous input looks like the current input (`agreement`). That image is dreamed, and the result
    composited: visible pixels take only `refine` of the change, which re-sharpens detail that the
    warps blur; occluded, uncovered and new pixels take all of it. Consecutive frames then differ by
    about `refine` of one dream step where they are visible in both, instead of by a whole new dream.
    `blend` scales the carried detail (1: all of it).
    """

    def __init__(self, flow: str = "dis", blend: float = 1.0, refine: float = 0.05, tolerance: float = 0.15):
        self.flow = _flow(flow, blend)
        if not 0 <= refine <= 1:
            raise SettingsError(f"refine must be in [0, 1], got {refine}")
        self.blend, self.refine, self.tolerance = blend, refine, tolerance

    def carried(self, frame: np.ndarray, prev_frame: np.ndarray, prev_dream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The input with the previous dream's detail carried onto it (float 0..255) and the H x W
        weight, in [0, 1], of the pixels it was carried to."""
        back, ok = visible(self.flow, frame, prev_frame)
        # softened so that the seam around new regions blends instead of cutting; any wider, and
        # pixels visible in both frames get dreamed afresh (the moving object's warp error: 1.45 -> 1.63)
        kept = cv2.GaussianBlur(ok.astype(np.float32), (0, 0), 1.0)
        kept *= agreement(frame, prev_frame, back, self.tolerance)
        detail = warp(prev_dream.astype(np.float32) - prev_frame, back, cv2.INTER_CUBIC)
        image = np.clip(frame + (self.blend * kept)[..., None] * detail, 0, 255)
        return image, kept

    def dream_frame(
        self, dream: DreamFn, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None
    ) -> np.ndarray:
        if self.flow is None or prev_frame is None or prev_dream is None:
            return dream(frame, 1.0)
        image, kept = self.carried(frame, prev_frame, prev_dream)
        dreamed = dream(image / 255, 1.0).astype(np.float32)
        share = (1 - kept * (1 - self.refine))[..., None]  # H x W x 1: refine where kept, 1 where new
        return np.clip(image + share * (dreamed - image) + 0.5, 0, 255).astype(np.uint8)


class FlowCoherence:
    """The evolving look: start each frame from its input blended with the previous dream warped along
    the optical flow, and dream it again.

    Where the warped previous input disagrees with the current input (occlusions, new objects, scene
    cuts) the blend fades out, so the old dream does not ghost over what was not there before.

    Gradient ascent is chaotic: a 1/255 change of the input gives a different pattern. So the new dream
    each frame adds is, in effect, independent of the carried one; carried with weight b it accumulates
    to sqrt(1 / (1 - b^2)) times its own strength. Dreaming each carried frame at `refresh` =
    sqrt(1 - b^2) of the full step keeps the total as strong as one full dream, while consecutive frames
    differ by the refresh: patterns keep changing, slowly.
    """

    def __init__(self, flow: str = "dis", blend: float = 0.8, tolerance: float = 0.15):
        self.flow = _flow(flow, blend)
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
        back = self.flow(gray(frame), gray(prev_frame))
        dream = warp(prev_dream.astype(np.float32) / 255, back)
        weight = self.blend * agreement(frame, prev_frame, back, self.tolerance)[..., None]
        return current + weight * (dream - current)

    def dream_frame(
        self, dream: DreamFn, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None
    ) -> np.ndarray:
        strength = self.refresh if self.carries(prev_frame, prev_dream) else 1.0
        return dream(self(frame, prev_frame, prev_dream), strength)


def coherence(flow: str = "dis", blend: float | None = None, evolve: bool = False) -> Coherence:
    """The steady look (default) or the evolving one, each with its own default blend."""
    kind = FlowCoherence if evolve else SteadyCoherence
    return kind(flow) if blend is None else kind(flow, blend)
