-- check.lua: decide one API request for one key, atomically, in one round trip.
--
-- KEYS (all share the account's hash tag, so one Cluster slot; see tollway/schema.py):
--   KEYS[1] record  hash  the key: hash, status, tier, customer, grace_until, period_start,
--                         period_end, hold, expires_at, last_used (written at most once a
--                         minute), hash_prev
--   KEYS[2] state   hash  the account's: tokens, ts (ms), q_period (period start, s), q_used;
--                         every key of the account draws on this one bucket and quota.
--                         Also n:<key id> and p:<key id>: each key's share of the period's
--                         use and that period's start (tollway usage show --by key), and the
--                         operator's per-account overrides of the tier: o_rate, o_burst,
--                         o_quota, o_features (comma-separated; tollway accounts set-limits),
--                         o_day, o_hour, o_conc. A route's named bucket keeps its tokens and
--                         ts in t:<bucket> and s:<bucket>.
--                         Its period_start and period_end are the account's billing period,
--                         and hold an operator's suspension of the whole account (402)
--   KEYS[3] usage   hash  the account's: window start (s) -> requests let through (metering
--                         drains it)
--   KEYS[4] inflight zset  the account's requests in flight (max_concurrent): slot id -> the
--                         time in ms it lapses at, if the access log has not freed it by then
--   KEYS[5] ledger  hash  a prepaid account's ledger by UTC hour (tollway/credits.py): "r:<hour>"
--                         credits its requests spent; the balance is the state's "credits"
--   KEYS[6] settled string  optional: marks this lease settlement (ARGV[6], ARGV[7]) applied,
--                           so a retry of the same settlement counts and returns nothing twice
-- ARGV:
--   ARGV[1] digest of the presented key; must equal the record's "hash" field, or its
--           "hash_prev" (the digest under the pepper before, while a key pepper rotation rolls
--           out: tollway/lua/move_key.lua)
--   ARGV[2] now in ms, or "" to use the Redis server clock so that every authz process agrees
--   ARGV[3] cost of this route in bucket tokens
--   ARGV[4] usage window length in seconds
--   ARGV[5] billing period length in seconds for records that carry none
--   ARGV[6] lease: requests already let through on an earlier lease; counted whatever the answer
--   ARGV[7] lease: unused tokens of an earlier lease, given back to the bucket
--   ARGV[8] "1": check this request (counted if it passes); "2": the same, and take a lease
--           if the tier leases; "0": a settle-only call (cost 0, nothing counted but ARGV[6])
--   ARGV[9] deadline in Redis ms, or "": a check Redis runs later than this is answered
--           EXPIRED and changes nothing, because authz has already given up on it (a frozen
--           or partitioned Redis runs what was queued in its socket when it resumes)
--   ARGV[10..17] the key's tier, as the caller believes it to be (8 values):
--             name, refill rate per second, burst, monthly quota (0 = unlimited),
--             block past quota (1/0), dry run (1/0), has the route's feature (1/0),
--             lease size in tokens (0: exact mode, no lease).
--             The name with ARGV[11] "", says the caller's tier table has no such tier.
--             If the name is not the record's tier, nothing is read or written past the
--             record: the answer is TIER_CHANGED with the record's tier, and the caller asks
--             again with that tier's values. So the arguments, and the cost, do not grow with
--             the size of the tier table.
--   ARGV[18] the route's feature ("" for none), for an account whose features are overridden
--   ARGV[19..20] the tier's per_day and per_hour caps (0 = none): requests in the UTC day and
--             hour, counted in the state's d_start/d_used and h_start/h_used
--   ARGV[21]  the route's named bucket, "" for the default one; ARGV[11..12] are then that
--             bucket's rate and burst, which an account's overrides never change
--   ARGV[22]  the tier's max_concurrent (0 = none)
--   ARGV[23]  prepaid tiers: credits a request spends per unit of cost (0: not prepaid)
--   ARGV[24]  this request's slot id (authz's nonce for it; the access log frees the slot by it)
--   ARGV[25]  how long a slot is held at most, in ms, if the access log never frees it
-- A check in exact mode passes 0, 0, 1 in ARGV[6..8].
-- A lease tier's passing request also takes up to its lease size of extra tokens ("granted"),
-- which the calling authz process spends locally; a lease never reaches past the quota.
-- A prepaid tier's lease reserves its tokens' credits (per ARGV[23]) when it is taken, never past
-- the balance; the settlement gives the unused ones back (so a lease never overdraws it).
-- A lease is taken only on the default bucket, and never while a concurrency cap is in force
-- (every request must take its slot here): a lease renewal carries the settlement of the last
-- lease only on the default bucket (authz/servicer.py).
-- Returns {code, tier, customer, remaining, wait_ms, quota_used, period_end, grace_until,
--          would_deny, now_ms, granted (-1: no lease, a concurrency slot held)}; codes are
-- authz.check_reply.Code. An account with overrides gets its limits in force after those:
-- rate, burst (of the bucket taken from), quota, features ("-": the tier's), per_day,
-- per_hour, max_concurrent. A prepaid tier's reply has those 7 places ("" when not
-- overridden), then the balance after this request and the credits it spent.
-- A prepaid request is not counted in the usage hash (nothing of it goes to a meter): its
-- credits go to the ledger's hour instead, in the same call.
-- Quota and usage count requests; only the bucket is charged the route's cost.

