"""Reads: handoffs."""

from __future__ import annotations

from handoffs.models import Handoff


def handoff_group(*, handoff: Handoff) -> list[Handoff]:
    """Every row of the handoff `handoff` belongs to (one for single, N for broadcast), in
    recipient order, with what the serializer needs."""
    return list(
        Handoff.objects.filter(group_id=handoff.group_id)
        .select_related("recipient_session", "recipient_session__workspace")
        .order_by("position")
    )
