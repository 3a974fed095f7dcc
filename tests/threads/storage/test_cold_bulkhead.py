"""The cold-storage bulkhead: at most COLD_STORAGE_CONCURRENCY calls to the store at once per
host, across processes; one more waits COLD_STORAGE_SLOT_WAIT_SECONDS for a slot, then is
refused with 503 cold_storage_busy."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import assert_error
from threads.storage import cold

ROOT = Path(__file__).resolve().parents[3]

# Holds every slot from another process, as that many hung calls would, until stdin closes.
_HOLD = """
import fcntl, os, sys
fds = []
for n in range(int(sys.argv[2])):
    fd = os.open(os.path.join(sys.argv[1], f"slot-{n}"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    fds.append(fd)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def slots(settings, tmp_path):
    settings.COLD_STORAGE_CONCURRENCY = 2
    settings.COLD_SLOTS_DIR = str(tmp_path / "slots")
    (tmp_path / "slots").mkdir()
    return tmp_path / "slots"


def hold_all(slots_dir: Path, count: int) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(slots_dir), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_call_finds_a_free_slot(s3, slots):
    cold.put("a.json", b"{}")
    assert cold.get("a.json") == b"{}"


def test_a_call_is_refused_quickly_when_another_process_holds_every_slot(s3, slots):
    holder = hold_all(slots, 2)
    try:
        started = time.monotonic()
        with pytest.raises(cold.ColdStorageBusy) as raised:
            cold.get("a.json")
        assert time.monotonic() - started < 4.0  # refused after the 2 s slot wait, not queued
        assert raised.value.code == "cold_storage_busy" and raised.value.status == 503
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # a slot freed by its holder (here: the process ended) is usable again
    cold.put("a.json", b"{}")


def test_a_busy_cold_read_answers_503_cold_storage_busy(api, thread, s3, slots):
    flushed = api.post(f"/api/v1/threads/{thread.id}/flush")
    assert flushed.status_code == 200, flushed.content
    holder = hold_all(slots, 2)
    try:
        response = api.get(f"/api/v1/threads/{thread.id}/messages")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert_error(response, 503, "cold_storage_busy")
    assert api.get(f"/api/v1/threads/{thread.id}/messages").status_code == 200


def test_a_limit_of_zero_turns_the_bulkhead_off(s3, slots, settings):
    settings.COLD_STORAGE_CONCURRENCY = 0
    holder = hold_all(slots, 2)
    try:
        cold.put("b.json", b"[]")
        assert cold.get("b.json") == b"[]"
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_a_call_waits_briefly_for_a_slot_that_is_freed(s3, slots):
    # given: every slot held by another process, which lets go shortly
    holder = hold_all(slots, 2)
    threading.Timer(0.1, holder.stdin.close).start()
    try:
        # when / then: the call gets a slot instead of answering busy
        cold.put("c.json", b"{}")
    finally:
        holder.wait(timeout=10)
    assert cold.get("c.json") == b"{}"
