-- credit_move.lua: move a prepaid account's credits under a reference, once (tollway/credits.py).
-- KEYS[1] the account's state (its balance: "credits"); KEYS[2] its ledger log (a stream);
-- KEYS[3] its refs: ref -> the credits moved under it so far (signed)
-- ARGV[1] ref: a Checkout session, a refunded payment, an operator's Idempotency-Key
-- ARGV[2] target: what the ref moves in all (signed). A repeat moves nothing; a ref that grows
--         (a payment refunded again, further) moves the difference; one that would shrink or
--         change sign (an older delivery of the same refund) moves nothing
-- ARGV[3] kind (purchase, refund, grant, adjustment); ARGV[4] reason; ARGV[5] actor
-- ARGV[6] when (epoch s)
-- Returns {DONE, balance, moved} or {ALREADY, balance, 0}.
local target = tonumber(ARGV[2])
local done = tonumber(redis.call('HGET', KEYS[3], ARGV[1])) or 0
local delta = target - done
if delta == 0 or (target > 0 and delta < 0) or (target < 0 and delta > 0) then
  return {ALREADY, tonumber(redis.call('HGET', KEYS[1], 'credits')) or 0, 0}
end
local balance = redis.call('HINCRBY', KEYS[1], 'credits', delta)
redis.call('HSET', KEYS[3], ARGV[1], target)
redis.call('XADD', KEYS[2], '*', 'kind', ARGV[3], 'credits', delta, 'ref', ARGV[1],
           'reason', ARGV[4], 'actor', ARGV[5], 'at', ARGV[6], 'balance', balance)
return {DONE, balance, delta}
