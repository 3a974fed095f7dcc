"""Writes: summaries (which end a session's work), the merge that closes a broadcast, and
interventions (a child continuing from a chain of summaries).

Locks: the thread row, then the session row (threads.locks), re-checked under the lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from common.errors import InvalidInput, NotFound
from sessions_app.errors import (
    AlreadySummarized,
    ArtifactRefCycle,
    ChildrenRunning,
    InterventionDepthExceeded,
)
from sessions_app.models import (
    AGENT_SUMMARY_MAX_CHARS,
    Session,
    SessionStatus,
    SubSession,
    SubSessionKind,
    SubSessionStatus,
    Summary,
)
from sessions_app.session_rows import Actor, illegal_transition, session_event
from sessions_app.transitions import MERGE, Transition, transition_apply
from threads import events, locks
from threads.models import Project

S = SessionStatus

SUMMARIZABLE = (S.ACTIVE, S.LOCKED, S.AWAITING_MERGE)
SUMMARIZE = Transition("summarize", SUMMARIZABLE, S.IDLE, events.SESSION_SUMMARIZED)


@dataclass(frozen=True)
class SummaryIn:
    outcome_status: str
    agent_summary: str
    outcome_verdict: str = ""
    key_decisions: tuple = ()
    deliverables: tuple = ()

    def matches(self, summary: Summary) -> bool:
        return (
            summary.outcome_status == self.outcome_status
            and summary.outcome_verdict == self.outcome_verdict
            and summary.agent_summary == self.agent_summary
            and summary.key_decisions == list(self.key_decisions)
            and summary.deliverables == list(self.deliverables)
        )


def session_summarize(
    *, session: Session, summary: SummaryIn, actor: Actor | None = None
) -> tuple[Summary, bool]:
    """Store the session's summary and move it active|locked|awaiting_merge → idle, in one
    transaction. Returns (summary, created): the same summary again is a no-op; a
    different one is 409 already_summarized."""
    if len(summary.agent_summary) > AGENT_SUMMARY_MAX_CHARS:
        raise InvalidInput(
            f"agent_summary is longer than {AGENT_SUMMARY_MAX_CHARS} characters.",
            fields={"agent_summary": [f"At most {AGENT_SUMMARY_MAX_CHARS} characters."]},
        )
    with transaction.atomic():
        thread = locks.lock_open_thread(session.thread_id)
        current = locks.lock_session(session.pk)
        existing = Summary.objects.filter(session_id=current.pk).first()
        if existing is not None:
            if summary.matches(existing):
                return existing, False
            raise AlreadySummarized(summary=existing.pk)
        if current.status not in SUMMARIZABLE:
            raise illegal_transition(current.pk, "summarize")
        edge = SubSession.objects.filter(child_id=current.pk).first()
        stored = Summary.objects.create(
            tenant_id=current.tenant_id,
            session=current,
            outcome_status=summary.outcome_status,
            outcome_verdict=summary.outcome_verdict,
            agent_summary=summary.agent_summary,
            key_decisions=list(summary.key_decisions),
            deliverables=list(summary.deliverables),
            prev_summary_id=edge.prev_summary_id if edge is not None else None,
            materialized_by=actor or current.current_actor,
        )
        transition_apply(
            current,
            SUMMARIZE,
            thread=thread,
            summary=stored.pk,
            outcome=stored.outcome,
        )
    return stored, True


def session_merge(*, session: Session) -> Session:
    """Close a broadcast: awaiting_merge → idle once every broadcast child is idle, failed
    or archived (else 409 children_running); their sub-sessions become merged."""
    with transaction.atomic():
        thread = locks.lock_open_thread(session.thread_id)
        current = locks.lock_session(session.pk)
        if current.status != S.AWAITING_MERGE:
            raise illegal_transition(current.pk, "merge")
        edges = SubSession.objects.filter(parent_id=current.pk, broadcast_id__isnull=False).exclude(
            status__in=(SubSessionStatus.MERGED, SubSessionStatus.ARCHIVED)
        )
        running = list(
            Session.objects.filter(parent_edge__in=edges)
            .exclude(status__in=(S.IDLE, S.FAILED, S.ARCHIVED))
            .order_by("created_at", "id")
            .values("id", "status")
        )
        if running:
            raise ChildrenRunning(running=running[:50], total_running=len(running))
        merged = list(edges.values_list("id", flat=True))
        SubSession.objects.filter(pk__in=merged).update(
            status=SubSessionStatus.MERGED, updated_at=timezone.now()
        )
        transition_apply(current, MERGE, thread=thread, subsessions=merged)
    session.refresh_from_db()
    return session


def _check_summary_chain(*, session: Session, prev: Summary, limit: int) -> None:
    """Walk prev → prev.prev_summary → …; the session's own summary is pre-marked visited.
    A revisit is a cycle; a chain longer than `limit` is too deep."""
    visited: set[str] = set()
    own = Summary.objects.filter(session_id=session.pk).values_list("pk", flat=True).first()
    if own:
        visited.add(own)
    node: str | None = prev.pk
    length = 0
    while node:
        if node in visited:
            raise ArtifactRefCycle(summary=node, chain_length=length)
        visited.add(node)
        length += 1
        if length > limit:
            raise InterventionDepthExceeded(depth=length, limit=limit)
        node = Summary.objects.filter(pk=node).values_list("prev_summary_id", flat=True).first()


def session_intervene(
    *, session: Session, actor: Actor, prev_summary_id: str | None = None
) -> tuple[Session, SubSession]:
    """An intervention: a child session (idle) owned by `actor`, on an intervention edge that
    continues from `prev_summary` (whose chain is checked for cycles and depth)."""
    project = Project.objects.get(pk=session.project_id)
    prev = None
    if prev_summary_id:
        prev = Summary.objects.filter(tenant_id=session.tenant_id, pk=prev_summary_id).first()
        if prev is None:
            raise NotFound("Summary not found.", field="prev_summary", id=prev_summary_id)
        _check_summary_chain(session=session, prev=prev, limit=project.max_intervention_depth)
    with transaction.atomic():
        locks.lock_open_thread(session.thread_id)
        parent = locks.lock_session(session.pk)
        if parent.status == S.ARCHIVED:
            raise illegal_transition(parent.pk, "intervene")
        child = Session.objects.create(
            tenant_id=parent.tenant_id,
            thread_id=parent.thread_id,
            project_id=parent.project_id,
            current_actor=actor,
            depth=parent.depth + 1,
        )
        edge = SubSession.objects.create(
            tenant_id=parent.tenant_id,
            parent=parent,
            child=child,
            kind=SubSessionKind.INTERVENTION,
            status=SubSessionStatus.IDLE,
            prev_summary=prev,
        )
        session_event(
            parent,
            events.SESSION_INTERVENTION_CREATED,
            child=child.pk,
            subsession=edge.pk,
            actor=actor,
            prev_summary=prev.pk if prev else None,
        )
    return child, edge
