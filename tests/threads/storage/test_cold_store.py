"""threads.storage.cold against the real S3 endpoint (moto_server)."""

import gzip

import pytest

from threads.storage import cold


def test_an_object_written_to_s3_reads_back_with_the_gzip_content_type(s3):
    # given
    body = cold.gzip_json({"v": 1, "messages": []})
    # when
    cold.put("threads/messages/thd_x.json.gz", body)
    # then
    assert cold.get("threads/messages/thd_x.json.gz") == body
    head = s3.client().head_object(Bucket=s3.bucket, Key="threads/messages/thd_x.json.gz")
    assert head["ContentType"] == "application/gzip"
    assert "ContentEncoding" not in head


def test_a_missing_object_is_reported_as_missing(s3):
    with pytest.raises(cold.ColdObjectMissing):
        cold.get("threads/messages/nothing.json.gz")


def test_a_stopped_endpoint_is_reported_as_unavailable(s3):
    s3.stop()
    try:
        with pytest.raises(cold.ColdStorageUnavailable):
            cold.put("threads/messages/thd_y.json.gz", b"x")
        with pytest.raises(cold.ColdStorageUnavailable):
            cold.get("threads/messages/thd_y.json.gz")
    finally:
        s3.start()


def test_gzip_json_is_canonical_and_round_trips():
    a = cold.gzip_json({"b": 1, "a": [1, "é"]})
    assert a == cold.gzip_json({"a": [1, "é"], "b": 1})
    assert cold.gunzip_json(a) == {"a": [1, "é"], "b": 1}
    with pytest.raises(ValueError):
        cold.gunzip_json(b"not gzip")


def test_gunzip_json_reads_what_the_standard_library_reads():
    # orjson parses; NaN and integers beyond 64 bits (which it refuses) still read as before
    body = gzip.compress(b'{"n": NaN, "big": 123456789012345678901234567890, "s": "\\ud800"}')
    data = cold.gunzip_json(body)
    assert data["n"] != data["n"] and data["big"] == 123456789012345678901234567890
    assert data["s"] == "\ud800"
