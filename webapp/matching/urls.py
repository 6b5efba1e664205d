from django.urls import path

from webapp.matching import views

app_name = "matching"
urlpatterns = [
    path("", views.home, name="home"),
    path("new", views.create, name="create"),
    path("skus", views.sku_lookup, name="sku_lookup"),
    path("history", views.history, name="history"),
    path("<int:request_id>/", views.detail, name="detail"),
    path("<int:request_id>/decide", views.decide, name="decide"),
    path("<int:request_id>/undo", views.undo, name="undo"),
    path("<int:request_id>/photos/<int:position>/crop.jpg", views.crop, name="crop"),
    path("<int:request_id>/retry", views.retry, name="retry"),
    path("<int:request_id>/photos/<int:position>/box", views.correct_box, name="correct_box"),
]
