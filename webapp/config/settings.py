"""Settings for SKU Lens. Everything comes from the environment; see README.md for the table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ml.backends import DETECTOR_BACKENDS, EMBED_BACKENDS
from ml.fuse import DEFAULT_STRATEGY, STRATEGIES
from webapp.config.env import env_bool, env_float, env_int, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = Path(env_str("SKULENS_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required")
    SECRET_KEY = "insecure-development-only-key"
ALLOWED_HOSTS = [h for h in env_str("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "webapp.accounts",
    "webapp.catalog",
    "webapp.matching",
    "webapp.review",
    "webapp.learning",
    "webapp.api",
    "webapp.audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "webapp.matching.middleware.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webapp.accounts.middleware.LoginRequiredMiddleware",
]

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
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
SERVE_MEDIA = env_bool("SKULENS_SERVE_MEDIA", True)

# Uploads: validated by content in webapp.matching.validation.
MATCH_MAX_PHOTOS = env_int("SKULENS_MAX_PHOTOS", 8)
UPLOAD_MAX_BYTES = env_int("SKULENS_UPLOAD_MAX_BYTES", 25 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env_int("SKULENS_UPLOAD_MAX_PIXELS", 40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Django's own hard stop for abuse; the friendly per-item limit is MATCH_MAX_PHOTOS.
DATA_UPLOAD_MAX_NUMBER_FILES = 100

# Matching.
EMBEDDING_MODEL = env_str("SKULENS_EMBEDDING_MODEL", "efficientnet_lite0")
INDEX_DIR = Path(env_str("SKULENS_INDEX_DIR", str(VAR_DIR / "index")))
MATCH_TOP_K = env_int("SKULENS_TOP_K", 8)
# Queued requests a worker runs through the model together (one detector call, one embedding
# pass); 1 turns batching off.
MATCH_BATCH = max(1, env_int("SKULENS_MATCH_BATCH", 8))
# How several photos and references become one score per SKU (ml.fuse.STRATEGIES).
FUSION_STRATEGY = env_str("SKULENS_FUSION", DEFAULT_STRATEGY)
if FUSION_STRATEGY not in STRATEGIES:
    raise ImproperlyConfigured(
        f"SKULENS_FUSION must be one of {', '.join(STRATEGIES)}, not {FUSION_STRATEGY!r}"
    )
# References searched per photo before fusion (ml.retrieval): the same for serving, the gate
# and the measurements, so a ranking cut at 4 is a prefix of the one cut at 8.
SEARCH_DEPTH = env_int("SKULENS_SEARCH_DEPTH", 200)
if SEARCH_DEPTH < 1:
    raise ImproperlyConfigured("SKULENS_SEARCH_DEPTH must be at least 1")
# Until a category has enough review decisions, this score marks a confident match.
CONFIDENT_SCORE = env_float("SKULENS_CONFIDENT_SCORE", 0.85)
CALIBRATION_TARGET_PRECISION = env_float("SKULENS_CALIBRATION_TARGET_PRECISION", 0.95)
CALIBRATION_MIN_DECISIONS = env_int("SKULENS_CALIBRATION_MIN_DECISIONS", 30)
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
TRAIN_EPOCHS = env_int("SKULENS_TRAIN_EPOCHS", 10)
TRAIN_IMAGE_SIZE = env_int("SKULENS_TRAIN_IMAGE_SIZE", 0)  # 0: the backbone's own
TRAIN_EMBEDDING_DIM = env_int("SKULENS_TRAIN_EMBEDDING_DIM", 256)  # 0: pooled features
# > 0: cached-trunk training (cheap on CPU); 0: end to end (use on a GPU).
TRAIN_CACHED_VIEWS = env_int("SKULENS_TRAIN_CACHED_VIEWS", 4)
TRAIN_BATCHES_PER_EPOCH = env_int("SKULENS_TRAIN_BATCHES_PER_EPOCH", 0)  # 0: one pass
TRAIN_MAX_MINUTES = env_float("SKULENS_TRAIN_MAX_MINUTES", 120.0)
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
CELERY_TASK_ROUTES = {
    "matching.run_match": {"queue": "gpu"},
    "learning.*": {"queue": "gpu"},
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
CELERY_TIMEZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env_str("SKULENS_API_THROTTLE", "600/minute")},
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
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
    },
}
