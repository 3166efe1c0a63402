"""Reading a rules file: YAML → ``${ENV}`` references expanded → the models of
:mod:`~sla_guard.core.rules.schema` → calendars → cross-part checks → a :class:`RuleSet`.

Every problem is collected with its path in the file (``rules[2].first_touch.within``) and
raised together as one :class:`RulesError`.
"""

from __future__ import annotations

import hashlib
import os

import yaml
from pydantic import ValidationError

from sla_guard.core.rules.calendar import parse_calendar
from sla_guard.core.rules.checks import cross_check, expand_env
from sla_guard.core.rules.schema import Rule, RuleSet, RulesFile
from sla_guard.exceptions import RulesError


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part) in (
            "str",
            "int",
            "float",
            "bool",
            "list[union[str,int,float]]",
            "dict[str,float]",
        ):
            continue  # pydantic's names for union branches, not keys of the file
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _clean_message(error: dict) -> str:
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return message


def parse_rules(text: str, env: dict | None = None) -> RuleSet:
    """Validate rules-file text and return a :class:`RuleSet`; raise :class:`RulesError` listing every problem."""
    env = dict(os.environ) if env is None else env
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "file"
        raise RulesError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(raw, dict):
        raise RulesError([("", "the rules file must be a YAML mapping with a `rules:` list")])
    errors: list[tuple[str, str]] = []
    raw = expand_env(raw, "", env, errors)
    raw_rules = raw.pop("rules", [])
    if not isinstance(raw_rules, list):
        errors.append(("rules", "must be a list of rules"))
        raw_rules = []
    rules, positions = [], []
    for index, item in enumerate(raw_rules):
        try:
            rules.append(Rule.model_validate(item))
            positions.append(index)
        except ValidationError as exc:
            errors.extend(
                (_path(("rules", index, *error["loc"])), _clean_message(error))
                for error in exc.errors(include_url=False)
            )
    try:
        spec = RulesFile.model_validate({**raw, "rules": rules})
    except ValidationError as exc:
        errors.extend((_path(error["loc"]), _clean_message(error)) for error in exc.errors(include_url=False))
        raise RulesError(errors) from None
    if len(rules) < len(raw_rules):
        cross_check(spec, {name: None for name in spec.calendars}, errors, positions)
        raise RulesError(errors)
    calendars = {}
    for name, calendar_spec in spec.calendars.items():
        try:
            calendars[name] = parse_calendar(name, calendar_spec, spec.timezone)
        except RulesError as exc:
            errors.extend(exc.errors)
    cross_check(spec, calendars, errors, positions)
    if errors:
        raise RulesError(errors)
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return RuleSet(spec, calendars, version, text)


def load_rules_file(path: str, env: dict | None = None) -> RuleSet:
    """Read and validate the rules file at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise RulesError([("", f"cannot read rules file {path}: {exc.strerror}")]) from None
    return parse_rules(text, env)
