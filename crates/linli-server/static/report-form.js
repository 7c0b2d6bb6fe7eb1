// Linli — the resident's report form: "use my location" fills latitude and longitude from the
// browser's geolocation and chooses "by the position below"; a tap on the site plan marks the
// spot and, on a building, chooses that building (or "by the position" when the building is not
// in the list) — a tap beside the buildings keeps the place chosen ("my home"), and every change
// is said in words, never silently. Without this file the fields are typed by hand.
(function () {
  "use strict";
  var form = document.getElementById("report-new");
  if (!form) { return; }
  var place = document.getElementById("place_id");
  var byPosition = function () {
    if (place) { place.value = ""; }
  };

  var locate = document.getElementById("locate");
  var status = document.getElementById("locate-status");
  var lat = document.getElementById("lat");
  var lon = document.getElementById("lon");
  if (locate && lat && lon && navigator.geolocation) {
    locate.hidden = false;
    locate.addEventListener("click", function () {
      if (status) { status.textContent = locate.getAttribute("data-locating") || ""; }
      navigator.geolocation.getCurrentPosition(function (pos) {
        lat.value = pos.coords.latitude.toFixed(6);
        lon.value = pos.coords.longitude.toFixed(6);
        byPosition();
        if (status) { status.textContent = locate.getAttribute("data-located") || ""; }
      }, function () {
        if (status) { status.textContent = locate.getAttribute("data-failed") || ""; }
      }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
    });
  }

  var plan = document.getElementById("plan-pick");
  var mark = document.getElementById("plan-mark");
  var px = document.getElementById("plan_x");
  var py = document.getElementById("plan_y");
  if (plan && mark && px && py && plan.createSVGPoint && plan.getScreenCTM) {
    var show = function (x, y) {
      mark.setAttribute("cx", String(x));
      mark.setAttribute("cy", String(y));
      mark.removeAttribute("hidden");
    };
    plan.addEventListener("click", function (e) {
      var ctm = plan.getScreenCTM();
      if (!ctm) { return; }
      var pt = plan.createSVGPoint();
      pt.x = e.clientX;
      pt.y = e.clientY;
      var p = pt.matrixTransform(ctm.inverse());
      var x = Math.max(0, Math.min(1000, Math.round(p.x)));
      var y = Math.max(0, Math.min(700, Math.round(p.y)));
      px.value = String(x);
      py.value = String(y);
      show(x, y);
      // Which building was tapped, if any.
      var hit = null;
      Array.prototype.forEach.call(plan.querySelectorAll(".plan-building"), function (g) {
        var bx = +g.getAttribute("data-x"), by = +g.getAttribute("data-y");
        var bw = +g.getAttribute("data-w"), bh = +g.getAttribute("data-h");
        if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) { hit = g; }
      });
      var say = "";
      if (hit && place) {
        var id = hit.getAttribute("data-id");
        var listed = Array.prototype.some.call(place.options, function (o) { return o.value === id; });
        place.value = listed ? id : "";
        say = (plan.getAttribute("data-set-building") || "").replace("{name}", hit.getAttribute("data-name") || "");
      } else if (place) {
        var chosen = place.options[place.selectedIndex];
        say = (plan.getAttribute("data-set-kept") || "").replace("{place}", chosen ? chosen.text : "");
      } else {
        say = plan.getAttribute("data-set") || "";
      }
      if (status) { status.textContent = say; }
    });
    var typed = function () {
      var x = parseInt(px.value, 10), y = parseInt(py.value, 10);
      if (!isNaN(x) && !isNaN(y)) { show(x, y); } else { mark.setAttribute("hidden", ""); }
    };
    px.addEventListener("input", typed);
    py.addEventListener("input", typed);
  }
})();
