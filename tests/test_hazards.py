"""The hazard model (engine/hazards.py) on its own, no driver: command sequences -> expected barriers.

Each case is a list of commands ``(stage, reads, writes)`` and the barrier expected before each one
(None, or (src stages, dst stage, src access) — the dst access is always every access of the dst
stage). The cases are the ones 0.1.0 got wrong (a copy after a dispatch, a dispatch after a copy,
a hazard forgotten after an unrelated barrier) and the ones where no barrier is the right answer.
"""
import pytest
import vulkan as vk

from vkbands.engine import hazards as H

C, T, G, A, HOST = H.COMPUTE, H.TRANSFER, H.GRAPHICS, H.ATTACHMENT, H.HOST
SW, TW = vk.VK_ACCESS_SHADER_WRITE_BIT, vk.VK_ACCESS_TRANSFER_WRITE_BIT
CAW = vk.VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT

CASES = {
    # name: [(stage, reads, writes, expected barrier before it)]
    "read after write, same stage": [
        (C, "a", "b", None),
        (C, "b", "c", (C, C, SW)),
    ],
    "independent dispatches need nothing": [
        (C, "a", "b", None),
        (C, "a", "c", None),
        (C, "b c", "", (C, C, SW)),
    ],
    "read after read needs nothing": [
        (C, "a", "", None),
        (T, "a", "", None),
        (C, "a", "", None),
    ],
    "copy after dispatch (snapshot)": [
        (C, "x", "y", None),
        (T, "y", "snap", (C, T, SW)),
    ],
    "dispatch after copy (upload, then kernel)": [
        (T, "stage", "x", None),
        (C, "x", "y", (T, C, TW)),
    ],
    "write after read: a copy overwrites what a dispatch read": [
        (C, "x", "y", None),
        (T, "z", "x", (C, T, 0)),
    ],
    "write after write across stages": [
        (C, "", "x", None),
        (T, "", "x", (C, T, SW)),
    ],
    "a barrier for one stage does not cover another (0.1.0 forgot this)": [
        (C, "a", "x", None),
        (C, "x", "y", (C, C, SW)),      # x made visible to compute only
        (T, "x", "snap", (C, T, SW)),   # ... so the copy of x still needs its own barrier
    ],
    "an unrelated barrier does not make an earlier write visible elsewhere": [
        (C, "", "x", None),
        (T, "", "u", None),
        (T, "u", "v", (T, T, TW)),      # transfer -> transfer: x's compute write not covered
        (T, "x", "w", (C, T, SW)),
    ],
    "one barrier covers every conflicting earlier access": [
        (C, "a", "x", None),
        (T, "b", "y", None),
        (C, "x y", "z", (C | T, C, SW | TW)),
    ],
    "global barrier covers other resources: no second barrier": [
        (C, "a", "x", None),
        (C, "a", "y", None),
        (C, "x", "p", (C, C, SW)),      # makes y visible to compute too
        (C, "y", "q", None),
    ],
    "chained visibility: write seen by compute, then ordered to transfer": [
        (C, "", "x", None),
        (C, "x", "y", (C, C, SW)),
        (T, "y", "z", (C, T, SW)),      # y needs it; x's visibility to transfer rides along
        (T, "x", "w", None),
    ],
    "ping-pong: one barrier per step, RAW and WAR together": [
        (C, "x", "y", None),
        (C, "y", "x", (C, C, SW)),
        (C, "x", "y", (C, C, SW)),
    ],
    "graphics reads what compute wrote (sheet picture -> preview quad)": [
        (C, "panels", "img", None),
        (G, "img", "", (C, G, SW)),
        (A, "", "swap", None),
        (T, "swap", "shot", (A, T, CAW)),
    ],
    "compute rewrites what graphics sampled (next frame)": [
        (G, "img", "", None),
        (C, "panels", "img", (G, C, 0)),
    ],
    "host reads after a copy": [
        (T, "x", "staging", None),
        (HOST, "staging", "", (T, HOST, TW)),
    ],
}


def _run(case):
    tr = H.HazardTracker()
    got = []
    for stage, reads, writes, _ in case:
        b = tr.access(stage, reads.split(), writes.split())
        got.append(None if b is None else (b.src_stages, b.dst_stages, b.src_access))
        if b is not None:
            assert b.dst_access == H.access_of(stage), "dst access must cover every access of the dst stage"
    return got


@pytest.mark.parametrize("name", list(CASES))
def test_hazard_table(name):
    case = CASES[name]
    assert _run(case) == [c[3] for c in case]


def test_barrier_count_and_summary():
    tr = H.HazardTracker()
    for i in range(100):
        tr.access(C, ["x" if i % 2 == 0 else "y"], ["y" if i % 2 == 0 else "x"])
    assert tr.barriers == 99
    assert tr.stages_used == C and tr.write_access == SW


def test_reset_forgets_a_resource():
    tr = H.HazardTracker()
    tr.access(C, [], ["img"])
    tr.reset("img")                          # e.g. a layout transition from ALL_COMMANDS was recorded
    assert tr.access(T, ["img"], ["buf"]) is None


def test_explicit_full_barrier_is_applied():
    tr = H.HazardTracker()
    tr.access(C, [], ["x"])
    tr.access(T, [], ["y"])
    both = C | T
    tr.apply(H.Barrier(both, both, H.access_of(both), H.access_of(both)))
    assert tr.access(C, ["x", "y"], ["z"]) is None
    assert tr.access(T, ["x"], ["w"]) is None
