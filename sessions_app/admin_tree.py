"""The session tree of the admin: a session with its ancestors and its sub-sessions (each
with its edge's kind, status and broadcast group, and its summary), read level by level.

Bounded: at most MAX_NODES sessions below the one shown (one query per level, each by the
subsession_parent_created index), at most MAX_DEPTH ancestors (one query each, by the
child edge's unique index). What lies past the bound is counted as "not shown".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sessions_app.models import Session, SubSession, Summary

MAX_NODES = 500
MAX_DEPTH = 64


@dataclass
class Node:
    session: Session
    edge: SubSession | None = None  # the edge from its parent
    summary: Summary | None = None
    children: list[Node] = field(default_factory=list)


@dataclass
class Tree:
    ancestors: list[Node]  # root first; the shown session's parent last
    root: Node  # the session shown, with its descendants
    truncated: bool = False

    def session_ids(self) -> list[str]:
        ids = [node.session.pk for node in self.ancestors]
        stack = [self.root]
        while stack:
            node = stack.pop()
            ids.append(node.session.pk)
            stack.extend(node.children)
        return ids


def session_tree(*, session: Session) -> Tree:
    edge = _edge_to(session.pk)
    ancestors = _ancestors(edge)
    root = Node(session=session, edge=edge)
    truncated = False
    level = [root]
    seen = 1
    while level and not truncated:
        by_parent = {node.session.pk: node for node in level}
        edges = list(
            SubSession.objects.filter(parent_id__in=list(by_parent))
            .select_related("child")
            .order_by("created_at", "id")[: MAX_NODES - seen + 1]
        )
        if seen + len(edges) > MAX_NODES:
            edges = edges[: MAX_NODES - seen]
            truncated = True
        next_level = []
        for child_edge in edges:
            node = Node(session=child_edge.child, edge=child_edge)
            by_parent[child_edge.parent_id].children.append(node)
            next_level.append(node)
        seen += len(edges)
        level = next_level
    tree = Tree(ancestors=ancestors, root=root, truncated=truncated)
    summaries = {
        summary.session_id: summary
        for summary in Summary.objects.filter(session_id__in=tree.session_ids())
    }
    for node in [*ancestors, *_walk(root)]:
        node.summary = summaries.get(node.session.pk)
    return tree


def _edge_to(child_id: str) -> SubSession | None:
    return SubSession.objects.filter(child_id=child_id).select_related("parent").first()


def _ancestors(edge: SubSession | None) -> list[Node]:
    """Up the parent edges from `edge` (the shown session's own), one query a level."""
    chain: list[Node] = []
    while edge is not None and len(chain) < MAX_DEPTH:
        parent_edge = _edge_to(edge.parent_id)
        chain.append(Node(session=edge.parent, edge=parent_edge))
        edge = parent_edge
    chain.reverse()
    return chain


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)
