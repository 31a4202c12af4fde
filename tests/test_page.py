"""The web page in a real browser: Debian's Chromium, driven by Playwright, against a real
``tonewire serve``.

- analyze: upload a rendered piece of music, wait for the analysis, check that every view is
  filled with the server's values and that the slider moves them all; a file that isn't
  audio and a link get friendly words, never codes;
- live: Chromium's fake microphone plays espeak-ng speech into the AudioWorklet; tone readings
  appear on screen, every one the server recorded;
- visibility: hiding the page closes the event stream but not the session; showing it again
  replays what happened meanwhile; a session the reaper ended reads "Session timed out";
- the resampler inside the worklet, on known signals.

Every page is served with ``Content-Security-Policy: default-src 'self'`` added by the test,
and any console error (a CSP violation is one) fails the test. Screenshots of each view at
desktop and phone width go to ``$PAGE_SCREENSHOTS_DIR`` (default: a temporary directory).
Skipped when /usr/bin/chromium or playwright is missing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import signals as S
from server import RunningServer, start_server, wait_for

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic",
                 # The test serves "/" through page.route to add the CSP header; a document
                 # fulfilled that way has no address space, so Chromium's Local Network Access
                 # checks would treat it as public and block its socket to 127.0.0.1 (a page
                 # really loaded from 127.0.0.1 is loopback to loopback and allowed).
                 "--disable-features=LocalNetworkAccessChecks"]
CSP = "default-src 'self'"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TONE_WORDS = {"Calm", "As usual", "Animated", "Tense", "Subdued"}
WAIT_MS = 60_000
CODE_LIKE = re.compile(r"\b[A-Z]{2,}_[A-Z_]{2,}\b")

Page = Any  # playwright.sync_api.Page (typed loosely: playwright is an optional test tool)


# -- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("PAGE_SCREENSHOTS_DIR")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Browser:
    """A fresh Chromium profile with one page; console errors and page errors recorded."""

    def __init__(self, playwright: Any, profile: Path, server: RunningServer,
                 extra_args: list[str]) -> None:
        self.server = server
        self.context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True,
            args=[*CHROMIUM_ARGS, *extra_args], viewport=DESKTOP)
        self.errors: list[str] = []
        self.page: Page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        # The strict policy the server will send: a violation is a console error.
        self.page.route(f"{server.url}/", self._with_csp)

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")

    def _with_csp(self, route: Any) -> None:
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": CSP}
        route.fulfill(response=response, headers=headers)

    def goto(self, fragment: str) -> Page:
        self.page.goto(f"{self.server.url}/{fragment}")
        self.page.wait_for_selector("body[data-ready='true']")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_browser(playwright: Any, tmp_path: Path) -> Iterator[Callable[..., Browser]]:
    opened: list[Browser] = []

    def launch(server: RunningServer, *extra_args: str) -> Browser:
        browser = Browser(playwright, tmp_path / f"profile-{len(opened)}", server,
                          list(extra_args))
        opened.append(browser)
        return browser

    yield launch
    for browser in opened:
        browser.close()
    errors = [e for b in opened for e in b.errors]
    assert not errors, errors


def screenshot(page: Page, shots: Path, name: str) -> None:
    """The view at desktop and phone width (full page), then back to desktop."""
    page.screenshot(path=str(shots / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    # usable at phone width: nothing wider than the screen (no sideways scrolling)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(DESKTOP)


# -- analyze ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("page-jobs"), workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def band_piece(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 s of General MIDI band rendered with fluidsynth: a soft half-time groove, then a
    faster, louder disco one (a section change near 12 s)."""
    d = tmp_path_factory.mktemp("page-music")
    soft = S.render_midi(S.band_notes(90, 12, style="halftime"), d / "soft.wav",
                         programs=S.BAND_PROGRAMS)
    loud = S.render_midi(S.band_notes(128, 12, style="disco"), d / "loud.wav",
                         programs=S.BAND_PROGRAMS)
    a, b = S.decode_all(soft), S.decode_all(loud)
    mix = np.concatenate([0.4 * a[:, : 12 * S.SR], b[:, : 12 * S.SR]], axis=1)
    return S.write_audio(d / "band piece.flac", mix, S.SR)


