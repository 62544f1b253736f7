"""A new system added in ONE file (issue 9): an Allen-Cahn step, its GLSL kernel, its stepping class and
its spec are all defined here and registered with ``vkbands.systems.register``; nothing else in the
package changes. It then runs through ``rollout()`` (against a NumPy reference of the same step), the
command line (``--system toy`` with its generated ``--D`` / ``--dt`` options, listed in ``--help``) and
the viewer panel's widget generation (one slider per live parameter).

Allen-Cahn (periodic 2-D grid, explicit Euler): ``u += dt * (D lap(u) + u - u**3)``.
"""
import json
import shutil

import numpy as np
import pytest

from vkbands import reference as R
from vkbands import systems
from vkbands.rollout import Simulation, rollout
from vkbands.rollout_cli import build_parser
from vkbands.rollout_cli import main as rollout_main
from vkbands.setup import Setup
from vkbands.systems import GridSystem, ParamSpec, PictureSpec, SystemSpec
from vkbands.viewer import panel

# The kernel: the launch shape of vkbands' grid systems (GridSystem: spec constants LOCAL_X, RY; one
# invocation = 4 cells x RY rows), rows loaded by grid_common.glsl (found next to vkbands' shaders).
SHADER = r"""#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint LOCAL_X = 64;
layout(constant_id = 1) const uint RY = 8;
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 0) readonly buffer Src4 { vec4 src4[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) writeonly buffer Dst4 { vec4 dst4[]; };
layout(push_constant) uniform Push { uint H; uint W; uint batch; float D; float dt; } pc;
#include "grid_common.glsl"

void main() {
    uint segx = (pc.W + 3u) / 4u, segy = (pc.H + RY - 1u) / RY;
    uint id = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (id >= segx * segy * pc.batch) return;
    uint sx = id % segx, rest = id / segx;
    uint sy = rest % segy, b = rest / segy;
    uint base = b * pc.H * pc.W, c0 = sx * 4u, r0 = sy * RY;
    uint H = pc.H, W = pc.W;
    vec4 up = load_mid(base + (r0 == 0u ? H - 1u : r0 - 1u) * W, c0);
    vec4 cur = load_mid(base + r0 * W, c0);
    for (uint r = r0; r < min(r0 + RY, H); ++r) {
        uint row = base + r * W;
        vec4 down = load_mid(base + ((r + 1u == H) ? 0u : row - base + W), c0);
        vec4 l4 = lap4(up, cur, down, load_left(row, c0), load_right(row, c0));
        store_seg(row, c0, cur + pc.dt * (pc.D * l4 + cur - cur * cur * cur));
        up = cur; cur = down;
    }
}
"""


class AllenCahnSystem(GridSystem):
    """The stepping class: the grid base does the ping-pong, observables and snapshots."""
    shader = None          # the path the fixture writes SHADER to

    def _push(self):
        H, W = self.spatial
        return dict(H=H, W=W, batch=self.batch, D=self.params["D"], dt=self.params["dt"])


TOY = SystemSpec(
    name="toy", title="Allen-Cahn: u += dt (D lap(u) + u - u^3), periodic", cls=AllenCahnSystem,
    params=(ParamSpec("D", 0.1, "float", lo=0.0, hi=0.25, live=True, help="diffusion coefficient"),
            ParamSpec("dt", 0.2, "float", lo=0.0, lo_open=True, hi=1.0, live=True, help="time step")),
    dims=(2,), square=False, default_depth={2: 3}, inits=("random", "smooth"), picture=PictureSpec(cmap="diverging"))


