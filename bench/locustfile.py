"""Load for bench/rehearsal.py (bounded: every user stops by itself, and --run-time caps it).

Scenarios (LOCUST_SCENARIO):

* ``rehearsal``: ``Uploader`` x 200 (fixed): each posts one photo to ``/api/v1/matches`` with its
  own API token, under a unique file name (the rehearsal finds each upload's row by it), then
  polls its match over the API once a second until it is done; ``Reviewer`` x 50: QA users who
  reload the QA queue and a bad case's page every 2-4 s, until every upload is done.
* ``pages``: ``PagePoller`` x 50: appraisers polling their finished result page (htmx partial)
  and QA users polling the queue, 0.5-1.5 s apart, for --run-time.
* ``enqueue``: ``Enqueuer``: appraisers posting one photo every 0.5-1.5 s, for --run-time.

The users, tokens and session cookies come from LOCUST_USERS (a JSON file written by the
rehearsal), the photos from LOCUST_PHOTOS (a folder of JPEGs).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from pathlib import Path

from locust import HttpUser, between, constant, events, task
from locust.exception import StopUser

SCENARIO = os.environ.get("LOCUST_SCENARIO", "rehearsal")
_users_file = os.environ.get("LOCUST_USERS")
USERS = json.loads(Path(_users_file).read_text()) if _users_file else {}
PHOTOS = sorted(Path(os.environ.get("LOCUST_PHOTOS", ".")).glob("*.jpg"))
TAG = os.environ.get("LOCUST_TAG", "run")
_lock = threading.Lock()
_counter = itertools.count()
_state = {"uploads_done": 0}


def _next(kind: str) -> dict:
    with _lock:
        n = next(_counter)
    pool = USERS[kind]
    return {**pool[n % len(pool)], "n": n}


class Uploader(HttpUser):
    fixed_count = int(os.environ.get("LOCUST_UPLOADS", "200")) if SCENARIO == "rehearsal" else 0
    weight = 1
    wait_time = constant(1)

    def on_start(self) -> None:
        me = _next("uploaders")
        self.headers = {"Authorization": f"Token {me['token']}"}
        self.name_tag = f"{TAG}-{me['n']:04d}.jpg"
        self.photo = PHOTOS[me["n"] % len(PHOTOS)].read_bytes()
        self.match_id: int | None = None

    @task
    def upload_then_poll(self) -> None:
        if self.match_id is None:
            with self.client.post(
                "/api/v1/matches", headers=self.headers, name="POST /api/v1/matches",
                files={"photos": (self.name_tag, self.photo, "image/jpeg")}, catch_response=True,
            ) as response:
                if response.status_code != 202:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
                    with _lock:  # finished, as a failure the rehearsal reports
                        _state["uploads_done"] += 1
                    raise StopUser()
                self.match_id = response.json()["id"]
            return
        response = self.client.get(f"/api/v1/matches/{self.match_id}", headers=self.headers,
                                   name="GET /api/v1/matches/[id]")
        if response.ok and response.json()["status"] in ("done", "failed"):
            with _lock:
                _state["uploads_done"] += 1
            raise StopUser()


class Reviewer(HttpUser):
    fixed_count = int(os.environ.get("LOCUST_REVIEWERS", "50")) if SCENARIO == "rehearsal" else 0
    weight = 1
    wait_time = between(2, 4)

    def on_start(self) -> None:
        me = _next("reviewers")
        self.client.cookies.set("sessionid", me["session"])
        self.cases = USERS.get("bad_cases") or []

    @task(3)
    def queue(self) -> None:
        self._stop_when_drained()
        self.client.get("/review/", name="GET /review/ (QA queue)")

    @task(1)
    def case(self) -> None:
        self._stop_when_drained()
        if self.cases:
            self.client.get(f"/review/{random.choice(self.cases)}/", name="GET /review/[id]/")

    def _stop_when_drained(self) -> None:
        uploads = int(os.environ.get("LOCUST_UPLOADS", "200"))
        if _state["uploads_done"] >= uploads:
            raise StopUser()


class PagePoller(HttpUser):
    fixed_count = int(os.environ.get("LOCUST_PAGE_USERS", "50")) if SCENARIO == "pages" else 0
    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        me = _next("pollers")
        self.client.cookies.set("sessionid", me["session"])
        self.page = me["page"]
        self.htmx = {"HX-Request": "true"} if me["role"] == "appraiser" else {}
        self.label = "GET /match/[id]/ (result, htmx)" if me["role"] == "appraiser" else (
            "GET /review/ (QA queue)")

        self.etag = ""

    @task
    def poll(self) -> None:
        # As a browser's cache does: the last ETag goes back, a 304 reuses the kept page.
        headers = {**self.htmx, **({"If-None-Match": self.etag} if self.etag else {})}
        with self.client.get(self.page, headers=headers, name=self.label,
                             catch_response=True) as response:
            if response.status_code in (200, 304):
                self.etag = response.headers.get("ETag", self.etag)
                response.success()


class Enqueuer(HttpUser):
    fixed_count = int(os.environ.get("LOCUST_ENQUEUE_USERS", "10")) if SCENARIO == "enqueue" else 0
    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        me = _next("uploaders")
        self.headers = {"Authorization": f"Token {me['token']}"}
        self.photo = PHOTOS[me["n"] % len(PHOTOS)].read_bytes()
        self.n = me["n"]

    @task
    def enqueue(self) -> None:
        self.client.post("/api/v1/matches", headers=self.headers, name="POST /api/v1/matches",
                         files={"photos": (f"{TAG}-{self.n}.jpg", self.photo, "image/jpeg")})


@events.test_start.add_listener
def _start(environment, **_: object) -> None:
    if not USERS:
        raise RuntimeError("LOCUST_USERS must name the users file written by bench/rehearsal.py")
    if SCENARIO == "rehearsal":
        def watch() -> None:
            import gevent

            uploads = int(os.environ.get("LOCUST_UPLOADS", "200"))
            while _state["uploads_done"] < uploads:
                gevent.sleep(1)
            gevent.sleep(1)
            environment.runner.quit()

        import gevent

        gevent.spawn(watch)
