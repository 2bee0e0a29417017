"""Sub-command `studio`: the local web app (Gradio, optional extra `pip install 'deepdream[studio]'`)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..errors import SettingsError
from ..settings import PRESETS, Settings, from_mapping, load_config, preset


def port_number(text: str) -> int:
    """A TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, got {port}")
    return port


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "studio", help="the local web app (Gradio)", description="Serve the studio on this machine; its URL is printed."
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else needs --auth or --insecure)",
    )
    p.add_argument("--port", type=port_number, help="port, 1-65535 (default: the first free one from 7860)")
    p.add_argument(
        "--library",
        metavar="DIR",
        help="where results, masks and video jobs are kept "
        "(default: $XDG_DATA_HOME/deepdream/studio, i.e. ~/.local/share/deepdream/studio)",
    )
    p.add_argument("--runs", metavar="DIR", default="runs", help="trained checkpoints to offer (default runs/)")
    p.add_argument("--auth", metavar="USER:PASS", help="ask for this user name and password")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without --auth")
    p.add_argument("--preset", choices=list(PRESETS), help="settings the page starts with")
    p.add_argument("--config", metavar="FILE", help="TOML file, or an image this tool wrote: settings to start with")
    p.set_defaults(run=run_studio)


def run_studio(args: argparse.Namespace) -> int:
    from ..studio.library import Library, default_folder
    from ..studio.logs import file_logging
    from ..studio.safety import check_host, parse_auth

    auth = parse_auth(args.auth)
    warning = check_host(args.host, auth, args.insecure)  # refused before anything starts
    if importlib.util.find_spec("gradio") is None:
        raise SettingsError("the studio needs Gradio: pip install 'deepdream[studio]'")
    from ..studio.app import launch
    from ..studio.service import Studio

    if warning:
        print(warning, file=sys.stderr)
    defaults = preset(args.preset) if args.preset else Settings()
    if args.config:
        defaults = from_mapping({**defaults.to_dict(), **load_config(args.config)})
    library = Library(args.library or default_folder())
    studio = Studio(library, args.runs, defaults.replace(seed=None, mask=None))
    with file_logging(library) as log_file:
        try:
            app, url = launch(studio, host=args.host, port=args.port, auth=auth)
        except OSError as exc:  # the port was taken between the check and the start, or none was free
            raise SettingsError(f"cannot serve the studio on {args.host}: {exc}") from None
        print(f"deepdream studio: {url}  (library {library.folder}; log {log_file}; Ctrl+C stops)", flush=True)
        try:
            app.block_thread()
        finally:
            app.close()
    return 0
