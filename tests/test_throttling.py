"""Per-key request throttling (a fixed-window counter in the default cache: Redis here)."""

import pytest

from tests.conftest import assert_error, make_caller
from tests.s3 import free_port


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


@pytest.mark.django_db
def test_requests_pass_when_redis_is_down(settings):
    # given: the cache points at a port where nothing listens
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    caller = make_caller("dave")
    # when / then: no throttling state can be kept, so nothing is refused
    assert [caller.get("/api/v1/projects/").status_code for _ in range(3)] == [200, 200, 200]
