"""Packaging: the version, the type marker and the help that needs no heavy import."""

from importlib import metadata
from pathlib import Path

import headcoop


def test_the_version_is_the_installed_distributions():
    assert headcoop.__version__ == metadata.version("headcoop") != "0+unknown"


def test_the_package_is_marked_typed_and_licensed():
    root = Path(headcoop.__file__).parent
    assert (root / "py.typed").exists()
    assert "MIT License" in (root.parents[1] / "LICENSE").read_text()
