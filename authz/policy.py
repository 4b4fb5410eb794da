"""The loaded tier table in the form the check script takes, rebuilt whole on reload."""

from __future__ import annotations

from dataclasses import dataclass, field

from tollway.tiers import OverQuota, Tier, TierTable

ARGS_PER_TIER = 8  # check.lua's PER_TIER (the table starts at ARGV[10])


@dataclass
class Policy:
    """One tier table and its ARGV encodings (8 values per tier, see check.lua), per feature."""

    table: TierTable
    _args: dict[str | None, tuple[str, ...]] = field(default_factory=dict)

    def tier(self, name: str) -> Tier | None:
        return self.table.get(name)

    def tier_args(self, feature: str | None) -> tuple[str, ...]:
        args = self._args.get(feature)
        if args is None:
            args = tuple(
                v
                for t in self.table
                for v in (
                    t.name,
                    repr(t.requests_per_second),
                    str(t.burst),
                    str(t.monthly_quota),
                    "1" if t.over_quota is OverQuota.BLOCK else "0",
                    "1" if t.dry_run else "0",
                    "1" if feature is None or feature in t.features else "0",
                    str(t.lease_tokens),
                )
            )
            # Features come from the Envoy config, so this cache is bounded by its routes.
            self._args[feature] = args
        return args
