// Draws the dashboard's charts from the figures the page carries (#tl-charts) with the
// vendored Chart.js. The numbers (and their links) are in the page's tables; the charts
// only draw them.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("tl-charts").textContent);
  const colors = ["#417690", "#79aec8", "#f5dd5d", "#e07a5f", "#81b29a", "#9c89b8", "#bfbfbf"];
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false; // each canvas fills its .tl-chart box
  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (canvas) new Chart(canvas, config);
  }
  const days = data.series.days.map((d) => d.slice(5));
  draw("chart-tiers", {
    type: "bar",
    data: {
      labels: data.tiers.lifecycles,
      datasets: data.tiers.datasets.map((d, i) => ({ ...d, backgroundColor: colors[i] })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
  draw("chart-bytes", {
    type: "bar",
    data: { labels: data.bytes.labels, datasets: [{ label: "bytes", data: data.bytes.data, backgroundColor: colors.slice(0, 2) }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } } },
  });
  draw("chart-cache", {
    data: {
      labels: days,
      datasets: [
        { type: "line", label: "cache read %", data: data.series.cache_read_pct, yAxisID: "pct", borderColor: colors[0], spanGaps: true },
        { type: "bar", label: "warms", data: data.series.warms, yAxisID: "n", backgroundColor: colors[1] },
        { type: "bar", label: "timers capped", data: data.series.capped, yAxisID: "n", backgroundColor: colors[3] },
      ],
    },
    options: { scales: { pct: { position: "left", min: 0, max: 100 }, n: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } },
  });
  draw("chart-compaction", {
    type: "bar",
    data: {
      labels: days,
      datasets: [
        { label: "tokens before", data: data.series.tokens_before, backgroundColor: colors[3] },
        { label: "tokens after", data: data.series.tokens_after, backgroundColor: colors[4] },
      ],
    },
    options: { scales: { y: { beginAtZero: true } } },
  });
  draw("chart-sessions", {
    type: "bar",
    data: { labels: data.sessions.labels, datasets: [{ label: "sessions", data: data.sessions.data, backgroundColor: colors[0] }] },
    options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
  });
  draw("chart-handoffs", {
    type: "doughnut",
    data: { labels: data.handoffs.labels, datasets: [{ data: data.handoffs.data, backgroundColor: [colors[2], colors[4], colors[3]] }] },
  });
  document.body.dataset.chartsDrawn = "true";
})();
