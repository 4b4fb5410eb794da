"""The loaded tier table in the form the check script takes, rebuilt whole on reload.

check.lua takes one tier's values, not the table: a check costs the same with 3 tiers or 500.
``tier_args(feature)`` is what the check store calls with the tier it believes a key has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from tollway.tiers import OverQuota, Tier, TierTable

ARGS_PER_TIER = 8  # check.lua's ARGV[10..17]

# A tier's name -> its 8 check.lua values for one route's feature (just the name if the
# table has no such tier: check.lua then answers NO_TIER).
TierArgs = Callable[[str], tuple[str, ...]]


@dataclass
class Policy:
    """One tier table and its ARGV encodings (8 values per tier, see check.lua), per feature."""

    table: TierTable
    _args: dict[tuple[str, str | None], tuple[str, ...]] = field(default_factory=dict)

    def tier(self, name: str) -> Tier | None:
        return self.table.get(name)

    def tier_args(self, feature: str | None) -> TierArgs:
        return partial(self.args_for, feature=feature)

    def args_for(self, name: str, feature: str | None) -> tuple[str, ...]:
        args = self._args.get((name, feature))
        if args is not None:
            return args
        t = self.table.get(name)
        if t is None:
            return (name,)
        args = (
            t.name,
            repr(t.requests_per_second),
            str(t.burst),
            str(t.monthly_quota),
            "1" if t.over_quota is OverQuota.BLOCK else "0",
            "1" if t.dry_run else "0",
            "1" if feature is None or feature in t.features else "0",
            str(t.lease_tokens),
        )
        # Tiers come from the table and features from the Envoy config: bounded.
        self._args[(name, feature)] = args
        return args
