"""The sandbox flow through plaid-vcr with the official Python client (PyPI `plaid-python`).

Env: PLAID_VCR_BASE (http://127.0.0.1:PORT/plaid-compatible), PLAID_VCR_MODE (record|replay),
CLIENT_ID / SECRET (optional: without them the client sends no credentials), PLAID_VCR_KID
(optional: a webhook key id to fetch with /webhook_verification_key/get).
Prints one JSON line of what it saw; exits 1 with a message when something is off. The client
validates every response against its models, strictly: a call returning at all means the
(redacted, replayed) answer passed that validation.
"""
import json
import os
import sys

import plaid
from plaid.api import plaid_api
from plaid.model.accounts_get_request import AccountsGetRequest
from plaid.model.identity_get_request import IdentityGetRequest
from plaid.model.identity_get_request_options import IdentityGetRequestOptions
from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
from plaid.model.products import Products
from plaid.model.sandbox_public_token_create_request import SandboxPublicTokenCreateRequest
from plaid.model.webhook_verification_key_get_request import WebhookVerificationKeyGetRequest

BASE = os.environ["PLAID_VCR_BASE"]
MODE = os.environ["PLAID_VCR_MODE"]


def client(with_credentials=True):
    api_key = {}
    if with_credentials and os.environ.get("CLIENT_ID"):
        api_key["clientId"] = os.environ["CLIENT_ID"]
    if with_credentials and os.environ.get("SECRET"):
        api_key["secret"] = os.environ["SECRET"]
    configuration = plaid.Configuration(host=BASE, api_key=api_key)
    return plaid_api.PlaidApi(plaid.ApiClient(configuration))


def check(condition, message):
    if not condition:
        print(f"flow.py: {message}", file=sys.stderr)
        sys.exit(1)


def failure(call):
    """What a failed call surfaced to the caller: the client's normal ApiException, our body inside."""
    try:
        call()
    except plaid.ApiException as e:
        return {"status": e.status, "code": json.loads(e.body).get("error_code"), "exception": type(e).__name__}
    return None


def main():
    api = client()
    created = api.sandbox_public_token_create(
        SandboxPublicTokenCreateRequest(institution_id="ins_109508", initial_products=[Products("identity"), Products("auth")])
    )
    check(created.public_token.startswith("public-sandbox-"), "public token shape")
    exchanged = api.item_public_token_exchange(ItemPublicTokenExchangeRequest(public_token=created.public_token))
    token = exchanged.access_token
    check(token.startswith("access-sandbox-"), "access token shape")
    identity = api.identity_get(IdentityGetRequest(access_token=token))
    ids = [a.account_id for a in identity.accounts]
    check(len(identity.accounts[0].owners[0].names) > 0, "owners have names")
    filtered = api.identity_get(IdentityGetRequest(access_token=token, options=IdentityGetRequestOptions(account_ids=[ids[0]])))
    accounts = api.accounts_get(AccountsGetRequest(access_token=token))
    out = {
        "client": "plaid-python",
        "token": token,
        "accounts": len(identity.accounts),
        "filtered_accounts": len(filtered.accounts),
        "accounts_get": len(accounts.accounts),
        "owner_email": identity.accounts[0].owners[0].emails[0].data,
    }
    if MODE == "replay":
        out["miss"] = failure(lambda: api.identity_get(IdentityGetRequest(access_token="access-sandbox-00000000-0000-4000-8000-000000000000")))
        anonymous = client(with_credentials=False)
        out["no_credentials"] = failure(lambda: anonymous.accounts_get(AccountsGetRequest(access_token=token)))
    if os.environ.get("PLAID_VCR_KID"):
        # plaid-vcr's own webhook signing key, parsed by the client's JWKPublicKey model.
        key = api.webhook_verification_key_get(WebhookVerificationKeyGetRequest(key_id=os.environ["PLAID_VCR_KID"])).key
        out["webhook_key"] = {"kid": key.kid, "alg": key.alg, "crv": key.crv, "kty": key.kty, "x": len(key.x), "expired_at": key.expired_at}
    print(json.dumps(out))


try:
    main()
except plaid.ApiException as e:
    print(f"flow.py: {e.status} {e.body}", file=sys.stderr)
    sys.exit(1)
