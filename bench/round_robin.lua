-- (e): 1,000 distinct keys, round-robin; KEYS_FILE has one key per line. With DELAY_MS set,
-- each connection waits that long between requests (a paced load, as paced.lua).
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
local i = math.random(#keys)
request = function()
  i = i % #keys + 1
  return wrk.format("GET", "/api/whoami", { ["Api-Key"] = keys[i] })
end
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
if delay_ms > 0 then
  delay = function() return delay_ms end
end
