// Lethe pages: the little script they need. Everything works without it;
// it adds live progress (server-sent events), deadline countdowns and the
// document viewer's zoom and rotation.
(function () {
  "use strict";

  // Live progress: when the server says the case changed, fetch this page
  // again and swap the live region (or the whole main when the step moved).
  var live = document.getElementById("live");
  if (live && window.EventSource && live.dataset.events) {
    var es = new EventSource(live.dataset.events);
    es.addEventListener("progress", function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      var cur = document.getElementById("live");
      if (!cur || msg.stamp === cur.dataset.stamp) return;
      var active = document.activeElement;
      if (active && active.tagName === "INPUT" && active.value) return; // don't wipe what is being typed
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var next = doc.getElementById("live");
          var main = document.getElementById("main");
          if (!next || !main) return;
          if (next.dataset.state !== cur.dataset.state) {
            main.innerHTML = doc.getElementById("main").innerHTML;
            document.title = doc.title;
          } else {
            cur.innerHTML = next.innerHTML;
            cur.dataset.stamp = next.dataset.stamp;
          }
        })
        .catch(function () {});
    });
  }

  // Countdowns to deadlines, updated every 30 s.
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function tick() {
    var overdueWord = document.documentElement.lang === "en" ? "overdue by " : "超期 ";
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var due = Date.parse(el.dataset.countdown);
      if (isNaN(due)) return;
      var s = Math.round((due - Date.now()) / 1000);
      var a = Math.abs(s);
      var txt = Math.floor(a / 86400) + "d " + Math.floor((a % 86400) / 3600) + "h " + pad(Math.floor((a % 3600) / 60)) + "m";
      el.textContent = (s < 0 ? overdueWord : "") + txt;
      el.classList.toggle("overdue", s < 0);
      el.classList.toggle("soon", s >= 0 && s < 86400);
    });
  }
  if (document.querySelector("[data-countdown]")) { setInterval(tick, 30000); }

  // Document viewer: zoom and rotate every image of the claim.
  var viewer = document.querySelector("[data-viewer]");
  if (viewer) {
    var scale = 1, turn = 0;
    viewer.addEventListener("click", function (ev) {
      var b = ev.target.closest("button");
      if (!b) return;
      if (b.dataset.zoom) scale = Math.min(4, Math.max(0.25, scale * parseFloat(b.dataset.zoom)));
      if (b.dataset.rotate) turn = (turn + parseInt(b.dataset.rotate, 10)) % 360;
      viewer.querySelectorAll("img").forEach(function (img) {
        // Zoom changes the layout width (so the frame scrolls); rotation is
        // a transform around the centre.
        img.style.maxWidth = scale > 1 ? "none" : "100%";
        img.style.width = Math.round((img.naturalWidth || 300) * scale) + "px";
        img.style.transform = turn ? "rotate(" + turn + "deg)" : "";
      });
    });
  }
})();
