#!/usr/bin/env python3
"""Derives plaid-vcr's table of personal fields, and its test corpus, from Plaid's OpenAPI spec.

    git clone https://github.com/plaid/plaid-openapi && git -C plaid-openapi checkout 26f1a05
    python3 tools/plaid_pii.py plaid-openapi/2020-09-14.yml

Writes:
- src/privacy/plaid_pii.tsv: one row per personal field of every POST endpoint's request and 200
  response, found by walking each body's schema through every $ref, allOf/oneOf/anyOf and
  array, so that a schema (Owner, Employee, an address) is classified once and covered wherever
  it appears. plaid-vcr compiles the rows into redaction rules (src/rules.rs).
- tests/corpus/plaid_examples.json: the spec's first example of every such body, the corpus the
  privacy tests redact and scan.

The classification is by field name, refined by the name of the schema the field belongs to
(a `name` is personal in `Employee`, not in `Institution`) and never applied to enums, numbers
or booleans. Rerun it against a newer spec commit to pick up new endpoints; review the diff.
Needs PyYAML.
"""

import json
import re
import sys

import yaml

SPEC_COMMIT = "26f1a0588c12e765e99c815300d94eae0a3c7dc1"
SPEC_VERSION = "2020-09-14_1.697.4"
MAX_DEPTH = 16

# Field name -> kind, wherever the field is (unless its schema says otherwise, below).
BY_FIELD = {
    "legal_name": "name", "given_name": "name", "family_name": "name", "first_name": "name",
    "last_name": "name", "middle_name": "name", "full_name": "name", "maiden_name": "name",
    "names": "name", "account_owner": "name", "verification_name": "name",
    "email": "email", "email_address": "email", "emails": "email",
    "phone": "phone", "phone_number": "phone", "phone_numbers": "phone", "mobile_phone": "phone",
    "date_of_birth": "dob", "dob": "dob", "birth_date": "dob",
    "ssn": "id_number", "ssn_last_4": "id_number", "ssn_full": "id_number", "tin": "id_number",
    "itin": "id_number", "tax_id": "id_number", "id_number": "id_number",
    "document_number": "id_number", "passport_number": "id_number", "license_number": "id_number",
    "national_id": "id_number",
    "ip_address": "ip", "ip": "ip",
    "street": "street", "street2": "street", "street_1": "street", "street_2": "street",
    "street_3": "street", "house_number": "street", "address_line_1": "street",
    "address_line_2": "street",
    "city": "city",
    "postal_code": "postal_code", "zip": "postal_code", "zip_code": "postal_code",
    "account_number": "account_number", "iban": "iban",
    # MISMO-style fields of the Freddie Mac / VOA reports, after snake-casing.
    "taxpayer_identifier_value": "id_number", "asset_owner_text": "name",
    "asset_account_identifier": "account_number",
}

# Schemas whose own fields name a person, though the field names are generic.
PERSON_SCHEMA = re.compile(
    r"Employee|Recipient|PayerDetails|AccountOwner|RefundDetails|WalletTransactionCounterparty"
    r"|^Owner$|InvestmentsAuthOwner|Individual|Person|Beneficiary|Applicant|UserData|UserAddress"
)
# Schemas of businesses and places: their names, addresses and phones are not a person's.
NOT_PERSONAL_SCHEMA = re.compile(
    r"Location|Merchant|Institution|Employer|Program|Security|Counterparty(?!Numbers)|Payer$|Filer"
    r"|Application|Category|Template|Provider|Publisher|Partner|Servicer|Originator|Document(Metadata)?$"
)
# `data`, `value`, `number`, `account`, `name`, `address` mean something only in context.
BY_SCHEMA_FIELD = [
    (re.compile(r"PhoneNumber"), "data", "phone"),
    (re.compile(r"Email"), "data", "email"),
    (re.compile(r"IDNumber"), "value", "id_number"),
    (re.compile(r"Document$"), "number", "id_number"),
    (re.compile(r"PhoneNumber"), "number", "phone"),
    (re.compile(r"^(Numbers|Recipient|CounterpartyNumbers|AuthVerifyNumbers)"), "account", "account_number"),
    (PERSON_SCHEMA, "name", "name"),
    (PERSON_SCHEMA, "address", "street"),
]


