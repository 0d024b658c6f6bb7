"""The lab in Locust's web UI: a Waves tab (which burst, its state, its rows, its picture, its files)
and its CSV, bursts that spawn at once, and options that keep their last values."""

import json
from pathlib import Path

from flask import request, send_file

from ..render import WAVES_TAB, burst_title
from .options import BURST, PROBE

# Locust's Waves tab is a table of text cells: which run its rows belong to (mode, pool, host, time),
# the run's state (the calibration's progress too) and files go above it, the picture under it, by
# a small script in the page that reads ./waves/info every second while the tab is open; the same
# for every tab in WebUIExtension.tabs (the Probe tab's ./probe/info too).
PICTURE_SCRIPT = """<script>
function poolLabTab(key, runId, pictureId, alt) {
  var shown = null;
  function element(id, tag, where, anchor) {
    var found = document.getElementById(id);
    if (!found) {
      found = document.createElement(tag);
      found.id = id;
      anchor.insertAdjacentElement(where, found);
    }
    return found;
  }
  function tick() {
    var onTab = new URLSearchParams(location.search).get("tab") === key;
    fetch("./" + key + "/info").then(function (r) { return r.json(); }).then(function (info) {
      var table = document.querySelector("table");
      var run = document.getElementById(runId), picture = document.getElementById(pictureId);
      if (!onTab || !table || !info.run) {
        if (run) run.remove();
        if (picture) { picture.remove(); shown = null; }
        return;
      }
      var container = table.parentElement;
      run = element(runId, "div", "beforebegin", container);
      run.style = "margin:8px 0;font-family:monospace;white-space:pre-wrap";
      var text = info.run + "\\n" + info.status + (info.files.length ? "\\nfiles: " + info.files.join(", ") : "");
      if (run.textContent !== text) run.textContent = text;
      if (!info.png) {
        if (picture) { picture.remove(); shown = null; }
        return;
      }
      picture = element(pictureId, "img", "afterend", container);
      picture.alt = alt;
      picture.style = "display:block;max-width:100%;margin-top:16px";
      if (shown !== info.png) { picture.src = "./" + key + "/png?" + encodeURIComponent(info.png); shown = info.png; }
    }).catch(function () {});
  }
  setInterval(tick, 1000);
}
/* the tabs */
</script>"""


class WebUIExtension:
    """Extends the process's web UI with the run `preparation` prepares and the last burst of `reporter`."""

    def __init__(self, environment, preparation, reporter):
        self.environment = environment
        self.preparation = preparation
        self.reporter = reporter
        # (key, id of the run's text, id of the picture, the picture's alt text): a tab the page's script follows.
        self.tabs = [("waves", "pool-lab-run", "pool-lab-waves-png",
                      "measured and predicted stairs of the last burst, per endpoint")]
        web_ui = environment.web_ui
        web_ui.template_args.update(
            extended_tabs=[{"title": "Waves", "key": "waves"}],
            extended_tables=[{"key": "waves", "structure": [{"key": k, "title": t} for k, t in WAVES_TAB]}],
            extended_csv_files=[{"href": "./waves/csv", "title": "Download the waves CSV of the last burst"},
                                {"href": "./waves/png", "title": "The stairs of the last burst (PNG)"}])
        web_ui.app.after_request(self.add_waves)
        web_ui.app.after_request(self.add_picture_script)
        web_ui.app.route("/waves/csv")(self.waves_csv)
        web_ui.app.route("/waves/png")(self.waves_png)
        web_ui.app.route("/waves/info")(self.waves_info)
        web_ui.app.before_request(self.burst_spawns_at_once)
        self._update_template_args = web_ui.update_template_args
        web_ui.update_template_args = self.keep_last_options

    def add_waves(self, response):
        if request.path.endswith("/stats/requests") and response.is_json:
            stats = {**response.json, "extended_stats": [*response.json.get("extended_stats", []),
                                                         {"key": "waves", "data": self.reporter.waves_rows}]}
            if stats.get("state") == "cleanup":
                # Locust's page polls these statistics only while a run spawns or runs: a poll that
                # sees a burst's own stop midway (cleanup) would be its last, and the header would
                # show CLEANUP and STOP until a reload. Still running, until it has stopped.
                stats["state"] = "running"
            response.set_data(json.dumps(stats))
        return response

    def add_picture_script(self, response):
        if request.path.rstrip("/") == "" and response.mimetype == "text/html" and not response.direct_passthrough:
            page = response.get_data(as_text=True)
            if "</body>" in page:
                calls = "\n".join(f"poolLabTab({', '.join(json.dumps(a) for a in tab)});" for tab in self.tabs)
                response.set_data(page.replace("</body>", PICTURE_SCRIPT.replace("/* the tabs */", calls) + "</body>", 1))
        return response

    def waves_csv(self):
        if not self.reporter.waves_csv:
            return {"error": "not_found", "message": "no burst has ended yet"}, 404
        return send_file(Path(self.reporter.waves_csv).resolve(), mimetype="text/csv", as_attachment=True)

    def waves_png(self):
        if not self.reporter.waves_png:
            return {"error": "not_found", "message": "no burst has ended since the last run started"}, 404
        return send_file(Path(self.reporter.waves_png).resolve(), mimetype="image/png", max_age=0)

    def waves_info(self):
        """Which run the Waves tab shows (mode, pool, host, time), what it is doing, its files and picture."""
        prep = self.preparation
        run = prep.started and burst_title(prep.facts, self.environment.host, prep.started)
        status = "burst done" if self.reporter.written else prep.status
        return {"run": run, "status": status, "files": self.reporter.written, "png": self.reporter.waves_png}

    def burst_spawns_at_once(self):
        # A burst (and a probe) begins once every user is spawned: a ramp-up would only delay it.
        if request.path.endswith("/swarm") and request.form.get("behaviour") in (BURST, PROBE):
            form = request.form.copy()
            try:
                form["spawn_rate"] = str(max(float(form["spawn_rate"]), min(int(form["user_count"]), 100)))
            except (KeyError, ValueError):
                return None  # Locust itself answers a form it cannot read
            request.form = form
        return None

    def keep_last_options(self):
        # Locust fills the form's extra options from the command line; show what the last run used.
        self._update_template_args()
        options = vars(self.environment.parsed_options)
        for name, option in self.environment.web_ui.template_args["extra_options"].items():
            option["default_value"] = options.get(name, option["default_value"])