def view_state(page: Page) -> dict[str, Any]:
    """What every visualisation shows now."""
    state: dict[str, Any] = page.evaluate("""() => ({
        segment: document.body.dataset.segment,
        time: document.getElementById('an-time').textContent,
        emotion: document.getElementById('an-emotion').textContent,
        tempo: document.getElementById('an-tempo').textContent,
        key: document.getElementById('an-key').textContent,
        bands: Object.fromEntries([...document.querySelectorAll('#an-bands .bar')]
            .map(r => [r.dataset.key, Number(r.dataset.value)])),
        waves: Object.fromEntries([...document.querySelectorAll('#an-waves .bar')]
            .map(r => [r.dataset.key, Number(r.dataset.value)])),
        regions: Object.fromEntries([...document.querySelectorAll('#an-brain [data-region]')]
            .map(g => [g.dataset.region, Number(g.dataset.value)])),
        cursor: document.querySelector('#an-chart svg').dataset.cursor,
        points: Number(document.querySelector('#an-chart svg').dataset.points),
    })""")
    return state


def check_matches_segment(state: dict[str, Any], seg: dict[str, Any]) -> None:
    for key, value in seg["frequencies"].items():
        assert state["bands"][key] == pytest.approx(min(1.0, max(0.0, value)), abs=1e-3), key
    for key, value in seg["brainwaves"].items():
        assert state["waves"][key] == pytest.approx(value, abs=1e-3), key
    for key, value in seg["brainRegions"].items():
        assert state["regions"][key] == pytest.approx(value, abs=1e-3), key


