"""The admin of threads. Every edit, delete and action goes through the services, as the
API's do, so the admin records the same events and keeps the same guards."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from common.admin import (
    ChangePageActionsMixin,
    NoCountPaginator,
    PrefixedIdSearchMixin,
    apply_each,
    changelist_url,
    tally_each,
)
from common.errors import DomainError
from threads import services
from threads.admin.conversation import compact_now, warm_now, warming_column
from threads.admin.timeline import Window, timeline_page
from threads.conversation import queue
from threads.models import Event, Message, Thread, Tier
from threads.storage import tiers

# What an operator may edit, as thread_update() takes it: column → (group, key).
THREAD_EDITABLE = {
    "title": (None, "title"),
    "metadata": (None, "metadata"),
    "reasoning_effort": (None, "reasoning_effort"),
    "compaction_threshold_tokens": ("compaction", "threshold_tokens"),
    "compaction_threshold_percent": ("compaction", "threshold_percent"),
    "compaction_context_window": ("compaction", "context_window"),
    "compaction_keep_last": ("compaction", "keep_last"),
    "warming_enabled": ("warming", "enabled"),
    "warming_interval_s": ("warming", "interval_s"),
    "warming_max_idle_warms": ("warming", "max_idle_warms"),
}

THREAD_FIELDSETS = (
    (None, ("id", "tenant", "project", "fork_of", "title", "metadata", "related")),
    (
        "State",
        (
            "status",
            "lifecycle",
            "tier",
            "reasoning_effort",
            "version",
            "history_version",
            "last_seq",
            "message_count",
            "token_estimate",
            "state",
        ),
    ),
    (
        "Compaction",
        (
            "compaction_threshold_tokens",
            "compaction_threshold_percent",
            "compaction_context_window",
            "compaction_keep_last",
        ),
    ),
    ("Warming", ("warming_enabled", "warming_interval_s", "warming_max_idle_warms")),
    ("Timestamps", ("created_at", "updated_at", "last_activity_at")),
)


def thread_changes(cleaned: dict, changed: Iterable[str]) -> dict:
    """The changed form fields in thread_update()'s shape ({"warming": {"enabled": …}})."""
    changes: dict = {}
    for name in changed:
        group, key = THREAD_EDITABLE[name]
        target = changes.setdefault(group, {}) if group else changes
        target[key] = cleaned[name]
    return changes


class ThreadAdminForm(forms.ModelForm):
    def clean_metadata(self):
        value = self.cleaned_data.get("metadata")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Metadata must be a JSON object.")
        return value


