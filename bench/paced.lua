-- A paced load: each connection waits DELAY_MS between requests; with API_KEY set, sends it.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local key = os.getenv("API_KEY")
request = function()
  if key and key ~= "" then
    return wrk.format("GET", "/api/whoami", { ["Api-Key"] = key })
  end
  return wrk.format("GET", "/api/whoami")
end
delay = function() return delay_ms end
