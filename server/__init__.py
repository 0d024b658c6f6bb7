"""pool-lab's sleep server: a Flask app factory in the style of Flask's tutorial."""


def create_app(test_config=None):
    """Create the app on the database at DATABASE_URL (the environment's, or test_config's); start nothing."""
    # Imported here, as in Flask's tutorial: gunicorn.conf.py imports this package in the
    # master, which must not load the app before gevent patches its workers.
    from flask import Flask

    from . import config, db, errors, views

    try:
        settings = {**config.load(), **(test_config or {})}
        if not settings["DATABASE_URL"]:
            raise config.ConfigError("DATABASE_URL is not set: the app starts no database of its own; set it "
                                     "(postgresql://user:password@host:port/dbname), or run the modes with "
                                     "honcho start, whose Gunicorn starts the embedded PostgreSQL (the Todo table alone: "
                                     "python -m lab.database init-db)")
    except config.ConfigError as error:
        # Every way to the app passes here (flask --app server, Gunicorn's workers, python -c):
        # a bad setting ends it with one line, not a traceback.
        raise SystemExit(f"pool-lab: {error}") from None
    app = Flask(__name__)
    # Every answer JSON: /pool/ and /sleep/python (no trailing slash) are served, not redirected
    # with an HTML 308; OPTIONS gets the JSON 405, not an empty HTML 200.
    app.url_map.strict_slashes = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config.from_mapping(settings)
    db.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    return app
