#!/usr/bin/env bash
# vkbands GPU kit: install the kit's wheels privately, make the Vulkan loader findable, list the
# devices, run the test suite and the benchmarks. Usage: run.sh OUTDIR   (see README.md)
# Writes only under OUTDIR (and pytest's temporary folder); never waits for input; ends in < 8 min.
set -u

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTDIR   (a new or empty folder for the results)" >&2
  exit 2
fi
OUTDIR=$1
case $OUTDIR in /*) ;; *) OUTDIR=$PWD/$OUTDIR ;; esac

# Claim OUTDIR (never write into a folder holding something else), then run again with all output
# going to the terminal and to OUTDIR/run.log.
if [ -z "${_VKBANDS_KIT_INNER:-}" ]; then
  mkdir -p "$(dirname "$OUTDIR")" 2>/dev/null
  if ! mkdir "$OUTDIR" 2>/dev/null; then
    if [ ! -d "$OUTDIR" ] || [ -n "$(ls -A "$OUTDIR" 2>/dev/null)" ]; then
      echo "OUTDIR $OUTDIR exists and is not an empty folder; give a new one" >&2
      exit 2
    fi
  fi
  _VKBANDS_KIT_INNER=1 bash "$KIT/run.sh" "$OUTDIR" </dev/null 2>&1 | tee "$OUTDIR/run.log"
  exit "${PIPESTATUS[0]}"
fi
exec </dev/null
cd "$OUTDIR" || exit 2

START=$(date +%s)
BUDGET=${VKBANDS_KIT_BUDGET_S:-460}   # the whole run, seconds; each phase gets at most what is left
PY=${PYTHON:-python3}
SUMMARY=()
say() { echo "[kit $(( $(date +%s) - START ))s] $*"; }
note() { say "$*"; SUMMARY+=("$*"); }
left() { echo $(( START + BUDGET - $(date +%s) )); }
# run_phase NAME CAP_S CMD...: run under timeout min(CAP_S, time left); 124 when it timed out
run_phase() {
  local name=$1 cap=$2 t rc
  shift 2
  t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 10 ]; then
    note "$name: skipped, the time budget (${BUDGET}s) is used up"
    return 125
  fi
  timeout -k 10 "$t" "$@"
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note "$name: stopped after ${t}s (time guard)"; return 124; fi
  return $rc
}

finish() {
  local rc=$?
  say "== summary ($(( $(date +%s) - START ))s, exit $rc)"
  [ ${#SUMMARY[@]} -gt 0 ] || SUMMARY+=("stopped before the tests (see run.log)")
  printf '  %s\n' "${SUMMARY[@]}" | tee "$OUTDIR/summary.txt"
  say "results: $OUTDIR (run.log, summary.txt, junit.xml, bench_*.md)"
}
trap finish EXIT

export PYTHONDONTWRITEBYTECODE=1 PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset CI   # tests/conftest.py refuses CI without validation; validation here depends on the node
export VKBANDS_CACHE_DIR=$OUTDIR/spirv-cache   # only used for shaders not shipped (none of vkbands')

say "vkbands GPU kit: $KIT -> $OUTDIR"
[ -f "$KIT/BUILD-INFO.txt" ] && sed 's/^/  /' "$KIT/BUILD-INFO.txt"
say "host: $(uname -srm); $(command -v "$PY" || echo "no $PY") $("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
if command -v nvidia-smi >/dev/null 2>&1; then timeout 20 nvidia-smi -L 2>&1 | sed 's/^/  /'; fi
if ! "$PY" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
  say "WARNING: the kit has wheels for CPython 3.10-3.12 (set PYTHON=/path/to/python3.X); trying anyway"
fi
if [ -f "$KIT/SHA256SUMS" ] && command -v sha256sum >/dev/null 2>&1; then
  if (cd "$KIT" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then say "kit files: checksums OK"
  else note "WARNING: kit files do not match SHA256SUMS (damaged copy?); continuing"; fi
fi
missing=$("$PY" -c '
import importlib.util as u
print(" ".join(m for m in ("numpy", "PIL", "matplotlib", "pytest", "tqdm") if u.find_spec(m) is None))' 2>&1)
if [ -n "$missing" ]; then
  note "ERROR: this Python lacks $missing (the kit assumes NumPy, Pillow, matplotlib, pytest, tqdm)"
  exit 3
fi

# ---------------------------------------------------------------------------- 1. install
SITE=$OUTDIR/site
say "== install into $SITE"
mapfile -t wheels < <("$PY" "$KIT/wheels.py" select "$KIT/wheels" vkbands vulkan cffi pycparser glfw imgui pywavelets)
for w in "${wheels[@]}"; do echo "  $(basename "$w")"; done
for req in vkbands vulkan cffi pycparser; do
  printf '%s\n' "${wheels[@]}" | grep -q "/$req-[^/]*$" || { note "ERROR: no $req wheel for this Python"; exit 3; }
done
if "$PY" -m pip --version >/dev/null 2>&1; then
  run_phase install 120 "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "${wheels[@]}" \
    || { note "ERROR: pip install failed"; exit 3; }
else
  say "no pip in this Python: unzipping the wheels"
  run_phase install 120 "$PY" "$KIT/wheels.py" unpack "$SITE" "${wheels[@]}" || { note "ERROR: unpacking failed"; exit 3; }
fi
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH

# ---------------------------------------------------------------------------- 2. Vulkan loader, driver
loader_ok() { "$PY" -c 'import ctypes; ctypes.CDLL("libvulkan.so.1")' >/dev/null 2>&1; }
if [ -n "${VKBANDS_KIT_PRIVATE_LOADER:-}" ] || ! loader_ok; then
  deb=$(ls "$KIT"/deb/libvulkan1_*.deb 2>/dev/null | head -1)
  dest=$OUTDIR/vulkan-loader
  say "libvulkan.so.1 $( [ -n "${VKBANDS_KIT_PRIVATE_LOADER:-}" ] && echo "(private loader requested)" || echo "not found"): unpacking $(basename "${deb:-none}")"
  mkdir -p "$dest"
  if command -v dpkg-deb >/dev/null 2>&1; then
    dpkg-deb -x "$deb" "$dest"
  elif command -v ar >/dev/null 2>&1; then
    (cd "$dest" && ar x "$deb" && tar -xf data.tar.* && rm -f data.tar.* control.tar.* debian-binary)
  else
    "$PY" - "$deb" "$dest" <<'EOF'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", "not a .deb"
i = 8
while i + 60 <= len(data):
    name, size = data[i:i + 16].decode().strip().rstrip("/"), int(data[i + 48:i + 58])
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(data[i + 60:i + 60 + size])).extractall(sys.argv[2])
    i += 60 + size + (size & 1)
EOF
  fi
  libdir=$(dirname "$(find "$dest" -name 'libvulkan.so.1*' | head -1)")
  export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  loader_ok && say "loader: $libdir/libvulkan.so.1" || { note "ERROR: the kit's Vulkan loader does not load"; exit 4; }
else
  say "loader: the system's libvulkan.so.1 ($(ldconfig -p 2>/dev/null | grep -m1 'libvulkan.so.1 ' | sed 's/.*=> //'))"
fi

devices_ok() {
  timeout 60 "$PY" -c 'from vkbands.engine import choose_device, describe_devices; choose_device(describe_devices())' \
    >/dev/null 2>&1
}
if [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  say "driver: user-set VK_DRIVER_FILES=${VK_DRIVER_FILES:-} VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"
elif ! devices_ok; then
  icds=""
  for f in /usr/share/vulkan/icd.d/*nvidia*.json /usr/share/vulkan/icd.d/*radeon*.json \
           /etc/vulkan/icd.d/*nvidia*.json /etc/vulkan/icd.d/*radeon*.json \
           /usr/local/nvidia/share/vulkan/icd.d/*.json; do
    [ -f "$f" ] && icds=${icds:+$icds:}$f
  done
  if [ -n "$icds" ]; then
    export VK_DRIVER_FILES=$icds VK_ICD_FILENAMES=$icds   # the second for loaders older than 1.3.207
    say "no device with the default driver search: VK_DRIVER_FILES=$icds"
  fi
fi

# ---------------------------------------------------------------------------- 3. devices
say "== vkbands devices"
run_phase devices 60 "$PY" -m vkbands.cli devices >"$OUTDIR/.devices" 2>&1
rc_dev=$?
cat "$OUTDIR/.devices"
used=$(grep -m1 -A1 '^\* \[' "$OUTDIR/.devices" | sed -n 's/^\* //p; s/^ *type: \([^ ]*\).*/(\1)/p' | tr '\n' ' ' | sed 's/ $//')
n_dev=$(grep -c '^[* ] \[[0-9]*\] ' "$OUTDIR/.devices")
rm -f "$OUTDIR/.devices"
[ $rc_dev -eq 0 ] && note "devices: $n_dev found; vkbands uses ${used:-?}"
if [ $rc_dev -ne 0 ]; then
  note "devices: FAILED (rc $rc_dev): no usable Vulkan device; is the GPU driver's Vulkan ICD installed? (name it with VK_DRIVER_FILES=/path/to/nvidia_icd.json)"
  exit 4
