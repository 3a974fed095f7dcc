"""The admin of the trail, messages and events: read-only (rows change only through the
services) and huge, so lists are reached per thread or by id and never counted in full."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from common.admin import PrefixedIdSearchMixin, ReadOnlyAdmin
from threads import events
from threads.models import Event, Message, Thread, Tier


@admin.register(Message)
class MessageAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    """Listed per thread: search a thread id, or follow a thread's "messages" link. The
    default order (thread, seq) is the message_thread_seq index."""

    list_display = ("thread", "seq", "message_id", "role", "preview", "token_estimate")
    list_filter = ("role",)
    list_select_related = ("thread",)
    search_fields = ("thread__id__exact",)
    id_search = {"thd": "thread_id"}
    raw_id_fields = ("thread",)

    def changelist_view(self, request, extra_context=None):
        # A cold thread has no message rows: say where its messages are instead of "0".
        thread_id = request.GET.get("thread__id__exact") or request.GET.get("q", "").strip()
        if thread_id.startswith("thd_"):
            cold = Thread.objects.filter(pk=thread_id, tier=Tier.COLD).values("message_count")
            for row in cold[:1]:
                url = reverse("admin:threads_thread_conversation", args=[quote(thread_id)])
                self.message_user(
                    request,
                    format_html(
                        "Thread {} is cold: its {} messages are in its snapshot, not in this list. "
                        '<a href="{}">Read its conversation</a> (it stays cold).',
                        thread_id,
                        row["message_count"],
                        url,
                    ),
                    messages.INFO,
                )
        return super().changelist_view(request, extra_context)

    @admin.display(description="Content")
    def preview(self, message: Message) -> str:
        content = message.content
        if isinstance(content, list):
            content = " ".join(
                block.get("text", f"[{block.get('type')}]")
                for block in content
                if isinstance(block, dict)
            )
        return Truncator(str(content)).chars(80)


class EventKindFilter(admin.SimpleListFilter):
    """The known kinds, without SELECT DISTINCT over the whole trail. Any other kind still
    filters through ?kind=<kind>. Every kind is named in threads/events.py."""

    title = "kind"
    parameter_name = "kind"
    kinds: list[str] = list(events.KINDS)

    def lookups(self, request, model_admin):
        kinds = list(self.kinds)
        if self.value() and self.value() not in kinds:
            kinds.append(self.value())
        return [(kind, kind) for kind in kinds]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(PrefixedIdSearchMixin, ReadOnlyAdmin):
    list_display = ("public_id", "kind", "tenant", "thread_id", "session_id", "created_at")
    list_filter = (EventKindFilter,)
    list_select_related = ("tenant",)
    search_fields = ("public_id__exact", "thread_id__exact", "session_id__exact")
    id_search = {"evt": "public_id", "thd": "thread_id", "ses": "session_id", "tnt": "tenant_id"}
    raw_id_fields = ("tenant",)
    ordering = ("-id",)