local OK, UNKNOWN_KEY, REVOKED, PAYMENT, FEATURE, QUOTA, RATE, NO_TIER = 0, 1, 2, 3, 4, 5, 6, 7
local EXPIRED, TIER_CHANGED, DAY, HOUR, CONCURRENCY, CREDITS = 8, 9, 10, 11, 12, 13
local TIER = 10

local wsize = tonumber(ARGV[4])
local spent, returned = tonumber(ARGV[6]), tonumber(ARGV[7])
local rec = redis.call('HMGET', KEYS[1], 'hash', 'status', 'tier', 'customer',
                       'grace_until', 'period_start', 'period_end', 'hold', 'expires_at',
                       'last_used', 'hash_prev')
if not rec[1] or (rec[1] ~= ARGV[1] and rec[11] ~= ARGV[1]) then
  return {UNKNOWN_KEY}
end
local status, tier, customer = rec[2] or '', rec[3] or '', rec[4] or ''
if ARGV[TIER] ~= tier then
  return {TIER_CHANGED, tier, customer}
end

local now_ms
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now_ms = tonumber(ARGV[2])
end
if ARGV[9] ~= '' and now_ms > tonumber(ARGV[9]) then
  return {EXPIRED}
end
local now = math.floor(now_ms / 1000)

-- The state has no TTL: it is the account's, and lives as long as the account does.
-- The key's own count in the account's state (the key id ends KEYS[1]).
local kfield = 'n:' .. string.sub(KEYS[1], -16)
local pfield = 'p:' .. string.sub(KEYS[1], -16)
local bucket = ARGV[21] or ''
local tfield, sfield = 'tokens', 'ts'
if bucket ~= '' then
  tfield, sfield = 't:' .. bucket, 's:' .. bucket
end
-- A tier with a day's or an hour's cap reads their counts in the same call (st[17..20]); an
-- account capped only by an override reads them with a second one, below.
local tier_capped = (tonumber(ARGV[19]) or 0) > 0 or (tonumber(ARGV[20]) or 0) > 0
local st
if tier_capped then
  st = redis.call('HMGET', KEYS[2], tfield, sfield, 'q_period', 'q_used', kfield,
                  'o_rate', 'o_burst', 'o_quota', 'o_features', pfield,
                  'period_start', 'period_end', 'hold', 'o_day', 'o_hour', 'o_conc',
                  'd_start', 'd_used', 'h_start', 'h_used', 'credits')
else
  st = redis.call('HMGET', KEYS[2], tfield, sfield, 'q_period', 'q_used', kfield,
                  'o_rate', 'o_burst', 'o_quota', 'o_features', pfield,
                  'period_start', 'period_end', 'hold', 'o_day', 'o_hour', 'o_conc',
                  'credits')
