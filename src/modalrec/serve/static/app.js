// The try-it page: pick a user (or type a session), show their history and the model's top-k.
"use strict";

const $ = (id) => document.getElementById(id);
let userIds = [];

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// A failed request leaves no earlier answer on screen: the lists and notes are emptied with the error.
function fail(message) {
  for (const id of ["recs", "history"]) $(id).replaceChildren();
  for (const id of ["recs-note", "history-note"]) $(id).textContent = "";
  showError(message);
}

function card(entry, rank) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.item = entry.item;
  if (entry.image) {
    const img = document.createElement("img");
    img.src = entry.image;
    img.alt = entry.title || entry.item;
    img.loading = "lazy";
    li.appendChild(img);
  }
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = (rank ? `${rank}. ` : "") + (entry.title || `item ${entry.item}`);
  li.appendChild(title);
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `id ${entry.item}` + (entry.score != null ? ` · score ${entry.score.toFixed(3)}` : "");
  li.appendChild(meta);
  if (entry.explanation) li.appendChild(explanation(entry.explanation));
  return li;
}

// FindRec's routing weights of one recommended item: the share of each stream (ID, modalities) and the
// router's mean gate per expert, as labelled bars (text only, no markup from the server).
function explanation(weights) {
  const box = document.createElement("div");
  box.className = "explain";
  const groups = [["streams", weights.streams || {}], ["experts", Object.fromEntries((weights.experts || []).map((w, i) => [`e${i}`, w]))]];
  for (const [name, values] of groups) {
    const entries = Object.entries(values);
    if (!entries.length) continue;
    const head = document.createElement("div");
    head.className = "explain-head";
    head.textContent = name;
    box.appendChild(head);
    for (const [label, value] of entries) {
      const row = document.createElement("div");
      row.className = "bar";
      row.title = `${name} ${label}: ${value.toFixed(3)}`;
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
      const text = document.createElement("em");
      text.textContent = `${label} ${value.toFixed(2)}`;
      row.append(fill, text);
      box.appendChild(row);
    }
  }
  return box;
}

function fill(listId, entries, ranked) {
  $(listId).replaceChildren(...entries.map((entry, i) => card(entry, ranked ? i + 1 : 0)));
}

function showRecs(result) {
  fill("recs", result.items, true);
  const unknown = result.unknown_items.length ? `; unknown ids dropped: ${result.unknown_items.join(", ")}` : "";
  const note = result.explain_note ? `; ${result.explain_note}` : "";
  $("recs-note").textContent = `(${result.items.length} items, by ${result.strategy}${unknown}${note})`;
}

async function recommendUser(event) {
  event.preventDefault();
  showError("");
  const user = $("user").value.trim();
  const fallback = $("fallback").checked ? "popularity" : "none";
  const query = new URLSearchParams({ user, k: $("k").value, exclude_seen: $("exclude").checked, explain: $("explain").checked, fallback });
  try {
    const recs = await getJSON(`/recommend?${query}`);
    const known = !(fallback === "popularity" && recs.strategy === "popularity");
    const history = known ? await getJSON(`/users/${encodeURIComponent(user)}?limit=12`) : { history: [], n_interactions: 0 };
    fill("history", history.history, false);
    $("history-note").textContent = known
      ? `(last ${history.history.length} of ${history.n_interactions}, oldest first)`
      : `(user '${user}' is not in the dataset: popular items instead)`;
    showRecs(recs);
  } catch (err) {
    // the API's advice, said in the page's terms
    fail(err.message.replace("pass fallback=popularity", "tick 'popular items for unknown users'"));
  }
}

async function recommendSession(event) {
  event.preventDefault();
  showError("");
  const items = $("session").value.split(/[\s,]+/).filter(Boolean);
  try {
    const recs = await getJSON("/recommend", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ items, k: Number($("k").value), exclude_seen: $("exclude").checked, explain: $("explain").checked }),
    });
    const known = items.filter((id) => !recs.unknown_items.includes(id));
    const details = await Promise.all(known.map((id) => getJSON(`/items/${encodeURIComponent(id)}`)));
    fill("history", details, false);
    $("history-note").textContent = `(the session: ${known.length} known items)`;
    showRecs(recs);
  } catch (err) {
    fail(err.message);
  }
}

async function start() {
  try {
    const info = await getJSON("/info");
    const test = info.metrics.test || {};
    const ndcg = Object.keys(test).find((key) => key.startsWith("ndcg@"));
    $("info").textContent = `${info.model} (${info.family}) on ${info.dataset}: ${info.n_users} users, ` +
      `${info.n_items} items` + (ndcg ? ` · test ${ndcg} ${test[ndcg].toFixed(4)}` : "") +
      (info.approximate ? " · approximate top-K" : "");
    $("k").max = info.n_items;
    if (!info.explains) $("explain-label").title = `${info.model} has no explanation of its recommendations`;
    const page = await getJSON("/users?limit=1000");
    userIds = page.users.map((u) => u.user);
    $("user-ids").replaceChildren(...userIds.map((id) => Object.assign(document.createElement("option"), { value: id })));
  } catch (err) {
    showError(err.message);
  }
}

$("user-form").addEventListener("submit", recommendUser);
$("session-form").addEventListener("submit", recommendSession);
$("random").addEventListener("click", () => {
  if (userIds.length) $("user").value = userIds[Math.floor(Math.random() * userIds.length)];
});
start();
