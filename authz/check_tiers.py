"""The loaded tier table in the form the check script takes, rebuilt whole on reload.

check.lua takes one tier's values, not the table: a check costs the same with 3 tiers or 500.
``tier_args(feature, bucket)`` is what the check store calls with the tier it believes a key
has.
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
# ARGV[19..23]: the tier's per_day and per_hour, the route's bucket ("": the default one), the
# tier's max_concurrent and, for a prepaid tier, its credits_per_request (else 0)
LIMITS = 5

# A tier's name -> its 8 check.lua values for one route's feature and bucket, the feature,
# then its other limits (the name and empty values if the table has no such tier: check.lua
# then answers NO_TIER).
TierArgs = Callable[[str], tuple[str, ...]]


@dataclass
class CheckTiers:
    """One tier table and its ARGV encodings (see check.lua), per feature and bucket."""

    table: TierTable
    _args: dict[tuple[str, str | None, str | None], tuple[str, ...]] = field(default_factory=dict)
    _derived: BoundedMap[tuple[str, Limits | None, str | None], Tier] = field(
        default_factory=lambda: BoundedMap(OVERRIDDEN_MAX)
    )

    def tier(self, name: str) -> Tier | None:
        return self.table.get(name)

    def tier_for(self, out: CheckReply, bucket: str | None = None) -> Tier | None:
        """The tier a reply's limits come from: the named tier, with the account's overrides
        (tollway accounts set-limits) when check.lua reports some, and with the rate and burst
        of the route's ``bucket`` when the tier has that bucket (what the RateLimit headers
        then describe)."""
        tier = self.table.get(out.tier)
        if tier is None:
            return None
        named = tier.bucket(bucket)
        if out.limits is None and named is None:
            return tier
        key = (out.tier, out.limits, named.name if named else None)
        found = self._derived.get(key)
        if found is None:
            found = tier
            if out.limits is not None:  # check.lua reports the rate and burst it used
                rate, burst, quota, features, per_day, per_hour, conc = out.limits
                found = replace(
                    tier,
                    requests_per_second=rate,
                    burst=burst,
                    monthly_quota=quota,
                    features=tier.features if features is None else features,
                    per_day=per_day,
                    per_hour=per_hour,
                    max_concurrent=conc,
                )
            elif named is not None:
                found = replace(
                    tier, requests_per_second=named.requests_per_second, burst=named.burst
                )
            self._derived[key] = found
        return found

    def tier_args(self, feature: str | None, bucket: str | None = None) -> TierArgs:
        return partial(self.args_for, feature=feature, bucket=bucket)

    def args_for(
        self, name: str, feature: str | None, bucket: str | None = None
    ) -> tuple[str, ...]:
        args = self._args.get((name, feature, bucket))
        if args is not None:
            return args
        t = self.table.get(name)
        if t is None:
            return (name, *[""] * (ARGS_PER_TIER - 1), feature or "", "0", "0", "", "0", "0")
        named = t.bucket(bucket)
        args = (
            t.name,
            repr(named.requests_per_second if named else t.requests_per_second),
            str(named.burst if named else t.burst),
            str(t.monthly_quota),
            "1" if t.over_quota is OverQuota.BLOCK else "0",
            "1" if t.dry_run else "0",
            "1" if feature is None or feature in t.features else "0",
            str(t.lease_tokens),
            feature or "",
            str(t.per_day),
            str(t.per_hour),
            named.name if named else "",
            str(t.max_concurrent),
            str(t.credits_per_request) if t.prepaid else "0",
        )
        # Tiers come from the table, features and buckets from the Envoy config: bounded.
        self._args[(name, feature, bucket)] = args
        return args
