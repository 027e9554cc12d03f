pytest_plugins = ["leadpulse.sandbox.pytest_plugin"]
