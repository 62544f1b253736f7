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


_TYPE_OPS = frozenset((_OpTypeBool, _OpTypeInt, _OpTypeFloat, _OpTypeVector, _OpTypeMatrix, _OpTypeImage,
                       _OpTypeSampledImage, _OpTypeArray, _OpTypeRuntimeArray, _OpTypeStruct, _OpTypePointer))
_SPEC_SCALAR_OPS = (_OpSpecConstant, _OpSpecConstantTrue, _OpSpecConstantFalse)


@dataclass
class _Module:
    """What reflection reads from a module, by result id (SPIR-V spec 2.3: one pass over the words)."""
    names: dict = field(default_factory=dict)               # id -> OpName
    member_names: dict = field(default_factory=dict)        # (struct id, member) -> OpMemberName
    decorations: dict = field(default_factory=dict)         # id -> {decoration: literal, or True}
    member_decorations: dict = field(default_factory=dict)  # (struct id, member) -> {decoration: ...}
    types: dict = field(default_factory=dict)               # id -> (opcode, operands after the result id)
    constants: dict = field(default_factory=dict)           # id -> literal (spec constants: their default)
    spec_constants: dict = field(default_factory=dict)      # id -> default (int, or bool for spec bools)
    composites: dict = field(default_factory=dict)          # OpSpecConstantComposite id -> constituent ids
    variables: list = field(default_factory=list)           # (pointer type id, variable id, storage class)
    local_size: tuple = (1, 1, 1)                           # OpExecutionMode LocalSize
    local_size_ids: tuple | None = None                     # OpExecutionModeId LocalSizeId


def _instructions(spirv: bytes):
    """``(opcode, operands)`` of every instruction after the 5-word header."""
    n = len(spirv) // 4
    words = struct.unpack(f"<{n}I", spirv[: n * 4])
    if words[0] != 0x07230203:
        raise ValueError("not a SPIR-V module (bad magic number)")
    i = 5
    while i < n:
        op, count = words[i] & 0xFFFF, words[i] >> 16
        yield op, words[i + 1: i + count]
        i += count


def _parse(spirv: bytes) -> _Module:
    module = _Module()
    for op, a in _instructions(spirv):
        if op == _OpName:
            module.names[a[0]] = _string(a, 1)
        elif op == _OpMemberName:
            module.member_names[(a[0], a[1])] = _string(a, 2)
        elif op == _OpDecorate:
            module.decorations.setdefault(a[0], {})[a[1]] = a[2] if len(a) > 2 else True
        elif op == _OpMemberDecorate:
            module.member_decorations.setdefault((a[0], a[1]), {})[a[2]] = a[3] if len(a) > 3 else True
        elif op == _OpExecutionMode and a[1] == _LocalSize:
            module.local_size = tuple(a[2:5])
        elif op == _OpExecutionModeId and a[1] == _LocalSizeId:
            module.local_size_ids = tuple(a[2:5])
        elif op in _TYPE_OPS:
            module.types[a[0]] = (op, a[1:])
        elif op == _OpConstant:
            module.constants[a[1]] = a[2]
        elif op in _SPEC_SCALAR_OPS:
            module.spec_constants[a[1]] = a[2] if op == _OpSpecConstant else op == _OpSpecConstantTrue
            module.constants[a[1]] = a[2] if op == _OpSpecConstant else int(op == _OpSpecConstantTrue)
        elif op == _OpSpecConstantComposite:
            module.composites[a[1]] = a[2:]
        elif op == _OpVariable:
            module.variables.append((a[0], a[1], a[2]))
    return module


# ----------------------------------------------------------------------------- push constants

def _byte_size(module: _Module, type_id) -> int:
    """Bytes of a push-constant member type (arrays by their ArrayStride, structs by their last member)."""
    op, rest = module.types[type_id]
    if op in (_OpTypeInt, _OpTypeFloat):
        return rest[0] // 8
    if op == _OpTypeBool:
        return 4
    if op in (_OpTypeVector, _OpTypeMatrix):
        return _byte_size(module, rest[0]) * rest[1]
    if op == _OpTypeArray:
        stride = module.decorations.get(type_id, {}).get(_ArrayStride, _byte_size(module, rest[0]))
        return stride * module.constants[rest[1]]
    if op == _OpTypeStruct:
        return max((module.member_decorations.get((type_id, k), {}).get(_Offset, 0) + _byte_size(module, m)
                    for k, m in enumerate(rest)), default=0)
    raise ValueError(f"push-constant member type opcode {op} is not supported")


def _scalar_format(module: _Module, type_id):
    """``(struct format character, component count)`` of a push-constant member type."""
    op, rest = module.types[type_id]
    if op == _OpTypeVector:
        fmt, count = _scalar_format(module, rest[0])
        return fmt, count * rest[1]
    if op == _OpTypeArray:
        fmt, count = _scalar_format(module, rest[0])
        return fmt, count * module.constants[rest[1]]
    if op == _OpTypeFloat:
        return "f", 1
    if op == _OpTypeInt:
        return ("i" if rest[1] else "I"), 1
    return "I", 1


