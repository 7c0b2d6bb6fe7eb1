// Linli's service worker: only an offline page. Pages hold personal data and are never cached;
// when the network is gone, a page request gets a plain "you are offline" page instead of the
// browser's error, with the emergency numbers. Registered from linli.js.
"use strict";
var CACHE = "linli-offline-v1";
var OFFLINE = "/offline";
self.addEventListener("install", function (e) {
  e.waitUntil(caches.open(CACHE).then(function (c) {
    return c.addAll([OFFLINE, "/static/linli.css", "/static/icon.svg"]);
  }).then(function () { return self.skipWaiting(); }));
});
self.addEventListener("activate", function (e) {
  e.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) { return k !== CACHE; }).map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});
self.addEventListener("fetch", function (e) {
  var req = e.request;
  // Only page loads by GET; forms (POST) and everything else go to the network untouched.
  if (req.mode !== "navigate" || req.method !== "GET") { return; }
  e.respondWith(fetch(req).catch(function () {
    return caches.match(OFFLINE).then(function (r) { return r || Response.error(); });
  }));
});
