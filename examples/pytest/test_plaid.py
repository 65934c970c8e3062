"""Tests of an app's Plaid calls, each in its own plaid-vcr session (the `plaid_vcr_url` fixture)."""

import os

import pytest
from plaid.model.accounts_get_request import AccountsGetRequest
from plaid.model.accounts_get_request_options import AccountsGetRequestOptions
from plaid.model.identity_get_request import IdentityGetRequest

from app import access_token, plaid_client


def test_a_new_item_has_accounts(plaid_vcr_url):
    api = plaid_client(plaid_vcr_url)
    accounts = api.accounts_get(AccountsGetRequest(access_token=access_token(api))).accounts
    assert len(accounts) > 0
    assert all(account.account_id for account in accounts)


def test_identity_names_the_owners(plaid_vcr_url):
    api = plaid_client(plaid_vcr_url)
    identity = api.identity_get(IdentityGetRequest(access_token=access_token(api)))
    assert identity.accounts[0].owners[0].names


@pytest.mark.parametrize("institution", ["ins_109508", "ins_109509"])
def test_each_institution_gets_its_own_item(plaid_vcr_url, institution):
    api = plaid_client(plaid_vcr_url)
    assert access_token(api, institution).startswith("access-sandbox-")


class TestAccounts:
    def test_balances_are_numbers(self, plaid_vcr_url):
        api = plaid_client(plaid_vcr_url)
        for account in api.accounts_get(AccountsGetRequest(access_token=access_token(api))).accounts:
            assert isinstance(account.balances.current, (int, float))


def test_a_request_never_recorded_fails_with_the_explanation(plaid_vcr_url):
    """Passes as recorded; with EXAMPLE_UNRECORDED=1 it asks for something never recorded, and
    fails with plaid-vcr's explanation: what differs from the closest recording."""
    api = plaid_client(plaid_vcr_url)
    request = AccountsGetRequest(access_token=access_token(api))
    if os.environ.get("EXAMPLE_UNRECORDED"):
        request.options = AccountsGetRequestOptions(account_ids=["never-recorded"])
    assert api.accounts_get(request).accounts
