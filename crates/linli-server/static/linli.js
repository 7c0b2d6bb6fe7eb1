// Linli — a little progressive enhancement. Every page works without this file.
(function () {
  "use strict";
  // Disable submit buttons once a form is sent, so a double tap does not post twice
  // (the server refuses the second post anyway).
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.dataset.sent === "1") { e.preventDefault(); return; }
    form.dataset.sent = "1";
    Array.prototype.forEach.call(form.querySelectorAll("button[type=submit], button:not([type])"), function (b) {
      b.setAttribute("aria-disabled", "true");
    });
  });
  // Confirm before actions marked data-confirm.
  document.addEventListener("click", function (e) {
    var el = e.target.closest ? e.target.closest("[data-confirm]") : null;
    if (el && !window.confirm(el.getAttribute("data-confirm"))) { e.preventDefault(); }
  });
  // Live updates: a region marked data-live="<event>" is refreshed in place when the server
  // announces such an event (server-sent events); without JS the page is simply reloaded by hand.
  var region = document.querySelector("[data-live]");
  var badge = document.getElementById("inbox-badge");
  var source = null;
  if ((region || badge) && window.EventSource && window.fetch) {
    source = new EventSource("/events");
  }
  // The unread badge in the header follows the user's inbox events.
  if (badge && source) {
    source.addEventListener("inbox", function () {
      fetch("/api/v1/inbox/unread-count", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (v) { badge.textContent = String(v.count); badge.hidden = v.count === 0; });
    });
  }
  if (region && source && window.DOMParser) {
    var refresh = function () {
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(region.id);
          if (fresh) {
            region.innerHTML = fresh.innerHTML;
            var status = document.getElementById("live-status");
            if (status) { status.textContent = region.getAttribute("data-live-message") || ""; }
          }
        });
    };
    source.addEventListener(region.getAttribute("data-live"), refresh);
    source.addEventListener("resync", refresh);
  }
})();

// Live regions: a region marked data-live-events="<event> <event> …" (the staff safety page
// listens for alarm.*, report pages for `report`) is refreshed in place from the server whenever
// one of those events arrives; with data-live-id="<id>" only events about that record count.
(function () {
  "use strict";
  var regions = document.querySelectorAll("[data-live-events]");
  if (!regions.length || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var source = new EventSource("/events");
  var pending = null;
  // One fetch of the page refreshes every live region in it.
  var refresh = function () {
    if (pending) { return; }
    pending = window.setTimeout(function () {
      pending = null;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var message = "";
          Array.prototype.forEach.call(regions, function (region) {
            var fresh = doc.getElementById(region.id);
            if (fresh) {
              region.innerHTML = fresh.innerHTML;
              message = message || region.getAttribute("data-live-message") || "";
            }
          });
          var status = document.getElementById("live-status");
          if (status) { status.textContent = message; }
        });
    }, 300);
  };
  Array.prototype.forEach.call(regions, function (region) {
    var only = region.getAttribute("data-live-id");
    region.getAttribute("data-live-events").split(/\s+/).forEach(function (name) {
      if (!name) { return; }
      source.addEventListener(name, function (e) {
        if (only && e.data !== only) { return; }
        refresh();
      });
    });
  });
  source.addEventListener("resync", refresh);
})();
