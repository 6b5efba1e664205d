from django.urls import path

from webapp.review import views

app_name = "review"
urlpatterns = [path("", views.queue, name="queue")]
