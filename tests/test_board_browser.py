"""The wall board in a real headless Chromium (Selenium) at 1920x1080: 40 tiles in several states,
a keypad answer on the tile within 2 s without a reload, late and silent teams marked, nothing
overflowing, text big enough to read across the hall.  Each test saves a screenshot under
test-output/board/.  And, without a browser, the board's state for every team is the API's."""
from __future__ import annotations

import re
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from gateway.config import load_config
from gateway.storage.migrate import upgrade
from tests._board_seed import keypad, seed_order
from tests._browser import HEIGHT, WIDTH, screenshot, start_chromium
from tests._http_rig import start_rig

pytestmark = pytest.mark.browser

# What the page looks like from across the hall, measured by the browser itself.
MEASURE = """
const tiles = [...document.querySelectorAll('.tile')];
const px = el => parseFloat(getComputedStyle(el).fontSize);
const texts = [...document.querySelectorAll('body *')].filter(el =>
    el.offsetParent !== null && [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
return {
  scrollW: document.documentElement.scrollWidth, scrollH: document.documentElement.scrollHeight,
  innerW: innerWidth, innerH: innerHeight,
  tiles: tiles.map(t => { const r = t.getBoundingClientRect(), s = t.querySelector('.state');
    return {team: t.dataset.team, state: t.dataset.state, flags: t.dataset.flags || '', cls: t.className,
            left: r.left, top: r.top, right: r.right, bottom: r.bottom, word: s.textContent,
            wordPx: px(s), wordClipped: s.scrollWidth > s.clientWidth || s.scrollHeight > s.clientHeight + 1, dims: [s.scrollWidth, s.clientWidth, s.scrollHeight, s.clientHeight, t.scrollHeight, t.clientHeight],
            tileClipped: t.scrollHeight > t.clientHeight + 1,
            bg: getComputedStyle(t).backgroundColor, border: getComputedStyle(t).borderTopColor,
            note: (t.querySelector('.note') || {}).textContent || '',
            linesClipped: [...t.querySelectorAll('.meta,.note')].some(el => el.scrollWidth > el.clientWidth)}; }),
  groups: [...document.querySelectorAll('.group')].map(g => [g.querySelector('h2').firstChild.textContent,
                                                             g.querySelectorAll('.tile').length]),
  smallest: Math.min(...texts.map(px)),
  smallText: texts.filter(el => px(el) < 24).map(el => el.tagName + ':' + el.textContent.slice(0, 20)),
  attention: [...document.querySelectorAll('.attention li.flagged')].map(li => li.dataset.team),
  cjk: document.fonts.check('34px "Noto Sans CJK SC"', '已到达'),
  marker: window.__wall_marker || null,
};"""


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'yihu.sqlite'}"
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def chrome():
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def rig(sqlite_url, tmp_path):
    r = pytest_twisted.blockon(start_rig(sqlite_url, tmp_path))
    yield r
    pytest_twisted.blockon(r.stop())


def in_thread(fn, *args):
    """Selenium blocks; the gateway's reactor must keep serving meanwhile."""
    return threads.deferToThread(fn, *args)


@inlineCallbacks
def open_board(chrome, rig):
    # Opened once with ?key=: the cookie keeps the read key, the address bar loses it.
    yield in_thread(chrome.get, f"{rig.root}/board?key={rig.keys['read']}")
    assert chrome.current_url == f"{rig.root}/board"
    return (yield in_thread(chrome.execute_script, MEASURE))


def cfg():
    return load_config(None, {}).escalation


