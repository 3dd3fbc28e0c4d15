"""What the gateways' response models share: one lenient base model and a few field types.

Gateways answer in loosely typed JSON: ids and codes as strings or numbers, progress as "50%" or
50, sub-objects that are sometimes null, a string or missing. Each `<gateway>_models.py` declares
what its module reads with these, so a malformed answer fails in one place (a `ValidationError`
its module turns into the same typed `GatewayError` as before) instead of deep inside a chain
of `isinstance` checks. What the gateways say they send is in docs/GATEWAYS.md.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

T = TypeVar("T")


class Wire(BaseModel):
    """A gateway answer: unknown fields ignored (gateways add them freely), read-only once
    parsed. Leaf fields use the lenient types below, so only a wrong structure fails."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


#: Text as the gateway sent it; a number (an id, a code) or any other value read as its text.
Text = Annotated[str | None, BeforeValidator(_text)]


def _loose(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


#: A sub-object read only when it has the expected shape; anything else reads as absent (the
#: old `x if isinstance(x, dict) else {}`).
Loose = Annotated[T | None, WrapValidator(_loose)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


#: A JSON number; anything else (a string, a boolean, null) reads as absent.
Number = Annotated[float | None, BeforeValidator(_number)]


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


#: A yes/no verdict: a JSON boolean, or "true"/"false" as text; anything else reads as absent.
Flag = Annotated[bool | None, BeforeValidator(_flag)]


def _percent(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%").strip())
        except ValueError:
            return None
    number = _number(value)
    return None if number is None else max(0.0, min(100.0, number))


#: Progress as `"50%"`, `"50"` or `50`, clamped to 0-100; anything else reads as absent.
Percent = Annotated[float | None, BeforeValidator(_percent)]


def _objects(value: Any, handler: ValidatorFunctionWrapHandler) -> list[Any]:
    """The members of a list that have the expected shape; the others (and a non-list) are
    skipped, as `[i for i in x if isinstance(i, dict)]` used to."""
    kept: list[Any] = []
    for item in value if isinstance(value, list) else []:
        try:
            kept.extend(handler([item]))
        except ValidationError:
            continue
    return kept


#: A list of which only the members of the expected shape are read (null or a non-list: none).
Objects = Annotated[list[T], WrapValidator(_objects)]


def why(exc: ValidationError) -> str:
    """The first thing wrong with an answer, in one line ("status: Field required")."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "unreadable"}
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
