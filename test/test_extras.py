"""``ltc_controller.extras``: the message names the missing extras and only those."""

from __future__ import annotations

import pytest

from ltc_controller import extras
from ltc_controller.extras import MissingExtra, needs_extra, require


@pytest.fixture
def fake_extras(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "there", ("json",))
    monkeypatch.setitem(extras.EXTRAS, "gone", ("ltc_no_such_module_a", "json"))
    monkeypatch.setitem(extras.EXTRAS, "gone2", ("ltc_no_such_module_b",))


def test_require_names_the_missing_extras_only(fake_extras):
    require("thing", "there")
    assert extras.installed("there") and not extras.installed("gone")
    with pytest.raises(MissingExtra) as e:
        require("ltc-controller thing", "gone", "there", "gone2")
    assert str(e.value) == (
        "ltc-controller thing needs the [gone] and [gone2] extras: "
        "pip install 'ltc_controller[gone,gone2]'"
    )
    assert isinstance(e.value, ImportError)


def test_needs_extra_turns_a_missing_module_of_the_extra_into_the_message(fake_extras):
    with pytest.raises(MissingExtra, match=r"^the widget needs the \[gone\] extra: pip install"):
        with needs_extra("gone", "the widget"):
            import ltc_no_such_module_a  # noqa: F401
    with pytest.raises(ModuleNotFoundError) as e:  # not one of the extra's: unchanged
        with needs_extra("gone", "the widget"):
            import ltc_no_such_module_b  # noqa: F401
    assert not isinstance(e.value, MissingExtra)
    with needs_extra("there", "json"):
        import json  # noqa: F401


def test_every_extra_is_installed_here():
    """The test environment is tools/setup.sh's ``.[all,test]``."""
    assert [x for x in extras.EXTRAS if not extras.installed(x)] == []