end
-- A prepaid account's balance: the last field read (a field more costs a tier without one
-- less than a call would cost a prepaid tier).
local balance = tonumber(st[#st]) or 0

-- The billing period in force: the account's (else the record's), rolled forward by
-- whole periods if it has lapsed (a renewal webhook that has not arrived yet must not stop the
-- quota from resetting). Every key of an account counts in the same period.
local pstart = tonumber(st[11]) or tonumber(rec[6]) or 0
local pend = tonumber(st[12]) or tonumber(rec[7]) or 0
local plen = pend - pstart
if plen <= 0 then
  plen = tonumber(ARGV[5])
  pend = pstart + plen
end
if now >= pend then
  pstart = pstart + math.floor((now - pstart) / plen) * plen
  pend = pstart + plen
end

local used, kused = 0, 0
-- Set when this call starts the period for the account or the key: only then are the period
-- fields written (fewer fields in the common write: about 1 µs of Redis CPU a check).
local fresh = false
if tonumber(st[3]) == pstart then
  used = tonumber(st[4]) or 0
else
  fresh = true
end
if tonumber(st[10]) == pstart then
  kused = tonumber(st[5]) or 0
else
  fresh = true
end

if KEYS[6] and (spent > 0 or returned > 0) then
  if not redis.call('SET', KEYS[6], '1', 'NX', 'EX', 86400) then
    spent, returned = 0, 0 -- applied already: this is a retry of a call whose answer was lost
  end
end
local per_credit = tonumber(ARGV[23]) or 0
-- A prepaid lease's unused tokens give back the credits reserved for them when it was taken.
if returned > 0 and per_credit > 0 then
  balance = redis.call('HINCRBY', KEYS[2], 'credits', returned * per_credit)
  redis.call('HINCRBY', KEYS[5], 'f:' .. (now - now % 3600), returned * per_credit)
end
-- What a lease already let through is counted before anything can refuse this request: the
-- period's quota use, and the usage window metering bills (not a prepaid tier's).
if spent > 0 then
  used, kused = used + spent, kused + spent
  redis.call('HSET', KEYS[2], 'q_period', pstart, 'q_used', used, kfield, kused, pfield, pstart)
  fresh = false
  if per_credit == 0 then
    redis.call('HINCRBY', KEYS[3], now - (now % wsize), spent)
  end
end

local grace = 0
local expires = tonumber(rec[9]) or 0
if status == 'revoked' or (expires > 0 and now >= expires) then
  return {REVOKED, tier, customer}
elseif (rec[8] and rec[8] ~= '') or (st[13] and st[13] ~= '') then
  return {PAYMENT, tier, customer} -- an operator's hold, on the key or on its account
elseif status == 'past_due' then
  grace = tonumber(rec[5]) or 0
  if now >= grace then
    return {PAYMENT, tier, customer, 0, 0, 0, 0, grace}
  end
elseif status ~= 'active' then
  return {PAYMENT, tier, customer}
end

if (ARGV[TIER + 1] or '') == '' then
  return {NO_TIER, tier, customer}
end
local rate = tonumber(ARGV[TIER + 1])
local burst = tonumber(ARGV[TIER + 2])
local quota = tonumber(ARGV[TIER + 3])
local block = ARGV[TIER + 4] == '1'
local dry = ARGV[TIER + 5] == '1'
local feature_ok = ARGV[TIER + 6] == '1'
local cost = tonumber(ARGV[3])
local this = ARGV[8] == '0' and 0 or 1
local lease = tonumber(ARGV[TIER + 7])
local per_day, per_hour = tonumber(ARGV[19]) or 0, tonumber(ARGV[20]) or 0
local conc = tonumber(ARGV[22]) or 0
local overridden = st[6] or st[7] or st[8] or st[9] or st[14] or st[15] or st[16]
if overridden then
  if bucket == '' then
    rate = tonumber(st[6]) or rate
    burst = tonumber(st[7]) or burst
  end
  quota = tonumber(st[8]) or quota
  per_day = tonumber(st[14]) or per_day
  per_hour = tonumber(st[15]) or per_hour
  conc = tonumber(st[16]) or conc
  if st[9] then
    local listed = string.find(',' .. st[9] .. ',', ',' .. ARGV[18] .. ',', 1, true)
    feature_ok = ARGV[18] == '' or listed ~= nil
  end
