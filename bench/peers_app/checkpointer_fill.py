"""Build one LangGraph thread on PostgreSQL the way an application does: the one-node messages
graph (graph.py) compiled with langgraph-checkpoint-postgres' PostgresSaver, one invoke() per
message. Run by bench/peers.py in the peers' virtualenv; bench/peers.py measures the rows.

    python checkpointer_fill.py URL THREAD_ID N TEXTS.json

URL is a psycopg URL (postgresql://…); TEXTS.json a JSON list of message texts (message i
gets text i modulo its length). Creates the saver's tables (setup()), then invokes the graph
N times with one message each (N = 0: only the tables) and prints one JSON line:
{"thread_id", "tables", "invoke_latencies"}. The graph's node returns nothing, so each
invoke stores what the checkpointer stores for one appended message. No model is called;
nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import time

from graph import build
from langgraph.checkpoint.postgres import PostgresSaver


def main() -> None:
    url, thread_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(sys.argv[4]) as f:
        texts = json.load(f)
    latencies = []
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = build().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread_id}}
        for i in range(n):
            message = {
                "type": "human" if i % 2 == 0 else "ai",
                "content": texts[i % len(texts)],
                "id": f"m{i}",
            }
            start = time.perf_counter()
            graph.invoke({"messages": [message]}, config)
            latencies.append(time.perf_counter() - start)
        count = len(graph.get_state(config).values.get("messages", [])) if n else 0
        if count != n:
            raise SystemExit(f"the thread holds {count} messages, not {n}")
    tables = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]
    print(json.dumps({"thread_id": thread_id, "tables": tables, "invoke_latencies": latencies}))


if __name__ == "__main__":
    main()
