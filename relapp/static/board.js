// The board's behaviour: drag a card to the next column to open its promote panel (Sortable),
// close panels, keep the live board still while a card is being dragged (data-live-hold: live.js
// re-fetches it once the drag ends), and show refusals of a panel's form inside the panel.
(() => {
  let dragging = false;
  let missed = false; // a refresh asked for during a drag, made after it

  function hold(on) {
    dragging = on;
    document.body.classList.toggle("dragging", on);
    const board = document.getElementById("board");
    if (on) {
      board?.setAttribute("data-live-hold", "");
      return;
    }
    board?.removeAttribute("data-live-hold");
    document.dispatchEvent(new CustomEvent("live:released"));
    if (missed && window.htmx) htmx.trigger(document.body, "board-changed");
    missed = false;
  }

  function putBack(evt) {
    const anchor = evt.from.children[evt.oldIndex] || null;
    evt.from.insertBefore(evt.item, anchor);
  }

  function initBoard(root) {
    if (!window.Sortable || !root || !root.querySelectorAll) return;
    const lists = root.matches?.(".cards") ? [root] : root.querySelectorAll("#board .cards");
    lists.forEach((list) => {
      if (list.dataset.sortable) return;
      list.dataset.sortable = "1";
      Sortable.create(list, {
        group: "board",
        sort: false,
        draggable: ".card[data-promote-url]",
        filter: "a, button, input, textarea, select",
        preventOnFilter: false,
        ghostClass: "card-ghost",
        onStart: () => hold(true),
        // Only the card's next column takes it; everything else snaps back while dragging.
        onMove: (evt) => evt.to === evt.from || evt.to.dataset.stage === evt.dragged.dataset.next,
        onEnd: (evt) => {
          hold(false);
          if (evt.to === evt.from) return;
          const card = evt.item;
          const wanted = evt.to.dataset.stage === card.dataset.next;
          // The card goes back in any case: it moves for real once the deploy succeeded.
          putBack(evt);
          if (wanted && card.dataset.promoteUrl) {
            htmx.ajax("GET", card.dataset.promoteUrl, { target: "#panel", swap: "innerHTML" });
          }
        },
      });
    });
  }

  function closePanel() {
    const panel = document.getElementById("panel");
    if (panel && panel.classList.contains("drawer")) panel.replaceChildren();
    else if (panel) window.history.length > 1 ? window.history.back() : (window.location.href = "/");
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (window.htmx) htmx.onLoad(initBoard);

    document.body.addEventListener("click", (event) => {
      if (event.target.closest("[data-close-panel]")) {
        event.preventDefault();
        closePanel();
      }
    });
    document.addEventListener("keydown", (event) => {
      const panel = document.getElementById("panel");
      if (event.key === "Escape" && panel?.classList.contains("drawer") && panel.children.length) closePanel();
    });

    document.body.addEventListener("htmx:beforeRequest", (event) => {
      // A refresh in the middle of a drag would pull the card out from under the pointer.
      if (dragging && event.detail.elt.id === "board") {
        event.preventDefault();
        missed = true;
      }
    });

    document.body.addEventListener("htmx:beforeSwap", (event) => {
      // A refusal of a form inside a panel is shown in that panel, next to the form.
      const detail = event.detail;
      if (!detail.isError && detail.xhr.status < 400) return;
      const source = detail.requestConfig?.elt || event.target;
      const local = source?.closest?.(".panel")?.querySelector("[data-local-alerts]");
      if (local) detail.target = local;
      // htmx leaves 4xx/5xx answers unswapped by default; the server's sentence is meant to be seen.
      if (local || detail.target?.id === "alerts") {
        detail.shouldSwap = true;
        detail.isError = false;
      }
    });

    document.body.addEventListener("htmx:afterSwap", (event) => {
      const target = event.detail.target;
      if (target?.id === "alerts" || target?.matches?.("[data-local-alerts]")) {
        target.scrollIntoView({ block: "nearest", behavior: "smooth" });
      } else if (target?.id === "panel") {
        target.querySelector("textarea, input:not([type=hidden]), button[type=submit]")?.focus({ preventScroll: true });
      }
    });
  });
})();
