"""The hazard model: which pipeline barrier a command needs, from the accesses recorded before it.

Pure bookkeeping, no Vulkan calls (so it is unit-tested without a driver, from tables of command
sequences and expected barriers). The Recorder feeds it every command's reads and writes; the
viewer feeds it its graphics work. For each resource it remembers

- the last write: its stages and access mask, and the stages it has been made *visible* to by the
  barriers since (directly, or through a chain of barriers);
- the reads since that write, and the stages they have been *ordered before* since.

A command at stage S that reads a resource whose last write is not yet visible to S (read after
write), or writes one whose last write is not visible to S (write after write) or whose reads are not
ordered before S (write after read), gets ONE global memory barrier whose source stages and access
mask are the union of every conflicting earlier access, and whose destination is S with every access
S performs. A barrier then updates the state of every resource it covers (a global barrier orders
everything in its source scope, not only the resource that triggered it), so nothing earlier is
forgotten and nothing is ordered twice. Commands with no hazard get no barrier.

Every recording starts from a full barrier against all earlier queue work (so a resource first seen
in a recording is "clean"), and ends with one that makes its writes visible to the host and to
later command buffers (``Recorder.finish``).
"""
from __future__ import annotations

from typing import NamedTuple

import vulkan as vk

# Stages (pipeline-stage masks) the engine records at.
COMPUTE = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
TRANSFER = vk.VK_PIPELINE_STAGE_TRANSFER_BIT
HOST = vk.VK_PIPELINE_STAGE_HOST_BIT
GRAPHICS = (vk.VK_PIPELINE_STAGE_VERTEX_INPUT_BIT | vk.VK_PIPELINE_STAGE_VERTEX_SHADER_BIT
            | vk.VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT)
ATTACHMENT = vk.VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT

# The access masks of a read / a write at each stage.
READ = {
    COMPUTE: vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_UNIFORM_READ_BIT,
    TRANSFER: vk.VK_ACCESS_TRANSFER_READ_BIT,
    HOST: vk.VK_ACCESS_HOST_READ_BIT,
    GRAPHICS: (vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_UNIFORM_READ_BIT
               | vk.VK_ACCESS_VERTEX_ATTRIBUTE_READ_BIT | vk.VK_ACCESS_INDEX_READ_BIT),
    ATTACHMENT: vk.VK_ACCESS_COLOR_ATTACHMENT_READ_BIT,
}
WRITE = {
    COMPUTE: vk.VK_ACCESS_SHADER_WRITE_BIT,
    TRANSFER: vk.VK_ACCESS_TRANSFER_WRITE_BIT,
    HOST: vk.VK_ACCESS_HOST_WRITE_BIT,
    GRAPHICS: vk.VK_ACCESS_SHADER_WRITE_BIT,
    ATTACHMENT: vk.VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
}
STAGE_NAMES = {COMPUTE: "compute", TRANSFER: "transfer", HOST: "host", GRAPHICS: "graphics",
               ATTACHMENT: "attachment"}


def _stage_parts(stages: int):
    return [s for s in READ if stages & s]


def access_of(stages: int, write: bool = True) -> int:
    """Every read (and, with ``write``, write) access mask of ``stages`` (a union of the stages above)."""
    out = 0
    for s in _stage_parts(stages):
        out |= READ[s] | (WRITE[s] if write else 0)
    return out


class Barrier(NamedTuple):
    """A global memory barrier: ``vkCmdPipelineBarrier(src_stages, dst_stages, VkMemoryBarrier(src_access,
    dst_access))``."""
    src_stages: int
    dst_stages: int
    src_access: int
    dst_access: int

    def __repr__(self):
        name = lambda m: "|".join(STAGE_NAMES[s] for s in _stage_parts(m)) or "none"
        return f"Barrier({name(self.src_stages)} -> {name(self.dst_stages)})"


class _State:
    __slots__ = ("w_stages", "w_access", "w_visible", "r_stages", "r_ordered")

    def __init__(self):
        self.w_stages = self.w_access = self.w_visible = self.r_stages = self.r_ordered = 0


def _covers(mask: int, stages: int) -> bool:
    return mask & stages == stages


class HazardTracker:
    """Per-resource access state of one command stream (see the module docstring).

    ``access(stage, reads, writes) -> Barrier | None``: the barrier to record *before* a command at
    ``stage`` that reads ``reads`` and writes ``writes`` (hashable resource keys), already applied;
    ``apply(barrier)`` records a barrier issued for other reasons (e.g. a full barrier);
    ``stages_used`` / ``write_access`` summarise the stream for its closing barrier.
    """

    def __init__(self):
        self._state: dict = {}
        self.stages_used = 0
        self.write_access = 0
        self.barriers = 0

    def access(self, stage: int, reads=(), writes=()) -> Barrier | None:
        reads, writes = set(reads), set(writes)
        src_stages = src_access = 0
        for key in reads | writes:
            st = self._state.get(key)
            if st is None:
                continue
            if st.w_stages and not _covers(st.w_visible, stage):          # RAW / WAW
                src_stages |= st.w_stages
                src_access |= st.w_access
            if key in writes and st.r_stages and not _covers(st.r_ordered, stage):   # WAR
                src_stages |= st.r_stages
        barrier = None
        if src_stages:
            barrier = Barrier(src_stages, stage, src_access, access_of(stage))
            self.apply(barrier)
        for key in writes:
            st = self._state.setdefault(key, _State())
            st.w_stages, st.w_access, st.w_visible = stage, _all_writes(stage), 0
            st.r_stages = st.r_ordered = 0
        for key in reads - writes:
            st = self._state.setdefault(key, _State())
            st.r_stages |= stage
            st.r_ordered = 0
        self.stages_used |= stage
        if writes:
            self.write_access |= _all_writes(stage)
        return barrier

    def apply(self, b: Barrier):
        """Update every resource's state for barrier ``b`` (dst access assumed to cover its stages)."""
        self.barriers += 1
        for st in self._state.values():
            if st.w_stages and ((_covers(b.src_stages, st.w_stages) and _covers(b.src_access, st.w_access))
                                or st.w_visible & b.src_stages):
                st.w_visible |= b.dst_stages
            if st.r_stages and (_covers(b.src_stages, st.r_stages) or st.r_ordered & b.src_stages):
                st.r_ordered |= b.dst_stages

    def reset(self, key):
        """Forget ``key``'s accesses (it was made clean by a barrier recorded outside the tracker,
        e.g. an image layout transition from ALL_COMMANDS)."""
        self._state.pop(key, None)


def _all_writes(stages: int) -> int:
    out = 0
    for s in _stage_parts(stages):
        out |= WRITE[s]
    return out
