"""Per-key request throttling (a fixed-window counter in the default cache: Redis here)."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from common.api.throttling import file_count
from tests.conftest import assert_error, make_caller
from tests.s3 import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_a_key_over_its_rate_gets_429_with_retry_after(api, settings):
    # given
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    # when
    statuses = [api.get("/api/v1/projects/").status_code for _ in range(3)]
    over = api.get("/api/v1/projects/")
    # then
    assert statuses == [200, 200, 200]
    details = assert_error(over, 429, "throttled")
    assert 0 < details["retry_after"] <= 60
    assert 0 < int(over["Retry-After"]) <= 60


def test_another_key_has_its_own_budget(api, outsider, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    assert api.get("/api/v1/projects/").status_code == 200
    assert api.get("/api/v1/projects/").status_code == 429
    assert outsider.get("/api/v1/projects/").status_code == 200


def test_a_rate_of_zero_turns_throttling_off(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    assert {api.get("/api/v1/projects/").status_code for _ in range(5)} == {200}


def _dead_redis(settings) -> None:
    """The cache pointed at a loopback port nothing listens on: connections are refused."""
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }


@pytest.mark.django_db
def test_the_limit_still_holds_when_redis_is_down(settings, tmp_path, caplog):
    # given: Redis refuses connections; the per-host counter files take over
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    settings.THROTTLE_DIR = str(tmp_path / "throttle")
    _dead_redis(settings)
    caller = make_caller("dave")
    # when
    with caplog.at_level(logging.WARNING):
        statuses = [caller.get("/api/v1/projects/").status_code for _ in range(30)]
    # then: three pass, the rest are refused, and the outage is logged once, not per request
    assert statuses == [200] * 3 + [429] * 27
    breaker_lines = [r for r in caplog.records if r.name == "threadline.breaker"]
    assert len(breaker_lines) == 1, [r.getMessage() for r in breaker_lines]


@pytest.mark.django_db
def test_without_redis_the_limit_is_kept_in_counter_files(settings, tmp_path):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    settings.THROTTLE_DIR = str(tmp_path / "throttle")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    caller = make_caller("erin")

    statuses = [caller.get("/api/v1/projects/").status_code for _ in range(4)]

    assert statuses == [200, 200, 429, 429]
    assert len(list((tmp_path / "throttle").glob("*/*"))) == 1


@pytest.mark.django_db
def test_requests_pass_when_no_counter_can_be_kept(settings, tmp_path):
    # given: Redis is down and the counter directory cannot be created (a file is in the way)
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.THROTTLE_DIR = str(blocker / "throttle")
    _dead_redis(settings)
    caller = make_caller("frank")
    # when / then: fail-open, as documented
    assert [caller.get("/api/v1/projects/").status_code for _ in range(3)] == [200, 200, 200]


_COUNT_IN_A_PROCESS = """
import sys
from pathlib import Path
from common.api.throttling import file_count
for _ in range(int(sys.argv[2])):
    file_count(Path(sys.argv[1]), "key", 7)
"""


def test_counter_files_count_exactly_across_processes(tmp_path):
    # given: four processes incrementing the same key's counter at once
    root = tmp_path / "throttle"
    procs = [
        subprocess.Popen([sys.executable, "-c", _COUNT_IN_A_PROCESS, str(root), "250"], cwd=ROOT)
        for _ in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    # then: no increment was lost
    assert file_count(root, "key", 7) == 1001
