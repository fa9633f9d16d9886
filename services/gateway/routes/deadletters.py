"""``/v1/deadletters``: operators list, inspect, replay and purge the tasks that exhausted their
attempts. Fleet-wide, so every route needs an operator (403 for other tenants, 401 without a
key when keys are configured). The work is services/core/deadletters.py, run in the thread pool
on the sync client: these are rare operator actions, not the hot path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from services.core.deadletters import BadCursor, DeadLetter, DeadLetters, Result, UnknownStage
from services.gateway.deps import Gateway, gateway, operator
from services.gateway.errors import Problem, problem_responses
from services.gateway.schemas import (
    DeadLetterBulk,
    DeadLetterDetail,
    DeadLetterPage,
    DeadLetterResult,
    DeadLetterSelection,
)

router = APIRouter(prefix="/v1/deadletters", tags=["dead letters"])
GatewayDep = Annotated[Gateway, Depends(gateway)]
OperatorDep = Annotated[str, Depends(operator)]
StageQuery = Annotated[str | None, Query(description="one stage (default: every stage)")]
AfterQuery = Annotated[str | None, Query(description="the `next` cursor of the previous page")]
LimitQuery = Annotated[
    int | None,
    Query(ge=1, description="default 100, at most POSEFLEET_DEAD_LETTER_PAGE_MAX (1000)"),
]
_DEFAULT_LIMIT = 100

_ERRORS = problem_responses(
    {
        400: "malformed reference (stage/id, also the cursor) or limit",
        401: "missing or invalid API key",
        403: "not an operator's API key",
        404: "unknown stage or dead letter",
        409: "the dead letter cannot be replayed (job expired, not failed by it, inputs gone)",
        503: "Redis unreachable",
    }
)
# Why a single replay was refused, for operators and scripts alike.
_REFUSALS = {
    "not_found": (404, "dead_letter_not_found", "no such dead letter (replayed or purged?)"),
    "job_expired": (409, "job_expired", "cannot replay: the job expired (purge the letter)"),
    "not_failed_here": (
        409,
        "job_not_failed_by_this_dead_letter",
        "cannot replay: the job is {detail}, not failed by this dead letter",
    ),
    "inputs_gone": (
        409,
        "inputs_gone",
        "cannot replay: the node's input {detail} is no longer stored "
        "(POSEFLEET_DEAD_LETTER_KEEP_INPUT_S)",
    ),
}

T = TypeVar("T")


async def _run(gw: Gateway, work: Callable[[DeadLetters], T]) -> T:
    """Run ``work`` in the thread pool; an unknown stage or a bad cursor is the caller's."""
    letters = DeadLetters(gw.sync_redis, gw.config.stages)
    try:
        return await run_in_threadpool(work, letters)
    except UnknownStage as exc:
        raise Problem(404, "stage_not_found", str(exc)) from None
    except BadCursor as exc:
        raise Problem(400, "bad_reference", str(exc)) from None


def _limit(gw: Gateway, limit: int | None, selection: DeadLetterSelection | None = None) -> int:
    """The page size; also refuses a selection that names more letters than one call takes."""
    most = gw.settings.dead_letter_page_max
    if selection is not None and len(selection.refs) > most:
        raise Problem(400, "limit_too_large", f"name at most {most} dead letters per call")
    if limit is None:
        return min(_DEFAULT_LIMIT, most)
    if limit > most:
        raise Problem(400, "limit_too_large", f"limit is at most {most} per call; page with after=")
    return limit


def _one(letters: DeadLetters, stage: str, entry_id: str) -> DeadLetter:
    letter = letters.get(stage, entry_id)
    if letter is None:
        raise Problem(404, "dead_letter_not_found", f"no dead letter {entry_id} in stage {stage}")
    return letter


def _choose(
    letters: DeadLetters,
    selection: DeadLetterSelection | None,
    stage: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[DeadLetter], list[Result], str | None]:
    """What a bulk call acts on: the letters its body names (and a result for each one that is
    not there), or else one page."""
    if selection is None:
        page, next_cursor = letters.page(stage, after, limit)
        return page, [], next_cursor
    found, missing = letters.select(selection.refs)
    return found, missing, None


def _bulk(results: list[Result], next_cursor: str | None) -> dict[str, Any]:
    return {
        "results": [r.view() for r in results],
        "counts": dict(Counter(r.outcome for r in results)),
        "next": next_cursor,
    }


