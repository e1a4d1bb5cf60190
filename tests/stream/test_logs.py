"""Tests for streamgmm.stream.logs: text and JSON lines, fields, redaction."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import numpy as np
import pytest

from streamgmm.stream.logs import RedactionFilter, redact_text, setup_logging


@pytest.fixture
def out():
    stream = io.StringIO()
    yield stream
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_streamgmm", False)]:
        root.removeHandler(h)
    root.setLevel(logging.WARNING)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_parse_with_the_standard_keys(out):
    setup_logging("INFO", "json", stream=out)
    log = logging.getLogger("streamgmm.test")
    log.info("started")
    log.debug("hidden at INFO")
    log.warning("slow batch %.1f s", 2.5)
    docs = [json.loads(line) for line in lines(out)]
    assert [d["event"] for d in docs] == ["started", "slow batch 2.5 s"]
    first = docs[0]
    assert first["level"] == "INFO" and first["logger"] == "streamgmm.test"
    assert first["time"].endswith("Z")
    stamp = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert stamp.utcoffset().total_seconds() == 0


def test_json_fields_are_merged_and_numpy_values_serialise(out):
    setup_logging("INFO", "json", stream=out)
    logging.getLogger("streamgmm.loop").info("batch", extra={"fields": {
        "events": np.int64(500), "seconds": np.float64(0.25), "partitions": [0, 1],
        "level": "clash"}})
    doc = json.loads(lines(out)[0])
    assert doc["events"] == 500 and doc["seconds"] == 0.25 and doc["partitions"] == [0, 1]
    assert doc["level"] == "INFO" and doc["field_level"] == "clash"


def test_json_exception_is_a_string(out):
    setup_logging("INFO", "json", stream=out)
    try:
        raise RuntimeError("broker went away")
    except RuntimeError:
        logging.getLogger("streamgmm").exception("poll failed")
    doc = json.loads(lines(out)[0])
    assert isinstance(doc["exception"], str)
    assert "RuntimeError: broker went away" in doc["exception"]
    assert len(lines(out)) == 1


def test_secrets_are_redacted_in_fields_args_and_text(out):
    setup_logging("INFO", "json", stream=out)
    log = logging.getLogger("streamgmm.config")
    log.info("config", extra={"fields": {"kafka": {
        "sasl_plain_password": "hunter2", "api_token": "t0k", "client_secret": "s3",
        "bootstrap_servers": "kafka:9092"}}})
    log.info("options %s", {"sasl_plain_password": "hunter2"})
    log.info("connecting with sasl_plain_password=hunter2, user=alice")
    log.info("ssl %(ssl_password)s", {"ssl_password": "hunter2"})
    text = out.getvalue()
    assert "hunter2" not in text and "t0k" not in text and '"s3"' not in text
    docs = [json.loads(line) for line in lines(out)]
    assert docs[0]["kafka"] == {"sasl_plain_password": "***", "api_token": "***",
                                "client_secret": "***", "bootstrap_servers": "kafka:9092"}
    assert "user=alice" in docs[2]["event"]


def test_text_format_is_plain_and_redacted(out):
    setup_logging("DEBUG", "text", stream=out)
    logging.getLogger("streamgmm.loop").debug(
        "assigned", extra={"fields": {"partitions": 3, "token": "abc"}})
    [line] = lines(out)
    assert not line.startswith("{")
    assert "DEBUG" in line and "streamgmm.loop: assigned" in line
    assert "partitions=3" in line and 'token="***"' in line and "abc" not in line


def test_setup_twice_replaces_its_own_handler(out):
    other = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(other)
    try:
        setup_logging("INFO", "text", stream=io.StringIO())
        setup_logging("INFO", "json", stream=out)
        ours = [h for h in root.handlers if getattr(h, "_streamgmm", False)]
        assert len(ours) == 1 and other in root.handlers
        logging.getLogger("x").info("once")
        assert len(lines(out)) == 1
    finally:
        root.removeHandler(other)


@pytest.mark.parametrize("level, fmt, message", [
    ("LOUD", "text", "logging.level: expected one of DEBUG, .* got 'LOUD'"),
    ("INFO", "xml", "logging.format: expected one of text, json, got 'xml'"),
])
def test_bad_settings_are_named(level, fmt, message):
    with pytest.raises(ValueError, match=message):
        setup_logging(level, fmt, stream=io.StringIO())


def test_redact_text_leaves_ordinary_words():
    assert redact_text("tokenizer ready, 5 events") == "tokenizer ready, 5 events"
    assert redact_text('{"password": "x y", "n": 1}') == '{"password": ***, "n": 1}'


def test_mismatched_format_args_do_not_raise_from_the_filter():
    record = logging.makeLogRecord({"msg": "two %s %s", "args": ("only-one",)})
    assert RedactionFilter().filter(record) is True
    assert record.args == ("only-one",)


def test_namedtuple_arguments_pass_through_redaction():
    """kafka-python logs TopicPartition (a namedtuple) as a format argument."""
    from collections import namedtuple

    from streamgmm.stream.logs import redact

    TopicPartition = namedtuple("TopicPartition", ["topic", "partition"])
    tp = TopicPartition("events", 3)
    assert redact(tp) == tp and type(redact(tp)) is TopicPartition
    assert redact({"parts": [tp], "sasl_plain_password": "x"}) == {
        "parts": [tp], "sasl_plain_password": "***"}
