# Shared environment for the project's scripts. Source it; do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.venv/bin:$PATH"
export DJANGO_SETTINGS_MODULE=webapp.config.settings
export PYTHONUNBUFFERED=1
# ultralytics must never try the network; it also needs a font it would otherwise download.
export YOLO_OFFLINE=1
export YOLO_CONFIG_DIR="${YOLO_CONFIG_DIR:-$ROOT/var/yolo}"
mkdir -p "$YOLO_CONFIG_DIR/Ultralytics"
if [ ! -f "$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf" ]; then
  font="$("$ROOT/.venv/bin/python" -c 'import matplotlib, os; print(os.path.join(matplotlib.get_data_path(), "fonts/ttf/DejaVuSans.ttf"))' 2>/dev/null || true)"
  [ -n "$font" ] && [ -f "$font" ] && cp "$font" "$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf"
fi
# jemalloc makes torch inference and training about 3x faster on this CPU, and another 3-4x at
# batch sizes above 1 when it keeps freed pages instead of returning them to the kernel
# (no decay: torch reallocates the same large activation buffers every step). docs/benchmarks.md
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [ -f "$JEMALLOC" ]; then
  export LD_PRELOAD="$JEMALLOC${LD_PRELOAD:+:$LD_PRELOAD}"
  # Not background_thread: its threads hang Chromium's forked processes in the browser tests.
  export MALLOC_CONF="${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}"
  # OpenVINO's oneTBB loads hwloc with RTLD_DEEPBIND, which then frees jemalloc's memory with
  # glibc and aborts; this makes it load without deep binding (ml.backends.prepare_openvino).
  export TBB_ENABLE_SANITIZERS=1
fi
# Offline, the detector runs from the workspace's COCO YOLOv8n (never committed to the repo).
SHARED_DETECTOR="$ROOT/../shared/weights/yolov8n_int8.tflite"
if [ -z "${SKULENS_DETECTOR_WEIGHTS:-}" ] && [ -f "$SHARED_DETECTOR" ]; then
  export SKULENS_DETECTOR_WEIGHTS="$SHARED_DETECTOR"
fi
