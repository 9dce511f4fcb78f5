"""The blog's page in a real browser: its JavaScript against the real server.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, installed
by scripts/setup.sh) opens ``/`` of a blog started by running_blog(); the
test changes posts through the JSON API and waits, bounded, for the page's
DOM to show each change from the ``/feed`` WebSocket.  A missing browser
or driver fails the test: there is no skip.

The driver is given by path, so Selenium Manager never runs (and never
downloads anything).  The browser resolves no host names and has its
background services off: it talks only to the blog on 127.0.0.1.
"""
import pytest

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from blog_helpers import running_blog

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 10.0
# The page's keep-alive interval in these tests (``?ping=``, in seconds).
PING = 0.2

# Run before the page's own script: count the feed frames the page receives
# (other than pong), and let a test hold the page's GET /posts answer until
# it calls __releasePosts(), as a slow network would.
HOOKS = """
(() => {
  window.__frames = 0;
  const RealWebSocket = window.WebSocket;
  window.WebSocket = class extends RealWebSocket {
    constructor(...args) {
      super(...args);
      // Added before the page sets onmessage, so it runs first.
      this.addEventListener("message", (event) => {
        if (event.data !== "pong") window.__frames++;
      });
    }
  };
  const hold = new URLSearchParams(location.search).has("hold");
  window.__postsFetched = false;
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  window.__releasePosts = () => release();
  const realFetch = window.fetch;
  window.fetch = async (...args) => {
    const response = await realFetch(...args);
    if (args[0] === "/posts" && args.length === 1 && hold) {
      window.__postsFetched = true;
      await gate;
    }
    return response;
  };
})();
"""


@pytest.fixture(scope="module")
def blog(tmp_path_factory):
    with running_blog(tmp_path_factory.mktemp("blog")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    # Belt and braces: Selenium Manager must never fetch drivers or report.
    mp.setenv("SE_OFFLINE", "true")
    mp.setenv("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": HOOKS}
        )
        yield driver
    finally:
        driver.quit()
        mp.undo()


# -- helpers -------------------------------------------------------------------


def new_post(blog, title, body="A body"):
    return blog.ok("POST", "/posts", {"title": title, "body": body}, expect=201)


def wait_for(driver, probe, what):
    """Wait (bounded) until ``probe(driver)`` is true; return its value."""
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(
        probe, message=f"the page did not show {what} within {WAIT}s"
    )


def js(script, *args):
    return lambda driver: driver.execute_script(script, *args)


def open_page(driver, blog, query=""):
    driver.get(blog.url + "/" + query)
    wait_for(driver, js("return document.getElementById('status').textContent"
                        " === 'feed: live'"), "a live feed")


