"""How the app handles Plaid's failures, on demand: plaid-vcr fails this test's requests as Plaid
would (the `plaid_vcr_fault` fixture; docs/failures.md)."""

from app import access_token, accounts_or_update_mode, accounts_with_back_off, plaid_client


def test_login_required_sends_the_user_through_update_mode(plaid_vcr_url, plaid_vcr_fault):
    api = plaid_client(plaid_vcr_url)
    token = access_token(api)
    plaid_vcr_fault("ITEM_LOGIN_REQUIRED", endpoint="/accounts/get")
    outcome, link_token = accounts_or_update_mode(api, token)
    assert outcome == "update-mode" and link_token.startswith("link-sandbox-")
    # The item stays in that state until the user relinks.
    assert accounts_or_update_mode(api, token)[0] == "update-mode"
    plaid_vcr_fault.clear()  # the user went through Link's update mode
    outcome, accounts = accounts_or_update_mode(api, token)
    assert outcome == "accounts" and len(accounts) > 0


def test_rate_limits_are_retried_with_back_off(plaid_vcr_url, plaid_vcr_fault):
    api = plaid_client(plaid_vcr_url)
    token = access_token(api)
    plaid_vcr_fault("RATE_LIMIT_EXCEEDED", endpoint="/accounts/get", times=2)
    waits = []
    accounts = accounts_with_back_off(api, token, sleep=waits.append)
    assert len(accounts) > 0
    assert waits == [0.1, 0.2]
