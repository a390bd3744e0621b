-- wrk script: POST $BENCH_BODY with $BENCH_AUTH as the Authorization header.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and #auth > 0 then
  wrk.headers["Authorization"] = auth
end

local statuses = {}
response = function(status)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function()
  for status, n in pairs(statuses) do
    if status ~= 200 then
      io.stderr:write(string.format("non-200: %d x %d\n", status, n))
    end
  end
end
