"""A handoff's writes as one statement (handoffs/statements.py) are the ORM's writes."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction
from django.forms.models import model_to_dict

from handoffs import selectors, services, statements
from handoffs.models import Handoff
from handoffs.statements import Insert, Update, claim_with
from sessions_app.models import Session, SubSession
from sessions_app.session_rows import session_event_row
from tests.sessions_app.fixtures import agent
from threads import events, locks
from threads.models import Event

# Ids and times differ from one run to the next; everything else must not.
UNIQUE = {"id", "public_id", "created_at", "updated_at", "completed_at", "lock_expires_at"}


def _rows(source: Session) -> dict[str, Any]:
    """Every row a handoff of `source` wrote, with its ids replaced by their order of
    appearance (so two runs on two sources compare equal when they wrote the same)."""
    ids: dict[str, str] = {}

    def norm(value: Any) -> Any:
        if isinstance(value, str) and value[:4] in ("ses_", "sub_", "hof_", "evt_", "thd_"):
            return ids.setdefault(value, f"<{value[:3]} {len(ids)}>")
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, dict):  # an event's payload: its lease's end is a time too
            return {k: "<time>" if k in UNIQUE else norm(v) for k, v in value.items()}
        return value

    def plain(obj) -> dict[str, Any]:
        fields = [f.name for f in obj._meta.concrete_fields if f.name not in UNIQUE]
        return norm(model_to_dict(obj, fields=fields))

    norm(source.pk)
    handoffs = list(Handoff.objects.filter(source_session=source).order_by("position"))
    edges = [SubSession.objects.get(pk=h.subsession_id) for h in handoffs]  # as recipients
    children = [Session.objects.get(pk=h.recipient_session_id) for h in handoffs]
    assert SubSession.objects.filter(parent=source).count() == len(edges)
    trail = Event.objects.filter(session_id=source.pk).exclude(kind=events.SESSION_CREATED)
    return {
        "source": plain(Session.objects.get(pk=source.pk)),
        "handoffs": [plain(h) for h in handoffs],
        "edges": [plain(e) for e in edges],
        "children": [plain(c) for c in children],
        "events": [plain(e) for e in trail.order_by("id")],
    }


def _hand_off(source: Session, mode: str, recipients: list[dict]) -> None:
    services.handoff_execute(
        tenant=source.tenant,
        mode=mode,
        source_session_id=source.pk,
        expected_owner_version=0,
        recipients=recipients,
    )


@pytest.mark.parametrize(
    ("mode", "recipients"),
    [("single", [agent(1)]), ("broadcast", [agent(1), agent(2), agent(3)])],
)
def test_the_one_statement_writes_exactly_what_the_orm_writes(
    make_session, monkeypatch, mode, recipients
):
    # given two alike sources, one handed off through the ORM's statements
    by_orm, by_statement = make_session(), make_session()
    orm = functools.partial(claim_with, one_statement=False)
    with monkeypatch.context() as patched:
        patched.setattr(services, "claim_with", orm)
        _hand_off(by_orm, mode, recipients)

    # when the other is handed off as one statement per phase
    _hand_off(by_statement, mode, recipients)

    # then the rows are the same, but for their ids and times
    expected = _rows(by_orm)
    assert expected["handoffs"] and expected["children"] and len(expected["events"]) == 2
    assert _rows(by_statement) == expected


@pytest.mark.parametrize("one_statement", [True, False])
def test_a_claim_that_matches_no_row_writes_nothing_once_its_transaction_ends(
    session, one_statement
):
    event = session_event_row(session, events.HANDOFF_LOCKED, handoff="hof_x")
    claim = Update(Session, {"status": "locked"}, {"pk": session.pk, "owner_version": 7})

    with pytest.raises(RuntimeError), transaction.atomic():
        claimed = claim_with(claim, Insert([event]), one_statement=one_statement)
        assert claimed is False
        raise RuntimeError("the caller raises when nothing was claimed")

    assert not Event.objects.filter(kind=events.HANDOFF_LOCKED).exists()
    assert Session.objects.get(pk=session.pk).status == "idle"


@pytest.mark.django_db(transaction=True)
def test_as_one_statement_only_a_claim_that_matches_writes_even_with_no_transaction(
    session, make_session
):
    # given: two writes of each kind, outside any transaction: the statement commits itself
    first = session_event_row(session, events.HANDOFF_LOCKED, handoff="hof_x")
    second = session_event_row(session, events.HANDOFF_LOCKED, handoff="hof_y")
    claim = Update(Session, {"status": "locked"}, {"pk": session.pk, "owner_version": 7})
    other = make_session()  # an UPDATE of another row (one statement updates a row once)
    touch = Update(Session, {"lock_token": "touched"}, {"pk": other.pk})
    assert not connection.in_atomic_block

    # when
    claimed = claim_with(claim, Insert([first, second]), touch, one_statement=True)

    # then: neither insert nor the other update happened
    assert claimed is False
    assert not Event.objects.filter(kind=events.HANDOFF_LOCKED).exists()
    assert Session.objects.get(pk=other.pk).lock_token == ""
    assert Session.objects.get(pk=session.pk).status == "idle"

    # and when the claim matches, every write happens with it (two inserts of one model)
    claim = Update(Session, {"status": "locked"}, {"pk": session.pk, "owner_version": 0})
    assert claim_with(claim, Insert([first, second]), touch, one_statement=True) is True
    payloads = Event.objects.filter(kind=events.HANDOFF_LOCKED).values_list("payload", flat=True)
    assert sorted(p["handoff"] for p in payloads) == ["hof_x", "hof_y"]
    assert Session.objects.get(pk=session.pk).status == "locked"
    assert Session.objects.get(pk=other.pk).lock_token == "touched"


@pytest.mark.parametrize("one_statement", [True, False])
def test_a_claim_that_matches_writes_everything(session, one_statement):
    event = session_event_row(session, events.HANDOFF_LOCKED, handoff="hof_x")
    claim = Update(Session, {"owner_version": 1}, {"pk": session.pk, "owner_version__gt": -1})

    with transaction.atomic():
        assert claim_with(claim, Insert([event]), Insert([]), one_statement=one_statement)

    assert Session.objects.get(pk=session.pk).owner_version == 1
    assert Event.objects.get(kind=events.HANDOFF_LOCKED).payload == {"handoff": "hof_x"}
    assert not event._state.adding


def test_repeated_parameters_share_a_placeholder_only_within_one_column_type():
    varchar = Session._meta.get_field("lock_token")
    bigint = Session._meta.get_field("owner_version")
    params = [(varchar, "a"), (varchar, "a"), (varchar, None), (bigint, None), (bigint, 0)]
    params.append((bigint, False))  # equal to 0, but bound as a boolean
    params.append((varchar, ["a"]))  # unhashable: its own

    sql, named = statements._shared(" %s," * len(params), params)

    assert sql == " %(p0)s, %(p0)s, %(p1)s, %(p2)s, %(p3)s, %(p4)s, %(p5)s,"
    assert named == {"p0": "a", "p1": None, "p2": None, "p3": 0, "p4": False, "p5": ["a"]}


def test_the_source_selector_loads_what_the_checks_use(session):
    found = selectors.handoff_source(tenant_id=session.tenant_id, session_id=session.pk)

    assert found is not None
    source, thread_status = found
    stored = Session.objects.select_related("project", "thread").get(pk=session.pk)
    assert thread_status == stored.thread.status
    for name in selectors.SOURCE_FIELDS:
        assert getattr(source, name) == getattr(stored, name)
    for name in selectors.PROJECT_FIELDS:
        assert getattr(source.project, name) == getattr(stored.project, name)
    assert selectors.handoff_source(tenant_id="tnt_other", session_id=session.pk) is None


@pytest.mark.django_db(transaction=True)
def test_the_locked_source_read_holds_the_thread_row_and_not_the_session_row(make_session):
    # given: the source read with its thread's lock, in an open transaction
    source = make_session()
    found, probes = threading.Event(), {}

    def probe() -> None:  # another connection, while the lock is held
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
                for table, pk in (("sessions_app_session", source.pk), ("threads_thread", None)):
                    pk = pk or source.thread_id
                    try:
                        with transaction.atomic():
                            sql = f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE"
                            cursor.execute(sql, [pk])
                        probes[table] = "free"
                    except OperationalError:
                        probes[table] = "held"
        finally:
            connection.close()
            found.set()

    with transaction.atomic():
        row = selectors.handoff_source(
            tenant_id=source.tenant_id, session_id=source.pk, lock_thread=True
        )
        assert row is not None and row[0].pk == source.pk
        prober = threading.Thread(target=probe)
        prober.start()
        assert found.wait(timeout=30)
        prober.join(timeout=30)

    # then: the thread was held, the session was not
    assert probes == {"sessions_app_session": "free", "threads_thread": "held"}


def test_the_locked_source_read_keeps_the_lock_order(session):
    with transaction.atomic():
        locks.lock_sessions([session.pk])
        with pytest.raises(locks.LockOrderViolation, match="thread lock taken after a session"):
            selectors.handoff_source(
                tenant_id=session.tenant_id, session_id=session.pk, lock_thread=True
            )
