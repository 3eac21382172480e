// Computility dashboard: the one script of the pages (CSP allows scripts from this origin only).
// Charts: every <div class="chart" data-series="ID"> is drawn with uPlot from the JSON in
// <script type="application/json" id="ID">{"x": [unix s...], "series": [{"label", "values"}],
// "unit": "CU"}</script>. Redrawn after htmx swaps, so live fragments keep their charts.
(function () {
  "use strict";
  var palette = ["#0b63c5", "#c62828", "#1a7f37", "#b35900", "#6a4c93", "#00838f", "#ad1457"];

  function draw(el) {
    var src = document.getElementById(el.dataset.series);
    if (!src || typeof uPlot === "undefined") return;
    var spec = JSON.parse(src.textContent);
    el.innerHTML = "";
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var series = [{}].concat(spec.series.map(function (s, i) {
      return { label: s.label, stroke: s.color || palette[i % palette.length], width: 2,
               fill: s.fill ? (s.color || palette[i % palette.length]) + "22" : undefined };
    }));
    var width = Math.max(280, el.clientWidth || el.parentNode.clientWidth || 600);
    var opts = {
      width: width, height: Number(el.dataset.height || 240), series: series,
      scales: { x: { time: spec.time !== false } },
      axes: [{}, { label: spec.unit || "", size: 60 }],
      legend: { live: true },
    };
    new uPlot(opts, data, el);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("div.chart[data-series]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target); });
  var resizeTimer;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { drawAll(document); }, 200);
  });
  // Log panes follow their end while the reader is at the end.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var pane = e.target.closest && e.target.closest("pre.log");
    if (pane) pane.dataset.atEnd = String(pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 8);
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    var pane = e.target.closest && e.target.closest("pre.log");
    if (pane && pane.dataset.atEnd !== "false") pane.scrollTop = pane.scrollHeight;
  });
})();
