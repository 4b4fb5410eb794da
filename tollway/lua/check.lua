-- check.lua: decide one API request for one key, atomically, in one round trip.
--
-- KEYS (all share the key's {key_id} hash tag, so one Cluster slot):
--   KEYS[1] record  hash  hash, status, tier, customer, grace_until, period_start, period_end,
--                         hold, expires_at
--   KEYS[2] state   hash  tokens, ts (ms), q_period (period start, s), q_used
--   KEYS[3] usage   hash  window start (s) -> requests let through (metering drains it)
-- ARGV:
--   ARGV[1] digest of the presented key; must equal the record's "hash" field
--   ARGV[2] now in ms, or "" to use the Redis server clock so that every authz process agrees
--   ARGV[3] cost of this route in bucket tokens
--   ARGV[4] usage window length in seconds
--   ARGV[5] billing period length in seconds for records that carry none
--   ARGV[6..] the tier table, 7 values per tier:
--             name, refill rate per second, burst, monthly quota (0 = unlimited),
--             block past quota (1/0), dry run (1/0), has the route's feature (1/0)
-- Returns {code, tier, customer, remaining, wait_ms, quota_used, period_end, grace_until,
--          would_deny, now_ms}; codes are authz.outcome.Code.
-- Quota and usage count requests; only the bucket is charged the route's cost.

local OK, UNKNOWN_KEY, REVOKED, PAYMENT, FEATURE, QUOTA, RATE, NO_TIER = 0, 1, 2, 3, 4, 5, 6, 7

local rec = redis.call('HMGET', KEYS[1], 'hash', 'status', 'tier', 'customer',
                       'grace_until', 'period_start', 'period_end', 'hold', 'expires_at')
if not rec[1] or rec[1] ~= ARGV[1] then
  return {UNKNOWN_KEY}
end
local status, tier, customer = rec[2] or '', rec[3] or '', rec[4] or ''

local now_ms
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now_ms = tonumber(ARGV[2])
end
local now = math.floor(now_ms / 1000)

local grace = 0
local expires = tonumber(rec[9]) or 0
if status == 'revoked' or (expires > 0 and now >= expires) then
  return {REVOKED, tier, customer}
elseif rec[8] and rec[8] ~= '' then
  return {PAYMENT, tier, customer} -- an operator's hold
elseif status == 'past_due' then
  grace = tonumber(rec[5]) or 0
  if now >= grace then
    return {PAYMENT, tier, customer, 0, 0, 0, 0, grace}
  end
elseif status ~= 'active' then
  return {PAYMENT, tier, customer}
end

local base
for i = 6, #ARGV, 7 do
  if ARGV[i] == tier then
    base = i
    break
  end
end
if not base then
  return {NO_TIER, tier, customer}
end
local rate = tonumber(ARGV[base + 1])
local burst = tonumber(ARGV[base + 2])
local quota = tonumber(ARGV[base + 3])
local block = ARGV[base + 4] == '1'
local dry = ARGV[base + 5] == '1'
local feature_ok = ARGV[base + 6] == '1'
local cost = tonumber(ARGV[3])

-- The billing period in force: the record's, rolled forward by whole periods if it has lapsed
-- (a renewal webhook that has not arrived yet must not stop the quota from resetting).
local pstart = tonumber(rec[6]) or 0
local pend = tonumber(rec[7]) or 0
local plen = pend - pstart
if plen <= 0 then
  plen = tonumber(ARGV[5])
  pend = pstart + plen
end
if now >= pend then
  pstart = pstart + math.floor((now - pstart) / plen) * plen
  pend = pstart + plen
end

local st = redis.call('HMGET', KEYS[2], 'tokens', 'ts', 'q_period', 'q_used')
local tokens, ts = tonumber(st[1]), tonumber(st[2])
if not tokens or not ts then
  tokens, ts = burst, now_ms
end
if now_ms > ts then
  tokens = math.min(burst, tokens + (now_ms - ts) * rate / 1000)
  ts = now_ms
end
tokens = math.min(tokens, burst) -- the tier's burst may have shrunk since the last call
local used = 0
if tonumber(st[3]) == pstart then
  used = tonumber(st[4]) or 0
end

local deny, wait = OK, 0
if not feature_ok then
  deny = FEATURE
elseif quota > 0 and block and used >= quota then
  deny, wait = QUOTA, pend * 1000 - now_ms
elseif tokens < cost then
  deny = RATE
  if cost > burst then
    wait = -1 -- this route can never fit in this tier's bucket
  else
    wait = math.ceil((cost - tokens) * 1000 / rate)
  end
end

if deny ~= OK and not dry then
  return {deny, tier, customer, math.floor(tokens), wait, used, pend, grace, OK, now_ms}
end

-- Let through (a dry-run tier is let through whatever it would have been told).
if tokens >= cost then
  tokens = tokens - cost
end
used = used + 1
redis.call('HSET', KEYS[2], 'tokens', tokens, 'ts', ts, 'q_period', pstart, 'q_used', used)
redis.call('EXPIRE', KEYS[2], pend - now + 86400) -- relative: the clock may be pinned
local wsize = tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[3], now - (now % wsize), 1)
local full_ms = math.ceil((burst - tokens) * 1000 / rate)
return {OK, tier, customer, math.floor(tokens), full_ms, used, pend, grace, deny, now_ms}
