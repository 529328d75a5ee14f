-- An admin's change to one balance (packed doubles: remaining, refill period, sequence, refill
-- terms' tag), after any refill due, atomically with every request spending from it.
-- KEYS[1]  "<prefix>:cr:{u:<owner>}:<holder>"
-- ARGV     op (0 forget, 1 add, 2 set, 3 read, 4 rebase: keep the balance, move to the current
--          period and terms without a refill), n, the current refill period, the refill amount
--          (-1: none), the terms' tag, then a seed (remaining, period, sequence) used when the
--          value is missing (remaining -1: none)
-- Returns {remaining, period, sequence, tag} after the change (before it, for forget), or {}
-- when there is no balance.
local op, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local period, amount, tag, seed = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local remaining, at, seq, terms
local stored = redis.call('GET', KEYS[1])
if stored and #stored == 32 then
  remaining, at, seq, terms = struct.unpack('dddd', stored)
end
if op == 0 then
  redis.call('DEL', KEYS[1])
  if remaining then return {remaining, at, seq, terms} end
  return {}
end
if not remaining then
  if op == 3 or seed < 0 then return {} end
  remaining, at, seq, terms = seed, tonumber(ARGV[7]), tonumber(ARGV[8]), tag
end
if op == 3 then return {remaining, at, seq, terms} end
if op == 4 then
  at, terms = period, tag
elseif amount >= 0 and period > at and terms == tag then
  remaining, at, seq = amount, period, seq + 1
end
if op == 1 then
  remaining = math.min(remaining + n, 9007199254740992)
elseif op == 2 then
  remaining = n
end
seq = seq + 1
redis.call('SET', KEYS[1], struct.pack('dddd', remaining, at, seq, terms))
return {remaining, at, seq, terms}
