from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from webapp.accounts import views as account_views
from webapp.accounts.admin_site import restrict_admin_to_catalogue_admins
from webapp.matching.media import media
from webapp.ops import views as ops_views

restrict_admin_to_catalogue_admins(admin.site)

# JSON under /api/, the HTML pages elsewhere (webapp.errors).
handler400 = "webapp.errors.bad_request"
handler403 = "webapp.errors.permission_denied"
handler404 = "webapp.errors.page_not_found"
handler500 = "webapp.errors.server_error"

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", account_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("match/", include("webapp.matching.urls")),
    path("review/", include("webapp.review.urls")),
    path("learning/", include("webapp.learning.urls")),
    path("catalog/history/", include("webapp.history.urls")),
    path("catalog/", include("webapp.catalog.urls")),
    path("api/", include("webapp.api.urls")),
    path("admin/", admin.site.urls),
    # Uploaded files only through the authorised view (webapp.matching.media), never directly.
    re_path(r"^media/(?P<path>.*)$", media, name="media"),
]
