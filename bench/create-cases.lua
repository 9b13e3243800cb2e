-- wrk script: POST /v1/cases with a distinct subject and Idempotency-Key per
-- request. LETHE_KEY holds the API key; subjects are spread over threads.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  n = 0
  key = os.getenv("LETHE_KEY")
  stride = tonumber(os.getenv("WRK_THREADS") or "2")
end

function request()
  n = n + 1
  local subject = 1 + tid + (n - 1) * stride
  return wrk.format("POST", "/v1/cases", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. tid .. "-" .. n,
  }, '{"subject_id":"' .. subject .. '","channel":"app"}')
end
