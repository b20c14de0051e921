"""The public API is small and typed; that `import edgeopt` stays light is checked in test_layers.py."""

from __future__ import annotations

import edgeopt


def test_every_public_name_resolves() -> None:
    for name in edgeopt.__all__:
        assert getattr(edgeopt, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        edgeopt.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_backend_availability_names_the_extra() -> None:
    from edgeopt.backends import availability

    status = availability()
    assert status["onnxruntime"] == "available"
    assert status["tensorrt"].startswith("unavailable:")
    assert "pip install" in status["tensorrt"]
