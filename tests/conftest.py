"""Shared fixtures: one validated Context for the suite, and a guard that fails any test during
which the Khronos validation layer reported an error."""
import os

import pytest

from vkbands.engine import Context, default_context, validation_error_count, validation_warning_count


def pytest_report_header(config):
    ctx = default_context()
    return (f"vkbands device: {ctx.info['name']} ({ctx.info['type']}, Vulkan {ctx.info['api']}, "
            f"unified memory={ctx.unified_memory}); validation={'on' if ctx.validation else 'OFF'}")


@pytest.fixture(scope="session")
def ctx():
    """The process-wide default context (validation follows VKBANDS_VALIDATION; `make test` sets it)."""
    return default_context()


@pytest.fixture(autouse=True)
def no_validation_errors(request):
    """Any validation message (error, or warning of the validation type) fails the test that caused it."""
    before = validation_error_count(), validation_warning_count()
    yield
    errors, warnings = validation_error_count() - before[0], validation_warning_count() - before[1]
    if request.node.get_closest_marker("allow_validation_errors") is None:
        assert errors == 0 and warnings == 0, \
            f"{errors} Vulkan validation error(s) and {warnings} warning(s) during this test (see log)"


@pytest.fixture
def fresh_ctx():
    """A private context, closed after the test (for lifetime tests)."""
    c = Context()
    yield c
    c.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_validation_errors: the test provokes validation errors on purpose")
    if os.environ.get("CI") and (os.environ.get("VKBANDS_VALIDATION") != "1"
                                 or "SYNCHRONIZATION_VALIDATION" not in os.environ.get("VK_LAYER_ENABLES", "")):
        raise pytest.UsageError("CI must run the suite with VKBANDS_VALIDATION=1 and synchronization validation "
                                "(VK_LAYER_ENABLES=VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT); "
                                "use `make test`")
