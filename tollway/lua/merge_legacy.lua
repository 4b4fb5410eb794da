-- merge_legacy.lua: fold a legacy key's own bucket and quota into its account, once.
-- KEYS[1] the account hash
-- ARGV[1] key id; ARGV[2] tokens; ARGV[3] ts (ms); ARGV[4] q_period; ARGV[5] q_used
-- (each "" if the legacy state had none).
-- The quota used this period adds up (what the keys let through was let through), and the
-- bucket keeps the lower level, so merging never lends more than either key had.
-- Returns 1 if merged, 0 if this key was merged before.
if redis.call('HSETNX', KEYS[1], 'merged:' .. ARGV[1], '1') == 0 then
  return 0
end
local st = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'q_period', 'q_used')
local tokens, ts = tonumber(ARGV[2]), tonumber(ARGV[3])
if tokens and ts then
  local have = tonumber(st[1])
  if not have or tokens < have then
    redis.call('HSET', KEYS[1], 'tokens', ARGV[2], 'ts', ARGV[3])
  end
end
local period, used = tonumber(ARGV[4]), tonumber(ARGV[5])
if period and used then
  local have_period = tonumber(st[3])
  if have_period == period then
    redis.call('HSET', KEYS[1], 'q_used', (tonumber(st[4]) or 0) + used)
  elseif not have_period or have_period < period then
    redis.call('HSET', KEYS[1], 'q_period', ARGV[4], 'q_used', ARGV[5])
  end
end
return 1
