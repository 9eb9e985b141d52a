/* Draw the dashboard's plotly figures (embedded with json_script) and redraw them after htmx swaps. */
(function () {
  "use strict";
  var plotConfig = { responsive: true, displayModeBar: false };

  function draw(root, force) {
    if (!window.Plotly || !root || !root.querySelectorAll) return;
    var charts = root.matches && root.matches("[data-figure]") ? [root] : [];
    root.querySelectorAll("[data-figure]").forEach(function (chart) { charts.push(chart); });
    charts.forEach(function (chart) {
      if (chart.dataset.drawn && !force) return;
      var source = document.getElementById(chart.dataset.figure);
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      chart.replaceChildren();
      Plotly.newPlot(chart, figure.data, figure.layout, plotConfig);
      chart.dataset.drawn = "1";
    });
  }

  function showError(message) {
    var box = document.getElementById("dash-error");
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document, false); });
  document.body.addEventListener("htmx:load", function (event) { draw(event.target, false); });
  // A restored history snapshot holds the old SVG but no plotly state: draw again from the JSON.
  document.body.addEventListener("htmx:historyRestore", function () { draw(document, true); });
  document.body.addEventListener("htmx:responseError", function (event) {
    showError(event.detail.xhr.responseText.slice(0, 500));
  });
  document.body.addEventListener("htmx:afterSwap", function () { showError(""); });
})();
