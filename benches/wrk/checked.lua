-- wrk script used for every load in `make bench`: it checks every response,
-- because a benchmark that counts errors as throughput is worthless.
--
-- Environment (read by each wrk thread):
--   BENCH_METHOD  GET (default) or POST
--   BENCH_BODY    request body (POST)
--   BENCH_BODIES  instead, a file of request bodies, one per line, sent in
--                 turn (each thread from its own place in the list), e.g.
--                 many distinct tokens to introspect (benches/tokens_file.py)
--   BENCH_CONTENT_TYPE  its type (default application/json)
--   BENCH_AUTH    value of the Authorization header, if any
--   BENCH_EXPECT  a substring every 200 body must contain (plain match)
--   BENCH_HEADER  one more request header, "Name: value" (e.g. If-None-Match)
--   BENCH_STATUS  the status every response must have (default 200; 304 for
--                 a revalidation, whose body is empty)
--
-- At the end it prints one line that benches/report.py reads:
--   WRK_RESULT {"requests":…,"rps":…,"p50_us":…,"p99_us":…,"non200":…,…}
-- non200 counts responses whose status is not exactly 200; bad_body counts
-- 200s without BENCH_EXPECT; socket_errors are wrk's connect/read/write/
-- timeout errors (a failed connection produces no response to check).

local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")
local expect = os.getenv("BENCH_EXPECT")
if expect == "" then expect = nil end
local want = tonumber(os.getenv("BENCH_STATUS") or "") or 200
local extra = os.getenv("BENCH_HEADER")
if extra and extra ~= "" then
  local name, value = string.match(extra, "^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

wrk.method = method
local bodies = os.getenv("BENCH_BODIES")
if bodies == "" then bodies = nil end
if body and body ~= "" then
  wrk.body = body
end
if wrk.body or bodies then
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

-- setup() runs in the main Lua state once per thread: keep the handles so
-- done() can sum the per-thread counters.
local threads = {}
function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

-- With BENCH_BODIES, every request is formatted once here and request()
-- hands them out in turn. Without it request() stays undefined: wrk then
-- sends its one static request, as every other load does.
if bodies then
  local requests, turn = {}, 0
  function init(args)
    for line in io.lines(bodies) do
      if line ~= "" then
        requests[#requests + 1] = wrk.format(nil, nil, nil, line)
      end
    end
    assert(#requests > 0, "BENCH_BODIES " .. bodies .. " holds no body")
    turn = (thread_no or 0) * math.floor(#requests / 2) % #requests
  end
  function request()
    turn = turn % #requests + 1
    return requests[turn]
  end
end

-- Per-thread state (each thread has its own Lua state).
non200 = 0
bad_body = 0
first_bad = ""

function response(status, headers, resp_body)
  if status ~= want then
    non200 = non200 + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(resp_body or "", 1, 160)
    end
  elseif want == 200 and expect and not string.find(resp_body, expect, 1, true) then
    bad_body = bad_body + 1
    if first_bad == "" then
      first_bad = "200 " .. string.sub(resp_body or "", 1, 160)
    end
  end
end

function done(summary, latency, requests)
  local n, b, first = 0, 0, ""
  for _, t in ipairs(threads) do
    n = n + t:get("non200")
    b = b + t:get("bad_body")
    local f = t:get("first_bad")
    if first == "" and f then first = f end
  end
  local e = summary.errors
  first = string.gsub(first, '[%c"\\]', " ")
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"non200":%d,"bad_body":%d,"socket_errors":%d,"first_bad":"%s"}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    n, b, e.connect + e.read + e.write + e.timeout, first))
end