end

local tokens, ts = tonumber(st[1]), tonumber(st[2])
if not tokens or not ts then
  tokens, ts = burst, now_ms
end
if now_ms > ts then
  tokens = math.min(burst, tokens + (now_ms - ts) * rate / 1000)
  ts = now_ms
end
-- Returned lease tokens, and a burst that may have shrunk since the last call, both clamp.
tokens = math.min(tokens + returned, burst)

-- The day's and the hour's counts, used only for an account with a cap (the counts of a
-- window that has ended are the next one's 0); a lease's settled requests count in them.
local capped = per_day > 0 or per_hour > 0
local dstart, hstart = now - now % 86400, now - now % 3600
local dused, hused = 0, 0
if capped then
  local w
  if tier_capped then
    w = {st[17], st[18], st[19], st[20]}
  else
    w = redis.call('HMGET', KEYS[2], 'd_start', 'd_used', 'h_start', 'h_used')
  end
  if tonumber(w[1]) == dstart then
    dused = tonumber(w[2]) or 0
  end
  if tonumber(w[3]) == hstart then
    hused = tonumber(w[4]) or 0
  end
  dused, hused = dused + spent, hused + spent
end

-- The account's requests in flight, read only under a concurrency cap. Slots whose bound has
-- passed (their access-log entry never came) are dropped only when the set is full: below the
-- cap with them, it is below the cap without them, and a call is saved. So the set holds at
-- most max_concurrent slots, and an account's set empties (and Redis deletes it) as the
-- access log frees its slots.
local inflight = 0
if conc > 0 and this > 0 then
  inflight = redis.call('ZCARD', KEYS[4])
  if inflight >= conc then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_ms)
    inflight = redis.call('ZCARD', KEYS[4])
  end
end

-- A prepaid request spends its credits only if it is let through and the balance covers
-- them (a dry run included: never below 0).
local need = per_credit * cost * this

local deny, wait = OK, 0
if not feature_ok then
  deny = FEATURE
elseif need > 0 and balance < need then
  deny = CREDITS
elseif quota > 0 and block and this > 0 and used >= quota then
  deny, wait = QUOTA, pend * 1000 - now_ms
elseif per_day > 0 and this > 0 and dused >= per_day then
  deny, wait = DAY, (dstart + 86400) * 1000 - now_ms
elseif per_hour > 0 and this > 0 and hused >= per_hour then
  deny, wait = HOUR, (hstart + 3600) * 1000 - now_ms
elseif conc > 0 and this > 0 and inflight >= conc then
  deny, wait = CONCURRENCY, 1000 -- a slot comes back when any request ends: soon, not known when
elseif tokens < cost then
  deny = RATE
  if cost > burst then
    wait = -1 -- this route can never fit in this tier's bucket
  else
    wait = math.ceil((cost - tokens) * 1000 / rate)
  end
end

if deny ~= OK and not dry then
  if returned > 0 then
    redis.call('HSET', KEYS[2], tfield, tokens, sfield, ts)
  end
  if capped and spent > 0 then
    redis.call('HSET', KEYS[2], 'd_start', dstart, 'd_used', dused, 'h_start', hstart,
               'h_used', hused)
  end
  local reply = {deny, tier, customer, math.floor(tokens), wait, used, pend, grace, OK, now_ms, 0}
  if overridden then
    reply[12], reply[13], reply[14], reply[15] = tostring(rate), tostring(burst), tostring(quota),
                                                 st[9] or '-'
    reply[16], reply[17], reply[18] = tostring(per_day), tostring(per_hour), tostring(conc)
  end
  if per_credit > 0 then
    for i = #reply + 1, 18 do reply[i] = '' end
    reply[19], reply[20] = balance, 0 -- integers: tostring would write 1e+15
  end
  return reply
