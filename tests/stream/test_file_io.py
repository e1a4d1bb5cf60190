"""File, stdin and generated sources; stdout, JSON-lines and null sinks."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest

from streamgmm.service.config import from_dict
from streamgmm.service.schema import FeaturesConfig
from streamgmm.stream.decode import Decoder
from streamgmm.stream.file_io import FileSource, GenerateSource, StdinSource
from streamgmm.stream.sinks import JsonlFileSink, NullSink, StreamSink

FEATURES = from_dict(FeaturesConfig, {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]})


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def drain(source, timeout_s: float = 0.05) -> list:
    out = []
    while True:
        batch = source.poll(timeout_s)
        out.extend(batch)
        if not batch and source.exhausted:
            return out


def test_file_source_numbers_lines_skips_blanks_and_ends(tmp_path):
    path = write(tmp_path / "e.jsonl", '{"a": 1, "b": 2}\n\n{"a": 3, "b": 4}\n{"a": 5, "b": 6}')
    source = FileSource(path, batch_size=2)
    first = source.poll(0.1)
    assert [r.offset for r in first] == [1, 3]
    assert all(r.topic == path and r.partition == 0 and r.key is None for r in first)
    rest = drain(source)
    assert [(r.offset, r.value) for r in rest] == [(4, b'{"a": 5, "b": 6}')]
    assert source.exhausted
    assert source.assignment() == {(path, 0)} and source.commit({(path, 0): 5})
    source.close()


def test_file_source_csv_decodes_under_the_header(tmp_path):
    path = write(tmp_path / "e.csv", "id,a,b\nx1,1.5,2\nx2,oops,3\nx3,4\n")
    source = FileSource(path, fmt="csv")
    records = drain(source)
    assert [r.offset for r in records] == [2, 3, 4]
    decoded = source.decode(Decoder(FEATURES), records)
    assert decoded.X.tolist() == [[1.5, 2.0]] and decoded.keys == ["x1"]
    assert [(i, reason.code) for i, reason in decoded.errors] == [(1, "not_a_number"),
                                                                 (2, "bad_csv")]


def test_file_source_csv_with_a_byte_order_mark_and_blank_lines_before_the_header(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(b"\xef\xbb\xbf\n\nid,a,b\nx1,1.5,2\n")  # as spreadsheets save "CSV UTF-8"
    source = FileSource(str(path), fmt="csv")
    records = drain(source)
    assert [r.offset for r in records] == [4]
    decoded = source.decode(Decoder(FEATURES), records)
    assert decoded.X.tolist() == [[1.5, 2.0]] and decoded.keys == ["x1"] and not decoded.errors


def test_file_source_jsonl_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "x1", "a": 1, "b": 2}\n{"id": "x2", "a": 3, "b": 4}\n')
    decoded = Decoder(FEATURES).decode(drain(FileSource(str(path))))
    assert decoded.keys == ["x1", "x2"] and not decoded.errors


def test_file_source_seek_goes_back_and_forward(tmp_path):
    path = write(tmp_path / "e.jsonl", "".join(f'{{"a": {i}, "b": 0}}\n' for i in range(1, 11)))
    source = FileSource(path, batch_size=4)
    assert [r.offset for r in source.poll(0.1)] == [1, 2, 3, 4]
    source.seek(path, 0, 2)
    assert [r.offset for r in source.poll(0.1)] == [2, 3, 4, 5]
    source.seek(path, 0, 9)
    assert [r.offset for r in drain(source)] == [9, 10]


def test_followed_file_yields_appended_lines_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": 1, "b": 1}\n')
    source = FileSource(str(path), follow=True, poll_interval_s=0.02)
    assert [r.offset for r in source.poll(0.1)] == [1]
    start = time.monotonic()
    assert source.poll(0.2) == [] and not source.exhausted
    assert time.monotonic() - start >= 0.15  # it waited for more
    with open(path, "a") as handle:
        handle.write('{"a": 2,')
        handle.flush()
        assert source.poll(0.1) == []  # half a line is not an event yet
        handle.write(' "b": 2}\n')
    [record] = source.poll(0.5)
    assert (record.offset, record.value) == (2, b'{"a": 2, "b": 2}')


def test_followed_file_is_read_again_after_truncation(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": 1, "b": 1}\n{"a": 2, "b": 2}\n')
    source = FileSource(str(path), follow=True, poll_interval_s=0.02)
    assert len(source.poll(0.1)) == 2
    path.write_text('{"a": 9, "b": 9}\n')
    got = source.poll(0.3) or source.poll(0.3)
    assert [(r.offset, r.value) for r in got] == [(1, b'{"a": 9, "b": 9}')]


def test_stdin_source_waits_reads_and_ends():
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    source = StdinSource(batch_size=10, stream=reader)
    start = time.monotonic()
    assert source.poll(0.1) == []
    assert time.monotonic() - start >= 0.08 and not source.exhausted
    os.write(write_fd, b'{"a": 1, "b": 2}\n\n{"a": 3, "b": 4}\n')
    os.close(write_fd)
    records = drain(source, 0.5)
    assert [(r.topic, r.offset) for r in records] == [("-", 1), ("-", 3)]
    assert source.exhausted


def test_generate_source_offsets_keys_labels_and_end():
    source = GenerateSource(n_events=300, seed=3, fraud_rate=0.05, batch_size=128)
    records = drain(source)
    assert [r.offset for r in records] == list(range(1, 301))
    events = [json.loads(r.value) for r in records]
    assert [r.key.decode() for r in records] == [e["card_id"] for e in events]
    labels = source.pop_labels(records)
    assert labels == [e["fraud_pattern"] for e in events]
    assert any(labels)
    assert source.pop_labels(records) == [None] * 300  # handed over once


def test_generate_source_rate_limit_and_seek():
    source = GenerateSource(n_events=0, events_per_second=200, batch_size=1000)
    start = time.monotonic()
    got = 0
    while time.monotonic() - start < 0.5:
        got += len(source.poll(0.05))
    assert 60 <= got <= 140
    fresh = GenerateSource(n_events=50, batch_size=10)
    fresh.seek("generate", 0, 41)
    assert [r.offset for r in drain(fresh)] == list(range(41, 51))


def test_stream_sink_counts_lines_and_renders():
    out = io.StringIO()
    sink = StreamSink(out, render=lambda value: value.decode().upper())
    sink.send(b"one")
    sink.send(b"two", key=b"k")
    assert sink.flush_and_verify(1.0) == (2, [])
    assert out.getvalue() == "ONE\nTWO\n"
    assert sink.flush_and_verify(1.0) == (0, [])


def test_stream_sink_reports_write_errors():
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    sink = StreamSink(Full())
    sink.send(b"x")
    n_ok, errors = sink.flush_and_verify(1.0)
    assert n_ok == 0 and "No space left" in errors[0]


def test_jsonl_file_sink_appends(tmp_path):
    path = tmp_path / "out" / "alerts.jsonl"
    for run in range(2):
        sink = JsonlFileSink(str(path))
        sink.send(json.dumps({"run": run}).encode())
        assert sink.flush_and_verify(1.0) == (1, [])
        sink.close()
    assert [json.loads(line)["run"] for line in path.read_text().splitlines()] == [0, 1]


def test_null_sink_counts():
    sink = NullSink()
    sink.send(b"a")
    assert sink.flush_and_verify(1.0) == (1, [])


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(OSError, match="source.file.path"):
        FileSource(str(tmp_path / "nope.jsonl"))


def test_stdin_reader_thread_is_a_daemon():
    read_fd, write_fd = os.pipe()
    StdinSource(stream=os.fdopen(read_fd, "rb"))
    names = [t for t in threading.enumerate() if t.name == "streamgmm-stdin"]
    assert names and all(t.daemon for t in names)
    os.close(write_fd)
