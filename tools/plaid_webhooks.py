#!/usr/bin/env python3
"""Derives plaid-vcr's table of Plaid's webhooks from Plaid's OpenAPI spec.

    git clone https://github.com/plaid/plaid-openapi && git -C plaid-openapi checkout 26f1a05
    python3 tools/plaid_webhooks.py plaid-openapi/2020-09-14.yml

Writes src/webhooks/plaid_webhooks.json: for every webhook schema of the spec (one whose
`webhook_type` and `webhook_code` properties name their one value, as "`TRANSACTIONS`"), keyed
"TYPE CODE": the schema's name, its required fields, and its first example, which plaid-vcr
sends (with the item and the fields a test gives) when a test fires that webhook. Processor-only
twins of a webhook are left out. Needs PyYAML.
"""

import json
import re
import sys

import yaml

SPEC_COMMIT = "26f1a0588c12e765e99c815300d94eae0a3c7dc1"


def value_of(prop):
    match = re.fullmatch(r"`([A-Z0-9_]+)`", (prop or {}).get("description", "").strip())
    return match.group(1) if match else None


def main(path):
    spec = yaml.safe_load(open(path, encoding="utf-8"))
    table = {}
    for name, schema in sorted(spec["components"]["schemas"].items()):
        props = schema.get("properties") or {}
        kind, code = value_of(props.get("webhook_type")), value_of(props.get("webhook_code"))
        examples = schema.get("x-examples") or {}
        if not kind or not code or not examples or name.startswith("Processor"):
            continue
        example = next(iter(examples.values()))
        table.setdefault(
            f"{kind} {code}",
            {"schema": name, "required": schema.get("required", []), "example": example},
        )
    out = {"source": f"plaid/plaid-openapi 2020-09-14.yml, commit {SPEC_COMMIT}", "webhooks": table}
    with open("src/webhooks/plaid_webhooks.json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(table)} webhooks written to src/webhooks/plaid_webhooks.json")


if __name__ == "__main__":
    main(sys.argv[1])
