// Job log view: the page renders the stored lines; this follows the live stream after the last
// one. Lines are added as text (never HTML). EventSource reconnects by itself and resends
// Last-Event-ID, so the server resumes after the last line this page got. A hidden tab closes
// its stream (Page Visibility) and opens it again after the last line when shown.
(() => {
  const FINISHED = ["succeeded", "failed", "cancelled"];

  function setStatus(status, error) {
    const badge = document.getElementById("job-status");
    if (badge && status) {
      badge.textContent = status;
      badge.className = "badge " + status;
    }
    const problem = document.getElementById("job-error");
    if (problem && error) {
      problem.textContent = error;
      problem.hidden = false;
    }
  }

  function setDeployment(status, message) {
    const badge = document.getElementById("deployment-status");
    if (badge && status) {
      badge.textContent = status;
      badge.className = "badge " + status;
    }
    const note = document.getElementById("deployment-message");
    if (note && message) note.textContent = message;
  }

  function follow(box) {
    if (box.dataset.finished === "1" || !window.EventSource) return;
    const state = document.getElementById("joblog-state");
    let last = Number(box.dataset.lastSeq || 0);
    let source = null;
    let done = false;

    function disconnect() {
      if (source) source.close();
      source = null;
    }

    function connect() {
      if (done || source || document.visibilityState === "hidden") return;
      const url = new URL(box.dataset.stream, window.location.href);
      url.searchParams.set("after", String(last));
      source = new EventSource(url);
      listen(source);
    }

    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") disconnect();
      else connect();
    });
    window.addEventListener("pagehide", disconnect);
    window.addEventListener("pageshow", (event) => { if (event.persisted) connect(); });

    function listen(source) {
      source.addEventListener("line", (event) => {
        const data = JSON.parse(event.data);
        if (data.seq <= last) return; // a replayed line this page already shows
        last = data.seq;
        box.querySelector(".empty-log")?.remove();
        const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
        const row = document.createElement("div");
        row.className = "l";
        row.dataset.seq = String(data.seq);
        const ts = document.createElement("span");
        ts.className = "ts";
        ts.textContent = data.at ? new Date(data.at).toISOString().slice(11, 19) : "";
        row.append(ts, document.createTextNode(data.line));
        box.append(row);
        if (atBottom) box.scrollTop = box.scrollHeight;
      });
      source.addEventListener("status", (event) => {
        const data = JSON.parse(event.data);
        setStatus(data.status, data.error);
        if (state && !FINISHED.includes(data.status)) state.textContent = "live · " + data.status;
      });
      // A deploy handed to a CD system or a person: its job has ended, its deployment goes on.
      source.addEventListener("deployment", (event) => {
        const data = JSON.parse(event.data);
        setDeployment(data.status, data.message);
        if (state && !FINISHED.includes(data.status)) state.textContent = "live · deployment " + data.status;
      });
      source.addEventListener("done", (event) => {
        const data = JSON.parse(event.data);
        done = true;
        disconnect(); // otherwise EventSource would reconnect to a finished stream
        if (data.deployment) {
          setDeployment(data.status, data.error);
          setStatus(data.job_status, null);
        } else {
          setStatus(data.status, data.error);
        }
        if (state) state.textContent = "finished: " + data.status;
        const finishedAt = document.getElementById("job-finished");
        if (finishedAt) finishedAt.textContent = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
        box.querySelector(".empty-log")?.replaceChildren(document.createTextNode("No output."));
      });
      source.addEventListener("error", () => {
        if (state && source.readyState !== EventSource.CLOSED) state.textContent = "reconnecting…";
      });
    }

    connect();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".joblog[data-stream]").forEach((box) => {
      box.scrollTop = box.scrollHeight;
      follow(box);
    });
  });
})();
