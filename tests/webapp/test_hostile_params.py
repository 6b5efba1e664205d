"""Every URL pattern, every method, with hostile path values, query parameters and form data:
never a 500, and the search endpoints refuse unbounded text with a clear 400."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern, RoutePattern

from tests.webapp.conftest import logged_in
from tests.webapp.factories import UserFactory
from tests.webapp.hostile import HUGE, WORDS_5000, World, build_world

pytestmark = pytest.mark.django_db

PARAM = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
QUERY_NAMES = ["q", "page", "category", "brand", "series", "status", "request_id", "days",
               "show", "cause", "sort", "age", "model_version", "action", "active",
               "active_only", "was", "cancel", "format", "limit", "offset", "ordering"]


def _routes(patterns: list, prefix: str = "") -> Iterator[str]:
    """Route strings of every URL pattern ("match/<int:request_id>/decide", ...)."""
    for entry in patterns:
        pattern = entry.pattern
        if isinstance(pattern, RoutePattern):
            part = str(pattern)
        elif isinstance(pattern, RegexPattern):
            part = pattern.regex.pattern.lstrip("^").rstrip("$").replace("\\Z", "")
            part = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<path:\1>", part)
            if "(" in part or "[" in part:  # an admin alternation: use one concrete value
                part = re.sub(r"\((?:\?P<\w+>)?([\w-]+)\|[^)]*\)", r"\1", part)
            if "(" in part or "[" in part or "\\" in part:
                continue
        else:
            continue
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + part)
        elif isinstance(entry, URLPattern):
            yield prefix + part


def _fill(route: str, values: dict[str, str]) -> str:
    return "/" + PARAM.sub(lambda m: values[m.group("name")], route)


def _variants(route: str, ids: dict[str, int]) -> list[tuple[str, bool]]:
    """(url, is_real): the route with real ids, then with zero and huge values."""
    names = [m.group("name") for m in PARAM.finditer(route)]
    if not names:
        return [(_fill(route, {}), True)]
    converters = {m.group("name"): m.group("converter") or "str" for m in PARAM.finditer(route)}

    def value(name: str, kind: str) -> str:
        if converters[name] == "int":
            return {"real": str(ids.get(name, 1)), "zero": "0", "huge": HUGE}[kind]
        return {"real": "x", "zero": "..%2F..%2Fetc%2Fpasswd", "huge": "z" * 3000}[kind]

    return [(_fill(route, {n: value(n, kind) for n in names}), kind == "real")
            for kind in ("real", "zero", "huge")]


HOSTILE_QUERIES = [
    {**{name: HUGE for name in QUERY_NAMES}, "q": WORDS_5000},
    {name: "abc\x00" for name in QUERY_NAMES},
    {name: "-1" for name in QUERY_NAMES},
]
HOSTILE_FORM = {
    "q": WORDS_5000, "outcome": "x" * 5000, "candidate": HUGE, "sku": "-5", "note": "n" * 50_000,
    "x0": "nan", "y0": "inf", "x1": "1e309", "y1": "-0", "ids": [HUGE, "abc", "-1"],
    "action": "explode", "cause": "\x00", "causes": ["zzz"], "correct_sku": HUGE,
    "status": "<b>", "name": "\x00" * 10, "code": "c" * 500, "threshold": "1e309",
    "keep": HUGE, "into": "nope", "position": HUGE, "epochs": HUGE, "options": "{",
    "category": HUGE, "brand": "[]", "series": "{}", "back": "//evil.example/",
}


def _superuser() -> User:
    return UserFactory(username="root", email="root@example.com", superuser=True)


@pytest.fixture
def world(appraiser) -> World:
    return build_world(appraiser)


def _not_ready(url: str, response) -> bool:
    """/readyz answers 503 by design while the broker or the index is not there."""
    return url == "/readyz" and response.status_code == 503 and (
        response.json()["status"] == "unavailable")


def _walk(client: Client, urls: list[tuple[str, bool]], methods: tuple[str, ...]) -> list[str]:
    """Real ids get every method with every hostile input; zero and huge ids a GET and a POST."""
    failures = []
    for url, real in urls:
        sends = []
        for method in methods if real else ("get", "post"):
            if method == "get":
                sends += [client.get(url, query) for query in HOSTILE_QUERIES] if real else [
                    client.get(url)]
            elif method == "post":
                sends += [client.post(url, HOSTILE_FORM)]
                if real:
                    sends += [client.post(url, "{not json", content_type="application/json")]
            else:
                sends += [getattr(client, method)(url)]
        failures += [f"{r.request['REQUEST_METHOD']} {url[:120]} -> {r.status_code}"
                     for r in sends if r.status_code >= 500 and not _not_ready(url, r)]
    return failures


def test_route_discovery_sees_the_app() -> None:
    routes = set(_routes(get_resolver().url_patterns))
    for name in ("matching:detail", "api:match-decision", "review:crop", "catalog:audit_user"):
        path = reverse(name, args=[1] * (2 if name == "review:crop" else 1))
        assert any(re.fullmatch(PARAM.sub(r"[^/]+", r), path.lstrip("/")) for r in routes), name
    assert len(routes) > 60


def test_every_url_with_hostile_input_never_gives_500(world, appraiser) -> None:
    routes = sorted(set(_routes(get_resolver().url_patterns)))
    # The Django admin repeats five views per model: walk them in full for two models, and
    # each model's list (its search box and filters) for the rest.
    admin = [r for r in routes if r.startswith("admin/")]
    sampled = [r for r in admin if r.startswith(("admin/matching/matchrequest/",
                                                 "admin/catalog/sku/"))
               or r.count("/") <= 3]
    urls = [url for route in [r for r in routes if not r.startswith("admin/")] + sampled
            for url in _variants(route, world.ids())]
    client = logged_in(_superuser())  # holds every role: reaches every view's code
    client.raise_request_exception = False
    failures = _walk(client, urls, ("get", "post", "put", "patch", "delete"))
    # An appraiser goes down the ownership paths too.
    owner = logged_in(appraiser)
    owner.raise_request_exception = False
    failures += _walk(owner, [u for u in urls if u[0].startswith(("/match", "/api", "/media"))],
                      ("get", "post"))
    assert not failures, "\n".join(failures[:50])


SEARCHES = ["matching:sku_lookup", "review:sku_lookup", "catalog:home", "api:sku-list"]


@pytest.mark.parametrize("name", SEARCHES)
@pytest.mark.parametrize("q", [WORDS_5000, "x" * 5000, " ".join(["bag"] * 9)])
def test_unbounded_search_text_is_refused_clearly(name, q, qa_user, catalogue_admin, appraiser):
    superuser = logged_in(_superuser())
    response = superuser.get(reverse(name), {"q": q})
    assert response.status_code == 400, (name, response.status_code)
    text = response.content.decode()
    if name.startswith("api:"):
        assert response.json()["error"]["code"] == "invalid"
        assert "q" in response.json()["error"]["fields"]
    else:
        assert "q: at most" in text


@pytest.mark.parametrize("name", SEARCHES)
def test_bounded_search_still_works(name, world) -> None:
    response = logged_in(_superuser()).get(reverse(name), {"q": "world bag"})
    assert response.status_code == 200


@pytest.mark.parametrize("query,field", [
    ({"request_id": "abc"}, "request_id"), ({"request_id": HUGE}, "request_id"),
])
def test_bad_request_id_on_the_result_search_is_a_400(query, field, appraiser) -> None:
    response = logged_in(appraiser).get(reverse("matching:sku_lookup"), {"q": "a", **query})
    assert response.status_code == 400
    assert f"{field}: must be" in response.content.decode()
