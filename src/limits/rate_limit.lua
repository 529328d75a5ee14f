-- Sliding-window check-and-count for one caller, atomically, on Redis's clock.
-- KEYS[1]  the caller's base key, "<prefix>:rl:{<bucket>}"; the braces are a hash tag, so every
--          window key derived from it lives in the same cluster slot.
-- ARGV[1]  cost: requests to count (0 = only read)
-- ARGV[2]  clock override in Unix ms (0 = Redis TIME; tests pass a fixed time)
-- ARGV[3..] pairs of (window seconds, limit or -1 for none)
-- Returns {now_ms, allowed (1/0), prev_1, curr_1, prev_2, curr_2, ...}, counts after counting.
local cost = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local out = {now, 1}
local current = {}
local allowed = true
local n = (#ARGV - 2) / 2
for i = 1, n do
  local w = tonumber(ARGV[1 + 2 * i])
  local limit = tonumber(ARGV[2 + 2 * i])
  local w_ms = w * 1000
  local idx = math.floor(now / w_ms)
  local elapsed = now - idx * w_ms
  local key = KEYS[1] .. ':' .. w .. ':' .. idx
  local curr = tonumber(redis.call('GET', key) or '0')
  local prev = tonumber(redis.call('GET', KEYS[1] .. ':' .. w .. ':' .. (idx - 1)) or '0')
  -- Same arithmetic, in the same order, as limits::weighted_previous.
  local weighted = math.floor(prev * ((w_ms - elapsed) / w_ms))
  if limit >= 0 and weighted + curr + cost > limit then allowed = false end
  current[i] = {key, (idx + 2) * w_ms - now}
  out[1 + 2 * i] = prev
  out[2 + 2 * i] = curr
end
if not allowed then
  out[2] = 0
elseif cost > 0 then
  for i = 1, n do
    -- Each window key lives until the end of the window after it, where it is "previous".
    out[2 + 2 * i] = redis.call('INCRBY', current[i][1], cost)
    redis.call('PEXPIRE', current[i][1], current[i][2])
  end
end
return out
