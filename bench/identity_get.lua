-- wrk script: the demo cassette's identity/get, as the official node client sends it.
wrk.method = "POST"
wrk.body = '{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["PLAID-CLIENT-ID"] = "bench-client-id"
wrk.headers["PLAID-SECRET"] = "bench-secret"
wrk.headers["Plaid-Version"] = "2020-09-14"
-- SESSION=NAME bench/load.sh: the same request in session NAME (the Plaid-VCR-Session header).
local session = os.getenv("SESSION")
if session and session ~= "" then
  wrk.headers["Plaid-VCR-Session"] = session
end
-- TODAY=YYYY-MM-DD bench/load.sh: dates shifted to that day per request (Plaid-VCR-Today).
local today = os.getenv("TODAY")
if today and today ~= "" then
  wrk.headers["Plaid-VCR-Today"] = today
end
