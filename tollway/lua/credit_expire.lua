-- credit_expire.lua: expire a prepaid account's credits older than their life, first in, first
-- out (tollway/credits.py). Credits come in lots (a purchase, a grant, an upward adjustment),
-- each expiring `life` seconds after it was applied; every debit (requests, units, refunds of
-- payments, downward adjustments, less the credits returned) uses the oldest lots first. What
-- is left of the lots that have expired, less what expired before, expires now: one ledger
-- entry, and the balance never below zero by it.
-- KEYS[1] state (credits); KEYS[2] the ledger log; KEYS[3] the refs; KEYS[4] the ledger hours
-- ARGV[1] now (epoch s); ARGV[2] life (s); ARGV[3] actor
-- Returns {DONE, balance, expired now} or {ALREADY, balance, 0}.
local now, life = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired_lots, others = 0, 0
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  local credits, at = tonumber(f.credits) or 0, tonumber(f.at) or 0
  local lot = f.kind == 'purchase' or f.kind == 'grant' or (f.kind == 'adjustment' and credits > 0)
  if lot then
    if at + life <= now then
      expired_lots = expired_lots + credits
    end
  elseif f.kind ~= 'expiry' then
    others = others + credits
  end
end
local hours = redis.call('HGETALL', KEYS[4])
for i = 1, #hours, 2 do
  local prefix = string.sub(hours[i], 1, 1)
  local v = tonumber(hours[i + 1]) or 0
  if prefix == 'f' then others = others + v else others = others - v end
end
local target = math.max(0, expired_lots + others) -- others is what was used: below zero
local done = -(tonumber(redis.call('HGET', KEYS[3], 'expiry')) or 0)
local balance = tonumber(redis.call('HGET', KEYS[1], 'credits')) or 0
local delta = math.min(target - done, math.max(balance, 0))
if delta <= 0 then
  return {ALREADY, balance, 0}
end
balance = redis.call('HINCRBY', KEYS[1], 'credits', -delta)
redis.call('HSET', KEYS[3], 'expiry', -(done + delta))
redis.call('XADD', KEYS[2], '*', 'kind', 'expiry', 'credits', -delta, 'ref', 'expiry',
           'reason', 'credits past their life', 'actor', ARGV[3], 'at', ARGV[1],
           'balance', balance)
return {DONE, balance, delta}
