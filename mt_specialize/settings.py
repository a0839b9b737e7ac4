"""Settings declared once: a dataclass field made by ``setting(...)`` carries what every reader needs.

A field declared with one of ``text``, ``path``, ``choice``, ``integer``, ``count``, ``number``,
``boolean`` or ``mapping`` holds a ``Setting`` in its metadata: its one-line help, its kind, its
default, the allowed values or range, its unit, what null means (the field may be None) and the
paper's name of it. ``settings_of(cls)`` returns them by field name. The YAML validation
(``config.TrainConfig.resolved``), the flags of ``mt-specialize train`` (``cli``) and the learner
node's ROS parameters (``ros.learner``) are all made from these, so a setting is written in one place.

``Setting.checked`` turns a value given in YAML, on the command line (text) or as a ROS parameter
into the field's value, or raises ValueError ``"<name> must be <allowed>, got <value>"``;
``Setting.allowed`` and ``Setting.describe`` are the words --help and ``ros2 param describe`` show.
Imports nothing of the package and no heavy library.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from os import PathLike
from typing import Any, Callable, Mapping, Sequence

#: what a setting holds (``Setting.kind``); every kind but ``mapping`` is a scalar: a command-line
#: flag and a ROS parameter
KINDS = ("text", "path", "choice", "integer", "count", "number", "boolean", "mapping")
METADATA_KEY = "setting"

Choices = Sequence[str] | Mapping[str, str]

_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")


def parse_count(value: Any, what: str = "count") -> int:
    """``400k`` -> 400000, ``3M`` -> 3000000, ``1.5M`` -> 1500000; ints pass through."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a sample count like 400k or 3M, got {value!r}")
    if isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    else:
        match = _COUNT.match(str(value).replace("_", ""))
        if not match:
            raise ValueError(f"{what} must be a sample count like 400k, 3M or 3000000, got {value!r}")
        scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2).lower()]
        number = float(match.group(1)) * scale
        if not number.is_integer():
            raise ValueError(f"{what} must be a whole number of samples, got {value!r}")
        count = int(number)
    if count < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return count


