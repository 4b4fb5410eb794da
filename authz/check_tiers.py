"""The loaded tier table in the form the check script takes, rebuilt whole on reload.

check.lua takes one tier's values, not the table: a check costs the same with 3 tiers or 500.
``tier_args(feature)`` is what the check store calls with the tier it believes a key has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

from authz.bounded import BoundedMap
from authz.check_reply import CheckReply, Limits
from tollway.tiers import OverQuota, Tier, TierTable

# Tiers as overridden for some account, remembered (the oldest is forgotten first).
OVERRIDDEN_MAX = 10_000

ARGS_PER_TIER = 8  # check.lua's ARGV[10..17]; ARGV[18] is the route's feature
CAPS = 2  # ARGV[19..20]: the tier's per_day and per_hour

# A tier's name -> its 8 check.lua values for one route's feature, the feature, then its caps
# (the name and empty values if the table has no such tier: check.lua then answers NO_TIER).
TierArgs = Callable[[str], tuple[str, ...]]


@dataclass
class CheckTiers:
    """One tier table and its ARGV encodings (8 values per tier, see check.lua), per feature."""

    table: TierTable
    _args: dict[tuple[str, str | None], tuple[str, ...]] = field(default_factory=dict)
    _overridden: BoundedMap[tuple[str, Limits], Tier] = field(
        default_factory=lambda: BoundedMap(OVERRIDDEN_MAX)
    )

    def tier(self, name: str) -> Tier | None:
        return self.table.get(name)

    def tier_for(self, out: CheckReply) -> Tier | None:
        """The tier a reply's limits come from: the named tier, with the account's overrides
        (tollway accounts set-limits) when check.lua reports some."""
        tier = self.table.get(out.tier)
        if out.limits is None or tier is None:
            return tier
        key = (out.tier, out.limits)
        found = self._overridden.get(key)
        if found is None:
            rate, burst, quota, features, per_day, per_hour = out.limits
            found = replace(
                tier,
                requests_per_second=rate,
                burst=burst,
                monthly_quota=quota,
                features=tier.features if features is None else features,
                per_day=per_day,
                per_hour=per_hour,
            )
            self._overridden[key] = found
        return found

    def tier_args(self, feature: str | None) -> TierArgs:
        return partial(self.args_for, feature=feature)

    def args_for(self, name: str, feature: str | None) -> tuple[str, ...]:
        args = self._args.get((name, feature))
        if args is not None:
            return args
        t = self.table.get(name)
        if t is None:
            return (name, *[""] * (ARGS_PER_TIER - 1), feature or "", *["0"] * CAPS)
        args = (
            t.name,
            repr(t.requests_per_second),
            str(t.burst),
            str(t.monthly_quota),
            "1" if t.over_quota is OverQuota.BLOCK else "0",
            "1" if t.dry_run else "0",
            "1" if feature is None or feature in t.features else "0",
            str(t.lease_tokens),
            feature or "",
            str(t.per_day),
            str(t.per_hour),
        )
        # Tiers come from the table and features from the Envoy config: bounded.
        self._args[(name, feature)] = args
        return args