@router.get("", response_model=DeadLetterPage, responses=_ERRORS)
async def list_dead_letters(
    gw: GatewayDep,
    _caller: OperatorDep,
    stage: StageQuery = None,
    after: AfterQuery = None,
    limit: LimitQuery = None,
) -> dict[str, Any]:
    """Dead letters oldest first, stage by stage in name order, one page at a time."""
    limit = _limit(gw, limit)

    def work(letters: DeadLetters) -> dict[str, Any]:
        items, next_cursor = letters.page(stage, after, limit)
        return {
            "items": [x.view() for x in items],
            "counts": letters.counts(),
            "next": next_cursor,
        }

    return await _run(gw, work)


@router.get("/{stage}/{entry_id}", response_model=DeadLetterDetail, responses=_ERRORS)
async def show_dead_letter(
    stage: str, entry_id: str, gw: GatewayDep, _caller: OperatorDep
) -> dict[str, Any]:
    """One dead letter, with its job's status now (null once the job expired)."""

    def work(letters: DeadLetters) -> dict[str, Any]:
        letter = _one(letters, stage, entry_id)
        return {**letter.view(), "job_status": letters.job_status(letter)}

    return await _run(gw, work)


@router.post("/{stage}/{entry_id}/replay", response_model=DeadLetterResult, responses=_ERRORS)
async def replay_dead_letter(
    stage: str, entry_id: str, gw: GatewayDep, caller: OperatorDep
) -> dict[str, Any]:
    """Run the job again from where this dead letter failed it: the node's attempts reset, the
    replay recorded in the job's `replays`, the dead letter removed. Refused (404/409, nothing
    changed) unless the job still exists and failed because of this dead letter."""
    ttl, deadline = gw.settings.result_ttl_s, gw.settings.job_deadline_s

    def work(letters: DeadLetters) -> Result:
        letter = _one(letters, stage, entry_id)
        return letters.replay([letter], caller, ttl_s=ttl, deadline_s=deadline)[0]

    result = await _run(gw, work)
    if result.outcome in _REFUSALS:
        status, code, detail = _REFUSALS[result.outcome]
        raise Problem(status, code, detail.format(detail=result.detail), job=result.job)
    return result.view()


@router.post("/replay", response_model=DeadLetterBulk, responses=_ERRORS)
async def replay_dead_letters(
    gw: GatewayDep,
    caller: OperatorDep,
    selection: Annotated[DeadLetterSelection | None, Body()] = None,
    stage: StageQuery = None,
    after: AfterQuery = None,
    limit: LimitQuery = None,
) -> dict[str, Any]:
    """Replay the dead letters named in the body, or else one page of them (call again with
    `after=next` until `next` is null). Those that cannot be replayed stay, with the reason in
    their result."""
    limit = _limit(gw, limit, selection)
    ttl, deadline = gw.settings.result_ttl_s, gw.settings.job_deadline_s

    def work(letters: DeadLetters) -> dict[str, Any]:
        chosen, missing, next_cursor = _choose(letters, selection, stage, after, limit)
        return _bulk(
            missing + letters.replay(chosen, caller, ttl_s=ttl, deadline_s=deadline), next_cursor
        )

    return await _run(gw, work)


@router.delete("/{stage}/{entry_id}", status_code=204, responses=_ERRORS)
async def purge_dead_letter(
    stage: str, entry_id: str, gw: GatewayDep, _caller: OperatorDep
) -> Response:
    """Delete one dead letter (its job, if it still exists, stays failed)."""

    def work(letters: DeadLetters) -> list[Result]:
        return letters.purge([_one(letters, stage, entry_id)])

    await _run(gw, work)
    return Response(status_code=204)


@router.post("/purge", response_model=DeadLetterBulk, responses=_ERRORS)
async def purge_dead_letters(
    gw: GatewayDep,
    _caller: OperatorDep,
    selection: Annotated[DeadLetterSelection | None, Body()] = None,
    stage: StageQuery = None,
    after: AfterQuery = None,
    limit: LimitQuery = None,
    only_expired: Annotated[
        bool, Query(description="only letters whose job has expired (never replayable)")
    ] = False,
) -> dict[str, Any]:
    """Delete the dead letters named in the body, or else one page of them (call again with
    `after=next` until `next` is null)."""
    limit = _limit(gw, limit, selection)

    def work(letters: DeadLetters) -> dict[str, Any]:
        chosen, missing, next_cursor = _choose(letters, selection, stage, after, limit)
        return _bulk(missing + letters.purge(chosen, only_expired=only_expired), next_cursor)

    return await _run(gw, work)
