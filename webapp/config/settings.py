"""Settings for SKU Lens. Everything comes from the environment; see README.md for the table."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webapp.config.env import env_bool, env_float, env_int, env_secret, env_str
from webapp.ml_gateway.choices import (
    DEFAULT_FUSION_STRATEGY,
    DETECTOR_BACKENDS,
    EMBED_BACKENDS,
    EVIDENCE_KINDS,
    FUSION_STRATEGIES,
)

BASE_DIR = Path(__file__).resolve().parents[2]
# Absolute: paths written under it (training CSVs, media) are read from other directories.
VAR_DIR = Path(env_str("SKULENS_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required")
    SECRET_KEY = "insecure-development-only-key"
ALLOWED_HOSTS = [h for h in env_str("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# HTTPS in production (README "Production settings"); all off by default for the embedded,
# plain-HTTP `make run`. `manage.py check --deploy` is clean with the documented values.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Load balancers probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
SESSION_COOKIE_HTTPONLY = True
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips a client's own).
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Content Security Policy (django-csp): scripts and styles only from this site. Inline style
# attributes are allowed for the computed box and progress-bar geometry, nothing else inline.
CONTENT_SECURITY_POLICY: dict[str, dict[str, list[str]]] | None = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
if env_bool("SKULENS_CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY, CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY, None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "knox",
    "axes",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "webapp.accounts",
    "webapp.catalog",
    "webapp.matching",
    "webapp.review",
    "webapp.learning",
    "webapp.history",
    "webapp.api",
    "webapp.audit",
    "webapp.ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself, compressed and cached (README, "Production").
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "webapp.matching.middleware.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webapp.accounts.middleware.LoginRequiredMiddleware",
    "webapp.errors.BadParameterMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during login into the 429 page.
    "axes.middleware.AxesMiddleware",
]
CSRF_FAILURE_VIEW = "webapp.errors.csrf_failure"

ROOT_URLCONF = "webapp.config.urls"
WSGI_APPLICATION = "webapp.config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.accounts.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default shares the file between the web server and the worker.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    # A file, not memory, so that a worker process in the tests can open the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
_on_sqlite = DATABASES["default"]["ENGINE"].endswith("sqlite3")
if os.environ.get("SKULENS_TEST_DB_NAME") and not _on_sqlite:
    # Parallel test runs on one server need their own test databases.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["SKULENS_TEST_DB_NAME"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes counts failed logins (form, token endpoint, bad API tokens) and locks out a
# username from an address after AXES_FAILURE_LIMIT failures, for the cool-off time.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SKULENS_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("SKULENS_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webapp.accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "webapp.accounts.lockout.client_ip"
AXES_VERBOSE = False
# Proxies in front of Django that append to X-Forwarded-For (0: use the socket's address, so a
# client cannot pick its own address to dodge the lockout).
PROXY_COUNT = env_int("SKULENS_PROXY_COUNT", 0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing folder
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Media go through an authorised view (webapp.matching.media). "django" streams the file;
# behind nginx "x-accel-redirect" (an internal location at MEDIA_ACCEL_PREFIX), behind Apache or
# lighttpd "x-sendfile", and the web server sends the bytes.
MEDIA_SERVER = env_str("SKULENS_MEDIA_SERVER", "django")
if MEDIA_SERVER not in ("django", "x-accel-redirect", "x-sendfile"):
    raise ImproperlyConfigured(
        "SKULENS_MEDIA_SERVER must be django, x-accel-redirect or x-sendfile"
    )
MEDIA_ACCEL_PREFIX = env_str("SKULENS_MEDIA_ACCEL_PREFIX", "/protected-media/")
# Media (photos, reference images) and the index artefact store (webapp.learning.artifacts) go
# through this storage: a local folder by default; an S3-compatible bucket with e.g.
# {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "..."}}.
try:
    MEDIA_STORAGE: dict[str, object] = json.loads(env_str("SKULENS_MEDIA_STORAGE", "{}"))
except json.JSONDecodeError as _exc:
    raise ImproperlyConfigured(f"SKULENS_MEDIA_STORAGE must be a JSON object: {_exc}") from _exc
if not isinstance(MEDIA_STORAGE, dict):
    raise ImproperlyConfigured("SKULENS_MEDIA_STORAGE must be a JSON object")
# Hashed static names (far-future caching) need `collectstatic` first: `make serve` runs it.
STATIC_MANIFEST = env_bool("SKULENS_STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {
        "BACKEND": MEDIA_STORAGE.get("BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": MEDIA_STORAGE.get("OPTIONS", {}),
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}

# Uploads: validated by content in webapp.matching.validation.
MATCH_MAX_PHOTOS = env_int("SKULENS_MAX_PHOTOS", 8)
UPLOAD_MAX_BYTES = env_int("SKULENS_UPLOAD_MAX_BYTES", 25 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env_int("SKULENS_UPLOAD_MAX_PIXELS", 40_000_000)
# The stored working copy (what the worker and the browser see) is at most this long a side.
PHOTO_MAX_SIDE = env_int("SKULENS_PHOTO_MAX_SIDE", 4096)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Django's own hard stop for abuse; the friendly per-item limit is MATCH_MAX_PHOTOS.
DATA_UPLOAD_MAX_NUMBER_FILES = 100

# Bounded work (webapp.params): search text longer than this is refused with a 400.
SEARCH_MAX_CHARS = env_int("SKULENS_SEARCH_MAX_CHARS", 100)
SEARCH_MAX_WORDS = env_int("SKULENS_SEARCH_MAX_WORDS", 8)

# Matching.
EMBEDDING_MODEL = env_str("SKULENS_EMBEDDING_MODEL", "efficientnet_lite0")
INDEX_DIR = Path(env_str("SKULENS_INDEX_DIR", str(VAR_DIR / "index")))
# Reference images' boxes and masks by content and isolator (webapp.catalog.isolations):
# a cache that spares re-isolating the catalogue for every model that embeds it.
ISOLATION_CACHE_DIR = Path(
    env_str("SKULENS_ISOLATION_CACHE_DIR", str(VAR_DIR / "cache" / "isolations"))
)
MATCH_TOP_K = env_int("SKULENS_TOP_K", 8)
# Queued requests a worker runs through the model together (one detector call, one embedding
# pass); 1 turns batching off.
MATCH_BATCH = max(1, env_int("SKULENS_MATCH_BATCH", 8))
# How several photos and references become one score per SKU (ml.fuse.STRATEGIES).
FUSION_STRATEGY = env_str("SKULENS_FUSION", DEFAULT_FUSION_STRATEGY)
if FUSION_STRATEGY not in FUSION_STRATEGIES:
    raise ImproperlyConfigured(
        f"SKULENS_FUSION must be one of {', '.join(FUSION_STRATEGIES)}, not {FUSION_STRATEGY!r}"
    )
# Re-ranking (ml.rerank): the first RERANK_TOP_K candidates checked with local features, text on
# the item, attribute heads and what the appraiser typed, fused into a calibrated probability.
RERANK = env_bool("SKULENS_RERANK", True)
RERANK_TOP_K = env_int("SKULENS_RERANK_TOP_K", 8)
RERANK_EVIDENCE = tuple(
    k.strip() for k in env_str(
        "SKULENS_RERANK_EVIDENCE", "spatial,text,attributes,query_text,soft_attributes"
    ).split(",") if k.strip()
)
_unknown_evidence = set(RERANK_EVIDENCE) - set(EVIDENCE_KINDS)
if _unknown_evidence:
    raise ImproperlyConfigured(
        f"SKULENS_RERANK_EVIDENCE: unknown kinds {sorted(_unknown_evidence)}; "
        f"choose from {', '.join(EVIDENCE_KINDS)}"
    )
# Text is read only when the first two candidates' cosines are closer than this (its cost).
RERANK_OCR_MARGIN = env_float("SKULENS_RERANK_OCR_MARGIN", 0.04)
# Decided requests before the fusion is refitted on them (daily, with the thresholds).
FUSION_MIN_DECISIONS = env_int("SKULENS_FUSION_MIN_DECISIONS", 50)
# References searched per photo before fusion (ml.retrieval): the same for serving, the gate
# and the measurements, so a ranking cut at 4 is a prefix of the one cut at 8.
SEARCH_DEPTH = env_int("SKULENS_SEARCH_DEPTH", 200)
if SEARCH_DEPTH < 1:
    raise ImproperlyConfigured("SKULENS_SEARCH_DEPTH must be at least 1")
# Until a category has enough review decisions, this score marks a confident match.
CONFIDENT_SCORE = env_float("SKULENS_CONFIDENT_SCORE", 0.85)
CALIBRATION_TARGET_PRECISION = env_float("SKULENS_CALIBRATION_TARGET_PRECISION", 0.95)
CALIBRATION_MIN_DECISIONS = env_int("SKULENS_CALIBRATION_MIN_DECISIONS", 30)
# After a worker task, freed memory the allocator keeps beyond this goes back (webapp.memory).
RETAINED_MEMORY_MB = env_int("SKULENS_RETAINED_MEMORY_MB", 2048)


def _templates_digest(root: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(root.rglob("*.html")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Part of every page ETag: a deploy with other templates revalidates what browsers keep.
# Set SKULENS_RELEASE (e.g. the commit) when views change what a template is given.
RELEASE = env_str("SKULENS_RELEASE", "") or _templates_digest(BASE_DIR / "templates")
# Pages read the fitted thresholds from the cache for this long (a refit clears it).
CALIBRATION_CACHE_S = env_int("SKULENS_CALIBRATION_CACHE_S", 60)
# The QA queue's filter bar keeps its model versions this long (a new bad case clears them).
QUEUE_CHOICES_CACHE_S = env_int("SKULENS_QUEUE_CHOICES_CACHE_S", 30)
# Shared cache (e.g. redis://localhost:6379/1) so that a refit clears it for every process;
# empty: each process keeps its own in memory.
CACHE_URL = env_str("SKULENS_CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Confirmed appraisal photos as new reference images: "corrections", "all" or "none".
GALLERY_ENRICHMENT = env_str("SKULENS_GALLERY_ENRICHMENT", "corrections")
if GALLERY_ENRICHMENT not in ("corrections", "all", "none"):
    raise ImproperlyConfigured("SKULENS_GALLERY_ENRICHMENT must be corrections, all or none")
GALLERY_MAX_APPRAISAL_IMAGES = env_int("SKULENS_GALLERY_MAX_APPRAISAL_IMAGES", 20)
# Seconds during which appraisers may undo their own decision; 0 switches undo off.
UNDO_WINDOW_S = env_float("SKULENS_UNDO_WINDOW_S", 300.0)
if UNDO_WINDOW_S < 0:
    raise ImproperlyConfigured("SKULENS_UNDO_WINDOW_S must be 0 (off) or a number of seconds")
# Reference images of different SKUs closer than this cosine are listed as near-duplicates.
CATALOGUE_DUPLICATE_COSINE = env_float("SKULENS_DUPLICATE_COSINE", 0.97)

# The learning loop (webapp.learning: training runs, model registry, gate, promotion).
TRAINING_DIR = Path(env_str("SKULENS_TRAINING_DIR", str(VAR_DIR / "training")))
MODELS_DIR = Path(env_str("SKULENS_MODELS_DIR", str(VAR_DIR / "models")))
# Retention (webapp.learning.retention): besides the live pair and the latest rollback target,
# the newest N index versions and N trained checkpoints are kept; older files are deleted.
RETENTION_INDEX_VERSIONS = max(1, env_int("SKULENS_RETENTION_INDEX_VERSIONS", 5))
RETENTION_MODELS = max(1, env_int("SKULENS_RETENTION_MODELS", 5))
# Resolved bad cases (with a correct SKU) since the last run that start a retraining.
RETRAIN_MIN_BAD_CASES = env_int("SKULENS_RETRAIN_MIN_BAD_CASES", 50)
RETRAIN_CHECK_S = env_float("SKULENS_RETRAIN_CHECK_S", 900.0)
AUTO_PROMOTE = env_bool("SKULENS_AUTO_PROMOTE", True)
TRAIN_BACKBONE = env_str("SKULENS_TRAIN_BACKBONE", "efficientnet_lite0")
# The defaults are the best recipe measured (docs/training.md): end to end at 224 px, 24 epochs
# of a cosine schedule that a budget shortens to fit.
TRAIN_EPOCHS = env_int("SKULENS_TRAIN_EPOCHS", 24)
TRAIN_IMAGE_SIZE = env_int("SKULENS_TRAIN_IMAGE_SIZE", 0)  # 0: the backbone's own
TRAIN_EMBEDDING_DIM = env_int("SKULENS_TRAIN_EMBEDDING_DIM", 256)  # 0: pooled features
# 0: end to end (the recipe); > 0: cached-trunk training (much cheaper, much weaker).
TRAIN_CACHED_VIEWS = env_int("SKULENS_TRAIN_CACHED_VIEWS", 0)
TRAIN_BATCHES_PER_EPOCH = env_int("SKULENS_TRAIN_BATCHES_PER_EPOCH", 0)  # 0: one pass
TRAIN_MAX_MINUTES = env_float("SKULENS_TRAIN_MAX_MINUTES", 45.0)
# Any other ml.train.TrainConfig field, as JSON, e.g. {"loss": "triplet_semihard"}.
try:
    TRAIN_OPTIONS: dict[str, object] = json.loads(env_str("SKULENS_TRAIN_OPTIONS", "{}"))
except json.JSONDecodeError as _exc:
    raise ImproperlyConfigured(f"SKULENS_TRAIN_OPTIONS must be a JSON object: {_exc}") from _exc
if not isinstance(TRAIN_OPTIONS, dict):
    raise ImproperlyConfigured("SKULENS_TRAIN_OPTIONS must be a JSON object")
# The gate: R@1 on held-out confirmed photos must gain more than GATE_MIN_GAIN; Top-4, MAP@R,
# catalogue-only R@1 and the replay of past confirmed matches may not drop by more than
# GATE_TOLERANCE (webapp.learning.gate_rule).
GATE_TOLERANCE = env_float("SKULENS_GATE_TOLERANCE", 0.01)
GATE_MIN_GAIN = env_float("SKULENS_GATE_MIN_GAIN", 0.0)
GATE_HOLDOUT_PERCENT = env_int("SKULENS_GATE_HOLDOUT_PERCENT", 15)
GATE_MIN_HOLDOUT = env_int("SKULENS_GATE_MIN_HOLDOUT", 20)
GATE_REPLAY_LIMIT = env_int("SKULENS_GATE_REPLAY_LIMIT", 2000)
# A drop beyond the tolerance passes, up to GATE_MAX_DROP, when a paired sign test over the
# queries does not find the candidate worse at level GATE_ALPHA (small held-out sets are noisy).
GATE_MAX_DROP = env_float("SKULENS_GATE_MAX_DROP", 0.05)
GATE_ALPHA = env_float("SKULENS_GATE_ALPHA", 0.05)
TORCH_DEVICE = env_str("SKULENS_TORCH_DEVICE", "auto")
# CPU threads for torch (0: every core). One thread avoids oversubscription on a busy host.
TORCH_THREADS = env_int("SKULENS_TORCH_THREADS", 0)
# Subject isolation. "yolov8n.pt" is downloaded by ultralytics where there is internet; offline,
# point this at a local .pt/.onnx/.tflite file. Empty disables detection (full frame).
DETECTOR_WEIGHTS = env_str("SKULENS_DETECTOR_WEIGHTS", "yolov8n.pt")
DETECTOR_IMAGE_SIZE = env_int("SKULENS_DETECTOR_IMAGE_SIZE", 320)
DETECTOR_MIN_CONFIDENCE = env_float("SKULENS_DETECTOR_MIN_CONFIDENCE", 0.15)
SEGMENTATION = env_str("SKULENS_SEGMENTATION", "grabcut")
if SEGMENTATION not in ("grabcut", "none"):
    raise ImproperlyConfigured("SKULENS_SEGMENTATION must be 'grabcut' or 'none'")
# Inference runtimes (ml.backends): "auto" = the fastest installed on CPU, PyTorch/ultralytics
# on CUDA. Exports of the embedding network are cached beside each checkpoint; pretrained
# backbones' (and read-only checkpoints') go to EXPORT_DIR.
EMBED_BACKEND = env_str("SKULENS_EMBED_BACKEND", "auto")
if EMBED_BACKEND not in EMBED_BACKENDS:
    raise ImproperlyConfigured(f"SKULENS_EMBED_BACKEND must be one of {', '.join(EMBED_BACKENDS)}")
DETECTOR_BACKEND = env_str("SKULENS_DETECTOR_BACKEND", "auto")
if DETECTOR_BACKEND not in DETECTOR_BACKENDS:
    raise ImproperlyConfigured(
        f"SKULENS_DETECTOR_BACKEND must be one of {', '.join(DETECTOR_BACKENDS)}"
    )
EXPORT_DIR = Path(env_str("SKULENS_EXPORT_DIR", str(VAR_DIR / "exports")))
# Photos per pipeline step in the worker: detection and segmentation of the next step overlap
# the embedding of the current one, each stage on half the cores; 0 = one stage at a time.
OVERLAP_PHOTOS = env_int("SKULENS_OVERLAP_PHOTOS", 2)
if OVERLAP_PHOTOS < 0:
    raise ImproperlyConfigured("SKULENS_OVERLAP_PHOTOS must be >= 0")
# Fault injection for the worker-kill test: seconds to sleep between claiming and storing.
MATCH_TEST_DELAY_S = env_float("SKULENS_MATCH_TEST_DELAY_S", 0.0)

# Operations (webapp.ops): /healthz, /readyz and /metrics. Prometheus metrics are written by
# every process (gunicorn workers, Celery workers) into one folder per machine and summed on
# scrape (prometheus-client's multiprocess mode); the variable must be set before the client
# is imported, which settings are.
METRICS_DIR = Path(env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics")))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
METRICS_DIR.mkdir(parents=True, exist_ok=True)
# Bearer token for /metrics; empty: open (keep it behind the proxy).
METRICS_TOKEN = env_secret("SKULENS_METRICS_TOKEN") or ""
# A Celery worker also serves its machine's metrics on this port (GPU hosts without a web
# process); 0 = off.
WORKER_METRICS_PORT = env_int("SKULENS_WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDR = env_str("SKULENS_WORKER_METRICS_ADDR", "127.0.0.1")

# Celery. The embedded default uses kombu's filesystem transport: no server to run.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    # Unacked messages of a killed worker come back after this many seconds (Redis).
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 3600),
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        data_folder_in=str(CELERY_BROKER_DIR / "queue"),
        data_folder_out=str(CELERY_BROKER_DIR / "queue"),
        processed_folder=str(CELERY_BROKER_DIR / "processed"),
        control_folder=str(CELERY_BROKER_DIR / "control"),
        store_processed=False,
    )
    # Both the web process (publisher) and the worker need the folders.
    for _folder in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Every task's queue, here and nowhere else. gpu: where the models are (the solo-pool workers
# every deployment runs); default: CPU and disk work, and the beat tasks.
CELERY_TASK_ROUTES = {
    "matching.run_match": {"queue": "gpu"},
    "matching.record_failure": {"queue": "gpu"},
    "learning.*": {"queue": "gpu"},
    "catalog.scan_duplicates": {"queue": "gpu"},
    "history.isolate_photos": {"queue": "gpu"},
    "history.run_import": {"queue": "default"},
}
# Uploaded catalogue import zips are kept this long (for the dry run, then the apply).
IMPORT_BUNDLE_DAYS = env_int("SKULENS_IMPORT_BUNDLE_DAYS", 7)
CELERY_BEAT_SCHEDULE = {
    "index-sync-hourly": {"task": "learning.sync_index", "schedule": 3600.0},
    "thresholds-daily": {"task": "matching.recalibrate_thresholds", "schedule": 86400.0},
    "retraining-check": {"task": "learning.check_retraining", "schedule": RETRAIN_CHECK_S},
    "import-uploads-daily": {"task": "catalog.prune_import_bundles", "schedule": 86400.0},
    "artifacts-prune-daily": {"task": "learning.prune_artifacts", "schedule": 86400.0},
}
# Never stuck (webapp.sweeper): a beat task re-sends the tasks of rows whose message was lost.
SWEEP_INTERVAL_S = env_float("SKULENS_SWEEP_INTERVAL_S", 60.0)
# A QUEUED row whose last message is older than this is sent again (duplicates are harmless).
REQUEUE_AFTER_S = env_float("SKULENS_REQUEUE_AFTER_S", 120.0)
# A RUNNING match whose worker has not written a heartbeat for this long lost its worker.
MATCH_STALE_S = env_float("SKULENS_MATCH_STALE_S", 60.0)
MATCH_HEARTBEAT_S = max(0.5, MATCH_STALE_S / 6)
# Promotions and duplicate scans have no heartbeat: RUNNING this long means lost.
LONG_TASK_STALE_S = env_float("SKULENS_LONG_TASK_STALE_S", 3600.0)
SWEEP_BATCH = env_int("SKULENS_SWEEP_BATCH", 500)
CELERY_BEAT_SCHEDULE["sweep-stuck-work"] = {
    "task": "matching.sweep_stuck_work", "schedule": SWEEP_INTERVAL_S,
}
CELERY_TIMEZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.api.auth.AuditedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("SKULENS_API_THROTTLE", "600/minute"),
        # The token endpoint, per client address (axes locks out repeated failures).
        "login": env_str("SKULENS_LOGIN_THROTTLE", "20/minute"),
    },
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
# Mobile-app tokens (django-rest-knox): hashed at rest, one per device, expiring; each use
# slides the expiry forward, up to TOKEN_MAX_DAYS after the token was issued.
REST_KNOX: dict[str, Any] = {  # knox reads several kinds of value
    "TOKEN_TTL": timedelta(hours=env_float("SKULENS_TOKEN_TTL_HOURS", 168.0)),
    "AUTO_REFRESH": True,
    "AUTO_REFRESH_MAX_TTL": timedelta(days=env_float("SKULENS_TOKEN_MAX_DAYS", 90.0)),
    "TOKEN_LIMIT_PER_USER": env_int("SKULENS_TOKEN_LIMIT_PER_USER", 10),
    "AUTH_HEADER_PREFIX": "Token",
}
# One "token.use" audit entry per token per this many seconds (every request would flood it).
TOKEN_AUDIT_INTERVAL_S = env_int("SKULENS_TOKEN_AUDIT_INTERVAL_S", 300)
# The OpenAPI schema and Swagger UI need a login unless this opens them.
API_DOCS_PUBLIC = env_bool("SKULENS_API_DOCS_PUBLIC", False)

SPECTACULAR_SETTINGS = {
    "TITLE": "SKU Lens API",
    "DESCRIPTION": "Photo-to-SKU matching: post photos, get ranked catalogue candidates.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets are served locally: the app must work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("SKULENS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "faiss.loader": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