def _push_members(module: _Module, block) -> list[PushMember]:
    members = []
    for k, member_type in enumerate(module.types[block][1]):
        fmt, count = _scalar_format(module, member_type)
        members.append(PushMember(module.member_names.get((block, k), f"m{k}"),
                                  module.member_decorations[(block, k)][_Offset], fmt, count))
    return members


# ----------------------------------------------------------------------------- descriptor bindings

def _descriptor_kind(module: _Module, base, storage, binding) -> str:
    """storage_buffer / uniform_buffer / storage_image / sampled_image for a variable whose type,
    arrays stripped, is ``base``."""
    top = module.types[base][0]
    if storage == _StorageBuffer or (storage == _Uniform and _BufferBlock in module.decorations.get(base, {})):
        return "storage_buffer"
    if storage == _Uniform:
        return "uniform_buffer"
    if top == _OpTypeImage:
        return "storage_image" if module.types[base][1][5] == 2 else "sampled_image"   # Sampled operand: 2 = storage
    if top == _OpTypeSampledImage:
        return "sampled_image"
    raise ValueError(f"binding {binding}: unsupported descriptor type")


def _read_only_write_only(module: _Module, base, var_decorations, kind):
    """GLSL ``readonly`` / ``writeonly``: on the variable, or on every member of its block."""
    if kind in ("uniform_buffer", "sampled_image"):
        return True, False
    if module.types[base][0] == _OpTypeStruct:
        members = range(len(module.types[base][1]))
        member_decorations = [module.member_decorations.get((base, k), {}) for k in members]
        return (_NonWritable in var_decorations or all(_NonWritable in d for d in member_decorations),
                _NonReadable in var_decorations or all(_NonReadable in d for d in member_decorations))
    return _NonWritable in var_decorations, _NonReadable in var_decorations


def _binding(module: _Module, var_id, pointee, storage) -> Binding | None:
    """The descriptor of a variable, or None for a variable without a binding."""
    var_decorations = module.decorations.get(var_id, {})
    if _Binding not in var_decorations:
        return None
    base = pointee
    while module.types[base][0] in (_OpTypeArray, _OpTypeRuntimeArray):
        base = module.types[base][1][0]
    kind = _descriptor_kind(module, base, storage, var_decorations[_Binding])
    read_only, write_only = _read_only_write_only(module, base, var_decorations, kind)
    name = module.names.get(var_id) or module.names.get(base, "")
    return Binding(var_decorations.get(_DescriptorSet, 0), var_decorations[_Binding], name, kind,
                   readable=not write_only, writable=not read_only)


def _merge_aliases(bindings) -> list[Binding]:
    """Aliased declarations of one binding (e.g. vec4[] and float[] views) become one, in binding order."""
    merged = {}
    for b in bindings:
        seen = merged.get((b.set, b.binding))
        merged[(b.set, b.binding)] = b if seen is None else Binding(
            b.set, b.binding, seen.name, seen.kind, seen.readable or b.readable, seen.writable or b.writable)
    return sorted(merged.values(), key=lambda b: (b.set, b.binding))


# ----------------------------------------------------------------------------- specialisation constants

def _spec_constants(module: _Module):
    """``(spec_ids, spec_defaults, names by SpecId)`` of the named specialisation constants."""
    spec_ids, defaults, names_by_spec_id = {}, {}, {}
    for const_id, default in module.spec_constants.items():
        spec_id = module.decorations.get(const_id, {}).get(_SpecId)
        if spec_id is not None and const_id in module.names:
            name = module.names[const_id]
            spec_ids[name], defaults[name], names_by_spec_id[spec_id] = spec_id, default, name
    return spec_ids, defaults, names_by_spec_id


def _local_size(module: _Module, names_by_spec_id) -> tuple:
    """The workgroup size; a component set by a specialisation constant is given by its name."""
    def component(const_id):
        spec_id = module.decorations.get(const_id, {}).get(_SpecId)
        if spec_id is not None:
            return names_by_spec_id.get(spec_id, module.constants.get(const_id, 1))
        return module.constants.get(const_id, 1)

    workgroup = [c for cid, c in module.composites.items()
                 if module.decorations.get(cid, {}).get(_BuiltIn) == _WorkgroupSize]
    if workgroup:  # glslc's encoding of local_size_x_id: a spec-constant composite decorated WorkgroupSize
        return tuple(component(c) for c in workgroup[0])
    if module.local_size_ids:
        return tuple(component(c) for c in module.local_size_ids)
    return module.local_size


def reflect(spirv: bytes) -> Reflection:
    """Descriptor bindings, push-constant members, specialisation constants and local size of a module."""
    module = _parse(spirv)
    refl = Reflection()
    bindings = []
    for pointer_type, var_id, storage in module.variables:
        pointee = module.types[pointer_type][1][1]
        if storage == _PushConstant:
            refl.push += _push_members(module, pointee)
            refl.push_size = _byte_size(module, pointee)
        else:
            binding = _binding(module, var_id, pointee, storage)
            if binding is not None:
                bindings.append(binding)
    refl.bindings = _merge_aliases(bindings)
    refl.spec_ids, refl.spec_defaults, names_by_spec_id = _spec_constants(module)
    refl.local_size = _local_size(module, names_by_spec_id)
    return refl
