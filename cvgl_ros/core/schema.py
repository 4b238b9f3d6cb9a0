"""Which config fields are node parameters, and the named presets of the internals.

One place says what a user may set: the dataclass field itself. A field becomes a ROS
parameter of ``cvgl_node`` only when it is declared with :func:`param` (description, range,
whether it may change at run time, which kind it belongs to); a nested config becomes a
parameter section only when it is declared with :func:`section`. Every other field is an
internal: it keeps its default, or takes the values of a named preset (:class:`Presets`, in the
style of hloc's ``confs``: a dict of named configurations, each key commented), selected by the
section's ``preset`` parameter.

The range in the marker is also the field's validation: ``__post_init__`` calls
:func:`check_ranges`, so the range the node advertises (``ros2 param describe``) and the range
the config enforces cannot drift apart.

No third-party import: the parameter table can be built without numpy, OpenCV or torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")

PARAM_KEY = "cvgl_param"
"""``dataclasses.Field.metadata`` key of a :class:`ParamMeta` / :class:`SectionMeta`."""


@dataclass(frozen=True)
class OnlyFor:
    """The selector a parameter (or a section) belongs to: declared only for these values.

    Attributes:
        selector: name of the selecting field, a marked field of the same class
            (``"kind"`` for ``MatcherConfig.learned``).
        values: the selector values (after the selector's ``kind_of``, when it has one) for
            which the parameter exists.
    """

    selector: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.selector or not self.values:
            raise ValueError("OnlyFor needs a selector and at least one value")


@dataclass(frozen=True)
class ParamMeta:
    """How a config field is exposed as a node parameter.

    Attributes:
        description: what it does, with its unit (``ros2 param describe``, docs/NODE.md).
        range: inclusive (low, high) for int and float fields; the config validates it too
            (:func:`check_ranges`). None only for non-numeric fields.
        runtime: may be changed while the node runs (taken by the next frame).
        only_for: the selector value(s) this parameter belongs to (None: always declared).
        kind_of: for a selector whose value is not the kind itself (``tiles.source``: a URL
            or path), the function that gives the kind.
    """

    description: str
    range: tuple[float, float] | None = None
    runtime: bool = False
    only_for: OnlyFor | None = None
    kind_of: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise ValueError("a parameter needs a description")
        if self.range is not None:
            low, high = self.range
            if not low <= high:  # also refuses NaN bounds
                raise ValueError(f"range must be (low, high) with low <= high, got {self.range}")


@dataclass(frozen=True)
class SectionMeta:
    """A nested config whose marked fields are parameters ``<field>.<name>``.

    Attributes:
        only_for: the selector value(s) the whole section belongs to (None: always).
    """

    only_for: OnlyFor | None = None


def param(
    default: Any = dataclasses.MISSING,
    *,
    description: str,
    range: tuple[float, float] | None = None,
    runtime: bool = False,
    only_for: tuple[str, tuple[Any, ...]] | None = None,
    kind_of: Callable[[Any], Any] | None = None,
) -> Any:
    """A dataclass field that is a node parameter.

    Args:
        default: the field's default (omit for a required field).
        description: what it does, with its unit.
        range: inclusive (low, high) of a numeric field; validated by :func:`check_ranges`.
        runtime: may be changed while the node runs.
        only_for: ``(selector, values)``: declared only when the selector field of the same
            class has one of these values (``("kind", ("learned",))``).
        kind_of: when this field is a selector: value -> kind.

    Returns:
        A ``dataclasses.field`` carrying a :class:`ParamMeta`.
    """
    meta = ParamMeta(
        description=" ".join(description.split()),
        range=None if range is None else (range[0], range[1]),
        runtime=runtime,
        only_for=None if only_for is None else OnlyFor(only_for[0], tuple(only_for[1])),
        kind_of=kind_of,
    )
    return field(default=default, metadata={PARAM_KEY: meta})


def section(
    default_factory: Callable[[], Any], *, only_for: tuple[str, tuple[Any, ...]] | None = None
) -> Any:
    """A nested-config field whose marked fields are parameters (``matcher.learned.*``).

    Args:
        default_factory: builds the nested config's default.
        only_for: ``(selector, values)``: the section exists only for these selector values.

    Returns:
        A ``dataclasses.field`` carrying a :class:`SectionMeta`.
    """
    meta = SectionMeta(None if only_for is None else OnlyFor(only_for[0], tuple(only_for[1])))
    return field(default_factory=default_factory, metadata={PARAM_KEY: meta})


def param_meta(f: dataclasses.Field[Any]) -> ParamMeta | None:
    """The :class:`ParamMeta` of a field, or None for an internal field."""
    meta = f.metadata.get(PARAM_KEY)
    return meta if isinstance(meta, ParamMeta) else None


def section_meta(f: dataclasses.Field[Any]) -> SectionMeta | None:
    """The :class:`SectionMeta` of a nested-config field, or None."""
    meta = f.metadata.get(PARAM_KEY)
    return meta if isinstance(meta, SectionMeta) else None


def check_ranges(obj: Any) -> None:
    """Validate every marked numeric field of a config against its marker's range.

    ``None`` (an optional field left unset) passes; NaN passes only for a field whose default
    is NaN (NaN = "not set"). Booleans are not numbers here. The items of a tuple field
    (``input_size_px``) are checked one by one.

    Raises:
        ValueError: a value that is not a number or lies outside its range, naming the field
            and the range.
    """
    cls = type(obj)
    for f in dataclasses.fields(obj):
        meta = param_meta(f)
        if meta is None or meta.range is None:
            continue
        value = getattr(obj, f.name)
        if value is None:
            continue
        name = f"{cls.__name__}.{f.name}"
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        want_int = type_name == "int" or type_name.startswith("tuple[int")
        nan_unset = isinstance(f.default, float) and math.isnan(f.default)
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            _check_in_range(name, item, meta.range, want_int, nan_unset)


def _check_in_range(
    name: str, value: Any, bounds: tuple[float, float], want_int: bool, nan_unset: bool
) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int if want_int else int | float):
        what = "an integer" if want_int else "a number"
        raise ValueError(f"{name} must be {what} in [{low:g}, {high:g}], got {value!r}")
    if nan_unset and math.isnan(value):
        return
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")


class Presets:
    """Named sets of internal field values of one config class (hloc ``confs`` style).

    A preset lists only the fields it changes; ``"default"`` is always ``{}``: the dataclass
    defaults. Presets may set internal fields only (never a parameter: a parameter file
    would then silently lose to, or beat, the preset).

    Args:
        confs: preset name -> {field name: value}; must contain ``"default"``.
        description: what choosing a preset means (the ``preset`` parameter's description).
        runtime: the ``preset`` parameter may be changed while the node runs.
    """

    def __init__(
        self, confs: Mapping[str, Mapping[str, Any]], description: str, runtime: bool = False
    ) -> None:
        if "default" not in confs or dict(confs["default"]):
            raise ValueError("presets need a 'default' entry that changes nothing ({})")
        self.confs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in confs.items()}
        self.description = " ".join(description.split())
        self.runtime = runtime
        self.owner: type[Any] | None = None

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.owner = owner  # the config class whose ``PRESETS`` this is

    def defaults(self, names: Sequence[str]) -> dict[str, Any]:
        """The owning class's field defaults of ``names`` (what ``default`` leaves them at)."""
        if self.owner is None:
            raise TypeError("these presets are not a config class's PRESETS")
        instance = self.owner()
        return {name: getattr(instance, name) for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        """The preset names, ``default`` first."""
        return ("default", *(n for n in self.confs if n != "default"))

    def values(self, name: str) -> dict[str, Any]:
        """The field values of preset ``name``.

        Raises:
            ValueError: an unknown name; the message lists the valid ones.
        """
        if name not in self.confs:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(self.names)}")
        return dict(self.confs[name])


def presets_of(cls: type[Any]) -> Presets | None:
    """The :class:`Presets` a config class declares (class attribute ``PRESETS``), or None."""
    presets = getattr(cls, "PRESETS", None)
    return presets if isinstance(presets, Presets) else None


def check_presets(cls: type[Any]) -> None:
    """Check that every preset of ``cls`` sets only internal fields and validates.

    Raises:
        ValueError: a preset naming an unknown field or a parameter, or a value the class
            rejects.
    """
    presets = presets_of(cls)
    if presets is None:
        return
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, values in presets.confs.items():
        for key in values:
            if key not in fields:
                raise ValueError(f"{cls.__name__} preset {name!r}: unknown field {key!r}")
            if param_meta(fields[key]) is not None or section_meta(fields[key]) is not None:
                raise ValueError(
                    f"{cls.__name__} preset {name!r} sets {key!r}, which is a parameter"
                )
        cls(**values)


def from_preset(cls: Callable[..., _T], name: str = "default", **fields: Any) -> _T:
    """Build ``cls`` from preset ``name`` (see :class:`Presets`) plus explicit field values.

    Args:
        cls: a config class with ``PRESETS``.
        name: the preset.
        **fields: further field values (parameters, or internals a preset does not set).

    Raises:
        ValueError: an unknown preset (listing the valid ones), or invalid values.
        TypeError: ``cls`` has no presets.
    """
    presets = presets_of(cls)  # type: ignore[arg-type]
    if presets is None:
        raise TypeError(f"{getattr(cls, '__name__', cls)!r} has no presets")
    return cls(**{**presets.values(name), **fields})
