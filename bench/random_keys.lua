-- (f): a flood of random, well-formed-looking keys (their checksum fails).
local chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  local t = { "kg_" }
  for _ = 1, 36 do
    local n = math.random(1, 62)
    t[#t + 1] = chars:sub(n, n)
  end
  return wrk.format("GET", "/api/whoami", { ["Api-Key"] = table.concat(t) })
end
