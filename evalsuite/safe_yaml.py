"""The one YAML reader for everything a user hands evalsuite (policies, run configs, suite files,
device profiles, training recipes).

``yaml.safe_load`` builds no Python objects, but it is still open to three denial-of-service
shapes and one silent ambiguity, all refused here before any value is constructed:

- **alias bombs** ("billion laughs"): a few kilobytes of nested anchors expand into billions of
  nodes. Aliases beyond :data:`MAX_ALIASES`, or a document whose node count after expanding every
  alias exceeds :data:`MAX_NODES`, are refused (counted on the composed node graph, where an
  alias is a shared node, so the check itself costs one pass over distinct nodes);
- **deep nesting** (``[[[[...]]]]``): the composer recurses once per level and would end in a
  ``RecursionError``; more than :data:`MAX_DEPTH` levels are refused;
- **huge files**: more than :data:`MAX_BYTES` are refused before parsing;
- **duplicate keys**: PyYAML keeps the last silently, so a policy listing ``min:`` twice means
  whichever came last. A repeated key is refused, naming the key and both lines.

Every refusal is a :class:`YamlError` (a ``ValueError``) with a one-line message; callers turn
it into their own :class:`~evalsuite.errors.EvalsuiteError` naming the file.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 8 * 1024 * 1024
MAX_ALIASES = 256
MAX_NODES = 200_000
MAX_DEPTH = 64


class YamlError(ValueError):
    """The text is not YAML evalsuite accepts (syntax, limits, duplicate keys); one line."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and depth while composing and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D401 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlError(f"more than {MAX_ALIASES} aliases (line {mark.line + 1}); refused as a possible alias bomb")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlError(f"nesting deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # SafeConstructor reports unhashable keys itself
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise YamlError(f"duplicate key {key!r} (lines {seen[key]} and {line})")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Any) -> int:
    """Node count of the document with every alias expanded (memoised per distinct node)."""
    sizes: dict[int, int] = {}
    # Iterative post-order over the DAG: aliases are the same node object reached twice.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        sizes[key] = min(total, MAX_NODES + 1)
    return sizes.get(id(root), 0)


def safe_load(text: str) -> Any:
    """Parse one YAML document within the limits above; raise :class:`YamlError` otherwise."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise YamlError(f"invalid YAML{at}: {problem}") from None
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise YamlError(f"expands to more than {MAX_NODES:,} nodes through aliases; refused as a possible alias bomb")
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise YamlError(f"invalid YAML{at}: {problem}") from None
        except RecursionError:
            raise YamlError("nested too deeply") from None
    finally:
        loader.dispose()
