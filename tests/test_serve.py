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
from bccd_yolo.count.detector import default_weights
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


def test_a_tiled_image_counts_as_on_the_cli_without_the_full_size_overlay_tiff(client, tmp_path):
    """The page shows a tiled image as its preview or Deep Zoom tiles, never the CLI's full-size overlay TIFF, so it
    does not write one (on a 10,000 px slide that write is the peak of the count's memory); the counts stay the CLI's."""
    import cv2
    import numpy as np

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.tile(cv2.imread(str(PHOTO)), (3, 3, 1)))  # 1920 x 1440: tiled at the model's scale
    assert main(["count", str(big), "--json", str(tmp_path / "c.json"), "--out", str(tmp_path / "ov"), "--quiet"]) == 0
    want = json.loads((tmp_path / "c.json").read_text())["images"][0]
    assert want["tiles"] > 1 and (tmp_path / "ov" / "big_overlay.tif").is_file()
    r = upload(client, (big.name, big.read_bytes()))
    assert r.status_code == 200, r.text
    got = r.json()["images"][0]
    assert got["counts"] == want["counts"] and got["tiles"] == want["tiles"]
    assert len(got["overlay"]) == 1 and got["overlay"][0].endswith("_preview.png")
    preview = client.get(got["overlay_url"])
    assert preview.status_code == 200 and preview.content[:4] == b"\x89PNG"


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


def finished(client: TestClient, started: dict, seconds: float = 180) -> dict:
    """Poll a job the way the page does until it is done or failed."""
    job, seen = started, [started]
    end = time.monotonic() + seconds
    while job["state"] not in ("done", "failed") and time.monotonic() < end:
        time.sleep(0.1)
        job = client.get(f"/api/jobs/{job['id']}").json()
        seen.append(job)
    assert job["state"] == "done", job
    return job | {"seen": seen}


def test_a_large_image_gets_deep_zoom_tiles_and_its_job_reports_progress(client, cli_counts, monkeypatch):
    """The page's path (POST /api/jobs, then polling) gives the CLI's counts; an image over ZOOM_ABOVE (lowered
    here so a photo is "large") gets Deep Zoom tiles whose pixels are the photo's, and no tile it did not make."""
    import cv2
    import numpy as np

    from bccd_yolo.serve import zoom

    monkeypatch.setattr(zoom, "ZOOM_ABOVE", 500)
    r = client.post("/api/jobs", files=[("files", (PHOTO.name, PHOTO.read_bytes()))])
    assert r.status_code == 200 and r.json()["state"] in ("queued", "counting"), r.text
    job = finished(client, r.json())
    image = job["result"]["images"][0]
    assert image["counts"] == cli_counts[0]["images"][0]["counts"]
    assert job["progress"] == {"images_done": 1, "images": 1, "tiles_done": 0, "tiles": 0}
    view = image["zoom"]
    assert (view["width"], view["height"], view["levels"], view["tile"]) == (640, 480, 2, 256)  # 640 px: 3 tiles of 256
    photo = cv2.imread(str(PHOTO)).astype(float)
    for x, y in ((0, 0), (2, 1)):  # top left; bottom right, padded past the photo's 640 x 480
        tile = client.get(withz(view["url"], 2, y, x))
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
        pixels = cv2.imdecode(np.frombuffer(tile.content, np.uint8), cv2.IMREAD_COLOR).astype(float)
        part = photo[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
        # a tile is the photo re-encoded as JPEG (quality 85): off by a few grey levels, not a swapped or shifted tile
        assert pixels.shape == (256, 256, 3) and np.abs(pixels[: part.shape[0], : part.shape[1]] - part).mean() < 6
    for z, y, x in ((3, 0, 0), (2, 4, 0), (1, 0, 2)):
        assert client.get(withz(view["url"], z, y, x)).status_code == 404
    assert client.get(view["url"].replace("{z}/{y}/{x}", "2/0/0").replace("/zoom/", "/zoom/x")).status_code == 404


def withz(template: str, z: int, y: int, x: int) -> str:
    return template.replace("{z}", str(z)).replace("{y}", str(y)).replace("{x}", str(x))


def test_count_images_tells_progress_per_batch_of_tiles_and_per_image(tmp_path):
    """What the page's progress bar shows: every image started and finished, and a tiled image's tiles counted up
    to its plan's, in order."""
    import cv2
    import numpy as np

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector

    photo = cv2.imread(str(PHOTO))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.tile(photo, (3, 3, 1)))  # 1920 x 1440: tiled at the model's scale
    told: list = []
    results, errors = count_images([PHOTO, big], Detector(default_weights(), quiet=True), progress=False,
                                   on_progress=told.append)
    assert errors == [] and results[1].tiles > 1
    tiled = [(p.tiles_done, p.tiles) for p in told if p.images_done == 1 and p.tiles]
    assert tiled[-1] == (results[1].tiles, results[1].tiles) and [d for d, _ in tiled] == sorted(d for d, _ in tiled)
    assert (told[0].images_done, told[-1].images_done, told[-1].images) == (0, 2, 2)


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


def test_the_page_in_a_headless_browser(live_server, cli_counts, monkeypatch):
    """Debian's chromium driven by Playwright (its own driver ships in the wheel; no browser download): load the
    page, upload a BCCD photo, wait for the table, compare with the CLI, and save the screenshot README shows;
    then the same photo as a large image, in the zoomable view."""
    from playwright.sync_api import sync_playwright

    from bccd_yolo.serve import zoom

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
            # A large image's zoomable view (the limit lowered so the photo counts as large): Leaflet draws the
            # Deep Zoom tiles and one box per cell counted.
            monkeypatch.setattr(zoom, "ZOOM_ABOVE", 500)
            page.click("#count")
            page.wait_for_selector(".zoom[data-cells]", timeout=180_000)
            cells = int(page.get_attribute(".zoom", "data-cells") or -1)
            assert cells == sum(cli_counts[0]["images"][0]["counts"].values())
            page.wait_for_function("() => document.querySelectorAll('.zoom img.leaflet-tile-loaded').length > 0",
                                   timeout=30_000)
            assert errors == [] and page.query_selector(".image img:not(.leaflet-tile)") is None
            page.screenshot(path=str(REPO / "docs" / "serve_zoom.png"))
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