fi
"$PY" - <<'EOF'
import shutil
import vkbands
from vkbands.engine import shaders as S
print(f"  vkbands: {vkbands.__file__}")
print(f"  shipped SPIR-V: {len(S._manifest(S.SHIPPED_DIR))} modules; "
      f"glslc: {shutil.which('glslc') or 'not on PATH (not needed)'}")
EOF

# ---------------------------------------------------------------------------- 4. tests
say "== test suite"
VALIDATION=0
if "$PY" - 2>/dev/null <<'EOF'
import sys
import vulkan as vk
sys.exit(0 if "VK_LAYER_KHRONOS_validation" in {l.layerName for l in vk.vkEnumerateInstanceLayerProperties()} else 1)
EOF
then
  VALIDATION=1
fi
say "validation layer: $([ $VALIDATION = 1 ] && echo "on (VK_LAYER_KHRONOS_validation found)" || echo "not installed: VKBANDS_VALIDATION=0")"
args=(-c "$KIT/pytest.ini" --rootdir "$KIT" -q --junitxml "$OUTDIR/junit.xml" "$KIT/tests")
# Windowed viewer tests need a display: without DISPLAY they skip themselves; a `window` marker, when
# the suite has one, deselects them outright.
unset DISPLAY WAYLAND_DISPLAY
if (cd "$KIT" && "$PY" -m pytest -c "$KIT/pytest.ini" --rootdir "$KIT" --markers 2>/dev/null) | grep -q '^@pytest.mark.window:'; then
  args+=(-m "not window")
