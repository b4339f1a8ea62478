"""`bccd-yolo serve`: the page's counts are the CLI's, bad files are reported beside good ones, the upload limit,
the token on a non-loopback host, no path traversal in downloads, and the page itself in a headless browser."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import BCCD_SOURCE, REPO
from fastapi.testclient import TestClient

from bccd_yolo.cli import main
from bccd_yolo.serve.app import create_app
from bccd_yolo.serve.settings import ServeSettings

PHOTO = BCCD_SOURCE / "BCCD" / "JPEGImages" / "BloodImage_00007.jpg"


@pytest.fixture(scope="module")
def cli_counts(tmp_path_factory) -> tuple[dict, str]:
    """What `bccd-yolo count PHOTO --json --csv` writes for the photo."""
    assert PHOTO.is_file(), PHOTO
    out = tmp_path_factory.mktemp("cli")
    assert main(["count", str(PHOTO), "--json", str(out / "c.json"), "--csv", str(out / "c.csv"), "--quiet"]) == 0
    return json.loads((out / "c.json").read_text()), (out / "c.csv").read_text()


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeSettings())) as c:
        yield c


def upload(client: TestClient, *files: tuple[str, bytes], **fields: str):
    return client.post("/api/count", files=[("files", (name, data)) for name, data in files], data=fields)


def without_path(text: str) -> list[list[str]]:
    return [row[1:] for row in csv.reader(io.StringIO(text))]


def test_page_counts_equal_the_cli(client, cli_counts):
    r = upload(client, (PHOTO.name, PHOTO.read_bytes()))
    assert r.status_code == 200, r.text
    data = r.json()
    want = cli_counts[0]["images"][0]
    got = data["images"][0]
    assert got["counts"] == want["counts"] and got["ratios"] == want["ratios"] and data["total"] == cli_counts[0]["total"]
    assert got["name"] == PHOTO.name and data["messages"] == []
    assert got.get("differential") == want.get("differential")
    csv_text = client.get(data["downloads"]["csv"]).text
    assert without_path(csv_text) == without_path(cli_counts[1])
    assert next(csv.reader(io.StringIO(csv_text.splitlines()[1])))[0] == PHOTO.name
    assert client.get(data["downloads"]["json"]).json()["images"][0]["counts"] == want["counts"]
    overlay = client.get(got["overlay_url"])
    assert overlay.status_code == 200 and overlay.content[:2] == b"\xff\xd8"  # a JPEG
    geo = client.get(got["geojson_url"]).json()
    assert len(geo["features"]) == sum(want["counts"].values())
    assert client.get("/").text.startswith("<!doctype html>")


def test_a_bad_file_is_a_message_and_the_good_one_is_counted(client, cli_counts):
    r = upload(client, ("notes.txt", b"not an image"), ("fake.jpg", b"not a jpeg either"), (PHOTO.name, PHOTO.read_bytes()))
    assert r.status_code == 200, r.text
    data = r.json()
    assert [im["counts"] for im in data["images"]] == [cli_counts[0]["images"][0]["counts"]]
    assert len(data["messages"]) == 2, data["messages"]
    assert data["messages"][0].startswith("notes.txt: unsupported file type .txt")
    assert data["messages"][1].startswith("fake.jpg: ") and "/tmp" not in "".join(data["messages"])


def test_a_bad_option_is_400_with_the_reason(client):
    r = upload(client, (PHOTO.name, PHOTO.read_bytes()), mpp="fast")
    assert r.status_code == 400 and "not a number" in r.json()["detail"]


def test_an_upload_over_the_limit_is_413_naming_it():
    with TestClient(create_app(ServeSettings(max_upload_bytes=1000))) as c:
        r = upload(c, (PHOTO.name, PHOTO.read_bytes()))
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"], r.text
        # a body sent without Content-Length is counted as it arrives
        body = iter([b"x" * 600, b"x" * 600])
        r = c.post("/api/count", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"], r.text


def test_a_non_loopback_host_needs_the_token():
    settings = ServeSettings(host="0.0.0.0")
    assert settings.token and ServeSettings().token is None and ServeSettings(host="::1").token is None
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"X-Token": "wrong"}).status_code == 401
        assert upload(c, (PHOTO.name, b"x")).status_code == 401
        assert c.get("/", params={"token": settings.token}).status_code == 200
        assert c.get("/", headers={"X-Token": settings.token}).status_code == 200
        uploads = Path(app.state.store.tmp.name)
        assert uploads.is_dir()
    assert not uploads.exists()  # the temporary directory goes at shutdown


def test_downloads_refuse_names_the_job_did_not_write(client):
    data = upload(client, (PHOTO.name, PHOTO.read_bytes())).json()
    base = f"/api/result/{data['id']}"
    for bad in (f"{base}/..%2F..%2F..%2Fetc%2Fpasswd", f"{base}/overlay/..%2Fin%2Fimage000.jpg", f"{base}/..",
                f"{base}/overlay/%2Fetc%2Fpasswd", "/api/result/..%2F..%2Fetc/passwd", f"{base}/image000.jpg",
                "/api/result/00000000000000000000000000000000/counts.csv"):
        r = client.get(bad)
        assert r.status_code in (404, 405) and b"root:" not in r.content, (bad, r.status_code)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server():
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServeSettings(port=port)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def test_the_page_in_a_headless_browser(live_server, cli_counts):
    """Debian's chromium driven by Playwright (its own driver ships in the wheel; no browser download): load the
    page, upload a BCCD photo, wait for the table, compare with the CLI, and save the screenshot README shows."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the page is tested in Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_server)
            page.set_input_files("#files", str(PHOTO))
            page.click("#count")
            page.wait_for_selector(".image table", timeout=180_000)
            rows = page.query_selector_all(".image table")[0].query_selector_all("tr")[1:]
            shown = {r.query_selector_all("td")[0].inner_text(): int(r.query_selector_all("td")[1].inner_text())
                     for r in rows}
            assert shown == cli_counts[0]["images"][0]["counts"]
            page.wait_for_function("() => { const i = document.querySelector('.image img');"
                                   " return i && i.complete && i.naturalWidth > 0 }", timeout=30_000)
            assert errors == []
            (REPO / "docs").mkdir(exist_ok=True)
            page.screenshot(path=str(REPO / "docs" / "serve.png"), full_page=True)
        finally:
            browser.close()


def test_the_serve_command_line(monkeypatch, capsys):
    """`add_serve` on a parser: defaults as documented; cmd_serve prints the address (token on a public host) and
    hands the app to uvicorn."""
    import argparse

    import uvicorn

    from bccd_yolo.core.errors import InputError
    from bccd_yolo.serve.cli import add_serve, cmd_serve

    parser = argparse.ArgumentParser()
    add_serve(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.weights, args.max_upload_mb) == ("127.0.0.1", 8000, None, 200.0)
    ran: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: ran.append((app, host, port)))
    assert cmd_serve(parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "8123", "--max-upload-mb", "5"])) == 0
    assert ran[0][1:] == ("0.0.0.0", 8123) and ran[0][0].state.settings.max_upload_bytes == 5_000_000
    assert f"?token={ran[0][0].state.settings.token}" in capsys.readouterr().out
    with pytest.raises(InputError, match="must be more than 0"):
        cmd_serve(parser.parse_args(["serve", "--max-upload-mb", "0"]))
