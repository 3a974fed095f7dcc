"""Documents in the exact shapes other tools write.

zeitlich 0.2.46 (its source, bead-ai/zeitlich): a v1 snapshot is
`{v: 1, messages: string[] (each stored message's JSON), state: {tasks: [[id, task]],
custom: {}} | null, dedupIds: string[]}`; the stored messages are whatever its adapter keeps:
- plain `{id, role, content}`;
- the Anthropic adapter's StoredMessage `{id, message: MessageParam, isSystem?}` (system
  prompts under a user-role placeholder with isSystem: true; tool results as user messages
  with tool_result blocks);
- the LangChain adapter's StoredMessage `{type, data}` from BaseMessage.toDict()
  (`data`: content, additional_kwargs, response_metadata, id, name, tool_calls,
  invalid_tool_calls, usage_metadata; ToolMessage: tool_call_id).
"""

from __future__ import annotations

import gzip
import json

ANTHROPIC_SYSTEM = {
    "id": "z-sys",
    "message": {"role": "user", "content": "You are terse."},
    "isSystem": True,
}
ANTHROPIC_USER = {
    "id": "z-u1",
    "message": {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
}
ANTHROPIC_ASSISTANT = {
    "id": "z-a1",
    "message": {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig-1"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
        ],
    },
}
ANTHROPIC_TOOL_RESULT = {
    "id": "z-r1",
    "message": {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3 °C"}],
    },
}
PLAIN = {"id": "z-p1", "role": "assistant", "content": "It is -3 °C."}
LANGCHAIN_HUMAN = {
    "type": "human",
    "data": {
        "content": "And Bergen?",
        "additional_kwargs": {},
        "response_metadata": {},
        "id": "lc-h1",
    },
}
LANGCHAIN_AI = {
    "type": "ai",
    "data": {
        "content": "",
        "additional_kwargs": {},
        "response_metadata": {"model_name": "gpt-x", "finish_reason": "tool_calls"},
        "id": "lc-a1",
        "tool_calls": [
            {"name": "weather", "args": {"city": "Bergen"}, "id": "call_9", "type": "tool_call"}
        ],
        "invalid_tool_calls": [],
        "usage_metadata": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
    },
}
LANGCHAIN_TOOL = {
    "type": "tool",
    "data": {
        "content": "4 °C",
        "additional_kwargs": {},
        "response_metadata": {},
        "tool_call_id": "call_9",
        "name": "weather",
        "id": "lc-t1",
    },
}
ZEITLICH_MESSAGES = [
    ANTHROPIC_SYSTEM,
    ANTHROPIC_USER,
    ANTHROPIC_ASSISTANT,
    ANTHROPIC_TOOL_RESULT,
    PLAIN,
    LANGCHAIN_HUMAN,
    LANGCHAIN_AI,
    LANGCHAIN_TOOL,
]
ZEITLICH_STATE = {
    "tasks": [["task-1", {"id": "task-1", "subject": "Report", "status": "in_progress"}]],
    "custom": {"city": "Oslo"},
}


def zeitlich_v1(messages=ZEITLICH_MESSAGES, state=ZEITLICH_STATE, dedup_ids=None) -> dict:
    """As zeitlich's encode writes it (JSON.stringify of each stored message)."""
    return {
        "v": 1,
        "messages": [json.dumps(m, separators=(",", ":")) for m in messages],
        "state": state,
        "dedupIds": dedup_ids if dedup_ids is not None else ["z-sys:z-u1", "z-a1"],
    }


def gz(document) -> bytes:
    return gzip.compress(json.dumps(document).encode())


# An OpenAI Conversations items page (GET /conversations/{id}/items?order=asc).
OPENAI_PAGE = {
    "object": "list",
    "data": [
        {
            "type": "message",
            "id": "msg_u1",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "Find flights to Rome"}],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "User wants flights."}],
            "encrypted_content": "gAAAA-opaque",
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_f1",
            "name": "search_flights",
            "arguments": '{"to": "FCO"}',
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "id": "fco_1",
            "call_id": "call_f1",
            "output": '{"flights": 3}',
        },
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "search", "query": "Rome weather"},
        },
        {
            "type": "message",
            "id": "msg_a1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Three flights found.",
                    "annotations": [{"type": "url_citation", "url": "https://example.com"}],
                    "logprobs": [],
                }
            ],
        },
    ],
    "first_id": "msg_u1",
    "last_id": "msg_a1",
    "has_more": False,
}

# A LangGraph thread state (GET /threads/{thread_id}/state of the LangGraph API).
LANGGRAPH_STATE = {
    "values": {
        "messages": [
            {
                "content": "What is 3 * 7?",
                "additional_kwargs": {},
                "response_metadata": {},
                "type": "human",
                "name": None,
                "id": "lg-h1",
                "example": False,
            },
            {
                "content": [
                    {"type": "text", "text": "Let me compute."},
                    {
                        "type": "tool_use",
                        "id": "toolu_m",
                        "name": "multiply",
                        "input": {"a": 3, "b": 7},
                    },
                ],
                "additional_kwargs": {},
                "response_metadata": {"stop_reason": "tool_use"},
                "type": "ai",
                "name": None,
                "id": "lg-a1",
                "example": False,
                "tool_calls": [
                    {
                        "name": "multiply",
                        "args": {"a": 3, "b": 7},
                        "id": "toolu_m",
                        "type": "tool_call",
                    },
                    {"name": "log", "args": {"msg": "x"}, "id": "toolu_l", "type": "tool_call"},
                ],
                "invalid_tool_calls": [],
                "usage_metadata": {"input_tokens": 20, "output_tokens": 8, "total_tokens": 28},
            },
            {
                "content": "21",
                "additional_kwargs": {},
                "response_metadata": {},
                "type": "tool",
                "name": "multiply",
                "id": "lg-t1",
                "tool_call_id": "toolu_m",
                "artifact": None,
                "status": "success",
            },
            {
                "content": "boom",
                "type": "tool",
                "name": "log",
                "id": "lg-t2",
                "tool_call_id": "toolu_l",
                "status": "error",
            },
            {"content": "3 * 7 = 21.", "type": "ai", "id": "lg-a2", "tool_calls": []},
        ],
        "step": 4,
    },
    "next": [],
    "tasks": [],
    "metadata": {"graph_id": "agent", "step": 4},
    "created_at": "2026-11-30T10:00:00+00:00",
    "checkpoint": {"thread_id": "lg-thread-1", "checkpoint_id": "1ef-abc", "checkpoint_ns": ""},
    "parent_checkpoint": None,
}
