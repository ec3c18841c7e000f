// The wall board's own script: on every order or hotline event from /events, fetch the page again
// and swap in its #board, so the wall changes without a reload (no flash, no jump).  A refresh on a
// timer keeps the minutes and the clock moving and covers a stream that dropped; EventSource
// reconnects by itself.  The key travels in the board's cookie (same origin), never in the script.
(function () {
  "use strict";
  var pending = null, busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.pathname + location.search, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error("board " + r.status); } return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("board");
        var old = document.getElementById("board");
        if (fresh && old) { old.replaceWith(fresh); }
        document.body.removeAttribute("data-stale");
      })
      .catch(function () { document.body.setAttribute("data-stale", "1"); })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  function soon() {
    if (pending) { return; }
    pending = setTimeout(function () { pending = null; refresh(); }, 150);
  }
  setInterval(refresh, 20000);
  if (window.EventSource) {
    // The event log's stream (adapters/stream.py): each frame's `event:` is its kind and its `id:`
    // the log id, so a reconnection sends Last-Event-ID and the gateway replays what was missed.
    var stream = new EventSource("/events?kind=order&kind=hotline&kind=sms");
    ["order.created", "order.feedback", "order.escalated", "order.supervisor_alert", "order.closed",
     "order.situation_report", "order.note", "order.form",
     "hotline.arrived", "hotline.answered", "hotline.abandoned", "hotline.ended",
     "hotline.overflow", "hotline.overflow_cleared", "hotline.no_calltaker", "hotline.no_calltaker_cleared",
     "sms.modem_alert", "message"].forEach(function (kind) { stream.addEventListener(kind, soon); });
    stream.onopen = soon;   // after a reconnection: whatever happened meanwhile
  }
})();