end

-- Let through (a dry-run tier is let through whatever it would have been told).
if tokens >= cost then
  tokens = tokens - cost
end
local granted = 0
if deny == OK and ARGV[8] == '2' and bucket == '' and conc == 0 then
  granted = math.min(lease, math.floor(tokens))
end
if quota > 0 and block then
  granted = math.min(granted, quota - used - this) -- a lease never reaches past the quota
end
if per_day > 0 then
  granted = math.min(granted, per_day - dused - this) -- nor past a cap
end
if per_hour > 0 then
  granted = math.min(granted, per_hour - hused - this)
end
if per_credit > 0 then -- nor past the balance: a lease's credits are reserved when it is taken
  granted = math.min(granted, math.floor((balance - need) / per_credit))
end
granted = math.max(granted, 0)
local SLOT_HELD = -1 -- granted's value when this request holds a concurrency slot (no lease)
tokens = tokens - granted
used, kused = used + this, kused + this
-- One write of the state (with the caps' windows when there are caps: a call fewer).
if capped and fresh then
  redis.call('HSET', KEYS[2], tfield, tokens, sfield, ts, 'q_period', pstart, 'q_used', used,
             kfield, kused, pfield, pstart, 'd_start', dstart, 'd_used', dused + this,
             'h_start', hstart, 'h_used', hused + this)
elseif capped then
  redis.call('HSET', KEYS[2], tfield, tokens, sfield, ts, 'q_used', used, kfield, kused,
             'd_start', dstart, 'd_used', dused + this, 'h_start', hstart, 'h_used', hused + this)
elseif fresh then
  redis.call('HSET', KEYS[2], tfield, tokens, sfield, ts, 'q_period', pstart, 'q_used', used,
             kfield, kused, pfield, pstart)
else
  redis.call('HSET', KEYS[2], tfield, tokens, sfield, ts, 'q_used', used, kfield, kused)
end
-- The request's slot, until the access log frees it or its bound passes. (No TTL on the set:
-- slots whose entries were lost stay until the account next fills its cap, at most
-- max_concurrent of them; an expiry kept a bound ahead would cost a call a check.)
if conc > 0 and this > 0 and ARGV[24] ~= '' then
  redis.call('ZADD', KEYS[4], now_ms + tonumber(ARGV[25]), ARGV[24])
  granted = SLOT_HELD
end
-- A prepaid request's credits, and a lease's (reserved: what it does not use comes back when
-- it is settled): off the balance, onto the ledger's hour (not into usage).
local charged, reserved = 0, 0
if need > 0 and balance >= need then
  charged = need
end
if granted > 0 and per_credit > 0 then
  reserved = granted * per_credit
end
if charged + reserved > 0 then
  balance = redis.call('HINCRBY', KEYS[2], 'credits', -(charged + reserved))
  redis.call('HINCRBY', KEYS[5], 'r:' .. hstart, charged + reserved)
end
if this > 0 then
  if per_credit == 0 then
    redis.call('HINCRBY', KEYS[3], now - (now % wsize), this)
  end
  if now - (tonumber(rec[10]) or 0) >= 60 then
    redis.call('HSET', KEYS[1], 'last_used', now)
  end
end
local full_ms = math.ceil((burst - tokens) * 1000 / rate)
local reply = {OK, tier, customer, math.floor(tokens), full_ms, used, pend, grace, deny, now_ms,
               granted}
if overridden then
  reply[12], reply[13], reply[14], reply[15] = tostring(rate), tostring(burst), tostring(quota),
                                               st[9] or '-'
  reply[16], reply[17], reply[18] = tostring(per_day), tostring(per_hour), tostring(conc)
end
if per_credit > 0 then
  for i = #reply + 1, 18 do reply[i] = '' end
  reply[19], reply[20] = balance, charged -- integers: tostring would write 1e+15
end
return reply
