// Live pages: one EventSource per tab to /events, a doorbell that says what changed
// ({"topics": ["project:3", "release:12", "job:55"]}). An element with data-live="<topics>" and
// hx-get=<its fragment> hx-trigger="live" re-fetches itself through htmx when a change names one
// of its topics.
//  - A burst of changes costs one re-fetch per region per ~100 ms.
//  - A hidden tab closes its stream and reopens it with ?after=<last id> when shown (the server
//    replays what it missed), so open tabs in the background hold no connection.
//  - While the stream is down, the regions re-fetch every <meta name="relapp-live-fallback">
//    seconds (0: never).
//  - A region holding keyboard focus or a half-typed field is not swapped: it is marked
//    data-live-stale and re-fetched once that is no longer so (focus leaves, the form is sent or
//    reset, the field is back to what the page gave).
// The state of the stream is on <html data-live="connecting|open|down|hidden|off">.
(() => {
  const COALESCE_MS = 100;
  const RECONNECT_MS = [2000, 5000, 10000, 30000, 60000];
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content;
  const eventsUrl = meta("relapp-live-events") || "/events";
  const fallbackSeconds = Number(meta("relapp-live-fallback") ?? 30) || 0;

  let source = null;
  // The id of the newest change this tab has taken in: at first, the newest when the page was
  // rendered, so what changes while the page loads comes through the stream too.
  let last = meta("relapp-live-after") || null;
  let helloLast = null; // the stream's newest id when this connection opened
  let adoptHello = false;
  let failures = 0;
  let reconnectTimer = null;
  let fallbackTimer = null;
  let counter = 0;
  const pending = new Map(); // region id -> coalescing timer
  const stale = new Set(); // ids of regions waiting for focus or typing to end
  const openDetails = new Map(); // region id -> keys of its <details> the reader had opened

  const setState = (state) => { document.documentElement.dataset.live = state; };
  const parse = (text) => { try { return JSON.parse(text); } catch { return null; } };

  function regions() {
    const found = Array.from(document.querySelectorAll("[data-live]"));
    for (const region of found) if (!region.id) region.id = `live-region-${++counter}`;
    return found;
  }

  // --- what keeps a region from being swapped ----------------------------------------------

  const NOT_TYPED = new Set(["hidden", "submit", "button", "reset", "image"]);

  function typesText(el) {
    if (el.isContentEditable || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement) return true;
    return el instanceof HTMLInputElement && !NOT_TYPED.has(el.type) && el.type !== "checkbox" && el.type !== "radio";
  }

  function changed(control) {
    if (control instanceof HTMLInputElement) {
      if (control.type === "file") return control.files.length > 0;
      if (NOT_TYPED.has(control.type)) return false;
      if (control.type === "checkbox" || control.type === "radio") return control.checked !== control.defaultChecked;
      return control.value !== control.defaultValue;
    }
    if (control instanceof HTMLTextAreaElement) return control.value !== control.defaultValue;
    if (control instanceof HTMLSelectElement) {
      const options = Array.from(control.options);
      if (options.some((o) => o.defaultSelected)) return options.some((o) => o.selected !== o.defaultSelected);
      return control.multiple ? options.some((o) => o.selected) : control.selectedIndex > 0;
    }
    return false;
  }

  function keyboardFocus(el) {
    // Focus left by a mouse click on a link or button does not hold a region; keyboard focus
    // and a field being typed in do.
    if (typesText(el)) return true;
    try { return el.matches(":focus-visible"); } catch { return true; }
  }

  function blocked(region) {
    if (region.closest("[data-live-hold]") || region.querySelector("[data-live-hold]")) return true;
    const active = document.activeElement;
    if (active && active !== document.body && region.contains(active) && keyboardFocus(active)) return true;
    return Array.from(region.querySelectorAll("input, textarea, select")).some(changed);
  }

  // --- re-fetching ---------------------------------------------------------------------------

  function refresh(id) {
    const region = document.getElementById(id);
    if (!region || !region.hasAttribute("data-live")) {
      stale.delete(id);
      return;
    }
    if (blocked(region)) {
      stale.add(id);
      region.setAttribute("data-live-stale", "");
      return;
    }
    stale.delete(id);
    region.removeAttribute("data-live-stale");
    if (window.htmx) htmx.trigger(region, "live");
  }

  function schedule(id) {
    if (pending.has(id)) return; // one re-fetch per region per COALESCE_MS
    pending.set(id, setTimeout(() => { pending.delete(id); refresh(id); }, COALESCE_MS));
  }

  function ring(topics) {
    const wanted = new Set(topics);
    for (const region of regions()) {
      if (region.dataset.live.split(/\s+/).some((topic) => wanted.has(topic))) schedule(region.id);
    }
  }

  function refreshAll() {
    for (const region of regions()) schedule(region.id);
  }

  function recheckStale() {
    if (!stale.size) return;
    // After the event: focus has moved, the form has been sent or reset.
    setTimeout(() => { for (const id of Array.from(stale)) refresh(id); }, 0);
  }

  // --- the stream ----------------------------------------------------------------------------

  function stopFallback() {
    clearInterval(fallbackTimer);
    fallbackTimer = null;
  }

  function startFallback() {
    if (fallbackTimer || fallbackSeconds <= 0 || document.visibilityState === "hidden") return;
    fallbackTimer = setInterval(() => {
      if (source && source.readyState === EventSource.OPEN) stopFallback();
      else refreshAll();
    }, fallbackSeconds * 1000);
  }

  function open() {
    if (source || document.visibilityState === "hidden") return;
    clearTimeout(reconnectTimer);
    if (!window.EventSource) {
      setState("off");
      startFallback();
      return;
    }
    const url = last ? `${eventsUrl}?after=${encodeURIComponent(last)}` : eventsUrl;
    const es = new EventSource(url);
    source = es;
    helloLast = null;
    setState("connecting");
    es.addEventListener("open", () => {
      failures = 0;
      stopFallback();
      setState("open");
    });
    es.addEventListener("hello", (event) => {
      helloLast = parse(event.data)?.last || null;
      if (helloLast && (!last || adoptHello)) {
        last = helloLast;
        adoptHello = false;
      }
    });
    es.addEventListener("change", (event) => {
      if (event.lastEventId) last = event.lastEventId;
      const topics = parse(event.data)?.topics;
      if (Array.isArray(topics)) ring(topics);
    });
    es.addEventListener("resync", () => {
      // Our last id is gone from the stream: every region re-fetches, and we start from now.
      if (helloLast) last = helloLast;
      else adoptHello = true;
      refreshAll();
    });
    es.addEventListener("error", () => {
      if (source !== es) return;
      setState("down");
      startFallback();
      if (es.readyState === EventSource.CLOSED) {
        // Refused (signed out, server error): the browser gives up; we try again, slower each time.
        es.close();
        source = null;
        const wait = RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)];
        failures += 1;
        reconnectTimer = setTimeout(open, wait);
      }
    });
  }

  function close(state) {
    clearTimeout(reconnectTimer);
    stopFallback();
    if (source) source.close();
    source = null;
    setState(state);
  }

  // --- swaps of live re-fetches ----------------------------------------------------------------

  const isLive = (detail) => detail.requestConfig?.triggeringEvent?.type === "live";

  // A <details> the reader opened stays open across a re-fetch (keyed by its nearest id).
  function detailsKeys(region) {
    return Array.from(region.querySelectorAll("details")).map((d) => {
      const owner = d.parentElement?.closest("[id]") || region;
      return [d, `${owner.id}:${Array.from(owner.querySelectorAll("details")).indexOf(d)}`];
    });
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    const detail = event.detail;
    if (!isLive(detail)) return;
    const region = detail.requestConfig.elt;
    const path = new URL(detail.requestConfig.path, window.location.href).pathname;
    const answered = detail.xhr.responseURL ? new URL(detail.xhr.responseURL).pathname : path;
    if (detail.xhr.status >= 400 || answered !== path) {
      // A failed re-fetch (or the sign-in page after a redirect) keeps what the page shows.
      detail.shouldSwap = false;
      region.setAttribute("data-live-error", String(detail.xhr.status));
      return;
    }
    region.removeAttribute("data-live-error");
    if (blocked(region)) {
      // Focus or typing began while the answer was on its way.
      detail.shouldSwap = false;
      stale.add(region.id);
      region.setAttribute("data-live-stale", "");
      return;
    }
    const opened = detailsKeys(region).filter(([d]) => d.open).map(([, k]) => k);
    if (opened.length) openDetails.set(region.id, opened);
  });

  document.addEventListener("htmx:afterSettle", (event) => {
    if (isLive(event.detail)) {
      for (const [id, keys] of openDetails) {
        const region = document.getElementById(id);
        if (region) for (const [d, k] of detailsKeys(region)) if (keys.includes(k)) d.open = true;
      }
      openDetails.clear();
    }
    recheckStale();
  });

  for (const type of ["focusout", "submit", "reset", "input", "change", "live:released"]) {
    document.addEventListener(type, recheckStale, true);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") close("hidden");
    else {
      open();
      recheckStale();
    }
  });
  window.addEventListener("pagehide", () => close("hidden"));
  window.addEventListener("pageshow", (event) => { if (event.persisted) open(); });

  document.addEventListener("DOMContentLoaded", () => {
    if (document.visibilityState === "hidden") setState("hidden");
    else open();
  });
})();