fi
VIEWER=1
if ! "$PY" -c 'import glfw, imgui' >/dev/null 2>&1; then
  VIEWER=0
  say "viewer: glfw/imgui not importable on this Python: viewer tests and benchmark left out"
  args+=(--ignore "$KIT/tests/test_viewer.py")
fi
if ! "$PY" -c 'import imgui' >/dev/null 2>&1; then
  args+=(--ignore "$KIT/tests/test_imgui_vk.py")
fi
if ! command -v glslc >/dev/null 2>&1; then
  while read -r id; do
    case $id in ''|'#'*) ;; *) args+=(--deselect "$id");; esac
  done < "$KIT/needs_glslc.txt"
  say "glslc not on PATH: deselected the tests that compile GLSL of their own (needs_glslc.txt)"
fi
export VKBANDS_VALIDATION=$VALIDATION
run_phase tests 330 "$PY" -m pytest "${args[@]}"
rc_tests=$?
counts=$("$PY" - "$OUTDIR/junit.xml" 2>/dev/null <<'EOF'
import sys
import xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
n = {k: int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
print(f"{n['tests'] - n['failures'] - n['errors'] - n['skipped']} passed, {n['failures']} failed, "
      f"{n['errors']} errors, {n['skipped']} skipped in {float(s.get('time', 0)):.0f}s")
EOF
)
note "tests: $([ $rc_tests -eq 0 ] && echo passed || echo "FAILED (rc $rc_tests)"): ${counts:-no junit.xml}"

# ---------------------------------------------------------------------------- 5. benchmarks
say "== benchmarks (--quick), tables in $OUTDIR"
export VKBANDS_VALIDATION=0   # timings without the layer's overhead
for b in "$KIT"/benchmarks/bench_*.py; do
  name=$(basename "$b" .py)
  case $name in *viewer*) if [ $VIEWER = 0 ]; then note "$name: skipped (no glfw/imgui for this Python)"; continue; fi;; esac
  say "-- $name"
  run_phase "$name" 150 "$PY" "$b" --quick --out "$OUTDIR"
  rc=$?
  case $rc in
    0) if grep -q "^$name: .*skipped" "$OUTDIR/$name.md" 2>/dev/null; then   # it skipped itself (no display)
         note "$(grep -m1 "^$name: .*skipped" "$OUTDIR/$name.md")"
       else note "$name: ok"; fi;;
    124|125) ;;   # already noted
    *) note "$name: FAILED (rc $rc), continuing";;
  esac
done

exit $rc_tests   # the summary is printed by finish()
