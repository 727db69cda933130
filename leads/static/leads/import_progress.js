// Polls the batch's progress endpoint while an import runs and moves the progress bar;
// reloads the page once the batch is done or failed so every count is shown in full.
(function () {
  "use strict";
  var script = document.getElementById("import-progress-script");
  if (!script) { return; }
  var url = script.dataset.progressUrl;
  function update(data) {
    document.querySelectorAll("progress.import-progress").forEach(function (bar) {
      bar.value = data.percent;
    });
    document.querySelectorAll(".import-progress-text").forEach(function (text) {
      var seen = data.last_progress_seconds_ago;
      text.textContent = data.percent + "% (" + data.rows_done + " of " + data.rows_total + " rows) - " + data.state_label +
        (seen === null || data.finished ? "" : " - last progress " + seen + " s ago");
    });
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { window.setTimeout(poll, 5000); return; }
        update(data);
        if (data.finished) { window.location.reload(); } else { window.setTimeout(poll, 1000); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
