"""The admin of the conversation: compaction history, the steering queue, and what the thread
list shows of them (threads.py lists these actions and the column): "compact now" and "warm
now", through the same services as the API, and the warming state."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from common.admin import ChangePageActionsMixin, PrefixedIdSearchMixin, ReadOnlyAdmin, apply_each
from common.errors import DomainError
from threads.conversation import compaction, prompt, queue, warming
from threads.conversation.errors import CompactionInProgress
from threads.models import Compaction, CompactionStatus, QueuedMessage, Thread

ORIGINALS_SHOWN = 1000
WARM_NOW_MAX = 25


# --- Compactions -----------------------------------------------------------------------


@admin.register(Compaction)
class CompactionAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    """The compaction history, read-only: rows change only through
    threads/conversation/compaction.py."""

    list_display = (
        "id",
        "thread",
        "trigger",
        "status",
        "messages_summarized",
        "messages_kept",
        "tokens_before",
        "tokens_after",
        "created_at",
        "originals",
    )
    list_filter = ("status", "trigger")
    list_select_related = ("thread",)
    search_fields = ("id__exact",)
    id_search = {"cmp": "id", "thd": "thread_id"}
    raw_id_fields = ("thread",)
    ordering = ("-created_at",)
    readonly_fields = ("originals",)

    @admin.display(description="Originals")
    def originals(self, obj: Compaction) -> str:
        if obj.status != CompactionStatus.SUCCEEDED or not obj.archive_key:
            return "—"
        url = reverse("admin:threads_compaction_originals", args=[quote(obj.pk)])
        return format_html('<a href="{}">{} archived messages</a>', url, obj.messages_summarized)

    def get_urls(self):
        view = self.admin_site.admin_view(self.originals_view)
        return [
            path("<str:object_id>/originals/", view, name="threads_compaction_originals"),
            *super().get_urls(),
        ]

    def originals_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        found = get_object_or_404(Compaction, pk=unquote(object_id))
        if not self.has_view_permission(request, found):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "compaction": found,
            "title": f"Originals of {found.pk}",
        }
        try:
            originals = compaction.compaction_originals(compaction=found)
        except DomainError as exc:
            context["error"] = f"{exc.message} ({exc.code})"
        else:
            context.update(
                originals=[
                    {**m, "text": prompt.message_text(m["content"])}
                    for m in originals[:ORIGINALS_SHOWN]
                ],
                messages_count=len(originals),
                shown=min(len(originals), ORIGINALS_SHOWN),
                truncated=len(originals) > ORIGINALS_SHOWN,
            )
        return TemplateResponse(request, "admin/threads/compaction_originals.html", context)


# --- The steering queue ----------------------------------------------------------------


@admin.register(QueuedMessage)
class QueuedMessageAdmin(ChangePageActionsMixin, PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("id", "thread", "status", "preview", "queued_at", "delivered_at")
    list_filter = ("status",)
    list_select_related = ("thread",)
    search_fields = ("id__exact",)
    id_search = {"que": "id", "thd": "thread_id"}
    raw_id_fields = ("thread",)
    ordering = ("-queued_at",)
    actions = ("cancel",)
    change_actions = {"cancel": "Cancel"}

    @admin.display(description="Content")
    def preview(self, obj: QueuedMessage) -> str:
        return Truncator(obj.content).chars(80)

    @admin.action(description="Cancel selected queued messages")
    def cancel(self, request: HttpRequest, queryset: QuerySet[QueuedMessage]) -> None:
        apply_each(
            self,
            request,
            queryset.select_related("thread"),
            # False for an item already delivered or cancelled: not counted, not a failure.
            lambda item: queue.queue_cancel(thread=item.thread, item_id=item.pk),
            done="Cancelled",
            noun="queued message",
            already="delivered or cancelled",
        )


# --- On the thread list: actions and the warming column ------------------------------


@admin.action(description="Compact now (in the background)")
def compact_now(modeladmin, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
    def queue_compaction(thread: Thread) -> bool:
        try:
            compaction.compaction_request(thread=thread)
        except CompactionInProgress:
            return False  # one is queued or running: pressing again queues nothing more
        return True

    apply_each(
        modeladmin,
        request,
        queryset,
        queue_compaction,
        done="Queued",
        noun="compaction",
        already="queued or running",
    )


@admin.action(description="Warm the prompt cache now")
def warm_now(modeladmin, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
    threads = list(queryset[: WARM_NOW_MAX + 1])
    cache: list[int] = []

    def warm(thread: Thread) -> None:
        cache.append(warming.warm_now(thread=thread).cache_pct)

    def note() -> str:
        notes = [f"Cache hit {round(sum(cache) / len(cache))}% on average."] if cache else []
        if len(threads) > WARM_NOW_MAX:
            notes.append(f"Only the first {WARM_NOW_MAX} selected were warmed.")
        return " ".join(notes)

    apply_each(
        modeladmin, request, threads[:WARM_NOW_MAX], warm, done="Warmed", noun="thread", note=note
    )


@admin.display(description="Warming")
def warming_column(thread: Thread) -> str:
    if not thread.warming_enabled:
        return "off"
    parts = ["on"]
    if thread.next_warm_at:
        parts.append(f"next {thread.next_warm_at:%H:%M:%S}")
    if thread.last_cache_pct is not None:
        parts.append(f"cache {thread.last_cache_pct}%")
    return " · ".join(parts)
