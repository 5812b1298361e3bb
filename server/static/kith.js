// Kith's one script: progressive enhancement of server-rendered pages. Everything works without
// it; with it, timelines update live over the streaming API, forms marked data-enhance post
// without a page load, and "older" links marked data-more load the next page in place.
// The page never holds an access token: the WebSocket carries the session cookie (same origin).

const PARTIAL = { "X-Kith-Partial": "1" };

function announce(text) {
  const live = document.getElementById("live-status");
  if (live) live.textContent = text;
}

function parseFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return template.content;
}

// Each top-level element of a fragment replaces the element with its id, or, with
// data-insert="prepend:ID", goes first in element ID (once: a known id is replaced).
export function applyFragment(html) {
  const fragment = parseFragment(html);
  let placed = 0;
  for (const element of Array.from(fragment.children)) {
    const existing = element.id ? document.getElementById(element.id) : null;
    const insert = element.dataset.insert || "";
    if (existing) {
      // A post's card keeps its place's look (the focused post of a thread).
      if (existing.classList.contains("focused")) element.classList.add("focused");
      existing.replaceWith(element);
    } else if (insert.startsWith("prepend:")) {
      const parent = document.getElementById(insert.slice("prepend:".length));
      if (!parent) continue;
      parent.prepend(element);
    } else {
      continue;
    }
    element.removeAttribute("data-insert");
    enhance(element);
    placed += 1;
  }
  return placed;
}

// --- snappy forms ----------------------------------------------------------------------------

async function submitEnhanced(event) {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-enhance")) return;
  event.preventDefault();
  const submitter = event.submitter;
  const body = new FormData(form);
  if (submitter && submitter.name) body.append(submitter.name, submitter.value);
  const focusedId = document.activeElement && document.activeElement.id;
  form.setAttribute("aria-busy", "true");
  if (submitter) submitter.disabled = true;
  let response;
  try {
    response = await fetch(form.action, {
      method: "POST",
      body,
      headers: PARTIAL,
      credentials: "same-origin",
    });
  } catch (error) {
    form.removeAttribute("aria-busy");
    if (submitter) submitter.disabled = false;
    form.submit(); // the network failed: let the browser try the plain way
    return;
  }
  const location = response.headers.get("X-Kith-Location");
  if (location) {
    window.location.assign(location);
    return;
  }
  const type = response.headers.get("Content-Type") || "";
  if (!type.startsWith("text/html")) {
    window.location.reload();
    return;
  }
  const placed = applyFragment(await response.text());
  if (!placed) {
    window.location.reload();
    return;
  }
  form.removeAttribute("aria-busy");
  if (submitter) submitter.disabled = false;
  const again = focusedId && document.getElementById(focusedId);
  if (again) again.focus();
  const message = document.querySelector("[data-announce]");
  if (message) {
    announce(message.dataset.announce);
    message.removeAttribute("data-announce");
  }
}

// --- infinite scroll -------------------------------------------------------------------------

async function loadMore(link) {
  if (link.dataset.loading) return;
  link.dataset.loading = "1";
  const response = await fetch(link.href, { credentials: "same-origin" });
  if (!response.ok) {
    delete link.dataset.loading;
    return;
  }
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const feed = document.querySelector("[data-feed]");
  const items = page.querySelectorAll("[data-feed] > *");
  let added = 0;
  for (const item of items) {
    if (item.id && document.getElementById(item.id)) continue;
    const node = document.importNode(item, true);
    feed.append(node);
    enhance(node);
    added += 1;
  }
  const next = page.querySelector("[data-more]");
  const holder = link.closest(".more") || link;
  if (next) {
    link.href = next.getAttribute("href");
    delete link.dataset.loading;
  } else {
    holder.remove();
  }
  announce(added ? `${added} older posts loaded` : "No older posts");
}

function watchMore(root) {
  const links = root.querySelectorAll ? root.querySelectorAll("[data-more]") : [];
  if (!links.length || !("IntersectionObserver" in window)) return;
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) loadMore(entry.target);
    }
  }, { rootMargin: "400px" });
  for (const link of links) {
    observer.observe(link);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      loadMore(link);
    });
  }
}

// --- live updates ----------------------------------------------------------------------------

async function showStatus(id) {
  const feed = document.querySelector("[data-feed]");
  if (!feed) return;
  const response = await fetch(`/statuses/${encodeURIComponent(id)}/card`, {
    credentials: "same-origin",
    headers: PARTIAL,
  });
  if (!response.ok) return;
  const fragment = parseFragment(await response.text());
  const card = fragment.firstElementChild;
  if (!card) return;
  const existing = card.id && document.getElementById(card.id);
  if (existing) {
    existing.replaceWith(card);
  } else {
    feed.prepend(card);
    announce("New post");
  }
  enhance(card);
}

function bumpUnread() {
  const badge = document.querySelector("[data-unread]");
  if (!badge || document.body.dataset.page === "notifications") return;
  const count = parseInt(badge.firstChild.textContent, 10) || 0;
  badge.firstChild.textContent = count >= 99 ? "99+" : String(count + 1);
  badge.hidden = false;
}

