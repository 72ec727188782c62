import json

import pyarrow as pa
import pyarrow.parquet as pq

from akasha_ray import demo
from akasha_ray.jobs.checkpoint import Checkpoint
from akasha_ray.jobs.ingest import count_records, read_chunks


def test_jsonl_chunks_stream_and_keep_bad_lines_visible(tmp_path):
    path = tmp_path / "in.jsonl"
    records = demo.generate(25, seed=3)
    lines = [json.dumps(r) for r in records]
    lines.insert(5, "{not json")
    path.write_text("\n".join(lines) + "\n\n")
    chunks = list(read_chunks(path, 10))
    assert [n for n, _ in chunks] == [0, 1, 2]
    assert [len(c) for _, c in chunks] == [10, 10, 6]
    assert chunks[0][1][5] == "line 6 is not JSON"
    assert count_records(path) == 26


def test_parquet_chunks(tmp_path):
    path = tmp_path / "in.parquet"
    records = demo.generate(30, seed=4)
    pq.write_table(pa.Table.from_pylist(records), path)
    chunks = list(read_chunks(path, 8))
    assert sum(len(c) for _, c in chunks) == 30 == count_records(path)
    assert chunks[0][1][0]["content"] == records[0]["content"]


def test_checkpoint_resumes_and_resets_when_the_input_changes(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    first = Checkpoint(tmp_path / "jobs", source, 100)
    first.mark(0)
    first.mark(3)
    assert Checkpoint(tmp_path / "jobs", source, 100).done == {0, 3}
    assert Checkpoint(tmp_path / "jobs", source, 50).done == set()  # other chunking
    source.write_text("{}\n{}\n")
    assert Checkpoint(tmp_path / "jobs", source, 100).done == set()  # other content
