"""Other Plaid products through plaid-vcr with plaid-python: /auth/get, /transfer/get and
/beacon/user/get, whose answers carry account numbers, names, dates of birth, id numbers, IPs,
phones and addresses. (/identity_verification/get carries the same kinds; its example in the
pinned spec fails plaid-python 46.0.0's models before any redaction: the client was generated
from a later spec that requires more fields.)

Env: PLAID_VCR_BASE, CLIENT_ID, SECRET. plaid-python validates every answer against its models,
strictly (types, formats, enums): a call returning at all means the (redacted, replayed) answer
passed. Prints one JSON line with a few personal values, so the caller can check they are
pseudonyms; exits 1 with a message otherwise.
"""
import json
import os
import sys

import plaid
from plaid.api import plaid_api
from plaid.model.auth_get_request import AuthGetRequest
from plaid.model.beacon_user_get_request import BeaconUserGetRequest
from plaid.model.transfer_get_request import TransferGetRequest

configuration = plaid.Configuration(
    host=os.environ["PLAID_VCR_BASE"],
    api_key={"clientId": os.environ["CLIENT_ID"], "secret": os.environ["SECRET"]},
)
api = plaid_api.PlaidApi(plaid.ApiClient(configuration))
TOKEN = "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"

try:
    auth = api.auth_get(AuthGetRequest(access_token=TOKEN))
    transfer = api.transfer_get(TransferGetRequest(transfer_id="460cbe92-2dcc-8eae-5ad6-b37d0ec90fd9"))
    beacon = api.beacon_user_get(BeaconUserGetRequest(beacon_user_id="becusr_42cF1MNo42r9Xj"))
except plaid.ApiException as e:
    print(f"products.py: {e.status} {e.body}", file=sys.stderr)
    sys.exit(1)

print(json.dumps({
    "ach_account": auth.numbers.ach[0].account,
    "beacon_given_name": beacon.user.name.given_name,
    "beacon_date_of_birth": str(beacon.user.date_of_birth),
    "beacon_ip_address": beacon.user.ip_address,
    "beacon_id_number": beacon.user.id_number.value,
    "transfer_legal_name": transfer.transfer.user.legal_name,
    "beacon_street": beacon.user.address.street,
}))
