"""HubSpot ids from what people know: an owner's e-mail address, a company's web domain.

A profile may name its owners by e-mail only and its company by `hubspot.domain` only
(docs/api.md). The HubSpot sender resolves them here just before it creates a play's first task
(docs/decisions.md, 44): an owner through the Owners API (`GET /crm/v3/owners?email=...`, the active
owners, then the archived ones to tell "archived" from "unknown"), a company through the CRM search
(`domain` EQ). Ids given in the profile always win and are never looked up.

What comes back:
- FOUND: the id goes on the task (owner, or the company association);
- ARCHIVED (owner): the address is an archived HubSpot owner's, who must not get new work;
- UNKNOWN (owner) / NONE (company): HubSpot has no such owner or company;
- SEVERAL (company): more than one company has the domain; none is guessed.
Anything but FOUND leaves the task unassigned or unassociated, never silently: `Resolution.problems`
are written on the play (GET .../signals) and `Resolution.note` at the top of the task.

Answers are cached (ResolutionCache, on the deliveries table: docs/storage.md) for FOUND_TTL, and a
miss for MISS_TTL, so that a fix made in HubSpot is seen within the hour while a portal's CSMs cost
one lookup a day each. A 429 or 5xx is not an answer: the client waits it out and retries as for
any request (shared/delivery/hubspot.py); what it cannot settle before the deadline propagates
(HubSpotThrottled, or ResolutionUnavailable for a 5xx or a timeout), nothing is cached, no task is
created, and the message comes back later. The cache is keyed by a SHA-256 of the address, never the
address itself, and no log line here carries one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.delivery.hubspot import HubSpotClient, HubSpotUnavailable, StaleReferences
from shared.observability import logger
from shared.routing.messages import PlayDelivery

FOUND_TTL = timedelta(hours=24)
MISS_TTL = timedelta(hours=1)
_KEY_PREFIX = "resolve#"  # beside the ledger's "<channel>#<play id>" items: no play id starts so


class Outcome(StrEnum):
    FOUND = "found"
    ARCHIVED = "archived"
    UNKNOWN = "unknown"
    NONE = "none"
    SEVERAL = "several"


class ResolutionUnavailable(HubSpotUnavailable):
    """HubSpot failed (5xx, timeout) while a lookup was made: no task was attempted, retry later."""


@dataclass(frozen=True)
class Answer:
    """What HubSpot said about one e-mail address or domain."""

    outcome: Outcome
    hubspot_id: str | None = None  # FOUND: the id; ARCHIVED: the archived owner's id
    matches: int = 0  # SEVERAL: how many companies have the domain


@dataclass
class Resolution:
    """The delivery as the task will be created, and what could not be resolved (for the play)."""

    delivery: PlayDelivery
    problems: list[str] = field(default_factory=list)
    looked_up: int = 0  # answers HubSpot gave (not from the cache)
    company_by_domain: tuple[str, str] | None = None  # (domain, company id) when found by domain
    cached: int = 0  # answers the cache gave

    @property
    def note(self) -> str:
        return "\n".join(f"Upswing: {problem}." for problem in self.problems)


class ResolutionCache:
    """Answers by key, each with its own expiry, as items of the deliveries table (`expires_at` is
    its TTL attribute: DynamoDB deletes them within a day or two after; a read checks the time)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def get(self, key: str, now: datetime) -> Answer | None:
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": _KEY_PREFIX + key}}).get("Item")
        if not item or int(item["expires_at"]["N"]) <= int(now.timestamp()):
            return None
        return Answer(
            outcome=Outcome(item["outcome"]["S"]),
            hubspot_id=item["hubspot_id"]["S"] if "hubspot_id" in item else None,
            matches=int(item.get("matches", {}).get("N", "0")),
        )

    def put(self, key: str, answer: Answer, now: datetime) -> None:
        ttl = FOUND_TTL if answer.outcome is Outcome.FOUND else MISS_TTL
        item: dict[str, Any] = {
            "pk": {"S": _KEY_PREFIX + key},
            "outcome": {"S": answer.outcome.value},
            "matches": {"N": str(answer.matches)},
            "resolved_at": {"S": now.isoformat()},
            "expires_at": {"N": str(int((now + ttl).timestamp()))},
        }
        if answer.hubspot_id:
            item["hubspot_id"] = {"S": answer.hubspot_id}
        self._client.put_item(TableName=self._table, Item=item)

    def forget(self, key: str) -> None:
        self._client.delete_item(TableName=self._table, Key={"pk": {"S": _KEY_PREFIX + key}})


def owner_key(email: str) -> str:
    """The cache key of an owner's address: a hash (the table holds no address)."""
    return "owner#" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def company_key(domain: str) -> str:
    return "company#" + domain.lower()


