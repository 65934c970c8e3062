-- wrk script: identity/get with a distinct access_token per request, so every request is a
-- new recording (a parallel test suite in record mode). RUN_ID keeps runs apart.
local run = os.getenv("RUN_ID") or "0"
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["PLAID-CLIENT-ID"] = "bench-client-id"
wrk.headers["PLAID-SECRET"] = "bench-secret"
wrk.headers["Plaid-Version"] = "2020-09-14"
request = function()
  n = n + 1
  local body = string.format('{"access_token":"access-sandbox-%s-%08x"}', run, n)
  return wrk.format(nil, nil, nil, body)
end
