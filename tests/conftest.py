pytest_plugins = ["sandbox.pytest_plugin"]
