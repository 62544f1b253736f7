#!/usr/bin/env bash
# Build dist/gpu-kit/: everything a GPU node without network, apt or compilers needs to install vkbands,
# list its devices, run the test suite and the benchmarks (see kit/README.md). Run by `make gpu-kit`.
# Needs, here: network (PyPI, a Debian mirror), glslc (the wheel's SPIR-V), apt-get, a Python with pip.
set -euo pipefail

PY=${PY:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=$ROOT/dist/gpu-kit
PY_VERSIONS="3.10 3.11 3.12"
PLATFORM=manylinux2014_x86_64           # glibc >= 2.17: RHEL/Rocky 7+, Debian 8+, Ubuntu 14.04+
# Run-time and test dependencies a stock scientific Python (NumPy, Pillow, matplotlib, pytest, tqdm)
# lacks. vulkan needs cffi (+ pycparser) at run time; glfw and imgui only the viewer; pywavelets only
# two reference tests (importorskip) and a benchmark column. Same pins as pyproject.toml.
REQUIRED="vulkan==1.3.275.1 cffi pycparser"
OPTIONAL="glfw imgui==2.0.0 pywavelets"   # a version without a wheel for one Python is reported, not fatal
MAX_MIB=60

rm -rf "$KIT"
mkdir -p "$KIT/wheels" "$KIT/deb"

# One snapshot of the source (tracked and untracked, not ignored files) for the wheel and for the
# tests and benchmarks, so that they match even while the checkout is being edited.
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
  | (cd "$ROOT" && xargs -0 tar --ignore-failed-read -cf - 2>/dev/null) | tar -C "$SRC" -xf -

echo "== vkbands wheel (with the SPIR-V of every shader variant)"
"$PY" -m pip wheel -q --no-deps --disable-pip-version-check -w "$KIT/wheels" "$SRC" 2>&1 \
  | grep -v -e BuildBackendWarning -e 'By 20' -e 'or your builds' -e '^ *$' || true
WHL=$(ls "$KIT"/wheels/vkbands-*.whl)
n_spv=$("$PY" - "$WHL" <<'EOF'
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
m = json.loads(z.read("vkbands/shaders/spirv/manifest.json"))
names = set(z.namelist())
missing = [k for k in m["entries"] if f"vkbands/shaders/spirv/{k}.spv" not in names]
if missing or not m["entries"]:
    sys.exit(f"wheel lacks shipped SPIR-V: {missing or 'no entries'}")
print(len(m["entries"]))
EOF
)
echo "   $(basename "$WHL"): $n_spv SPIR-V modules"

echo "== dependency wheels for CPython $PY_VERSIONS ($PLATFORM)"
for v in $PY_VERSIONS; do
  for req in $REQUIRED $OPTIONAL; do
    if ! err=$("$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
               --python-version "$v" --platform "$PLATFORM" -d "$KIT/wheels" "$req" 2>&1); then
      case " $OPTIONAL " in
        *" $req "*) echo "   note: no $req wheel for Python $v (that part is skipped there)";;
        *) echo "$err" | grep -v '^WARNING' >&2; echo "ERROR: no $req wheel for Python $v" >&2; exit 1;;
      esac
    fi
  done
done
ls "$KIT/wheels" | sed 's/^/   /'

echo "== Vulkan loader (Debian libvulkan1), used where the node has none"
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download -q libvulkan1 2>&1 >/dev/null | grep -v '^W: Download is performed unsandboxed' || true)
mv "$tmp"/libvulkan1_*.deb "$KIT/deb/"
rmdir "$tmp"
ls "$KIT/deb" | sed 's/^/   /'

echo "== tests, benchmarks (as source), run.sh, README"
tar -C "$SRC" --exclude=__pycache__ --exclude='*.pyc' --exclude=.pytest_cache -cf - tests benchmarks \
  | tar -C "$KIT" -xf -
cp "$ROOT/kit/run.sh" "$ROOT/kit/wheels.py" "$ROOT/kit/README.md" "$ROOT/kit/pytest.ini" \
   "$ROOT/kit/needs_glslc.txt" "$KIT/"
chmod +x "$KIT/run.sh"
{
  echo "vkbands gpu-kit"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown) (with uncommitted changes where -dirty)"
  echo "glslc: $(glslc --version 2>/dev/null | head -1)"
} > "$KIT/BUILD-INFO.txt"
(cd "$KIT" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS)

bytes=$(du -sb "$KIT" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "== $KIT: $(find "$KIT" -type f | wc -l) files, $mib MiB ($bytes bytes; limit $MAX_MIB MiB)"
if [ "$mib" -gt "$MAX_MIB" ]; then
  echo "ERROR: the kit is larger than $MAX_MIB MiB" >&2
  exit 1
fi
echo "Copy dist/gpu-kit/ to the node and run:  gpu-kit/run.sh OUTDIR   (see its README.md)"
