-- usage_transfer.lua: add one outbox entry to its customer's open ledger, at most once.
-- KEYS[1] the entry's transfer marker; KEYS[2] the customer's open ledger;
-- KEYS[3] the customer's per-period usage totals
-- ARGV[1] ledger field "<meter>|<window>"; ARGV[2] requests; ARGV[3] marker TTL in seconds;
-- ARGV[4] included requests per period (0: report everything); ARGV[5] period field
-- "<meter>|<period start>"
-- With included requests, only the part of this entry past them (across all the customer's
-- keys, in that billing period) is added: report = "overage".
-- Returns {DONE, requests added to the ledger}, or {ALREADY} if this entry was added before.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return {ALREADY}
end
local n, included = tonumber(ARGV[2]), tonumber(ARGV[4])
local billable = n
if included > 0 then
  local after = redis.call('HINCRBY', KEYS[3], ARGV[5], n)
  local before = after - n
  billable = math.max(0, after - included) - math.max(0, before - included)
end
if billable > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], billable)
end
return {DONE, billable}
