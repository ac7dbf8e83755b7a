"""The experiment draw: the proportions hold, and changing a percentage reshuffles nobody."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.experiments.assignment import draw, held_out, in_rollout

ACCOUNTS = [f"acct-{number:06d}" for number in range(100_000)]


def test_over_100k_accounts_each_percentage_is_met_within_one_point():
    for percent in (1, 5, 10, 25, 50, 90):
        share = sum(held_out("api-limit", account, percent) for account in ACCOUNTS) / len(ACCOUNTS)
        assert abs(share - percent / 100) < 0.01, (percent, share)
        rolled = sum(in_rollout("api-limit", account, percent) for account in ACCOUNTS) / len(ACCOUNTS)
        assert abs(rolled - percent / 100) < 0.01, (percent, rolled)


def test_the_holdout_and_the_rollout_are_independent_draws():
    both = sum(
        held_out("seats", account, 50) and in_rollout("seats", account, 50) for account in ACCOUNTS
    ) / len(ACCOUNTS)
    assert abs(both - 0.25) < 0.01


def test_another_salt_is_another_experiment():
    first = {account for account in ACCOUNTS[:20_000] if held_out("seats", account, 10)}
    second = {account for account in ACCOUNTS[:20_000] if held_out("seats-2027", account, 10)}
    overlap = len(first & second) / len(first)
    assert abs(overlap - 0.10) < 0.03  # independent: a tenth of one group is in the other


@settings(max_examples=200)
@given(
    account=st.text(min_size=1, max_size=64),
    salt=st.text(min_size=1, max_size=32),
    before=st.floats(0, 100),
    after=st.floats(0, 100),
)
def test_changing_the_percentage_moves_only_the_accounts_between_the_two_lines(account, salt, before, after):
    number = draw(salt, account)
    assert 0 <= number < 1
    assert draw(salt, account) == number  # stable
    low, high = sorted((before, after))
    if held_out(salt, account, before) != held_out(salt, account, after):
        assert low / 100 <= number < high / 100
    if held_out(salt, account, low):
        assert held_out(salt, account, high)  # raising the percentage keeps every held-out account
