"""Videos in and out: dream a clip frame by frame with optical-flow coherence, a zoom feedback loop, or a
live camera or stream.

The entry points are exported here; the parts live in their modules: reading (probe, decode), flow
(optical flow, warping, visibility, warp error), coherence (how a frame follows the previous one:
steady, warm-started, or evolving), writing (encode, audio), cache (the resumable work folder), jobs
(one frame loop under `dream_video` and `dream_zoom`) and live (`dream_live`, the same frames in real
time).
"""

from .jobs import JobOptions, VideoResult, dream_video, dream_zoom
from .live import LiveOptions, LiveResult, LiveSession, dream_live

__all__ = [
    "JobOptions",
    "LiveOptions",
    "LiveResult",
    "LiveSession",
    "VideoResult",
    "dream_live",
    "dream_video",
    "dream_zoom",
]
