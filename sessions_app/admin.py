"""The operator's admin for sessions, sub-sessions, summaries and workspaces.

Built for big tables like threads/admin/: links by id instead of joins, raw id widgets,
prefixed-id search as one indexed equality, no COUNT(*). Nothing is edited in place: the
state of a session changes only through the services, here through actions (fail, archive,
recover lock) that record the same events as the API.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.http import HttpRequest
from django.utils.html import format_html_join

from common.admin import (
    PrefixedIdSearchMixin,
    ReadOnlyAdmin,
    apply_each,
    change_link,
    changelist_link,
)
from common.errors import DomainError
from sessions_app import recovery, transitions
from sessions_app.models import ActorKind, Session, SubSession, Summary, Workspace
from threads.models import Event, Thread


def actor_text(actor: dict | None) -> str:
    return f"{actor['kind']}:{actor['id']}" if actor else "—"


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor kind"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return ActorKind.choices

    def queryset(self, request, queryset):
        if self.value() in ActorKind.values:
            # Served by session_actor_kind (an index on current_actor->>'kind').
            return queryset.alias(actor_kind=KT("current_actor__kind")).filter(
                actor_kind=self.value()
            )
        return queryset


@admin.register(Session)
class SessionAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "thread_link",
        "status",
        "actor",
        "owner_version",
        "depth",
        "lock_expires_at",
        "updated_at",
    )
    list_filter = ("status", ActorKindFilter)
    search_fields = ("id__exact",)
    id_search = {"ses": "id", "thd": "thread_id", "prj": "project_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "thread", "project", "workspace")
    list_select_related = ("thread",)
    ordering = ("-created_at",)
    actions = ("fail", "archive", "recover_lock")
    readonly_fields = ("related",)

    @admin.display(description="Thread", ordering="thread")
    def thread_link(self, session: Session) -> str:
        return change_link(Thread, session.thread_id, str(session.thread))

    @admin.display(description="Current actor")
    def actor(self, session: Session) -> str:
        return actor_text(session.current_actor)

    @admin.display(description="Related")
    def related(self, session: Session) -> str:
        links = [
            *self.lineage_links(session),
            changelist_link(Summary, "summary", session__id__exact=session.pk),
            changelist_link(
                Event, "events", tenant__id__exact=session.tenant_id, session_id=session.pk
            ),
        ]
        if session.workspace_id:
            links.append(change_link(Workspace, session.workspace_id, "workspace"))
        return format_html_join(" · ", "{}", ((link,) for link in links))

    def lineage_links(self, session: Session) -> list[str]:
        """Where the session's work came from and went. handoffs/admin.py adds the handoffs it
        sent, by extending this admin: sessions_app does not import the app above it."""
        return [
            changelist_link(SubSession, "children", parent__id__exact=session.pk),
            changelist_link(SubSession, "parent edge", child__id__exact=session.pk),
        ]

    @admin.action(description="Fail selected sessions")
    def fail(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        apply_each(self, request, queryset, _fail, done="Failed", noun="session")

    @admin.action(description="Archive selected sessions (disposes their workspaces)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        apply_each(self, request, queryset, _archive, done="Archived", noun="session")

    @admin.action(description="Recover the lock of selected sessions (even if its lease is live)")
    def recover_lock(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        apply_each(
            self, request, queryset, _recover_lock, done="Recovered the lock of", noun="session"
        )


class LockNotRecovered(DomainError):
    """session_lock_recover answers False rather than raising; the admin counts that as this
    failure."""

    code = "not_locked_or_lease_live"
    message = "The session is not locked (or its lease is still live)."


def _fail(session: Session) -> Session:
    return transitions.session_fail(session=session, reason="failed by operator")


def _archive(session: Session) -> Session:
    return transitions.session_archive(session=session)


def _recover_lock(session: Session) -> None:
    if not recovery.session_lock_recover(session=session, force=True):
        raise LockNotRecovered(session=session.pk)


@admin.register(SubSession)
class SubSessionAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "parent_link",
        "child_link",
        "broadcast_id",
        "created_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("id__exact",)
    id_search = {"sub": "id", "ses": "parent_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "parent", "child", "prev_summary")
    ordering = ("-created_at",)

    @admin.display(description="Parent")
    def parent_link(self, edge: SubSession) -> str:
        return change_link(Session, edge.parent_id)

    @admin.display(description="Child")
    def child_link(self, edge: SubSession) -> str:
        return change_link(Session, edge.child_id)


@admin.register(Summary)
class SummaryAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("id", "session_link", "outcome_status", "prev_summary_link", "created_at")
    list_filter = ("outcome_status",)
    search_fields = ("id__exact",)
    id_search = {"sum": "id", "ses": "session_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "session", "prev_summary")
    ordering = ("-created_at",)

    @admin.display(description="Session")
    def session_link(self, summary: Summary) -> str:
        return change_link(Session, summary.session_id)

    @admin.display(description="Previous summary")
    def prev_summary_link(self, summary: Summary) -> str:
        return change_link(Summary, summary.prev_summary_id)


@admin.register(Workspace)
class WorkspaceAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("id", "backend", "status", "session_link", "path", "created_at")
    list_filter = ("backend", "status")
    search_fields = ("id__exact",)
    id_search = {"wsp": "id", "ses": "session_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "project", "session")
    ordering = ("-created_at",)

    @admin.display(description="Session")
    def session_link(self, workspace: Workspace) -> str:
        return change_link(Session, workspace.session_id)
