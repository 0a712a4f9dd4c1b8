"""Serving-log files (serving/log_files.py): a file appears whole or not at all, so a reader running
beside writers (every `feast serve` worker flushes to the same folder) never opens a partial one."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa

from feast_sequence.serving.log_files import logged_files, read_file_logs, write_file_logs


def _destination(tmp_path, partition_by=None):
    return SimpleNamespace(repo_path=tmp_path), SimpleNamespace(path="logs", partition_by=partition_by)


def test_files_being_written_are_not_read(tmp_path):
    config, destination = _destination(tmp_path)
    write_file_logs(config, destination, pa.table({"user_id": [1, 2]}))
    folder = tmp_path / "logs"
    (folder / ".a1.parquet.tmp").write_bytes(b"")  # a flush in progress, as another process has it
    (folder / ".staging-b2" / "day=1").mkdir(parents=True)
    (folder / ".staging-b2" / "day=1" / "b2-0.parquet").write_bytes(b"")  # a partitioned one
    assert len(logged_files(config, destination)) == 1
    assert read_file_logs(config, destination)["user_id"].to_pylist() == [1, 2]


def test_partitioned_logs_are_moved_into_place_whole(tmp_path):
    config, destination = _destination(tmp_path, partition_by=["day"])
    write_file_logs(config, destination, pa.table({"user_id": [1, 2, 3], "day": [1, 1, 2]}))
    write_file_logs(config, destination, pa.table({"user_id": [4], "day": [2]}))
    folder = tmp_path / "logs"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert sorted(p.parent.name for p in logged_files(config, destination)) == ["day=1", "day=2", "day=2"]
    assert sorted(read_file_logs(config, destination)["user_id"].to_pylist()) == [1, 2, 3, 4]
