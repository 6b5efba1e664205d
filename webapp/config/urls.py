from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve

from webapp.accounts import views as account_views
from webapp.accounts.admin_site import restrict_admin_to_catalogue_admins

restrict_admin_to_catalogue_admins(admin.site)

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", account_views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("match/", include("webapp.matching.urls")),
    path("review/", include("webapp.review.urls")),
    path("learning/", include("webapp.learning.urls")),
    path("catalog/history/", include("webapp.history.urls")),
    path("catalog/", include("webapp.catalog.urls")),
    path("api/", include("webapp.api.urls")),
    path("admin/", admin.site.urls),
]

if settings.SERVE_MEDIA:
    # Media are served by Django in the embedded setup; put a web server in front in production.
    urlpatterns += [
        re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
    ]
