"""The operator's admin for sessions, sub-sessions, summaries and workspaces.

Built for big tables like threads/admin.py: links by id instead of joins, raw id widgets,
prefixed-id search as one indexed equality, no COUNT(*). Nothing is edited in place: the
state of a session changes only through the services, here through actions (fail, archive,
recover lock) that record the same events as the API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from common.admin import PrefixedIdSearchMixin, ReadOnlyAdmin
from common.errors import DomainError
from handoffs.models import Handoff
from sessions_app import recovery, transitions
from sessions_app.models import ActorKind, Session, SubSession, Summary, Workspace
from threads.models import Event, Thread


def change_link(model: type, pk: str | None, text: str | None = None) -> str:
    if not pk:
        return "—"
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, text or pk)


def changelist_link(model: type, text: str, **params: str) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), text)


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
            changelist_link(SubSession, "children", parent__id__exact=session.pk),
            changelist_link(SubSession, "parent edge", child__id__exact=session.pk),
            changelist_link(Handoff, "handoffs out", source_session__id__exact=session.pk),
            changelist_link(Summary, "summary", session__id__exact=session.pk),
            changelist_link(
                Event, "events", tenant__id__exact=session.tenant_id, session_id=session.pk
            ),
        ]
        if session.workspace_id:
            links.append(change_link(Workspace, session.workspace_id, "workspace"))
        return format_html_join(" · ", "{}", ((link,) for link in links))

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Session],
        service: Callable[..., object],
        verb: str,
    ) -> None:
        """Run `service` on each selected session; report what changed and what failed."""
        done = 0
        failures: Counter[str] = Counter()
        for session in queryset.iterator():
            try:
                result = service(session=session)
            except DomainError as exc:
                failures[exc.code] += 1
                continue
            if result is not False:
                done += 1
            else:
                failures["not_locked_or_lease_live"] += 1
        text = f"{verb} {done} session{'' if done == 1 else 's'}."
        if failures:
            reasons = ", ".join(f"{code}: {count}" for code, count in sorted(failures.items()))
            text += f" Not done: {sum(failures.values())} ({reasons})."
        self.message_user(request, text, messages.WARNING if failures else messages.SUCCESS)

    @admin.action(description="Fail selected sessions")
    def fail(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._apply(
            request,
            queryset,
            lambda session: transitions.session_fail(session=session, reason="failed by operator"),
            "Failed",
        )

    @admin.action(description="Archive selected sessions (disposes their workspaces)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._apply(request, queryset, transitions.session_archive, "Archived")

    @admin.action(description="Recover the lock of selected sessions (even if its lease is live)")
    def recover_lock(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._apply(
            request,
            queryset,
            lambda session: recovery.session_lock_recover(session=session, force=True),
            "Recovered the lock of",
        )


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
