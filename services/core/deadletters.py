"""Dead letters: the tasks that exhausted ``max_attempts``, one stream per stage
(``pf:dead:{stage}``, written by fail.lua), and what an operator does with them — list, show,
replay, purge.

A replay is one atomic DAG step (replay.lua, ``DagSteps.replay``): the job must still exist and
have failed because of this very dead letter; then it runs again from where it failed, with the
dead node's attempts reset, and the replay is recorded on the job (``replays``). Everything is
paged by a cursor (``stage/entry-id``, stages in name order), so no call reads a whole stream:
a stream holds up to ~10,000 entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from services.core import keys
from services.core.dag import DagSteps, parse_replay
from services.core.jobs import iso_ms

Outcome = Literal["replayed", "not_found", "job_expired", "not_failed_here", "inputs_gone"]
OUTCOMES: tuple[Outcome, ...] = (
    "replayed",
    "not_found",
    "job_expired",
    "not_failed_here",
    "inputs_gone",
)


class UnknownStage(LookupError):
    pass


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str
    id: str  # the entry id in the dead-letter stream
    job: str
    node: str
    entry: str  # the id the task had in its stage stream
    reason: str
    error: dict[str, Any]

    @property
    def ref(self) -> str:
        """``stage/id``: names the letter across stages, and is the paging cursor."""
        return f"{self.stage}/{self.id}"

    def view(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "id": self.id,
            "at": iso_ms(self.id.split("-", 1)[0]),
            "job": self.job,
            "node": self.node,
            "entry": self.entry,
            "reason": self.reason,
            "error": self.error,
        }

    @classmethod
    def parse(cls, stage: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            stage,
            entry_id.decode(),
            text["job"],
            text["node"],
            text["entry"],
            text["reason"],
            json.loads(text["error"]),
        )


@dataclass(frozen=True, slots=True)
class Result:
    """What replay or purge did with one dead letter."""

    stage: str
    id: str
    job: str | None
    outcome: str  # an Outcome for a replay; "purged", "kept" or "not_found" for a purge
    detail: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "id": self.id,
            "job": self.job,
            "outcome": self.outcome,
            "detail": self.detail or None,
        }


class DeadLetters:
    """The dead letters of ``stages`` in one Redis (a sync client: operator actions are rare
    and the gateway runs them in its thread pool)."""

    def __init__(self, client: redis.Redis, stages: Iterable[str]) -> None:
        self._client = client
        self._stages = sorted(stages)
        self._steps = DagSteps(client)

    def _check(self, stage: str) -> None:
        if stage not in self._stages:
            raise UnknownStage(f"no stage '{stage}' (known: {self._stages})")

    def counts(self) -> dict[str, int]:
        """Dead letters per stage, every stage listed."""
        pipe = self._client.pipeline(transaction=False)
        for stage in self._stages:
            pipe.xlen(keys.dead(stage))
        return dict(zip(self._stages, pipe.execute(), strict=True))

    def page(
        self, stage: str | None = None, after: str | None = None, limit: int = 100
    ) -> tuple[list[DeadLetter], str | None]:
        """Up to ``limit`` letters after the cursor ``after`` (of one stage, or of all in stage
        order), oldest first, and the cursor of the next page (None when this one is the last)."""
        stages = self._stages
        if stage is not None:
            self._check(stage)
            stages = [stage]
        from_stage, from_id = _split_cursor(after) if after else ("", "")
        letters: list[DeadLetter] = []
        for current in stages:
            if current < from_stage or len(letters) == limit:
                continue
            start = f"({from_id}" if current == from_stage and from_id else "-"
            rows = self._client.xrange(keys.dead(current), start, "+", count=limit - len(letters))
            letters += [DeadLetter.parse(current, i, f) for i, f in rows]
        return letters, letters[-1].ref if len(letters) == limit else None

    def select(self, refs: list[str]) -> tuple[list[DeadLetter], list[Result]]:
        """The letters named by ``stage/id`` refs, and a ``not_found`` result for each ref that
        names none (one round trip)."""
        named = [_split_cursor(ref) for ref in refs]
        for stage, _ in named:
            self._check(stage)
        pipe = self._client.pipeline(transaction=False)
        for stage, entry_id in named:
            pipe.xrange(keys.dead(stage), entry_id, entry_id)
        found, missing = [], []
        for (stage, entry_id), rows in zip(named, pipe.execute(), strict=True):
            if rows:
                found.append(DeadLetter.parse(stage, *rows[0]))
            else:
                missing.append(Result(stage, entry_id, None, "not_found"))
        return found, missing

    def get(self, stage: str, entry_id: str) -> DeadLetter | None:
        self._check(stage)
        rows = self._client.xrange(keys.dead(stage), entry_id, entry_id) if _is_id(entry_id) else []
        return DeadLetter.parse(stage, *rows[0]) if rows else None

    def job_status(self, letter: DeadLetter) -> str | None:
        """The job's status now; None once it has expired."""
        status = self._client.hget(keys.job(letter.job), "status")
        return status.decode() if status is not None else None

    def replay(
        self, letters: list[DeadLetter], by: str, *, ttl_s: int, deadline_s: float
    ) -> list[Result]:
        """Replay each letter (one round trip for all), recording ``by`` on its job."""
        pipe = self._client.pipeline(transaction=False)
        for letter in letters:
            self._steps.replay(
                letter.stage,
                letter.id,
                letter.job,
                by,
                ttl_s=ttl_s,
                deadline_s=deadline_s,
                client=pipe,
            )
        replies = [parse_replay(raw) for raw in pipe.execute()]
        return [
            Result(letter.stage, letter.id, letter.job, reply.outcome, reply.detail)
            for letter, reply in zip(letters, replies, strict=True)
        ]

    def purge(self, letters: list[DeadLetter], *, only_expired: bool = False) -> list[Result]:
        """Delete letters — with ``only_expired``, only those whose job has expired, which can
        never be replayed; the others are ``kept``."""
        kept: list[Result] = []
        if only_expired:
            pipe = self._client.pipeline(transaction=False)
            for letter in letters:
                pipe.exists(keys.job(letter.job))
            live = pipe.execute()
            kept = [
                Result(x.stage, x.id, x.job, "kept", "the job still exists")
                for x, exists in zip(letters, live, strict=True)
                if exists
            ]
            letters = [x for x, exists in zip(letters, live, strict=True) if not exists]
        pipe = self._client.pipeline(transaction=False)
        for letter in letters:
            pipe.xdel(keys.dead(letter.stage), letter.id)
        return kept + [
            Result(letter.stage, letter.id, letter.job, "purged" if deleted else "not_found")
            for letter, deleted in zip(letters, pipe.execute(), strict=True)
        ]


def _split_cursor(ref: str) -> tuple[str, str]:
    """A cursor or a ref: ``stage/entry-id``."""
    stage, _, entry_id = ref.rpartition("/")
    if not stage or not _is_id(entry_id):
        raise BadCursor(f"bad reference '{ref}': expected STAGE/ENTRY-ID")
    return stage, entry_id


def _is_id(entry_id: str) -> bool:
    """A stream entry id (``ms-seq``), so a malformed one is a clear 'not found', not an error."""
    ms, _, seq = entry_id.partition("-")
    return ms.isdigit() and seq.isdigit()
