"""What the studio accepts: uploads checked before any decoding work, who may reach the server, and on which
port it can listen."""

from __future__ import annotations

import errno
import socket
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .. import imagefiles
from ..errors import ImageError, SettingsError

MAX_PIXELS = 100_000_000  # a 100 MP photo; larger ones are refused before they are decoded
MAX_VIDEO_BYTES = 2 * 1024**3
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PORTS = range(1, 65536)


def check_image(path: str | Path) -> Image.Image:
    """The decoded upload, or ImageError with a message for the page (not an image, bomb, too large)."""
    path = Path(path)
    name = path.name
    try:
        with warnings.catch_warnings():
            # the header alone says how large the picture is: judge that before decoding anything
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large to open safely (over {MAX_PIXELS // 1_000_000} MP)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image (PNG, JPEG, WebP, TIFF, BMP, GIF ...)") from None
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc}") from None
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP); "
            f"the studio takes up to {MAX_PIXELS // 1_000_000} MP"
        )
    try:
        return imagefiles.open_image(path)
    except ImageError as exc:
        raise ImageError(str(exc).replace(str(path), name)) from None


def check_video(path: str | Path):
    """The probed clip (deepdream.video.probe), or ImageError for the page (too large, unreadable)."""
    from ..video.reading import probe

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_VIDEO_BYTES:
        raise ImageError(f"{path.name} is {size / 1024**3:.1f} GB; the studio takes clips up to 2 GB")
    try:
        return probe(path)
    except ImageError as exc:
        raise ImageError(str(exc).replace(str(path), path.name)) from None


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """'USER:PASS' -> (user, password)."""
    if text is None:
        return None
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise SettingsError("--auth must look like USER:PASS")
    return user, password


def check_host(host: str, auth: tuple[str, str] | None, insecure: bool) -> str | None:
    """A warning to print when serving beyond this machine; SettingsError when that is unprotected."""
    if host in LOOPBACK:
        return None
    if auth is None and not insecure:
        raise SettingsError(
            f"--host {host} makes the studio reachable from other machines: give --auth USER:PASS "
            "(or --insecure to serve it to anyone who can reach this port)"
        )
    protection = "password protected" if auth else "with NO password (--insecure)"
    return (
        f"warning: the studio listens on {host}, reachable from other machines, {protection}; traffic is not encrypted"
    )


def check_port(host: str, port: int | None) -> None:
    """SettingsError, in one line, when the studio could not listen on host:port (None: Gradio picks a free
    one from 7860): a port out of range, taken, reserved for the administrator, or a host not on this machine.
    Checked before the server is built, so a refusal leaves no half-started studio behind."""
    if port is None:
        return
    if port not in PORTS:
        raise SettingsError(f"--port must be between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is free
            probe.bind(infos[0][4])
    except socket.gaierror as exc:
        raise SettingsError(f"--host {host} is not an address of this machine: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"port {port} is already in use on {host}: give another --port, or none to take "
                "the first free one from 7860"
            ) from None
        if exc.errno == errno.EACCES:
            raise SettingsError(f"port {port} needs administrator rights: give a --port above 1023") from None
        raise SettingsError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
