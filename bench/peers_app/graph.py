"""A one-node messages graph for the peers bench: `langgraph dev` serves it (state reads and
writes go straight to the checkpointer; the node never runs for them), and the checkpointer
bench runs it once per appended message. It calls no model and touches no network.

Imported only by the peers' own virtualenv (bench/.peers-venv), never by the project."""

from langgraph.graph import END, START, MessagesState, StateGraph


def record(state: MessagesState) -> dict:
    return {}  # the input message is already in the state (add_messages); nothing to add


def build() -> StateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node("record", record)
    builder.add_edge(START, "record")
    builder.add_edge("record", END)
    return builder


graph = build().compile()
