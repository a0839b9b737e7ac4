"""Reading the package's YAML files (settings, experiments, a run's config.yaml) strictly.

``load_yaml_file`` refuses, with a ValueError naming the file, what PyYAML would accept silently or
report without the file: text that is not UTF-8, a key given twice in one mapping (PyYAML keeps the
last), a document whose aliases expand to more than ``MAX_VALUES`` values (a "billion laughs" file:
every later message quoting it would be megabytes long) or that refers to itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_VALUES = 100_000  # values (scalars, lists, mappings) a settings file may expand to


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping (merge keys ``<<`` still override)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found the key {key!r} twice (first on line {first.start_mark.line + 1}); give each "
                        f"setting once", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _count_values(data: Any, where: str) -> None:
    """ValueError if ``data`` expands to more than MAX_VALUES values or contains itself."""
    sizes: dict[int, int] = {}  # id of a container -> its expanded size (aliases share objects)
    active: set[int] = set()

    def size(obj: Any) -> int:
        if not isinstance(obj, (list, dict)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError(f"{where}: a value refers to itself (a recursive YAML alias)")
        active.add(key)
        total = 1
        for item in (obj.values() if isinstance(obj, dict) else obj):
            total += size(item)
            if total > MAX_VALUES:
                break
        active.discard(key)
        sizes[key] = total
        if total > MAX_VALUES:
            raise ValueError(f"{where}: its aliases expand to more than {MAX_VALUES:,} values; a settings file "
                             f"needs far fewer (is it a 'billion laughs' file?)")
        return total

    size(data)


def load_yaml_file(path: str | Path, what: str = "YAML file") -> Any:
    """The YAML document in ``path`` (None for an empty file). ValueError naming ``what`` and the path
    if it is missing, not UTF-8, not valid YAML, repeats a key in a mapping, or expands beyond
    ``MAX_VALUES`` values."""
    path = Path(path)
    where = f"{what} {str(path)!r}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{where} is a directory, not a file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{where} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as "
                         f"UTF-8") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"malformed {where} (not valid YAML): {exc}") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply") from None
    try:
        _count_values(data, where)
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply") from None
    return data
