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
})();
