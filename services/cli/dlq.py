"""``posefleet dlq list|show|replay|purge``: dead letters, for operators.

The commands talk to the gateway's ``/v1/deadletters`` API (``POSEFLEET_URL``, an operator's
``POSEFLEET_API_KEY``), not to Redis: in a cluster an operator reaches the API, and Redis stays
private; the API checks the operator role and records who replayed what. Results go to stdout
(``--json``: one JSON object per line, complete, for ``jq`` and pipes), progress and errors to
stderr.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from services.cli.client import DEFAULT_URL, JobClient, JobClientError

app = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: tasks that exhausted their attempts (operators; via the gateway API).",
)
console = Console(stderr=True, soft_wrap=True)
output = Console(soft_wrap=True)

UrlOption = Annotated[str, typer.Option(envvar="POSEFLEET_URL", help="gateway URL")]
KeyOption = Annotated[
    str | None, typer.Option(envvar="POSEFLEET_API_KEY", help="an operator's API key")
]
StageOption = Annotated[str | None, typer.Option("--stage", "-s", help="one stage only")]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object per line")]
RefsArgument = Annotated[
    list[str] | None, typer.Argument(help="dead letters: ID with --stage, or STAGE/ID")
]
AllOption = Annotated[bool, typer.Option("--all", help="every dead letter (of --stage)")]
_DONE = ("replayed", "purged", "kept")  # the outcomes that are not a problem


def _fail(exc: JobClientError) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(2)


def _pages(client: JobClient, method: str, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of a paged call, following ``next`` until it is null."""
    after = None
    while True:
        page = client.call(method, path, {**params, "after": after})
        yield page
        after = page["next"]
        if after is None:
            return


def _progress(what: str, total: int) -> Progress:
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn())
    # Live progress only where someone watches: stderr may be a terminal while stdout is a pipe.
    disable = total == 0 or not console.is_terminal
    return Progress(*columns, console=console, transient=True, disable=disable)


def _total(client: JobClient, stage: str | None) -> int:
    counts = client.call("GET", "/v1/deadletters", {"stage": stage, "limit": 1})["counts"]
    return counts.get(stage, 0) if stage else sum(counts.values())


@app.command("list")
def list_letters(
    stage: StageOption = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Every dead letter, oldest first, stage by stage."""
    items: list[dict[str, Any]] = []
    try:
        with JobClient(url, api_key) as client:
            total = _total(client, stage)
            with _progress("reading dead letters", total) as progress:
                task = progress.add_task("list", total=total)
                for page in _pages(client, "GET", "/v1/deadletters", stage=stage):
                    for item in page["items"]:
                        if as_json:
                            print(json.dumps(item), flush=True)
                        items.append(item)
                    progress.advance(task, len(page["items"]))
    except JobClientError as exc:
        raise _fail(exc) from None
    if not as_json:
        _print_letters(items)


_COLUMNS = ("stage", "id", "at", "job", "node", "reason", "error")


def _print_letters(items: list[dict[str, Any]]) -> None:
    """A table on a terminal; in a pipe, one tab-separated line per letter (header first), so
    nothing is folded or cut and ``cut``/``awk`` work."""
    rows = [
        [*(x[c] for c in _COLUMNS[:-1]), f"{x['error']['code']}: {x['error']['message']}"]
        for x in items
    ]
    if not output.is_terminal:
        for row in [list(_COLUMNS), *rows]:
            print("\t".join(row))
        return
    table = Table(title=f"{len(items)} dead letter(s)")
    for column in _COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))
    output.print(table)


@app.command()
def show(
    entry_id: Annotated[str, typer.Argument(help="ID with --stage, or STAGE/ID")],
    stage: StageOption = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """One dead letter, with its job's status now."""
    (ref,) = _refs([entry_id], stage)
    try:
        with JobClient(url, api_key) as client:
            letter = client.call("GET", f"/v1/deadletters/{ref}")
    except JobClientError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(letter))
        return
    for key, value in letter.items():
        shown = json.dumps(value) if isinstance(value, dict) else value
        output.print(f"[bold]{key}[/bold]: {escape(str(shown))}")


@app.command()
def replay(
    refs: RefsArgument = None,
    stage: StageOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Run the named dead letters' jobs again (or --all): attempts reset, the replay recorded on
    the job. Exit 1 if any could not be replayed (the reason is printed)."""
    _act("replay", refs, stage, every, as_json, url, api_key, {})


@app.command()
def purge(
    refs: RefsArgument = None,
    stage: StageOption = None,
    every: AllOption = False,
    only_expired: Annotated[
        bool, typer.Option(help="only letters whose job has expired (never replayable)")
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Delete the named dead letters (or --all, or --all --only-expired)."""
    _act("purge", refs, stage, every, as_json, url, api_key, {"only_expired": only_expired})


def _refs(ids: list[str], stage: str | None) -> list[str]:
    if stage is None and any("/" not in i for i in ids):
        console.print("[red]error:[/red] give --stage, or name letters as STAGE/ID")
        raise typer.Exit(2)
    return [i if "/" in i else f"{stage}/{i}" for i in ids]


def _act(
    action: str,
    refs: list[str] | None,
    stage: str | None,
    every: bool,
    as_json: bool,
    url: str,
    api_key: str | None,
    params: dict[str, Any],
) -> None:
    """Replay or purge named letters (one call) or every letter (page by page, with progress);
    print each result and a summary; exit 1 unless every letter was done."""
    if bool(refs) == every:
        console.print(f"[red]error:[/red] name the dead letters to {action}, or give --all")
        raise typer.Exit(2)
    path = f"/v1/deadletters/{action}"
    results: list[dict[str, Any]] = []
    try:
        with JobClient(url, api_key) as client:
            if refs:
                chosen = {"refs": _refs(refs, stage)}
                pages: Iterator[dict[str, Any]] = iter([client.call("POST", path, params, chosen)])
                total = len(refs)
            else:
                pages = _pages(client, "POST", path, stage=stage, **params)
                total = _total(client, stage)
            with _progress(f"{action} dead letters", total) as progress:
                task = progress.add_task(action, total=total)
                for page in pages:
                    for result in page["results"]:
                        _print_result(result, as_json)
                    results += page["results"]
                    progress.advance(task, len(page["results"]))
    except JobClientError as exc:
        raise _fail(exc) from None
    counts = Counter(r["outcome"] for r in results)
    console.print(", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "nothing to do")
    raise typer.Exit(0 if set(counts) <= set(_DONE) else 1)


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    elif result["outcome"] not in _DONE:
        detail = f" ({result['detail']})" if result["detail"] else ""
        output.print(
            f"{result['stage']}/{result['id']} job {result['job']}: "
            f"[yellow]{result['outcome']}[/yellow]{escape(detail)}"
        )
