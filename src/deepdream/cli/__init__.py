"""The `deepdream` command: a thin shell over the library; one module per group of sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import DeepDreamError

# each module defines register(subparsers); its parsers set `run` to a function(args) -> exit code
COMMAND_MODULES = ("dream", "video", "audio", "train", "explore", "studio", "batch")


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deepdream", description="DeepDream images, videos and studies from convolutional networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except DeepDreamError as exc:
        print(f"deepdream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepdream: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("deepdream: error: out of memory (try a smaller --max-size or --tile-size)", file=sys.stderr)
        return 1