@admin.register(Thread)
class ThreadAdmin(ChangePageActionsMixin, PrefixedIdSearchMixin, admin.ModelAdmin):
    form = ThreadAdminForm
    list_display = (
        "id",
        "title",
        "tenant",
        "project",
        "status",
        "lifecycle",
        "tier",
        "cold_bytes",
        "message_count",
        "last_seq",
        "updated_at",
        warming_column,
        "conversation_link",
    )
    list_filter = ("status", "lifecycle", "tier")
    list_select_related = ("tenant", "project")
    search_fields = ("id__exact", "title")
    id_search = {"thd": "id", "prj": "project_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant", "project", "fork_of")
    ordering = ("-created_at",)
    actions = ("archive", "close", "open", "flush", "hydrate", compact_now, warm_now)
    change_actions = {
        "archive": "Archive",
        "close": "Close",
        "open": "Re-open",
        "flush": "Flush to cold storage",
        "hydrate": "Hydrate",
        "compact_now": "Compact now",
        "warm_now": "Warm now",
    }
    paginator = NoCountPaginator
    show_full_result_count = False

    def change_links(self, obj: Thread) -> list[tuple[str, str]]:
        return [
            (reverse("admin:threads_thread_conversation", args=[quote(obj.pk)]), "Conversation")
        ]

    def has_add_permission(self, request) -> bool:
        return False  # threads are created through the API (POST /api/v1/threads/)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(title, {"fields": fields}) for title, fields in THREAD_FIELDSETS]
        listed = {name for _, fields in THREAD_FIELDSETS for name in fields}
        # Columns later issues add (tiers, usage, …) show up read-only without an edit here.
        rest = tuple(f.name for f in Thread._meta.concrete_fields if f.name not in listed)
        if rest:
            fieldsets.append(("More", {"fields": rest, "classes": ("collapse",)}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        every = [f.name for f in Thread._meta.concrete_fields] + ["related"]
        if obj is not None and obj.is_archived:
            return every  # archived is a hard read-only boundary, here too
        return [name for name in every if name not in THREAD_EDITABLE]

    @admin.display(description="Related")
    def related(self, thread: Thread) -> str:
        events_url = changelist_url(Event, tenant__id__exact=thread.tenant_id, thread_id=thread.pk)
        conversation = reverse("admin:threads_thread_conversation", args=[quote(thread.pk)])
        if thread.tier == Tier.COLD:
            # A cold thread has no message rows (they are in its snapshot): the message list
            # would say 0, so point at the conversation view, which reads the snapshot.
            return format_html(
                '<a href="{}">conversation ({} messages, in the cold snapshot)</a>'
                ' · <a href="{}">events</a>',
                conversation,
                thread.message_count,
                events_url,
            )
        return format_html(
            '<a href="{}">conversation</a> · <a href="{}">{} messages</a>'
            ' · <a href="{}">events</a>',
            conversation,
            changelist_url(Message, thread__id__exact=thread.pk),
            thread.message_count,
            events_url,
        )

    @admin.display(description="Conversation")
    def conversation_link(self, thread: Thread) -> str:
        url = reverse("admin:threads_thread_conversation", args=[quote(thread.pk)])
        return format_html('<a href="{}">view</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.conversation_view)
        return [
            path("<str:object_id>/conversation/", view, name="threads_thread_conversation"),
            *super().get_urls(),
        ]

    def conversation_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """The thread's messages as a timeline (threads/admin/timeline.py), its state slice
        and its queued steering messages. A cold thread is read from its snapshot and stays
        cold."""
        thread = get_object_or_404(
            Thread.objects.select_related("project", "tenant"), pk=unquote(object_id)
        )
        if not self.has_view_permission(request, thread):
            raise PermissionDenied
        page = timeline_page(thread=thread, window=Window.from_query(request.GET))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "thread": thread,
            "page": page,
            "state": _pretty_json(thread.state),
            "queued": list(queue.queue_list(thread=thread)[:QUEUED_SHOWN]),
            "queued_shown": QUEUED_SHOWN,
            "title": f"Conversation of {thread.pk}",
        }
        return TemplateResponse(request, "admin/threads/thread_conversation.html", context)

    def save_model(self, request, obj, form, change):
        # Only what the operator changed: a full-row save would put back the counters that
        # concurrent appends moved meanwhile.
        changes = thread_changes(form.cleaned_data, form.changed_data)
        if not changes:
            return
        try:
            services.thread_update(thread=obj, changes=changes)
        except DomainError as exc:
            request._threadline_failed = True
            self.message_user(request, f"Not saved: {exc.message} ({exc.code})", messages.ERROR)

    def response_change(self, request, obj):
        if getattr(request, "_threadline_failed", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    # Deleting goes through services.thread_delete (it records thread.deleted). Django's
    # confirmation page would list every message and ask for a delete permission on
    # messages, which are read-only here: summarize instead.
    def get_deleted_objects(self, objs, request):
        threads = list(objs)
        summary = [str(thread) for thread in threads]
        counts = {
            "threads": len(threads),
            "messages": sum(thread.message_count for thread in threads),
        }
        return summary, counts, set(), []

    def has_delete_permission(self, request, obj=None) -> bool:
        # A thread with sessions cannot be deleted (thread_not_empty): hide the button.
        if obj is not None and obj.sessions.exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        try:
            services.thread_delete(thread=obj)
        except DomainError as exc:  # a session was attached since the page was shown
            raise PermissionDenied(exc.message) from exc

    def delete_queryset(self, request, queryset):
        # Django's delete_selected reports the deletions; this reports the refusals.
        refused = tally_each(queryset, lambda thread: services.thread_delete(thread=thread))
        if refused.failures:
            failures = sorted(refused.failures.items())
            summary = ", ".join(f"{count} {code}" for code, count in failures)
            self.message_user(request, f"Not deleted: {summary}.", messages.ERROR)

    @admin.action(description="Archive selected threads (read-only afterwards)")
    def archive(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _changed_by(services.thread_archive)
        apply_each(
            self, request, queryset, action, done="Archived", noun="thread", already="archived"
        )

    @admin.action(description="Close selected conversations")
    def close(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _changed_by(services.thread_close)
        apply_each(self, request, queryset, action, done="Closed", noun="thread", already="closed")

    @admin.action(description="Re-open selected conversations")
    def open(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _changed_by(services.thread_open)
        apply_each(self, request, queryset, action, done="Opened", noun="thread", already="opened")

    @admin.action(description="Flush selected threads to cold storage")
    def flush(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _moved_to("cold", tiers.thread_flush)
        apply_each(self, request, queryset, action, done="Flushed", noun="thread", already="cold")

    @admin.action(description="Hydrate selected threads from cold storage")
    def hydrate(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        action = _moved_to("hot", tiers.thread_hydrate)
        apply_each(self, request, queryset, action, done="Hydrated", noun="thread", already="hot")


QUEUED_SHOWN = 50


def _pretty_json(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _changed_by(service: Callable[..., Thread]) -> Callable[[Thread], bool]:
    """The service as an action that tells whether it changed the thread: a transition that
    had nothing to do leaves `version` as it was."""

    def run(thread: Thread) -> bool:
        version = thread.version  # the service refreshes this very instance
        return service(thread=thread).version != version

    return run


def _moved_to(tier: str, service: Callable[..., Thread]) -> Callable[[Thread], bool]:
    """The tier move as an action; a move leaves `version` alone, so ask the tier first."""

    def run(thread: Thread) -> bool:
        if thread.tier == tier:
            return False
        service(thread=thread)
        return True

    return run
