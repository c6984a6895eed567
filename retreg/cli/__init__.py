"""`retreg` command line. Each sub-command lives in ``retreg/cli/<name>.py`` and
exposes ``add_parser(subparsers)`` and ``run(args) -> int``. User errors surface as one line
on stderr and a non-zero exit, never as a traceback."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from retreg import __version__

# Top-level modules of the optional parts -> the extra that installs them.
EXTRAS = {"lightning": "train", "yaml": "train", "PySide6": "gui"}
COMMANDS = ("register", "evaluate", "synth", "train", "train_fusion", "train_fast",
            "train_superretina", "finetune")
# Commands whose every output is written and closed when ``run`` returns: the process may end
# without the interpreter's teardown, which with torch loaded takes ~0.5 s of a ~3 s command.
QUICK_EXIT = ("register",)


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retreg", description="Multimodal retinal image registration (RetReg)."
    )
    parser.add_argument("--version", action="version", version=f"retreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"retreg.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("retreg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's single place that turns errors into lines
        from retreg.core.errors import RetRegError

        if isinstance(exc, ModuleNotFoundError) and exc.name in EXTRAS:
            print(f"retreg {args.command}: error: {exc.name} is not installed; "
                  f"pip install 'retreg[{EXTRAS[exc.name]}]'", file=sys.stderr)
            return 2
        if isinstance(exc, (RetRegError, UserError, FileNotFoundError, ValueError)):
            print(f"retreg {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def cli() -> None:
    """The ``retreg`` executable: ``main``, then the exit (``QUICK_EXIT`` commands skip the
    interpreter's teardown; ``main`` itself never exits, so tests can call it)."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv and argv[0] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
