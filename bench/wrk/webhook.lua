-- POST an Alertmanager webhook body with a bearer token, for bench/ingest.py.
--
-- wrk ... -s bench/wrk/webhook.lua <url> -- <mode> <body file> <token> <run number 0-4095>
--   mode "duplicate": the same body on every request (the same 3-alert group again and again);
--   mode "insert":    the body file is a template whose @FP0@, @FP1@, ... markers are replaced by
--                     new 16-hex fingerprints on every request (they also appear in the labels, so
--                     each request carries 3 new alerts and is a new notification).
-- Non-2xx answers are counted in a response hook; done() prints one line "BENCH_RESULT {json}".

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("thread_id", next_id)
   table.insert(threads, thread)
   next_id = next_id + 1
end

local function read_file(path)
   local f = assert(io.open(path, "rb"))
   local text = f:read("*a")
   f:close()
   return text
end

local mode, chunks, markers, static_request, counter, prefix

function init(args)
   mode = args[1]
   local body = read_file(args[2])
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. args[3]
   wrk.headers["User-Agent"] = "Alertmanager/0.25.0"
   non2xx = 0
   status_counts = {}
   counter = 0
   -- Fingerprint = 3 random hex digits (real ones are hashes, so index inserts land anywhere),
   -- then the run number (3), the thread (2), a counter (6) and the alert's index (2): unique
   -- across the whole benchmark.
   local run = tonumber(args[4])
   math.randomseed(run * 7919 + thread_id)
   prefix = string.format("%03x%02x", run % 4096, thread_id % 256)
   if mode == "duplicate" then
      static_request = wrk.format(nil, nil, nil, body)
      return
   end
   assert(mode == "insert", "mode must be duplicate or insert")
   -- Split the template once: chunks[1] marker[1] chunks[2] marker[2] ... chunks[n+1].
   chunks, markers = {}, {}
   local pos = 1
   while true do
      local s, e, index = body:find("@FP(%d+)@", pos)
      if not s then break end
      table.insert(chunks, body:sub(pos, s - 1))
      table.insert(markers, tonumber(index) + 1)
      pos = e + 1
   end
   table.insert(chunks, body:sub(pos))
end

function request()
   if static_request then
      return static_request
   end
   counter = counter + 1
   local fps = {}
   local parts = {}
   for i = 1, #markers do
      local k = markers[i]
      if not fps[k] then
         fps[k] = string.format("%03x%s%06x%02x", math.random(0, 0xfff), prefix, counter % 0x1000000, k)
      end
      parts[#parts + 1] = chunks[i]
      parts[#parts + 1] = fps[k]
   end
   parts[#parts + 1] = chunks[#chunks]
   return wrk.format(nil, nil, nil, table.concat(parts))
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      status_counts[status] = (status_counts[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local non = 0
   local statuses = {}
   for _, thread in ipairs(threads) do
      non = non + (thread:get("non2xx") or 0)
      for code, n in pairs(thread:get("status_counts") or {}) do
         statuses[#statuses + 1] = string.format('"%d": %d', code, n)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "statuses": {%s}, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
         .. '"latency_us": {"p50": %.1f, "p90": %.1f, "p99": %.1f, "max": %.1f, "mean": %.1f}}\n',
      summary.requests, summary.duration, non, table.concat(statuses, ", "),
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean
   ))
end
