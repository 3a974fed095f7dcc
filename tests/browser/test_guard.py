"""The browser fixtures' guard: a request that would leave loopback is aborted and recorded
(and the test that made it fails at teardown; this one clears the record after checking)."""

from __future__ import annotations


def test_a_request_that_leaves_loopback_is_aborted_and_recorded(browser_context):
    page = browser_context.new_page()

    with page.expect_event("requestfailed") as failed:
        page.set_content('<img src="http://192.0.2.1/pixel.png">')

    assert failed.value.url == "http://192.0.2.1/pixel.png"
    assert browser_context.blocked == ["http://192.0.2.1/pixel.png"]
    browser_context.blocked.clear()