def allen_cahn_step(u, D, dt):
    u = np.asarray(u, np.float64)
    return u + dt * (D * R.laplacian(u) + u - u ** 3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "step_allen_cahn.comp"
    path.write_text(SHADER)
    AllenCahnSystem.shader = str(path)
    spec = systems.register(TOY)
    yield spec
    systems.unregister(spec.name)


needs_glslc = pytest.mark.skipif(shutil.which("glslc") is None, reason="the toy system's own GLSL needs glslc")


@needs_glslc
def test_toy_rollout_matches_numpy(ctx, toy):
    x0 = 0.5 * np.random.default_rng(1).standard_normal((3, 27, 27)).astype(np.float32)
    r = rollout("toy", x0, 12, every=4, snapshot_every=6, D=0.15, dt=0.1, ctx=ctx, progress=False)
    x, snaps = x0.astype(np.float64), [x0.astype(np.float64)]
    for t in range(1, 13):
        x = allen_cahn_step(x, 0.15, 0.1)
        if t % 6 == 0:
            snaps.append(x)
    np.testing.assert_allclose(r.final, x, atol=1e-5)
    np.testing.assert_allclose(r.snapshots, np.stack(snaps), atol=1e-5)
    assert r.params == dict(arity=3, D=0.15, dt=0.1) and r.energies.shape == (4, 3, 4)
    np.testing.assert_allclose(r.energies[-1], R.energies(x, 3), rtol=1e-3, atol=1e-6)
    # the same through a Setup (its options come from the toy's spec) and live parameter changes
    s = Setup("toy", batch=2, seed=4, init="smooth", D=0.05)
    r2 = rollout(s, steps=5, ctx=ctx, progress=False)
    x = s.x0().astype(np.float64)
    for _ in range(5):
        x = allen_cahn_step(x, 0.05, 0.2)
    np.testing.assert_allclose(r2.final, x, atol=1e-5)
    with Simulation(ctx, s) as sim:
        sim.set_params(dt=0.3)
        sim.advance(2)
        np.testing.assert_allclose(sim.read(), allen_cahn_step(allen_cahn_step(s.x0(), 0.05, 0.3), 0.05, 0.3),
                                   atol=1e-5)
        with pytest.raises(ValueError, match=r"dt=0\.0: out of range; allowed: a number in \(0, 1\]"):
            sim.set_params(dt=0.0)


def test_toy_spec_checks(toy):
    with pytest.raises(ValueError, match=r"D=0\.5: out of range; allowed: a number in \[0, 0\.25\]"):
        Setup("toy", D=0.5)
    with pytest.raises(ValueError, match="init='impulse': does not apply"):
        Setup("toy", init="impulse")
    with pytest.raises(ValueError, match="tau=1: does not apply to system='toy'"):
        Setup("toy", tau=1)
    assert Setup("toy").shape == (1, 27, 27) and Setup("toy").params == dict(arity=3)


@needs_glslc
def test_toy_cli(tmp_path, capsys, ctx, toy):
    out = tmp_path / "toy"
    rc = rollout_main(["--system", "toy", "--depth", "2", "--batch", "2", "--D", "0.2", "--dt", "0.25",
                       "--steps", "6", "--every", "3", "--snapshot-every", "3", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    npz = np.load(out / "snapshots.npz")
    x = npz["x0"].astype(np.float64)
    for _ in range(6):
        x = allen_cahn_step(x, 0.2, 0.25)
    np.testing.assert_allclose(npz["final"], x, atol=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["system"] == "toy" and summary["params"] == dict(arity=3, D=0.2, dt=0.25)
    assert (out / "rollout.gif").is_file()
    assert rollout_main(["--system", "toy", "--D", "1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vkbands rollout: error: --D 1: out of range; allowed: a number in [0, 0.25]"]


def test_toy_help_and_panel(toy):
    text = build_parser().format_help()
    assert "toy        D, dt" in text                    # the epilog: parameters by system
    text = " ".join(text.split())
    assert "--D X" in text and "--dt X" in text and "toy: Allen-Cahn" in text
    widgets = panel.live_widgets(toy, dict(arity=3, D=0.1, dt=0.2))
    assert [(w.kind, w.key, w.lo, w.hi) for w in widgets] == [("slider", "D", 0.0, 0.25), ("slider", "dt", 0.0, 1.0)]
    restart = panel.restart_widgets(dict(system="toy"), dict(depth=3))
    assert [w.key for w in restart] == ["system", "arity", "depth", "batch", "seed", "init"]
    assert restart[0].choices[-1] == "toy" and restart[-1].choices == ("random", "smooth")
    # switching the edited set-up to the toy keeps what applies to it
    ed = panel.apply(dict(system="heat", alpha=0.1, depth=3, init="smooth"), restart[0], "toy")
    assert ed == dict(system="toy", depth=3, init="smooth")