@pytest_twisted.inlineCallbacks
def test_forty_tiles_in_several_states_late_and_silent_marked_nothing_overflows(chrome, rig):
    seeded = yield seed_order(rig, cfg())
    page = yield open_board(chrome, rig)
    shot = screenshot(chrome, "forty-teams")
    assert shot.stat().st_size > 10_000
    tiles = {t["team"]: t for t in page["tiles"]}
    assert len(page["tiles"]) == 40 == len(tiles)
    assert page["groups"] == [["公共救援", 23], ["专业队伍", 16], ["专家", 1]]
    # Several states, each in its word; the seeded answers are where they were put.
    for team, state in seeded.expected.items():
        assert tiles[team]["state"] == state, team
    assert {t["word"] for t in page["tiles"]} == {"待发送", "已发送", "已收到", "已到达", "处置完毕", "无法执行"}
    # A team whose order SMS still waits for a modem reads 待发送, not 已发送 (its state is still "sent").
    assert {t for t, tile in tiles.items() if tile["word"] == "待发送"} == set(seeded.queued)
    assert all(tiles[t]["state"] == "sent" for t in seeded.queued)
    # 45 minutes after the order: PUB-01 said "received" but has not arrived: late, marked.
    late = tiles["PUB-01"]
    assert late["flags"] == "late" and "超时" in late["note"]
    assert late["bg"] == "rgb(198, 40, 40)" and late["border"] == "rgb(255, 214, 0)"
    # The 36 teams that never answered are silent, and stand out the same way.
    silent = [t for t in page["tiles"] if "silent" in t["flags"]]
    assert len(silent) == 36 and all("未回复" in t["note"] for t in silent)
    assert tiles["PUB-02"]["flags"] == "" and tiles["PUB-02"]["bg"] != late["bg"]
    # The attention list: silent teams first, then the late one (PUB-01 is last when shown at all).
    assert page["attention"] and all(tiles[t]["flags"].startswith("silent") for t in page["attention"])
    # Nothing overflows the 1920x1080 wall, every tile whole on it, no state word clipped.
    assert (page["innerW"], page["innerH"]) == (WIDTH, HEIGHT)
    assert page["scrollW"] <= WIDTH and page["scrollH"] <= HEIGHT, page
    for t in page["tiles"]:
        assert 0 <= t["left"] and t["right"] <= WIDTH and 0 <= t["top"] and t["bottom"] <= HEIGHT, t
        assert not t["wordClipped"] and not t["tileClipped"] and t["wordPx"] >= 32, (t["team"], t["dims"])
        assert not t["linesClipped"], t       # the minutes, the deadline and the flag are read whole
    assert page["smallest"] >= 24, page["smallText"]
    assert page["cjk"], "the CJK font (fonts-noto-cjk) is not available to the page"


@pytest_twisted.inlineCallbacks
def test_keypad_answer_changes_the_tile_within_two_seconds_without_reload(chrome, rig):
    seeded = yield seed_order(rig, cfg())
    page = yield open_board(chrome, rig)
    assert {t["team"]: t["state"] for t in page["tiles"]}["PUB-05"] == "sent"
    yield in_thread(chrome.execute_script, "window.__wall_marker = 'still the same page';")
    # The page's own script is listening on /events (its stream follows the event log's tail).
    deadline = time.monotonic() + 10
    while not rig.bus._subscribers:
        assert time.monotonic() < deadline, "the board never opened the event stream"
        yield deferLater(reactor, 0.05, lambda: None)
    started = time.monotonic()
    outcome = yield keypad(seeded.engine, seeded.commander["PUB-05"], "2", seeded.code)
    assert outcome.accepted and outcome.status == "arrived"

    def tile_arrived():
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(chrome, 5, poll_frequency=0.05).until(lambda d: d.execute_script(
            "const t = document.querySelector(\"[data-team='PUB-05']\"); return t && t.dataset.state"
            " === 'arrived';"))
        return time.monotonic() - started
    took = yield in_thread(tile_arrived)
    page = yield in_thread(chrome.execute_script, MEASURE)
    screenshot(chrome, "keypad-answer")
    assert took < 2.0, f"the tile changed {took:.2f} s after the keypad answer"
    assert page["marker"] == "still the same page"      # swapped in place, not reloaded
    tile = {t["team"]: t for t in page["tiles"]}["PUB-05"]
    assert tile["word"] == "已到达" and tile["flags"] == "" and "按键" in tile["note"]
    print(f"keypad answer on the wall after {took * 1000:.0f} ms")


