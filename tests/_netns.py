"""Ray runs in the test suite only inside a network namespace of its own (SECURITY.md, "Clusters"):
``unshare -n sh -c 'ip link set lo up && exec python ...'`` leaves it loopback and nothing else.

:func:`ray_in_namespace` is the one check the Ray tests make first: Ray importable (tests/_deps.py)
and such a namespace possible here; otherwise the test skips, naming why -- except in CI (``CI`` set),
where the Ray tests must run, so a missing namespace fails instead."""
import os
import subprocess

import pytest

from tests._deps import need

UNSHARE = ["unshare", "-n", "sh", "-c"]       # + "ip link set lo up && exec ..."


def namespace_problem():
    """None when ``unshare -n`` with loopback up works here, else why not (one line)."""
    try:
        r = subprocess.run(UNSHARE + ["ip link set lo up"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr.strip() or f"exit status {r.returncode}")


def ray_in_namespace():
    """Skip (fail in CI) unless Ray is installed and a private network namespace can be made."""
    need("ray")
    problem = namespace_problem()
    if problem:
        message = (f"no private network namespace (`unshare -n` + `ip link set lo up`: {problem}); Ray starts "
                   "only inside one (SECURITY.md)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
