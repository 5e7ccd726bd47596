// The live parts of the execd admin UI; everything else is server-rendered.
//  - #executors[data-refresh]: the executors table is re-fetched every few
//    seconds, so dots turn grey and "last seen" advances without a reload.
//  - #entries[data-events]: a job page follows the job's server-sent events
//    (see internal/ui/sse.go) and patches its state and log entries.
"use strict";

(function () {
  function refresh(region) {
    var every = parseInt(region.dataset.refresh, 10) || 5000;
    var timer = setInterval(function () {
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (res) {
          if (!res.ok || res.url.indexOf("/ui/sign-in") >= 0) {
            clearInterval(timer);
            return null;
          }
          return res.text();
        })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(region.id);
          if (fresh) region.innerHTML = fresh.innerHTML;
        })
        .catch(function () {});
    }, every);
  }

  var stateClass = { completed: "ok", errored: "bad", failed: "bad", processing: "run", canceled: "muted" };

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setHidden(id, hidden) {
    var el = document.getElementById(id);
    if (el) el.hidden = hidden;
  }

  function onJob(j) {
    var badge = document.getElementById("job-state");
    if (badge) {
      badge.textContent = j.state;
      badge.dataset.state = j.state;
      badge.className = "badge " + (stateClass[j.state] || "wait");
    }
    setHidden("cancel-flag", !j.cancelRequested);
    setText("failure", j.failureMessage);
    setHidden("failure", !j.failureMessage);
    setText("started-at", j.startedAt);
    setText("finished-at", j.finishedAt);
    setText("heartbeat", j.heartbeat);
    setText("duration", j.duration);
    setText("worker", j.worker);
    setText("attempts", j.attempts);
    setHidden("cancel-form", !j.canCancel);
    setHidden("retry-form", !j.canRetry);
  }

  function onEntry(list, e) {
    var el = list.querySelector('details.entry[data-entry-id="' + e.id + '"]');
    if (!el) {
      var tpl = document.getElementById("entry-template");
      el = tpl.content.firstElementChild.cloneNode(true);
      el.dataset.entryId = e.id;
      list.appendChild(el);
      setHidden("no-entries", true);
    }
    el.querySelector(".key").textContent = e.key;
    el.querySelector(".cmd").textContent = e.command;
    el.querySelector(".dur").textContent = e.duration;
    var exit = el.querySelector(".exit");
    if (e.exitCode === null || e.exitCode === undefined) {
      exit.textContent = "running";
      exit.className = "badge run exit";
    } else {
      exit.textContent = "exit " + e.exitCode;
      exit.className = "badge exit " + (e.exitCode === 0 ? "ok" : "bad");
      if (e.exitCode !== 0) el.open = true;
    }
    var pre = el.querySelector("pre.log");
    var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    var whole = list.dataset.events.replace(/events$/, "log/" + e.id);
    if (typeof e.out === "string") {
      pre.textContent = e.out;
      el.shown = e.out.length;
      skipped(el, e.skipped ? e.skipped + " earlier bytes not shown" : "", whole);
    } else if (e.append) {
      pre.appendChild(document.createTextNode(e.append));
      el.shown = (el.shown || 0) + e.append.length;
      if (el.shown > maxShown) {
        // A page keeps the end of a long output, not all of it.
        var text = pre.textContent;
        pre.textContent = text.slice(text.length - maxShown / 2);
        el.shown = maxShown / 2;
        skipped(el, "earlier output not shown", whole);
      }
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  // maxShown is how many characters of an entry's output a page holds.
  var maxShown = 2 * 1024 * 1024;

  function skipped(el, text, whole) {
    var note = el.querySelector(".skipped");
    note.hidden = !text;
    note.querySelector(".skipped-text").textContent = text;
    note.querySelector("a.whole").href = whole;
  }

  function follow(list) {
    var es = new EventSource(list.dataset.events);
    es.addEventListener("job", function (ev) { onJob(JSON.parse(ev.data)); });
    es.addEventListener("entry", function (ev) { onEntry(list, JSON.parse(ev.data)); });
    es.addEventListener("reset", function () {
      list.querySelectorAll("details.entry").forEach(function (el) { el.remove(); });
      setHidden("no-entries", false);
    });
    es.addEventListener("done", function () { es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var region = document.querySelector("[data-refresh]");
    if (region) refresh(region);
    var list = document.querySelector("#entries[data-events]");
    if (list) follow(list);
  });
})();
