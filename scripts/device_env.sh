# Sourced by scripts/device_check*.sh on the device machine: the Vulkan loader from .gl/*.deb,
# NVIDIA's ICD, a runtime dir, the /work/main link under which test binaries find their
# fixtures, and $OUT for the logs.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m700 /tmp/xdg
# Test binaries look for fixtures under the path they were built in.
mkdir -p /work && ln -sfn "$PWD" /work/main
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
