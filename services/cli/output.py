"""How every ``posefleet`` listing prints, and the options every gateway command shares.

Listings are for people and for scripts: ``--json`` prints the data as JSON; on a terminal a
table whose cells wrap instead of being cut; into a pipe or a file, plain tab-separated text
with a header line and nothing truncated, so ``posefleet models list | grep thunder`` and
``cut -f1`` work at any width. Progress and errors go to stderr, results to stdout, and every
error is one line and a non-zero exit status (docs/cli.md lists them).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.client import JobClient, JobClientError

# Exit statuses (docs/cli.md): 1 = the job or batch did not succeed; 2 = the request failed.
EXIT_NOT_SUCCEEDED = 1
EXIT_ERROR = 2

stderr = Console(stderr=True, soft_wrap=True)

UrlOption = Annotated[
    str,
    typer.Option(envvar="POSEFLEET_URL", help="gateway URL (env POSEFLEET_URL)"),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(envvar="POSEFLEET_API_KEY", help="API key (env POSEFLEET_API_KEY)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
RetryOption = Annotated[
    bool,
    typer.Option("--retry", help="on 429/503, wait for Retry-After and try again"),
]
DEFAULT_URL = "http://127.0.0.1:8080"


def is_terminal() -> bool:
    return sys.stdout.isatty()


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str, as_json: bool
) -> None:
    """A listing: JSON, a wrapped table on a terminal, or tab-separated text in a pipe."""
    if as_json:
        print_json(list(rows))
        return
    if not is_terminal():
        print("\t".join(columns))
        for row in rows:
            print("\t".join(_cell(row.get(c)) for c in columns))
        return
    table = Table(title=title)
    names = [_cell(row.get(columns[0])) for row in rows]
    # the first column names the row: never wrapped; the others fold instead of being cut
    table.add_column(columns[0], no_wrap=True, min_width=max(map(len, [*names, columns[0]])))
    for column in columns[1:]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(_cell(row.get(c))) for c in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def client(url: str, api_key: str | None, retry: bool = False) -> JobClient:
    return JobClient(url, api_key, retry=retry, on_wait=lambda m: stderr.print(f"[dim]{m}[/dim]"))


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) sets the yielded event instead of raising KeyboardInterrupt wherever the
    main thread happens to be, so a refresh loop ends between two requests, never inside the
    HTTP client: an interrupt that lands while httpcore holds its connection pool's lock makes
    the client's own cleanup wait on that lock forever (encode/httpcore#990). A second Ctrl-C
    raises KeyboardInterrupt as usual."""
    stop = threading.Event()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def errors_as_one_line() -> Iterator[None]:
    """A failed request becomes one red line on stderr and exit status 2."""
    try:
        yield
    except JobClientError as exc:
        stderr.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        stderr.print("interrupted")
        raise typer.Exit(130) from None
