"""Videos in and out: dream a clip frame by frame with optical-flow coherence, or a zoom feedback loop.

reading (probe, decode), flow (optical flow, warping, visibility, warp error), coherence (how a frame
follows the previous one: steady or evolving), writing (encode, audio), cache (the resumable work
folder) and jobs (one frame loop under `dream_video` and `dream_zoom`).
"""

from .cache import FrameCache, default_work_dir
from .coherence import FlowCoherence, SteadyCoherence, coherence
from .flow import FLOWS, dis_flow, farneback_flow, flicker, visible, warp, warp_error
from .jobs import FrameDreamer, JobOptions, VideoResult, dream_frames, dream_video, dream_zoom, zoom_step, zoom_transform
from .reading import DEFAULT_FPS, VideoError, VideoInfo, even_size, format_seconds, parse_time, probe, read_frames
from .writing import OUTPUT_EXTENSIONS, check_video_output, write_video

__all__ = [
    "DEFAULT_FPS", "FLOWS", "OUTPUT_EXTENSIONS", "FlowCoherence", "FrameCache", "FrameDreamer", "JobOptions",
    "SteadyCoherence", "VideoError", "VideoInfo", "VideoResult", "check_video_output", "coherence",
    "default_work_dir", "dis_flow", "dream_frames", "dream_video", "dream_zoom", "even_size", "farneback_flow",
    "flicker", "format_seconds", "parse_time", "probe", "read_frames", "visible", "warp", "warp_error",
    "write_video", "zoom_step", "zoom_transform",
]
