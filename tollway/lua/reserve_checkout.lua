-- reserve_checkout.lua: bind one key to a checkout session, exactly once.
-- KEYS[1] checkout record; KEYS[2] the session's claim (the sealed key)
-- ARGV[1] the sealed key; ARGV[2] claim window in seconds; ARGV[3..] field, value pairs
-- describing the key to issue (key_id, hash, tier, customer, subscription, created, ...).
-- Returns the key id bound to the session: ours if we were first, the winner's otherwise.
-- Only the first writer's sealed key is kept, and Redis deletes it when the window ends.
local existing = redis.call('HGET', KEYS[1], 'key_id')
if existing then
  return existing
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return redis.call('HGET', KEYS[1], 'key_id')