@pytest_twisted.inlineCallbacks
def test_board_state_of_every_team_is_the_apis(migrated_url, tmp_path):
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        seeded = yield seed_order(rig, cfg())
        yield keypad(seeded.engine, seeded.commander["PRO-07"], "1", seeded.code)
        status, page, _ = yield rig.call("GET", "/board", key=rig.keys["read"])
        assert status == 200
        board = dict(re.findall(r"class='tile[^>]*data-team='([^']+)'[^>]*data-state='?([a-z]+)", page))
        status, summary, _ = yield rig.call("GET", f"/api/v1/orders/{seeded.code}", key=rig.keys["read"])
        api = {t["team_code"]: t["state"] for t in summary["teams"]}
        status, teams, _ = yield rig.call("GET", "/api/v1/teams", key=rig.keys["read"])
        assert len(api) == len(teams["teams"]) == 40
        assert board == api
        # The page's script is its own, inline: nothing loaded from elsewhere (no CDN).
        assert "<script>" in page and "<script src" not in page and "//" not in page.split("<script>")[1].split(
            "</script>")[0].replace("// ", "")
        assert api["PRO-07"] == "received" and api["PUB-03"] == "finished"
    finally:
        yield rig.stop()


def _w15_extras_tx(conn, code):
    """What issue 15 adds to the wall, at its fullest: the focus order made from a long CAP warning,
    two proposals waiting, and a flagged caller (repeat, often invalid) ringing now."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import insert, select

    from gateway.storage.schema import cap_alerts, hotline_calls, order_proposals, orders
    now = datetime.now(timezone.utc)
    order_id = conn.execute(select(orders.c.id).where(orders.c.code == code)).scalar_one()
    alert = conn.execute(insert(cap_alerts).values(
        received_at=now, source="inbox:rain.xml", raw=b"<alert/>", state="accepted", text_full=(
            "暴雨红色预警：预计未来3小时白塔镇、青山乡将出现100毫米以上强降水，伴有雷电和8级以上大风，"
            "山洪、泥石流、山体滑坡等地质灾害风险极高。请各救援分队立即集结待命，防汛抗旱专业队做好抢险准备，"
            "转移低洼地带和地质灾害隐患点群众。") * 2, order_id=order_id)).inserted_primary_key[0]
    for n in range(2):
        conn.execute(insert(order_proposals).values(
            created_at=now, source="cap", cap_alert_id=alert, state="pending", rule="amber-rain",
            request={"incident_ref": f"CAP {n}", "kind": "standby", "target": "kind:public",
                     "text": "暴雨橙色预警，各公共救援分队做好集结准备，保持通讯畅通。"}))
    caller = "13905761111"
    for i, valid in enumerate((False, False, False, None, None)):
        at = now - timedelta(hours=3 * i + 1) if i < 3 else now - timedelta(days=i)
        conn.execute(insert(hotline_calls).values(
            call_id=f"old-{i}", line="110", caller=caller, arrived_at=at, outcome="answered", valid=valid,
            category="prank" if valid is False else None, updated_at=at))
    conn.execute(insert(hotline_calls).values(call_id="ringing-1", line="110", caller=caller, arrived_at=now,
                                              queue_joined_at=now, updated_at=now))
    return caller


@pytest_twisted.inlineCallbacks
def test_caller_flags_cap_warning_and_proposals_fit_the_wall(chrome, rig):
    yield seed_order(rig, cfg())
    status, body, _ = yield rig.call("GET", "/api/v1/orders", key=rig.keys["read"])
    code = body["orders"][0]["order_code"]
    caller = yield rig.db.run(_w15_extras_tx, code)
    page = yield open_board(chrome, rig)
    screenshot(chrome, "w15-extras")
    html = yield in_thread(lambda: chrome.page_source)
    assert "预警全文" in html and "待确认指令 2" in html and "重复来电" in html and "多次无效" in html
    assert "****" + caller[-4:] in html and caller not in html           # the read key sees the last four
    sections = yield in_thread(chrome.execute_script, """return [...document.querySelectorAll(
        'aside section')].map(s => [s.className, s.getBoundingClientRect().bottom,
                                    s.getBoundingClientRect().height]);""")
    shown = {cls for cls, bottom, height in sections if height > 0 and bottom <= HEIGHT}
    assert {"warning", "proposals", "ringing", "hotline", "health"} <= shown, sections
    assert page["scrollW"] <= WIDTH and page["scrollH"] <= HEIGHT, page
    assert page["smallest"] >= 24, page["smallText"]