def test_analyze_upload_fills_every_view_and_the_slider_moves_them(
        jobs_server: RunningServer, band_piece: Path, open_browser: Callable[..., Browser],
        shots: Path) -> None:
    browser = open_browser(jobs_server)
    page = browser.goto("#analyze")
    page.set_input_files("#an-file", str(band_piece))
    # every segment the views show while the analysis runs, in order
    page.evaluate("""() => {
        window.shown = [];
        new MutationObserver(() => window.shown.push(
                [document.body.dataset.segment, document.body.dataset.jobState]))
            .observe(document.body, {attributes: true, attributeFilter: ['data-segment']});
    }""")
    page.get_by_role("button", name="Analyze file").click()
    page.wait_for_selector("body[data-job-state='complete']", state="attached",
                           timeout=WAIT_MS)

    job_id = page.evaluate("document.body.dataset.jobId")
    analysis = httpx.get(f"{jobs_server.url}/api/jobs/{job_id}/analysis", timeout=10).json()
    segments = analysis["segments"]
    assert len(segments) == 24
    assert page.url.endswith(f"#analyze/{job_id}")  # a reload lands on the same job
    # the slider (and every view with it) advanced while the analysis ran
    shown = page.evaluate("window.shown")
    running = [int(seg) for seg, state in shown if state == "running"]
    assert len(set(running)) >= 3, shown
    assert running == sorted(running), shown

    # progress: full, with words
    assert page.eval_on_selector("#an-progress", "p => p.value") == 100
    assert "Done" in page.text_content("#an-message")

    # the slider follows the newest segment while running: it ends on the last one
    slider = page.locator("#an-slider")
    assert slider.get_attribute("max") == str(len(segments) - 1)
    assert slider.input_value() == str(len(segments) - 1)
    state = view_state(page)
    assert state["points"] == len(segments)
    check_matches_segment(state, segments[-1])

    # every view is populated
    overall = analysis["overallEmotion"]
    overall_text = page.text_content("#an-overall") or ""
    if overall["primary"]:
        assert overall["primary"].lower() in overall_text.lower()
        assert f"{round(overall['confidence'] * 100)}%" in overall_text
    else:
        assert overall_text == "No clear mood"
    assert f"{round(analysis['tempo']['bpm'])} BPM" in (page.text_content("#an-track") or "")
    assert analysis["key"]["name"] in (page.text_content("#an-track") or "")
    assert len(state["bands"]) == 5 and len(state["waves"]) == 5 and len(state["regions"]) == 7
    assert sum(state["bands"].values()) > 0 and sum(state["waves"].values()) > 0
    assert sum(state["regions"].values()) > 0
    assert page.locator("#an-sections .mark").count() == len(analysis["sections"]) >= 1
    assert page.locator("#an-chart .sections line").count() == len(analysis["sections"]) - 1
    assert page.locator("#an-chart polyline.loud").get_attribute("points")
    # estimates are labelled as such
    assert "estimated" in (page.text_content("#mood-title") or "")
    assert "heuristic" in (page.text_content("#brain-title") or "")

    # the slider, by keyboard: Home, then a few steps right; every view follows
    slider.focus()
    page.keyboard.press("Home")
    first = view_state(page)
    assert first["segment"] == "0" and first["time"].startswith("0:00")
    check_matches_segment(first, segments[0])
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    moved = view_state(page)
    assert moved["segment"] == "5" and moved["time"].startswith("0:05")
    check_matches_segment(moved, segments[5])
    for key in ("bands", "waves", "regions", "cursor", "time"):
        assert moved[key] != first[key], key
    page.keyboard.press("End")
    late = view_state(page)
    check_matches_segment(late, segments[-1])
    assert late["tempo"] != moved["tempo"] or late["emotion"] != moved["emotion"] \
        or late["key"] != moved["key"]

    # the brain diagram: names and functions on hover, tap and keyboard focus
    page.hover("[data-region='amygdala']")
    assert "Amygdala" in (page.text_content("#an-brain-info") or "")
    page.click("[data-region='motorCortex']")
    assert "Motor cortex" in (page.text_content("#an-brain-info") or "")
    page.focus("[data-region='hippocampus']")
    info = page.text_content("#an-brain-info") or ""
    assert "Hippocampus" in info and "memory" in info and "heuristic" in info
    page.focus("#an-slider")
    for _ in range(8):
        page.keyboard.press("ArrowLeft")  # into the loud second half, before its end
    page.click("[data-region='nucleusAccumbens']")
    screenshot(page, shots, "analyze")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(shots / "analyze-dark-desktop.png"), full_page=True)
    page.emulate_media(color_scheme="light")

    # a reload replays the job's stream from the start and shows the same analysis
    page.reload()
    page.wait_for_selector("body[data-job-state='complete']", state="attached",
                           timeout=WAIT_MS)
    check_matches_segment(view_state(page), segments[-1])
    assert page.locator("#an-sections .mark").count() == len(analysis["sections"])


def test_analyze_errors_are_words_not_codes(jobs_server: RunningServer, tmp_path: Path,
                                            open_browser: Callable[..., Browser],
                                            shots: Path) -> None:
    junk = tmp_path / "not audio.mp3"
    junk.write_bytes(np.random.default_rng(1).bytes(40_000))
    browser = open_browser(jobs_server)
    page = browser.goto("#analyze")
    page.get_by_label("Audio file").set_input_files(str(junk))
    page.get_by_role("button", name="Analyze file").click()
    page.wait_for_selector("body[data-job-state='error']", timeout=WAIT_MS)
    notice = page.locator("#an-notice")
    assert notice.is_visible()
    assert notice.get_attribute("role") == "alert"
    text = notice.text_content() or ""
    assert "This file isn't audio we can read — try another." in text
    assert not CODE_LIKE.search(text), text
    page.screenshot(path=str(shots / "analyze-error-desktop.png"))

    # a link: until the server takes links this is a calm "not available"; once it does, the
    # job's own error in words. Never a code.
    page.get_by_label("Link to audio or video").fill("http://127.0.0.1:9/nothing-here.mp3")
    page.keyboard.press("Enter")  # the form submits from the keyboard
    page.wait_for_function(
        "() => !document.getElementById('an-notice').hidden && "
        "!document.getElementById('an-notice').textContent.includes('isn\\'t audio')",
        timeout=WAIT_MS)
    text = notice.text_content() or ""
    assert text.strip() and not CODE_LIKE.search(text), text
    # the forms are usable again
    assert page.locator("#an-url").is_enabled() and page.locator("#an-file").is_enabled()
    browser.errors = [e for e in browser.errors if "status of 4" not in e]  # the 4xx, logged