function handleEvent(message) {
  let frame;
  try {
    frame = JSON.parse(message.data);
  } catch (error) {
    return;
  }
  if (frame.event === "update" || frame.event === "status.update") {
    const id = JSON.parse(frame.payload).id;
    if (frame.event === "update" || document.getElementById(`status-${id}`)) showStatus(id);
  } else if (frame.event === "delete") {
    const gone = document.getElementById(`status-${frame.payload}`);
    if (gone) gone.remove();
  } else if (frame.event === "notification") {
    bumpUnread();
  }
  document.dispatchEvent(new CustomEvent("kith:stream", { detail: frame }));
}

function connect(streams, delay = 1000) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${window.location.host}/api/v1/streaming`);
  socket.addEventListener("open", () => {
    delay = 1000;
    document.body.dataset.live = "1";
    for (const stream of streams) socket.send(JSON.stringify({ type: "subscribe", stream }));
  });
  socket.addEventListener("message", handleEvent);
  socket.addEventListener("close", () => {
    delete document.body.dataset.live;
    // Signed out or the server restarting: try again, more slowly each time.
    setTimeout(() => connect(streams, Math.min(delay * 2, 60000)), delay);
  });
}

function startStreaming() {
  if (!document.body.dataset.signedIn || !("WebSocket" in window)) return;
  const streams = new Set((document.body.dataset.stream || "").split(" ").filter(Boolean));
  // The user stream carries notifications too; elsewhere listen for them alone.
  if (!streams.has("user")) streams.add("user:notification");
  connect(Array.from(streams));
}

function enhance(root) {
  watchMore(root);
}

document.addEventListener("submit", submitEnhanced);
enhance(document);
startStreaming();

// --- chats -------------------------------------------------------------------------------------
// A chat page holds its messages in [data-messages] (data-chat: its id, data-last: the newest
// message shown); the chat list is [data-chat-list]. Both follow the `direct` stream's
// kith:chat events; a message about a payment follows the payment's own events.

async function fragmentFrom(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: PARTIAL });
  if (!response.ok) return null;
  return parseFragment(await response.text());
}

async function markChatRead() {
  const form = document.getElementById("chat-read");
  if (!form || document.hidden) return;
  await fetch(form.action, {
    method: "POST",
    body: new FormData(form),
    headers: PARTIAL,
    credentials: "same-origin",
  });
}

async function loadNewMessages(list) {
  if (list.dataset.loading) {
    list.dataset.again = "1";
    return;
  }
  list.dataset.loading = "1";
  try {
    const after = encodeURIComponent(list.dataset.last || "0");
    const fragment = await fragmentFrom(`/chats/${list.dataset.chat}/messages?after=${after}`);
    if (!fragment) return;
    let added = 0;
    for (const item of Array.from(fragment.children)) {
      const existing = item.id && document.getElementById(item.id);
      if (existing) {
        existing.replaceWith(item);
      } else {
        list.append(item);
        added += 1;
      }
      if (BigInt(item.dataset.id) > BigInt(list.dataset.last || "0")) {
        list.dataset.last = item.dataset.id;
      }
    }
    if (added) {
      const empty = document.getElementById("no-messages");
      if (empty) empty.remove();
      list.lastElementChild.scrollIntoView({ block: "nearest" });
      announce(added === 1 ? "New message" : `${added} new messages`);
      markChatRead();
    }
  } finally {
    delete list.dataset.loading;
    if (list.dataset.again) {
      delete list.dataset.again;
      loadNewMessages(list);
    }
  }
}

async function refreshMessage(element) {
  const list = element.closest("[data-messages]");
  if (!list) return;
  const fragment = await fragmentFrom(`/chats/${list.dataset.chat}/messages/${element.dataset.id}`);
  const fresh = fragment && fragment.firstElementChild;
  if (fresh) element.replaceWith(fresh);
}

async function refreshChatLine(chatId) {
  const chatList = document.querySelector("[data-chat-list]");
  if (!chatList) return;
  const fragment = await fragmentFrom(`/chats/${encodeURIComponent(chatId)}/item`);
  const line = fragment && fragment.firstElementChild;
  if (!line) return;
  const existing = document.getElementById(line.id);
  if (existing) existing.remove();
  line.removeAttribute("data-insert");
  chatList.prepend(line);
  const empty = document.getElementById("no-chats");
  if (empty) empty.remove();
}

function followChats(event) {
  const frame = event.detail;
  const list = document.querySelector("[data-messages]");
  if (frame.event === "kith:chat") {
    const chat = JSON.parse(frame.payload);
    if (list && list.dataset.chat === chat.id) loadNewMessages(list);
    refreshChatLine(chat.id);
  } else if (frame.event === "delete") {
    const gone = document.getElementById(`message-${frame.payload}`);
    if (gone) gone.remove();
  } else if (frame.event === "status.update") {
    const edited = document.getElementById(`message-${JSON.parse(frame.payload).id}`);
    if (edited) refreshMessage(edited);
  } else if (frame.event === "kith:payment_request" || frame.event === "kith:transfer") {
    const uri = JSON.parse(frame.payload).uri;
    for (const shown of document.querySelectorAll("[data-payment-uri]")) {
      if (shown.dataset.paymentUri === uri) refreshMessage(shown.closest("[data-message]"));
    }
  }
}

async function sendChatMessage(event) {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-chat-compose")) return;
  event.preventDefault();
  form.setAttribute("aria-busy", "true");
  let response;
  try {
    response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: PARTIAL,
      credentials: "same-origin",
    });
  } catch (error) {
    form.removeAttribute("aria-busy");
    form.submit();
    return;
  }
  const type = response.headers.get("Content-Type") || "";
  if (!type.startsWith("text/html")) {
    window.location.reload();
    return;
  }
  if (!response.ok) {
    // Bad input (nothing was sent): the plain post shows the page with the message in place.
    form.submit();
    return;
  }
  applyFragment(await response.text());
  const again = document.getElementById("status");
  if (again) again.focus();
  const list = document.querySelector("[data-messages]");
  if (list) loadNewMessages(list);
}

document.addEventListener("kith:stream", followChats);
// Messages that came while the stream was not listening (between the page's rendering and its
// subscription, or during a reconnection) are fetched when it listens again.
new MutationObserver(() => {
  const list = document.querySelector("[data-messages]");
  if (list && document.body.dataset.live) loadNewMessages(list);
}).observe(document.body, { attributes: true, attributeFilter: ["data-live"] });
document.addEventListener("submit", sendChatMessage);

// --- payments (the wallet pages) ---------------------------------------------------------------
// A page that shows payments says where their live fragment comes from, on <body>:
// data-payments="/wallet/live?view=…". When the stream says a payment request or a transfer
// changed (kith:payment_request, kith:transfer; the payload is the payments API's entity), that
// fragment is fetched with the payment's id and swapped in: #payment-ID or #transfer-ID (put
// first in its list when new) and the balances. One fetch at a time, in the events' order, so
// an older answer never replaces a newer one. Payments shown as under way (data-settling) are
// fetched again whenever the stream (re)connects: they may have settled while it was not
// listening (between the page's rendering and its subscription, or during a reconnection).

const PAYMENT_KINDS = { "kith:payment_request": "payment", "kith:transfer": "transfer" };
const PAYMENT_WORDS = { payment: "Payment request", transfer: "Payment" };
let paymentUpdates = Promise.resolve();

async function refreshPayment(kind, entity) {
  // A confirmation step its reader is in stays while the payment is as it was.
  const shown = document.getElementById(`${kind}-${entity.id}`);
  if (shown && shown.querySelector(".confirm") && shown.dataset.state === entity.state) return;
  const url = new URL(document.body.dataset.payments, window.location.href);
  url.searchParams.set(kind, entity.id);
  const response = await fetch(url, { credentials: "same-origin", headers: PARTIAL });
  if (!response.ok) return;
  if (applyFragment(await response.text()) && entity.state) {
    announce(`${PAYMENT_WORDS[kind]} ${String(entity.state).replace(/_/g, " ")}`);
  }
}

function queuePaymentRefresh(kind, entity) {
  paymentUpdates = paymentUpdates.then(() => refreshPayment(kind, entity)).catch(() => {});
}

function refreshSettling() {
  if (!document.body.dataset.payments || !document.body.dataset.live) return;
  for (const element of document.querySelectorAll("[data-settling]")) {
    const [kind, id] = element.id.split("-");
    if (PAYMENT_WORDS[kind] && /^[0-9]+$/.test(id || "")) queuePaymentRefresh(kind, { id });
  }
  catchUpPayments();
}

// The wallet page also asks which payments were stored since its mark (data-payments-since):
// a request or a transfer that arrived while it was not listening is shown all the same.
async function catchUpPayments() {
  const since = document.body.dataset.paymentsSince;
  if (!since) return;
  const response = await fetch(`/wallet/changes?since=${encodeURIComponent(since)}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) return;
  const found = await response.json();
  document.body.dataset.paymentsSince = found.since;
  // Only those the page lacks: one it shows is kept current by the stream from now on, and
  // fetching it again could undo what its reader is doing (a confirmation step).
  for (const [kind, ids] of [["payment", found.payment_requests], ["transfer", found.transfers]]) {
    for (const id of ids) {
      if (!document.getElementById(`${kind}-${id}`)) queuePaymentRefresh(kind, { id });
    }
  }
}

function followPayments(event) {
  const kind = PAYMENT_KINDS[event.detail.event];
  if (!kind || !document.body.dataset.payments) return;
  let entity;
  try {
    entity = JSON.parse(event.detail.payload);
  } catch (error) {
    return;
  }
  if (!/^[0-9]+$/.test(String(entity.id))) return;
  queuePaymentRefresh(kind, entity);
}

document.addEventListener("kith:stream", followPayments);
// connect() marks <body data-live> once the stream is open and subscribed.
new MutationObserver(refreshSettling).observe(document.body, {
  attributes: true,
  attributeFilter: ["data-live"],
});
