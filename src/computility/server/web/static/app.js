// Computility dashboard: the one script of the pages (CSP allows scripts from this origin only).
// Charts: every <div class="chart" data-series="ID"> is drawn with uPlot from the JSON in
// <script type="application/json" id="ID">{"x": [unix s...], "series": [{"label", "values"}],
// "unit": "CU"}</script>. Redrawn after htmx swaps, so live fragments keep their charts.
(function () {
  "use strict";
  var palette = ["#0b63c5", "#c62828", "#1a7f37", "#b35900", "#6a4c93", "#00838f", "#ad1457"];

  // Axis numbers with enough digits that small values (a bill of 0.00014) do not all read "0".
  function tick(v) {
    if (v == null) return "";
    var a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1000) return Math.round(v).toLocaleString("en");
    if (a >= 1) return String(+v.toFixed(2));
    return String(+v.toPrecision(2));
  }

  function draw(el) {
    var src = document.getElementById(el.dataset.series);
    if (!src || typeof uPlot === "undefined") return;
    var spec = JSON.parse(src.textContent);
    el.innerHTML = "";
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    // "bars": true draws bars (x = categories 0..n-1, named by "xlabels"), as for policies.
    var bars = spec.bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 64] }) : null;
    // The x series' legend label in the page's language (uPlot's own is English).
    var zh = (document.documentElement.lang || "").indexOf("zh") === 0;
    var xname = spec.xlabel || (spec.time !== false ? (zh ? "时间" : "Time") : (zh ? "数值" : "Value"));
    var series = [{ label: xname }].concat(spec.series.map(function (s, i) {
      var color = s.color || palette[i % palette.length];
      if (bars) return { label: s.label, stroke: color, fill: color + "99", width: 1, paths: bars,
                         points: { show: false } };
      return { label: s.label, stroke: color, width: 2,
               fill: s.fill ? color + "22" : undefined };
    }));
    var xaxis = {};
    if (spec.xlabels) {
      xaxis = { splits: function () { return spec.x; }, rotate: -30, size: 64,
                values: function (u, splits) {
                  return splits.map(function (v) { return spec.xlabels[v] || ""; }); } };
    }
    // One point alone: a day either side of it, not years (uPlot's own range for one value).
    var xscale = { time: spec.time !== false };
    if (spec.x.length === 1) {
      var pad = spec.time !== false ? 43200 : 1;
      xscale.range = function () { return [spec.x[0] - pad, spec.x[0] + pad]; };
    }
    var width = Math.max(280, el.clientWidth || el.parentNode.clientWidth || 600);
    var opts = {
      width: width, height: Number(el.dataset.height || 240), series: series,
      scales: bars ? {
        x: { time: false, range: function () { return [-0.5, spec.x.length - 0.5]; } },
        y: { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; } },
      } : { x: xscale },
      axes: [xaxis, { label: spec.unit || "", size: 60,
                      values: function (u, splits) { return splits.map(tick); } }],
      legend: { live: true },
    };
    if (spec.xlabels) opts.padding = [12, 56, 0, 0];  // room for the last slanted label
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
