"""How each video frame follows the one before: a steady dream that moves with the picture (default), or
an evolving one (`--evolve`).

Both carry the previous frame's dream along the optical flow from the current input frame to the
previous one. They differ in what the new frame may change: the steady look lets the network only
refine what is already there and dream freely where the flow finds nothing to carry (Ruder et al.
2016's temporal consistency, as a constraint on the pixels); the evolving look re-dreams every frame.
"""

from __future__ import annotations

import math
from typing import Protocol

import cv2
import numpy as np

from ..errors import SettingsError
from .flow import FLOWS, FlowFn, agreement, gray, visible, warp

LIVE_SPECK = 64  # px: live dreaming gives new regions smaller than this no steps of their own


class Dreams(Protocol):
    """What a coherence dreams with (`jobs.FrameDreamer`): an H x W x 3 image (uint8, or float in [0, 1])
    -> its dream, uint8. `strength` scales the step size; `steps` and `octaves` limit the dream to that
    many steps on the finest octaves; `region` (y0, y1, x0, x1) dreams that rectangle alone and returns it."""

    min_size: int

    def full_steps(self, height: int, width: int) -> int: ...

    def dream(
        self,
        image: np.ndarray,
        strength: float = 1.0,
        *,
        steps: int | None = None,
        octaves: int | None = None,
        region: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray: ...


class Coherence(Protocol):
    def dream_frame(
        self, dreams: Dreams, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None
    ) -> np.ndarray: ...


def _flow(name: str, blend: float) -> FlowFn | None:
    """The flow function (built once per video: DIS keeps state), None for plain per-frame dreaming."""
    if name not in FLOWS:
        raise SettingsError(f"unknown flow '{name}' (choose from {', '.join(FLOWS)})")
    if not 0 <= blend <= 1:
        raise SettingsError(f"flow blend must be in [0, 1], got {blend}")
    factory = FLOWS[name]
    return factory() if factory is not None and blend > 0 else None


def new_regions(new: np.ndarray, margin: int, min_size: int, min_area: int = 1) -> list[tuple[int, int, int, int]]:
    """Rectangles (y0, y1, x0, x1) that cover the True pixels of `new` (H x W) with `margin` px around
    them, each at least `min_size` a side where the frame allows, overlapping ones merged; connected
    pieces of `new` under `min_area` pixels are left out."""
    h, w = new.shape
    if min_area > 1:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(new.astype(np.uint8), connectivity=8)
        new = np.isin(labels, 1 + np.flatnonzero(stats[1:count, cv2.CC_STAT_AREA] >= min_area))
    grown = cv2.dilate(new.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    boxes = []
    for x, y, bw, bh, _ in stats[1:count]:

        def span(lo: int, size: int, limit: int) -> tuple[int, int]:
            extra = max(0, min(min_size, limit) - size)
            lo = min(max(0, lo - extra // 2), limit - max(size, min(min_size, limit)))
            return lo, lo + max(size, min(min_size, limit))

        boxes.append((*span(y, bh, h), *span(x, bw, w)))
    merged = True
    while merged:  # grown to the minimum size, two boxes may overlap: one box then covers both
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


class SteadyCoherence:
    """Each frame keeps the previous dream where the scene holds still or moves, and dreams only what is new.

    The dream's detail (dream - input) of the previous frame is warped onto the current input, on the
    pixels the forward-backward flow check finds visible in both frames (`visible`) and whose warped
    previous input looks like the current input (`agreement`). `blend` scales the carried detail
    (1: all of it).

    Warm start (default): the carried image gets only `warm_steps` ascent steps at `warm_strength` of the
    step size (at most `refine` of a full dream's steps in all) on its finest `warm_octaves` octaves,
    which re-sharpens the detail the warps blur. The
    pixels the flow could not carry (occluded, uncovered, new: carried weight below one half) get a full
    dream (the whole frame's steps per octave, on the finest `new_octaves` octaves: a patch a few pixels
    wide has no coarse structure to dream) of the rectangles around them alone (`new_regions`), blended in
    by how little was carried.
    When those pixels are more than `cut_share` of the frame (a scene cut), and on the first frame, the
    whole frame is dreamed in full. A carried frame then costs a few steps instead of a dream.

    `new_steps` caps that work for live dreaming: what the flow could not carry (new regions and cuts)
    gets that many steps on the finest `new_octaves` octaves instead of a full dream (None, the video's
    way). A full dream there would make the next frame later, its gap bigger and more of it new: on a
    pan every frame became a full dream. The capped dream is weaker; the warm steps of the next frames
    build it up.

    Without it (`warm=False`, the look before warm starts) every frame is dreamed in full and the
    visible pixels take only `refine` of the change: the same steadiness, at the cost of a whole dream.
    """

    def __init__(
        self, flow: str = "dis", blend: float = 1.0, refine: float = 0.05, tolerance: float = 0.15, *,
        warm: bool = True, warm_steps: int = 2, warm_strength: float = 0.5, warm_octaves: int = 1,
        new_octaves: int = 1, cut_share: float = 0.4, margin: int = 8, new_steps: int | None = None,
    ):  # fmt: skip
        self.flow = _flow(flow, blend)
        if not 0 <= refine <= 1:
            raise SettingsError(f"refine must be in [0, 1], got {refine}")
        if not (isinstance(warm_steps, int) and warm_steps >= 1 and warm_octaves >= 1 and warm_strength > 0):
            raise SettingsError("a warm start needs >= 1 step on >= 1 octave at a positive strength")
        if not 0 <= cut_share <= 1:
            raise SettingsError(f"cut share must be in [0, 1], got {cut_share}")
        if new_steps is not None and not (isinstance(new_steps, int) and new_steps >= 1):
            raise SettingsError(f"steps for new regions must be a whole number >= 1, got {new_steps}")
        self.blend, self.refine, self.tolerance = blend, refine, tolerance
        self.warm, self.warm_steps, self.warm_octaves = warm, warm_steps, warm_octaves
        self.warm_strength = warm_strength
        self.new_octaves, self.cut_share, self.margin, self.new_steps = new_octaves, cut_share, margin, new_steps

    def carried(
        self, frame: np.ndarray, prev_frame: np.ndarray, prev_dream: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
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
        self, dreams: Dreams, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None
    ) -> np.ndarray:
        if self.flow is None or prev_frame is None or prev_dream is None:
            return dreams.dream(frame)
        image, kept = self.carried(frame, prev_frame, prev_dream)
        new = kept < 0.5
        if not self.warm or new.mean() > self.cut_share:
            if self.warm and self.new_steps is not None:  # a cut in live: a capped dream of the whole frame
                dreamed = dreams.dream(image / 255, steps=self.new_steps, octaves=self.new_octaves)
            else:
                dreamed = dreams.dream(image / 255)
            dreamed = dreamed.astype(np.float32)
            share = (1 - kept * (1 - self.refine))[..., None]  # H x W x 1: refine where kept, 1 where new
            return np.clip(image + share * (dreamed - image) + 0.5, 0, 255).astype(np.uint8)
        # at most `refine` of a full dream's steps: a light dream (few steps) is not outgrown by its warm starts
        strength = min(self.warm_strength, self.refine * dreams.full_steps(*frame.shape[:2]) / self.warm_steps)
        out = dreams.dream(image / 255, strength, steps=self.warm_steps, octaves=self.warm_octaves)
        out = out.astype(np.float32)
        # live: specks (a flat area's noise defeats the flow's checks) cost a box of steps each; the warm
        # steps cover them
        speck = LIVE_SPECK if self.new_steps is not None else 1
        for y0, y1, x0, x1 in new_regions(new, self.margin, dreams.min_size, speck):
            box = (y0, y1, x0, x1)
            dreamed = dreams.dream(image / 255, steps=self.new_steps, octaves=self.new_octaves, region=box)
            dreamed = dreamed.astype(np.float32)
            fresh = (1 - kept[y0:y1, x0:x1])[..., None]  # all of the dream where nothing was carried
            out[y0:y1, x0:x1] += fresh * (dreamed - out[y0:y1, x0:x1])
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


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
        self, dreams: Dreams, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None
    ) -> np.ndarray:
        strength = self.refresh if self.carries(prev_frame, prev_dream) else 1.0
        return dreams.dream(self(frame, prev_frame, prev_dream), strength)


def coherence(flow: str = "dis", blend: float | None = None, evolve: bool = False, warm: bool = True) -> Coherence:
    """The steady look (default; `warm`: carried frames start from the carried dream) or the evolving
    one, each with its own default blend."""
    if evolve:
        return FlowCoherence(flow) if blend is None else FlowCoherence(flow, blend)
    return SteadyCoherence(flow, warm=warm) if blend is None else SteadyCoherence(flow, blend, warm=warm)
