"""Account families at profile write: one level, bounded, never the account itself (the `parent` index)."""

from __future__ import annotations

import json

import pytest

from shared.accounts import store as store_module
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore, HierarchyRefused
from tests.conftest import Aws
from tests.integration.builders import TEST_WRITER, account_path, call_api, proxy_event


def child_of(parent: str) -> AccountProfile:
    return AccountProfile(name="Child", parent_account_id=parent)


def test_given_children_written_when_their_parent_is_asked_then_the_index_lists_them_sorted(aws: Aws) -> None:
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    accounts.put("holding", AccountProfile(name="Holding"), TEST_WRITER)
    for child in ("unit-b", "unit-a"):
        accounts.put(child, child_of("holding"), TEST_WRITER)

    assert accounts.children_of("holding") == ["unit-a", "unit-b"]
    # A child that leaves the family drops out of the index with its attribute
    accounts.put("unit-b", AccountProfile(name="Alone"), TEST_WRITER)
    assert accounts.children_of("holding") == ["unit-a"]


def test_given_a_child_when_it_is_named_as_a_parent_then_the_write_is_refused_with_the_root(aws: Aws) -> None:
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    accounts.put("unit-a", child_of("holding"), TEST_WRITER)

    with pytest.raises(HierarchyRefused, match="one level deep; name 'holding' as the parent instead"):
        accounts.put("team-x", child_of("unit-a"), TEST_WRITER)
    assert accounts.get("team-x") is None


def test_given_a_parent_when_it_is_given_a_parent_then_the_write_is_refused(aws: Aws) -> None:
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    accounts.put("unit-a", child_of("holding"), TEST_WRITER)

    with pytest.raises(HierarchyRefused, match="is the parent of 1 accounts"):
        accounts.put("holding", child_of("group"), TEST_WRITER)
    with pytest.raises(HierarchyRefused, match="names the account itself"):
        accounts.put("solo", child_of("solo"), TEST_WRITER)


def test_given_a_full_family_when_one_more_child_is_written_then_it_is_refused(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_CHILDREN", 2)
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    for child in ("unit-a", "unit-b"):
        accounts.put(child, child_of("holding"), TEST_WRITER)

    with pytest.raises(HierarchyRefused, match="already has 2 children, the most a family may have"):
        accounts.put("unit-c", child_of("holding"), TEST_WRITER)
    # Writing an existing child again is not a new child
    accounts.put("unit-a", child_of("holding"), TEST_WRITER)


def test_given_a_child_of_a_child_over_http_then_the_answer_is_400_with_the_reason(aws: Aws) -> None:
    AccountStore(aws.dynamodb, aws.accounts_table).put("unit-a", child_of("holding"), TEST_WRITER)

    status, body = call_api(
        proxy_event(
            "PUT", account_path("team-x"), json.dumps({"name": "Team X", "parent_account_id": "unit-a"})
        )
    )

    assert status == 400
    assert body["errors"] == [
        "parent_account_id: parent_account_id 'unit-a' is itself a child of 'holding': families are one "
        "level deep; name 'holding' as the parent instead"
    ]
