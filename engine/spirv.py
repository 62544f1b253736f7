"""Minimal SPIR-V reflection: descriptor bindings, push-constant members, spec constants, local size.

Only what the engine needs to build pipelines from the shader alone (one source of truth: the GLSL).
Reference: the SPIR-V specification, sections 2.3 (physical layout) and 3 (enumerants).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Opcodes
_OpName, _OpMemberName, _OpEntryPoint, _OpExecutionMode = 5, 6, 15, 16
_OpTypeBool, _OpTypeInt, _OpTypeFloat, _OpTypeVector, _OpTypeMatrix = 20, 21, 22, 23, 24
_OpTypeImage, _OpTypeSampledImage, _OpTypeArray, _OpTypeRuntimeArray = 25, 27, 28, 29
_OpTypeStruct, _OpTypePointer, _OpConstant, _OpSpecConstantTrue, _OpSpecConstantFalse = 30, 32, 43, 48, 49
_OpSpecConstant, _OpSpecConstantComposite, _OpVariable, _OpDecorate, _OpMemberDecorate = 50, 51, 59, 71, 72
_OpExecutionModeId = 331
# Decorations
_SpecId, _Block, _BufferBlock, _ArrayStride, _NonWritable, _NonReadable = 1, 2, 3, 6, 24, 25
_Binding, _DescriptorSet, _Offset, _BuiltIn, _WorkgroupSize = 33, 34, 35, 11, 25
# Storage classes
_UniformConstant, _Uniform, _PushConstant, _StorageBuffer = 0, 2, 9, 12
_LocalSize, _LocalSizeId = 17, 38


@dataclass(frozen=True)
class Binding:
    """One descriptor: ``kind`` in {"storage_buffer", "uniform_buffer", "storage_image", "sampled_image"};
    ``readable``/``writable`` from GLSL ``readonly``/``writeonly``."""
    set: int
    binding: int
    name: str
    kind: str
    readable: bool = True
    writable: bool = True


@dataclass(frozen=True)
class PushMember:
    """One push-constant member: byte ``offset``, scalar ``fmt`` ("f", "i", "I") and ``count`` components."""
    name: str
    offset: int
    fmt: str
    count: int


@dataclass
class Reflection:
    bindings: list[Binding] = field(default_factory=list)
    push: list[PushMember] = field(default_factory=list)
    push_size: int = 0
    spec_ids: dict[str, int] = field(default_factory=dict)
    spec_defaults: dict[str, object] = field(default_factory=dict)
    local_size: tuple = (1, 1, 1)  # entries are ints, or spec-constant names when local_size_*_id is used


def _string(words, start):
    raw = struct.pack(f"<{len(words) - start}I", *words[start:])
    return raw.split(b"\0", 1)[0].decode()


def reflect(spirv: bytes) -> Reflection:
    n = len(spirv) // 4
    words = struct.unpack(f"<{n}I", spirv[: n * 4])
    if words[0] != 0x07230203:
        raise ValueError("not a SPIR-V module (bad magic number)")
    names, member_names = {}, {}
    deco, member_deco = {}, {}
    types, consts, variables = {}, {}, []
    spec_consts, composites = {}, {}
    local_size, local_size_ids = (1, 1, 1), None
    i = 5
    while i < n:
        op, count = words[i] & 0xFFFF, words[i] >> 16
        a = words[i + 1: i + count]
        if op == _OpName:
            names[a[0]] = _string(a, 1)
        elif op == _OpMemberName:
            member_names[(a[0], a[1])] = _string(a, 2)
        elif op == _OpDecorate:
            deco.setdefault(a[0], {})[a[1]] = a[2] if len(a) > 2 else True
        elif op == _OpMemberDecorate:
            member_deco.setdefault((a[0], a[1]), {})[a[2]] = a[3] if len(a) > 3 else True
        elif op == _OpExecutionMode and a[1] == _LocalSize:
            local_size = tuple(a[2:5])
        elif op == _OpExecutionModeId and a[1] == _LocalSizeId:
            local_size_ids = tuple(a[2:5])
        elif op in (_OpTypeBool, _OpTypeInt, _OpTypeFloat, _OpTypeVector, _OpTypeMatrix, _OpTypeImage,
                    _OpTypeSampledImage, _OpTypeArray, _OpTypeRuntimeArray, _OpTypeStruct, _OpTypePointer):
            types[a[0]] = (op, a[1:])
        elif op == _OpConstant:
            consts[a[1]] = a[2]
        elif op in (_OpSpecConstant, _OpSpecConstantTrue, _OpSpecConstantFalse):
            spec_consts[a[1]] = (a[0], op, a[2] if op == _OpSpecConstant else op == _OpSpecConstantTrue)
            consts[a[1]] = a[2] if op == _OpSpecConstant else int(op == _OpSpecConstantTrue)
        elif op == _OpSpecConstantComposite:
            composites[a[1]] = a[2:]
        elif op == _OpVariable:
            variables.append((a[0], a[1], a[2]))
        i += count

    def size_of(tid):
        op, rest = types[tid]
        if op in (_OpTypeInt, _OpTypeFloat):
            return rest[0] // 8
        if op == _OpTypeBool:
            return 4
        if op == _OpTypeVector:
            return size_of(rest[0]) * rest[1]
        if op == _OpTypeMatrix:
            return size_of(rest[0]) * rest[1]
        if op == _OpTypeArray:
            return deco.get(tid, {}).get(_ArrayStride, size_of(rest[0])) * consts[rest[1]]
        if op == _OpTypeStruct:
            return max((member_deco.get((tid, k), {}).get(_Offset, 0) + size_of(m) for k, m in enumerate(rest)),
                       default=0)
        raise ValueError(f"push-constant member type opcode {op} is not supported")

    def scalar_of(tid):
        op, rest = types[tid]
        if op == _OpTypeVector:
            f, c = scalar_of(rest[0])
            return f, c * rest[1]
        if op == _OpTypeArray:
            f, c = scalar_of(rest[0])
            return f, c * consts[rest[1]]
        if op == _OpTypeFloat:
            return "f", 1
        if op == _OpTypeInt:
            return ("i" if rest[1] else "I"), 1
        return "I", 1

    refl = Reflection()
    for type_id, var_id, storage in variables:
        pointee = types[type_id][1][1]
        if storage == _PushConstant:
            members = types[pointee][1]
            for k, m in enumerate(members):
                fmt, cnt = scalar_of(m)
                refl.push.append(PushMember(member_names.get((pointee, k), f"m{k}"),
                                            member_deco[(pointee, k)][_Offset], fmt, cnt))
            refl.push_size = size_of(pointee)
            continue
        d = deco.get(var_id, {})
        if _Binding not in d:
            continue
        base = pointee
        while types[base][0] in (_OpTypeArray, _OpTypeRuntimeArray):
            base = types[base][1][0]
        top = types[base][0]
        if storage == _StorageBuffer or (storage == _Uniform and _BufferBlock in deco.get(base, {})):
            kind = "storage_buffer"
        elif storage == _Uniform:
            kind = "uniform_buffer"
        elif top == _OpTypeImage:
            kind = "storage_image" if types[base][1][5] == 2 else "sampled_image"
        elif top == _OpTypeSampledImage:
            kind = "sampled_image"
        else:
            raise ValueError(f"binding {d[_Binding]}: unsupported descriptor type")
        if top == _OpTypeStruct:
            nm = len(types[base][1])
            ro = _NonWritable in d or all(_NonWritable in member_deco.get((base, k), {}) for k in range(nm))
            wo = _NonReadable in d or all(_NonReadable in member_deco.get((base, k), {}) for k in range(nm))
        else:
            ro, wo = _NonWritable in d, _NonReadable in d
        if kind in ("uniform_buffer", "sampled_image"):
            ro, wo = True, False
        refl.bindings.append(Binding(d.get(_DescriptorSet, 0), d[_Binding], names.get(var_id) or names.get(base, ""), kind,
                                     readable=not wo, writable=not ro))
    merged = {}  # aliased declarations of one binding (e.g. vec4[] and float[] views) become one
    for b in refl.bindings:
        m = merged.get((b.set, b.binding))
        merged[(b.set, b.binding)] = b if m is None else Binding(
            b.set, b.binding, m.name, m.kind, m.readable or b.readable, m.writable or b.writable)
    refl.bindings = sorted(merged.values(), key=lambda b: (b.set, b.binding))
    named_by_specid = {}
    for cid, (_, op, default) in spec_consts.items():
        if _SpecId in deco.get(cid, {}) and cid in names:
            refl.spec_ids[names[cid]] = deco[cid][_SpecId]
            refl.spec_defaults[names[cid]] = default
            named_by_specid[deco[cid][_SpecId]] = names[cid]

    def size_component(cid):  # a literal, or the name of the spec constant that sets it
        sid = deco.get(cid, {}).get(_SpecId)
        if sid is not None:
            return named_by_specid.get(sid, consts.get(cid, 1))
        return consts.get(cid, 1)

    wg = [c for cid, c in composites.items() if deco.get(cid, {}).get(_BuiltIn) == _WorkgroupSize]
    if wg:  # glslc's encoding of local_size_x_id: a spec-constant composite decorated WorkgroupSize
        refl.local_size = tuple(size_component(c) for c in wg[0])
    elif local_size_ids:
        refl.local_size = tuple(size_component(c) for c in local_size_ids)
    else:
        refl.local_size = local_size
    return refl
