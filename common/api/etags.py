"""If-Match: which versions a conditional edit may apply on (RFC 9110 §13.1.1)."""

from __future__ import annotations

import re

from common.errors import InvalidInput, StaleVersion

# One entity-tag of If-Match (RFC 9110 §8.8.3): optionally weak, then quoted etagc chars.
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?"([!#-~]*)"[ \t]*')


def parse_if_match(header: str | None) -> list[str] | None:
    """If-Match → the opaque tags it accepts (strong ones only); None when absent or `*`.

    Comparison is strong (RFC 9110 §13.1.1): a weak tag (`W/"3"`) never matches, so it is
    kept out. Tags stay strings (`"3"` and `"03"` are different tags, and a 4,301-digit tag is
    no int() to convert): the caller compares them with the version's own ETag. A value that
    is not `*` or a list of entity-tags is a 400."""
    if header is None:
        return None
    value = header.strip(" \t")
    if value == "*":
        return None
    tags, position = [], 0
    while True:
        match = _ENTITY_TAG.match(value, position)
        if match is None:
            raise InvalidInput(
                'If-Match must be * or a comma-separated list of quoted ETags, e.g. "3".',
                header="If-Match",
            )
        if not match.group(1):
            tags.append(match.group(2))
        position = match.end()
        if position == len(value):
            return tags
        if value[position] != ",":
            raise InvalidInput(
                'If-Match must be * or a comma-separated list of quoted ETags, e.g. "3".',
                header="If-Match",
            )
        position += 1


def _is_version(tag: str) -> bool:
    """A tag as a version's ETag is written: decimal digits, no leading zero, 18 at most."""
    return tag.isdigit() and len(tag) <= 18 and tag == str(int(tag))


def expected_version(header: str | None, *, current: int) -> int | None:
    """The version an If-Match asks the edit to apply on: None (unconditional), the current
    one when one of its tags is the current ETag, else 412 stale_version."""
    tags = parse_if_match(header)
    if tags is None:
        return None
    if str(current) in tags:
        return current
    # One version asked for: the same details as when the conditional UPDATE itself finds
    # the version moved (a race decides which of the two checks a loser meets).
    if len(tags) == 1 and _is_version(tags[0]):
        raise StaleVersion(expected=int(tags[0]), actual=current)
    raise StaleVersion(expected=header[:200], actual=current)
