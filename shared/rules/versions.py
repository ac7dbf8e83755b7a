"""Ruleset versions: which rulesets a deployment runs, the lock that fixes what a version says,
and the record of every version deployed.

A deployment runs one **live** ruleset (its firings are routed) and any number of **shadow**
rulesets (evaluated on the same counter changes, their firings recorded with their evidence, never
handed to the router). Each is a file under rules/ naming its own `version`.

A version number stands for one content, forever: rules/versions.lock maps each version to the
SHA-256 of its file, and the synth refuses a deployed file whose version is missing from the lock
or locked with another hash (`upswing rules lock` adds new versions; it never rewrites one). So a
firing's `ruleset_version` always says which rules made it.

The evaluator records each version it runs once (`RulesetRecords.record`, conditional writes on
the registry table): the hash, the file itself (the audit diffs the stored files), the git revision
and deployer the synth was given, and when it was first seen — see docs/storage.md, "registry".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from shared.observability import logger
from shared.rules.language import Ruleset
from shared.rules.loading import parse_ruleset, rules_files
from shared.storage.dynamo import deserialize, serialize
from shared.timestamps import utc_stamp

LOCK_FILE = "rules/versions.lock"
_LOCK_HEADER = (
    '# Ruleset version -> SHA-256 of the file that carries it (docs/rules.md, "Versions").\n'
    "# Written by `upswing rules lock`; a locked version never changes: edit a ruleset, give it a\n"
    "# new version, lock again. The synth refuses a deployed ruleset that does not match.\n"
)


class Role(StrEnum):
    LIVE = "live"  # routed
    SHADOW = "shadow"  # evaluated and recorded, never routed


class VersionError(Exception):
    """A deployment's rulesets do not fit together or do not match the lock: the message says how."""


def shadow_paths(text: str) -> tuple[str, ...]:
    """The shadow rulesets of a comma-separated setting (the environment, CDK context)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def content_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DeployedRuleset:
    path: str  # relative to the bundle / repository root, e.g. rules/reference.yaml
    role: Role
    ruleset: Ruleset
    text: str

    @property
    def version(self) -> str:
        return self.ruleset.version

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


def deployment(root: Path, live: str, shadows: Sequence[str] = ()) -> list[DeployedRuleset]:
    """The live ruleset, then the shadow ones, each parsed and checked (RulesetError lists a file's
    problems); VersionError when two of them share a file or a version."""
    deployed = []
    for path, role in [(live, Role.LIVE), *((shadow, Role.SHADOW) for shadow in shadows)]:
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise VersionError(f"ruleset {path!r}: name a file under rules/, relative to the repository")
        text = (root / path).read_text(encoding="utf-8")
        deployed.append(DeployedRuleset(path, role, parse_ruleset(text, path), text))
    seen: dict[str, str] = {}
    for one in deployed:
        if one.path in {other.path for other in deployed if other is not one}:
            raise VersionError(f"ruleset {one.path} is deployed twice: live and shadow, or shadow twice")
        if one.version in seen:
            raise VersionError(
                f"rulesets {seen[one.version]} and {one.path} both say version {one.version!r}: "
                "every deployed ruleset needs its own version (its firings name it)"
            )
        seen[one.version] = one.path
    return deployed


# ── the lock ──────────────────────────────────────────────────────────────────────────────────


def read_lock(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise VersionError(f"{path}: expected a mapping of version to sha256:<hex>")
    return {str(version): str(digest) for version, digest in data.items()}


def lock_problems(files: Iterable[tuple[str, str, str]], lock: Mapping[str, str]) -> list[str]:
    """What is wrong between (file, version, content hash) and the lock, in plain words."""
    problems = []
    for file, version, digest in files:
        locked = lock.get(version)
        if locked is None:
            problems.append(
                f"{file}: version {version!r} is not in {LOCK_FILE}: run `upswing rules lock` and commit it"
            )
        elif locked != digest:
            problems.append(
                f"{file}: its content changed but its version is still {version!r} (locked as "
                f"{locked[:19]}…, now {digest[:19]}…): give the ruleset a new `version`, then run "
                "`upswing rules lock`"
            )
    return problems


def folder_entries(folder: Path, root: Path) -> list[tuple[str, str, str]]:
    """(file relative to root, version, content hash) of every rules file under the folder."""
    entries = []
    for file in rules_files(folder):
        text = file.read_text(encoding="utf-8")
        name = str(file.relative_to(root)) if file.is_relative_to(root) else str(file)
        entries.append((name, parse_ruleset(text, name).version, content_hash(text)))
    return entries


def check_locked(deployed: Sequence[DeployedRuleset], lock: Mapping[str, str]) -> None:
    problems = lock_problems(((d.path, d.version, d.content_hash) for d in deployed), lock)
    if problems:
        raise VersionError("\n".join(problems))


def relocked(files: Iterable[tuple[str, str, str]], lock: Mapping[str, str]) -> dict[str, str]:
    """The lock with the new versions added; VersionError if a locked version's content changed."""
    changed = [problem for problem in lock_problems(files, lock) if "content changed" in problem]
    if changed:
        raise VersionError("\n".join(changed))
    updated = dict(lock)
    for _, version, digest in files:
        updated.setdefault(version, digest)
    return updated


