"""`upswing import` against the real API function (moto): counts, idempotency, resume after a crash.

An httpx MockTransport hands each request to the API handler as API Gateway would, so what the
importer sends is judged by the real intake and the real go-live evaluation; a transport that
"crashes" after N requests stands for a dead network or a killed process half-way.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from functions.aggregator.handler import process_stream_batch
from shared.counters.store import CounterStore
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import an_hour, call_api, proxy_event, rfc3339, stream_event, usage_event
from upswing.importer import Importer, ImportFailed, ImportState, files_digest, summary

ENDPOINT = "https://api.example.test/prod"
ACCOUNTS = ("acct-alpha", "acct-beta", "acct-gamma")


class Api:
    """The API function behind a transport, the aggregator counting what it stored after each request;
    `fail_after`: requests answered before the link dies."""

    def __init__(self, aws: Aws, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.calls: list[str] = []
        self._ledger = aws.events_stream()
        self._counters = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path.removeprefix("/prod")
        self.calls.append(path)
        status, body = call_api(proxy_event(request.method, path, request.content.decode()))
        process_stream_batch(stream_event(self._ledger.new_records()), self._counters)
        return httpx.Response(status, json=body)

    def posts(self, path: str) -> int:
        return self.calls.count(path)


def write_history(folder: Path) -> list[Path]:
    """Two files: 30 events as JSONL (with a line that is not JSON), 6 as CSV (one invalid)."""
    lines = [
        json.dumps(
            usage_event(
                event_id=f"evt-{account}-{day}",
                account_id=account,
                name="dashboard.created",
                occurred_at=rfc3339(an_hour(-day, 9)),
            )
        )
        for account in ACCOUNTS
        for day in range(1, 11)
    ]
    lines.insert(7, "{not json")
    jsonl = folder / "history.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    rows = ["event_id,account_id,name,occurred_at,value"]
    rows += [f"csv-{n},acct-delta,feature.export.used,{rfc3339(an_hour(-n, 8))},{n}" for n in range(1, 6)]
    rows.append("csv-bad,acct-delta,feature.export.used,yesterday,1")
    csv = folder / "history.csv"
    csv.write_text("\n".join(rows) + "\n")
    return [jsonl, csv]


def run(files: list[Path], api: Api, progress_file: Path, *, finish: bool = True) -> Importer:
    state = ImportState.load(progress_file, files_digest(files))
    with httpx.Client(transport=httpx.MockTransport(api)) as http:
        importer = Importer(
            http, ENDPOINT, "upk_test", state, progress_file, sleep=lambda _: None, batch_size=8
        )
        importer.send(files)
        if finish:
            importer.finish()
    return importer


def stored_events(aws: Aws) -> int:
    return len(aws.scan(aws.events_table))


def test_given_history_files_when_imported_then_every_event_is_judged_once_and_each_account_goes_live(
    aws: Aws, tmp_path: Path
) -> None:
    files = write_history(tmp_path)
    api = Api(aws)

    state = run(files, api, tmp_path / "progress.json").state

    assert state.events_read == 37
    assert state.accepted + state.rejected == 37
    assert state.duplicates == 0
    assert stored_events(aws) == state.accepted
    assert any("not JSON" in text for text in state.rejections)
    assert any("history.csv:7" in text for text in state.rejections)
    assert set(state.finished) == set(state.accounts) >= set(ACCOUNTS)
    assert api.posts("/v1/imports/finish") == 1
    text = summary(state)
    assert f"{state.accepted:,} accepted" in text
    assert "Pre-existing triggers" in text


def test_given_an_import_that_died_half_way_when_run_again_then_it_resumes_and_counts_nothing_twice(
    aws: Aws, tmp_path: Path
) -> None:
    files = write_history(tmp_path)
    progress = tmp_path / "progress.json"

    with pytest.raises(ImportFailed, match="run the same command to resume"):
        run(files, Api(aws, fail_after=2), progress)
    halfway = json.loads(progress.read_text())
    resumed_api = Api(aws)
    state = run(files, resumed_api, progress).state

    assert halfway["batches_done"] == 2
    assert resumed_api.posts("/v1/events") == 5 - 2  # 37 lines in batches of 8: only the rest
    assert state.duplicates == 0
    assert stored_events(aws) == state.accepted
    assert state.accepted + state.rejected == 37


def test_given_a_finished_import_when_run_again_without_its_progress_file_then_nothing_counts_twice(
    aws: Aws, tmp_path: Path
) -> None:
    files = write_history(tmp_path)
    first = run(files, Api(aws), tmp_path / "first.json").state
    stored = stored_events(aws)
    firings = aws.scan(aws.tables["FIRINGS_TABLE"])

    again = run(files, Api(aws), tmp_path / "second.json").state

    assert again.accepted == 0
    assert again.duplicates == first.accepted
    assert stored_events(aws) == stored
    assert again.went_live == first.went_live  # each account went live once: the same answer
    assert aws.scan(aws.tables["FIRINGS_TABLE"]) == firings


def test_given_a_completed_progress_file_when_run_again_then_nothing_is_sent(
    aws: Aws, tmp_path: Path
) -> None:
    files = write_history(tmp_path)
    progress = tmp_path / "progress.json"
    run(files, Api(aws), progress)
    api = Api(aws)

    run(files, api, progress)

    assert api.calls == []


def test_given_a_progress_file_of_other_files_then_it_is_refused_with_what_to_do(tmp_path: Path) -> None:
    files = write_history(tmp_path)
    progress = tmp_path / "progress.json"
    ImportState(files="another-import").save(progress)

    with pytest.raises(ImportFailed, match="remove the file to start this import from the beginning"):
        ImportState.load(progress, files_digest(files))


def test_given_a_key_without_the_scope_then_the_import_stops_with_the_apis_message(
    aws: Aws, tmp_path: Path
) -> None:
    files = write_history(tmp_path)

    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "The key lacks the scope 'events:write'."})

    state = ImportState(files=files_digest(files))
    with httpx.Client(transport=httpx.MockTransport(forbidden)) as http:
        importer = Importer(http, ENDPOINT, "upk_test", state, tmp_path / "p.json", sleep=lambda _: None)
        with pytest.raises(ImportFailed, match="403: The key lacks the scope 'events:write'"):
            importer.send(files)