# -- live ------------------------------------------------------------------------------------


IDLE_TTL_S = 2.0
WAKE_LOCK_HELD = "import('/static/js/main.js').then(m => Boolean(m.live.wake.sentinel))"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("page-live"), workers=1,
                      session_idle_ttl_s=IDLE_TTL_S) as server:
        yield server


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 16 s of espeak-ng speech with pauses, in three voices (calm and low, ordinary,
    fast and high), as 16-bit 48 kHz mono WAV: Chromium's fake microphone loops it."""
    d = tmp_path_factory.mktemp("page-speech")
    parts = []
    for i, (text, pitch, speed) in enumerate([
            ("I walked along the river this morning. The water was very still.", 30, 130),
            ("Then I sat on a bench and read a book for a while.", 50, 170),
            ("And then I heard the news! We won the prize! Can you believe it?", 85, 240)]):
        wav = S.espeak(text, d / f"part{i}.wav", pitch=pitch, speed=speed)
        parts += [S.decode_all(wav, 48000).mean(axis=0), np.zeros(24000, dtype=np.float32)]
    speech = np.concatenate(parts)
    speech *= 0.5 / float(np.max(np.abs(speech)))
    out = d / "speech.wav"
    S.write_audio(out, speech, 48000)
    return out


def mic_args(wav: Path) -> list[str]:
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required"]


def screen_seqs(page: Page) -> list[int]:
    seqs: list[int] = page.evaluate(
        "[...document.querySelectorAll('#live-timeline li')].map(li => Number(li.dataset.seq))")
    return seqs


def history_seqs(server: RunningServer, sid: str) -> list[int]:
    r = httpx.get(f"{server.url}/session/{sid}/history", timeout=10)
    assert r.status_code == 200, r.text
    return [e["seq"] for e in r.json()["events"]]


