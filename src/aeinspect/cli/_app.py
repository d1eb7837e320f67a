"""The Typer app and its edge: the options every command has, error lines, notes, exit codes
and what a Ctrl-C does."""

from __future__ import annotations

import functools
import inspect
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from aeinspect import __version__
from aeinspect.errors import AeinspectError, InputError, Note
from aeinspect.infer.fused import FusedSegmenter, MemberBackend
from aeinspect.infer.onnx_model import OnnxBackend, OnnxCombination, load_onnx_model
from aeinspect.infer.segmenter import BACKENDS, Segmenter
from aeinspect.infer.torch_backend import TorchBackend
from aeinspect.model.combination import Combination, load_any
from aeinspect.model.file import ModelFile
from aeinspect.runtime import select_device, set_threads

EXIT_DEFECT = 1  # --fail-on-defect and a defect found
EXIT_USAGE = 2  # bad usage or bad input: one "Error: …" line
EXIT_INTERNAL = 3  # a fault of aeinspect itself: "Error: internal error: …"
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a Ctrl-C


class _OneLineErrors(TyperGroup):
    """Click's own usage errors (an unknown option, a value that is not a number, a missing
    argument) as one ``Error: …`` line and exit code 2, like aeinspect's own errors."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # click's ClickException and UsageError
            sys.exit(_show_click_error(error))
        except typer.Abort:  # end of input at a prompt
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def _show_click_error(error: typer.TyperException) -> int:
    if type(error).__name__ == "NoArgsIsHelpError":  # `aeinspect` alone: the help, as click
        typer.echo(error.format_message(), err=True)
        return error.exit_code
    context = getattr(error, "ctx", None)
    hint = f" (see '{context.command_path} --help')" if context is not None else ""
    message = " ".join(error.format_message().split())
    typer.echo(f"Error: {message}{hint}", err=True)
    return error.exit_code


app = typer.Typer(
    name="aeinspect",
    help="Find defects on surfaces with an SSIM autoencoder trained on good images only.",
    cls=_OneLineErrors,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])

Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for torch and OpenCV (1 on a machine shared with other busy "
        "processes; see the README).  [default: one per core]",
        show_default=False,
    ),
]
Debug = Annotated[
    bool, typer.Option("--debug", help="Show the traceback of an internal error (exit 3).")
]


def command(function: F) -> F:
    """Register ``function`` as a command, with the options every command has (``--threads``,
    ``--debug``) and the edge around it: aeinspect's errors as one ``Error: …`` line and exit
    code 2; anything unexpected as ``Error: internal error: …`` and exit code 3, with the
    traceback only under ``--debug``; notes as ``Note: …`` lines; a Ctrl-C as exit code 130."""

    @functools.wraps(function)
    def edge(*args: Any, threads: int | None = None, debug: bool = False, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", Note)
                warnings.showwarning = _NotePrinter(warnings.showwarning)
                set_threads(threads)
                return function(*args, **kwargs)
        except (typer.Exit, typer.TyperException):
            raise
        except AeinspectError as error:
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:
            raise typer.Exit(_internal_error(error, debug)) from None

    signature = inspect.signature(function, eval_str=True)
    shared = [
        inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Threads),
        inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Debug),
    ]  # fmt: skip
    edge.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *shared]
    )
    edge.__annotations__ = {**function.__annotations__, "threads": Threads, "debug": Debug}
    app.command()(edge)
    return edge  # type: ignore[return-value]


def _internal_error(error: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    reason = str(error).strip().splitlines()
    detail = f"{type(error).__name__}: {reason[0]}" if reason else type(error).__name__
    hint = "" if debug else " (run again with --debug for the traceback)"
    typer.echo(f"Error: internal error: {detail}{hint}", err=True)
    return EXIT_INTERNAL


class _NotePrinter:
    """``warnings.showwarning`` that prints the first ``Note`` of each key as a ``Note: …``
    (or ``Warning: …``) line on stderr and hands every other warning to ``fallback``."""

    def __init__(self, fallback: Callable[..., None]) -> None:
        self.fallback = fallback
        self.seen: set[str] = set()

    def __call__(self, message: Warning | str, category: type[Warning], *args: Any,
                 **kwargs: Any) -> None:  # fmt: skip
        if not isinstance(message, Note):
            self.fallback(message, category, *args, **kwargs)
        elif message.key not in self.seen:
            self.seen.add(message.key)
            typer.echo(f"{message.label}: {message}", err=True)


class GracefulStop:
    """While open, the first SIGINT (Ctrl-C) or SIGTERM asks the running loop to stop at its
    next safe point (``requested()`` turns true); a second one interrupts at once
    (``KeyboardInterrupt``). Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._saved: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process that a signal ended."""
        return 128 + (self.signal or signal.SIGINT)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._saved[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._saved.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = number


def open_segmenter(
    path: Path, backend: str, device: str, precision: str
) -> Segmenter | FusedSegmenter:
    """A segmenter of the model at ``path``: a model file (or a combination) in torch on
    ``device`` at ``precision``, or with backend "onnx" an ONNX export in ONNX Runtime on
    the CPU.

    Raises:
        InputError: an unknown backend, or device and precision options that ONNX Runtime
            does not take.
    """
    if backend not in BACKENDS:
        raise InputError(f"--backend must be {' or '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        model = load_model_for_use(path)
        chosen = select_device(device)

        def torch_segmenter(one: ModelFile) -> Segmenter:
            return Segmenter(one, backend=TorchBackend(one, chosen, precision))

        if isinstance(model, Combination):
            return FusedSegmenter(model, [torch_segmenter(member) for member in model.members])
        return torch_segmenter(model)
    if precision != "fp32" or device not in ("auto", "cpu"):
        raise InputError("--backend onnx runs on the CPU in fp32; leave out --device and "
                         "--precision")  # fmt: skip
    model = load_onnx_model(path)
    runtime = OnnxBackend(model)
    if isinstance(model, OnnxCombination):
        members = [Segmenter(member, backend=MemberBackend.of(runtime, index))
                   for index, member in enumerate(model.members)]  # fmt: skip
        return FusedSegmenter(model, members)
    return Segmenter(model, backend=runtime)


def load_model_for_use(path: Path) -> ModelFile | Combination:
    """The model file (or combination) at ``path``, for segment, tune, evaluate and export; a
    note on stderr when a model's training has not finished (its weights are then the best
    so far)."""
    model = load_any(path)
    members = model.members if isinstance(model, Combination) else (model,)
    for member in members:
        if not member.finished:
            typer.echo(
                f"Note: {path} is {member.progress()}; its weights are the best so far (go on "
                f"training with: aeinspect train --resume {path})",
                err=True,
            )
    return model


def show_progress(quiet: bool) -> bool:
    """Progress goes to stderr only on a terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aeinspect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find defects on surfaces with an SSIM autoencoder trained on good images only."""


def _terminate(number: int, frame: FrameType | None) -> None:
    """SIGTERM outside a graceful stop: unwind (temporary files are removed on the way) and
    exit as the signal would."""
    raise SystemExit(128 + number)


def main() -> None:
    """Entry point of the ``aeinspect`` script and ``python -m aeinspect``."""
    if hasattr(signal, "SIGPIPE"):  # `aeinspect segment … | head` ends quietly, like cat
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _terminate)
    app()
