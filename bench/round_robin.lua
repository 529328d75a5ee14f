-- (e): 1,000 distinct keys, round-robin; KEYS_FILE has one key per line.
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
local i = math.random(#keys)
request = function()
  i = i % #keys + 1
  return wrk.format("GET", "/api/whoami", { ["Api-Key"] = keys[i] })
end