def session(server: RunningServer, sid: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/session/{sid}", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def set_visibility(page: Page, state: str) -> None:
    """Headless Chromium has no hidden state to switch to (no window to minimise), so the
    document's visibilityState is overridden and the real visibilitychange event fired: the
    page's own handler runs, with the same network effects as a real tab switch."""
    page.evaluate("""(state) => {
        for (const [name, value] of [['visibilityState', state], ['hidden', state === 'hidden']]) {
            Object.defineProperty(document, name, {configurable: true, get: () => value});
        }
        document.dispatchEvent(new Event('visibilitychange'));
    }""", state)


def start_listening(browser: Browser, min_readings: int) -> tuple[Page, str]:
    page = browser.goto("#live")
    page.get_by_role("button", name="Start listening").click()
    page.wait_for_selector("body[data-live-state='live']", state="attached", timeout=WAIT_MS)
    page.wait_for_function(
        f"() => document.querySelectorAll('#live-timeline li').length >= {min_readings}",
        timeout=WAIT_MS * 2)
    sid: str = page.evaluate("document.body.dataset.sessionId")
    return page, sid


def test_live_fake_microphone_shows_tone_readings(
        live_server: RunningServer, speech_wav: Path, open_browser: Callable[..., Browser],
        shots: Path) -> None:
    browser = open_browser(live_server, *mic_args(speech_wav))
    page, sid = start_listening(browser, 10)

    # the worklet's frames reached the server as 100 ms of 16 kHz PCM16 each
    info = session(live_server, sid)
    assert info["state"] == "active" and info["ingest_connected"] and info["subscribers"] == 1
    assert info["options"]["sample_rate"] == 16000
    assert info["samples"] > 0 and info["samples"] % 1600 == 0, info["samples"]
    rate = page.evaluate("import('/static/js/main.js').then(m => m.live.capture.sampleRate)")
    assert rate in (16000, 22050, 44100, 48000), rate  # 44100 here: the worklet resamples
    # the screen is kept awake while listening
    assert page.evaluate(WAKE_LOCK_HELD)

    # the current tone, with its confidence and the words that it is an estimate
    assert page.text_content("#live-label") in TONE_WORDS
    assert re.fullmatch(r"Confidence \d+%", page.text_content("#live-confidence") or "")
    assert "estimated" in (page.text_content("#now-title") or "")
    assert page.get_attribute("#live-now", "data-affect") in ("low", "neutral", "high")
    assert (page.text_content("#live-subtext") or "").strip()
    # meters: the input level from the worklet, the pitch from the readings
    page.wait_for_function("() => document.getElementById('live-level').value > -70")
    assert re.fullmatch(r"\d+ Hz", page.text_content("#live-pitch-text") or "")
    assert page.locator("#live-announce").text_content()  # a tone was announced
    # every reading the server has so far is on screen, newest first
    on_screen = screen_seqs(page)
    assert on_screen == sorted(on_screen, reverse=True)
    history = history_seqs(live_server, sid)
    assert [s for s in history if s <= max(on_screen)] == sorted(on_screen)
    # exports point at this session
    assert page.get_attribute("#live-export-csv", "href") == f"/session/{sid}/export?format=csv"

    screenshot(page, shots, "live")
    # the elcor toggle rewrites the subtexts as bracketed prefixes, and back
    page.get_by_label("Tone prefixes").check()
    subs = page.locator("#live-timeline .sub").all_text_contents()
    assert subs and all(re.fullmatch(r"\[[A-Z][a-z]+\]", s) for s in subs), subs
    page.get_by_label("Tone prefixes").uncheck()
    subs = page.locator("#live-timeline .sub").all_text_contents()
    assert not any(s.startswith("[") for s in subs), subs

    # speech activity was seen at some point
    page.wait_for_function("() => document.getElementById('live-speech').dataset.speech === 'true'",
                           timeout=WAIT_MS)

    # pause: the microphone and the ingest socket close, the session stays; resume: the same
    # session goes on (its sample clock continues) and new readings arrive
    page.get_by_role("button", name="Pause").click()
    page.wait_for_selector("body[data-live-state='paused']", state="attached")
    wait_for(lambda: not session(live_server, sid)["ingest_connected"], what="ingest to close")
    paused_at = session(live_server, sid)["samples"]
    count = len(screen_seqs(page))
    page.get_by_role("button", name="Resume").click()
    page.wait_for_selector("body[data-live-state='live']", state="attached", timeout=WAIT_MS)
    page.wait_for_function(
        f"() => document.querySelectorAll('#live-timeline li').length > {count}",
        timeout=WAIT_MS)
    assert session(live_server, sid)["samples"] > paused_at

    page.get_by_role("button", name="End session").click()
    page.wait_for_selector("body[data-live-state='ended']", state="attached", timeout=WAIT_MS)
    ended = session(live_server, sid)
    assert ended["state"] == "ended" and ended["end_reason"] == "ended"
    assert not page.evaluate(WAKE_LOCK_HELD)
    assert page.get_by_role("button", name="Start a new session").is_visible()


def test_hidden_page_resumes_without_losing_events_then_times_out(
        live_server: RunningServer, speech_wav: Path, open_browser: Callable[..., Browser],
        shots: Path) -> None:
    browser = open_browser(live_server, *mic_args(speech_wav))
    page, sid = start_listening(browser, 2)

    # hidden: the event stream closes, the session and its audio go on
    set_visibility(page, "hidden")
    wait_for(lambda: session(live_server, sid)["subscribers"] == 0, what="the stream to close")
    seen = screen_seqs(page)
    assert session(live_server, sid)["ingest_connected"]
    wait_for(lambda: len(history_seqs(live_server, sid)) >= len(seen) + 3,
             what="readings made while hidden")
    assert screen_seqs(page) == seen  # nothing arrives while hidden

    # shown: checked, reconnected from the last seq, and everything missed is replayed
    set_visibility(page, "visible")
    wait_for(lambda: session(live_server, sid)["subscribers"] == 1, what="the stream to reopen")
    history = history_seqs(live_server, sid)
    page.wait_for_function(
        f"() => Math.max(...[...document.querySelectorAll('#live-timeline li')]"
        f".map(li => Number(li.dataset.seq))) >= {max(history)}", timeout=WAIT_MS)
    on_screen = screen_seqs(page)
    upto = [s for s in history_seqs(live_server, sid) if s <= max(on_screen)]
    assert sorted(on_screen) == upto  # every reading, once, none lost, none doubled
    assert len(on_screen) == len(set(on_screen))

    # paused and hidden past the idle TTL: the reaper ends the session; on return the page
    # finds out and says so calmly
    page.get_by_role("button", name="Pause").click()
    page.wait_for_selector("body[data-live-state='paused']", state="attached")
    wait_for(lambda: not session(live_server, sid)["ingest_connected"], what="ingest to close")
    set_visibility(page, "hidden")
    ended = wait_for(lambda: (s := session(live_server, sid))["state"] == "ended" and s,
                     timeout=IDLE_TTL_S * 10, what="the reaper to end the session")
    assert ended["end_reason"] == "idle"
    set_visibility(page, "visible")
    notice = page.locator("#live-notice")
    notice.wait_for(state="visible", timeout=WAIT_MS)
    assert "Session timed out" in (notice.text_content() or "")
    assert page.get_attribute("body", "data-live-state") == "ended"
    # what was said up to the pause, analysed after the stream closed, was replayed too
    assert sorted(screen_seqs(page)) == history_seqs(live_server, sid)
    assert len(screen_seqs(page)) >= len(on_screen)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / "live-timed-out-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


# -- the resampler in the worklet ------------------------------------------------------------


def test_worklet_resampler_on_known_signals(jobs_server: RunningServer,
                                            open_browser: Callable[..., Browser]) -> None:
    """48 and 44.1 kHz to 16 kHz: a 1 kHz tone keeps its frequency and level, a 10 kHz tone
    (above the 8 kHz Nyquist of the output) is removed, and block size doesn't matter."""
    page = open_browser(jobs_server).goto("#live")
    results = page.evaluate("""async () => {
        const { Resampler } = await import('/static/js/resample.js');
        const out = {};
        for (const rate of [48000, 44100]) {
            const tone = (hz) => Float32Array.from({ length: rate * 2 },
                (_, i) => 0.5 * Math.sin(2 * Math.PI * hz * i / rate));
            const run = (x, block) => {
                const r = new Resampler(rate, 16000);
                const parts = [];
                for (let i = 0; i < x.length; i += block) {
                    parts.push(...r.push(x.subarray(i, i + block)));
                }
                return Float32Array.from(parts);
            };
            const low = run(tone(1000), 128);
            const whole = run(tone(1000), tone(1000).length);
            const high = run(tone(10000), 128);
            const steady = (y) => y.subarray(1600, y.length - 1600);
            const rms = (y) => Math.sqrt(y.reduce((a, v) => a + v * v, 0) / y.length);
            let crossings = 0;
            const s = steady(low);
            for (let i = 1; i < s.length; i++) if ((s[i - 1] < 0) !== (s[i] < 0)) crossings++;
            let diff = 0;
            for (let i = 0; i < Math.min(low.length, whole.length); i++) {
                diff = Math.max(diff, Math.abs(low[i] - whole[i]));
            }
            out[rate] = { n: low.length, hz: crossings / 2 / (s.length / 16000),
                          rmsLow: rms(s), rmsHigh: rms(steady(high)), diff };
        }
        return out;
    }""")
    for rate, r in results.items():
        assert r["n"] == pytest.approx(32000, abs=40), (rate, r)
        assert r["hz"] == pytest.approx(1000, rel=0.01), (rate, r)
        assert r["rmsLow"] == pytest.approx(0.5 / np.sqrt(2), rel=0.01), (rate, r)
        assert r["rmsHigh"] < 0.005, (rate, r)  # under -43 dB relative to the tone
        assert r["diff"] < 1e-5, (rate, r)


def test_page_is_served_from_the_package(jobs_server: RunningServer) -> None:
    """``/`` and ``/static/`` come from tonewire/web, with JavaScript MIME types for modules
    and the worklet; the API routes are untouched."""
    with httpx.Client(base_url=jobs_server.url, timeout=10) as client:
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert 'src="/static/js/main.js"' in index.text
        assert "<script>" not in index.text and " style=" not in index.text  # CSP: nothing inline
        for path in ("/static/js/main.js", "/static/js/pcm-worklet.js", "/static/js/resample.js"):
            r = client.get(path)
            assert r.status_code == 200, path
            assert "javascript" in r.headers["content-type"], r.headers["content-type"]
        assert client.get("/static/css/app.css").headers["content-type"].startswith("text/css")
        assert client.get("/static/nothing.js").status_code == 404
        assert client.get("/health").json()["status"] == "healthy"
        assert json.loads(client.get("/openapi.json").text)["paths"].get("/") is None


def test_static_files_are_package_data() -> None:
    """Every file under tonewire/web/static matches a package-data pattern, so a wheel (not
    only an editable install) carries the page."""
    import tomllib
    from fnmatch import fnmatch

    root = Path(__file__).resolve().parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["tonewire.web"]
    web = root / "tonewire" / "web"
    files = [p.relative_to(web).as_posix() for p in (web / "static").rglob("*") if p.is_file()]
    assert files
    missing = [f for f in files if not any(fnmatch(f, pat) for pat in patterns)]
    assert not missing, missing


# -- access keys -----------------------------------------------------------------------------


def test_a_server_with_keys_asks_for_one_and_then_works(
        tmp_path: Path, open_browser: Callable[..., Browser]) -> None:
    key = "page-test-key-0123456789"
    wav = S.write_audio(tmp_path / "short.wav", S.music_like(4.0, seed=90), S.SR)
    with start_server(tmp_path / "keyed", workers=1, api_keys=key) as server:
        browser = open_browser(server)
        page = browser.goto("#analyze")
        page.wait_for_selector("body[data-access='needed']", state="attached")
        assert page.is_visible("#key-panel")
        page.get_by_label("Access key", exact=True).fill("not-the-key-at-all-000")
        page.get_by_role("button", name="Use this key").click()
        page.wait_for_selector("body[data-access='needed']", state="attached")  # asked again
        page.get_by_label("Access key", exact=True).fill(key)
        page.get_by_role("button", name="Use this key").click()
        page.wait_for_selector("body[data-access='granted']", state="attached")
        assert not page.is_visible("#key-panel")
        # Upload (header) and the job's event stream (?token=) both pass.
        page.set_input_files("#an-file", str(wav))
        page.get_by_role("button", name="Analyze file").click()
        page.wait_for_selector("body[data-job-state='complete']", state="attached",
                               timeout=WAIT_MS)
        # The export and ingest URLs carry the key too.
        token_url = page.evaluate(
            "async () => (await import('/static/js/auth.js')).withToken('/x?format=csv')")
        assert token_url == f"/x?format=csv&token={key}"
    # Chromium logs each refused request (the expected 401s) as a console error.
    browser.errors[:] = [e for e in browser.errors if "401" not in e]
