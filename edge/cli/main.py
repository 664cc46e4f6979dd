"""``auricle``: the device-side command line.

Sub-commands are registered in a small table (:data:`COMMANDS`): each entry
adds its arguments to a parser and names the handler that runs it.  Handlers
return the exit status; expected failures (bad config, bad bundle) are one
line on stderr and status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from edge.cli import classify, run
from edge.cli import model as modelcli
from edge.cli import record as recordcli
from edge.cli import teach as teachcli
from edge.model.bundle import BundleError
from edge.schema import ConfigError

Handler = Callable[[argparse.Namespace], int]
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

TERMINAL_LOG = "%(asctime)s  %(levelname)s: %(message)s"
PLAIN_LOG = "%(asctime)s %(levelname)s %(name)s: %(message)s"
COMMANDS: list[Register] = [run.register, classify.register, modelcli.register, recordcli.register, teachcli.register]
"""Every module that adds sub-commands; each sets ``handler`` via set_defaults."""


def build_parser() -> argparse.ArgumentParser:
    """The full ``auricle`` argument parser."""
    parser = argparse.ArgumentParser(prog="auricle", description="Always-on sound classifier for the Raspberry Pi.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``auricle`` console script."""
    args = build_parser().parse_args(argv)
    terminal = sys.stderr.isatty()  # a person reads it: short times, no module names
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=TERMINAL_LOG if terminal else PLAIN_LOG,
        datefmt="%H:%M:%S" if terminal else None,
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, BundleError) as exc:
        print(f"auricle: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `auricle model info | head -3`: the reader has gone; say nothing more
        return _reader_gone()


def _reader_gone() -> int:
    """Point stdout at /dev/null so that the interpreter's final flush cannot raise again; 141 as for SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
