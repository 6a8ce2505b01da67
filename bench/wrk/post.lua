-- wrk script for the facilitator benchmark.
-- args: <bodies file, one JSON body per line | "-" for GET> <path> <max responses, 0 = run for -d>
-- Each thread walks its own slice of the bodies, so every request carries a distinct payment.
-- done() prints one JSON line: counts, latency percentiles (µs), HTTP statuses and reasons.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } x402_timeval;
  int gettimeofday(x402_timeval *tv, void *tz);
]]
local tv = ffi.new("x402_timeval")
local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  path = args[2]
  max = tonumber(args[3]) or 0
  bodies = {}
  if args[1] ~= "-" then
    for line in io.lines(args[1]) do
      bodies[#bodies + 1] = line
    end
  end
  nthreads = tonumber(args[4] or "1")
  if #bodies >= nthreads and nthreads > 1 then
    slice = math.floor(#bodies / nthreads)
    base = (tid - 1) * slice
  else
    slice = math.max(1, #bodies)
    base = 0
  end
  i = 0
  responses = 0
  statuses = {}
  reasons = {}
  wrk.headers["Content-Type"] = "application/json"
  -- The API key of a public deployment (empty when ours runs bare, and for the reference).
  local token = os.getenv("X402_BENCH_TOKEN")
  if token ~= nil and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  -- wrk calls request() once per thread before connecting and discards the result: that call
  -- must not use up a payment body.
  if not primed then
    primed = true
    return wrk.format("GET", "/supported")
  end
  if #bodies == 0 then
    if first_us == nil then first_us = now_us() end
    return wrk.format("GET", path)
  end
  if first_us == nil then first_us = now_us() end
  -- With a budget, each body is sent once; connections that would need more send a cheap GET
  -- whose answer response() leaves out, so no payment is ever sent twice.
  if max > 0 and i >= slice then
    return wrk.format("GET", "/supported")
  end
  local body = bodies[base + (i % slice) + 1]
  i = i + 1
  return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
  if max > 0 and body:find('"kinds"', 1, true) then
    return
  end
  responses = responses + 1
  last_us = now_us()
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
  local reason = body:match('"invalidReason":"([^"]*)"') or body:match('"errorReason":"([^"]*)"')
    or body:match('"reason":"([^"]*)"')
  if reason == nil then
    if body:find('"isValid":true') or body:find('"success":true') or body:find('"valid":true') then reason = "ok" else reason = "-" end
  end
  reasons[reason] = (reasons[reason] or 0) + 1
  if max > 0 and responses >= max then
    -- wrk keeps running until -d even after stop(); the driver sends SIGINT on this line.
    if not announced then
      announced = true
      io.write("STOPPED\n")
      io.flush()
    end
    wrk.thread:stop()
  end
end

local function merge(into, from)
  for k, v in pairs(from or {}) do into[k] = (into[k] or 0) + v end
end

local function json_map(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all_status, all_reason, total = {}, {}, 0
  local t0, t1 = nil, nil
  for _, t in ipairs(threads) do
    local f, l = t:get("first_us"), t:get("last_us")
    if f and (t0 == nil or f < t0) then t0 = f end
    if l and (t1 == nil or l > t1) then t1 = l end
    merge(all_status, t:get("statuses"))
    merge(all_reason, t:get("reasons"))
    total = total + (t:get("responses") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{"responses":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"statuses":%s,"reasons":%s}\n',
    total, (t0 and t1) and (t1 - t0) or summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, e.connect + e.read + e.write, e.timeout, json_map(all_status), json_map(all_reason)))
end

-- A connection with nothing left to send idles (50 ms between its filler GETs) instead of
-- spinning, so it does not load the facilitator while the last payments settle.
function delay()
  if max > 0 and i >= slice then
    return 50
  end
  return 0
end
