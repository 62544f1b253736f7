"""The raw-Vulkan baseline of the benchmarks (benchmarks/raw_vulkan.py) runs the engine's own shaders
through its own bindings: when a shader's interface changes, the baseline must follow, or every ratio
against it is measured on garbage. Checked here, not only when someone runs the benchmarks."""
import numpy as np

from benchmarks.raw_vulkan import Raw, RawHeat
from vkbands import Simulation


def test_raw_heat_equals_vkbands_heat_bit_for_bit(ctx):
    u = np.random.default_rng(1).standard_normal((32, 48)).astype(np.float32)
    raw = Raw(ctx)
    try:
        heat = RawHeat(raw, 32, 48, 0.2)
        heat.set(u)
        heat.program(4).submit()
        got = heat.get()
    finally:
        raw.close()
    with Simulation(ctx, "heat", u, alpha=0.2) as sim:
        sim.advance(4)
        assert np.array_equal(sim.read(), got)
    # and the maths: SPEC 3.3's step in float64, four times
    ref = u.astype(np.float64)
    for _ in range(4):
        ref = ref + 0.2 * (np.roll(ref, 1, 0) + np.roll(ref, -1, 0) + np.roll(ref, 1, 1) + np.roll(ref, -1, 1) - 4 * ref)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
