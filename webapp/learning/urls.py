from django.urls import path

from webapp.learning import views

app_name = "learning"
urlpatterns = [
    path("", views.home, name="home"),
    path("runs/new", views.run_create, name="run_create"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/cancel", views.run_cancel, name="run_cancel"),
    path("models/<int:model_id>/", views.model_detail, name="model"),
    path("models/<int:model_id>/activate", views.model_activate, name="model_activate"),
]
