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
    var stream = new EventSource("/events?kind=order&kind=hotline&kind=health");
    ["order.created", "order.feedback", "order.escalated", "order.closed", "order.supervisor_alert",
     "order.delivered", "order.unreachable", "hotline.arrived", "hotline.ivr", "hotline.queue",
     "hotline.answered", "hotline.abandoned", "hotline.failed", "hotline.ended", "hotline.updated", "message"].forEach(function (kind) { stream.addEventListener(kind, soon); });
    stream.onopen = soon;   // after a reconnection: whatever happened meanwhile
  }
})();
