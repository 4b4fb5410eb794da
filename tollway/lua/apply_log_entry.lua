-- apply_log_entry.lua: apply one access-log entry to the account that counted its request, once.
-- (metering/receiver.py; every key below is in the usage source's slot.)
-- KEYS[1] usage hash; KEYS[2] the account's quota state;
-- KEYS[3] stamps' nonces applied in the request's window (a set, expiring)
-- KEYS[4] the account's requests in flight (check.lua's concurrency slots)
-- KEYS[5] a prepaid account's ledger by UTC hour (tollway/credits.py)
-- ARGV[1] the stamp's nonce (authz's own name for the request, tollway/usage_stamp.py)
-- ARGV[2] the window it was counted in (s); ARGV[3] when it was counted (s)
-- ARGV[4] "1": not billed, refund it; ARGV[5] "1": give its quota back too (and its place
-- under the day's and hour's caps)
-- ARGV[6] the key id (16 hex: its share of the period, n:<id> from p:<id>)
-- ARGV[7] amount the upstream reported, for the usage meter (0: none)
-- ARGV[8] TTL of the applied set, in seconds
-- ARGV[9] "1": the request held a concurrency slot, named by the nonce: it ended, free it (as
-- often as the entry comes: freeing twice frees nothing more)
-- ARGV[10] prepaid: the credits the request spent (its stamp's); given back if it is refunded.
--          A prepaid request was never counted in usage, so its refund takes nothing off it.
-- ARGV[11] prepaid: the credits the amount the upstream reported costs, billed: taken off the
--          balance, which may go below zero by this much at most (README "Prepaid credits")
-- Returns DONE, or ALREADY if this nonce was applied before (a duplicate or replay). An entry
-- with nothing to refund or add (billed as counted) only frees its slot: DONE.
-- A refund is taken off the window the request was counted in; if metering has taken that
-- window already, the field comes back negative and usage_take.lua carries it to the next.
local credits, unit_credits = tonumber(ARGV[10]) or 0, tonumber(ARGV[11]) or 0
if ARGV[9] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  if ARGV[4] ~= '1' and tonumber(ARGV[7]) == 0 and unit_credits == 0 then
    return DONE
  end
end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then
  return ALREADY
end
redis.call('EXPIRE', KEYS[3], ARGV[8])
local at = tonumber(ARGV[3])
local hour = at - at % 3600
if ARGV[4] == '1' then
  if credits > 0 then
    redis.call('HINCRBY', KEYS[2], 'credits', credits)
    redis.call('HINCRBY', KEYS[5], 'f:' .. hour, credits)
  else
    redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
  end
  if ARGV[5] == '1' then
    -- Only while the quota period the request counted in is the current one. The count may
    -- dip below zero for a moment: a lease's requests reach the quota when the lease is
    -- settled, which can be after their refunds.
    local kf, pf = 'n:' .. ARGV[6], 'p:' .. ARGV[6]
    local st = redis.call('HMGET', KEYS[2], 'q_period', pf, 'd_start', 'h_start')
    if (tonumber(st[1]) or at + 1) <= at then
      redis.call('HINCRBY', KEYS[2], 'q_used', -1)
    end
    if (tonumber(st[2]) or at + 1) <= at then
      redis.call('HINCRBY', KEYS[2], kf, -1)
    end
    -- And the day's and the hour's caps, while their window is the one it counted in.
    if tonumber(st[3]) == at - at % 86400 then
      redis.call('HINCRBY', KEYS[2], 'd_used', -1)
    end
    if tonumber(st[4]) == at - at % 3600 then
      redis.call('HINCRBY', KEYS[2], 'h_used', -1)
    end
  end
elseif unit_credits > 0 then
  redis.call('HINCRBY', KEYS[2], 'credits', -unit_credits)
  redis.call('HINCRBY', KEYS[5], 'u:' .. hour, unit_credits)
elseif tonumber(ARGV[7]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'a:' .. ARGV[2], ARGV[7])
end
return DONE
