"""Markers shared by the Python test suites.

`make test` runs the stories (tests/e2e and tests/twin) side by side with pytest-xdist
(`tests/harness/stories.sh`): each twin takes its own slot (tests/twin/twin.py, `Slot`), so
twins never share a name, an address or a Docker daemon. Two markers say what cannot share:

- `xdist_group(name)` (pytest-xdist's own): the stories of one group run one after another on
  one worker, because they share fixed names on this machine (the e2e stories' player netns,
  veth and game container).
- `alone(reason)`: the story runs after the parallel ones, with nothing beside it; the reason
  says why (for example a bound that holds only on an idle machine).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers its own marker only when it is loaded (not in a serial run).
    config.addinivalue_line("markers", "xdist_group(name): the stories of one group run on one worker")
    config.addinivalue_line(
        "markers",
        "alone(reason): runs after the parallel stories, with nothing beside it; the reason says why",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = item.get_closest_marker("alone")
        if mark is not None and not (mark.args and isinstance(mark.args[0], str) and mark.args[0].strip()):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.alone needs a reason (why it cannot share the machine)")
