"""Reading closed-won HubSpot deals back as outcomes (`source: hubspot`).

Every run of the poller (functions/hubspot_poller), after the tasks:

1. *Search.* The closed-won deals modified since the deals' own watermark (shared/readback/watermark.py:
   HubSpot's hs_lastmodifieddate, a 2-minute overlap, 200 a page, a new query past 10,000 results,
   the watermark moved page by page, the shared search budget). Closed-won is HubSpot's
   `hs_is_closed_won`, or `dealstage` in the configured stages; optionally only some pipelines.
2. *Companies.* One associations batch read per page (v4, up to 1,000 deals a request; HubSpot's
   search answers no associations). A deal on one company takes it; on several, the one labelled
   Primary; on several without a Primary, or on none, it is skipped and counted.
3. *Accounts.* The company id is looked up in the accounts' `hubspot_company` index (a Query per
   distinct company per page). No account: skipped and counted; several accounts: skipped and
   counted (writing it to each would count the revenue twice).
4. *Outcomes.* Each deal becomes `{outcome_id: hubspot-deal-<dealId>, kind, occurred_at: closedate,
   amount, currency, source: hubspot, deal_id}` (DealRules: the kind from a deal property or the
   default, the currency from deal_currency_code or the portal's), validated like any outcome (an
   invalid one is counted with the validation's message, the page goes on) and written through the
   outcome intake: a conditional put, idempotent on the outcome id. Read again (the overlap, a page
   retried, the deal edited), the same content is a duplicate; *other* content (the amount changed
   after the close) is not written over: the outcome stays as first seen closed-won, and the change is
   counted and logged (docs/decisions.md 22). Deals of excluded types (new business) are skipped.

A page is recorded before the watermark moves; a storage failure raises (OutcomesUnavailable), so
the page is read again next run, and what was written meanwhile comes back as duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from shared.delivery.hubspot import DealCompany, DealSearch, HubSpotClient
from shared.intake import Channel, Invalid, Status
from shared.observability import logger
from shared.outcomes.intake import OutcomeIntake, validate_outcome
from shared.outcomes.models import OutcomeKind
from shared.readback.watermark import OVERLAP, PollerStateStore, iso_ms, modified_ms, read_changes

OUTCOME_ID_PREFIX = "hubspot-deal-"
SOURCE = "hubspot"
PRODUCER = "hubspot-readback"  # the outcome's `producer` (with channel `hubspot`)
NEW_BUSINESS = "newbusiness"  # HubSpot's default dealtype for a new customer: not an expansion


class CompanyAccounts(Protocol):
    """HubSpot company id → the accounts whose profile names it (AccountStore)."""

    def accounts_of_company(self, company_id: str) -> list[str]: ...


class OutcomesUnavailable(Exception):
    """The outcomes table refused a write for an infrastructure reason: the page is read again."""


@dataclass(frozen=True)
class DealRules:
    """How a closed-won deal becomes an outcome (functions/hubspot_poller/settings.py)."""

    default_kind: OutcomeKind = OutcomeKind.PLAN_UPGRADE
    # A deal property whose value names the kind (seat_expansion, plan_upgrade, ...); unset or empty on
    # a deal: the default kind.
    kind_property: str | None = None
    # Deals of these dealtype values are not expansions (new business): skipped, counted.
    excluded_types: frozenset[str] = frozenset({NEW_BUSINESS})
    # The portal's company currency, for deals without deal_currency_code (single-currency portals).
    default_currency: str = "USD"
    search: DealSearch = field(default_factory=DealSearch)


@dataclass
class DealReport:
    pages: int = 0
    seen: int = 0  # closed-won deals in the search results
    written: int = 0  # outcomes stored for the first time
    duplicates: int = 0  # already stored with the same content (the overlap, a page read again)
    changed: int = 0  # stored earlier with other content (e.g. the amount): kept as first seen
    invalid: int = 0  # refused by the outcome validation (amount missing, close date ahead...)
    excluded: int = 0  # an excluded deal type (new business)
    without_company: int = 0
    ambiguous_company: int = 0  # several companies, none of them Primary
    unknown_company: int = 0  # no account profile names the company
    ambiguous_account: int = 0  # several account profiles name the company
    watermark_ms: int = 0
    stopped_early: bool = False

    def counts(self) -> dict[str, int]:
        return {name: int(value) for name, value in vars(self).items()}


@dataclass
class DealPoller:
    client: HubSpotClient
    accounts: CompanyAccounts
    outcomes: OutcomeIntake
    state: PollerStateStore  # with DEALS_STATE_KEY
    rules: DealRules = field(default_factory=DealRules)
    retention_days: int = 400
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    overlap: timedelta = OVERLAP

    def poll(self, deadline: float, time_left: Callable[[], bool]) -> DealReport:
        """Record every closed-won deal changed since the watermark as an outcome; stop when time runs
        short. HubSpot errors propagate (HubSpotThrottled, ...): pages recorded stay recorded."""
        report = DealReport()
        state = self.state.load(self.wall_clock())
        report.watermark_ms = state.watermark_ms
        read = read_changes(
            state,
            search=lambda since, after: self.client.search_closed_won_deals(
                since, after, deadline, self.rules.search
            ),
            record=lambda results: self._record_page(results, report, deadline),
            save=lambda moved: self.state.save(moved, self.wall_clock()),
            overlap=self.overlap,
            time_left=time_left,
        )
        report.pages, report.watermark_ms = read.pages, read.watermark_ms
        report.stopped_early = read.stopped_early
        return report

    def _record_page(self, results: Sequence[dict[str, Any]], report: DealReport, deadline: float) -> None:
        report.seen += len(results)
        deals = [deal for deal in results if not self._excluded(deal, report)]
        if not deals:
            return
        companies = self.client.deal_companies([str(deal["id"]) for deal in deals], deadline)
        accounts_of: dict[str, list[str]] = {}  # per page: one Query per distinct company
        now = self.wall_clock()
        drafts: list[dict[str, Any]] = []
        for deal in deals:
            deal_id = str(deal["id"])
            account_id = self._account(deal_id, companies.get(deal_id, ()), accounts_of, report)
            if account_id is None:
                continue
            draft = deal_outcome(deal, account_id, self.rules)
            checked = validate_outcome(draft, now, self.retention_days)
            if isinstance(checked, Invalid):
                report.invalid += 1
                logger.warning(
                    "closed-won deal not taken as an outcome",
                    extra={"deal_id": deal_id, "account_id": account_id, "errors": checked.errors},
                )
                continue
            drafts.append(draft)
        if drafts:
            self._write(drafts, report, now)

    def _excluded(self, deal: dict[str, Any], report: DealReport) -> bool:
        deal_type = str((deal.get("properties") or {}).get("dealtype") or "")
        if deal_type and deal_type in self.rules.excluded_types:
            report.excluded += 1
            return True
        return False

    def _account(
        self,
        deal_id: str,
        companies: Sequence[DealCompany],
        accounts_of: dict[str, list[str]],
        report: DealReport,
    ) -> str | None:
        """The one account the deal belongs to, or None (counted and logged: ids only)."""
        company = _the_company(companies)
        if company is None:
            if companies:
                report.ambiguous_company += 1
                reason = "several companies, none labelled Primary"
            else:
                report.without_company += 1
                reason = "no company"
            logger.warning(
                "closed-won deal skipped",
                extra={
                    "deal_id": deal_id,
                    "reason": reason,
                    "company_ids": [company.company_id for company in companies],
                },
            )
            return None
        if company not in accounts_of:
            accounts_of[company] = self.accounts.accounts_of_company(company)
        accounts = accounts_of[company]
        if len(accounts) == 1:
            return accounts[0]
        if accounts:
            report.ambiguous_account += 1
            reason = "several accounts name the company"
        else:
            report.unknown_company += 1
            reason = "no account names the company"
        logger.warning(
            "closed-won deal skipped",
            extra={"deal_id": deal_id, "reason": reason, "company_id": company, "account_ids": accounts},
        )
        return None

    def _write(self, drafts: list[dict[str, Any]], report: DealReport, now: datetime) -> None:
        results = self.outcomes.ingest(drafts, PRODUCER, Channel.HUBSPOT, now)
        for draft, result in zip(drafts, results, strict=True):
            if result.status is Status.FAILED:
                raise OutcomesUnavailable("the outcomes table is unavailable; the page is read again")
            if result.status is Status.ACCEPTED:
                report.written += 1
                logger.info(
                    "deal outcome written",
                    extra={key: draft[key] for key in ("deal_id", "account_id", "kind")},
                )
            elif result.status is Status.DUPLICATE:
                report.duplicates += 1
            else:  # valid, so refused only as a reused id: the deal changed after its outcome was written
                report.changed += 1
                logger.warning(
                    "closed-won deal changed after its outcome was written; the outcome is kept as first "
                    "seen (post a correcting outcome if the change matters)",
                    extra={"deal_id": draft["deal_id"], "account_id": draft["account_id"]},
                )


def deal_outcome(deal: dict[str, Any], account_id: str, rules: DealRules) -> dict[str, Any]:
    """The outcome a closed-won deal stands for, as an outcome producer would post it (validated
    after): the close date, or the last modification when the deal has none."""
    properties = deal.get("properties") or {}
    kind = str(properties.get(rules.kind_property) or "") if rules.kind_property else ""
    draft: dict[str, Any] = {
        "outcome_id": f"{OUTCOME_ID_PREFIX}{deal['id']}",
        "account_id": account_id,
        "kind": kind.strip() or rules.default_kind.value,
        "occurred_at": _instant(properties.get("closedate")) or iso_ms(modified_ms(deal)),
        "currency": str(properties.get("deal_currency_code") or "").strip() or rules.default_currency,
        "source": SOURCE,
        "deal_id": str(deal["id"]),
    }
    amount = _amount(properties.get("amount"))
    if amount is not None:
        draft["amount"] = amount
    return draft


def _the_company(companies: Sequence[DealCompany]) -> str | None:
    if len(companies) == 1:
        return companies[0].company_id
    primaries = {company.company_id for company in companies if company.primary}
    return primaries.pop() if len(primaries) == 1 else None


def _amount(value: Any) -> Any:
    """HubSpot answers numbers as strings ("4800", "4800.505"): a finite decimal becomes a number, so
    the outcome rules round it to the cent; anything else goes as it is, for their message."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return value
    return number if number.is_finite() and number >= 0 else value


def _instant(value: Any) -> str | None:
    """A HubSpot date-time (ISO 8601, or epoch ms as digits) as ISO 8601 UTC; None when absent."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    return iso_ms(int(text)) if text.isdigit() else text
