"""Splitting input by account: the pieces of a file cover it exactly, and however it is cut, each
partition gets its lines in arrival order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upswing.backtest.events import read_lines
from upswing.backtest.pipeline import _pieces, split


def write_events(path: Path, lengths: list[int]) -> list[bytes]:
    lines = [
        json.dumps(
            {
                "event_id": f"e{number}",
                "account_id": f"acct-{number % 7}",
                "name": "app.session" if number % 3 else "seats.active",
                "occurred_at": "2025-03-04T10:15:00Z",
                "kind": "count" if number % 3 else "gauge",
                "dimensions": {"user": "u" * length},
            },
            separators=(",", ":"),
        ).encode()
        + b"\n"
        for number, length in enumerate(lengths)
    ]
    path.write_bytes(b"".join(lines))
    return lines


@given(lengths=st.lists(st.integers(1, 200), min_size=1, max_size=60), count=st.integers(1, 7))
@settings(max_examples=60, deadline=None)
def test_the_pieces_of_a_file_cover_it_line_by_line_with_their_numbers(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], count: int
) -> None:
    path = tmp_path_factory.mktemp("pieces") / "events.jsonl"
    write_events(path, lengths)
    pieces = _pieces(0, path, count, smallest=0)
    assert len(pieces) <= count
    read = [item for piece in pieces for item in read_lines(path, piece.start, piece.end, piece.first_line)]
    assert read == list(read_lines(path))


def test_however_the_input_is_cut_each_partition_holds_its_lines_in_arrival_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, [100 + number % 101 for number in range(4000)])  # over 1 MiB: cut in three
    orders = []
    for workers, folder in ((1, tmp_path / "one"), (3, tmp_path / "three")):
        folder.mkdir()
        spills, kinds = split([path], folder, 4, workers)
        assert kinds == {"seats.active": "gauge", "app.session": "count"}
        orders.append(
            [b"".join(spill.read_bytes() for spill in sorted(partition.iterdir())) for partition in spills]
        )
    assert orders[0] == orders[1]
    assert sum(chunk.count(b"\n") for chunk in orders[0]) == 4000
    assert len(_pieces(0, path, 3)) == 3
