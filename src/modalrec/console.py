"""What a person sees while a command works: one logging set-up and one progress bar for every command.

Every message goes through the ``modalrec`` logger, so a run's ``train.log`` (a file handler on that logger,
see :mod:`modalrec.train.rundir`) records the lines the terminal showed. Progress comes in two forms:

- :func:`progress`, a live rich bar (on a terminal only; it vanishes when done), for epochs, downloads,
  feature encoding and suites;
- milestone lines on the ``modalrec.progress`` logger (one per epoch, one per suite run), which show in
  every mode, ``--quiet`` and pipes included, and land in ``train.log``.

``--quiet`` keeps warnings and those milestone lines on the terminal and drops the other INFO lines there
(the log file still gets them). Messages are printed as plain text: a ``[serve]`` in an error stays visible.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

LOGGER = "modalrec"
PROGRESS_LOGGER = "modalrec.progress"

# One stderr console for log lines and bars, so that log lines print above a live bar instead of through it.
err_console = Console(stderr=True)
progress_log = logging.getLogger(PROGRESS_LOGGER)


class _QuietFilter(logging.Filter):
    """Lets warnings and milestone lines through always, other records only when not quiet."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.quiet or record.levelno >= logging.WARNING or record.name == PROGRESS_LOGGER


def _terminal_handler(logger: logging.Logger) -> tuple[RichHandler, _QuietFilter]:
    """The logger's terminal handler (made once per process) and its quiet filter."""
    for handler in logger.handlers:
        for known in handler.filters:
            if isinstance(known, _QuietFilter) and isinstance(handler, RichHandler):
                return handler, known
    handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    quiet_filter = _QuietFilter()
    handler.addFilter(quiet_filter)
    logger.addHandler(handler)
    return handler, quiet_filter


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None, line: str | None = None
) -> None:
    """Python warnings in words, through the log (no source path or code line)."""
    logging.getLogger(LOGGER).warning("%s", message)


def setup_logging(verbose: bool = True) -> None:
    """INFO and up from modalrec to the terminal (only warnings and progress lines when not ``verbose``).

    The logger itself stays at INFO either way, so file handlers (a run's train.log) get every line.
    Python warnings are said once each, in words, through the log.
    """
    logger = logging.getLogger(LOGGER)
    _, quiet_filter = _terminal_handler(logger)
    quiet_filter.quiet = not verbose
    logger.setLevel(logging.INFO)
    warnings.simplefilter("default")  # each distinct warning once
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(?!modalrec)")  # libraries' notes to their developers
    warnings.showwarning = _show_warning


def print_error(message: object) -> None:
    """``error: <message>`` on stderr, the message as plain text (no rich markup is interpreted in it)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(message)), highlight=False, soft_wrap=True)


def print_warning(message: object) -> None:
    """``warning: <message>`` on stderr, as plain text like :func:`print_error`."""
    err_console.print(Text.assemble(("warning:", "bold yellow"), " ", str(message)), highlight=False, soft_wrap=True)


class _RateColumn(ProgressColumn):
    """Units per second so far (blank until there is a rate)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.1f} {self.unit}/s" if task.speed else "")


class Bar:
    """A handle on one running bar: ``advance(n, status)`` moves it ``n`` units and sets its status text."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1, status: str | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        if status is None:
            self._progress.update(self._task, advance=n)
        else:
            self._progress.update(self._task, advance=n, status=status)


@contextlib.contextmanager
def progress(description: str, total: float | None, *, unit: str = "items", enabled: bool = True) -> Iterator[Bar]:
    """A live bar for one task of ``total`` units (``unit="bytes"`` shows sizes and transfer speed).

    Shown only when ``enabled`` and stderr is a terminal, and gone when the task ends; elsewhere the
    returned :class:`Bar` does nothing, and callers log a milestone line on :data:`progress_log` instead.
    """
    if not enabled or not err_console.is_terminal:
        yield Bar(None, None)
        return
    if unit == "bytes":
        counts: tuple[ProgressColumn, ...] = (DownloadColumn(), TransferSpeedColumn())
    else:
        counts = (MofNCompleteColumn(), _RateColumn(unit))
    columns = (TextColumn("{task.description}"), BarColumn(), *counts, TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as live:
        yield Bar(live, live.add_task(description, total=total, status=""))
