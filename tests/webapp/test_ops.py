"""/healthz, /readyz and /metrics: open without a login, honest about what is down."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.webapp.conftest import demo_photo_upload, logged_in
from webapp.config.celery import app as celery_app
from webapp.learning.models import IndexVersion
from webapp.matching.decisions import decision_record
from webapp.matching.models import Decision, MatchRequest
from webapp.matching.requests import match_request_create
from webapp.matching.runner import match_request_run


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            out[(sample.name, labels)] = out.get((sample.name, labels), 0.0) + sample.value
    return out


def _scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return _samples(response.content.decode())


def test_healthz_needs_no_login_and_no_database() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_until_an_index_exists(db) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["index"]["ok"] is False
    assert "build_index" in body["checks"]["index"]["error"]


def test_readyz_is_ready_with_database_broker_and_index(catalogue) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert checks["index"] == {
        **checks["index"], "ok": True, "version": catalogue.name,
        "vectors": catalogue.vector_count, "source": "local",
    }


def test_readyz_reports_an_index_that_no_worker_can_fetch(catalogue, settings, tmp_path) -> None:
    settings.INDEX_DIR = tmp_path / "elsewhere"  # a fresh machine: nothing local ...
    assert Client().get("/readyz").status_code == 200  # ... but the store has it
    IndexVersion.objects.filter(pk=catalogue.pk).update(name="idx-never-uploaded")
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert "artefact store" in response.json()["checks"]["index"]["error"]


def test_readyz_is_503_when_the_broker_is_down(catalogue, monkeypatch) -> None:
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = Client().get("/readyz")
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert broker["ok"] is False and broker["error"]


def test_metrics_show_stage_latency_decisions_queues_and_live_versions(
    appraiser, catalogue
) -> None:
    client = Client()
    before = _scrape(client)
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-KIR-SUM-01")])
    assert match_request_run(request_id=request.pk)
    request.refresh_from_db()
    decision_record(request=request, user=appraiser, outcome=Decision.Outcome.ACCEPT,
                    candidate_id=request.candidates.first().pk)
    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for stage in ("load", "detect", "segment", "embed", "search", "fuse", "store"):
        assert delta("skulens_match_stage_seconds_count", stage=stage) == 1, stage
        assert delta("skulens_match_stage_seconds_sum", stage=stage) == pytest.approx(
            request.timings_ms[stage] / 1000, abs=1e-3
        )
    assert delta("skulens_match_seconds_count") == 1
    assert delta("skulens_matches_done_total") == 1
    assert delta("skulens_decisions_total", outcome="accept") == 1
    assert after[("skulens_match_requests", (("status", "done"),))] == 1
    assert ("skulens_queue_depth", (("queue", "gpu"),)) in after
    assert after[("skulens_broker_up", ())] == 1
    live = {k: v for k, v in after.items() if k[0] == "skulens_live_index_info"}
    assert list(live.values()) == [1.0]
    labels = dict(next(iter(live))[1])
    assert labels["index_version"] == catalogue.name
    assert labels["model_version"] == catalogue.model_version
    assert after[("skulens_live_index_vectors", ())] == catalogue.vector_count
    serving = dict(next(k for k, v in after.items()
                        if k[0] == "skulens_worker_serving_info" and v == 1)[1])
    assert serving == {"index_version": catalogue.name, "model_version": request.model_version}


def test_a_request_saved_again_after_done_is_not_counted_twice(appraiser, catalogue) -> None:
    client = Client()
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-KIR-SUM-01")])
    assert match_request_run(request_id=request.pk)
    before = _scrape(client)
    row = MatchRequest.objects.get(pk=request.pk)
    row.save()  # e.g. an admin edit
    assert not match_request_run(request_id=request.pk)  # a redelivered task: nothing to do
    after = _scrape(client)
    assert after[("skulens_matches_done_total", ())] == before[("skulens_matches_done_total", ())]


def test_metrics_token_when_configured(db, settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret"
    assert Client().get("/metrics").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer wrong").get("/metrics").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer scrape-secret").get("/metrics").status_code == 200


def test_index_artefacts_are_not_served_as_media(catalogue, appraiser) -> None:
    response = logged_in(appraiser).get(f"/media/artifacts/index/{catalogue.name}/manifest.json")
    assert response.status_code == 404
