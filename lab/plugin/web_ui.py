"""The lab in Locust's web UI: a Waves tab and its CSV, bursts that spawn at once, and options that
keep their last values."""

import json
from pathlib import Path

from flask import request, send_file

from ..render import WAVES_TAB


class WebUIExtension:
    """Extends the process's web UI with the last burst of `reporter` (a BurstReporter)."""

    def __init__(self, environment, reporter):
        self.environment = environment
        self.reporter = reporter
        web_ui = environment.web_ui
        web_ui.template_args.update(
            extended_tabs=[{"title": "Waves", "key": "waves"}],
            extended_tables=[{"key": "waves", "structure": [{"key": k, "title": t} for k, t in WAVES_TAB]}],
            extended_csv_files=[{"href": "./waves/csv", "title": "Download the waves CSV of the last burst"}])
        web_ui.app.after_request(self.add_waves)
        web_ui.app.route("/waves/csv")(self.waves_csv)
        web_ui.app.before_request(self.burst_spawns_at_once)
        self._update_template_args = web_ui.update_template_args
        web_ui.update_template_args = self.keep_last_options

    def add_waves(self, response):
        if request.path.endswith("/stats/requests") and response.is_json:
            response.set_data(json.dumps({**response.json, "extended_stats": [
                {"key": "waves", "data": self.reporter.waves_rows}]}))
        return response

    def waves_csv(self):
        if not self.reporter.waves_csv:
            return {"error": "not_found", "message": "no burst has ended yet"}, 404
        return send_file(Path(self.reporter.waves_csv).resolve(), mimetype="text/csv", as_attachment=True)

    def burst_spawns_at_once(self):
        # A burst begins once every user is spawned: a ramp-up would only delay it.
        if request.path.endswith("/swarm") and request.form.get("behaviour") == "burst":
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
