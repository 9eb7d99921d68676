/* A tiny SVG chart (no dependencies): bars for a count, a line for a 0..1 rate on a second axis. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";

  function node(tag, attrs, text) {
    var n = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text != null) n.textContent = text;
    return n;
  }

  /** The smallest "round" maximum (4 equal integer steps of 1, 2 or 5 x 10^n) at or above value. */
  function niceMax(value) {
    var step = Math.max(1, value / 4);
    var power = Math.pow(10, Math.floor(Math.log10(step)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= step) return 4 * steps[i] * power;
    return 40 * power;
  }

  /** The figures the drawing shows, as a table only screen readers get (WCAG 1.1.1: the SVG is
   * hidden from them, and a picture's label alone does not say what the days were). */
  function dataTable(points, caption) {
    var table = document.createElement("table");  // HTML, not node()'s SVG namespace
    table.className = "visually-hidden";
    table.appendChild(document.createElement("caption")).textContent = caption;
    var head = table.appendChild(document.createElement("tr"));
    ["Day", "Searches", "Deflection rate"].forEach(function (text) {
      var th = head.appendChild(document.createElement("th"));
      th.scope = "col";
      th.textContent = text;
    });
    points.forEach(function (p) {
      var row = table.appendChild(document.createElement("tr"));
      var rate = p.line == null || !isFinite(p.line) ? "-" : Math.round(p.line * 100) + "%";
      [p.label, String(p.bars || 0), rate].forEach(function (text) {
        row.appendChild(document.createElement("td")).textContent = text;
      });
    });
    return table;
  }

  /** points: [{label, bars: number, line: number|null (0..1)}] */
  function render(container, points, options) {
    options = options || {};
    container.textContent = "";
    if (!points.length) {
      container.appendChild(Object.assign(document.createElement("p"), {
        className: "chart-empty", textContent: options.empty || "No data for this period yet.",
      }));
      return;
    }
    // Drawn at the container's own width so the text keeps its size on a phone.
    var W = Math.max(280, Math.round(container.clientWidth || 720)), H = 240, left = 40, right = 44, top = 12, bottom = 28;
    var plotW = W - left - right, plotH = H - top - bottom;
    var maxBars = niceMax(Math.max.apply(null, points.map(function (p) { return p.bars || 0; })));
    var svg = node("svg", { viewBox: "0 0 " + W + " " + H, "aria-hidden": "true" });
    for (var g = 0; g <= 4; g++) {
      var y = top + plotH - (plotH * g) / 4;
      svg.appendChild(node("line", { class: g ? "grid" : "axis", x1: left, x2: W - right, y1: y, y2: y }));
      svg.appendChild(node("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, String(Math.round((maxBars * g) / 4))));
      svg.appendChild(node("text", { x: W - right + 6, y: y + 4 }, (25 * g) + "%"));
    }
    var slot = plotW / points.length;
    var barW = Math.max(2, Math.min(36, slot * 0.7));
    var labelEvery = Math.ceil(points.length / Math.max(2, Math.floor(plotW / 70)));
    var path = [];
    points.forEach(function (p, i) {
      var cx = left + slot * i + slot / 2;
      var h = plotH * (p.bars || 0) / maxBars;
      var bar = node("rect", { class: "bar", x: cx - barW / 2, y: top + plotH - h, width: barW, height: Math.max(h, 0) });
      var rateText = p.line == null ? "" : ", deflection " + Math.round(p.line * 100) + "%";
      bar.appendChild(node("title", {}, p.label + ": " + (p.bars || 0) + " searches" + rateText));
      svg.appendChild(bar);
      if (i % labelEvery === 0) {
        svg.appendChild(node("text", { x: cx, y: H - 8, "text-anchor": "middle" }, p.label));
      }
      if (p.line != null && isFinite(p.line)) {
        var ly = top + plotH - plotH * Math.max(0, Math.min(1, p.line));
        path.push((path.length ? "L" : "M") + cx.toFixed(1) + " " + ly.toFixed(1));
        svg.appendChild(node("circle", { class: "dot", cx: cx, cy: ly, r: 3 }));
      }
    });
    if (path.length > 1) svg.appendChild(node("path", { class: "line", d: path.join(" ") }));
    container.appendChild(svg);
    container.appendChild(dataTable(points, options.caption || "Searches per day and deflection rate"));
    container._deflectChart = { points: points, options: options, width: W };
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), function (c) {
        var drawn = c._deflectChart;
        if (drawn && Math.abs(c.clientWidth - drawn.width) > 20) render(c, drawn.points, drawn.options);
      });
    }, 150);
  });

  window.DeflectChart = { render: render };
})();
