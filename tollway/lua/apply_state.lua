-- apply_state.lua: compare-and-set one subscription's state, marking the event that did it.
-- KEYS[1] state hash; KEYS[2] the event's idempotency marker
-- ARGV[1] the state version the caller read ("0" if none); ARGV[2] marker TTL in seconds
-- ARGV[3..] field, value pairs to set (may be empty: a stale event only gets its marker)
-- Returns DONE, or MOVED_ON if the version moved on meanwhile (re-read and retry), or ALREADY
-- if the event already has a marker (another delivery of it got there first).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return ALREADY
end
local version = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
if version ~= tonumber(ARGV[1]) then
  return MOVED_ON
end
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
end
redis.call('SET', KEYS[2], 'applied', 'EX', ARGV[2])
return DONE
