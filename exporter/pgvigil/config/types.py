"""Field types shared by every config section model: one strict base, one identifier, one
duration, one listen address."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from pgvigil.units import check_duration

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


Identifier = Annotated[str, Field(min_length=1, max_length=63, pattern=IDENTIFIER_PATTERN)]
Seconds = Annotated[float, Field(gt=0, le=3600)]


def parse_listen_address(value: str) -> tuple[str, int]:
    """'127.0.0.1:9839' or ':9839' (all interfaces) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


# One duration type for every config file: Prometheus' syntax (30s, 5m, 1h30m, 2d), kept as
# written (rules print it back); `pgvigil.units.parse_duration` gives its seconds.
Duration = Annotated[str, BeforeValidator(check_duration)]


def KnownName(kind: str, noun: str) -> Any:
    """A name the parts above the config declare (collectors, jobs): the command that loads
    the config passes them as validation context under `kind`; without it any name passes."""

    def check(value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get(kind)
        if known is not None and value not in known:
            raise ValueError(f"unknown {noun} {value} (known: {', '.join(known)})")
        return value

    return Annotated[str, AfterValidator(check)]
