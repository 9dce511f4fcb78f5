"""The one HTML page served at ``/``: posts, a form, and the live feed.

Everything is inline (no external assets; even the empty icon is a data:
URL, so the browser asks for no /favicon.ico).  The script renders user text
with ``textContent`` only, never as HTML.
"""

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cpubsub blog</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto;
         max-width: 62rem; padding: 0 1rem; color: #222; }
  main { display: grid; grid-template-columns: 3fr 2fr; gap: 2rem; }
  article { border-bottom: 1px solid #ddd; padding: .5rem 0; }
  article h3 { margin: 0; }
  article.flash { background: #fff7d6; }
  form input, form textarea { width: 100%; box-sizing: border-box;
                              margin-bottom: .4rem; }
  #feed { list-style: none; padding: 0; font-size: 13px; }
  #feed li { border-left: 3px solid #8ab; padding-left: .5rem;
             margin-bottom: .3rem; }
  #status { font-size: 12px; color: #777; }
  .error { color: #b00; }
</style>
</head>
<body>
<h1>cpubsub blog</h1>
<p id="status">feed: connecting...</p>
<main>
  <section>
    <h2>New post</h2>
    <form id="new-post">
      <input name="title" placeholder="Title" required maxlength="200">
      <textarea name="body" rows="4" placeholder="Body" required></textarea>
      <button>Publish</button> <span id="form-error" class="error"></span>
    </form>
    <h2>Posts</h2>
    <div id="posts"></div>
  </section>
  <section>
    <h2>Live feed</h2>
    <ul id="feed"></ul>
  </section>
</main>
<script>
"use strict";
const postsEl = document.getElementById("posts");
const feedEl = document.getElementById("feed");
const statusEl = document.getElementById("status");
// Seconds between keep-alive pings; ?ping=N sets another (at least 0.1).
const pingParam = Number(new URLSearchParams(location.search).get("ping"));
const PING_SECONDS = pingParam >= 0.1 ? pingParam : 30;
let pongs = 0;  // shown as the status's data-pongs attribute

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderPost(post) {
  let node = document.getElementById("post-" + post.id);
  if (!node) {
    node = el("article");
    node.id = "post-" + post.id;
    postsEl.prepend(node);
  }
  node.replaceChildren(el("h3", post.title), el("p", post.body),
                       el("small", "#" + post.id + " \\u00b7 " + post.updated_at));
  node.classList.add("flash");
  setTimeout(() => node.classList.remove("flash"), 1500);
}

function removePost(id) {
  const node = document.getElementById("post-" + id);
  if (node) node.remove();
}

function logEvent(text) {
  const item = el("li", new Date().toLocaleTimeString() + "  " + text);
  feedEl.prepend(item);
  while (feedEl.children.length > 100) feedEl.lastChild.remove();
}

// Feed messages that arrive while the post list loads are held, then
// applied on top of it: the list may have been read before they happened.
let held = null;

async function loadPosts() {
  const mine = held = [];
  try {
    const response = await fetch("/posts");
    if (!response.ok) throw new Error("GET /posts: " + response.status);
    const posts = await response.json();
    if (held !== mine) return;  // a newer load (after a reconnect) took over
    postsEl.replaceChildren();
    posts.reverse().forEach(renderPost);
  } catch (err) {
    logEvent("could not load the posts: " + err.message);
  } finally {
    if (held === mine) {
      held = null;
      mine.forEach(apply);
    }
  }
}

document.getElementById("new-post").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const errorEl = document.getElementById("form-error");
  errorEl.textContent = "";
  const response = await fetch("/posts", {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({title: form.title.value, body: form.body.value}),
  });
  if (response.ok) {
    form.reset();  // the post appears through the feed, like everyone's
  } else {
    const answer = await response.json();
    errorEl.textContent = JSON.stringify(answer.errors || answer.error);
  }
});

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/feed");
  let keepAlive;
  ws.onopen = () => {
    statusEl.textContent = "feed: live";
    keepAlive = setInterval(() => ws.send("ping"), PING_SECONDS * 1000);
    loadPosts();
  };
  ws.onmessage = (event) => {
    if (event.data === "pong") {
      statusEl.dataset.pongs = ++pongs;
      return;
    }
    const msg = JSON.parse(event.data);
    if (held) held.push(msg);
    else apply(msg);
  };
  ws.onclose = (event) => {
    clearInterval(keepAlive);
    statusEl.textContent = "feed: closed (" + event.code + "), reconnecting...";
    setTimeout(connect, 2000);
  };
}

function apply(msg) {
  switch (msg.event) {
    case "post_created":
      renderPost(msg.data);
      logEvent("new post #" + msg.data.id + ": " + msg.data.title);
      break;
    case "post_updated":
      renderPost(msg.data);
      logEvent("post #" + msg.data.id + " edited: " + msg.data.title);
      break;
    case "post_deleted":
      removePost(msg.data.id);
      logEvent("post #" + msg.data.id + " deleted");
      break;
    case "comment_created":
      logEvent("comment on post #" + msg.data.post_id + " by " +
               (msg.data.author || "anonymous") + ": " + msg.data.body);
      break;
    default:
      logEvent("[" + msg.channel + "] " + msg.event);
  }
}

connect();
</script>
</body>
</html>
"""