@dataclass(frozen=True)
class Setting:
    """What one settings field takes (see the module docstring).

    help:       one line: what the setting sets
    kind:       one of ``KINDS``: ``count`` is a number of samples (``400k``, ``3M``), ``number`` a
                finite float, ``path`` a file or directory
    default:    the field's default (None: null, see ``null``)
    choices:    kind ``choice``: the allowed values, a mapping value -> one-line summary, or a function
                returning either (a registry that may grow)
    low, high:  bounds of an integer, count or number, inclusive; ``below_high``: the number stays
                below ``high``
    unit:       of a number, in words (``seconds``)
    words:      texts a number setting takes beside numbers (``off``)
    null:       what None means, e.g. "the experiment's budget"; None: the setting cannot be null
    paper_name: the paper's name of the setting, taken wherever the setting is given
    positional: the command line takes it as the positional argument, not as a flag
    name:       the field's name (``settings_of`` fills it in)
    """

    help: str
    kind: str
    default: Any = None
    choices: Choices | Callable[[], Choices] = ()
    low: float | None = None
    high: float | None = None
    below_high: bool = False
    unit: str = ""
    words: tuple[str, ...] = ()
    null: str | None = None
    paper_name: str | None = None
    positional: bool = False
    name: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"setting kind {self.kind!r}; allowed {list(KINDS)}")

    @property
    def nullable(self) -> bool:
        return self.null is not None

    @property
    def scalar(self) -> bool:
        """Given on the command line and as a ROS parameter (a mapping only in YAML)."""
        return self.kind != "mapping"

    @property
    def label(self) -> str:
        """The name in messages: ``split_fraction (sp)``."""
        return f"{self.name} ({self.paper_name})" if self.paper_name else self.name

    def choice_summaries(self) -> dict[str, str]:
        """Allowed value -> its summary ('' where it has none), in order."""
        choices = self.choices() if callable(self.choices) else self.choices
        return dict(choices) if isinstance(choices, Mapping) else {str(c): "" for c in choices}

    def allowed(self) -> str:
        """What the setting takes, in words: ``an integer >= 1``, ``one of ['raw', 'normalized']``."""
        low, high = self.low, self.high
        if self.kind == "choice":
            return f"one of {list(self.choice_summaries())}"
        if self.kind == "integer":
            if low is not None and high is not None:
                return f"an integer from {low:,} to {high:,}"
            return f"an integer >= {low:,}" if low is not None else "an integer"
        if self.kind == "count":
            return "a sample count like 400k or 3M" + (f" (at least {low:,})" if low else "")
        if self.kind == "number":
            if low is not None and high is not None:
                text = f"a number in [{low:g}, {high:g}{')' if self.below_high else ']'}"
            elif low == 0:
                text = "a non-negative finite number"
            else:
                text = f"a finite number >= {low:g}" if low is not None else "a finite number"
            text += f" of {self.unit}" if self.unit else ""
            return text + "".join(f" or {word!r}" for word in self.words)
        return {"text": "a non-empty text", "path": "a path", "boolean": "true or false",
                "mapping": "a mapping"}[self.kind]

    def default_text(self) -> str:
        """The default in words: the value, or what null means."""
        if self.default is None:
            return self.null or "none"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def describe(self) -> str:
        """One line for --help and a ROS parameter's description: help, allowed values, default."""
        summaries = {value: summary for value, summary in self.choice_summaries().items() if summary}
        text = self.help
        if summaries:
            text += ": " + "; ".join(f"{value}: {summary}" for value, summary in summaries.items())
        else:
            text += f"; {self.allowed()}"
        return f"{text} (default: {self.default_text()})"

    def checked(self, value: Any) -> Any:
        """``value`` as the field holds it (text of a number taken as the number); ValueError naming the
        setting, what it takes and the value if it takes no such value."""
        if value is None and self.nullable:
            return None
        kind = self.kind
        if kind == "count":
            if value is None:
                raise self._refused(value)
            count = parse_count(value, self.label)
            if not self._in_bounds(count):
                raise self._refused(value)
            return count
        if kind == "integer":
            number = _integer(value)
            if number is None or not self._in_bounds(number):
                raise self._refused(value)
            return number
        if kind == "number":
            if isinstance(value, str) and value.strip() in self.words:
                return value.strip()
            number = _number(value)
            if number is None or not self._in_bounds(number):
                raise self._refused(value)
            return number
        if kind == "choice":
            if not (isinstance(value, str) and value in self.choice_summaries()):
                raise self._refused(value)
            return value
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise self._refused(value)
        if kind == "path":
            if not isinstance(value, (str, PathLike)) or not str(value):
                raise self._refused(value)
            return str(value)
        if kind == "text":  # a name, or the path of a file that names it
            if not isinstance(value, (str, PathLike)) or not str(value).strip():
                raise self._refused(value)
            return value if isinstance(value, str) else str(value)
        if not isinstance(value, Mapping):  # mapping
            raise self._refused(value)
        return value

    def _in_bounds(self, number: float) -> bool:
        if self.low is not None and number < self.low:
            return False
        if self.high is not None and (number >= self.high if self.below_high else number > self.high):
            return False
        return True

    def _refused(self, value: Any) -> ValueError:
        return ValueError(f"{self.label} must be {self.allowed()}, got {value!r}")


def _integer(value: Any) -> int | None:
    """An int (not a bool) or the text of one -> the int; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value.replace("_", "")):
        return int(value.replace("_", ""))
    return None


def _number(value: Any) -> float | None:
    """A finite int or float (not a bool) or the text of one -> float; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# -- declaring settings: one call per field ---------------------------------------------------------
def setting(default: Any, help: str, kind: str, *, default_factory: Callable[[], Any] | None = None,
            **rules: Any) -> Any:
    """A dataclass field with default ``default`` (or ``default_factory``) holding its ``Setting``."""
    declared = Setting(help, kind, default_factory() if default_factory else default, **rules)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={METADATA_KEY: declared})
    return dataclasses.field(default=default, metadata={METADATA_KEY: declared})


def text(default: str | None, help: str, **rules: Any) -> Any:
    return setting(default, help, "text", **rules)


def path(default: str | None, help: str, **rules: Any) -> Any:
    return setting(default, help, "path", **rules)


def choice(default: str | None, choices: Choices | Callable[[], Choices], help: str, **rules: Any) -> Any:
    return setting(default, help, "choice", choices=choices, **rules)


def integer(default: int | None, help: str, **rules: Any) -> Any:
    return setting(default, help, "integer", **rules)


def count(default: int | None, help: str, **rules: Any) -> Any:
    return setting(default, help, "count", **rules)


def number(default: float | None, help: str, **rules: Any) -> Any:
    return setting(default, help, "number", **rules)


def boolean(default: bool | None, help: str, **rules: Any) -> Any:
    return setting(default, help, "boolean", **rules)


def mapping(help: str, **rules: Any) -> Any:
    return setting(None, help, "mapping", default_factory=dict, **rules)


def settings_of(cls: type) -> dict[str, Setting]:
    """The ``Setting`` of every field of dataclass ``cls`` that has one, by field name, in field order."""
    return {f.name: dataclasses.replace(f.metadata[METADATA_KEY], name=f.name)
            for f in dataclasses.fields(cls) if METADATA_KEY in f.metadata}
