"""The dashboard in a real browser (Playwright driving Debian's Chromium) against a real
``dlcprune serve`` on its embedded default: SQLite, local blobs, the embedded worker, no key.

One walk through the page: upload an image archive, start a DLC job, watch it finish in the jobs
list without a reload, open the job (histogram, loss curve, gallery thumbnails), build a selection
with the slider and its live preview, create it and download the export.

With ``DLCPRUNE_SCREENSHOTS=1`` the walk uses scikit-learn's digits (a few hundred, for readable
pictures) instead of tinted noise, and saves ``docs/img/dashboard.png``, ``job.png`` and
``selection.png``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from dlcprune import devserver
from dlcprune.core.selection import resolve_keep
from tests.conftest import DLCPRUNE
from tests.service.data import write_image_zip

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("DLCPRUNE_SCREENSHOTS") == "1"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
JOB_TIMEOUT_MS = 180_000
UI_TIMEOUT_MS = 30_000


def write_digits_zip(path: Path, per_class: int = 40) -> Path:
    """The first ``per_class`` images of each digit, as PNGs in class folders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    with zipfile.ZipFile(path, "w") as zf:
        for i, (img, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            if seen.get(int(label), 0) >= per_class:
                continue
            seen[int(label)] = seen.get(int(label), 0) + 1
            buf = io.BytesIO()
            Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(buf, format="PNG")
            zf.writestr(f"{label}/{i:04d}.png", buf.getvalue())
    return path


@contextlib.contextmanager
def serve(data_dir: Path, **extra_env: str) -> Iterator[str]:
    """``dlcprune serve`` on a free port with nothing configured but a fresh data directory (and
    ``extra_env``); yields its URL, stops it and checks its log for tracebacks."""
    port = devserver.free_port()
    env = devserver.clean_env(
        DLCPRUNE_DATA_DIR=str(data_dir), DLCPRUNE_HEARTBEAT_SECONDS="0.5", **extra_env
    )
    log = data_dir.parent / f"serve-{port}.log"
    try:
        with devserver.serve(port=port, env=env, log=log, new_session=True) as service:
            yield service.url
    finally:
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-4000:]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The embedded default: auth is off on loopback."""
    with serve(tmp_path / "var") as url:
        yield url


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)")


def class_sizes(archive: Path) -> dict[str, int]:
    with zipfile.ZipFile(archive) as zf:
        return dict(Counter(name.split("/")[0] for name in zf.namelist()))


def test_dashboard_in_a_browser(service: str, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    if SCREENSHOTS:
        archive = write_digits_zip(tmp_path / "digits.zip")
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
    else:
        archive = write_image_zip(tmp_path / "colours.zip", per_class=8)
    with zipfile.ZipFile(archive) as zf:
        members = zf.namelist()
    n = len(members)
    sizes = class_sizes(archive)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            js_errors: list[str] = []
            foreign: list[str] = []
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
            page.on(
                "request",
                lambda req: (
                    None
                    if req.url.startswith((service, "blob:", "data:"))
                    else foreign.append(req.url)
                ),
            )

            # The page loads without a key on the embedded default.
            page.goto(f"{service}/")
            expect(page.locator(".brand")).to_have_text("dlcprune")
            expect(page.locator("#datasets-table")).to_contain_text("No datasets yet")
            page.evaluate("window.__sameDocument = true")

            # The job form's models, bounds and choices are the service's OpenAPI document's.
            schemas = httpx.get(f"{service}/openapi.json").json()["components"]["schemas"]
            dlc = schemas["DLCParamsIn"]["properties"]
            for field, box in (("image_size", "#job-image-size"), ("levels", "#job-levels")):
                (bounds,) = [s for s in dlc[field]["anyOf"] if s["type"] != "null"]
                for attr, key in (("min", "minimum"), ("max", "maximum")):
                    assert page.get_attribute(box, attr) == f"{bounds[key]:g}", (field, attr)
            (schedules,) = [s["enum"] for s in dlc["schedule"]["anyOf"] if s["type"] != "null"]
            options = "el => [...el.options].map(o => o.value)"
            assert page.eval_on_selector("#job-schedule", options) == ["", *schedules]
            assert page.eval_on_selector("#job-masking", options) == dlc["masking"]["enum"]
            expect(page.locator("#job-masking")).to_have_value(dlc["masking"]["default"])
            model = schemas["JobCreate"]["properties"]["model"]["default"]
            expect(page.locator("#job-model")).to_have_value(model)
            assert model in page.eval_on_selector("#model-names", options)

            # Upload through the form.
            page.set_input_files("#upload-file", str(archive))
            page.click("#upload-button")
            expect(page.locator("#upload-status")).to_contain_text(f"ready, {n} samples")
            expect(page.locator("#datasets-table tbody tr[data-dataset-id]")).to_have_count(1)

            # Start a small DLC job; the new dataset is already chosen.
            page.fill("#job-image-size", "32")
            page.fill("#job-levels", "2")
            page.click("#start-job")
            expect(page.locator("#job-status")).to_contain_text("queued")
            rows = page.locator("#jobs-table tbody tr[data-job-id]")
            expect(rows).to_have_count(1)
            job_id = rows.first.get_attribute("data-job-id")
            assert job_id
            row = page.locator(f'#jobs-table tr[data-job-id="{job_id}"]')
            assert row.get_attribute("data-status") in ("queued", "running", "succeeded")
            # The list polls: the row reaches "succeeded" without any reload.
            expect(row.locator(".status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
            expect(row.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
            assert page.evaluate("window.__sameDocument") is True

            # A long job: its progress moves in the list while it runs; cancel it from there.
            page.fill("#job-levels", "400")
            page.click("#start-job")
            expect(rows).to_have_count(2)
            long_id = rows.first.get_attribute("data-job-id")
            assert long_id and long_id != job_id
            long_row = page.locator(f'#jobs-table tr[data-job-id="{long_id}"]')
            stage = long_row.locator(".progress .second")
            expect(stage).to_have_text(re.compile(r"^level \d+/400"), timeout=JOB_TIMEOUT_MS)
            seen = stage.inner_text()
            expect(stage).not_to_have_text(seen, timeout=UI_TIMEOUT_MS)
            expect(long_row).to_have_attribute("data-status", "running")
            if SCREENSHOTS:
                page.add_style_tag(content="#toasts { display: none; }")
                page.screenshot(path=str(DOCS_IMG / "dashboard.png"))
            long_row.get_by_role("button", name="Cancel").click()
            expect(long_row.locator(".status")).to_have_text("cancelled")
            assert page.evaluate("window.__sameDocument") is True

            # The job page: plots and gallery thumbnails, all loaded through blob URLs.
            row.locator("a.job-link").click()
            expect(page).to_have_url(re.compile(f"#/jobs/{job_id}$"))
            expect(page.locator("#job-state")).to_have_text("succeeded")
            for img in ("#histogram-img", "#loss-img"):
                expect(page.locator(img)).to_have_attribute("data-loaded", "true")
                assert page.eval_on_selector(img, "el => el.naturalWidth") > 300
            thumbs = page.locator("#gallery img.thumb")
            expected_thumbs = sum(2 * min(6, size) for size in sizes.values())
            expect(thumbs).to_have_count(expected_thumbs)
            expect(page.locator('#gallery img.thumb[data-loaded="true"]')).to_have_count(
                expected_thumbs
            )
            assert page.eval_on_selector("#gallery img.thumb", "el => el.naturalWidth") > 0
            if SCREENSHOTS:
                page.screenshot(
                    path=str(DOCS_IMG / "job.png"),
                    full_page=True,
                    clip={"x": 0, "y": 0, "width": 1280, "height": 1500},
                )

            # The selection builder: a preview at the default 30%, then the slider moved to 20%.
            ks = page.locator("#preview-ks")
            expect(ks).to_have_text(re.compile(r"^[01]\.\d{3}$"))
            expect(page.locator("#preview-size")).to_contain_text(str(resolve_keep(0.3, n)))
            page.focus("#keep")
            for _ in range(10):
                page.keyboard.press("ArrowLeft")
            expect(page.locator("#keep")).to_have_value("0.2")
            size = resolve_keep(0.2, n)
            expect(page.locator("#preview-size")).to_have_text(f"{size} of {n}")
            expect(page.locator("#preview-plot")).to_have_attribute("data-loaded", "true")
            expected = httpx.post(
                f"{service}/v1/jobs/{job_id}/selections/preview",
                json={"keep": 0.2, "strategy": "flexrand", "seed": 0},  # the default split
            ).json()
            # The slider starts at the service's default split share.
            expect(ks).to_have_text(f"{expected['ks_statistic']:.3f}")
            expect(page.locator("#create-selection")).to_be_enabled()

            # Create it; the new selection is listed; download its export.
            page.click("#create-selection")
            sel_row = page.locator("#selections-table tbody tr[data-selection-id]")
            expect(sel_row).to_have_count(1)
            assert sel_row.get_attribute("data-size") == str(size)
            if SCREENSHOTS:
                # The builder and the selections list, in document coordinates (scrolled to the
                # top, so that the sticky header stays out of the picture).
                page.evaluate("window.scrollTo(0, 0)")
                top = page.locator("#builder").bounding_box()
                bottom = page.locator("#selections-table").bounding_box()
                assert top and bottom
                page.screenshot(
                    path=str(DOCS_IMG / "selection.png"),
                    full_page=True,
                    clip={
                        "x": 0,
                        "y": top["y"] - 12,
                        "width": 1280,
                        "height": bottom["y"] + bottom["height"] - top["y"] + 36,
                    },
                )
            with page.expect_download() as download_info:
                sel_row.locator("a.export-link").click()
            download = download_info.value
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            with zipfile.ZipFile(saved) as zf:
                names = zf.namelist()
            assert len(names) == size
            assert set(names) <= set(members)

            assert page.evaluate("window.__sameDocument") is True

            # An evaluation of the job: its plot on the job page, its recommendation selected
            # in one click.
            ev = httpx.post(
                f"{service}/v1/jobs/{job_id}/evaluations",
                json={"strategies": ["moderate"], "keep": [0.5], "seeds": 2, "tolerance": 1.0},
            ).json()
            for _ in range(600):
                ev = httpx.get(f"{service}/v1/evaluations/{ev['id']}").json()
                if ev["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            assert ev["status"] == "succeeded", ev
            page.reload()
            expect(page.locator("#evaluation-img")).to_have_attribute("data-loaded", "true")
            page.click("#evaluation-select")
            expect(page.locator("#selections-table tbody tr[data-selection-id]")).to_have_count(2)
            assert js_errors == []
            assert foreign == [], foreign
        finally:
            browser.close()


def test_dashboard_asks_for_a_key_when_auth_is_on(tmp_path: Path) -> None:
    """With auth on, the page asks for a key once, keeps it, and sends it with every API call,
    images and downloads included."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCPRUNE_")}
    env.update({"DLCPRUNE_DATA_DIR": str(data_dir), "DLCPRUNE_AUTH_ENABLED": "true"})
    key = subprocess.run(
        [DLCPRUNE, "keys", "create", "--tenant", "web"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert key.startswith("dlc_")
    archive = write_image_zip(tmp_path / "colours.zip", per_class=4, seed=2)

    with serve(data_dir, DLCPRUNE_AUTH_ENABLED="true") as url, sync_playwright() as p:
        assert httpx.get(f"{url}/v1/datasets").status_code == 401
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            js_errors: list[str] = []
            unsent: list[str] = []
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))

            def check_header(req) -> None:  # type: ignore[no-untyped-def]
                if "/v1/" in req.url and req.headers.get("authorization") != f"Bearer {key}":
                    unsent.append(req.url)

            page.goto(f"{url}/")
            dialog = page.locator("#key-dialog")
            expect(dialog).to_be_visible()
            expect(page.locator("#key-message")).to_contain_text("needs an API key")
            # A wrong key is refused and asked for again.
            page.fill("#key-input", "dlc_00000000_wrong")
            page.click("#key-save")
            expect(page.locator("#key-message")).to_contain_text("refused")
            expect(dialog).to_be_visible()
            page.fill("#key-input", key)
            page.click("#key-save")
            expect(dialog).to_be_hidden()
            expect(page.locator("#datasets-table")).to_contain_text("No datasets yet")

            # Kept across reloads: no prompt the second time.
            page.reload()
            expect(page.locator("#datasets-table")).to_contain_text("No datasets yet")
            expect(dialog).to_be_hidden()
            expect(page.locator("#key-button")).to_have_text(f"Key {key[:12]}…")
            page.on("request", check_header)

            page.set_input_files("#upload-file", str(archive))
            page.click("#upload-button")
            expect(page.locator("#upload-status")).to_contain_text("ready, 12 samples")
            page.fill("#job-image-size", "32")
            page.fill("#job-levels", "2")
            page.click("#start-job")
            row = page.locator("#jobs-table tbody tr[data-job-id]")
            expect(row.locator(".status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
            row.locator("a.job-link").click()
            expect(page.locator("#histogram-img")).to_have_attribute("data-loaded", "true")
            expect(page.locator('#gallery img.thumb[data-loaded="true"]')).to_have_count(24)
            expect(page.locator("#preview-size")).to_have_text("4 of 12")
            page.click("#create-selection")
            sel_row = page.locator("#selections-table tbody tr[data-selection-id]")
            expect(sel_row).to_have_count(1)
            # A download with the key: fetched with the header, saved from a blob URL.
            with page.expect_download() as download_info:
                sel_row.locator("a.export-link").click()
            download = download_info.value
            assert download.suggested_filename.startswith("colours-")
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            with zipfile.ZipFile(saved) as zf:
                assert len(zf.namelist()) == 4

            assert unsent == [], unsent
            assert js_errors == []
        finally:
            browser.close()
