"""A "last 30 days" view: its requests carry dates relative to today, and it shows what is
recent. A year after recording, `--shift-dates` still answers it: run the suite with
`--plaid-vcr-arg=--shift-dates --plaid-vcr-arg=--today=DAY`, and EXAMPLE_TODAY=DAY for the app's
own clock (docs/dates.md)."""

import datetime
import os

from plaid.model.transactions_get_request import TransactionsGetRequest

from app import access_token, plaid_client


def today() -> datetime.date:
    """The app's clock: EXAMPLE_TODAY if set (a test's frozen day), else today (UTC)."""
    day = os.environ.get("EXAMPLE_TODAY")
    return datetime.date.fromisoformat(day) if day else datetime.datetime.now(datetime.timezone.utc).date()


def test_the_last_30_days_of_transactions_are_recent(plaid_vcr_url):
    api = plaid_client(plaid_vcr_url)
    end = today()
    start = end - datetime.timedelta(days=30)
    request = TransactionsGetRequest(access_token=access_token(api), start_date=start, end_date=end)
    transactions = api.transactions_get(request).transactions
    assert transactions
    for transaction in transactions:
        # plaid-python parses dates strictly: a shifted answer is still Plaid's shape.
        assert start <= transaction.date <= end, transaction.date
