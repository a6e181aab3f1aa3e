"""Schemathesis hooks for compose/schemathesis.sh: the two rules of the Instaface API that
JSON Schema cannot state, taught to the generator so that a case it calls valid is valid.

Both rules are in the OpenAPI document in words (and the first as an extension), and the
gateway enforces both (400):

- a query template names at most `x-max-association-types` association types over all its
  levels (a bound on a sum over a tree; the schema states the depth and each level's
  fan-out, `maxProperties`);
- an association goes from one entity to another: `to` is not `from` (a relation between
  two parameters).

Only positive cases are filtered; negative ones are left alone.
"""

import schemathesis
from schemathesis import GenerationMode


def _count_types(template):
    if not isinstance(template, dict):
        return 0
    return sum(1 + _count_types(v) for v in template.values())


def _max_types(operation):
    schemas = operation.schema.raw_schema.get("components", {}).get("schemas", {})
    return schemas.get("Template", {}).get("x-max-association-types")


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return True
    operation_id = (case.operation.definition.raw or {}).get("operationId")
    if operation_id == "put_association":
        params = case.path_parameters or {}
        return params.get("from") is None or params.get("from") != params.get("to")
    if operation_id == "query" and isinstance(case.body, dict):
        limit = _max_types(case.operation)
        return limit is None or _count_types(case.body.get("template")) <= limit
    return True
