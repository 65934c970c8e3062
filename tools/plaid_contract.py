#!/usr/bin/env python3
"""Derives the copy of Plaid's OpenAPI spec that `plaid-vcr validate` ships inside the binary.

    git clone https://github.com/plaid/plaid-openapi && git -C plaid-openapi checkout 26f1a05
    python3 tools/plaid_contract.py plaid-openapi/2020-09-14.yml

Writes src/contract/plaid_openapi.json: a smaller OpenAPI 3.0 document that is still one, with
every POST path's JSON request body and JSON 200 answer, and every component schema, keeping only
what validation reads (types, properties, required, items, enum, nullable, format, lengths,
patterns, bounds, allOf/oneOf/anyOf/not, additionalProperties, $ref). Descriptions, examples and
vendor keys go, except a description that is one backticked constant, as "`TRANSACTIONS`": that is
how the spec names a webhook's type and code, and how plaid-vcr finds the schema of a webhook body.
plaid-vcr reads this file and a whole spec given with `--spec` through the same code.

Also writes tests/corpus/plaid_requests.json: a request body for every operation, the spec's
first example where it has one, else the smallest body its schema accepts (required fields only,
enum values, `"string"` placeholders, dates of 2020-01-01), as a mock server of the spec would
see them. The contract tests record Plaid's examples with these. Needs PyYAML.
"""

import json
import re
import sys

import yaml

SPEC_COMMIT = "26f1a0588c12e765e99c815300d94eae0a3c7dc1"
OUT = "src/contract/plaid_openapi.json"
REQUESTS = "tests/corpus/plaid_requests.json"

# The keywords of an OpenAPI 3.0 schema object that decide validity.
VALUE_KEYS = {
    "type",
    "required",
    "enum",
    "nullable",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "$ref",
}
SCHEMA_KEYS = {"items", "not"}
LIST_KEYS = {"allOf", "oneOf", "anyOf"}
CONSTANT = re.compile(r"`[A-Z0-9_]+`")


def strip(schema):
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in VALUE_KEYS:
            out[key] = value
        elif key in SCHEMA_KEYS:
            out[key] = strip(value)
        elif key in LIST_KEYS:
            out[key] = [strip(v) for v in value]
        elif key == "properties":
            out[key] = {name: strip(v) for name, v in value.items()}
        elif key == "additionalProperties":
            out[key] = strip(value) if isinstance(value, dict) else value
        elif key == "description" and isinstance(value, str) and CONSTANT.fullmatch(value.strip()):
            out[key] = value.strip()
    return out


def json_schema(content):
    media = (content or {}).get("application/json")
    return strip(media["schema"]) if media and "schema" in media else None


def resolve(schema, schemas):
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def merged(schema, schemas):
    """One schema for an allOf (all of it) or a oneOf/anyOf (its first branch)."""
    for key in ("allOf", "oneOf", "anyOf"):
        if key not in schema:
            continue
        out = {k: v for k, v in schema.items() if k != key}
        for branch in schema[key] if key == "allOf" else schema[key][:1]:
            for k, v in resolve(branch, schemas).items():
                if k == "properties":
                    out.setdefault("properties", {}).update(v)
                elif k == "required":
                    out["required"] = out.get("required", []) + v
                else:
                    out.setdefault(k, v)
        return merged(out, schemas)
    return schema


SCALARS = {"integer": 1, "number": 1, "boolean": False}
FORMATS = {"date": "2020-01-01", "date-time": "2020-01-01T00:00:00Z"}


def minimal(schema, schemas):
    """The smallest value the schema accepts, as a mock of Plaid's spec would send it."""
    schema = merged(resolve(schema, schemas), schemas)
    kind = schema.get("type", "object")
    if "enum" in schema:
        value = next(v for v in schema["enum"] if v is not None)
    elif kind == "object":
        props = schema.get("properties", {})
        value = {name: minimal(props.get(name, {}), schemas) for name in schema.get("required", [])}
    elif kind == "array":
        value = [minimal(schema.get("items", {}), schemas) for _ in range(schema.get("minItems", 0))]
    elif kind in SCALARS:
        value = schema.get("minimum", SCALARS[kind])
    else:
        value = FORMATS.get(schema.get("format"), "string".ljust(schema.get("minLength", 0), "x"))
    return value


def requests_of(spec):
    """Each operation's request: the spec's first example, else the smallest valid body."""
    schemas = spec["components"]["schemas"]
    out = {}
    for name, item in sorted(spec["paths"].items()):
        body = (item.get("post") or {}).get("requestBody") or {}
        media = (body.get("content") or {}).get("application/json")
        if not media or "schema" not in media:
            continue
        examples = media.get("examples") or {}
        example = next(iter(examples.values()), {}).get("value") if examples else None
        out[name.lstrip("/")] = example if isinstance(example, dict) else minimal(media["schema"], schemas)
    return out


def main(path):
    spec = yaml.safe_load(open(path, encoding="utf-8"))
    paths = {}
    for name, item in sorted(spec["paths"].items()):
        post = item.get("post")
        if not post:
            continue
        operation = {}
        request = json_schema((post.get("requestBody") or {}).get("content"))
        if request:
            operation["requestBody"] = {"content": {"application/json": {"schema": request}}}
        answer = json_schema((post.get("responses", {}).get("200") or {}).get("content"))
        if answer:
            operation["responses"] = {"200": {"content": {"application/json": {"schema": answer}}}}
        paths[name] = {"post": operation}
    schemas = {name: strip(schema) for name, schema in sorted(spec["components"]["schemas"].items())}
    out = {
        "openapi": spec["openapi"],
        "info": {"title": "Plaid", "version": spec["info"]["version"], "x-commit": SPEC_COMMIT},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(f"{len(paths)} paths and {len(schemas)} schemas written to {OUT}")
    requests = requests_of(spec)
    with open(REQUESTS, "w", encoding="utf-8") as f:
        json.dump({"spec_commit": SPEC_COMMIT, "requests": requests}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(requests)} requests written to {REQUESTS}")


if __name__ == "__main__":
    main(sys.argv[1])
