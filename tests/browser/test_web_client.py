"""What people expect of the page (issue 17), in headless Chromium against ``tomchat serve``:
Markdown, accessibility (axe-core), phones, right-to-left text, dark mode, what was missed,
honest voice controls, failed joins and the replay clock after a seek."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import WEB, PeopleFactory, ServerProcess, _need_chromium, _serve
from tests.browser.people import new_room_id, rest_json
from tests.fakes.llm import FakeLLM, openai_stream

pytestmark = pytest.mark.browser

AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"

# What a model writes: Markdown, and HTML that must never become elements.
MODEL_REPLY = (
    "Here is **bold**, *emphasis* and a list:\n\n"
    "- one\n- two\n\n"
    "| city | rain |\n| --- | --- |\n| Bergen | lots |\n\n"
    "```python\nprint('hi')\n```\n\n"
    "A [safe link](https://example.org/docs) and a [bad one](javascript:alert(1)).\n\n"
    '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">'
)


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        # Small pieces with pauses: the reply streams for a while, cutting Markdown mid-token.
        pieces = [MODEL_REPLY[i : i + 9] for i in range(0, len(MODEL_REPLY), 9)]
        fake.default = openai_stream(pieces, delay=0.03)
        yield fake


@pytest.fixture(scope="module")
def markdown_server(
    built_client: Path,
    output_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLM,
) -> Iterator[ServerProcess]:
    """``tomchat serve`` answering through a model that writes Markdown and HTML."""
    _need_chromium()
    with _serve(
        tmp_path_factory.mktemp("markdown-server"),
        output_dir / "markdown-server.log",
        TOMCHAT_LLM="openai",
        TOMCHAT_LLM_BASE_URL=fake_llm.url,
        TOMCHAT_LLM_API_KEY="k",
        TOMCHAT_LLM_MODEL="fake-model",
    ) as server:
        yield server


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed at {AXE}: run `npm ci` in web/")
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def hide_tab(page: Page, hidden: bool) -> None:
    """What switching to another tab and back does to the page."""
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
            Object.defineProperty(document, "visibilityState",
                { value: hidden ? "hidden" : "visible", configurable: true });
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_markdown_from_a_model_is_rendered_and_sanitised(
    browser: Browser, markdown_server: ServerProcess, output_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.add_init_script("localStorage.setItem('tomchat.username', 'ann')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        room = new_room_id("md")
        page.goto(f"{markdown_server.url}/room/{room}")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        page.get_by_test_id("message-input").fill("Show me **your** markdown <b>please</b>")
        page.get_by_test_id("send-button").click()

        mine = page.locator("[data-testid=message]", has_text="markdown").first
        expect(mine.locator("strong")).to_have_text("your")
        # HTML a person writes is shown as the text it is.
        expect(mine.get_by_test_id("message-content")).to_contain_text("<b>please</b>")
        expect(mine.locator("b")).to_have_count(0)

        reply = page.locator("[data-testid=message][data-ai=true]").last
        # While it streams, the text grows inside rendered Markdown (no raw ** shown).
        expect(reply).to_have_attribute("data-streaming", "true", timeout=20_000)
        expect(reply.locator("strong")).to_have_text("bold", timeout=20_000)
        expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
        content = reply.get_by_test_id("message-content")
        expect(content.locator("em")).to_have_text("emphasis")
        expect(content.locator("ul > li")).to_have_text(["one", "two"])
        expect(content.locator("table td")).to_have_text(["Bergen", "lots"])
        code = content.locator("pre code")
        expect(code).to_have_text("print('hi')\n")
        assert "monospace" in code.evaluate("e => getComputedStyle(e).fontFamily")
        expect(code.locator(".hljs-built_in")).to_have_text("print")
        expect(content.get_by_test_id("copy-code")).to_be_visible()

        safe = content.get_by_role("link", name="safe link")
        expect(safe).to_have_attribute("href", "https://example.org/docs")
        expect(safe).to_have_attribute("target", "_blank")
        expect(safe).to_have_attribute("rel", "noopener noreferrer")
        # The javascript: link is text only; the HTML is literal text, never elements.
        expect(content.locator("a")).to_have_count(1)
        expect(content).to_contain_text("bad one")
        expect(content).to_contain_text("<script>window.pwned = 1</script>")
        expect(content.locator("script, img")).to_have_count(0)
        assert page.evaluate("window.pwned") is None
        # One message, announced once it was finished.
        expect(page.get_by_test_id("announcer")).to_contain_text("Here is **bold**")
        page.screenshot(path=output_dir / "markdown.png")
        assert not errors, errors
    finally:
        context.close()


def test_axe_finds_nothing_serious(people: PeopleFactory, output_dir: Path) -> None:
    ann = people("ann")
    page = ann.page
    page.goto(ann.base_url)
    expect(page.get_by_test_id("room-list").or_(page.get_by_text("No rooms yet"))).to_be_visible()
    assert axe_violations(page) == []
    page.screenshot(path=output_dir / "lobby.png")

    room = new_room_id("axe")
    ann.open_room(room)
    # Focus is in the composer, ready to type.
    expect(page.get_by_test_id("message-input")).to_be_focused()
    ann.send("Hello there, how is the weather?")
    reply = ann.wait_reply_started()
    ann.wait_reply_finished(reply)
    page.get_by_test_id("export-menu").locator("summary").click()
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("export-markdown")).to_be_hidden()
    page.screenshot(path=output_dir / "room-light.png")

    page.goto(f"{ann.base_url}/room/{room}/replay")
    expect(page.get_by_test_id("replay")).to_have_attribute(
        "data-state", re.compile("playing|finished")
    )
    assert axe_violations(page) == []

    # The characters page: the library as listed, then with the form to write one open.
    page.goto(f"{ann.base_url}/characters")
    expect(page.locator("[data-testid=character-item][data-character-id=tom]")).to_be_visible()
    assert axe_violations(page) == []
    page.get_by_test_id("new-character").click()
    expect(page.get_by_test_id("character-form")).to_be_visible()
    assert axe_violations(page) == []
    page.screenshot(path=output_dir / "characters.png")
    assert not ann.errors, ann.errors


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(
    browser: Browser, tomchat_server: ServerProcess, output_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 760}, color_scheme="dark")
    context.add_init_script(
        "localStorage.getItem('tomchat.username') ?? localStorage.setItem('tomchat.username', 'dora')"
    )
    page = context.new_page()
    try:
        background = "() => getComputedStyle(document.documentElement).backgroundColor"
        room = new_room_id("dark")
        page.goto(f"{tomchat_server.url}/room/{room}")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        assert page.evaluate(background) == "rgb(20, 20, 28)"
        toggle = page.get_by_test_id("theme-toggle")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        page.get_by_test_id("message-input").fill("Dark rooms and **bold** words")
        page.get_by_test_id("send-button").click()
        expect(page.locator("[data-testid=message][data-ai=true]")).to_have_count(2, timeout=20_000)
        assert axe_violations(page) == []
        page.screenshot(path=output_dir / "room-dark.png")

        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        assert page.evaluate(background) == "rgb(246, 246, 251)"
        page.reload()
        expect(page.get_by_test_id("theme-toggle")).to_have_attribute("aria-pressed", "false")
        assert page.evaluate(background) == "rgb(246, 246, 251)"
    finally:
        context.close()


def test_phone_reaches_the_people_and_writes_rtl(
    browser: Browser, tomchat_server: ServerProcess, output_dir: Path
) -> None:
    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    phone.add_init_script(
        "localStorage.getItem('tomchat.username') ?? localStorage.setItem('tomchat.username', 'noor')"
    )
    page = phone.new_page()
    try:
        room = new_room_id("phone")
        page.goto(f"{tomchat_server.url}/room/{room}")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        members = page.get_by_test_id("members")
        expect(members).to_be_hidden()
        toggle = page.get_by_test_id("members-toggle")
        expect(toggle).to_have_text("People · 1")
        toggle.click()
        expect(members).to_be_visible()
        expect(page.get_by_test_id("member")).to_have_text(["noor (you)host"])
        box = members.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 391
        page.screenshot(path=output_dir / "phone-people.png")
        page.keyboard.press("Escape")
        expect(members).to_be_hidden()

        # Right-to-left text is laid out right to left.
        page.get_by_test_id("message-input").fill("مرحبا يا توم، كيف حالك؟")
        assert page.get_by_test_id("message-input").get_attribute("dir") == "auto"
        page.get_by_test_id("send-button").click()
        arabic = page.get_by_test_id("message-content").filter(has_text="مرحبا")
        expect(arabic).to_have_attribute("dir", "auto")
        assert arabic.locator("p").evaluate("e => getComputedStyle(e).direction") == "rtl"
        composer = page.get_by_test_id("composer").bounding_box()
        assert composer is not None and composer["y"] + composer["height"] <= 844
        page.screenshot(path=output_dir / "phone.png")
    finally:
        phone.close()


def test_no_voice_controls_on_a_server_without_voice(people: PeopleFactory) -> None:
    features = rest_json(people("").base_url, "/api/features")
    assert features == {
        "tts": False,
        "asr": False,
        "llm": "demo",
        "characters": True,
        "trustedIdentity": False,
    }
    ann = people("ann")
    ann.open_room(new_room_id("novoice"))
    expect(ann.page.get_by_test_id("message-input")).to_be_visible()
    expect(ann.page.get_by_test_id("mute-toggle")).to_have_count(0)
    expect(ann.page.get_by_test_id("record-button")).to_have_count(0)


def test_what_you_missed(people: PeopleFactory) -> None:
    room = new_room_id("missed")
    ann, bob = people("ann"), people("bob")
    ann.open_room(room)
    bob.open_room(room)
    hide_tab(ann.page, True)
    bob.send("Are you there, Ann?")
    reply = bob.wait_reply_started()
    bob.wait_reply_finished(reply)
    # Bob's message and Tom's reply, in the title while Ann looks elsewhere.
    expect(ann.page).to_have_title(re.compile(r"^\(2\) "))
    hide_tab(ann.page, False)
    expect(ann.page).to_have_title(re.compile(r"^[^(]"))
    divider = ann.page.get_by_test_id("new-divider")
    expect(divider).to_have_text("New messages")
    # The line sits right before the first thing Ann missed.
    following = divider.evaluate("e => e.nextElementSibling.textContent")
    assert "Are you there, Ann?" in following


def test_failed_join_says_why_and_the_prompt_names_the_room(people: PeopleFactory) -> None:
    base = people("").base_url
    request = urllib.request.Request(
        f"{base}/api/rooms",
        data=json.dumps({"name": "Secret garden", "private": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created = json.load(response)

    newcomer = people("")
    newcomer.page.goto(f"{base}/room/{created['id']}?token={created['token']}")
    expect(newcomer.page.get_by_test_id("gate-room-name")).to_have_text("Join “Secret garden”")

    # Without the token: not "Connecting…" forever, but why, and ways out.
    ann = people("ann")
    ann.page.goto(f"{base}/room/{created['id']}")
    expect(ann.page.get_by_test_id("room-error")).to_be_visible(timeout=15_000)
    expect(ann.connection).to_have_text("Not joined")
    expect(ann.page.get_by_test_id("retry-join")).to_be_visible()
    expect(ann.page.get_by_test_id("room-error").get_by_role("link")).to_have_text(
        "Back to the rooms"
    )


def test_replay_clock_follows_after_a_seek(people: PeopleFactory) -> None:
    room = new_room_id("seek")
    ann = people("ann")
    ann.open_room(room)
    for question in ("Tell me about rivers", "And about mountains?"):
        ann.send(question)
        ann.wait_reply_finished(ann.wait_reply_started())

    page = ann.page
    page.goto(f"{ann.base_url}/room/{room}/replay")
    replay = page.get_by_test_id("replay")
    expect(replay).to_have_attribute("data-state", "playing", timeout=15_000)
    time_label = page.get_by_test_id("replay-time")
    scrubber = page.get_by_test_id("replay-scrubber")

    # A click a little way in, as a pointer does it.
    box = scrubber.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.15, box["y"] + box["height"] / 2)
    after_click = time_label.text_content()

    page.wait_for_timeout(1_500)
    assert time_label.text_content() != after_click, "the clock froze after a click"
    value = float(scrubber.input_value())
    page.wait_for_timeout(1_000)
    assert float(scrubber.input_value()) > value, "the scrubber froze after a click"

    # The keyboard: arrows move the thumb, and playback goes on from there.
    scrubber.focus()
    page.keyboard.press("ArrowRight")
    after_key = time_label.text_content()
    page.wait_for_timeout(1_500)
    assert time_label.text_content() != after_key, "the clock froze after an arrow key"

    expect(replay).to_have_attribute("data-state", "finished", timeout=60_000)
    shown, total = (time_label.text_content() or "").split(" / ")
    assert shown == total, f"finished, but the clock reads {shown} of {total}"
    assert not ann.errors, ann.errors


def test_the_lobby_pages_through_every_room(people: PeopleFactory) -> None:
    base = people("").base_url
    made = []
    for i in range(55):  # more than one page of the room list (50)
        request = urllib.request.Request(
            f"{base}/api/rooms",
            data=json.dumps({"name": f"Paged room {i}"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            made.append(json.load(response)["id"])
    ann = people("ann")
    page = ann.page
    page.goto(base)
    items = page.get_by_test_id("room-item")
    expect(items).to_have_count(50)
    oldest = page.locator(f'[data-room-id="{made[0]}"]')
    expect(oldest).to_have_count(0)  # the oldest of them is on a later page
    more = page.get_by_test_id("more-rooms")
    while more.count():
        count = items.count()
        more.click()
        expect(items).not_to_have_count(count)
    expect(oldest).to_have_count(1)
    listed = set(
        page.locator("[data-testid=room-item]").evaluate_all(
            "els => els.map(e => e.dataset.roomId)"
        )
    )
    assert set(made) <= listed
    assert len(listed) == items.count(), "each room once"