def shown_posts(driver):
    """The posts on the page, top to bottom: ``[(id, title), ...]``."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#posts > article')]"
        ".map(a => [a.id, a.querySelector('h3').textContent]);"
    )


def expected_posts(blog):
    return [[f"post-{p['id']}", p["title"]] for p in blog.ok("GET", "/posts")]


def wait_for_posts(driver, expected, what):
    """Wait until the page shows exactly ``expected``; else show the difference."""
    try:
        wait_for(driver, lambda d: shown_posts(d) == expected, what)
        return
    except TimeoutException:
        pass
    assert shown_posts(driver) == expected, f"not shown within {WAIT}s: {what}"


def feed_lines(driver):
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#feed li")]


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# -- tests ---------------------------------------------------------------------


def test_page_shows_each_change_live_and_keeps_its_feed_alive(blog, browser):
    before = new_post(blog, "Written before the page opened")
    open_page(browser, blog, f"?ping={PING}")
    wait_for_posts(browser, expected_posts(blog), "the posts written before")
    assert [f"post-{before['id']}", before["title"]] in shown_posts(browser)

    # New post: rendered as text, never as markup, on top.
    title = '<b>Live</b> & "quoted"'
    post = new_post(blog, title, "<script>boom()</script>")
    article = f"post-{post['id']}"
    wait_for(browser, lambda d: shown_posts(d)[:1] == [[article, title]],
             "the new post on top")
    assert browser.execute_script(
        "const a = document.getElementById(arguments[0]);"
        "return [a.querySelectorAll('b, script').length,"
        "        a.querySelector('p').textContent];", article
    ) == [0, "<script>boom()</script>"]
    wait_for(browser, lambda d: any(f"new post #{post['id']}: {title}" in line
                                    for line in feed_lines(d)),
             "the new post in the live feed")

    # Edit: the same article, the new title in place of the old one.
    edited = blog.ok("PUT", f"/posts/{post['id']}", {"title": "Edited live"})
    wait_for(browser, lambda d: shown_posts(d)[:1] == [[article, "Edited live"]],
             "the edited title")
    assert len(browser.find_elements(By.ID, article)) == 1
    assert title not in browser.find_element(By.ID, "posts").text
    assert edited["updated_at"] in browser.find_element(By.ID, article).text

    # Comment: the page lists it in its live feed.
    blog.ok("POST", f"/posts/{post['id']}/comments",
            {"body": "Nice one", "author": "ann"}, expect=201)
    blog.ok("POST", f"/posts/{post['id']}/comments",
            {"body": "Anonymous here"}, expect=201)
    wait_for(browser, lambda d: feed_lines(d)[0].endswith(
        f"comment on post #{post['id']} by anonymous: Anonymous here"),
        "the second comment on top of the feed")  # the feed has lines by now
    assert feed_lines(browser)[1].endswith(
        f"comment on post #{post['id']} by ann: Nice one")

    # Delete: the article goes, the other post stays.
    status, _ = blog.request("DELETE", f"/posts/{before['id']}")
    assert status == 204
    wait_for(browser, lambda d: not d.find_elements(By.ID, f"post-{before['id']}"),
             "the deleted post gone")
    assert shown_posts(browser) == expected_posts(blog)
    assert feed_lines(browser)[0].endswith(f"post #{before['id']} deleted")

    # Keep-alive: the page sends ping and counts the server's pongs.
    wait_for(browser, js("return Number(document.getElementById('status')"
                         ".dataset.pongs) >= 3"), "three pongs")
    assert browser.find_element(By.ID, "status").text == "feed: live"

    assert console_errors(browser) == []


def test_changes_made_while_the_page_loads_its_posts_are_kept(blog, browser):
    # The page subscribes, then fetches the posts.  Changes broadcast after
    # the server read that list but before the page drew it must survive it.
    kept = new_post(blog, "Kept, then edited")
    doomed = new_post(blog, "Deleted while loading")
    open_page(browser, blog, "?hold")
    wait_for(browser, js("return window.__postsFetched"), "its posts fetched")

    frames = browser.execute_script("return window.__frames")
    added = new_post(blog, "Added while loading")
    blog.ok("PUT", f"/posts/{kept['id']}", {"title": "Edited while loading"})
    assert blog.request("DELETE", f"/posts/{doomed['id']}")[0] == 204
    wait_for(browser, js("return window.__frames >= arguments[0]", frames + 3),
             "three feed frames received")
    browser.execute_script("window.__releasePosts()")

    expected = expected_posts(blog)
    assert expected[0] == [f"post-{added['id']}", "Added while loading"]
    wait_for_posts(browser, expected, "the posts as the server has them")
    assert console_errors(browser) == []


def test_the_form_publishes_through_the_api_and_shows_its_errors(blog, browser):
    open_page(browser, blog)
    form = browser.find_element(By.ID, "new-post")
    form.find_element(By.NAME, "title").send_keys("From the form")
    form.find_element(By.NAME, "body").send_keys("Typed in the browser")
    form.find_element(By.TAG_NAME, "button").click()

    # The post comes back through the feed, and the form is cleared.
    wait_for(browser, lambda d: shown_posts(d)[:1] and
             shown_posts(d)[0][1] == "From the form", "the published post")
    stored = blog.ok("GET", "/posts")[0]
    assert (stored["title"], stored["body"]) == ("From the form",
                                                 "Typed in the browser")
    assert shown_posts(browser)[0][0] == f"post-{stored['id']}"
    title = form.find_element(By.NAME, "title")
    wait_for(browser, lambda d: title.get_property("value") == "", "a reset form")

    # A blank title passes the browser's `required` but not the server.
    title.send_keys("   ")
    form.find_element(By.NAME, "body").send_keys("Still a body")
    form.find_element(By.TAG_NAME, "button").click()
    error = browser.find_element(By.ID, "form-error")
    wait_for(browser, lambda d: error.text, "the server's error")
    assert error.text == '{"title":"can\'t be blank"}'
    assert blog.ok("GET", "/posts")[0]["id"] == stored["id"]
    # Chromium logs the 422 answer itself as a failed resource; nothing else.
    assert [e["message"].split(" - ", 1)[-1] for e in console_errors(browser)] == [
        "Failed to load resource: the server responded with a status of"
        " 422 (Unprocessable Entity)"
    ]
