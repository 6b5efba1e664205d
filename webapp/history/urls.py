from django.urls import path

from webapp.history import views

app_name = "history"
urlpatterns = [
    path("", views.start, name="import"),
    path("<int:import_id>/", views.detail, name="detail"),
    path("<int:import_id>/status", views.status, name="status"),
    path("<int:import_id>/apply", views.apply, name="apply"),
]
