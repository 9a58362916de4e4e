"""Read one spec file into PyYAML nodes that remember where they were written.

We never let PyYAML construct Python objects: ``yaml.compose`` gives nodes with a
``start_mark``, and the loader builds values from those so every error can say
``FILE:LINE:COL``. This module also refuses what a spec never needs and what makes YAML
dangerous or ambiguous:

- **aliases** (``*name``) are refused outright, at the first one, so a "billion laughs" file
  costs nothing; anchors without aliases are harmless and allowed;
- merge keys (``<<``), tags outside the YAML core set (``!!python/...``, ``!foo``, ``!!set``),
  non-string mapping keys and duplicate keys are errors;
- files that are not UTF-8 text (binary junk), larger than :data:`MAX_BYTES`, nested deeper
  than :data:`MAX_DEPTH`, empty, or whose top level is not a mapping.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from composer.errors import Position

Problem = tuple[Position | None, str]

MAX_BYTES = 4 << 20  # a spec is a few KiB; this stops an image tarball given by mistake early
MAX_DEPTH = 64  # linuxkit's schema nests 6 deep; this keeps every recursive walk far from
# Python's recursion limit (PyYAML's composer and our converters recurse once per level)

_T = "tag:yaml.org,2002:"
STR, INT, BOOL, NULL, FLOAT, TIMESTAMP = (_T + t for t in
                                          ("str", "int", "bool", "null", "float", "timestamp"))
MAP, SEQ, MERGE, VALUE = _T + "map", _T + "seq", _T + "merge", _T + "value"
_SCALAR_TAGS = {STR, INT, BOOL, NULL, FLOAT, TIMESTAMP, VALUE}


def position(file: str, node: Node) -> Position:
    """The 1-based position of a node (PyYAML marks are 0-based)."""
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


def kind(node: Node) -> str:
    """How to name a node's type in a message: "a list", "a string", "null"..."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return {STR: "a string", VALUE: "a string", INT: "an integer", BOOL: "a boolean",
            NULL: "null", FLOAT: "a number", TIMESTAMP: "a date"}.get(node.tag, node.tag)


class _Refused(Exception):
    def __init__(self, mark: yaml.Mark, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer, stopped at the first alias (before it is resolved) and at
    :data:`MAX_DEPTH` (PyYAML's composer recurses; its scanner and parser do not)."""

    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"YAML aliases are not supported (*{event.anchor}):"
                           " write the value out")
        if self._depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _at(file: str, line0: int, col0: int) -> Position:
    return Position(file, line0 + 1, col0 + 1)


def _line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    nl = "\n" if isinstance(text, str) else b"\n"
    line = text.count(nl, 0, offset)  # type: ignore[arg-type]
    return line, offset - (text.rfind(nl, 0, offset) + 1)  # type: ignore[arg-type]


def read_root(path: Path, file: str) -> tuple[MappingNode | None, list[Problem]]:
    """Read and compose ``path``; return its top-level mapping node, or None and the problems.

    ``file`` is the name used in positions (the path as the user gave it).
    """
    start = Position(file, 1, 1)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except IsADirectoryError:
        return None, [(start, "is a directory, not a spec file")]
    except OSError as e:
        return None, [(start, f"cannot read spec file: {e.strerror or e}")]
    if len(data) > MAX_BYTES:
        return None, [(start, f"too large for a spec file (over {MAX_BYTES} bytes)")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(data, e.start)
        return None, [(_at(file, line, col),
                       f"not a UTF-8 text file (byte 0x{data[e.start]:02x}); is this a spec?")]
    root, problems = compose(text, file)
    if root is None:
        return None, problems or [(start, "empty spec file")]
    if not isinstance(root, MappingNode):
        return None, [(position(file, root),
                       f"the top level must be a mapping (kernel:, init:, ...), not {kind(root)}")]
    return root, problems


def compose(text: str, file: str) -> tuple[Node | None, list[Problem]]:
    """Compose YAML text into a node tree, refusing aliases, deep nesting and foreign tags.

    Returns ``(None, problems)`` when the text cannot be used at all, ``(None, [])`` when it
    holds nothing, else the root node and any problems :func:`lint` found in it.
    """
    start = Position(file, 1, 1)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except _Refused as e:
        return None, [(_at(file, e.mark.line, e.mark.column), e.message)]
    except yaml.reader.ReaderError as e:
        line, col = _line_col(text, e.position)
        return None, [(_at(file, line, col), f"not a text file: character U+{e.character:04X} "
                                             "is not allowed in YAML; is this a spec?")]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = ", ".join(filter(None, (e.context, e.problem))) or "invalid YAML"
        where = _at(file, mark.line, mark.column) if mark else start
        return None, [(where, f"YAML syntax error: {msg}")]
    except yaml.YAMLError as e:  # pragma: no cover - every PyYAML error above is marked
        return None, [(start, f"YAML error: {e}")]
    if root is None or (root.tag == NULL and root.value == ""):  # nothing, or a bare "---"
        return None, []
    problems, fatal = lint(root, file)
    return (None if fatal else root), problems


def lint(root: Node, file: str) -> tuple[list[Problem], bool]:
    """Problems anywhere in the tree, whatever the schema says: tags, keys, duplicates.

    Done as one iterative pass over every node, so a duplicate key is reported even under a
    key the schema rejects. Returns the problems and whether they are *fatal*: a file with
    foreign tags is not checked further; duplicate, merge and non-string keys are skipped by
    :func:`pairs`, so the schema checks still run.
    """
    problems: list[Problem] = []
    fatal = False
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if node.tag not in (_SCALAR_TAGS if isinstance(node, ScalarNode) else (MAP, SEQ)):
            tag = node.tag.replace(_T, "!!", 1) if node.tag.startswith(_T) else node.tag
            problems.append((position(file, node), f"unsupported YAML tag {tag}"))
            fatal = True
            continue
        if isinstance(node, ScalarNode):
            continue
        if isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
            continue
        seen: dict[str, Node] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode):
                problems.append((position(file, key), "mapping keys must be strings"))
            elif key.tag == MERGE:
                problems.append((position(file, key), "YAML merge keys (<<) are not supported"))
            elif key.value in seen:
                first = position(file, seen[key.value])
                problems.append((position(file, key), f"duplicate key {key.value!r} "
                                 f"(first at line {first.line} col {first.col})"))
            else:
                seen[key.value] = key
        stack.extend(value for _, value in reversed(node.value))
    return problems, fatal


def pairs(node: MappingNode) -> list[tuple[ScalarNode, Node]]:
    """A mapping's (key, value) pairs in YAML order, first occurrence only.

    :func:`lint` has already reported duplicates and non-scalar keys; skipping them here keeps
    one mistake from causing a cascade of follow-on errors.
    """
    out: list[tuple[ScalarNode, Node]] = []
    seen: set[str] = set()
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.tag != MERGE and key.value not in seen:
            seen.add(key.value)
            out.append((key, value))
    return out


def keys(node: Node) -> set[str]:
    """The keys written in a mapping, whether or not their values were valid."""
    return {k.value for k, _ in pairs(node)} if isinstance(node, MappingNode) else set()
