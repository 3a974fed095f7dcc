from django import template

register = template.Library()


@register.filter(name="bytes")
def bytes_(value) -> str:
    """1536 → "1.5 KiB"."""
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"
