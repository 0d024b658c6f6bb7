"""pool-lab's sleep server: a Flask app factory in the style of Flask's tutorial."""


def create_app(test_config=None):
    """Create the app; with DATABASE_URL unset, start (or join) the embedded PostgreSQL."""
    # Imported here, as in Flask's tutorial: gunicorn.conf.py imports this package in the
    # master, which must not load the app before gevent patches its workers.
    from flask import Flask

    from . import config, db, embedded, errors, views

    app = Flask(__name__)
    # Every answer JSON: /pool/ and /sleep/python (no trailing slash) are served, not redirected
    # with an HTML 308; OPTIONS gets the JSON 405, not an empty HTML 200.
    app.url_map.strict_slashes = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config.from_mapping(config.load())
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.config["DATABASE_URL"] = embedded.database_url(app.config["DATABASE_URL"])
    db.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    return app
