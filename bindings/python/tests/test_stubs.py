"""The type stubs shipped with the module describe what it has."""

import ast
import inspect
from pathlib import Path

import shmlane

STUB = Path(__file__).resolve().parent.parent / "shmlane.pyi"
# Special methods the stubs spell out although the classes have them only through slots.
SLOTS = {"__init__", "__buffer__", "__enter__", "__exit__", "__len__", "__array__"}


def stubbed():
    """Top-level names of the stubs; for classes, the methods and properties they declare."""
    names = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = set()
    return names


def test_the_stubs_declare_exactly_the_module_s_classes_functions_and_methods():
    stubs = stubbed()
    public = {
        name for name in dir(shmlane)
        if not name.startswith("_") and not inspect.ismodule(getattr(shmlane, name))
    }
    assert public <= set(stubs), f"missing from shmlane.pyi: {sorted(public - set(stubs))}"
    for name in sorted(public):
        value = getattr(shmlane, name)
        if not inspect.isclass(value) or issubclass(value, BaseException):
            continue
        members = {m for m in vars(value) if not m.startswith("_")}
        declared = stubs[name] - SLOTS
        assert members == declared, f"{name}: module {sorted(members)}, stub {sorted(declared)}"
