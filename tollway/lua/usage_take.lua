-- usage_take.lua: move one usage source's closed windows into its outbox, atomically.
-- KEYS[1] usage hash, KEYS[2] outbox hash, KEYS[3] outbox sequence, KEYS[4] the source's
-- account hash (read only: who is billed, so metering needs no round trip of its own for it)
-- ARGV[1] window length in seconds; ARGV[2] seconds a window stays open after it ends: clock
-- slack, plus the grace for Envoy's access log to confirm or refund its requests
-- The usage hash holds:
--   "<window>"    requests counted (check.lua, lease settlements, written-back usage), less
--                 the refunds the access log made (metering/receiver.py): may go negative
--   "a:<window>"  amounts the upstream reported (the tier's usage_meter)
--   "carry"       refunded requests not yet taken off a window: a refund whose window was
--                 already taken, or one that outran its count; taken off the next windows
--   "carry_at"    when the carry began (Redis time, s)
-- Returns {outbox as a flat list (entry, value, ...), carry, carry_at, now, the account's
-- customer, tier, period_start and period_end (false where unset)}. An entry is
-- "<window>:<seq>" (requests) or "a:<window>:<seq>" (amounts); a fresh seq per take means usage
-- written late into an old window becomes a new entry instead of vanishing into an old one.
local now = tonumber(redis.call('TIME')[1])
local size, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
local carry = 0
local closed = {}
local function closes(window)
  return window and window + size + slack <= now
end
local function put(field, n)
  local seq = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[2], field .. ':' .. seq, n)
end
for i = 1, #fields, 2 do
  local f = fields[i]
  local n = tonumber(fields[i + 1]) or 0
  local window = tonumber(f)
  if f == 'carry' then
    carry = carry + n
  elseif window then
    if closes(window) then
      redis.call('HDEL', KEYS[1], f)
      closed[#closed + 1] = {window, n}
    end
  elseif string.sub(f, 1, 2) == 'a:' and closes(tonumber(string.sub(f, 3))) then
    redis.call('HDEL', KEYS[1], f)
    if n > 0 then
      put(f, n)
    end
  end
end
table.sort(closed, function(a, b) return a[1] < b[1] end)
for _, c in ipairs(closed) do
  if c[2] < 0 then
    carry = carry - c[2]
    c[2] = 0
  end
end
for _, c in ipairs(closed) do
  local off = math.min(c[2], carry)
  carry = carry - off
  if c[2] - off > 0 then
    put(tostring(c[1]), c[2] - off)
  end
end
local carry_at = 0
if carry > 0 then
  carry_at = tonumber(redis.call('HGET', KEYS[1], 'carry_at')) or now
  redis.call('HSET', KEYS[1], 'carry', carry, 'carry_at', carry_at)
else
  redis.call('HDEL', KEYS[1], 'carry', 'carry_at')
end
return {
  redis.call('HGETALL', KEYS[2]), carry, carry_at, now,
  redis.call('HMGET', KEYS[4], 'customer', 'tier', 'period_start', 'period_end'),
}
