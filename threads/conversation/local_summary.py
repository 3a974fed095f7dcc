"""The offline summary of the `local` provider: deterministic, no network, bounded.

It reads the compaction prompt (prompt.py: one `role: text` line per message, the previous
summary's lines as `summary: …`) and writes

    Earlier in this conversation (N messages):
    - user: <the first statement>
    - assistant: <the best statement of each stretch of the conversation, in order>
    - user: <the last statement>
    Tools used: grep (3), sh

Statements are sentences; each stretch's best is the one whose content words occur most
often across the whole conversation (after Luhn, normalized by length so a long line does
not win by size). The first and the last statement always come first in the budget, so the
summary covers the whole span; a statement said twice is kept once; tool calls are not
statements, but every tool's name is listed. A previous summary's statements and tools are
read back as statements and tools, so summarizing a summary folds it in instead of quoting
it. The budget is the smaller of `max_chars` and half the conversation: a summary is
always shorter than what it replaces.
"""

from __future__ import annotations

import math
import re
from collections import Counter

HEADER = "Earlier in this conversation"
TOOLS = "Tools used: "
ROLES = frozenset({"user", "assistant", "system", "tool"})
MAX_LINES = 24
MAX_STATEMENT_CHARS = 300
MAX_TOOLS = 20

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_'.-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOOL_CALL = re.compile(r"\[tool: ([^\s\]]+)[^\]]*\]")
_TOOL_RESULT = re.compile(r"\[tool result: [^\]]*\]?")
_HEADER_COUNT = re.compile(re.escape(HEADER) + r" \((\d+) messages?\)")
_TOOL_ENTRY = re.compile(r"([^\s,()]+)(?: \((\d+)\))?")
_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    just me more most my no nor not now of off on once only or other our out over own same
    she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours""".split()
)


class _Reading:
    """The statements, tools and message count read from a prompt."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, str]] = []  # (role, sentence) in order
        self.tools: Counter[str] = Counter()
        self.tool_order: list[str] = []
        self.messages = 0
        self._seen: set[str] = set()

    def tool(self, name: str, count: int = 1) -> None:
        if name not in self.tools:
            self.tool_order.append(name)
        self.tools[name] += count

    def say(self, role: str, text: str) -> None:
        for name in _TOOL_CALL.findall(text):
            self.tool(name)
        text = _TOOL_RESULT.sub(" ", _TOOL_CALL.sub(" ", text))
        for sentence in _SENTENCE_END.split(" ".join(text.split())):
            sentence = sentence.strip()
            key = sentence.lower()
            if len(sentence) > 2 and _WORD.search(sentence) and key not in self._seen:
                self._seen.add(key)
                self.statements.append((role, sentence))

    def earlier_summary(self, line: str) -> None:
        """One line of the previous summary, read back as what it stands for."""
        line = line.strip().removeprefix("- ")
        if counted := _HEADER_COUNT.match(line):
            self.messages += int(counted.group(1))
            return
        if line.startswith(TOOLS):
            for name, count in _TOOL_ENTRY.findall(line.removeprefix(TOOLS)):
                self.tool(name, int(count or 1))
            return
        role, sep, rest = line.partition(": ")
        if sep and (role in ROLES or role == "summary"):
            self.say(role, rest)
        elif line and not line.startswith(HEADER):
            self.say("summary", line)


def read(prompt: str) -> tuple[_Reading, int]:
    """The prompt's statements, and the length of its conversation part."""
    body = prompt.split("\n\n", 1)[1] if "\n\n" in prompt else prompt
    reading = _Reading()
    role = None
    for line in body.splitlines():
        head, sep, rest = line.partition(": ")
        if sep and head == "summary":
            reading.earlier_summary(rest)
            continue
        if sep and head in ROLES:
            role, line = head, rest
            reading.messages += 1
        if role is not None:
            reading.say(role, line)
    return reading, len(body)


def summarize(prompt: str, *, max_chars: int) -> str:
    """The summary of the conversation in `prompt` ("" when it says nothing)."""
    reading, body_chars = read(prompt)
    statements = reading.statements
    if not statements and not reading.tools:
        return ""
    budget = min(max_chars, body_chars // 2)
    frequency = Counter(
        word
        for _, sentence in statements
        for word in (w.lower() for w in _WORD.findall(sentence))
        if word not in _STOPWORDS and len(word) > 2
    )

    def score(index: int) -> float:
        words = [w.lower() for w in _WORD.findall(statements[index][1])]
        content = [frequency[w] for w in words if w in frequency]
        return sum(content) / math.sqrt(len(words)) if words else 0.0

    # Priority: the first and the last statement, then the best of each stretch between.
    priority: list[int] = []
    if statements:
        priority = sorted({0, len(statements) - 1})
        middle = list(range(1, len(statements) - 1))
        stretches = max(min(MAX_LINES - 2, len(middle)), 0)
        best = []
        for n in range(stretches):
            part = middle[n * len(middle) // stretches : (n + 1) * len(middle) // stretches]
            if part:
                best.append(max(part, key=lambda i: (score(i), -i)))
        priority += sorted(best, key=lambda i: (-score(i), i))

    head = f"{HEADER} ({reading.messages} messages):"
    tools = ""
    if reading.tools:
        names = reading.tool_order[:MAX_TOOLS]
        tools = TOOLS + ", ".join(
            f"{name} ({reading.tools[name]})" if reading.tools[name] > 1 else name for name in names
        )
    used = len(head) + (len(tools) + 1 if tools else 0)
    chosen: list[int] = []
    for index in priority:
        line = _line(*statements[index])
        if used + len(line) + 1 > budget:
            continue
        chosen.append(index)
        used += len(line) + 1
    if not chosen and not (tools and used <= budget):
        # Too little room for even one statement: the first one, cut to the budget.
        room = max(budget - len(head) - 1, 0)
        return f"{head}\n{_line(*statements[0])[:room]}".rstrip() if statements else head
    lines = [head] + [_line(*statements[i]) for i in sorted(chosen)]
    if tools:
        lines.append(tools)
    return "\n".join(lines)


def _line(role: str, sentence: str) -> str:
    if len(sentence) > MAX_STATEMENT_CHARS:
        sentence = sentence[: MAX_STATEMENT_CHARS - 1].rstrip() + "…"
    return f"- {role}: {sentence}"
