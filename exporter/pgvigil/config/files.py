"""The YAML machinery shared by every file pgvigil reads (config, thresholds, web config):
reading, validating into a model, and every problem reported at once with its place in the file
(`path:line: key: problem`), so a user fixes a file in one round."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def read_yaml(path: str | os.PathLike[str], what: str = "file") -> tuple[dict[str, Any], Any]:
    """A YAML mapping and its node tree (for line numbers); any problem is a ConfigError.
    Shared by every YAML file pgvigil reads: config, thresholds, web config."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the {what}: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = f"{path}:{_yaml_place(e)}: not valid YAML: {_yaml_problem(e)}"
        raise ConfigError([problem]) from None
    duplicates = [f"{path}:{line}: {key}: {why}" for key, line, why in _duplicate_keys(root)]
    if duplicates:
        raise ConfigError(duplicates)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the top level must be a mapping"])
    return data, root


def _duplicate_keys(node: Any, where: str = "") -> list[tuple[str, int, str]]:
    """Keys given twice in one mapping. YAML loaders keep the last silently, which can drop a
    whole block (the mTLS settings, say); strict loaders such as Go's refuse the file."""
    out: list[tuple[str, int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            place = f"{where}.{name}" if where else str(name)
            line = key.start_mark.line + 1
            if name is not None and name != "<<":
                if name in seen:
                    out.append((place, line, f"duplicated key (first at line {seen[name]})"))
                else:
                    seen[name] = line
            out += _duplicate_keys(value, place)
    elif isinstance(node, yaml.SequenceNode):
        for n, item in enumerate(node.value):
            out += _duplicate_keys(item, f"{where}[{n}]")
    return out


M = TypeVar("M", bound=BaseModel)


def validate_model(
    model: type[M],
    data: Any,
    *,
    source: str,
    root: Any = None,
    context: dict[str, Any] | None = None,
) -> M:
    """Validate data into model; every problem at once, each with its place in the file.
    context reaches the validators (names that parts above the config declare)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, source=source, root=root)) from None


def describe_errors(error: ValidationError, *, source: str, root: Any = None) -> list[str]:
    problems = []
    for err in error.errors():
        loc = tuple(err["loc"])
        if loc and loc[-1] == "[key]":  # a mapping's key is wrong: name the key itself
            loc = loc[:-1]
        where = dotted(loc) or "(top level)"
        line = _line_of(root, loc)
        place = f"{source}:{line}" if line else source
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(f"{place}: {where}: {msg}")
    return problems


def dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: Any, loc: Sequence[Any]) -> int | None:
    """Line number (1-based) of the deepest YAML node found along loc."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
            if node is None:  # key is missing: point at its parent mapping
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _yaml_place(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f"{mark.line + 1}:{mark.column + 1}" if mark else "1"


def _yaml_problem(e: yaml.YAMLError) -> str:
    return str(getattr(e, "problem", None) or e).strip()
