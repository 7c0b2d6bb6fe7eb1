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
  // Installable app (manifest in the page head): the service worker only serves an offline
  // page when the network is gone; it never caches pages, which hold personal data.
  if (navigator.serviceWorker && window.isSecureContext) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register("/sw.js").catch(function () {});
    });
  }
  // Live updates, over ONE server-sent-events connection per page (the badge and every live
  // region share it). It is closed when the page is hidden or put into the back-forward cache
  // (`pagehide`) and opened again when the page is shown (`pageshow`) — a browser allows only six
  // connections per host, and pages kept in the cache must not hold them: with them held, the
  // next request (an SOS!) waited up to a minute. Without JS the page is reloaded by hand.
  var badge = document.getElementById("inbox-badge");
  var single = document.querySelector("[data-live]");
  var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live-events]"));
  if (single) { regions.push(single); }
  if (!(badge || regions.length) || !window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var source = null;
  var pending = null;
  // One fetch of the page refreshes every live region in it.
  var refresh = function () {
    if (pending || !regions.length) { return; }
    pending = window.setTimeout(function () {
      pending = null;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var message = "";
          regions.forEach(function (region) {
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
  var unread = function () {
    fetch("/api/v1/inbox/unread-count", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (v) { badge.textContent = String(v.count); badge.hidden = v.count === 0; });
  };
  var open = function () {
    if (source) { return; }
    source = new EventSource("/events");
    if (badge) { source.addEventListener("inbox", unread); }
    regions.forEach(function (region) {
      var only = region.getAttribute("data-live-id");
      var names = region.getAttribute("data-live-events") || region.getAttribute("data-live") || "";
      names.split(/\s+/).forEach(function (name) {
        if (!name) { return; }
        source.addEventListener(name, function (e) {
          if (only && e.data !== only) { return; }
          refresh();
        });
      });
    });
    source.addEventListener("resync", refresh);
  };
  var close = function () {
    if (source) { source.close(); source = null; }
  };
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", function (e) {
    open();
    // Back from the cache: what happened meanwhile was not heard; catch up once.
    if (e.persisted) { refresh(); if (badge) { unread(); } }
  });
  open();
})();
