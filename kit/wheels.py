"""Pick and unpack the kit's wheels for the running Python, with the standard library only.

    python3 wheels.py select WHEELDIR NAME...   print the best wheel per NAME for this interpreter
                                                (names without one are reported on stderr, exit 3)
    python3 wheels.py unpack TARGET WHEEL...    unzip wheels into TARGET (for a Python without pip)

"Best": its tags fit this interpreter (cpXY / abi3 / py3; any or manylinux x86-64 no newer than this
glibc), its Requires-Python admits this version; then the newest version, then the most specific tag.
"""
import os
import platform
import re
import sys
import zipfile
from pathlib import Path

MAJ, MIN = sys.version_info[:2]


def _glibc():
    try:
        return tuple(int(x) for x in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])
    except (ValueError, OSError, AttributeError, IndexError):
        return (0, 0)


def _vtuple(s):
    return tuple(int(x) for x in re.findall(r"\d+", s)[:3])


def _interp_rank(tag):
    """Higher is more specific; None when the tag does not fit."""
    if tag == f"cp{MAJ}{MIN}" and sys.implementation.name == "cpython":
        return 3
    m = re.fullmatch(r"cp3(\d+)", tag)
    if m and sys.implementation.name == "cpython" and int(m[1]) <= MIN:
        return 2   # only with abi3, checked with the abi tag
    if tag == "py3" or (re.fullmatch(r"py3(\d+)", tag) and int(tag[3:]) <= MIN):
        return 1
    return None


def _plat_ok(tag):
    if tag == "any":
        return True
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    if tag == "manylinux1_x86_64":
        return _glibc() >= (2, 5)
    if tag == "manylinux2010_x86_64":
        return _glibc() >= (2, 12)
    if tag == "manylinux2014_x86_64":
        return _glibc() >= (2, 17)
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", tag)
    return bool(m) and _glibc() >= (int(m[1]), int(m[2]))


def _requires_python_ok(whl):
    try:
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            text = z.read(meta).decode("utf-8", "replace")
    except (OSError, StopIteration, zipfile.BadZipFile):
        return False
    m = re.search(r"^Requires-Python:\s*(.+)$", text, re.M)
    here = (MAJ, MIN, sys.version_info[2])
    for spec in (m[1].split(",") if m else []):
        spec = spec.strip()
        sm = re.fullmatch(r"(>=|<=|==|!=|>|<|~=)\s*([\d.]+)(\.\*)?", spec)
        if not sm:
            continue
        op, v, star = sm[1], _vtuple(sm[2]), sm[3]
        h = here[:len(v)] if star or op == "~=" else here + (0,) * (len(v) - 3)
        v = v + (0,) * (len(h) - len(v))
        ok = {">=": h >= v, "<=": h <= v, ">": h > v, "<": h < v, "==": h == v, "!=": h != v,
              "~=": h >= v}[op]
        if not ok:
            return False
    return True


def rank(whl):
    """(version, tag rank) of a fitting wheel, else None."""
    parts = Path(whl).name[:-4].split("-")
    if len(parts) < 5:
        return None
    pys, abis, plats = (set(p.split(".")) for p in parts[-3:])
    best = None
    for py in pys:
        r = _interp_rank(py)
        if r is None:
            continue
        for abi in abis:
            if abi == "none" or (abi == "abi3" and r == 2) or (abi == py and r == 3):
                if any(_plat_ok(p) for p in plats):
                    best = max(best or 0, r + (1 if abi != "none" else 0))
    if best is None or not _requires_python_ok(whl):
        return None
    return _vtuple(parts[1]), best


def _norm(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def select(wheeldir, names):
    found, missing = [], []
    wheels = sorted(Path(wheeldir).glob("*.whl"))
    for name in names:
        cands = [(rank(w), w) for w in wheels if _norm(w.name.split("-")[0]) == _norm(name)]
        cands = [(r, w) for r, w in cands if r is not None]
        if cands:
            found.append(max(cands)[1])
        else:
            missing.append(name)
    for w in found:
        print(w)
    if missing:
        print(f"no wheel for Python {MAJ}.{MIN} ({platform.machine()}): {' '.join(missing)}", file=sys.stderr)
        return 3
    return 0


def unpack(target, wheels):
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                name = info.filename
                parts = name.split("/")
                if ".." in parts or name.startswith("/"):
                    raise SystemExit(f"{whl}: unsafe path {name!r}")
                if parts[0].endswith(".data"):     # purelib/platlib go to the top, scripts/data are skipped
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                dest = target.joinpath(*parts)
                if name.endswith("/"):
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(info))
                mode = (info.external_attr >> 16) & 0o777
                if mode & 0o111:
                    dest.chmod(0o755)
        print(f"unpacked {Path(whl).name}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "select":
        sys.exit(select(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) >= 3 and sys.argv[1] == "unpack":
        sys.exit(unpack(sys.argv[2], sys.argv[3:]))
    sys.exit(__doc__)
