-- usage_take.lua: move one key's closed usage windows into its outbox, atomically.
-- KEYS[1] usage hash (window start -> requests), KEYS[2] outbox hash, KEYS[3] outbox sequence
-- ARGV[1] window length in seconds; ARGV[2] seconds a window stays open after it ends
-- (allowance for clock skew between Redis and nothing else: authz counts with Redis TIME)
-- Returns the whole outbox afterwards as a flat list: entry, requests, entry, requests...
-- An entry is "<window>:<seq>"; a fresh seq per take means usage written back late into an
-- old window (after an outage) becomes a new entry instead of vanishing into an old one.
local t = redis.call('TIME')
local now = tonumber(t[1])
local size, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local window = tonumber(fields[i])
  if window and window + size + slack <= now then
    local n = tonumber(fields[i + 1])
    redis.call('HDEL', KEYS[1], fields[i])
    if n and n > 0 then
      local seq = redis.call('INCR', KEYS[3])
      redis.call('HSET', KEYS[2], fields[i] .. ':' .. seq, n)
    end
  end
end
return redis.call('HGETALL', KEYS[2])
