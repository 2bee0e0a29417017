"""The `deepdream` command: a thin shell over the library; one module per group of sub-commands."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from ..errors import DeepDreamError
from ..runtime import package_log

# each module defines register(subparsers); its parsers set `run` to a function(args) -> exit code
COMMAND_MODULES = ("dream", "video", "audio", "train", "explore", "studio", "batch", "live", "text")


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF}
VERBOSE_HELP = "show debug lines of the library's logs"


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deepdream", description="DeepDream images, videos and studies from convolutional networks.")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for command in set(sub.choices.values()):  # also after the command: `deepdream train DATA --verbose`
        if "--verbose" not in command._option_string_actions:
            command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


class _StderrHandler(logging.Handler):
    """Log records as lines on whatever sys.stderr is when they are emitted (a test's capture too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if sys.stderr is not None:
                print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # a log line must never end a run
            self.handleError(record)


def _logging(verbose: bool):
    """The package's log lines on stderr for this command (INFO, DEBUG with --verbose)."""
    handler = _StderrHandler(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    return package_log(handler)


class _ClosedStdout:
    """Stands in for a closed standard output (`deepdream models >&-`, where Python sets sys.stdout to None):
    writing to it is the one-line write error, not a silent loss or an AttributeError."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is left cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (an in-process caller's capture)
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    closed = sys.stdout is None
    if closed:
        sys.stdout = _ClosedStdout()
    try:
        with _logging(args.verbose):
            code = args.run(args) or 0
        sys.stdout.flush()  # a full disk shows here, inside the handlers, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        # the reader left (`deepdream models | head -1`): stop quietly, as a SIGPIPE'd Unix tool does
        _quiet_stdout()
        return 141
    except DeepDreamError as exc:
        print(f"deepdream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepdream: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("deepdream: error: out of memory (try a smaller --max-size or --tile-size)", file=sys.stderr)
        return 1
    except OSError as exc:
        # a full or failing disk under standard output (`> /dev/full`) or a file; other OS errors are bugs
        if exc.errno not in WRITE_ERRORS:
            raise
        _quiet_stdout()
        where = f" {exc.filename}" if exc.filename else ""
        print(f"deepdream: error: cannot write{where}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        if closed:
            sys.stdout = None
