// relapp's own small script: the CSRF token on every htmx request, safe htmx settings, and
// error answers shown (the server retargets them to #alerts with a sentence).
document.addEventListener("DOMContentLoaded", () => {
  const token = document.querySelector('meta[name="csrf-token"]')?.content;
  document.body.addEventListener("htmx:configRequest", (event) => {
    if (token) event.detail.headers["X-CSRFToken"] = token;
  });
  if (window.htmx) {
    htmx.config.selfRequestsOnly = true;
    htmx.config.allowScriptTags = false;
    htmx.config.allowEval = false;
    // htmx does not swap 4xx/5xx answers by default; ours carry a sentence for #alerts.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "[45]..", swap: true, error: true },
    ];
  }
});
