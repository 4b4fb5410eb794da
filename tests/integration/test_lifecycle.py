"""The one key lifecycle against a real Redis and check.lua: holds carry over, expiry and
revocation are final, an account can be suspended, and what a listing shows is what check.lua
decides, whatever the order of changes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from authz.breaker import Breaker
from authz.check_reply import Code
from authz.check_store import StoreCheck
from authz.check_tiers import CheckTiers
from authz.redis_check_store import RedisCheckStore
from authz.redis_pipe import open_pipe
from portal.own_keys import OwnKeys
from tests.support import TEST_TIERS
from tollway.accounts import Accounts
from tollway.clock import FixedClock
from tollway.errors import LifecycleError
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.records import KeyRecord, KeyState
from tollway.redis_client import connect
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
POLICY = CheckTiers(parse_tiers(TEST_TIERS, "test"))
# What check.lua answers a key in each listed state (past_due is not reached here).
REFUSED = {KeyState.REVOKED: Code.REVOKED, KeyState.EXPIRED: Code.REVOKED,
           KeyState.SUSPENDED: Code.PAYMENT, KeyState.PENDING: Code.PAYMENT}  # fmt: skip


class Rig:
    def __init__(self, redis, pipe) -> None:
        self.clock = FixedClock(T0)
        self.store = KeyStore(redis, KeyHasher())
        self.keys = Lifecycle(self.store, self.clock)
        self.limiter = RedisCheckStore(pipe, redis, self.clock, Breaker(3, 1.0), deadline_s=5.0,
                               usage_window_s=60)  # fmt: skip

    async def check(self, rec: KeyRecord) -> Code:
        return (
            await self.limiter.check(StoreCheck(rec.key_id, rec.hash, 1, POLICY.tier_args(None)))
        ).code

    async def state(self, rec: KeyRecord) -> KeyState:
        return await self.keys.state(await self.store.get(rec.key_id))


@pytest.fixture
def rig(redis, pipe) -> Rig:
    return Rig(redis, pipe)


async def test_a_suspended_keys_successor_is_suspended(rig):
    """suspend, then rotate with no overlap: the new key is suspended (402), not active."""
    _, old = await rig.keys.create("pro", "cus_s")
    await rig.keys.suspend(old.key_id)
    _, new = await rig.keys.rotate(old.key_id, 0)
    assert new.hold == "operator"
    assert await rig.state(new) is KeyState.SUSPENDED and await rig.check(new) is Code.PAYMENT
    assert await rig.state(old) is KeyState.REVOKED and await rig.check(old) is Code.REVOKED


async def test_an_expired_key_is_expired_everywhere_and_stays_so(rig):
    """Past its overlap, a rotated key lists as expired, is 401, and cannot be rotated again,
    resumed, suspended or extended; one key never becomes three."""
    _, old = await rig.keys.create("pro", "cus_e")
    _, new = await rig.keys.rotate(old.key_id, 1)
    rig.clock.advance(3_000)
    assert await rig.state(old) is KeyState.EXPIRED and await rig.check(old) is Code.REVOKED
    for attempt in (rig.keys.rotate(old.key_id, 86400), rig.keys.resume(old.key_id),
                    rig.keys.suspend(old.key_id)):  # fmt: skip
        with pytest.raises(LifecycleError, match="is expired; that is final"):
            await attempt
    assert await rig.store.owned("cus_e") == sorted([old.key_id, new.key_id])
    assert (await rig.store.get(old.key_id)).expires_at == T0 // 1000 + 1


async def test_a_rotated_key_cannot_be_rotated_again_in_its_overlap(rig):
    """A second rotation of the same key would extend its overlap and make a third key."""
    _, old = await rig.keys.create("pro", "cus_r")
    _, new = await rig.keys.rotate(old.key_id, 60)
    with pytest.raises(LifecycleError, match=f"rotated already, to {new.key_id}"):
        await rig.keys.rotate(old.key_id, 86400)
    assert (await rig.store.get(old.key_id)).expires_at == T0 // 1000 + 60


async def test_a_revoked_and_held_key_lists_as_revoked(rig):
    """Revocation wins over a hold in a listing, as it does in check.lua."""
    _, rec = await rig.keys.create("pro", "cus_h")
    await rig.keys.suspend(rec.key_id)
    await rig.keys.revoke(rec.key_id)
    listing = await rig.keys.listing([await rig.store.get(rec.key_id)])
    assert listing[0]["status"] == "revoked" and await rig.check(rec) is Code.REVOKED


async def test_a_suspended_account_is_402_and_takes_no_key(rig):
    """Every key of a suspended account is 402; it cannot be rotated or given another key,
    and resuming the account restores exactly what was there."""
    _, a = await rig.keys.create("pro", "cus_a")
    _, b = await rig.keys.create("pro", "cus_a")
    assert await rig.keys.suspend_account("cus_a") == 2
    assert [await rig.check(k) for k in (a, b)] == [Code.PAYMENT] * 2
    assert [await rig.state(k) for k in (a, b)] == [KeyState.SUSPENDED] * 2
    with pytest.raises(LifecycleError, match="account cus_a is suspended"):
        await rig.keys.rotate(a.key_id, 0)
    with pytest.raises(ValueError, match="account cus_a is suspended"):
        await rig.keys.create("pro", "cus_a")
    assert await rig.store.owned("cus_a") == sorted([a.key_id, b.key_id])
    await rig.keys.resume_account("cus_a")
    assert [await rig.check(k) for k in (a, b)] == [Code.OK] * 2


async def test_the_portal_cannot_get_around_a_hold(rig):
    """A customer whose key or account the operator suspended cannot rotate into an active key
    nor create another from the portal."""
    own = OwnKeys(rig.keys)
    _, rec = await rig.keys.create("pro", "cus_p")
    await rig.keys.suspend(rec.key_id)
    with pytest.raises(LifecycleError, match="suspended"):
        await own.create("cus_p", "cus_p")
    _, new = await own.rotate("cus_p", rec.key_id, "0")
    assert await rig.check(new) is Code.PAYMENT
    await rig.keys.resume(new.key_id)
    await rig.keys.suspend_account("cus_p")
    with pytest.raises(ValueError, match="suspended"):
        await own.create("cus_p", "cus_p")
    with pytest.raises(LifecycleError, match="suspended"):
        await own.rotate("cus_p", new.key_id, "3600")


async def test_an_expired_keys_old_hold_does_not_block_the_portal(rig):
    """A held key rotated with an overlap that then ended, its successor resumed: the expired
    key keeps its hold (it cannot be resumed), but the customer may create keys again."""
    own = OwnKeys(rig.keys)
    _, old = await rig.keys.create("pro", "cus_x")
    await rig.keys.suspend(old.key_id)
    _, new = await rig.keys.rotate(old.key_id, 1)
    rig.clock.advance(2_000)
    await rig.keys.resume(new.key_id)
    _, another = await own.create("cus_x", "cus_x")
    assert await rig.check(another) is Code.OK


async def test_a_hold_placed_while_rotating_carries_over(rig, redis):
    """rotate_key.lua copies the old key's hold as it is when the handover runs, not as it
    was read before the new key was written."""
    _, old = await rig.keys.create("pro", "cus_race")
    real_write = rig.store.write

    async def store_then_suspend(record: KeyRecord) -> bool:
        stored = await real_write(record)
        await rig.keys.suspend(old.key_id)  # the operator, in between
        return stored

    rig.store.write = store_then_suspend  # type: ignore[method-assign]
    _, new = await rig.keys.rotate(old.key_id, 60)
    assert new.hold == "operator" and await rig.check(new) is Code.PAYMENT


# The stateful test: any order of lifecycle changes, checked against a model and check.lua.

CUSTOMER = "cus_m"


class LifecycleMachine(RuleBasedStateMachine):
    """A model of what each change must do, next to the real Lifecycle on a real Redis; after
    every step each key's listing equals the model and check.lua's answer agrees with both."""

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = connect(URL[0])
        self.pipe = open_pipe(URL[0], timeout_s=5.0)
        self.run(self.redis.flushdb())
        self.rig = Rig(self.redis, self.pipe)
        self.records: dict[str, KeyRecord] = {}
        # The model: per key, revoked, expiry (0: none), hold, successor; the account's hold.
        self.revoked: set[str] = set()
        self.expires: dict[str, int] = {}
        self.held: set[str] = set()
        self.successor: dict[str, str] = {}
        self.account_held = False
        self.tier = "pro"

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.run(self.pipe.aclose())
        self.loop.close()

    def now(self) -> int:
        return self.rig.clock.now()

    def final(self, key_id: str) -> bool:
        e = self.expires.get(key_id, 0)
        return key_id in self.revoked or (e > 0 and self.now() >= e)

    def expected(self, key_id: str) -> KeyState:
        if key_id in self.revoked:
            return KeyState.REVOKED
        if self.final(key_id):
            return KeyState.EXPIRED
        if key_id in self.held or self.account_held:
            return KeyState.SUSPENDED
        return KeyState.ACTIVE

    def attempt(self, coro, allowed: bool):  # type: ignore[no-untyped-def]
        """Run a change; it must succeed exactly when the model says it may."""
        try:
            result = self.run(coro)
        except (LifecycleError, ValueError) as exc:
            assert not allowed, f"refused, but the model allows it: {exc}"
            return None
        assert allowed, "done, but the model refuses it"
        return result

    @initialize(target=keys)
    def first_key(self) -> str:
        _, rec = self.run(self.rig.keys.create(self.tier, CUSTOMER))
        self.records[rec.key_id] = rec
        return rec.key_id

    @rule(target=keys)
    def create(self) -> str:
        got = self.attempt(self.rig.keys.create(self.tier, CUSTOMER), not self.account_held)
        if got is None:
            return next(iter(self.records))
        self.records[got[1].key_id] = got[1]
        return str(got[1].key_id)

    @rule(target=keys, key_id=keys, overlap=st.sampled_from([0, 2, 30]))
    def rotate(self, key_id: str, overlap: int) -> str:
        ok = not self.final(key_id) and key_id not in self.successor and not self.account_held
        got = self.attempt(self.rig.keys.rotate(key_id, overlap), ok)
        if got is None:
            return key_id
        new = got[1]
        self.records[new.key_id] = new
        self.successor[key_id] = new.key_id
        if key_id in self.held:
            self.held.add(new.key_id)
        if overlap == 0:
            self.revoked.add(key_id)
        else:
            self.expires[key_id] = self.now() + overlap
        return str(new.key_id)

    @rule(key_id=keys)
    def suspend(self, key_id: str) -> None:
        if self.attempt(self.rig.keys.suspend(key_id), not self.final(key_id)) is not None:
            self.held.add(key_id)

    @rule(key_id=keys)
    def resume(self, key_id: str) -> None:
        if self.attempt(self.rig.keys.resume(key_id), not self.final(key_id)) is not None:
            self.held.discard(key_id)

    @rule(key_id=keys)
    def revoke(self, key_id: str) -> None:
        self.run(self.rig.keys.revoke(key_id))
        self.revoked.add(key_id)

    @rule(seconds=st.integers(1, 40))
    def wait(self, seconds: int) -> None:
        self.rig.clock.advance(seconds * 1000)

    @rule(held=st.booleans())
    def hold_account(self, held: bool) -> None:
        change = self.rig.keys.suspend_account if held else self.rig.keys.resume_account
        self.run(change(CUSTOMER))
        self.account_held = held

    @rule(tier=st.sampled_from(["pro", "business"]))
    def set_tier(self, tier: str) -> None:
        self.run(Accounts(self.rig.store).set_tier(CUSTOMER, tier))
        self.tier = tier

    @invariant()
    def listing_model_and_check_agree(self) -> None:
        records = self.run(self.rig.store.records_of(CUSTOMER))
        listed = self.run(self.rig.keys.listing(records))
        for rec, row in zip(records, listed, strict=True):
            want = self.expected(rec.key_id)
            assert row["status"] == want.value, (rec.key_id, row, want)
            code = self.run(self.rig.check(rec))
            if want in REFUSED:
                assert code is REFUSED[want], (rec.key_id, want, code)
            else:
                assert code not in (Code.REVOKED, Code.PAYMENT, Code.UNKNOWN_KEY), (want, code)


URL: list[str] = []


def test_no_sequence_of_changes_lets_a_dead_or_held_key_in(redis_server):
    """Create, rotate (with and without overlap), suspend, resume, revoke, the clock, account
    suspend and resume and tier changes in any order: each change succeeds exactly when the
    model allows it, and after every step each key lists as the model says and check.lua
    answers accordingly (revoked or expired 401, held 402, else not refused)."""
    URL[:] = [redis_server]
    run_state_machine_as_test(LifecycleMachine, settings=settings(
        max_examples=30, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))  # fmt: skip
