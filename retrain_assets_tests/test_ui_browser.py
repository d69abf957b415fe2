"""The Dagster UI in a real browser: Debian's Chromium, headless, driven by Playwright against
`dagster dev` (webserver + daemon) on a temp DAGSTER_HOME and config.

The story a person sees:

1. Two labelled batches are already in (ingested before the UI opens, with the run keys the
   landing sensor would use, so the running sensor does not take them in again).
2. They open the asset graph: five stage groups, six assets.
3. They filter it to ``candidate_model`` and ``production_model`` and click "Materialize all".
4. The candidate's ``metric_floor`` gate fails — the config sets ``gates.metric_floor: 0.99``,
   which no model on this data reaches (it scores ~0.8 ROC AUC) — so ``production_model`` leaves
   the champion alone (none exists) and says why in the log. The run succeeds: a refused
   candidate is the gates doing their job, and nothing turns red (docs/decisions.md).
5. The candidate's Checks tab shows ``metric_floor`` failed (a warning) with the numbers;
   production_model has no materialization and is not marked failed.
6. The drift report of ``batch_0002`` (drift_report's Partitions tab): its ``distribution_plot``
   opens from the metadata table as a picture — the PNG itself, inlined in the metadata as a
   Markdown image with a ``data:`` URI — and is the same picture as the file beside it.

Nothing else may start a retrain meanwhile: the drift sensor would train a first champion as soon as
the labelled rows allow, so the config leaves the first champion to a person
(``automation.first_champion: by_hand``); the test waits until the sensor has looked and held back.

A loaded machine (CI runs the suite on two xdist workers on two cores) makes the page slow, never
different, so every wait is on the condition itself, with generous timeouts: the URL state the page
sets, the editor's own content, the run in the instance. An action is repeated only when it is
idempotent and its state shows it did not take (a key shortcut, typing a filter, following a link,
reloading a page that shows server data); launching the run is done exactly once. Dagster's
"Join the Dagster community" dialog, which opens late and at random on a busy box and swallows the
keys typed meanwhile, is marked as seen in the temp DAGSTER_HOME before the UI opens.

Screenshots of each step go to ``$RETRAIN_TEST_ARTIFACTS`` if set, else ``test-artifacts/ui/`` in
the repository (git-ignored); their paths are printed. No browser is downloaded: the test uses
/usr/bin/chromium, which `make test` installs when missing (scripts/system-packages.sh).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit

import dagster as dg
import pytest
from PIL import Image

# Sensor ticks (when a sensor looked, and what it decided) are only exposed through this module.
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.execution.stats import StepEventStatus

from retrain_assets import demo
from retrain_assets.constants import (
    CANDIDATE_MODEL,
    DRIFT_REPORT,
    DRIFT_SENSOR,
    HEALTH_JOB,
    INGEST_JOB,
    LANDING_SENSOR,
    PRODUCTION_MODEL,
    REPO_ROOT,
)
from retrain_assets.core import registry as reg
from retrain_assets.core.markdown import png_data_uri
from retrain_assets.definitions import build_definitions
from retrain_assets.core.markdown import MAX_INLINE_PNG_BYTES
from retrain_assets_tests.conftest import Workspace, clean_batch, write_config
from retrain_assets_tests.dagster_dev import DagsterDev, make_home, running_dagster_dev

pytestmark = pytest.mark.cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
    "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}

UNREACHABLE_FLOOR = 0.99
"""gates.metric_floor for this test: the candidate scores ~0.8 ROC AUC on the demo data."""
ROWS = 600
"""Rows per batch: enough for every gate but metric_floor to pass (data_sufficiency needs 100 holdout rows)."""

UI_TIMEOUT_MS = 60_000
"""A busy 2-core box takes several seconds to render a page; the graph layout takes longest."""
STATE_TIMEOUT_MS = 20_000
"""For state the page sets itself, synchronously, on a key or click (the URL's query, the editor's
text): if it has not changed in 20 s on a starved box, the input was lost and is given again."""
ATTEMPTS = 3
"""Tries of an idempotent UI action (the last may be the direct route: a URL instead of typing)."""
RUN_TIMEOUT = 300
SENSOR_TIMEOUT = 240
LOCATION_TIMEOUT = 180

SELECTION = f"key:{CANDIDATE_MODEL} or key:{PRODUCTION_MODEL}"


def artifacts_dir() -> Path:
    """Where the screenshots go: $RETRAIN_TEST_ARTIFACTS, else test-artifacts/ui/ in the repository."""
    folder = Path(os.environ.get("RETRAIN_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Screenshots:
    """Numbered screenshots of one page, in the order taken."""

    def __init__(self, page, folder: Path):
        self.page = page
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        for old in folder.glob("[0-9][0-9]_*.png"):  # this test's pictures from a previous run would mislead
            old.unlink()

    def take(self, name: str) -> Path:
        path = self.folder / f"{len(self.paths) + 1:02d}_{name}.png"
        self.page.screenshot(path=str(path))
        self.paths.append(path)
        print(f"screenshot: {path}", flush=True)
        return path

    def take_at_failure(self) -> None:
        """The page as it was when the test failed; never hides the failure itself."""
        try:
            self.take("at_failure")
            print(f"page at failure: {self.page.url}", flush=True)
        except Exception as error:  # noqa: BLE001 - a dead browser must not mask why the test failed
            print(f"no screenshot at failure: {error}", flush=True)


# --------------------------------------------------------------------------
# Fixtures: the platform with two ingested batches, and a browser
# --------------------------------------------------------------------------


@pytest.fixture
def platform(tmp_path: Path):
    """`dagster dev` on a temp home where two labelled batches are already ingested."""
    config_path = write_config(tmp_path, **{
        "gates.metric_floor": UNREACHABLE_FLOOR,
        "automation.first_champion": "by_hand",  # the sensors never retrain by themselves
        "automation.sensor_interval_seconds": 5,
        # The safety-net schedule (default Mondays 03:00) must not fire during the test.
        "automation.schedule_cron": "0 3 1 1 *",
    })
    workspace = Workspace(tmp_path, config_path)
    for index in (1, 2):
        workspace.land(f"batch_{index:04d}", clean_batch(index, ROWS))
    home = make_home(tmp_path)
    # In-process is faster than the daemon: the landing sensor evaluated once on the same
    # instance, its runs executed with the run keys and sensor tag a daemon-launched run carries.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        outcomes, _cursor = demo.run_landing_once(build_definitions(config_path), instance)
    assert outcomes == [("batch_0001", True), ("batch_0002", True)], outcomes
    mark_community_dialog_seen(home)
    with running_dagster_dev(tmp_path, config_path, home=home) as dev:
        # /server_info answers before the webserver has loaded the definitions the pages show.
        dev.wait_for("the webserver to load the code location", dev.code_locations_loaded, LOCATION_TIMEOUT,
                     interval=1)
        yield dev


def mark_community_dialog_seen(home: Path) -> None:
    """What the UI's "Join the Dagster community" dialog leaves when dismissed (dagster._core.nux): on a
    fresh instance it opens a second after its query answers - late, at any step, on a busy box - and
    takes the focus, so keys typed meanwhile go into it. The page's locator handler stays as a net."""
    nux = home / ".nux"
    nux.mkdir(exist_ok=True)
    (nux / "nux.yaml").write_text("seen: 1\n")


