// Linli — a little progressive enhancement. Every page works without this file.
(function () {
  "use strict";
  // A form with data-countdown (the SOS button) is sent after a few seconds unless cancelled:
  // a pocket or a grandchild's tap can be taken back, a real emergency waits three seconds at
  // most (or taps "call now"). Without JS the form is sent at once.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var seconds = parseInt(form.getAttribute("data-countdown") || "0", 10);
    if (!seconds || form.dataset.counted === "1") { return; }
    e.preventDefault();
    e.stopImmediatePropagation();
    if (form.querySelector(".countdown")) { return; }
    var send = function () {
      form.dataset.counted = "1";
      window.clearInterval(timer);
      form.requestSubmit ? form.requestSubmit() : form.submit();
    };
    var box = document.createElement("div");
    box.className = "countdown";
    box.setAttribute("role", "alert");
    var text = document.createElement("p");
    text.className = "countdown-text";
    var now = document.createElement("button");
    now.type = "button"; now.id = "sos-now"; now.className = "button danger";
    now.textContent = form.getAttribute("data-now-text");
    var cancel = document.createElement("button");
    cancel.type = "button"; cancel.id = "sos-cancel"; cancel.className = "button secondary";
    cancel.textContent = form.getAttribute("data-cancel-text");
    box.appendChild(text); box.appendChild(now); box.appendChild(cancel);
    form.appendChild(box);
    var left = seconds;
    var show = function () { text.textContent = form.getAttribute("data-countdown-text").replace("{n}", String(left)); };
    show();
    var timer = window.setInterval(function () {
      left -= 1;
      if (left <= 0) { send(); } else { show(); }
    }, 1000);
    now.addEventListener("click", send);
    cancel.addEventListener("click", function () {
      window.clearInterval(timer);
      box.parentNode.removeChild(box);
      var done = document.createElement("p");
      done.className = "countdown-cancelled"; done.setAttribute("role", "status");
      done.textContent = form.getAttribute("data-cancelled-text");
      form.appendChild(done);
      window.setTimeout(function () { if (done.parentNode) { done.parentNode.removeChild(done); } }, 5000);
    });
    cancel.focus();
  }, true);
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
  // A form sent back with errors: the first field in error gets the focus and is scrolled to, so
  // a phone user (or a screen reader) lands on what to correct, not at the top of the page.
  var firstBad = document.querySelector("main [aria-invalid=true]");
  if (firstBad && firstBad.focus) {
    firstBad.focus();
    if (firstBad.scrollIntoView) { firstBad.scrollIntoView({ block: "center" }); }
  }
  // Installable app (manifest in the page head): the service worker only serves an offline
  // page when the network is gone; it never caches pages, which hold personal data.
  if (navigator.serviceWorker && window.isSecureContext) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register("/sw.js").catch(function () {});
    });
  }
  // A visitor pass: "send to my visitor" through the phone's share sheet (WeChat, SMS …) with
  // the QR image, where the browser can share files; otherwise only "save" is shown.
  var share = document.getElementById("share-pass");
  if (share && navigator.canShare && window.File && window.fetch) {
    var probe = new File([""], "x.png", { type: "image/png" });
    if (navigator.canShare({ files: [probe] })) {
      share.hidden = false;
      share.addEventListener("click", function () {
        fetch(share.getAttribute("data-share-url"), { credentials: "same-origin" })
          .then(function (r) { return r.blob(); })
          .then(function (blob) {
            var file = new File([blob], share.getAttribute("data-share-name"), { type: "image/png" });
            return navigator.share({ files: [file], text: share.getAttribute("data-share-text") });
          })
          .catch(function () {});
      });
    }
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
  // A region with data-poll="N" (the resident's SOS status) is fetched again every N seconds
  // while the page is shown: what it shows is not carried by the resident's event stream.
  var polled = document.querySelector("[data-poll]");
  if (polled && regions.indexOf(polled) < 0) { regions.push(polled); }
  var poller = null;
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
              // Settled (somebody confirmed): no more polling.
              if (region === polled && !fresh.hasAttribute("data-poll")) { stopPoll(); }
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
  var startPoll = function () {
    if (!polled || poller || !polled.hasAttribute("data-poll")) { return; }
    poller = window.setInterval(refresh, 1000 * parseInt(polled.getAttribute("data-poll"), 10));
  };
  var stopPoll = function () {
    if (poller) { window.clearInterval(poller); poller = null; }
  };
  var close = function () {
    if (source) { source.close(); source = null; }
    stopPoll();
  };
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", function (e) {
    open();
    startPoll();
    // Back from the cache: what happened meanwhile was not heard; catch up once.
    if (e.persisted) { refresh(); if (badge) { unread(); } }
  });
  open();
  startPoll();
})();
