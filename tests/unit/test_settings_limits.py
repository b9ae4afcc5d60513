"""Every numeric setting and policy field is bounded; out-of-range values stop the start.

The bounds are found by walking the models, so a new numeric field without an upper
bound, or a new duration setting without the shared 10-year cap, fails here.
"""

import json
import types
from datetime import timedelta
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from allocflow.flows.cli import main
from allocflow.flows.settings import ENV_PREFIX, Settings
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.limits import MAX_DURATION, MAX_DURATION_S, field_bounds, has_upper_bound
from allocflow.models.policy import Policy
from allocflow.quality.settings import GateSettings

pytestmark = pytest.mark.unit

_NUMBERS = (int, float, timedelta)
_SETTINGS_MODELS = (Settings, GateSettings, TrackingSettings)


def _models_under(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Return ``model`` and every model nested in its fields, each once."""
    found: list[type[BaseModel]] = []
    pending = [model]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        for info in current.model_fields.values():
            pending += [t for t in _leaf_types(info.annotation) if _is_model(t)]
    return found


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _leaf_types(annotation: Any) -> list[Any]:
    """Return the plain types an annotation is made of (through unions, lists, dicts)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, dict):
        return [leaf for arg in get_args(annotation) for leaf in _leaf_types(arg)]
    return [annotation]


def _number_constraints(info: FieldInfo) -> list[tuple[str, list[Any]]]:
    """Return, for each number a field holds, where it is and its constraints."""
    found: list[tuple[str, list[Any]]] = []
    _collect(info.annotation, list(info.metadata), "", found)
    return found


def _collect(annotation: Any, metadata: list[Any], where: str, found: list[Any]) -> None:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        _collect(base, [*metadata, *extra], where, found)
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            _collect(arg, metadata, where, found)
    elif origin is dict:
        _collect(get_args(annotation)[1], [], f"{where} values", found)
    elif origin is list:
        _collect(get_args(annotation)[0], [], f"{where} items", found)
    elif annotation in _NUMBERS and annotation is not bool:
        found.append((where or "value", metadata))


def _numeric_fields() -> list[tuple[str, str, list[Any]]]:
    models = [*_SETTINGS_MODELS, *_models_under(Policy)]
    return [
        (f"{model.__name__}.{name}", where, metadata)
        for model in models
        for name, info in model.model_fields.items()
        for where, metadata in _number_constraints(info)
    ]


def test_the_walk_finds_the_numbers_it_must_bound() -> None:
    names = {name for name, _, _ in _numeric_fields()}
    assert {
        "Settings.dq_orphan_grace_s",
        "Settings.dq_stale_feed_after_by_feed_s",
        "GateSettings.stale_feed_after_by_feed",
        "TrackingSettings.forget_after",
        "BackorderRule.use_inbound_within_hours",
        "TierRule.priority",
        "Policy.channel_weights",
    } <= names


@pytest.mark.parametrize(("field", "where", "metadata"), _numeric_fields())
def test_every_number_has_an_upper_bound(field: str, where: str, metadata: list[Any]) -> None:
    assert has_upper_bound(metadata), f"{field} ({where}) has no upper bound"


def _duration_settings() -> list[str]:
    return [name for name in Settings.model_fields if name.endswith("_s")]


@pytest.mark.parametrize("name", _duration_settings())
def test_every_duration_setting_is_at_most_ten_years(name: str) -> None:
    (_, metadata), *_ = _number_constraints(Settings.model_fields[name])
    caps = [getattr(item, "le", getattr(item, "lt", None)) for item in _flat(metadata)]
    assert any(cap is not None and cap <= MAX_DURATION_S for cap in caps), name


def _flat(metadata: list[Any]) -> list[Any]:
    """Return the constraints in ``metadata``, those of nested ``Field(...)`` included."""
    flat: list[Any] = []
    for item in metadata:
        flat += _flat(item.metadata) if isinstance(item, FieldInfo) else [item]
    return flat


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300", "3e12", "315360001"])
@pytest.mark.parametrize("name", _duration_settings())
def test_an_out_of_range_duration_stops_the_cli_naming_field_variable_and_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    info = Settings.model_fields[name]
    if get_origin(info.annotation) is dict:
        value = json.dumps({"orders": float(value)})
    monkeypatch.setenv(f"{ENV_PREFIX}{name.upper()}", value)
    assert main(["settings"]) == 2
    error = capsys.readouterr().err
    assert name in error
    assert f"({ENV_PREFIX}{name.upper()})" in error
    assert f"allowed: {field_bounds(info)}" in error
    assert "Traceback" not in error


@pytest.mark.parametrize("model", [GateSettings, TrackingSettings])
def test_every_duration_of_the_flow_settings_is_at_most_ten_years(
    model: type[BaseModel],
) -> None:
    durations = [
        name
        for name, info in model.model_fields.items()
        if timedelta in _leaf_types(info.annotation)
    ]
    assert durations
    for name in durations:
        annotation = model.model_fields[name].annotation
        too_long = MAX_DURATION + timedelta(seconds=1)
        value = {"orders": too_long} if get_origin(annotation) is dict else too_long
        with pytest.raises(ValidationError, match=name):
            model.model_validate({name: value})
        fine = {"orders": MAX_DURATION} if get_origin(annotation) is dict else MAX_DURATION
        model.model_validate({name: fine})


def test_a_huge_rejected_value_is_cut_in_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLOCFLOW_ORDER_RETENTION_S", "9" * 100_000)
    assert main(["settings"]) == 2
    error = capsys.readouterr().err
    assert len(error) < 1000
    assert "(100002 characters)" in error