def lock_text(lock: Mapping[str, str]) -> str:
    lines = [f"{json.dumps(version)}: {json.dumps(lock[version])}" for version in sorted(lock)]
    return _LOCK_HEADER + "\n".join(lines) + "\n"


# ── the record of deployed versions ───────────────────────────────────────────────────────────


@dataclass(frozen=True)
class VersionRecord:
    version: str
    content_hash: str
    file: str
    first_role: str
    deployed_at: str  # when the deployment first ran it (UTC, RFC 3339)
    deployer: str | None
    git_revision: str | None
    live_from: str | None  # when it first ran live (None: only ever in shadow)

    def as_view(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "content_hash": self.content_hash,
            "file": self.file,
            "first_role": self.first_role,
            "deployed_at": self.deployed_at,
            "deployer": self.deployer,
            "git_revision": self.git_revision,
            "live_from": self.live_from,
        }


class RulesetRecords:
    """Version records in the registry table: `rulesets` (one attribute per version: its record,
    read in one GetItem) and `ruleset#<version>` (the file as deployed, for the audit)."""

    INDEX_KEY = "rulesets"
    CONTENT_PREFIX = "ruleset#"
    _ATTRIBUTE_PREFIX = "version#"

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def record(
        self, deployed: DeployedRuleset, at: datetime, *, deployer: str | None, git_revision: str | None
    ) -> bool:
        """Record the version unless it is recorded already; True when this call recorded it.
        Safe to repeat (every cold start of every evaluator calls it): the first record stays."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(
                    {
                        "pk": f"{self.CONTENT_PREFIX}{deployed.version}",
                        "version": deployed.version,
                        "content_hash": deployed.content_hash,
                        "text": deployed.text,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        record = VersionRecord(
            version=deployed.version,
            content_hash=deployed.content_hash,
            file=deployed.path,
            first_role=deployed.role.value,
            deployed_at=utc_stamp(at),
            deployer=deployer,
            git_revision=git_revision,
            live_from=None,
        )
        names = {"#v": self._ATTRIBUTE_PREFIX + deployed.version}
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=serialize({"pk": self.INDEX_KEY}),
                # The first record stays; a record with other content than the file refuses the call.
                UpdateExpression="SET #v = if_not_exists(#v, :record)",
                ConditionExpression="attribute_not_exists(#v) OR #v.content_hash = :hash",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(
                    {
                        ":record": {k: v for k, v in record.as_view().items() if v is not None},
                        ":hash": deployed.content_hash,
                    }
                ),
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            # The lock refuses this at synth; reaching here means the lock was bypassed.
            logger.error(
                "ruleset version deployed with other content than first recorded: not recorded again",
                extra={"ruleset_version": deployed.version, "content_hash": deployed.content_hash},
            )
            return False
        recorded = not answer.get("Attributes")
        if deployed.role is Role.LIVE:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=serialize({"pk": self.INDEX_KEY}),
                    UpdateExpression="SET #v.live_from = :at",
                    ConditionExpression="attribute_exists(#v) AND attribute_not_exists(#v.live_from)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=serialize({":at": utc_stamp(at)}),
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        return recorded

    def records(self) -> list[VersionRecord]:
        """Every recorded version, oldest first."""
        item = self._client.get_item(
            TableName=self._table, Key=serialize({"pk": self.INDEX_KEY}), ConsistentRead=True
        ).get("Item")
        found = []
        for name, value in deserialize(item or {}).items():
            if name.startswith(self._ATTRIBUTE_PREFIX):
                found.append(
                    VersionRecord(
                        version=str(value["version"]),
                        content_hash=str(value["content_hash"]),
                        file=str(value.get("file", "")),
                        first_role=str(value.get("first_role", Role.LIVE.value)),
                        deployed_at=str(value["deployed_at"]),
                        deployer=value.get("deployer"),
                        git_revision=value.get("git_revision"),
                        live_from=value.get("live_from"),
                    )
                )
        return sorted(found, key=lambda record: (record.deployed_at, record.version))

    def text(self, version: str) -> str | None:
        """The ruleset file of a recorded version, as it was deployed."""
        item = self._client.get_item(
            TableName=self._table, Key=serialize({"pk": f"{self.CONTENT_PREFIX}{version}"})
        ).get("Item")
        return str(deserialize(item)["text"]) if item else None
