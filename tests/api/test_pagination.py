"""Listings page with ``?limit=&after=``: every row exactly once, in order, even while rows are added."""

from __future__ import annotations

import re

from tests.support.api_client import Api

NEXT = re.compile(r'<([^>]+)>; rel="next"')


def walk(api: Api, key: str, path: str, between_pages: object = None) -> list[dict]:
    """Follow the ``Link: rel=next`` chain from ``path``; call ``between_pages`` after each page."""
    rows: list[dict] = []
    url: str | None = path
    while url is not None:
        assert len(rows) < 1000, f"{path}: the next links never end"
        response = api.call("GET", url, key)
        assert response.status_code == 200, response.text
        rows += response.json()
        found = NEXT.search(response.headers.get("link", ""))
        url = found.group(1) if found else None
        if callable(between_pages):
            between_pages()
    return rows


def issue_keys(api: Api, key: str, count: int) -> None:
    for n in range(count):
        response = api.call("POST", "/api/v1/keys", key, json={"name": f"k{n}", "scopes": ["inference"]})
        assert response.status_code == 201, response.text


def test_every_page_size_walks_every_key_once_in_order(api: Api) -> None:
    admin = api.signup("pages")["api_key"]["secret"]
    issue_keys(api, admin, 6)
    everything = api.call("GET", "/api/v1/keys?limit=500", admin)
    assert everything.headers["x-total-count"] == "7" and "link" not in everything.headers
    ids = [k["id"] for k in everything.json()]
    assert len(set(ids)) == 7
    for limit in range(1, 9):
        first = api.call("GET", f"/api/v1/keys?limit={limit}", admin)
        assert len(first.json()) == min(limit, 7)
        assert ("link" in first.headers) == (limit < 7)
        assert [k["id"] for k in walk(api, admin, f"/api/v1/keys?limit={limit}")] == ids


def test_rows_added_while_walking_are_neither_skipped_nor_repeated(api: Api) -> None:
    admin = api.signup("growing")["api_key"]["secret"]
    issue_keys(api, admin, 4)
    walked = walk(api, admin, "/api/v1/keys?limit=2", between_pages=lambda: issue_keys(api, admin, 1))
    final = [k["id"] for k in api.call("GET", "/api/v1/keys?limit=500", admin).json()]
    assert [k["id"] for k in walked] == final[: len(walked)]
    assert len(walked) >= 5 and len(set(k["id"] for k in walked)) == len(walked)


def test_next_link_keeps_the_other_query_parameters(api: Api) -> None:
    admin = api.signup("filters")["api_key"]["secret"]
    issue_keys(api, admin, 2)
    response = api.call("GET", "/api/v1/keys?all_users=true&limit=1", admin)
    link = NEXT.search(response.headers["link"])
    assert link is not None and "all_users=true" in link.group(1) and "limit=1" in link.group(1)


def test_every_listing_pages(api: Api) -> None:
    """Each listing holds several rows; every page size walks them all, once each, oldest first."""
    admin = api.signup("listings")["api_key"]["secret"]
    invites, pairing_keys, users, agents = [], [], ["Admin"], []
    for n in range(4):
        invite = api.call("POST", "/api/v1/invites", admin, json={"email": f"u{n}@x.example", "role": "member"})
        assert invite.status_code == 201, invite.text
        invites.append(f"u{n}@x.example")
        pairing = api.call("POST", "/api/v1/pairing-keys", admin)
        assert pairing.status_code == 201, pairing.text
        pairing_keys.append(pairing.json()["id"])
        if n < 3:  # three invites accepted (they stay listed), three pairing keys redeemed
            accepted = api.call(
                "POST", "/api/v1/invites/accept", json={"token": invite.json()["token"], "name": f"U{n}"}
            )
            assert accepted.status_code == 201, accepted.text
            users.append(f"U{n}")
            paired = api.call(
                "POST", "/api/v1/agents/pair", json={"pairing_key": pairing.json()["secret"], "name": f"a{n}"}
            )
            assert paired.status_code == 201, paired.text
            agents.append(f"a{n}")
    listings = {
        "/api/v1/invites": ("email", invites),
        "/api/v1/pairing-keys": ("id", pairing_keys),
        "/api/v1/users": ("name", users),
        "/api/v1/agents": ("name", agents),
    }
    for path, (field, expected) in listings.items():
        everything = api.call("GET", f"{path}?limit=500", admin)
        assert everything.status_code == 200, (path, everything.text)
        assert [row[field] for row in everything.json()] == expected, path  # oldest first
        ids = [row["id"] for row in everything.json()]
        assert len(set(ids)) == len(expected) >= 3
        for limit in (1, 2, len(expected) - 1, len(expected)):
            first = api.call("GET", f"{path}?limit={limit}", admin)
            assert first.headers["x-total-count"] == str(len(expected)), path
            assert [row["id"] for row in first.json()] == ids[:limit], (path, limit)
            assert ("link" in first.headers) == (limit < len(expected)), (path, limit)
            assert [row["id"] for row in walk(api, admin, f"{path}?limit={limit}")] == ids, (path, limit)


def test_bad_paging_parameters_are_422_naming_the_field(api: Api) -> None:
    admin = api.signup("badpages")["api_key"]["secret"]
    for query, field in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("after=not-a-uuid", "after"),
        ("after=00000000-0000-0000-0000-000000000000", "after"),
    ]:
        response = api.call("GET", f"/api/v1/keys?{query}", admin)
        assert response.status_code == 422, (query, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field, (query, response.json())


def test_a_cursor_from_another_tenant_is_refused_like_an_unknown_one(api: Api) -> None:
    theirs = api.signup("theirs")["api_key"]["secret"]
    mine = api.signup("mine", email="me@mine.example")["api_key"]["secret"]
    their_key_id = api.call("GET", "/api/v1/keys", theirs).json()[0]["id"]
    response = api.call("GET", f"/api/v1/keys?all_users=true&after={their_key_id}", mine)
    assert response.status_code == 422 and response.json()["field"] == "after"