def main(spec_path):
    with open(spec_path) as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if spec["info"]["version"] != SPEC_VERSION:
        sys.exit(f"expected spec {SPEC_VERSION} (commit {SPEC_COMMIT}), got {spec['info']['version']}")
    schemas = spec["components"]["schemas"]
    rows = set()
    corpus = []
    for path, item in sorted(spec["paths"].items()):
        op = item.get("post")
        if not op:
            continue
        endpoint = path.strip("/")
        request = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        response = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
        for side, body in (("request", request), ("response", response)):
            if "schema" in body:
                for field_path, kind, schema in Walker(schemas).fields(body["schema"]):
                    rows.add((endpoint, side, field_path, kind, schema))
        examples = {side: first_example(body) for side, body in (("request", request), ("response", response))}
        if examples["response"] is not None:
            corpus.append({"endpoint": endpoint, **examples})
    # One row per endpoint, side and path (a path reached through two schemas names the first).
    unique = {}
    for row in sorted(rows):
        unique.setdefault(row[:3], row)
    rows = set(unique.values())
    with open("src/privacy/plaid_pii.tsv", "w") as out:
        out.write(f"# Personal fields of Plaid's API: generated by tools/plaid_pii.py from plaid/plaid-openapi\n")
        out.write(f"# 2020-09-14.yml, commit {SPEC_COMMIT} ({SPEC_VERSION}). Do not edit: rerun the script.\n")
        out.write("# endpoint\tside\tpath\tkind\tschema\n")
        for row in sorted(rows):
            out.write("\t".join(row) + "\n")
    with open("tests/corpus/plaid_examples.json", "w") as out:
        json.dump(
            {"spec_commit": SPEC_COMMIT, "spec_version": SPEC_VERSION, "examples": corpus},
            out,
            indent=1,
            sort_keys=True,
        )
        out.write("\n")
    endpoints = len({r[0] for r in rows})
    print(f"{len(rows)} personal fields on {endpoints} endpoints; {len(corpus)} examples", file=sys.stderr)


def first_example(body):
    if "example" in body:
        return body["example"]
    for example in (body.get("examples") or {}).values():
        return example.get("value")
    return None


class Walker:
    def __init__(self, schemas):
        self.schemas = schemas

    def deref(self, schema):
        name = None
        while isinstance(schema, dict) and "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.schemas[name]
        return schema, name

    def fields(self, schema):
        """Yields (path, kind, schema name) for every personal leaf under `schema`."""
        yield from self.visit(schema, [], None, (), 0)

    def visit(self, schema, path, owner, stack, depth):
        schema, name = self.deref(schema)
        if depth > MAX_DEPTH or (name and name in stack):
            return
        stack = stack + ((name,) if name else ())
        owner = name or owner
        for key in ("allOf", "oneOf", "anyOf"):
            for part in schema.get(key) or []:
                yield from self.visit(part, path, owner, stack, depth + 1)
        for field, sub in (schema.get("properties") or {}).items():
            yield from self.field(sub, path + [field], field, owner, stack, depth + 1)
        if schema.get("type") == "array" and "items" in schema:
            yield from self.visit(schema["items"], path[:-1] + [path[-1] + "[]"] if path else ["[]"], owner, stack, depth + 1)

    def field(self, schema, path, field, owner, stack, depth):
        resolved, name = self.deref(schema)
        items = None
        if resolved.get("type") == "array" and "items" in resolved:
            items, _ = self.deref(resolved["items"])
        target = items if items is not None else resolved
        if is_container(target):
            inner = resolved["items"] if items is not None else schema
            inner_path = path[:-1] + [path[-1] + "[]"] if items is not None else path
            yield from self.visit(inner, inner_path, owner, stack, depth)
            return
        yield from self.leaf(target, ".".join(path) + ("[]" if items is not None else ""), field, owner)

    def leaf(self, target, leaf, field, owner):
        """The rows of one field that holds no object: (path, kind, owner) of a personal string."""
        if target.get("enum") or target.get("type") not in ("string", None):
            return
        kind = classify(field, owner or "")
        if kind:
            yield leaf, kind, owner or "-"


def is_container(schema):
    return bool(schema.get("properties") or schema.get("allOf") or schema.get("oneOf") or schema.get("anyOf")) or (
        schema.get("type") == "object"
    )


def classify(field, owner):
    # `TaxpayerIdentifierValue` (MISMO) and `taxpayer_identifier_value` are the same field.
    field = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", field).lower()
    if NOT_PERSONAL_SCHEMA.search(owner) and not PERSON_SCHEMA.search(owner):
        return None
    for pattern, name, kind in BY_SCHEMA_FIELD:
        if field == name and pattern.search(owner):
            return kind
    return BY_FIELD.get(field)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
