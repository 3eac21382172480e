"""Typed reading of a composed YAML tree that knows, for every value, its file, line and field.

PyYAML's ordinary loader forgets where values came from; a network file is long and hand-edited,
so every complaint must say which line to fix. Reading the node tree directly (``yaml.compose``)
keeps the marks, catches repeated keys (which the plain loader silently overwrites) and lets
each check be one call that raises `FieldError` in the contract's format.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import TypeVar

import yaml

from computility.domain.errors import BadInput, FieldError

T = TypeVar("T")
_CONSTRUCTOR = yaml.SafeLoader(io.StringIO(""))


def compose(text: str, source: str) -> Node:
    """The root of `text` as a `Node`, or `BadInput` naming the line of a YAML syntax error."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BadInput(f"{source}{at}: not valid YAML: {problem}") from None
    if root is None:
        raise FieldError(source, 1, "network", "network", "a mapping of network fields", "")
    return Node(root, source, "", "network", is_root=True)


class Node:
    """One YAML value with the path (``sites[2].pools[0]``) and key (``device``) that hold it."""

    __slots__ = ("is_root", "key", "node", "source", "where")

    def __init__(
        self, node: yaml.Node, source: str, where: str, key: str, is_root: bool = False
    ) -> None:
        self.node = node
        self.source = source
        self.where = where
        self.key = key
        self.is_root = is_root

    @property
    def line(self) -> int:
        """1-based line where the value starts."""
        return int(self.node.start_mark.line) + 1

    @property
    def path(self) -> str:
        """Where this value is, as a parent path for its own fields."""
        if self.is_root:
            return ""
        return f"{self.where}.{self.key}" if self.where else self.key

    @property
    def label(self) -> str:
        """The ``field N`` part of a message: the parent path, ``network`` at the top level."""
        return self.where or "network"

    def fail(self, expected: str) -> FieldError:
        """The error to raise for this value: its line, field and what was expected."""
        return FieldError(self.source, self.line, self.label, self.key, expected, self.shown())

    def shown(self) -> str:
        """The value as the user typed it (scalars) or a word for its shape."""
        if isinstance(self.node, yaml.ScalarNode):
            return str(self.node.value)
        return "a list" if isinstance(self.node, yaml.SequenceNode) else "a mapping"

    def fields(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Fields:
        """This mapping's fields, refusing unknown, repeated and missing ones."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail(f"a mapping with fields {', '.join(required)}")
        found: dict[str, Node] = {}
        for key_node, value_node in self.node.value:
            key = str(key_node.value)
            child = Node(value_node, self.source, self.path, key)
            if key in found:
                raise FieldError(
                    self.source, key_node.start_mark.line + 1, self.path or "network", key,
                    f"each field once (first given on line {found[key].line})", key,
                )  # fmt: skip
            if key not in required and key not in optional:
                known = ", ".join((*required, *optional))
                raise FieldError(
                    self.source, key_node.start_mark.line + 1, self.path or "network", key,
                    f"one of the fields {known}", key,
                )  # fmt: skip
            found[key] = child
        for key in required:
            if key not in found:
                raise FieldError(
                    self.source,
                    self.line,
                    self.path or "network",
                    key,
                    "this field (it is missing)",
                    "",
                )
        return Fields(found, self)

    def items(self) -> list[Node]:
        """This list's entries, named ``path[i]``."""
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail("a list")
        return [
            Node(item, self.source, self.where, f"{self.key}[{i}]")
            for i, item in enumerate(self.node.value)
        ]

    def entries(self) -> list[tuple[str, Node]]:
        """This mapping's (key, value) pairs in file order, for free-form keys (region ids)."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail("a mapping")
        pairs = [(str(k.value), v) for k, v in self.node.value]
        return [(key, Node(v, self.source, self.path, key)) for key, v in pairs]

    def value(self) -> object:
        """The Python value of a scalar (None, bool, int, float or str)."""
        if not isinstance(self.node, yaml.ScalarNode):
            return self.shown()
        try:
            return _CONSTRUCTOR.construct_object(self.node)
        except yaml.YAMLError:  # an unknown tag such as `!foo 3`
            raise self.fail("a plain value (no YAML tag)") from None

    def text(self) -> str:
        value = self.value() if isinstance(self.node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            raise self.fail("a non-empty string")
        return value.strip()

    def number(self, minimum: float | None = None, what: str = "a number") -> float:
        """A finite number (not a bool: ``pue: yes`` is a typo, not 1), at least `minimum`."""
        value = self.value()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or (minimum is not None and value < minimum)
        ):
            raise self.fail(what)
        return float(value)

    def integer(self, minimum: int, what: str) -> int:
        value = self.value()
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(what)
        return value

    def parsed(self, parse: Callable[[object], T]) -> T:
        """`parse` applied to the value; its ValueError text is what was expected."""
        try:
            return parse(self.value())
        except ValueError as error:
            raise self.fail(str(error)) from None


class Fields:
    """The checked fields of one mapping, with access that keeps their positions."""

    __slots__ = ("_found", "owner")

    def __init__(self, found: dict[str, Node], owner: Node) -> None:
        self._found = found
        self.owner = owner

    def __getitem__(self, key: str) -> Node:
        return self._found[key]

    def get(self, key: str) -> Node | None:
        return self._found.get(key)
