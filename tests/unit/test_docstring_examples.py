"""Every example in a docstring of the package runs and prints what it says."""

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ("allocflow.models", "allocflow.connectors", "allocflow.flows")


def _modules() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [
            info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}.")
        ]
    return sorted(names)


@pytest.mark.unit
@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module: ModuleType = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


@pytest.mark.unit
def test_examples_exist() -> None:
    finder = doctest.DocTestFinder()
    examples = sum(
        len(test.examples)
        for name in _modules()
        for test in finder.find(importlib.import_module(name))
    )
    assert examples >= 5
