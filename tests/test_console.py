"""The console module: what --quiet keeps, plain-text errors, and the one progress bar."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from modalrec import console


@pytest.fixture
def terminal_handler_reset():
    """Remove the terminal handler added by a test, so the next test starts from a fresh logger."""
    logger = logging.getLogger(console.LOGGER)
    before = list(logger.handlers)
    yield logger
    for handler in logger.handlers[:]:
        if handler not in before:
            logger.removeHandler(handler)


def test_quiet_keeps_warnings_and_progress_lines(terminal_handler_reset, capsys) -> None:
    logger = terminal_handler_reset
    console.setup_logging(verbose=False)
    logger.info("loading the data")
    console.progress_log.info("epoch 1/3  loss 0.5")
    logger.warning("something to act on")
    quiet = capsys.readouterr().err
    assert "epoch 1/3" in quiet and "something to act on" in quiet and "loading the data" not in quiet
    console.setup_logging(verbose=True)
    logger.info("loading the data")
    assert "loading the data" in capsys.readouterr().err
    assert sum(isinstance(f, console._QuietFilter) for h in logger.handlers for f in h.filters) == 1  # one handler


def test_quiet_filters_only_the_terminal_not_a_log_file(terminal_handler_reset, tmp_path) -> None:
    logger = terminal_handler_reset
    console.setup_logging(verbose=False)
    file_handler = logging.FileHandler(tmp_path / "train.log")
    logger.addHandler(file_handler)
    try:
        logger.info("run folder made")
        console.progress_log.info("epoch 1/3")
    finally:
        logger.removeHandler(file_handler)
        file_handler.close()
    recorded = (tmp_path / "train.log").read_text()
    assert "run folder made" in recorded and "epoch 1/3" in recorded


@pytest.mark.parametrize(
    "message",
    [
        "serving needs FastAPI and uvicorn: pip install 'modalrec[serve]'",
        "needs 'modalrec[text]' and [bold]not bold[/bold]",
        "unbalanced [/red] tag",
    ],
)
def test_errors_print_brackets_as_written(message: str, capsys) -> None:
    console.print_error(message)
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_progress_bar_shows_on_a_terminal_and_nowhere_else(monkeypatch, capsys) -> None:
    with console.progress("epoch 1/2", 4) as bar:  # stderr captured: not a terminal
        bar.advance(2, "loss 0.3")
    assert capsys.readouterr().err == ""
    screen = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=screen, force_terminal=True, width=120))
    with console.progress("epoch 1/2", 4, unit="steps") as bar:
        bar.advance(2, "loss 0.3")
        bar.advance(2)
    with console.progress("ml-1m.zip", 2048, unit="bytes") as bar:
        bar.advance(1024)
    shown = screen.getvalue()
    assert "epoch 1/2" in shown and "ml-1m.zip" in shown
