// Berth console: progressive enhancement only. Every page works without
// this file; with it, copy buttons copy, dangerous forms ask first, and
// the tag tables follow the API's watch. No inline script anywhere (the
// Content-Security-Policy allows only this file).
"use strict";

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  try {
    await navigator.clipboard.writeText(text);
    flash(button, "Copied");
  } catch (err) {
    // Without clipboard access (an insecure origin), select the text
    // next to the button so that the user can copy it.
    const code = button.parentElement.querySelector("code");
    if (code) window.getSelection().selectAllChildren(code);
    flash(button, "Select and copy");
  }
});

function flash(button, label) {
  const was = button.textContent;
  button.textContent = label;
  button.setAttribute("data-copied", "true");
  setTimeout(() => { button.textContent = was; button.removeAttribute("data-copied"); }, 1500);
}

document.addEventListener("submit", (ev) => {
  const form = ev.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.getAttribute("data-confirm"))) ev.preventDefault();
});

// Live tables: a server-sent event says the stream changed; the table
// (data-fragment) is fetched again as the page shows it (same sort,
// filter and page).
for (const live of document.querySelectorAll("[data-live]")) {
  let pending = null;
  const source = new EventSource(live.getAttribute("data-live"));
  const refresh = async () => {
    pending = null;
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", live.getAttribute("data-fragment") || "tags");
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok) return;
    live.innerHTML = await resp.text();
    live.setAttribute("data-updated", String(Date.now()));
    const status = document.getElementById("live-status");
    if (status) status.textContent = "Updated " + new Date().toLocaleTimeString();
  };
  source.addEventListener("change", () => {
    if (!pending) pending = setTimeout(refresh, 300);
  });
  source.addEventListener("end", () => source.close());
  live.setAttribute("data-following", "true");
}
