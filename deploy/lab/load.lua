-- wrk script for deploy/lab/load.py: a paced, counted load.
--
--   wrk -t T -c C -d SECONDS -s load.lua URL -- DELAY_MS
--
-- Every connection waits DELAY_MS before each request (wrk's delay() hook), so the rate is
-- about C * 1000 / (DELAY_MS + latency) requests per second, whatever the server's speed.
-- Every answer is counted by its status (wrk itself only counts status > 399). done() prints
-- one line, "WRK_RESULT {json}", read by load.py: requests, statuses, socket errors, latency
-- percentiles in microseconds.

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    statuses = {}
    pause = tonumber(args[1]) or 0
end

function delay()
    return pause
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local by = {}
    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses")) do
            by[status] = (by[status] or 0) + n
        end
    end
    local parts = {}
    for status, n in pairs(by) do
        table.insert(parts, string.format('"%d": %d', status, n))
    end
    local e = summary.errors
    io.write(string.format(
        'WRK_RESULT {"requests": %d, "duration_us": %d, "statuses": {%s}, ' ..
        '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
        '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
        summary.requests, summary.duration, table.concat(parts, ", "),
        e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
