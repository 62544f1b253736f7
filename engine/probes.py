"""Device facts that must be measured, not read from properties: run a tiny shader once per context
and cache the answer there (``Context.probe``; cleared when the context closes).

- :func:`subgroup_size`: the width a compute pipeline gets by default (drivers may compile compute
  shaders to another width than ``VkPhysicalDeviceSubgroupProperties.subgroupSize``);
- :func:`required_subgroup_works`: whether a pipeline that *requires* a width with full subgroups
  (VK_EXT_subgroup_size_control) really gets ``local / size`` subgroups of that width with working
  shuffles. Kernels that assume lanes of one subgroup are built that way and only after this check.
"""
from __future__ import annotations

import numpy as np

__all__ = ["subgroup_size", "required_subgroup_works"]


def _probe_subgroups(ctx, local, required=None):
    """Run ``subgroup_probe.comp`` with a workgroup of ``local`` (requiring ``required``-wide full
    subgroups where given): ``(OR of sizes, subgroups, failed shuffles, non-contiguous invocations)``."""
    out = ctx.zeros((4,), np.uint32)
    try:
        k = ctx.kernel("subgroup_probe.comp", spec={"LOCAL_X": int(local)}, subgroup_size=required)
        with ctx.recorder() as rec:
            rec.dispatch(k, 1, out)
        return tuple(int(v) for v in out.numpy())
    finally:
        out.close()


def _measure_default_subgroup(ctx):
    limit = int(ctx.limits.maxComputeWorkGroupInvocations)
    size = _probe_subgroups(ctx, 1)[0]
    if size < 1 or size & (size - 1) or size > limit:
        return 1
    got, count, bad, _ = _probe_subgroups(ctx, size)     # is a workgroup of that size one subgroup?
    return size if (got == size and count == 1 and bad == 0) else 1


def subgroup_size(ctx) -> int:
    """The subgroup size a compute pipeline gets by default (``subgroup_probe.comp``, measured once per
    context with ``ctx.probe``: drivers may compile compute shaders to another width than the reported
    default); 1 when the device reports no subgroup shuffles in compute, a workgroup of that size is
    not one subgroup, or shuffles misbehave. Another pipeline may get another width: the tree kernel
    does not rely on this (see :func:`required_subgroup_works`)."""
    if not ctx.subgroup_shuffle:
        return 1
    return ctx.probe("subgroup_size", _measure_default_subgroup)


def required_subgroup_works(ctx, size, local) -> bool:
    """Whether a pipeline with a workgroup of ``local`` invocations that requires ``size``-wide full
    subgroups (VK_EXT_subgroup_size_control) gets exactly that: ``local / size`` subgroups of ``size``
    lanes with working shuffles. Measured once per context and (size, local)."""
    size, local = int(size), int(local)
    if not (ctx.subgroup_shuffle and ctx.subgroup_size_control
            and ctx.min_subgroup_size <= size <= ctx.max_subgroup_size and local % size == 0
            and local <= int(ctx.limits.maxComputeWorkGroupInvocations)):
        return False

    def measure(c):
        try:
            got, count, bad, _ = _probe_subgroups(c, local, required=size)
        except ValueError:
            return False
        return got == size and count == local // size and bad == 0
    return ctx.probe(("required_subgroup", size, local), measure)
