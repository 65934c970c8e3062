"""The app under test: its Plaid calls, and how it handles Plaid's failures."""

import json

import plaid
from plaid.api import plaid_api
from plaid.model.accounts_get_request import AccountsGetRequest
from plaid.model.country_code import CountryCode
from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
from plaid.model.link_token_create_request import LinkTokenCreateRequest
from plaid.model.link_token_create_request_user import LinkTokenCreateRequestUser
from plaid.model.products import Products
from plaid.model.sandbox_public_token_create_request import SandboxPublicTokenCreateRequest


def plaid_client(url: str) -> plaid_api.PlaidApi:
    # Dummy credentials: plaid-vcr never keys on them, and holds the real ones when recording.
    credentials = {"clientId": "example-id", "secret": "example-secret"}
    configuration = plaid.Configuration(host=url, api_key=credentials)
    return plaid_api.PlaidApi(plaid.ApiClient(configuration))


def access_token(api: plaid_api.PlaidApi, institution: str = "ins_109508") -> str:
    created = api.sandbox_public_token_create(
        SandboxPublicTokenCreateRequest(institution_id=institution, initial_products=[Products("auth")])
    )
    exchange = ItemPublicTokenExchangeRequest(public_token=created.public_token)
    return api.item_public_token_exchange(exchange).access_token


def error_of(e: plaid.ApiException) -> dict:
    """Plaid's error, as the official client hands it over."""
    return json.loads(e.body)


def accounts_or_update_mode(api: plaid_api.PlaidApi, token: str):
    """The accounts; or, when the item needs a new login, a link token for Link's update mode."""
    try:
        return "accounts", api.accounts_get(AccountsGetRequest(access_token=token)).accounts
    except plaid.ApiException as e:
        if error_of(e)["error_code"] != "ITEM_LOGIN_REQUIRED":
            raise
    update = LinkTokenCreateRequest(
        client_name="Example app",
        language="en",
        country_codes=[CountryCode("US")],
        user=LinkTokenCreateRequestUser(client_user_id="user-1"),
        access_token=token,
    )
    return "update-mode", api.link_token_create(update).link_token


def accounts_with_back_off(api: plaid_api.PlaidApi, token: str, sleep, attempts: int = 5):
    """The accounts, retrying a rate limit with exponential back-off (`sleep(seconds)`)."""
    wait = 0.1
    for _ in range(attempts - 1):
        try:
            return api.accounts_get(AccountsGetRequest(access_token=token)).accounts
        except plaid.ApiException as e:
            if e.status != 429 or error_of(e)["error_type"] != "RATE_LIMIT_EXCEEDED":
                raise
            sleep(wait)
            wait *= 2
    return api.accounts_get(AccountsGetRequest(access_token=token)).accounts