@pytest.fixture
def page(tmp_path: Path):
    """A page in Debian's headless Chromium with a fresh profile; no browser is downloaded."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian's Chromium is not installed at {CHROMIUM}: `make test` installs it (scripts/system-packages.sh test); "
            "this test drives it and never downloads a browser"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport=VIEWPORT,
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            page = context.new_page()
            # On a fresh instance the UI first asks to join its community: dismiss it whenever it shows.
            page.add_locator_handler(
                page.get_by_text("Join the Dagster community"),
                lambda _dialog: page.get_by_role("button", name=re.compile(r"\bSkip$")).click(),
            )
            yield page
        finally:
            context.close()


# --------------------------------------------------------------------------
# What the instance says (the cross-check of what the UI shows)
# --------------------------------------------------------------------------


def drift_sensor_held_back(instance: dg.DagsterInstance) -> str | None:
    """The drift sensor's skip reason once it has looked at the two batches, else None."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name != DRIFT_SENSOR:
            continue
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
            if tick.status == TickStatus.SKIPPED and "by_hand" in (tick.skip_reason or ""):
                return tick.skip_reason
    return None


def check_outcomes(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """Each asset check evaluated in a run: passed or not."""
    records = instance.event_log_storage.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    return {
        r.event_log_entry.dagster_event.event_specific_data.check_name:
            r.event_log_entry.dagster_event.event_specific_data.passed
        for r in records
    }


def materializations(instance: dg.DagsterInstance, key: str) -> list:
    return instance.fetch_materializations(dg.AssetKey(key), limit=10).records


def latest_metadata(instance: dg.DagsterInstance, key: str, partition: str) -> dict:
    """The metadata of a partition's latest materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{key} [{partition}] was never materialized"
    return records[0].asset_materialization.metadata


def shown_images(dialog) -> list[dict]:
    """The images in a dialog as the browser has them: alt, source scheme, loaded size."""
    return dialog.evaluate(
        "d => Array.from(d.querySelectorAll('img')).map(i => ({alt: i.alt, scheme: i.src.split(',')[0], "
        "complete: i.complete, width: i.naturalWidth, height: i.naturalHeight, shownWidth: i.width}))"
    )


# --------------------------------------------------------------------------
# Waiting on the page: real conditions, idempotent retries, clear failures
# --------------------------------------------------------------------------


def _gist(error: BaseException, lines: int = 6) -> str:
    """The first lines of an error (Playwright's carry a whole aria snapshot after them)."""
    return "\n    ".join(str(error).strip().splitlines()[:lines])


def retrying(what: str, act: Callable[[int], None], done: Callable[[], None], attempts: int = ATTEMPTS) -> int:
    """``act(attempt)`` then ``done()`` (which raises when its condition is not met in its timeout),
    again up to ``attempts`` times. ``act`` must be idempotent or check the state before acting.
    Returns the attempt that worked; fails naming ``what`` and each attempt's error otherwise."""
    from playwright.sync_api import Error as PlaywrightError

    errors = []
    for attempt in range(1, attempts + 1):
        try:
            act(attempt)
            done()
        except (AssertionError, PlaywrightError) as error:  # expect() raises AssertionError, waits TimeoutError
            errors.append(f"attempt {attempt}: {_gist(error)}")
            print(f"note: {what}: attempt {attempt} of {attempts} did not take: {_gist(error, 2)}", flush=True)
            continue
        return attempt
    pytest.fail(f"{what}: not done in {attempts} attempts\n" + "\n".join(errors))


def see(page, what: str, *locators, timeout_ms: int = UI_TIMEOUT_MS, reloads: int = 1) -> None:
    """Wait until every locator is visible; if not, reload the page (it only reads the server again)
    and wait once more. For what the page fetches from the server, which a starved browser or a
    missed live update can leave stale."""
    from playwright.sync_api import expect

    def act(attempt: int) -> None:
        if attempt > 1:
            page.reload()

    def done() -> None:
        for locator in locators:
            expect(locator).to_be_visible(timeout=timeout_ms)

    retrying(f"the page to show {what}", act, done, attempts=reloads + 1)


def open_markdown_picture(page, key: str, alt):
    """Open a metadata row's "[Show Markdown]" (Markdown over 1,000 characters shows so) and wait until
    the picture in its dialog has loaded; opened again after a reload if it did not show. Returns the dialog."""
    from playwright.sync_api import expect

    row = page.get_by_role("row").filter(has=page.get_by_text(key, exact=True))
    dialog = page.get_by_role("dialog").filter(has=page.get_by_text(key, exact=True))
    picture = dialog.get_by_role("img", name=alt)

    def open_plot(attempt: int) -> None:
        if attempt > 1:
            page.reload()
        row.get_by_text("[Show Markdown]").click()

    def plot_shown() -> None:
        expect(picture).to_be_visible(timeout=UI_TIMEOUT_MS)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle(),
                               timeout=UI_TIMEOUT_MS)

    retrying(f"opening {key}'s [Show Markdown]", open_plot, plot_shown, attempts=2)
    return dialog


TOAST_RECORDER = """() => {
  // Toasts go after ~5 s, which a starved test process can miss: the page records each
  // "Launched run <id>" it shows, as it happens.
  if (window.__retrainLaunched) return;
  const seen = window.__retrainLaunched = {runs: []};
  const look = (text) => {
    for (const m of (text || '').matchAll(/Launched run ([0-9a-f]{8})/g)) {
      if (!seen.runs.includes(m[1])) seen.runs.push(m[1]);
    }
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'characterData') look(r.target.textContent);
      for (const n of r.addedNodes) look(n.textContent);
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


# --------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_a_retrain_launched_from_the_asset_graph_is_refused_by_a_failed_gate_without_turning_red(platform: DagsterDev, page):
    from playwright.sync_api import expect

    dev = platform
    shots = Screenshots(page, artifacts_dir())
    started = time.monotonic()

    def take(name: str) -> None:
        shots.take(name)
        print(f"  ({time.monotonic() - started:.0f} s into the UI steps)", flush=True)

    with dg.DagsterInstance.from_config(str(dev.home)) as instance:
        # The drift sensor has looked at the two batches and held back (before anyone clicks).
        held_back = dev.wait_for(f"{DRIFT_SENSOR} to tick on the two batches", lambda: drift_sensor_held_back(instance),
                                 SENSOR_TIMEOUT)
        assert "no champion yet" in held_back, held_back  # it would bootstrap one, but a person starts it

        try:
            # 1. The asset graph: every group expanded, all six assets shown.
            page.goto(f"{dev.url}/asset-groups")
            see(page, "the global asset graph", page.get_by_text("Global asset lineage").first,
                page.get_by_role("button", name="training").first)
            # Alt+E (the graph's "Expand all groups") toggles, and writes the expanded groups into the
            # URL as it handles the key; so it is pressed again only while the URL says none is open
            # (a press before the graph has mounted its shortcut is lost).
            retrying(
                "expanding every group with Alt+E",
                lambda _attempt: None if "expanded=" in page.url else page.keyboard.press("Alt+e"),
                lambda: expect(page).to_have_url(re.compile(r"[?&]expanded=[^&]*training"), timeout=STATE_TIMEOUT_MS),
            )
            see(page, "all six assets", *[page.get_by_text(asset, exact=True).first for asset in (
                "raw_data", "validated_data", "drift_report", "production_metrics", CANDIDATE_MODEL, PRODUCTION_MODEL)])
            take("asset_graph")

            # 2. Filter the graph to the two model assets, as a person types it. The filter is typed
            #    again (into a cleared box) if the keys did not all land in the box or Enter did not
            #    put it in the URL; the last try opens the filtered URL directly - the story is the
            #    launch and the gate, not the filter widget.
            editor = page.locator(".CodeMirror").filter(
                has=page.get_by_role("textbox", name="Search and filter assets"))
            focused = re.compile(r"\bCodeMirror-focused\b")

            def editor_holds(text: str) -> None:
                deadline = time.monotonic() + STATE_TIMEOUT_MS / 1000
                while (held := editor.evaluate("e => e.CodeMirror.getValue()")) != text:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"the filter box holds {held!r}, not {text!r}")
                    time.sleep(0.1)

            def filter_graph(attempt: int) -> None:
                if attempt == ATTEMPTS:
                    query = urlsplit(page.url).query
                    print(f"note: typing the asset filter did not take in {attempt - 1} tries; "
                          "opening the filtered graph by its URL", flush=True)
                    page.goto(f"{dev.url}/asset-groups~{quote(SELECTION)}/" + (f"?{query}" if query else ""))
                    return
                editor.click()
                expect(editor).to_have_class(focused, timeout=STATE_TIMEOUT_MS)
                page.keyboard.press("ControlOrMeta+a")
                page.keyboard.press("Backspace")
                editor_holds("")
                page.keyboard.type(SELECTION)
                editor_holds(SELECTION)
                expect(editor).to_have_class(focused, timeout=STATE_TIMEOUT_MS)  # Enter goes to the box too
                page.keyboard.press("Enter")

            retrying("filtering the graph to the two model assets", filter_graph,
                     lambda: expect(page).to_have_url(re.compile(re.escape(quote(SELECTION))),
                                                      timeout=STATE_TIMEOUT_MS))
            expect(page.get_by_text("drift_report", exact=True)).to_have_count(0, timeout=UI_TIMEOUT_MS)
            see(page, "the two model assets", *[page.get_by_text(asset, exact=True).first
                                                for asset in (CANDIDATE_MODEL, PRODUCTION_MODEL)])
            expect(page.get_by_text("Never materialized")).to_have_count(2, timeout=UI_TIMEOUT_MS)
            take("selected_model_assets")

            # 3. Materialize them - once: a launch is not idempotent. Neither asset is partitioned or
            #    configured, so the run launches at once; a launchpad, if a future version shows one,
            #    is confirmed as it comes. The page records the "Launched run" toast as it shows.
            page.evaluate(TOAST_RECORDER)
            launched_runs = lambda: page.evaluate("() => window.__retrainLaunched.runs")  # noqa: E731
            launchpad = page.get_by_role("button", name=re.compile(r"^Launch"))
            # The button's accessible name starts with its icon's ligature ("auto_awesome"); it reads
            # "Materialize all…" until the page knows the selection needs no launchpad.
            page.get_by_role("button", name=re.compile(r"Materialize all$")).click()
            outcome = dev.wait_for("the UI to launch the run (a 'Launched run' toast) or open a launchpad",
                                   lambda: launched_runs() or (launchpad.first.is_visible() and "launchpad"),
                                   UI_TIMEOUT_MS / 1000, interval=0.2)
            if outcome == "launchpad":
                launchpad.first.click()
                outcome = dev.wait_for("the UI to launch the run from the launchpad", launched_runs,
                                       UI_TIMEOUT_MS / 1000, interval=0.2)
            assert len(outcome) == 1, f"the UI says it launched {len(outcome)} runs: {outcome}"
            short_id = outcome[0]
            take("run_launched")  # the toast, unless the box was too slow to shoot it within its ~5 s
            run_id = dev.wait_for(
                f"run {short_id} (launched by the UI) in the instance",
                lambda: next((r.run_id for r in instance.get_runs() if r.run_id.startswith(short_id)), None), 60)
            # The run is on the Runs page, as a person would find it once the toast has gone; the last
            # try opens the run's page directly.
            run_page = re.compile(rf"/runs/{run_id}")

            def open_run(attempt: int) -> None:
                if attempt == ATTEMPTS:
                    page.goto(f"{dev.url}/runs/{run_id}")
                    return
                page.goto(f"{dev.url}/runs")
                page.get_by_role("link", name=short_id).first.click()

            retrying(f"opening run {short_id} from the Runs page", open_run,
                     lambda: expect(page).to_have_url(run_page, timeout=STATE_TIMEOUT_MS))

            # 4. The run succeeds (a refused candidate is the gates doing their job, not a breakage);
            #    production_model says in the log why it left the champion alone.
            dev.wait_for(f"run {short_id} to finish", lambda: instance.get_run_by_id(run_id).is_finished, RUN_TIMEOUT)
            see(page, "the run's success and production_model's reason",
                page.get_by_text("Success", exact=True).first,
                page.get_by_text(re.compile(r"did not pass its gates \(metric_floor")).first)
            take("run_succeeded_candidate_refused")

            # 5. The candidate's Checks tab: metric_floor failed, with the numbers. Clicking the check
            #    opens its detail (in the URL); the last try opens that URL directly.
            page.goto(f"{dev.url}/assets/{CANDIDATE_MODEL}?view=checks")

            def open_check(attempt: int) -> None:
                if attempt == ATTEMPTS:
                    page.goto(f"{dev.url}/assets/{CANDIDATE_MODEL}?view=checks&checkDetail=metric_floor")
                    return
                page.get_by_text("metric_floor", exact=True).first.click()

            retrying("opening metric_floor on the candidate's Checks tab", open_check,
                     lambda: expect(page).to_have_url(re.compile(r"checkDetail=metric_floor"),
                                                      timeout=STATE_TIMEOUT_MS))
            see(page, "metric_floor failed (a warning) with the numbers",
                page.get_by_text(re.compile(rf"is below the floor of {UNREACHABLE_FLOOR:.3f}")).first,
                page.get_by_text("Failed", exact=True).first,
                page.get_by_text("non-blocking", exact=True).first)  # "This is a non-blocking asset check."
            take("metric_floor_check_failed")

            # 6. production_model: not materialized, and not marked failed (no red on the served model).
            page.goto(f"{dev.url}/assets/{PRODUCTION_MODEL}?view=events")
            see(page, "that nothing was materialized", page.get_by_text("No events found").first)
            expect(page.get_by_text(re.compile(r"failed, and did not materialize this asset"))).to_have_count(0)
            take("production_model_not_materialized")

            # 7. Back on the graph: 5 of 6 checks passed on the candidate; production_model failed.
            page.goto(f"{dev.url}/asset-groups~{quote(SELECTION)}/")
            see(page, "the candidate's checks on the graph", page.get_by_text("5 / 6 Passed"),
                page.get_by_text("Never materialized").first)
            expect(page.get_by_text("Failed", exact=True)).to_have_count(0)  # production_model is not red
            take("asset_graph_after")

            # 8. The drift report of batch_0002 (ingested before the UI opened): its distribution plot
            #    is in the metadata table; over 1,000 characters, Markdown shows as "[Show Markdown]",
            #    which opens the picture in a dialog. Opened again (after a reload) if it did not show.
            plot_started = time.monotonic()
            page.goto(f"{dev.url}/assets/{DRIFT_REPORT}?view=partitions&partition=batch_0002")
            dialog = open_markdown_picture(
                page, "distribution_plot", re.compile(r"^batch_0002 vs reference: distributions of "))
            shown = shown_images(dialog)
            take("drift_report_distribution_plot")
            plot_seconds = time.monotonic() - plot_started
        except BaseException:
            shots.take_at_failure()
            raise

        # The same through the instance and the registry.
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert run.asset_selection == {dg.AssetKey(CANDIDATE_MODEL), dg.AssetKey(PRODUCTION_MODEL)}
        outcomes = check_outcomes(instance, run_id)
        assert [name for name, passed in outcomes.items() if not passed] == ["metric_floor"], outcomes
        assert len(outcomes) == 6, outcomes
        assert [r.run_id for r in materializations(instance, CANDIDATE_MODEL)] == [run_id]
        assert materializations(instance, PRODUCTION_MODEL) == [], "a blocked candidate must not be served"
        step_keys = {stats.step_key: stats.status for stats in instance.get_run_step_stats(run_id)}
        assert step_keys.get(PRODUCTION_MODEL) == StepEventStatus.SUCCESS, step_keys  # ran, applied the rule
        # model_health_sensor refreshes the health view after ingests and retrains: those runs are asked for
        others = [r for r in instance.get_runs() if r.job_name not in (INGEST_JOB, HEALTH_JOB) and r.run_id != run_id]
        assert others == [], f"runs nobody asked for: {[(r.job_name, r.tags) for r in others]}"
        settings = dev.settings
        assert reg.alias_version(settings.mlflow_tracking_uri, settings.registered_model_name,
                                 reg.CHAMPION_ALIAS) is None
        # The picture shown is the PNG file of the report, whole, and small enough for the event log.
        drift = latest_metadata(instance, DRIFT_REPORT, "batch_0002")
        png = Path(drift["distribution_plot_path"].value)
        with Image.open(png) as image:
            assert image.format == "PNG"
            size = image.size
        assert [(i["scheme"], i["complete"], (i["width"], i["height"])) for i in shown] == [
            ("data:image/png;base64", True, size)], shown
        assert shown[0]["shownWidth"] > 0, shown
        assert drift["distribution_plot"].value.endswith(f"({png_data_uri(png)})")
        assert png.stat().st_size < MAX_INLINE_PNG_BYTES, png.stat().st_size
        print(f"drift plot: {size[0]}x{size[1]} px, {png.stat().st_size:,} bytes of PNG, "
              f"{len(drift['distribution_plot'].value):,} characters of Markdown; opened and shown in {plot_seconds:.1f} s")
    print(f"UI steps and run: {time.monotonic() - started:.0f} s; screenshots in {shots.folder}")


# --------------------------------------------------------------------------
# The health view
# --------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_the_health_page_answers_is_my_model_healthy(tmp_path: Path, page):
    """After three batches and a first champion, the daemon's model_health_sensor refreshes the health
    view. On its page a person reads the verdict and the champion, opens the metric plot (an inline
    PNG that loads), and sees the freshness breach on the Checks tab; the breach reached the webhook."""
    from retrain_assets.constants import HEALTH_SENSOR, MODEL_HEALTH, RETRAIN_JOB
    from retrain_assets_tests.test_automation import Webhook

    hook = Webhook()
    config_path = write_config(tmp_path, **{
        "automation.first_champion": "by_hand",
        "automation.sensor_interval_seconds": 5,
        "automation.schedule_cron": "0 3 1 1 *",
        "health.max_hours_without_batch": 0.0001,  # a breach at once: the batches landed seconds ago
        "alerts.webhook_url": hook.url,
    })
    workspace = Workspace(tmp_path, config_path)
    for index in (1, 2, 3):
        workspace.land(f"batch_{index:04d}", clean_batch(index, ROWS))
    home = make_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(config_path)
        outcomes, _cursor = demo.run_landing_once(defs, instance)
        assert [ok for _, ok in outcomes] == [True, True, True], outcomes
        assert defs.resolve_job_def(RETRAIN_JOB).execute_in_process(instance=instance, raise_on_error=False).success
        workspace.land("batch_0004", clean_batch(4, ROWS))  # scored by champion v1: a point on its metric plot
        outcomes, _cursor = demo.run_landing_once(defs, instance, _cursor)
        assert outcomes == [("batch_0004", True)], outcomes
    mark_community_dialog_seen(home)
    shots = Screenshots(page, artifacts_dir() / "health")
    try:
        with running_dagster_dev(tmp_path, config_path, home=home) as dev, \
                dg.DagsterInstance.from_config(str(home)) as instance:
            dev.wait_for("the webserver to load the code location", dev.code_locations_loaded, LOCATION_TIMEOUT,
                         interval=1)
            record = dev.wait_for(f"{HEALTH_SENSOR} to refresh {MODEL_HEALTH} under the daemon",
                                  lambda: next(iter(materializations(instance, MODEL_HEALTH)), None), SENSOR_TIMEOUT)
            meta = record.asset_materialization.metadata
            champion = meta["champion_version"].value
            assert champion == "1" and meta["verdict"].value in {"healthy", "drifting"}, meta["summary"].value
            try:
                # 1. The page: the verdict in words and the champion, as a person reads them.
                page.goto(f"{dev.url}/assets/{MODEL_HEALTH}?view=events")
                see(page, "the verdict and the champion",
                    page.get_by_text(re.compile(rf"Champion v{champion} (is healthy|holds)")).first,
                    page.get_by_role("row").filter(has=page.get_by_text("champion_version", exact=True)).filter(
                        has=page.get_by_text(champion, exact=True)).first)
                shots.take("health_page")

                # 2. The metric plot: a PNG inside the metadata, opened from its row; it loads.
                dialog = open_markdown_picture(page, "metric_plot", "roc_auc per batch")
                shown = shown_images(dialog)
                assert [(i["scheme"], i["complete"]) for i in shown] == [("data:image/png;base64", True)], shown
                assert shown[0]["width"] > 100 and shown[0]["shownWidth"] > 0, shown
                page.wait_for_timeout(1000)  # the dialog fades in
                shots.take("health_metric_plot")
                page.keyboard.press("Escape")

                # 3. The freshness breach on the Checks tab, in words.
                page.goto(f"{dev.url}/assets/{MODEL_HEALTH}?view=checks")
                see(page, "batch_freshness failing (a warning)", page.get_by_text("batch_freshness", exact=True).first)
                page.goto(f"{dev.url}/assets/{MODEL_HEALTH}?view=checks&checkDetail=batch_freshness")
                see(page, "why batch_freshness failed",
                    page.get_by_text(re.compile(r"no batch for more than 0\.0001 h")).first)
                shots.take("health_freshness_check")
            except BaseException:
                shots.take_at_failure()
                raise
            # The same breach reached the webhook, once however often the view was refreshed.
            texts = [t for t in hook.texts() if "no new batch" in t]
            assert len(texts) == 1, hook.texts()

            # A new batch: the view refreshes, with each sensor's newest decision and its reason read
            # from the daemon's real ticks (the reason a tick list keeps a click deeper).
            landed_at = time.time()
            workspace.land("batch_0005", clean_batch(5, ROWS))

            def decisions_after_the_batch() -> dict[str, str] | None:
                for health in materializations(instance, MODEL_HEALTH):
                    if health.timestamp < landed_at:
                        continue
                    table = health.asset_materialization.metadata["automation"].value
                    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
                    if "no tick yet" not in rows.get(DRIFT_SENSOR, "no tick yet"):
                        return rows
                return None

            rows = dev.wait_for(f"{MODEL_HEALTH} refreshed after batch_0005 with the sensors' decisions",
                                decisions_after_the_batch, SENSOR_TIMEOUT)
            drift_row = rows[DRIFT_SENSOR].split(" | ")
            assert drift_row[2] in {"no run", "requested 1 run(s)"} and len(drift_row[3]) > 10, rows[DRIFT_SENSOR]
            assert "batch_000" in rows[LANDING_SENSOR] or "no new batch" in rows[LANDING_SENSOR], rows[LANDING_SENSOR]
            refreshes = [r for r in instance.get_runs() if r.job_name == HEALTH_JOB]
            assert refreshes and all(r.status == dg.DagsterRunStatus.SUCCESS for r in refreshes if r.is_finished)
    finally:
        hook.server.shutdown()
