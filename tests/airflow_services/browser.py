"""Drive the Airflow 3 UI (the api-server's React app) in Debian's headless Chromium with Playwright.

Selectors are what a person sees: roles and accessible names from the UI's English texts
(``airflow/ui/dist/i18n/locales/en``), never CSS classes, which are generated per build.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Locator, Page, expect, sync_playwright

# Debian's package, not a Playwright download (no internet in CI); CI installs `chromium`.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    # Root in a container: Chromium's sandbox needs user namespaces it does not get.
    "--no-sandbox",
    "--disable-gpu",
    # Nothing but the api-server on 127.0.0.1: no calls home, no update or sync traffic.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: the UI's queries go to an api-server sharing two cores with the scheduler and tasks.
UI_TIMEOUT_MS = 60_000
# The task instance page's Clear button is named by its tooltip (dags.json runAndTaskActions.clear).
CLEAR_BUTTON = "Press shift+c to clear"

# For every `expect` of these tests (the default, 5 s, is short for a loaded machine).
expect.set_options(timeout=UI_TIMEOUT_MS)


@contextmanager
def chromium_page(artifacts: Path) -> Iterator[Page]:
    """A page in a fresh headless Chromium, closed afterwards.

    On an exception inside the block, a full-page screenshot and the page's HTML are saved in
    ``artifacts`` and their paths printed, then the exception goes on.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield page
            except BaseException:
                save_failure_evidence(page, artifacts)
                raise
        finally:
            browser.close()


def save_failure_evidence(page: Page, artifacts: Path) -> None:
    """Screenshot and HTML of the page as it is now; best effort (the browser may be gone)."""
    screenshot, html = artifacts / "browser-failure.png", artifacts / "browser-failure.html"
    try:
        page.screenshot(path=str(screenshot), full_page=True)
        html.write_text(page.content())
    except Exception as exc:  # noqa: BLE001 - evidence must not hide the real failure
        print(f"\nbrowser: no screenshot of {page.url}: {exc}")
        return
    print(f"\nbrowser: screenshot of {page.url} in {screenshot} (HTML: {html})")


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in on the simple auth manager's login page, where the UI sends a visitor without a token."""
    page.goto(f"{base_url}/")
    expect(page.get_by_role("heading", name="Sign into Airflow")).to_be_visible()
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    # The app's navigation is there only for a signed-in user.
    expect(page.get_by_role("link", name="Dags", exact=True)).to_be_visible()


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    return f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_row(page: Page, task_id: str) -> Locator:
    """A task's row in the run page's Task Instances table."""
    return page.get_by_role("table").get_by_role("row").filter(
        has=page.get_by_role("link", name=task_id, exact=True)
    )


def open_task_instance(page: Page, base_url: str, dag_id: str, run_id: str, task_id: str) -> None:
    """Open the run's page, then the task instance from the run's Task Instances table."""
    page.goto(run_url(base_url, dag_id, run_id))
    expect(page.get_by_role("heading", name=run_id, exact=True)).to_be_visible()
    task_row(page, task_id).get_by_role("link", name=task_id, exact=True).click()
    expect(page.get_by_role("heading", name=task_id, exact=True)).to_be_visible()


def clear_task_instance(page: Page, task_id: str, expected_affected: list[str]) -> None:
    """Clear the open task instance through its Clear dialog, after checking what it will clear.

    The dialog previews the task instances it would clear (a dry run, Downstream selected by
    default); Confirm is pressed only once that preview lists exactly ``expected_affected``.
    """
    page.get_by_role("button", name=CLEAR_BUTTON).click()
    dialog = page.get_by_role("dialog").filter(
        has=page.get_by_role("heading", name=re.compile(rf"^Clear Task Instance: {re.escape(task_id)}\b"))
    )
    expect(dialog).to_be_visible()
    preview = dialog.get_by_role("region", name=re.compile(r"^Affected Tasks"))
    for affected in expected_affected:
        expect(preview.get_by_role("cell", name=affected, exact=True)).to_be_visible()
    # One header row, then a row per task instance.
    expect(preview.get_by_role("row")).to_have_count(len(expected_affected) + 1)
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()