class HubSpotResolver:
    """Fills in the owner id and the company id a delivery names by e-mail and domain."""

    def __init__(self, client: HubSpotClient, cache: ResolutionCache | None = None) -> None:
        self._client = client
        self._cache = cache

    def resolve(self, delivery: PlayDelivery, deadline: float, now: datetime) -> Resolution:
        """The delivery with the ids found; raises HubSpotThrottled / ResolutionUnavailable (retry
        later, nothing was created) and HubSpotAuthFailed (the token or a scope: held like a task)."""
        resolution = Resolution(delivery)
        owner = delivery.owner
        if owner is not None and owner.hubspot_owner_id is None and owner.email is not None:
            email = owner.email
            answer = self._answer(
                owner_key(email), lambda: self._owner(email, deadline, delivery.play_id), now, resolution
            )
            if answer.outcome is Outcome.FOUND:
                owner = owner.model_copy(update={"hubspot_owner_id": answer.hubspot_id})
            else:
                resolution.problems.append(_owner_problem(owner.role, answer))
        refs = delivery.hubspot
        if refs.company_id is None and refs.domain is not None:
            domain = refs.domain
            answer = self._answer(
                company_key(domain),
                lambda: self._company(domain, deadline, delivery.play_id),
                now,
                resolution,
            )
            if answer.outcome is Outcome.FOUND and answer.hubspot_id:
                refs = refs.model_copy(update={"company_id": answer.hubspot_id})
                resolution.company_by_domain = (domain, answer.hubspot_id)
            else:
                resolution.problems.append(_company_problem(domain, answer))
        changes: dict[str, Any] = {"owner": owner, "hubspot": refs}
        if resolution.problems:
            changes["body"] = resolution.note + "\n\n" + delivery.body
        resolution.delivery = delivery.model_copy(update=changes)
        return resolution

    def forget(self, original: PlayDelivery, sent: PlayDelivery, stale: StaleReferences) -> None:
        """HubSpot refused an id this resolver gave (the owner archived, the company deleted since the
        answer was cached): drop the answer, so the next task asks HubSpot again."""
        if self._cache is None:
            return
        owner = original.owner
        if stale.owner_id and owner and owner.hubspot_owner_id is None and owner.email:
            self._cache.forget(owner_key(owner.email))
        refs = original.hubspot
        if refs.company_id is None and refs.domain and sent.hubspot.company_id in stale.record_ids:
            self._cache.forget(company_key(refs.domain))

    def _answer(self, key: str, ask: Callable[[], Answer], now: datetime, resolution: Resolution) -> Answer:
        cached = self._cache.get(key, now) if self._cache else None
        if cached is not None:
            resolution.cached += 1
            return cached
        answer = ask()
        resolution.looked_up += 1
        if self._cache is not None:
            self._cache.put(key, answer, now)
        return answer

    def _owner(self, email: str, deadline: float, play_id: str) -> Answer:
        with _lookup(play_id, "owner"):
            active = self._client.owners_by_email(email, deadline, archived=False, play_id=play_id)
            if active:
                return Answer(Outcome.FOUND, active[0])
            archived = self._client.owners_by_email(email, deadline, archived=True, play_id=play_id)
        return Answer(Outcome.ARCHIVED, archived[0]) if archived else Answer(Outcome.UNKNOWN)

    def _company(self, domain: str, deadline: float, play_id: str) -> Answer:
        with _lookup(play_id, "company"):
            ids, total = self._client.companies_by_domain(domain, deadline, play_id=play_id)
        if not ids:
            return Answer(Outcome.NONE)
        if total > 1:
            return Answer(Outcome.SEVERAL, matches=total)
        return Answer(Outcome.FOUND, ids[0])


@contextmanager
def _lookup(play_id: str, kind: str) -> Iterator[None]:
    """A 5xx or a timeout during a lookup becomes ResolutionUnavailable (nothing created: retry)."""
    try:
        yield
    except HubSpotUnavailable as error:
        logger.warning(
            "HubSpot failed a lookup; the delivery is retried", extra={"play_id": play_id, "lookup": kind}
        )
        raise ResolutionUnavailable(f"HubSpot {kind} lookup: {error.message}") from error


def _owner_problem(role: str, answer: Answer) -> str:
    if answer.outcome is Outcome.ARCHIVED:
        return (
            f"the {role} owner's e-mail address is HubSpot owner {answer.hubspot_id}'s, who is archived: the "
            "task is unassigned (give the account a current owner)"
        )
    return (
        f"no HubSpot owner has the {role} owner's e-mail address: the task is unassigned (fix the address, "
        "or give hubspot_owner_id)"
    )


def _company_problem(domain: str, answer: Answer) -> str:
    if answer.outcome is Outcome.SEVERAL:
        return (
            f"{answer.matches} HubSpot companies have the domain {domain}, and none was guessed: the task is "
            "not associated with a company (give the account's hubspot.company_id)"
        )
    return (
        f"no HubSpot company has the domain {domain}: the task is not associated with a company (fix the "
        "domain, or give hubspot.company_id)"
    )
